#!/usr/bin/env bash
# Every GPU measurement the open goals need, in one script (H100/H200). The step limits sum to
# 900 s; ONLY="step names" runs some steps alone, e.g. to split it into two runs.
#   first, beside ../shared:  python benchmarks/gpu_pack.py   (writes local/gpu; take it along)
#   on a machine with CUDA:   bash benchmarks/gpu_checks.sh
# Outputs land in $OUT when it is set, else in local/gpu-out. Each step has its own
# time limit, so one slow step cannot eat the others' time.
set -uo pipefail
OUT=${OUT:-local/gpu-out}
mkdir -p "$OUT"
PACK=local/gpu
if ls $PACK/wheels/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site $PACK/wheels/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1 ROBUST_EVAL_SHARED_DATA=$PWD/$PACK
{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch; print('torch', torch.__version__)"; } | tee "$OUT/device.txt"

step() {  # step NAME SECONDS COMMAND...; ONLY="a b" runs the named steps alone
    local name=$1 limit=$2; shift 2
    if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then return; fi
    echo "== $name (limit ${limit}s)"
    local began=$SECONDS
    timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.txt"
    echo "== $name: exit ${PIPESTATUS[0]}, $((SECONDS - began)) s" | tee -a "$OUT/$name.txt"
}

# issue 8: ConvNorm fast vs BN, ResNet-18 batch 512 (goal: train and eval <= 1.5x BN)
step convnorm_speed 100 python3 benchmarks/convnorm_speed.py --device cuda --batch 512 --model-batch 512
# issue 4: PGD-10 native vs torchattacks, ResNet-18 batch 512 (goal >= 1.8x, within 15 % of 10 fwd+bwd)
step attack_speed 150 python3 benchmarks/attack_speed.py --device cuda --arch resnet18 --batch 512
# issue 3: the 15 x 5 CIFAR-10-C-style set on the GPU (goal < 30 s for 10,000 images per cell)
step corruption_speed 90 python3 benchmarks/corruption_speed.py --device cuda --skip-reference \
    --n-ours 5000 --n-set 5000 --batch 5000 --repeats 1
# issue 14: the whole battery (ResNet-20, clean + 15x5 corruptions + FGSM + PGD-10), job vs its
# model-compute floor in fp32 and bf16, and that floor through torch.compile (the peer stack,
# imagecorruptions + robustbench, is not packed: opencv alone is ~60 MB)
step suite_speed 240 python3 benchmarks/suite_speed.py --device cuda --images 2000 --batch 500 \
    --no-peer --compile
# issue 14: bf16 vs fp32 predictions of ResNet-20/56 (1,000 images, every severity, PGD 1/255 and
# 2/255) and channels_last vs contiguous on the packed test images
step precision_agreement 120 python3 benchmarks/precision_agreement.py --device cuda \
    --json "$OUT/precision_agreement.json"
# issue 5: label noise, ResNet-18 BN vs ConvNorm, symmetric 0/40/80 %, a short schedule
step label_noise 200 python3 benchmarks/label_noise_cifar10.py --device cuda --arch resnet18 \
    --data-root $PACK/cifar10 --norms bn,convnorm --rates 0,0.4,0.8 --seeds 0 --epochs 15 \
    --batch-size 256 --amp bf16 --channels-last --cache-dir /tmp/label_noise \
    --out "$OUT/label_noise.csv"
