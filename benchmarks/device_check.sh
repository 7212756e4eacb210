#!/usr/bin/env bash
# GPU checks, run once on a lent GPU machine (see README, "Checked on a GPU"):
#   1. scripts/test.py under mpiexec -n 2 and -n 1 on one GPU, two volumes (the
#      multi-rank device path; rank 0 used to hang after the first volume);
#   2. scripts/train.py under mpiexec -n 2 on one GPU (DDP over gloo, as NCCL refuses
#      two ranks on one GPU; the loss-aware sampler's gather);
#   3. a demo-model training run on simulated phantoms at every reduced dose, cut at
#      TRAIN_SECONDS; its newest EMA weights and progress.csv are copied to OUT_DIR;
#   4. the 3D GAN baseline under mpiexec -n 2 on one GPU (two DDP models: generator
#      and discriminator; their checksums must agree across ranks);
#   5. one whole 192 x 288 x 520 volume through scripts/test.py with the paper's
#      network (random weights) and the launcher's sampler (10 steps), fp16 eager and
#      bf16 compiled (benchmarks/volume_timing.py; about 4 minutes on an H100).
#
#   bash benchmarks/device_check.sh OUT_DIR
#   STEPS="4 5" bash benchmarks/device_check.sh OUT_DIR     # only the checks not yet run on a GPU
#
# Environment: STEPS (default "1 2 3 4 5"), PYTHON, MPIEXEC, WORK (scratch folder), TRAIN_SECONDS
# (default 300), TRAIN_SEEDS (phantom seeds, 2 subjects each; default 1..12), JOBS (parallel simulations).
# Each step logs its command and exit status to OUT_DIR/device_check.log and the next
# step runs whatever the status, so one failure does not hide the others.
set -uo pipefail
cd "$(dirname "$0")/.."

OUT_DIR=${1:?usage: device_check.sh OUT_DIR}
PYTHON=${PYTHON:-python3}
MPIEXEC=${MPIEXEC:-mpiexec}
WORK=${WORK:-/tmp/device_check}
TRAIN_SECONDS=${TRAIN_SECONDS:-300}
TRAIN_SEEDS=${TRAIN_SEEDS:-$(seq -s ' ' 1 12)}
JOBS=${JOBS:-16}
STEPS=${STEPS:-"1 2 3 4 5"}
LOG="$OUT_DIR/device_check.log"
mkdir -p "$OUT_DIR" "$WORK"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} PYTHONUNBUFFERED=1

want() { [[ " $STEPS " == *" $1 "* ]]; }

step() {  # step NAME TIMEOUT_S COMMAND...: run, log output and status
    local name=$1 limit=$2
    shift 2
    echo "=== $name: $*" | tee -a "$LOG"
    local started=$SECONDS
    timeout "$limit" "$@" 2>&1 | tail -n 25 | tee -a "$LOG"
    echo "=== $name: exit ${PIPESTATUS[0]} after $((SECONDS - started)) s" | tee -a "$LOG"
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"; } 2>&1 | tee -a "$LOG"

# -- 1. denoising on two ranks ------------------------------------------------
if want 1; then
step phantoms_test 120 "$PYTHON" scripts/make_phantoms.py --out_dir "$WORK/test_cases" --num_subjects 2 \
    --seed 5000 --dose_levels 1/20 --axial_extent_mm 256 --format nifti
mkdir -p "$WORK/inputs" && cp "$WORK"/test_cases/subject00?_dose1-20.nii.gz "$WORK/inputs/"
DENOISE=(scripts/test.py --config tiny --model_path models/demo/model_ema.pt --base_samples "$WORK/inputs"
         --use_ddim True --timestep_respacing ddim10 --start_timestep 100 --num_ensemble 2 --batch_size 2
         --patch_axial 64 --patch_overlap 8 --seed 0 --overwrite True)
step denoise_2_ranks 150 "$MPIEXEC" -n 2 "$PYTHON" "${DENOISE[@]}" --save_dir "$WORK/out_2"
step denoise_1_rank 150 "$MPIEXEC" -n 1 "$PYTHON" "${DENOISE[@]}" --save_dir "$WORK/out_1"
step compare_ranks 60 "$PYTHON" - "$WORK" <<'EOF'
import json, sys
from pathlib import Path
import nibabel as nib
import numpy as np
work = Path(sys.argv[1])
for path in sorted((work / "out_1").glob("*_denoised.nii.gz")):
    one, two = (nib.load(work / d / path.name).get_fdata() for d in ("out_1", "out_2"))
    sidecar = json.loads((work / "out_2" / path.name.replace(".nii.gz", ".json")).read_text())
    print(f"{path.name}: max |1 rank - 2 ranks| = {np.abs(one - two).max():.2e} SUV, mean SUV {one.mean():.4f}, "
          f"2-rank device {sidecar['device']}, sample {sidecar['timings_s']['sample_s']:.1f} s")
EOF
fi

# -- 2. training on two ranks -------------------------------------------------
if want 2; then
[[ -d "$WORK/test_cases" ]] || step phantoms_test 120 "$PYTHON" scripts/make_phantoms.py \
    --out_dir "$WORK/test_cases" --num_subjects 2 --seed 5000 --dose_levels 1/20 --axial_extent_mm 256 --format nifti
step train_2_ranks 150 "$MPIEXEC" -n 2 "$PYTHON" scripts/train.py --config tiny --data_dir "$WORK/test_cases" \
    --result_folder "$WORK/train_2" --patch_size 64,64,32 --batch_size 2 --max_steps 20 --save_interval 10 \
    --log_interval 10 --schedule_sampler loss-second-moment --precision bf16 --num_workers 2
step train_checksums 60 "$PYTHON" -c "
import glob, torch
path = sorted(glob.glob('$WORK/train_2/checkpoint_*.pt'))[-1]
ckpt = torch.load(path, map_location='cpu', weights_only=True)
print(path, 'step', ckpt['step'], 'ranks agree:', len(set(ckpt['rank_checksums'])) == 1)"
fi

# -- 3. demo-model training ---------------------------------------------------
if want 3; then
simulate() { "$PYTHON" scripts/make_phantoms.py --out_dir "$WORK/demo_data/p$1" --num_subjects 2 --seed "$1" \
    --voxel_size 4 --dose_levels 1/2,1/4,1/10,1/20,1/50,1/100 > /dev/null 2>&1 && echo "seed $1 done"; }
export -f simulate && export PYTHON WORK
step phantoms_train 240 bash -c "printf '%s\n' $TRAIN_SEEDS | xargs -P $JOBS -I{} bash -c 'simulate {}'"
step train_demo "$TRAIN_SECONDS" "$PYTHON" scripts/train.py --config tiny --data_dir "$WORK/demo_data" \
    --result_folder "$WORK/demo_model" --patch_size 96,96,32 --batch_size 8 --lr 2e-4 --ema_rate 0.999 \
    --max_steps 20000 --save_interval 250 --log_interval 50 --num_workers 8 --precision bf16 --seed 0
newest=$(ls "$WORK"/demo_model/ema_0.999_*.pt 2>/dev/null | sort | tail -n 1)
if [[ -n "$newest" ]]; then
    cp "$newest" "$WORK/demo_model/progress.csv" "$OUT_DIR/"
    echo "copied $newest" | tee -a "$LOG"
fi
fi

# -- 4. the GAN baseline on two ranks -------------------------------------------
if want 4; then
[[ -d "$WORK/gan_cases" ]] || step phantoms_gan 120 "$PYTHON" scripts/make_phantoms.py \
    --out_dir "$WORK/gan_cases" --num_subjects 2 --seed 5100 --voxel_size 4 --dose_levels 1/20 --format npz
step gan_2_ranks 180 "$MPIEXEC" -n 2 "$PYTHON" scripts/train.py --config tiny --model_kind gan \
    --data_dir "$WORK/gan_cases" --result_folder "$WORK/gan_2" --patch_size 64,64,32 --batch_size 2 \
    --max_steps 20 --save_interval 20 --log_interval 10 --precision bf16 --num_workers 2
step gan_checksums 60 "$PYTHON" -c "
import glob, torch
path = sorted(glob.glob('$WORK/gan_2/checkpoint_*.pt'))[-1]
ckpt = torch.load(path, map_location='cpu', weights_only=True)
print(path, 'step', ckpt['step'], 'generator and discriminator agree across ranks:',
      len(set(ckpt['rank_checksums'])) == 1, 'discriminator saved:', 'discriminator' in ckpt)"
fi

# -- 5. one whole volume with the launcher's sampler ------------------------------
if want 5; then
step volume_timing 480 "$PYTHON" benchmarks/volume_timing.py --config paper --volume 192,288,520 --steps 10 \
    --start_timestep 100 --settings "fp16 eager=--use_fp16 True;bf16 compiled=--precision bf16 --compile True" \
    --out_dir "$OUT_DIR/volume_timing"
fi
