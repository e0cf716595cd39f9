#!/usr/bin/env bash
# The whole test suite: library in sync with notebooks, every notebook's tests, pytest tests/.
# Ends with one line counting what ran: "tests: N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
NB_WORKERS=${NB_WORKERS:-1}
export MPLBACKEND=Agg PYTHONWARNINGS=${PYTHONWARNINGS:-}
# generated data for tests goes to a throwaway cache unless the caller chose one
export VIVIT_EDU_CACHE=${VIVIT_EDU_CACHE:-$(mktemp -d)}

snapshot() { # content hash of the exported library and the notebooks
  find vivit_edu nbs README.md settings.ini -type f \( -name '*.py' -o -name '*.ipynb' -o -name README.md -o -name settings.ini \) \
    -not -path '*/.ipynb_checkpoints/*' \
    -not -path '*/__pycache__/*' | LC_ALL=C sort | xargs sha1sum
}
passed=0; failed=0

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
[ "${1:-}" == "--only-sync" ] && { echo "sync: $passed passed, $failed failed"; [ $failed -eq 0 ]; exit; }

echo "== 2/3 nbdev-test over every notebook (flags slow/cuda/data skipped)"
nbs=$(find nbs -name '*.ipynb' -not -name '_*' -not -path '*/.ipynb_checkpoints/*' | wc -l)
t0=$(date +%s)
if "$BIN/nbdev-test" --n-workers "$NB_WORKERS" --timing; then
  passed=$((passed+nbs)); echo "notebooks: $nbs passed in $(( $(date +%s)-t0 )) s"
else
  failed=$((failed+1)); echo "notebooks: FAILED (see above)"
fi

echo "== 3/3 pytest tests/"
report=$(mktemp)
"$BIN/python" -m pytest tests -q -p no:cacheprovider --junitxml="$report"
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
echo "tests: $passed passed, $failed failed"
[ $failed -eq 0 ]
