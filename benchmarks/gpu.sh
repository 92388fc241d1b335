#!/usr/bin/env bash
# The GPU half of polyloss in one command: install, conformance on the GPU, CPU-vs-GPU agreement, benchmarks.
#
#   bash benchmarks/gpu.sh WHEELS_DIR [OUT_DIR]        # on a machine with an NVIDIA GPU (under 8 minutes)
#   bash benchmarks/gpu.sh --dry-run WHEELS_DIR [OUT]  # the same steps on the CPU, small, to test the script
#
# Expects torch (CUDA build), jax[cuda] and cupy already installed in the Python on PATH (TensorFlow may be
# absent). Installs, without network, polyloss itself and its small pure-Python dependencies from
# WHEELS_DIR into that Python, then writes everything into OUT_DIR (default gpu-results-<date>):
#
#   env.txt            nvidia-smi, Python, the frameworks' versions and devices
#   check-<fw>.txt     polyloss check --devices cuda,gpu for torch, jax and cupy (run side by side)
#   test_gpu.txt       pytest tests/test_gpu.py: every case, CPU against GPU, values and gradients
#   bench_*.md         bench_multilabel, bench_classification (torch on cuda, JAX on its GPU) as Markdown
#   bench_metrics.md   best_threshold (against one NumPy argsort) and best_threshold_vector
#   summary.txt        each step's exit status and duration
#
# Preparing WHEELS_DIR on a machine with network (same Python version as the GPU machine):
#
#   pip wheel --no-deps -w wheels .                                   # polyloss itself (or let the script
#                                                                     #  build it from this tree)
#   pip download -d wheels --only-binary=:all: -c .ci/constraints.txt \
#       array-api-compat array-api-strict hypothesis pytest pytest-xdist mpmath \
#       sortedcontainers attrs iniconfig pluggy packaging pygments execnet
#
# (optax for the JAX native rows of the benchmarks, if it is not installed already: add `optax chex
# toolz` to the list.) Each step has its own time limit (install ~1 min, the checks 2 min side by side,
# test_gpu 2.5 min, the benchmarks 2.5 min: 8 minutes at most), so that one that hangs cannot take the
# others' time; a step that runs out is recorded in summary.txt with what it wrote so far.
set -uo pipefail
cd "$(dirname "$0")/.."

dry_run=0
if [ "${1:-}" = "--dry-run" ]; then
    dry_run=1
    shift
fi
wheels="${1:?usage: bash benchmarks/gpu.sh [--dry-run] WHEELS_DIR [OUT_DIR]}"
out="${2:-gpu-results-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
wheels="$(cd "$wheels" && pwd)"
summary="$out/summary.txt"
: > "$summary"
export TF_CPP_MIN_LOG_LEVEL=3 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1
# JAX must not take the whole GPU: torch and CuPy run beside it
export XLA_PYTHON_CLIENT_PREALLOCATE=false

step() {  # step NAME SECONDS COMMAND...: run, record status and duration, never stop the script
    local name="$1" limit="$2"
    shift 2
    local start=$SECONDS
    timeout "$limit" "$@"
    local status=$?
    printf '%-28s exit %3d  %4d s%s\n' "$name" "$status" "$((SECONDS - start))" \
        "$([ "$status" -eq 124 ] && echo "  (timed out after $limit s)")" | tee -a "$summary"
    return 0
}

# --- 1. install, no network ------------------------------------------------------------------------
# into the Python on PATH (where the GPU frameworks are; a --system-site-packages venv made from a venv's
# Python would not see them); what is already installed stays
install() {
    local deps=(array-api-compat array-api-strict hypothesis pytest pytest-xdist mpmath)
    python -m pip install -q --no-index --find-links "$wheels" "${deps[@]}" || return 1
    if python -c "import polyloss.backends" 2> /dev/null && [ "$dry_run" -eq 1 ]; then
        return 0  # the dry run keeps the developer's (editable) install
    fi
    if ls "$wheels"/polyloss-*.whl > /dev/null 2>&1; then
        python -m pip install -q --no-index --find-links "$wheels" --force-reinstall --no-deps polyloss
    else  # no polyloss wheel given: this tree, built without network (setuptools from the system)
        python -m pip install -q --no-index --no-build-isolation --no-deps .
    fi
}
start=$SECONDS
install
printf '%-28s exit %3d  %4d s\n' install "$?" "$((SECONDS - start))" | tee -a "$summary"
python - > "$out/env.txt" 2>&1 <<'EOF'
import importlib, platform, subprocess
print("python", platform.python_version())
try:
    print(subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=30).stdout)
except (OSError, subprocess.TimeoutExpired) as exc:
    print("nvidia-smi:", exc)
import polyloss
from polyloss import backends
print("polyloss", polyloss.__version__, polyloss.__file__)
for name, status in backends.available_backends().items():
    line = f"{name}: {'importable' if status is None else status}"
    if status is None:
        try:
            line += " devices " + ", ".join(label for label, _ in backends.get_backend(name).devices())
        except Exception as exc:  # a framework without a working driver
            line += f" devices: {type(exc).__name__}: {exc}"
    print(line)
EOF
cat "$out/env.txt"

gpu_backends=()
for fw in torch jax cupy; do
    if python -c "import sys; from polyloss import backends as b; a = b.get_backend('$fw'); \
sys.exit(0 if any(l.startswith(('cuda', 'gpu')) for l, _ in a.devices()) else 1)" 2> /dev/null; then
        gpu_backends+=("$fw")
    fi
done
echo "frameworks with a GPU: ${gpu_backends[*]:-none}" | tee -a "$summary"
if [ "${#gpu_backends[@]}" -eq 0 ] && [ "$dry_run" -eq 0 ]; then
    echo "no GPU visible to torch, jax or cupy: nothing to run (--dry-run runs the steps on the CPU)" | tee -a "$summary"
    exit 1
fi

if [ "$dry_run" -eq 1 ]; then
    devices=cpu
    check_backends=(torch jax)
    check_extra=(--functions multilabel_crossentropy,sigmoid_crossentropy,best_threshold --dtypes float32)
    bench_extra=(--repeats 2 --examples 256 --classes 100)
    bench_ml_extra=(--tables 1)
    metrics_extra=(--quick --sizes 1e4 --parts 1,3)
    bench_device=cpu
else
    devices=cuda,gpu
    check_backends=("${gpu_backends[@]}")
    check_extra=()
    bench_extra=(--repeats 20)
    bench_ml_extra=()
    metrics_extra=(--quick --parts 1,3)
    bench_device=cuda
fi

# --- 2. polyloss check on the GPU, the frameworks side by side ----------------------------------------
pids=()
for fw in "${check_backends[@]}"; do
    modes=eager
    [ "$fw" = jax ] && modes=jit  # eager JAX compiles every operation: minutes; jit is what users run
    ( step "check $fw ($modes)" 120 polyloss check --backends "$fw" --modes "$modes" --devices "$devices" \
        "${check_extra[@]}" > "$out/check-$fw.txt" 2>&1 ) &
    pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
grep -h "rows (" "$out"/check-*.txt | tee -a "$summary"

# --- 3. CPU against GPU, every case ----------------------------------------------------------------------
workers=$(( ${#gpu_backends[@]} > 1 ? ${#gpu_backends[@]} : 1 ))
# on a GPU only the GPU comparisons (-m gpu; one worker per framework); the dry run checks the comparison's
# code on the CPU instead (array-api-strict's second device) and the CuPy registration
test_select=(-m gpu)
[ "$dry_run" -eq 1 ] && test_select=(-k "second_device or registered")
step "tests/test_gpu.py" 150 python -m pytest -q -rs -p no:cacheprovider -n "$workers" "${test_select[@]}" \
    tests/test_gpu.py > "$out/test_gpu.txt" 2>&1
grep -E "passed|failed|error" "$out/test_gpu.txt" | tail -n 1 | tee -a "$summary"

# --- 4. benchmarks ---------------------------------------------------------------------------------------
bench_frameworks=torch,jax
python -c "import tensorflow" 2> /dev/null && [ "$dry_run" -eq 0 ] && bench_frameworks=torch,jax,tensorflow
step "bench_multilabel" 60 python benchmarks/bench_multilabel.py --markdown --no-memory --device "$bench_device" \
    --frameworks "$bench_frameworks" "${bench_extra[@]}" "${bench_ml_extra[@]}" > "$out/bench_multilabel.md" 2>&1
step "bench_classification" 60 python benchmarks/bench_classification.py --markdown --device "$bench_device" \
    --frameworks "$bench_frameworks" "${bench_extra[@]}" > "$out/bench_classification.md" 2>&1
step "bench_metrics" 30 python benchmarks/bench_metrics.py --markdown "${metrics_extra[@]}" > "$out/bench_metrics.md" 2>&1

echo "results in $out" | tee -a "$summary"
