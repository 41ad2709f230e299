#!/usr/bin/env bash
# One short check of data-parallel KD on a CUDA machine (about 5-8 minutes on one H100):
#   1. online, cache and pool KD (the pool's teacher replica on a GPU, bf16), each on
#      1 rank and on all GPUs (torchrun, NCCL, one GPU per rank): images/s for each;
#   2. with 2+ GPUs, the 1-rank vs 2-rank loss step by step with train.sync_bn
#      (torch's SyncBatchNorm, CUDA only), fp32, deterministic.
# Run from a fresh copy of the repository: bash benchmarks/gpu_check.sh
# It builds .venv with `make setup` when there is none; without CUDA it stops at once.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || make setup
export OMP_NUM_THREADS=4 PYTHONUNBUFFERED=1

if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: torch sees no CUDA device (torch.cuda.is_available() is False);" \
         "run this on a machine with an NVIDIA GPU and its driver" >&2
    exit 3
fi
NGPU=$("$PY" -c "import torch; print(torch.cuda.device_count())")
"$PY" -c "import torch; print('gpu_check:', torch.cuda.device_count(), 'x', torch.cuda.get_device_name(0), 'torch', torch.__version__)"

DATA=()
if [ ! -d /usr/share/datasets/fashion-mnist ] && [ -z "${EDGEDISTILL_DATA:-}" ]; then
    echo "gpu_check: Fashion-MNIST is missing; using generated 28x28 images (throughput only)"
    DATA=(--synthetic)
fi

NPROCS=1
[ "$NGPU" -gt 1 ] && NPROCS="1,$NGPU"
BATCH=$(( 256 / NGPU * NGPU ))  # the global batch splits into one equal slice per GPU
echo "== 1. KD images/s: online, cache, pool x ranks $NPROCS"
timeout 420 "$PY" -m benchmarks.ddp_scaling --device cuda --nprocs "$NPROCS" \
    --sources online,cache,pool --limit-train 20000 --batch-size "$BATCH" --epochs 2 \
    --threads 4 --replica-gpus 0.5 --timeout 200 ${DATA[@]+"${DATA[@]}"}

if [ "$NGPU" -lt 2 ]; then
    echo "== 2. skipped: one GPU, so no 2-rank sync_bn comparison"
    exit 0
fi
echo "== 2. 1 rank vs 2 ranks with train.sync_bn, step by step (resnet8, fp32)"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
DATASET='"dataset": "fashion_mnist"'
[ ${#DATA[@]} -gt 0 ] && DATASET='"dataset": "synthetic", "options": {"num_train": 2048, "image_size": 28, "channels": 1}'
cat > "$TMP/cfg.json" <<EOF
{"name": "syncbn", "seed": 0, "model": {"name": "resnet8"},
 "data": {$DATASET, "limit_train": 2048, "limit_test": 512, "batch_size": 128},
 "train": {"epochs": 1, "device": "cuda", "amp": false, "deterministic": true,
           "sync_bn": true, "progress": false, "optimizer": {"name": "sgd", "lr": 0.05}}}
EOF
timeout 120 "$PY" tests/train/ddp_worker.py "$TMP/cfg.json" "$TMP/one"
timeout 120 "$PY" -m torch.distributed.run --standalone --nproc-per-node=2 \
    tests/train/ddp_worker.py "$TMP/cfg.json" "$TMP/two"
"$PY" - "$TMP" <<'EOF'
import json, sys
from pathlib import Path
tmp = Path(sys.argv[1])
def losses(d):
    ranks = [json.loads(p.read_text())["losses"] for p in sorted((tmp / d).glob("steps-rank*.json"))]
    return [sum(x) / len(x) for x in zip(*ranks)]
one, two = losses("one"), losses("two")
diff = [abs(a - b) for a, b in zip(one, two)]
print(f"sync_bn: {len(diff)} steps, max |loss(1 rank) - loss(2 ranks)| = {max(diff):.3g} "
      f"(step 0: {diff[0]:.3g}, last: {diff[-1]:.3g})")
EOF
