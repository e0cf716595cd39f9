#!/usr/bin/env python
"""Record a `make demo` run in the repository: the numbers lessons and the README quote come from here.

    .venv/bin/python tools/record_demo.py [REPORT_DIR] [--seconds S]

copies REPORT_DIR (default reports/demo) to bench/results/demo/: report.md, table1.csv, table2.csv, curves.png,
confusions.png and the first seed's ViViT (vivit/model.safetensors + model.json, which lesson 13 reads), and writes
bench/results/demo/run.md: when, on which machine, with which command and in how many seconds (--seconds: the wall
time of the whole `make demo`, measured by the caller). tests/test_demo_record.py checks that lessons 12 and 17 and the README quote
these files' numbers.
"""
import argparse, datetime, os, platform, shutil, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FILES = ("report.md", "table1.csv", "table2.csv", "curves.png", "confusions.png", "methods.png", "vivit/model.safetensors", "vivit/model.json")

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("report", nargs="?", default=str(ROOT / "reports" / "demo"))
    p.add_argument("--seconds", type=float, help="wall time of the whole make demo")
    p.add_argument("--command", default="make demo")
    a = p.parse_args(argv)
    src, dst = Path(a.report), ROOT / "bench" / "results" / "demo"
    missing = [f for f in FILES if not (src / f).is_file()]
    if missing: print(f"record_demo: {src} lacks {missing}: run make demo first", file=sys.stderr); return 2
    shutil.rmtree(dst, ignore_errors=True)
    for f in FILES:
        (dst / f).parent.mkdir(parents=True, exist_ok=True); shutil.copy2(src / f, dst / f)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    lines = [f"# The recorded demo run", "",
             f"- when: {datetime.date.today().isoformat()}; code: commit {commit or '?'}",
             f"- machine: {os.cpu_count()} CPU cores, {platform.machine()}, {platform.system()}, Python {platform.python_version()}",
             f"- command: `{a.command}`" + (f", {a.seconds:.0f} s in all (wall clock)" if a.seconds else ""),
             "- the tables, with every seed: `report.md`, `table1.csv`, `table2.csv`; figures: `curves.png`, `confusions.png`",
             "- the first seed's ViViT: `vivit/` (lesson 13 reads it)", ""]
    (dst / "run.md").write_text("\n".join(lines))
    print(f"recorded {src} -> {dst}")
    return 0

if __name__ == "__main__": sys.exit(main())
