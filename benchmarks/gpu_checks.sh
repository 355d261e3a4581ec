#!/usr/bin/env bash
# Every check that needs a CUDA GPU, in one run: a lent GPU machine gives minutes, not hours.
#
# Here, where PyPI is reachable: wheels for the GPU machine's Python (3.12 there), since
# pyyaml, markupsafe and charset-normalizer ship per-version binaries:
#   pip download -d .wheels --only-binary=:all: --python-version 3.12 cookiecutter torchinfo
#   pip wheel -w .wheels --no-deps prefetch_generator               # it has no wheel on PyPI
# There (carry .wheels):
#   bash benchmarks/gpu_checks.sh [OUT_DIR]
#
# 1. bakes the default project with smoke_test=required: its smoke step trains on every
#    backend the machine has, CUDA included;
# 2. runs the baked project's CUDA tests (no sync outside log steps, fp16 with accumulation and
#    clipping, compile, the smoke step on cuda) beside the timing and prefetch tests;
# 3. trains under torchrun (NCCL, one process, with the stop agreement on its own gloo group)
#    with bf16, channels_last and compile; --max-steps 40 stops it part-way through its first
#    epoch (62 steps), so there is no best.pt yet: last.pt is the one exported;
#    Then exports that run to .pt2 and predicts on cuda with it and with the checkpoint;
# 4. benchmarks: loop overhead on CUDA (bench_loop.py), then the data pipeline and the
#    precision / layout / compile variants (bench_cuda.py), then predict.py vs test.py
#    (bench_predict.py). Their JSON lines are the numbers.
# Without a CUDA device it stops after step 2 (whose CUDA tests then skip). Exits non-zero if
# any step failed.
set -u -o pipefail
out=$(realpath -m "${1:-${OUT:-/tmp/gpu_checks}}")
repo=$(pwd)
rm -rf "$out/bake" "$out/runs"
mkdir -p "$out"
failed=0
if [ -d .wheels ]; then
    pip install --quiet --no-index --find-links .wheels cookiecutter prefetch_generator torchinfo
fi
step() {
    echo "=== $*"
    "$@" 2>&1 | tail -n 40 || { failed=1; echo "=== FAILED: $*"; }
}
python -c "import sys, torch; print(sys.version.split()[0], 'torch', torch.__version__,
      torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA device')"

step python -m cookiecutter "$repo" --no-input smoke_test=required -o "$out/bake"
project="$out/bake/image-classifier"
cd "$project" || exit 1
step python -m pytest -q -rs tests/engine/test_precision.py tests/engine/test_timing.py tests/engine/test_prefetch.py \
    tests/engine/test_cli.py
python -c "import torch; raise SystemExit(not torch.cuda.is_available())" || exit $failed

step torchrun --nproc_per_node=1 train.py --epochs 1 --max-steps 40 --log-every 10 \
    --amp bf16 --channels-last --compile --out-dir "$out/runs" --run-name gpu
# The trained model on the GPU: a .pt2 export moved to cuda, then predict.py on a few images.
step python export.py --checkpoint "$out/runs/gpu/checkpoints/last.pt" --format pt2 \
    --output "$out/gpu.pt2"
python -c "import sys, numpy as np; from PIL import Image; [Image.fromarray(np.random.default_rng(i)
    .integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(f'{sys.argv[1]}/image{i}.png')
    for i in range(8)]" "$out"
step python predict.py --model "$out/gpu.pt2" --device cuda "$out"/image*.png
step python predict.py --checkpoint "$out/runs/gpu/checkpoints/last.pt" --device cuda "$out"/image*.png
cd "$repo" || exit 1
step python benchmarks/bench_loop.py --project "$project" --device cuda --rounds 3 --steps 200
step python benchmarks/bench_cuda.py --project "$project" --steps 200
step python benchmarks/bench_predict.py --project "$project" --device cuda --rounds 2
exit $failed
