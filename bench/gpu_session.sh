#!/usr/bin/env bash
# The one prepared command for a session that is lent a GPU (the `device` tool). It checks and times the GPU paths
# and leaves its logs and tables under $OUT (default bench/results/gpu_session/), at most 8 files:
#   env.log, cuda_tests.log (tests/test_cuda.py), train_bench.log + train.md + train.json (bench/gpu_train.py),
#   inference_bench.log (bench/inference.py on the GPU), summary.txt (one line per step: exit status, seconds).
# Each step has its own time limit; the limits add up to 560 s, inside one device call's 600 s (tests/test_bench.py
# checks it), so the summary is always written. gpu_train.py rewrites train.md/train.json after every row and stops
# starting rows after --budget-s, so even a step stopped at its limit leaves its tables.
# With the machine's start-up, one call fits the session's 15 minutes of device time.
#
#   here, once:    make gpu-wheels          # PyAV for the device's Python 3.12 into .whl/ (git-ignored; ~35 MB)
#   device call:   run(command="bash bench/gpu_session.sh", carry=[".whl"], timeout_s=600)
#   afterwards:    copy train.md / the logs from the returned files into bench/results/<card>.md and commit
#   dry run here:  DRY=1 PY=.venv/bin/python bash bench/gpu_session.sh   # the same steps on the CPU (small shapes)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results/gpu_session}; mkdir -p "$OUT"
PY=${PY:-python3}
DEVICE=cuda; [ "${DRY:-0}" = 1 ] && { DEVICE=cpu; export VIVIT_EDU_CUDA_DRY_RUN=1; }
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg VIVIT_EDU_CACHE=${VIVIT_EDU_CACHE:-/tmp/vivit_edu_cache}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if ls .whl/*.whl >/dev/null 2>&1; then              # packages the device image lacks (PyAV)
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi
: > "$OUT/summary.txt"
step() {  # step NAME LIMIT_S COMMAND...: run with a time limit, log to $OUT/NAME.log, one summary line
  local name=$1 limit=$2; shift 2
  local t0=$(date +%s)
  echo "== $name (limit ${limit} s)"
  timeout -k 10 "$limit" "$@" > "$OUT/$name.log" 2>&1; local rc=$?
  tail -n 40 "$OUT/$name.log"
  echo "$name: exit $rc in $(( $(date +%s) - t0 )) s$( [ $rc -eq 124 ] && echo ' (time limit)')" | tee -a "$OUT/summary.txt"
}
step env 40 bash -c "nvidia-smi -L; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv; \
  $PY -c 'import torch, av, vivit_edu; c = torch.cuda.is_available(); print(\"torch\", torch.__version__, \"cuda\", \
  torch.version.cuda, \"av\", av.__version__, \"device\", torch.cuda.get_device_name(0) if c else \"cpu\", \
  \"bf16\", c and torch.cuda.is_bf16_supported())'"
step cuda_tests 200 $PY -m pytest tests/test_cuda.py -q -p no:cacheprovider -rs
step train_bench 270 $PY bench/gpu_train.py --out "$OUT/train.md" --budget-s 170
step inference_bench 50 $PY bench/inference.py --device "$DEVICE" --presets tiny,small --hops 1,4 --repeats 2
echo "== summary"; cat "$OUT/summary.txt"
