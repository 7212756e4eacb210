#!/usr/bin/env bash
# Train the 3D diffusion model on low-dose / full-dose PET pairs (the paper's training launcher).
#
#   NUM_GPUS=4 DATA_DIR=data/train RESULT_FOLDER=results/train ./train_DDPM_3d_mpi.sh
#   CONFIG=tiny DATA_DIR=data/phantoms ./train_DDPM_3d_mpi.sh --max_steps 200 --patch_size 32,32,16
#   Baselines (README.md, "Baselines"): add --model_kind regression (the same UNet, low dose -> full dose),
#   or --dims 2 --patch_size 96 (a 2D DDPM on axial slices).
#
# Every variable below, and PYTHON, MPIEXEC, NUM_GPUS (scripts/launcher_env.sh), can be set in the
# environment. With CONFIG (a preset in configs/ or a YAML path) the model and diffusion flags come
# from the preset and MODEL_FLAGS / DIFFUSION_FLAGS default to empty. Arguments after the script name
# are passed to scripts/train.py last, so they override anything here. Starting
# again with the same RESULT_FOLDER resumes from its newest checkpoint.
set -euo pipefail
# the shared part: cd to the repository root, .venv/bin, PYTHON, MPIEXEC, NUM_GPUS, the paper's PAPER_*_FLAGS
# shellcheck source=scripts/launcher_env.sh
source "$(dirname "$0")/scripts/launcher_env.sh"
DATA_DIR=${DATA_DIR:-data/train}
RESULT_FOLDER=${RESULT_FOLDER:-results/train}
CONFIG=${CONFIG:-}

if [[ -n "$CONFIG" ]]; then
    MODEL_FLAGS=${MODEL_FLAGS:-"--config $CONFIG"}
    DIFFUSION_FLAGS=${DIFFUSION_FLAGS:-}
else
    MODEL_FLAGS=${MODEL_FLAGS:-$PAPER_MODEL_FLAGS}
    DIFFUSION_FLAGS=${DIFFUSION_FLAGS:-$PAPER_DIFFUSION_FLAGS}
fi
TRAIN_FLAGS=${TRAIN_FLAGS:-"--lr 1e-4 --batch_size 1 --ema_rate 0.9999 --max_steps 400000 --patch_size 96,96,96 --flip True --log_interval 100 --save_interval 10000 --val_interval 5000"}

# shellcheck disable=SC2086  # the flag groups are meant to split into words
exec "$MPIEXEC" -n "$NUM_GPUS" "$PYTHON" scripts/train.py $MODEL_FLAGS $DIFFUSION_FLAGS $TRAIN_FLAGS \
    --data_dir "$DATA_DIR" --result_folder "$RESULT_FOLDER" "$@"
