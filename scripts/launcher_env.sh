# What the paper's two launchers share, sourced by test_DDPM_3d_mpi.sh and train_DDPM_3d_mpi.sh.
#
# Moves to the repository root and puts .venv/bin first on PATH when the
# virtual environment exists. Sets, keeping any value from the environment:
#   PYTHON    the interpreter (default: python)
#   MPIEXEC   the MPI launcher (default: mpiexec)
#   NUM_GPUS  MPI ranks, one GPU each, CPU when there is none (default: 1); anything but a whole
#             number of 1 or more stops the launcher with one line and exit status 1
# and, as constants the launchers take their MODEL_FLAGS / DIFFUSION_FLAGS defaults from:
#   PAPER_MODEL_FLAGS      the paper's network
#   PAPER_DIFFUSION_FLAGS  the paper's diffusion process
# shellcheck shell=bash

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ -x .venv/bin/python ]]; then
    PATH="$PWD/.venv/bin:$PATH"
fi
PYTHON=${PYTHON:-python}
MPIEXEC=${MPIEXEC:-mpiexec}
NUM_GPUS=${NUM_GPUS:-1}
if ! [[ $NUM_GPUS =~ ^[1-9][0-9]*$ ]]; then
    echo "error: NUM_GPUS=$NUM_GPUS: give the number of MPI ranks (one per GPU), a whole number of 1 or more" >&2
    exit 1
fi

PAPER_MODEL_FLAGS="--attention_resolutions 1000 --large_size 96 --small_size 96 --num_channels 128 --use_fp16 True --num_head_channels 64 --learn_sigma True --resblock_updown True --use_scale_shift_norm True"
PAPER_DIFFUSION_FLAGS="--diffusion_steps 1000 --noise_schedule linear"
