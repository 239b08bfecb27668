#!/usr/bin/env bash
# One prepared run on a machine with a CUDA GPU: the GPU tests with real CuPy, then a
# short side-by-side benchmark (scikit-learn, daskgmm cpu, daskgmm cuda).
#
#   bash benchmarks/gpu_check.sh            # results in $OUT (default /tmp/daskgmm-gpu-check)
#
# Python packages the machine lacks can travel as wheels in .whl/ (installed to /tmp/site
# without an index); daskgmm itself is used from this checkout.
set -u
OUT=${OUT:-/tmp/daskgmm-gpu-check}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/nvidia.txt"
python3 -c "import cupy, numpy, scipy, sklearn, dask, distributed, zarr; print('cupy', cupy.__version__, 'numpy', numpy.__version__, 'scipy', scipy.__version__, 'sklearn', sklearn.__version__, 'dask', dask.__version__, 'zarr', zarr.__version__)" | tee "$OUT/versions.txt"
timeout "${TEST_TIMEOUT:-200}" python3 -m pytest -q -x -p no:cacheprovider tests/test_gpu.py 2>&1 | tee "$OUT/test_gpu.log"
timeout "${BENCH_TIMEOUT:-220}" python3 benchmarks/gpu.py ${BENCH_ARGS:---shape 300000,16,16 --shape 200000,64,16 --types full,diag --repeat 2} --out "$OUT" 2>&1 | tee "$OUT/bench.log"
