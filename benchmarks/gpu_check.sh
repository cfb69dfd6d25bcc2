#!/usr/bin/env bash
# The GPU path checked in one run, the first time a GPU is at hand:
#
#     bash benchmarks/gpu_check.sh OUTDIR            # every part, in order
#     bash benchmarks/gpu_check.sh OUTDIR PART ...   # only these (to rerun one that failed)
#
# Parts, each under its own time limit (its output in OUTDIR/<part>.log). The limits, the check
# for a GPU and the kill grace add up to 477 s: within 8 minutes on one H100, compiles included
# (registration compiles the 24 kernel variants in each process that uses the GPU).
#   versions      Python, NumPy, Numba and which numba.cuda (numba's own or numba-cuda), CuPy,
#                 the CUDA runtime and driver, NVVM, the GPU, NCCL, PyTorch -> OUTDIR/versions.txt
#   compile       every CUDA kernel variant compiled for sm_90 through NVVM, without np.row_stack
#                 (tests/gpu/test_cuda_sim.py; needs the CUDA compiler libraries, not a GPU)
#   tests         pytest -m gpu tests/gpu/test_gpu.py: kernels and models on CuPy against the CPU
#   benchmark     benchmarks/gpu.py --quick -> OUTDIR/gpu-benchmark.md, written section by
#                 section; fails when a correctness number is over its bound
#   train-toy     minigan train --device cuda, 20 steps of the toy WGAN-GP (8 Gaussians, MLPs)
#   train-dcgan   minigan train --device cuda, 20 steps of the DCGAN WGAN-GP (bundled digits)
#
# It runs from the working tree (PYTHONPATH=$PWD; nothing is installed, nothing downloaded), goes
# on past a failing part and ends with OUTDIR/summary.txt, one line a part. Exit status:
#   0  every part passed
#   1  a part failed (or timed out)
#   2  no GPU here (CuPy, a device or numba.cuda missing): the GPU parts were skipped, each
#      saying "no GPU" and why, and the others ran; or a usage error (one line, nothing run)
# OUTDIR must be new or empty: an earlier run's results are never overwritten.
set -u

usage="usage: bash benchmarks/gpu_check.sh OUTDIR [PART ...]; parts: versions compile tests benchmark train-toy train-dcgan"
ALL_PARTS="versions compile tests benchmark train-toy train-dcgan"
if [ $# -lt 1 ]; then
    echo "gpu_check: $usage" >&2
    exit 2
fi
OUT=$1
shift
PARTS=${*:-$ALL_PARTS}
for part in $PARTS; do
    case " $ALL_PARTS " in
        *" $part "*) ;;
        *) echo "gpu_check: unknown part '$part'; $usage" >&2; exit 2 ;;
    esac
done
if [ -e "$OUT" ] && { [ ! -d "$OUT" ] || [ -n "$(ls -A "$OUT")" ]; }; then
    echo "gpu_check: $OUT exists and is not an empty folder; give a new one (earlier results are kept)" >&2
    exit 2
fi
mkdir -p "$OUT" || { echo "gpu_check: cannot create $OUT" >&2; exit 2; }
OUT=$(cd "$OUT" && pwd)

cd "$(dirname "$0")/.." || exit 2
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python}
# pytest without the project's addopts (xdist workers, -m 'not slow'): one process, as here
PYTEST="$PY -m pytest -o addopts= -p no:cacheprovider -q -rs"

# Why the GPU path is unavailable ("" when CuPy, a device and numba.cuda are all there)
NO_GPU=$(timeout 30 "$PY" -c '
try:
    import cupy
    if not cupy.cuda.is_available():
        raise RuntimeError("CuPy sees no CUDA device")
    from numba import cuda
    if not cuda.is_available():
        raise RuntimeError("numba.cuda sees no CUDA device")
except Exception as exc:  # ImportError, driver errors, a broken install
    print(" ".join(f"{type(exc).__name__}: {exc}".split())[:400])
' 2>/dev/null)
[ $? -eq 0 ] || NO_GPU=${NO_GPU:-"the check for a GPU itself failed"}

status=0
: > "$OUT/summary.txt"
note() { echo "$1" | tee -a "$OUT/summary.txt"; }

# run_part NAME LIMIT_S NEEDS_GPU COMMAND...: the command under `timeout`, output to NAME.log
run_part() {
    local name=$1 limit=$2 needs_gpu=$3
    shift 3
    case " $PARTS " in *" $name "*) ;; *) return ;; esac
    if [ "$needs_gpu" = gpu ] && [ -n "$NO_GPU" ]; then
        note "$name: SKIPPED, no GPU: $NO_GPU"
        [ $status -eq 1 ] || status=2
        return
    fi
    local start=$SECONDS rc
    echo "$name: running (at most ${limit}s) ..." >&2
    timeout --kill-after=2 "$limit" "$@" > "$OUT/$name.log" 2>&1
    rc=$?
    local took=$((SECONDS - start))
    if [ $rc -eq 0 ]; then
        note "$name: PASSED in ${took}s"
    elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        note "$name: FAILED, timed out after ${limit}s (see $name.log)"
        status=1
    else
        note "$name: FAILED, exit $rc in ${took}s (see $name.log)"
        status=1
    fi
}

VERSIONS_PY=$(cat <<'EOF'
import importlib.metadata as md
import platform
import subprocess
import sys

lines = []


def show(label, get):
    try:
        value = get()
    except Exception as exc:  # every line says what it could not find, and the rest go on
        value = "unavailable: " + " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
    lines.append(f"{label}: {value}")
    print(lines[-1], flush=True)


def numba_cuda_kind():
    from numba import config, cuda
    where = cuda.__file__
    kind = (f"numba-cuda {md.version('numba-cuda')}" if "numba_cuda" in where
            else "numba's built-in numba.cuda")
    return f"{kind} ({where}){', SIMULATOR ON' if config.ENABLE_CUDASIM else ''}"


def nvvm():
    from numba.cuda.cudadrv import nvvm
    return ".".join(map(str, nvvm.NVVM().get_version()))


def gpus():
    import cupy
    out = []
    for i in range(cupy.cuda.runtime.getDeviceCount()):
        p = cupy.cuda.runtime.getDeviceProperties(i)
        name = p["name"].decode() if isinstance(p["name"], bytes) else p["name"]
        out.append(f"#{i} {name}, sm_{p['major']}{p['minor']}, {p['multiProcessorCount']} SMs, "
                   f"{p['totalGlobalMem'] / 2**30:.1f} GiB")
    return "; ".join(out)


def gpu_memory():
    import cupy
    free, total = cupy.cuda.runtime.memGetInfo()
    return f"{free / 2**30:.1f} GiB free of {total / 2**30:.1f} GiB"


def torch_cuda():
    import torch
    return f"{torch.__version__}, CUDA {torch.version.cuda}, sees a GPU: {torch.cuda.is_available()}"


def commit():
    return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()


show("minigan commit", commit)
show("Python", lambda: f"{platform.python_version()} on {platform.platform()}")
show("NumPy", lambda: __import__("numpy").__version__)
show("NumPy has row_stack", lambda: hasattr(__import__("numpy"), "row_stack"))
show("Numba", lambda: __import__("numba").__version__)
show("numba.cuda", numba_cuda_kind)
show("numba.cuda sees a GPU", lambda: __import__("numba").cuda.is_available())
show("NVVM", nvvm)
show("CuPy", lambda: f"{__import__('cupy').__version__} ({', '.join(d.metadata['Name'] for d in md.distributions() if d.metadata['Name'].lower().startswith('cupy'))})")
show("CUDA runtime (CuPy)", lambda: __import__("cupy").cuda.runtime.runtimeGetVersion())
show("CUDA driver", lambda: __import__("cupy").cuda.runtime.driverGetVersion())
show("GPUs", gpus)
show("GPU memory", gpu_memory)
show("NCCL (CuPy)", lambda: f"available: {getattr(__import__('cupy.cuda.nccl').cuda.nccl, 'available', True)}")
show("PyTorch", torch_cuda)
with open(sys.argv[1], "w") as f:
    f.write("\n".join(lines) + "\n")
EOF
)

run_part versions 15 any "$PY" -c "$VERSIONS_PY" "$OUT/versions.txt"
run_part compile 60 any $PYTEST tests/gpu/test_cuda_sim.py -k test_kernels_compile_for_a_real_gpu_target
run_part tests 150 gpu $PYTEST -m gpu tests/gpu/test_gpu.py
run_part benchmark 90 gpu "$PY" benchmarks/gpu.py --quick --out "$OUT/gpu-benchmark.md"
run_part train-toy 50 gpu "$PY" -m minigan train --device cuda --no-progress --steps 20 \
    --preset toy --loss wgan-gp --model mlp --data 8gaussians --eval-samples 500 --out "$OUT/train-toy"
run_part train-dcgan 70 gpu "$PY" -m minigan train --device cuda --no-progress --steps 20 \
    --loss wgan-gp --model dcgan --data digits --batch-size 64 --out "$OUT/train-dcgan"

case $status in
    0) note "gpu_check: every part passed" ;;
    1) note "gpu_check: a part failed (see its log in $OUT)" ;;
    2) note "gpu_check: no GPU here, the GPU parts were skipped: nothing on a GPU was checked" ;;
esac
exit $status
