#!/usr/bin/env bash
# The whole test suite: library in sync with notebooks, every notebook's tests, pytest tests/.
# Ends with a timing line per phase and one line counting what ran: "tests: N passed, M failed".
# The lessons run in Jupyter kernels (tools/docs_check.py --execute-only, NB_WORKERS at a time); their executed
# notebooks stay in _docs_check/executed/, where `make docs-check` finds and reuses them instead of executing again.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
export MPLBACKEND=Agg PYTHONWARNINGS=${PYTHONWARNINGS:-}
# generated data for tests goes to a throwaway cache unless the caller chose one
export VIVIT_EDU_CACHE=${VIVIT_EDU_CACHE:-$(mktemp -d)}

snapshot() { # content hash of the exported library and the notebooks
  find vivit_edu nbs README.md settings.ini -type f \( -name '*.py' -o -name '*.ipynb' -o -name README.md -o -name settings.ini \) \
    -not -path '*/.ipynb_checkpoints/*' \
    -not -path '*/__pycache__/*' | LC_ALL=C sort | xargs sha1sum
}
passed=0; failed=0
t_start=$(date +%s)

echo "== 1/3 nbdev-export + nbdev-clean must change nothing (library in sync with notebooks)"
before=$(snapshot)
"$BIN/nbdev-export" && "$BIN/nbdev-clean" && "$BIN/python" tools/make_readme.py && "$BIN/python" tools/make_settings.py
after=$(snapshot)
if [ "$before" == "$after" ]; then
  echo "in sync"; passed=$((passed+1))
else
  echo "FAILED: these files changed; run nbdev-export, nbdev-clean (and tools/make_settings.py for settings.ini), then commit:"
  diff <(echo "$before") <(echo "$after") | grep '^[<>]' | awk '{print "  " $3}' | sort -u
  failed=$((failed+1))
fi
t_sync=$(( $(date +%s) - t_start ))
[ "${1:-}" == "--only-sync" ] && { echo "sync: $passed passed, $failed failed"; [ $failed -eq 0 ]; exit; }

# The lessons (in kernels, NB_WORKERS at a time) and pytest are independent: with NB_PARALLEL=1 (the default) the
# lessons run in the background while pytest runs (pytest is mostly one process: the two fill 2 cores); their report
# is printed when pytest is done. NB_PARALLEL=0 runs them one after the other.
NB_PARALLEL=${NB_PARALLEL:-1}
NB_WORKERS=${NB_WORKERS:-$( [ "$NB_PARALLEL" = 1 ] && echo 1 || echo 2 )}   # kernels at once: 1 beside pytest, else 2
nb_log=$(mktemp)
run_lessons() {
  local t0=$(date +%s)
  "$BIN/python" tools/docs_check.py --execute-only --workers "$NB_WORKERS" > "$nb_log" 2>&1
  local rc=$?
  echo "exit $rc in $(( $(date +%s) - t0 )) s" >> "$nb_log.rc"
}
lessons_report() {
  echo "== 2/3 every notebook's tests: each lesson executed in a kernel (cells flagged slow/cuda/data skipped)"
  cat "$nb_log"
  read -r np nf < <(sed -n 's/^lessons: \([0-9]*\) passed, \([0-9]*\) failed.*/\1 \2/p' "$nb_log" | tail -1)
  local rc; rc=$(sed -n 's/^exit \([0-9]*\) in.*/\1/p' "$nb_log.rc"); t_nb=$(sed -n 's/^exit [0-9]* in \([0-9]*\) s/\1/p' "$nb_log.rc")
  if [ -z "${np:-}" ]; then np=0; nf=1; elif [ "${rc:-1}" -ne 0 ] && [ "$nf" -eq 0 ]; then nf=1; fi
  passed=$((passed+np)); failed=$((failed+nf))
}
if [ "$NB_PARALLEL" = 1 ]; then
  echo "== 2/3 every notebook's tests: running in the background alongside pytest (report below, after pytest)"
  run_lessons & nb_pid=$!
else
  run_lessons; lessons_report
fi

echo "== 3/3 pytest tests/ (the 15 slowest are listed; ${PYTEST_WORKERS:-2} processes)"
t0=$(date +%s)
report=$(mktemp)
# PYTEST_WORKERS pytest processes (pytest-xdist, a dev dependency), whole test files to each: many tests wait on
# subprocesses (torchrun, Ctrl-C, JupyterLab) and leave a core idle that the other process fills. 0: one process.
PYTEST_WORKERS=${PYTEST_WORKERS:-2}
xdist=(); [ "$PYTEST_WORKERS" != 0 ] && xdist=(-n "$PYTEST_WORKERS" --dist loadfile)
"$BIN/python" -m pytest tests -q -p no:cacheprovider --durations=15 --junitxml="$report" "${xdist[@]}"
rc=$?
if [ $rc -ne 0 ] && [ $rc -ne 5 ]; then failed=$((failed+1)); fi
read -r pt pf < <("$BIN/python" - "$report" <<'PY'
import sys, xml.etree.ElementTree as ET
try:
    r = ET.parse(sys.argv[1]).getroot(); s = r if r.tag == "testsuite" else r.find("testsuite")
    t, f, e, sk = (int(s.get(k, 0)) for k in ("tests", "failures", "errors", "skipped"))
    print(t - f - e - sk, f + e)
except Exception: print(0, 1)
PY
)
passed=$((passed+pt)); failed=$((failed+pf))
t_py=$(( $(date +%s) - t0 ))
if [ "$NB_PARALLEL" = 1 ]; then wait "$nb_pid"; lessons_report; fi
echo "timing: sync ${t_sync} s, notebooks ${t_nb:-?} s, pytest ${t_py} s$( [ "$NB_PARALLEL" = 1 ] && echo " (notebooks alongside pytest)"), total $(( $(date +%s) - t_start )) s"
echo "tests: $passed passed, $failed failed"
[ $failed -eq 0 ]
