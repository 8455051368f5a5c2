#!/usr/bin/env bash
# Every GPU measurement of mtp in one call: backbone (ViT-B/L, reference / sdpa / flex, train / inference,
# bf16 / fp32, regional compile), the task training steps (default path vs reference path), the CUDA
# numerics tests and the per-step cost (kernels, FLOPs, saved activations). Prints one table (targets,
# anchors, measured values) and writes under OUT:
#   gpu_suite.md    the table (paste into docs/PERFORMANCE.md)
#   gpu_suite.json  every measurement, the step log (exit code, seconds) and the target evaluation
#   gpu_suite.log   the output of every step
#   env.txt         GPU, driver, Python and package versions
#
# Usage (repository root):
#   benchmarks/gpu_suite.sh                         # on a CUDA machine; about 8 minutes (--budget)
#   benchmarks/gpu_suite.sh --only backbone_b,numerics
#   benchmarks/gpu_suite.sh --device cpu --tiny     # dry run: every command at tiny sizes, GPU-image imports
# Options: --out DIR (default $OUT, else ./gpu_suite_out), --budget SECONDS (default 470, CPU 3000; steps
# that no longer fit are reported as not run), --python PY (default python3), --only a,b / --skip a,b (step
# names below). Each step has its own time limit (x6 on CPU); a failing step is logged, the next one runs.
#
# The device tool (a lent H100/H200): nothing to install, its image has torch, triton, timm, lightning,
# torchmetrics, pytest; the command is `benchmarks/gpu_suite.sh` (results come back from $OUT).
set -uo pipefail

DEVICE=cuda
TINY=0
OUT_DIR="${OUT:-$PWD/gpu_suite_out}"
BUDGET=""
PY=python3
ONLY=""
SKIP=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --device) DEVICE="$2"; shift 2 ;;
        --tiny) TINY=1; shift ;;
        --out) OUT_DIR="$2"; shift 2 ;;
        --budget) BUDGET="$2"; shift 2 ;;
        --python) PY="$2"; shift 2 ;;
        --only) ONLY=",$2,"; shift 2 ;;
        --skip) SKIP=",$2,"; shift 2 ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "gpu_suite.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

# CPU dry runs are slower per step than the GPU run: six times the limits, a budget of 50 minutes.
SCALE=1
[[ "$DEVICE" == cpu ]] && SCALE=6
[[ -z "$BUDGET" ]] && BUDGET=$(( SCALE == 1 ? 470 : 3000 ))
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 2
mkdir -p "$OUT_DIR" || exit 2
RAW="$(mktemp -d "${TMPDIR:-/tmp}/gpu_suite.XXXXXX")"
export PYTHONPATH="$ROOT/src:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
if [[ "$DEVICE" == cpu ]]; then
    # Dry run: make the packages that the GPU image lacks unimportable, so a stray import fails here.
    mkdir -p "$RAW/gpu_image"
    cat > "$RAW/gpu_image/sitecustomize.py" <<'PYEOF'
import sys


class _NotOnGpuImage:
    MISSING = {"shapely", "pycocotools", "rasterio", "jsonargparse"}

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.MISSING:
            raise ModuleNotFoundError(f"No module named {name!r} (not on the GPU image; gpu_suite.sh dry run)")
        return None


sys.meta_path.insert(0, _NotOnGpuImage())
PYEOF
    export PYTHONPATH="$RAW/gpu_image:$PYTHONPATH"
fi
START=$(date +%s)
LOG="$OUT_DIR/gpu_suite.log"
: > "$LOG"
printf 'step\trc\tseconds\tlimit\n' > "$RAW/steps.tsv"

# step NAME LIMIT_SECONDS COMMAND...: run with a time limit (clipped to what is left of the budget),
# append its output to the log, record exit code and duration. 124/137: stopped at its limit.
step() {
    local name="$1" limit=$(( $2 * SCALE )); shift 2
    if [[ -n "$ONLY" && "$ONLY" != *",$name,"* ]] || [[ "$SKIP" == *",$name,"* ]]; then return 0; fi
    local left=$(( BUDGET - ($(date +%s) - START) - 15 ))
    if (( left < 20 )); then
        printf '%s\tskipped\t0\t%s\n' "$name" "$limit" >> "$RAW/steps.tsv"
        echo "== $name: not run (budget of ${BUDGET}s spent)" | tee -a "$LOG"
        return 0
    fi
    (( limit > left )) && limit=$left
    echo "== $name (limit ${limit}s): $*" | tee -a "$LOG"
    local t0=$(date +%s)
    timeout -k 10 "$limit" "$@" >> "$LOG" 2>&1
    local rc=$?
    local dt=$(( $(date +%s) - t0 ))
    printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$dt" "$limit" >> "$RAW/steps.tsv"
    echo "   -> exit $rc after ${dt}s" | tee -a "$LOG"
}

{
    echo "date: $(date -u +%FT%TZ)"
    echo "device: $DEVICE tiny: $TINY budget: ${BUDGET}s"
    git -C "$ROOT" log -1 --format='commit: %H %s' 2>/dev/null || echo "commit: unknown (no git)"
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv
    "$PY" -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())"
    "$PY" -c "import triton; print('triton', triton.__version__)" 2>/dev/null || echo "triton: not installed"
    "$PY" -c "import timm, torchvision; print('timm', timm.__version__, 'torchvision', torchvision.__version__)"
} > "$OUT_DIR/env.txt" 2>&1
cat "$OUT_DIR/env.txt"

if [[ "$TINY" == 1 ]]; then
    # Every command of the real run, at sizes a CPU finishes in seconds.
    BB=(--tiny --img-size 64 --batch-train 2 --batch-infer 2 --steps 1 --warmup 1 --repeats 1)
    BB_L=("${BB[@]}")
    SEG=(--img-size 64 --batch 2 --scene 128 --crop 64 --stride 48 --steps 1)
    ROT=(--img-size 128 --batch 1 --steps 1 --boxes 50)
    PRE=(--img-size 96 --batch 1 --steps 1 --warmup 0 --objects 3)
    CHG=(--img-size 64 --batch 1 --steps 1 --infer 1)
    CLS=(--img-size 64 --batch 2 --steps 1)
    DET=(--img-size 128 --batch 1 --steps 1)
    COST=(--tiny --img-size 64 --batch 2)
    COMPILE_BACKEND=eager
else
    BB=(--img-size 512 --batch-train 8 --batch-infer 16 --steps 10 --warmup 3 --repeats 1)
    BB_L=("${BB[@]}")
    SEG=(--img-size 512 --batch 8 --scene 2048 --steps 10)
    ROT=(--img-size 1024 --batch 2 --steps 5 --boxes 2000)
    PRE=(--img-size 448 --batch 3 --steps 3 --warmup 1)
    CHG=(--img-size 256 --batch 8 --steps 10 --infer 20)
    CLS=(--img-size 224 --batch 64 --steps 10)
    DET=(--img-size 800 --batch 2 --steps 5)
    COST=(--img-size 512 --batch 8)
    COMPILE_BACKEND=inductor
fi
D=(--device "$DEVICE")
J() { echo "$RAW/$1.json"; }

# In order of importance: what does not fit the budget is reported as not run.
step backbone_b 150 "$PY" benchmarks/backbone.py "${D[@]}" --models vit_b_rvsa "${BB[@]}" --dtypes bf16 \
    --impls reference sdpa flex --json "$(J backbone_b)"
step backbone_b_fp32 45 "$PY" benchmarks/backbone.py "${D[@]}" --models vit_b_rvsa "${BB[@]}" --dtypes fp32 \
    --impls reference sdpa --json "$(J backbone_b_fp32)"
step numerics 170 "$PY" -m pytest -p no:cacheprovider -q -rfEs -m "gpu and not slow" --timeout 160 \
    --junitxml "$RAW/numerics.xml" tests/models/backbones/test_vit_rvsa_cuda.py tests/ops/rotated/test_nms.py \
    tests/metrics/test_segmentation.py
step segmentation 45 "$PY" benchmarks/segmentation.py "${D[@]}" "${SEG[@]}" --dtypes bf16 \
    --attn-impls auto reference --json "$(J segmentation)"
step rotated_detection 60 "$PY" benchmarks/rotated_detection.py "${D[@]}" "${ROT[@]}" --dtypes bf16 \
    --attn-impls auto reference --json "$(J rotated_detection)"
step pretraining 75 "$PY" benchmarks/pretraining.py "${D[@]}" "${PRE[@]}" --modes fp32 bf16 \
    --attn-impls auto reference --json "$(J pretraining)"
step change_detection 30 "$PY" benchmarks/change_detection.py "${D[@]}" "${CHG[@]}" --dtypes bf16 \
    --attn-impls auto reference --json "$(J change_detection)"
step classification 30 "$PY" benchmarks/classification.py "${D[@]}" "${CLS[@]}" --dtypes bf16 \
    --attn-impls auto reference --json "$(J classification)"
step backbone_l 120 "$PY" benchmarks/backbone.py "${D[@]}" --models vit_l_rvsa "${BB_L[@]}" --dtypes bf16 \
    --impls reference sdpa flex --json "$(J backbone_l)"
step compile_b 120 "$PY" benchmarks/backbone.py "${D[@]}" --models vit_b_rvsa "${BB[@]}" --dtypes bf16 \
    --impls sdpa flex --compile-blocks --compile-backend "$COMPILE_BACKEND" --json "$(J compile_b)"
step cost_b 60 "$PY" benchmarks/backbone_cost.py "${D[@]}" --models vit_b_rvsa "${COST[@]}" --dtypes bf16 \
    --json "$(J cost_b)"
step detection 45 "$PY" benchmarks/detection.py "${D[@]}" "${DET[@]}" --dtypes bf16 \
    --attn-impls auto reference --json "$(J detection)"
step backbone_l_fp32 40 "$PY" benchmarks/backbone.py "${D[@]}" --models vit_l_rvsa "${BB_L[@]}" --dtypes fp32 \
    --impls reference --json "$(J backbone_l_fp32)"

"$PY" benchmarks/gpu_suite_report.py --raw "$RAW" --out "$OUT_DIR" --device "$DEVICE" $([[ "$TINY" == 1 ]] && echo --tiny)
rc=$?
echo "total $(( $(date +%s) - START ))s; results in $OUT_DIR"
rm -rf "$RAW"
exit $rc
