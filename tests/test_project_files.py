"""The files an nbdev user expects beside the notebooks: settings.ini, the GitHub workflows, CONTRIBUTING.md.

- settings.ini is generated from pyproject.toml (tools/make_settings.py): it must match, agree with what nbdev 3
  reads, and nbdev 3 must keep reading pyproject.toml (export, test, clean) with a contradicting settings.ini beside it.
- .github/workflows/*.yaml pass actionlint and do what they are for (test: `make test` on push and pull request;
  deploy: `nbdev-docs`, then publish the doc folder).
- CONTRIBUTING.md names commands and files that exist.
"""
import configparser
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
_spec = importlib.util.spec_from_file_location("make_settings", ROOT / "tools" / "make_settings.py")
ms = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ms)
WORKFLOWS = ROOT / ".github" / "workflows"


def read_ini(path: Path) -> dict:
    "settings.ini as nbdev 2 read it (fastcore's Config: configparser with %(...)s interpolation, [DEFAULT])."
    cp = configparser.ConfigParser()
    cp.read(path)
    return dict(cp["DEFAULT"])


# --- settings.ini ---------------------------------------------------------------------------------------

def test_settings_ini_is_generated_from_pyproject():
    ini = ROOT / "settings.ini"
    assert ini.exists(), "settings.ini is missing: run tools/make_settings.py"
    assert ini.read_text() == ms.render(ROOT / "pyproject.toml"), \
        "settings.ini and pyproject.toml disagree: run tools/make_settings.py (pyproject.toml wins)"
    assert ini.read_text().startswith("# Generated from pyproject.toml by tools/make_settings.py")
    assert "pyproject.toml wins" in ini.read_text()
    readme = " ".join((ROOT / "README.md").read_text().split())            # the README says which file wins
    assert "`pyproject.toml` wins: `settings.ini` beside it is generated from it" in readme


def test_settings_ini_has_the_usual_nbdev2_keys_with_nbdev3s_values():
    from nbdev.config import get_config
    ini, cfg = read_ini(ROOT / "settings.ini"), get_config(ROOT)
    py = tomllib.loads((ROOT / "pyproject.toml").read_text())
    usual = ("repo lib_name version description keywords author author_email copyright branch min_python license "
             "requirements dev_requirements console_scripts lib_path nbs_path doc_path recursive tst_flags "
             "user git_url doc_host doc_baseurl title readme_nb clean_ids jupyter_hooks").split()
    assert not [k for k in usual if k not in ini], [k for k in usual if k not in ini]
    for k in ("lib_name", "version", "min_python", "description", "author", "author_email", "branch", "title",
              "user", "repo", "git_url", "doc_host", "doc_baseurl", "readme_nb"):
        assert ini[k] == str(getattr(cfg, k)), (k, ini[k], getattr(cfg, k))
    for k in ("recursive", "clean_ids", "jupyter_hooks", "clear_all", "put_version_in_init", "cell_timeout"):
        assert ini[k] == str(getattr(cfg, k)), (k, ini[k], getattr(cfg, k))
    for k in ("lib_path", "nbs_path", "doc_path"):                      # nbdev 3 gives these as absolute paths
        assert ROOT / ini[k] == cfg[k], (k, ini[k], cfg[k])
    assert ini["tst_flags"].split() == list(cfg.tst_flags) == ["slow", "cuda", "data"]
    assert ini["keywords"].split() == list(cfg.keywords)
    assert ini["requirements"].split() == py["project"]["dependencies"]
    assert ini["dev_requirements"].split() == py["project"]["optional-dependencies"]["dev"]
    assert ini["console_scripts"] == "vivit-edu=vivit_edu.cli:main"
    assert (ini["license"], ini["audience"], ini["status"], ini["language"]) == ("apache2", "Education", "3", "English")


def _copy_project(tmp_path: Path) -> Path:
    for f in ("pyproject.toml", "settings.ini", "vivit_edu/__init__.py"):
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / f, tmp_path / f)
    return tmp_path


def test_the_check_fails_when_pyproject_or_the_version_changes(tmp_path, capsys):
    root = _copy_project(tmp_path)
    assert ms.main(["--check"], root=root) == 0
    py = root / "pyproject.toml"
    py.write_text(py.read_text().replace('requires-python = ">=3.10"', 'requires-python = ">=3.12"'))
    assert ms.main(["--check"], root=root) == 1
    assert "settings.ini is out of date" in capsys.readouterr().err
    assert ms.main([], root=root) == 0                                   # regenerate: pyproject wins
    assert read_ini(root / "settings.ini")["min_python"] == "3.12" and ms.main(["--check"], root=root) == 0
    init = root / "vivit_edu" / "__init__.py"
    init.write_text(init.read_text().replace('__version__ = "', '__version__ = "9'))
    assert ms.main(["--check"], root=root) == 1
    (root / "settings.ini").unlink()
    assert ms.main(["--check"], root=root) == 1


def test_settings_values_round_trip_through_configparser():
    "A `%` (configparser's interpolation) and lists survive; a value that cannot be one ini line is refused."
    py = {"project": {"name": "x", "description": "100% offline", "dependencies": ["a>=1", "b"]}, "tool": {"nbdev": {}}}
    s = ms.settings(py, "1.0")
    cp = configparser.ConfigParser(); cp.read_string("[DEFAULT]\n" + "\n".join(f"{k} = {v}" for k, v in s.items()))
    assert cp["DEFAULT"]["description"] == "100% offline" and cp["DEFAULT"]["requirements"] == "a>=1 b"
    assert cp["DEFAULT"]["nbs_path"] == "nbs"                            # nbdev 3's default fills a key left out
    with pytest.raises(SystemExit, match="contains a space"):
        ms.settings({**py, "project": {**py["project"], "dependencies": ["a ; python_version<'3.11'"]}}, "1.0")
    with pytest.raises(SystemExit, match="no \\[tool.nbdev\\]"):
        ms.settings({"project": {"name": "x"}}, "1.0")


def _nb(*cells) -> str:
    return json.dumps({"cells": [{"cell_type": "code", "execution_count": 7, "id": f"c{i}",
                                  "metadata": {"collapsed": True, "scrolled": True}, "outputs": [],
                                  "source": src} for i, src in enumerate(cells)],
                       "metadata": {"kernelspec": {"display_name": "python3", "language": "python", "name": "python3"}},
                       "nbformat": 4, "nbformat_minor": 5})


def test_nbdev3_reads_pyproject_with_a_contradicting_settings_ini_beside_it(tmp_path):
    """nbdev-export, nbdev-test and nbdev-clean in a tiny project whose settings.ini names another library folder,
    another notebook folder and other test flags: nbdev 3 follows pyproject.toml."""
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "tiny_lib"\ndynamic = ["version"]\nrequires-python = ">=3.10"\n\n'
        '[tool.nbdev]\nlib_path = "tiny_lib"\nnbs_path = "nbs"\ntst_flags = ["slow"]\njupyter_hooks = false\n')
    (tmp_path / "settings.ini").write_text(
        "[DEFAULT]\nrepo = wrong\nlib_name = wrong_lib\nlib_path = wrong_lib\nnbs_path = wrong_nbs\ntst_flags = notest\n"
        "version = 0.0.1\n")
    (tmp_path / "tiny_lib").mkdir()
    (tmp_path / "tiny_lib" / "__init__.py").write_text('__version__ = "0.0.1"\n')
    (tmp_path / "nbs").mkdir()
    nb = tmp_path / "nbs" / "00_core.ipynb"
    nb.write_text(_nb("#| default_exp core", "#| export\ndef add(a, b): return a + b", "assert add(1, 2) == 3",
                      "#| slow\nraise AssertionError('a slow cell ran: the test flags came from settings.ini')",
                      "#| notest\nassert add(2, 2) == 4"))
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    run = lambda *cmd: subprocess.run([str(BIN / cmd[0]), *cmd[1:]], cwd=tmp_path, env=env, capture_output=True,
                                      text=True, timeout=300)
    p = run("nbdev-export")
    assert p.returncode == 0, p.stderr
    assert "def add(a, b)" in (tmp_path / "tiny_lib" / "core.py").read_text()
    assert not (tmp_path / "wrong_lib").exists() and not (tmp_path / "wrong_nbs").exists()
    p = run("nbdev-test")                                                # skips `slow` (pyproject), runs `notest`
    assert p.returncode == 0, p.stdout + p.stderr
    nb.write_text(_nb("#| default_exp core", "#| export\ndef add(a, b): return a + b", "assert add(1, 2) == 4"))
    p = run("nbdev-test")                                                # and it does run the notebook
    assert p.returncode != 0 and "AssertionError" in p.stdout + p.stderr
    p = run("nbdev-clean")
    assert p.returncode == 0, p.stderr
    cleaned = json.loads(nb.read_text())["cells"]
    assert [c["execution_count"] for c in cleaned] == [None] * 3 and all(c["metadata"] == {} for c in cleaned)
    # without pyproject.toml nbdev 3 refuses settings.ini alone: pyproject.toml is the configuration
    (tmp_path / "pyproject.toml").unlink()
    p = run("nbdev-export")
    assert p.returncode != 0 and "Found old settings.ini" in p.stderr


# --- GitHub workflows -------------------------------------------------------------------------------------

def actionlint() -> str:
    exe = shutil.which("actionlint", path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if exe is None:
        pytest.fail("actionlint is not installed: it is in the dev extras (pip install -e '.[dev]')")
    return exe


def test_workflows_pass_actionlint():
    files = sorted(WORKFLOWS.glob("*.yaml"))
    assert [f.name for f in files] == ["deploy.yaml", "test.yaml"]
    p = subprocess.run([actionlint(), "-color=false", *map(str, files)], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


@pytest.mark.parametrize("old,new,message", [
    ("runs-on: ubuntu-latest", "runs-on: ubuntu-latst", "label \"ubuntu-latst\" is unknown"),
    ("${{ github.workflow }}", "${{ github.workflw }}", "property \"workflw\" is not defined"),
    ("actions/setup-python@v6", "actions/setup-python@v1", "is retired"),
])
def test_actionlint_catches_a_broken_workflow(tmp_path, old, new, message):
    text = (WORKFLOWS / "test.yaml").read_text()
    assert old in text
    bad = tmp_path / ".github" / "workflows" / "test.yaml"
    bad.parent.mkdir(parents=True)
    bad.write_text(text.replace(old, new))
    p = subprocess.run([actionlint(), "-color=false", str(bad)], cwd=tmp_path, capture_output=True, text=True)
    assert p.returncode == 1 and message in p.stdout, p.stdout + p.stderr


def _workflow(name: str) -> dict:
    wf = yaml.safe_load((WORKFLOWS / name).read_text())
    wf["on"] = wf.pop(True, wf.get("on"))                               # YAML 1.1 reads the key `on` as True
    return wf


def _steps(wf: dict) -> list[dict]:
    (job,) = wf["jobs"].values()
    return job["steps"]


def test_the_test_workflow_runs_make_test_on_push_and_pull_request():
    wf = _workflow("test.yaml")
    assert {"push", "pull_request"} <= set(wf["on"])
    steps = _steps(wf)
    uses = [s.get("uses", "").split("@")[0] for s in steps]
    assert uses[:2] == ["actions/checkout", "actions/setup-python"]
    assert str(steps[1]["with"]["python-version"]) == "3.11"
    assert steps[-1]["run"].strip() == "make test"


def test_the_deploy_workflow_builds_with_nbdev_docs_and_publishes_the_doc_folder():
    wf = _workflow("deploy.yaml")
    assert wf["on"]["push"]["branches"] == ["main"]
    steps = _steps(wf)
    runs = [s.get("run", "").strip() for s in steps]
    build = runs.index("nbdev-docs")
    assert any("quarto" in r for r in runs[:build]), "Quarto must be installed before nbdev-docs"
    publish = steps[-1]
    doc_path = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["nbdev"]["doc_path"]
    assert publish["uses"].startswith("peaceiris/actions-gh-pages@")
    assert Path(publish["with"]["publish_dir"]) == Path(doc_path)
    assert wf["permissions"]["contents"] == "write"


# --- CONTRIBUTING.md ----------------------------------------------------------------------------------------

def test_contributing_names_commands_and_files_that_exist():
    text = (ROOT / "CONTRIBUTING.md").read_text()
    for must in ("nbdev-export", "nbdev-clean", "make test", "nbdev-install-hooks", "nbdev-test nbs/",
                 "python -m pytest tests/", "Numbers in prose"):
        assert must in text, must
    commands = set(re.findall(r"\.venv/bin/([\w-]+)", text))
    assert {"nbdev-export", "nbdev-clean", "nbdev-test", "nbdev-install-hooks"} <= commands
    missing = [c for c in commands if not (BIN / c).exists()]
    assert not missing, f"CONTRIBUTING.md names commands the venv does not have: {missing}"
    paths = set(re.findall(r"(?<![\w/.])((?:nbs|tests|tools|bench)/[\w./-]+\.(?:ipynb|py|sh))", text)) - {"nbs/NN_module.name.ipynb"}
    assert "nbs/13_viz.ipynb" in paths and "tests/test_vivit.py" in paths
    assert not [p for p in paths if not (ROOT / p).exists()], [p for p in paths if not (ROOT / p).exists()]
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
    assert not {t for t in re.findall(r"`make ([\w-]+)", text)} - targets
