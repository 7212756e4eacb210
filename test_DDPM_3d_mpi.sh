#!/usr/bin/env bash
# Denoise low-dose PET volumes with the 3D diffusion model (the paper's test launcher).
#
#   NUM_GPUS=4 MODEL_PATH=model.pt BASE_SAMPLES='scans/*.nii.gz' SAVE_DIR=denoised ./test_DDPM_3d_mpi.sh
#
# Every variable below can be set in the environment; arguments after the
# script name are passed to scripts/test.py last, so they override anything here
# (e.g. ./test_DDPM_3d_mpi.sh --num_ensemble 8 --steps 20).
# A regression or 2D checkpoint of scripts/train.py is recognised from its stored flags; MODEL_PATH may
# also be a Gaussian fit from scripts/fit_gaussian.py (README.md, "Baselines").
set -euo pipefail
cd "$(dirname "$0")"

if [[ -x .venv/bin/python ]]; then
    PATH="$PWD/.venv/bin:$PATH"
fi
PYTHON=${PYTHON:-python}
MPIEXEC=${MPIEXEC:-mpiexec}
NUM_GPUS=${NUM_GPUS:-1}                    # MPI ranks, one GPU each (CPU when there is none)
MODEL_PATH=${MODEL_PATH:-model.pt}
BASE_SAMPLES=${BASE_SAMPLES:-data/test}    # a file, a directory or a glob
SAVE_DIR=${SAVE_DIR:-results/denoised}

# 10 ancestral steps from the warm start chosen from each input's noise (README, "The launcher's sampler");
# the paper's sampler: SAMPLE_FLAGS="--batch_size 4 --use_ddim True --timestep_respacing ddim50 --clip_denoised True"
SAMPLE_FLAGS=${SAMPLE_FLAGS:-"--batch_size 4 --sampler ddpm --steps 10 --start_timestep auto --clip_denoised True"}
MODEL_FLAGS=${MODEL_FLAGS:-"--attention_resolutions 1000 --large_size 96 --small_size 96 --num_channels 128 --use_fp16 True --num_head_channels 64 --learn_sigma True --resblock_updown True --use_scale_shift_norm True"}
DIFFUSION_FLAGS=${DIFFUSION_FLAGS:-"--diffusion_steps 1000 --noise_schedule linear"}

# shellcheck disable=SC2086  # the flag groups are meant to split into words
exec "$MPIEXEC" -n "$NUM_GPUS" "$PYTHON" scripts/test.py $MODEL_FLAGS $DIFFUSION_FLAGS $SAMPLE_FLAGS \
    --model_path "$MODEL_PATH" --base_samples "$BASE_SAMPLES" --save_dir "$SAVE_DIR" "$@"
