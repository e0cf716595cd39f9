#!/usr/bin/env bash
# The whole test suite: library in sync with notebooks, every notebook's tests, pytest tests/.
# Ends with a timing line per phase and one line counting what ran: "tests: N passed, M failed".
# The lessons run in Jupyter kernels (tools/docs_check.py --execute-only, NB_WORKERS at a time); their executed
# notebooks stay in _docs_check/executed/, where `make docs-check` finds and reuses them instead of executing again.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
NB_WORKERS=${NB_WORKERS:-2}
export MPLBACKEND=Agg PYTHONWARNINGS=${PYTHONWARNINGS:-}
# generated data for tests goes to a throwaway cache unless the caller chose one
export VIVIT_EDU_CACHE=${VIVIT_EDU_CACHE:-$(mktemp -d)}

snapshot() { # content hash of the exported library and the notebooks
  find vivit_edu nbs README.md -type f \( -name '*.py' -o -name '*.ipynb' -o -name README.md \) -not -path '*/.ipynb_checkpoints/*' \
    -not -path '*/__pycache__/*' | LC_ALL=C sort | xargs sha1sum
}
passed=0; failed=0
t_start=$(date +%s)

echo "== 1/3 nbdev-export + nbdev-clean must change nothing (library in sync with notebooks)"
before=$(snapshot)
"$BIN/nbdev-export" && "$BIN/nbdev-clean" && "$BIN/python" tools/make_readme.py
after=$(snapshot)
if [ "$before" == "$after" ]; then
  echo "in sync"; passed=$((passed+1))
else
  echo "FAILED: these files changed; run nbdev-export and nbdev-clean, then commit:"
  diff <(echo "$before") <(echo "$after") | grep '^[<>]' | awk '{print "  " $3}' | sort -u
  failed=$((failed+1))
fi
t_sync=$(( $(date +%s) - t_start ))
[ "${1:-}" == "--only-sync" ] && { echo "sync: $passed passed, $failed failed"; [ $failed -eq 0 ]; exit; }

echo "== 2/3 every notebook's tests: each lesson executed in a kernel (cells flagged slow/cuda/data skipped)"
t0=$(date +%s)
nb_log=$(mktemp)
"$BIN/python" tools/docs_check.py --execute-only --workers "$NB_WORKERS" | tee "$nb_log"
rc=${PIPESTATUS[0]}
read -r np nf < <(sed -n 's/^lessons: \([0-9]*\) passed, \([0-9]*\) failed.*/\1 \2/p' "$nb_log" | tail -1)
if [ -z "${np:-}" ]; then np=0; nf=1; elif [ "$rc" -ne 0 ] && [ "$nf" -eq 0 ]; then nf=1; fi
passed=$((passed+np)); failed=$((failed+nf))
t_nb=$(( $(date +%s) - t0 ))

echo "== 3/3 pytest tests/ (the 15 slowest are listed)"
t0=$(date +%s)
report=$(mktemp)
"$BIN/python" -m pytest tests -q -p no:cacheprovider --durations=15 --junitxml="$report"
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
echo "timing: sync ${t_sync} s, notebooks ${t_nb} s, pytest ${t_py} s, total $(( $(date +%s) - t_start )) s"
echo "tests: $passed passed, $failed failed"
[ $failed -eq 0 ]
