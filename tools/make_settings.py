"""Write settings.ini (nbdev 2's configuration file) from pyproject.toml, the file nbdev 3 reads.

nbdev 3 takes its configuration from `pyproject.toml` only: `[project]` (name, description, authors, ...) and
`[tool.nbdev]` (paths, test flags, ...). With both files present it never opens `settings.ini` (and a lone
`settings.ini` makes it stop with "Found old settings.ini"). This script writes the usual nbdev-2 keys from
pyproject.toml, so nbdev-2-era tools and readers find them where they look; pyproject.toml wins, always.
nbdev 3's own defaults (`nbdev.config.nbdev_defaults`) fill the nbdev keys pyproject.toml leaves out.

Run by the sync check (`tools/test_all.sh`, phase 1) and by hand after editing pyproject.toml;
`--check` only says whether settings.ini is up to date (exit 1 if not). tests/test_project_files.py
checks that the two files agree and that nbdev 3 reads pyproject.toml when both are there.
"""
from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

HEADER = """\
# Generated from pyproject.toml by tools/make_settings.py: do not edit; change pyproject.toml and rerun the script.
# pyproject.toml wins: nbdev 3 reads [project] and [tool.nbdev] there and ignores this file when both exist.
# This file only gives nbdev-2-era tools and readers the usual keys (values as nbdev 3 sees them).
"""

# nbdev 2's short license names (its setup.py template), from the SPDX identifiers pyproject uses
LICENSES = {"Apache-2.0": "apache2", "MIT": "mit", "GPL-2.0": "gpl2", "GPL-3.0": "gpl3", "BSD-3-Clause": "bsd3"}
# nbdev 2's `status` is the number of the "Development Status :: N - ..." classifier
CLASSIFIER_KEYS = {"Intended Audience": "audience", "Natural Language": "language", "Development Status": "status"}

# sections and keys in the order of nbdev 2's settings.ini template; keys from [tool.nbdev] not named here
# (this project's own or nbdev 3's newer ones) go to the nbdev section after these
SECTIONS = {
    "Python library": ["repo", "lib_name", "version", "min_python", "license", "black_formatting"],
    "nbdev": ["doc_path", "lib_path", "nbs_path", "recursive", "tst_flags", "put_version_in_init", "readme_nb",
              "jupyter_hooks", "clean_ids", "clear_all"],
    "Docs": ["branch", "custom_sidebar", "doc_host", "doc_baseurl", "git_url", "title"],
    "PyPI": ["audience", "author", "author_email", "copyright", "description", "keywords", "language", "status", "user"],
    "Optional": ["requirements", "dev_requirements", "console_scripts"],
}


def read_version(lib_path: Path) -> str:
    "`__version__` of the library, read the way nbdev and setuptools' `attr:` find it, without importing it."
    m = re.search(r"""^__version__\s*=\s*['"]([^'"]+)['"]""", (lib_path / "__init__.py").read_text(), re.M)
    if not m: raise SystemExit(f"no __version__ = '...' line in {lib_path / '__init__.py'}")
    return m.group(1)


def _ini_value(v) -> str:
    "A settings.ini value: lists space-separated (nbdev 2's convention), booleans True/False, `%` escaped."
    if isinstance(v, bool): s = str(v)
    elif isinstance(v, (list, tuple)):
        if any(" " in str(x) for x in v): raise SystemExit(f"cannot write {v!r} space-separated: an item contains a space")
        s = " ".join(str(x) for x in v)
    else: s = str(v)
    if "\n" in s: raise SystemExit(f"cannot write a multi-line value to settings.ini: {s!r}")
    return s.replace("%", "%%")          # configparser interpolates %(...)s


def settings(pyproject: dict, version: str, defaults: dict | None = None) -> dict[str, str]:
    "The settings.ini keys in nbdev 2's order, from a parsed pyproject.toml and the library's version."
    if defaults is None:
        from nbdev.config import nbdev_defaults as defaults     # what nbdev 3 assumes for keys left out
    proj, nb = pyproject.get("project", {}), pyproject.get("tool", {}).get("nbdev")
    if nb is None: raise SystemExit("pyproject.toml has no [tool.nbdev] table: this is not an nbdev 3 project")
    urls = proj.get("urls", {})
    git_url = (urls.get("Repository") or urls.get("Source") or "").rstrip("/")
    user, repo = git_url.split("/")[-2:] if git_url.count("/") >= 4 else ("", "")
    m = re.match(r"(https?://[^/]+)(/.*)?$", urls.get("Documentation", ""))
    doc_host, doc_baseurl = (m.group(1), (m.group(2) or "/").rstrip("/") or "/") if m else ("", "")
    author = (proj.get("authors") or [{}])[0]
    classifiers = dict(c.split(" :: ")[:2] for c in proj.get("classifiers", []) if " :: " in c)
    out = dict(
        repo=repo, lib_name=proj["name"], version=version, min_python=(proj.get("requires-python") or "").lstrip(">="),
        license=LICENSES.get(proj.get("license", ""), proj.get("license", "")), black_formatting=False,
        doc_host=doc_host, doc_baseurl=doc_baseurl, git_url=git_url, title=nb.get("title") or proj["name"],
        author=author.get("name", ""), author_email=author.get("email", ""), description=proj.get("description", ""),
        keywords=proj.get("keywords", []), user=user,
        requirements=proj.get("dependencies", []), dev_requirements=proj.get("optional-dependencies", {}).get("dev", []),
        console_scripts=[f"{k}={v}" for k, v in proj.get("scripts", {}).items()],
    )
    for prefix, key in CLASSIFIER_KEYS.items():
        if prefix in classifiers: out[key] = classifiers[prefix].split(" - ")[0]   # "3 - Alpha" -> "3"
    for k in SECTIONS["nbdev"] + ["branch", "custom_sidebar"]:                    # nbdev 2 keys nbdev 3 also has
        if k in nb or k in defaults: out[k] = nb.get(k, defaults.get(k))
    out.update({k: v for k, v in nb.items() if k not in out and not isinstance(v, dict)})   # the rest of [tool.nbdev]
    order = [k for ks in SECTIONS.values() for k in ks]
    return {k: _ini_value(out[k]) for k in order + sorted(set(out) - set(order)) if k in out}


def render(pyproject_path: Path = ROOT / "pyproject.toml") -> str:
    "The text of settings.ini for the project whose pyproject.toml is `pyproject_path`."
    py = tomllib.loads(pyproject_path.read_text())
    lib_path = py.get("tool", {}).get("nbdev", {}).get("lib_path") or py["project"]["name"].replace("-", "_")
    where = {k: name for name, ks in SECTIONS.items() for k in ks}
    lines, section = [HEADER + "[DEFAULT]"], None
    for k, v in settings(py, read_version(pyproject_path.parent / lib_path)).items():
        sec = where.get(k, "more from [tool.nbdev]")
        if sec != section: lines.append(f"\n### {sec} ###"); section = sec
        lines.append(f"{k} = {v}".rstrip())
    return "\n".join(lines) + "\n"


def main(argv=None, root: Path = ROOT) -> int:
    argv = sys.argv[1:] if argv is None else argv
    target, text = root / "settings.ini", render(root / "pyproject.toml")
    if "--check" in argv:
        if target.exists() and target.read_text() == text: return 0
        print("settings.ini is out of date with pyproject.toml: run tools/make_settings.py", file=sys.stderr)
        return 1
    if not (target.exists() and target.read_text() == text):
        target.write_text(text)
        print(f"wrote {target.relative_to(root)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
