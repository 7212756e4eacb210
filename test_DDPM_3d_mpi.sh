#!/usr/bin/env bash
# Denoise low-dose PET volumes with the 3D diffusion model (the paper's test launcher).
#
#   NUM_GPUS=4 MODEL_PATH=model.pt BASE_SAMPLES='scans/*.nii.gz' SAVE_DIR=denoised ./test_DDPM_3d_mpi.sh
#
# Every variable below, and PYTHON, MPIEXEC, NUM_GPUS (scripts/launcher_env.sh), can be set in the
# environment; arguments after the script name are passed to scripts/test.py last, so they override
# anything here (e.g. ./test_DDPM_3d_mpi.sh --num_ensemble 8 --steps 20).
# A regression or 2D checkpoint of scripts/train.py is recognised from its stored flags; MODEL_PATH may
# also be a Gaussian fit from scripts/fit_gaussian.py (README.md, "Baselines").
set -euo pipefail
# the shared part: cd to the repository root, .venv/bin, PYTHON, MPIEXEC, NUM_GPUS, the paper's PAPER_*_FLAGS
# shellcheck source=scripts/launcher_env.sh
source "$(dirname "$0")/scripts/launcher_env.sh"
MODEL_PATH=${MODEL_PATH:-model.pt}
BASE_SAMPLES=${BASE_SAMPLES:-data/test}    # a file, a directory or a glob
SAVE_DIR=${SAVE_DIR:-results/denoised}

# 10 ancestral steps from the warm start chosen from each input's noise, with the scale fitted for the model
# (its card, README "Model cards"); a model without a fitted scale, such as the paper's released one, runs the
# paper's process instead, with a note (README, "The launcher's sampler"). The paper's sampler for any model:
# SAMPLE_FLAGS="--batch_size 4 --use_ddim True --timestep_respacing ddim50 --clip_denoised True"
SAMPLE_FLAGS=${SAMPLE_FLAGS:-"--batch_size 4 --sampler ddpm --steps 10 --start_timestep auto --unfitted_model paper --clip_denoised True"}
MODEL_FLAGS=${MODEL_FLAGS:-$PAPER_MODEL_FLAGS}
DIFFUSION_FLAGS=${DIFFUSION_FLAGS:-$PAPER_DIFFUSION_FLAGS}

# shellcheck disable=SC2086  # the flag groups are meant to split into words
exec "$MPIEXEC" -n "$NUM_GPUS" "$PYTHON" scripts/test.py $MODEL_FLAGS $DIFFUSION_FLAGS $SAMPLE_FLAGS \
    --model_path "$MODEL_PATH" --base_samples "$BASE_SAMPLES" --save_dir "$SAVE_DIR" "$@"
