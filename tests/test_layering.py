"""The package's one front door: `vivit_edu/cli.py` is the only module that reads a command line (imports `argparse`) and
no library module imports it, so the command line sits on top of the import graph (issue 20). Read from the source with
`ast`, so an import inside a function counts as much as one at the top of a module."""
import ast, os, subprocess, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "vivit_edu"
TOP = {"cli.py", "__main__.py"}                                   # the command line and `python -m vivit_edu`


def imported_modules(path: Path) -> set[str]:
    "Absolute names of every module `path` imports (anywhere in the file), relative imports resolved."
    package = list(path.relative_to(ROOT).parent.parts)           # e.g. ["vivit_edu", "data"] for data/datasets.py
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import): names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            names.add(mod)
            names |= {f"{mod}.{a.name}" for a in node.names}      # `from . import cli` imports the module vivit_edu.cli
    return names


def library_modules():
    return sorted(p for p in PACKAGE.rglob("*.py") if p.name not in TOP or p.parent != PACKAGE)


def test_the_checker_sees_imports():
    "The checker itself: cli.py imports argparse, __main__ imports the cli, lower modules resolve relative imports."
    assert "argparse" in imported_modules(PACKAGE / "cli.py")
    assert "vivit_edu.cli" in imported_modules(PACKAGE / "__main__.py")
    assert "vivit_edu.core" in imported_modules(PACKAGE / "data" / "datasets.py")     # `from ..core import cache_dir`
    assert "vivit_edu.train" in imported_modules(PACKAGE / "distributed.py")          # `from .train import ...`


@pytest.mark.parametrize("path", library_modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_library_module_reads_no_command_line(path):
    names = imported_modules(path)
    assert "argparse" not in names, f"{path}: imports argparse; command lines belong in vivit_edu/cli.py"
    assert not any(n == "vivit_edu.cli" or n.startswith("vivit_edu.cli.") for n in names), \
        f"{path}: imports vivit_edu.cli, which must stay on top of the package (move the shared code into the library)"


def test_importing_the_package_leaves_the_cli_out():
    code = "import sys, vivit_edu, vivit_edu.inference, vivit_edu.distributed; print('vivit_edu.cli' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stderr[-2000:]


def test_help_lists_every_command_on_one_line():
    r = subprocess.run([sys.executable, "-m", "vivit_edu", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "COLUMNS": "80"})
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    for name in ("demo", "experiment", "data", "train", "predict", "ddp-demo"):
        line = [l for l in lines if l.split()[:1] == [name]]
        assert len(line) == 1 and len(line[0].split()) > 3, (name, r.stdout)        # the name and its help, one line
