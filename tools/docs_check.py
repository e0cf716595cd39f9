#!/usr/bin/env python
"""Docs check: do the lesson pages render, with their math, figures and widgets, and without errors?

What it does (run it as `make docs-check`, or `.venv/bin/python tools/docs_check.py [--only RE] [--keep] [--workers N]`):

0. checks the Quarto/nbdev docs settings (`_quarto.yml`, `[tool.nbdev]`, `nbs/styles.css`);
1. runs nbdev's docs processing, `nbdev-proc-nbs` (what `nbdev-docs` does before Quarto), and then
   `nbdev-sidebar` (nbdev-proc-nbs writes a sidebar that lists every file in nbs/);
2. executes every lesson notebook (nbs/*.ipynb, not `_*`) in a real kernel with nbclient and
   `store_widget_state=True`, skipping the cells nbdev-test skips (`tst_flags` from pyproject, always
   including slow/cuda/data, and `#| eval: false`) by tagging them `skip-execution`, `--workers` lessons at
   a time; MPLBACKEND is unset so the kernel's inline backend makes figures, torch gets 1 thread, and
   VIVIT_EDU_CACHE is a throwaway folder unless set. Each lesson is executed once: `make test` runs this
   step alone (`--execute-only`: the lessons' tests, failing on any error, timeout or stall, naming the
   lesson and the cell) and the docs check reuses those executions when the lesson and the library are
   unchanged since (a fingerprint in the notebook's metadata), executing only the others;
3. converts each executed notebook to HTML with nbconvert, with MathJax 2, require.js and the
   widget manager (@jupyter-widgets/html-manager@1) served from local npm packages that it installs
   into a cache folder (CDNs may be unreachable; a page offline must still render);
4. opens every page in headless Chromium (`apt-get install -y chromium` when missing and allowed),
   dumps the DOM after its JavaScript ran and checks it: all cells rendered, math typeset (MathJax
   output present, no raw TeX left), figures present, widget snapshots rendered, no errors shown;
   it also screenshots the home page and one lesson (13_viz, else 05_layers.attention: its top, and
   the section of its first widget or figure as <page>.figure.png) into reports/docs_check/;
5. prints a table and exits 1 naming each page and problem if a check fails (2: setup problem).

Executed notebooks, HTML and dumped DOMs go to `_docs_check/` (removed at the end unless `--keep`
or a check failed; `--execute-only` leaves its executions there for the docs check); nbs/ is never written, except nbdev's generated nbs/nbdev.yml and nbs/sidebar.yml
(nbdev-proc-nbs also fills _proc/ and rebuilds vivit_edu/_modidx.py, unchanged when the library is in sync).
The checking functions (`check_page`, `notebook_facts`, `has_math`, `raw_tex`, ...) are pure, so
tests/test_docs_check.py tests them on small synthetic pages and notebooks; it also executes small notebooks
(timeouts, errors, widgets: see `LessonClient` on jupyter/nbclient issue 312, and reuse).
"""
from __future__ import annotations

import argparse
import atexit
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# cells carrying these nbdev flags need a GPU or the real datasets: never executed here
ALWAYS_SKIP_FLAGS = ("slow", "cuda", "data")
SKIP_TAG = "skip-execution"  # nbclient's NotebookClient.skip_cells_with_tag default
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS")

NPM_PACKAGES = ("mathjax@2", "@jupyter-widgets/html-manager@1", "requirejs@2")
# file each package must provide, relative to node_modules, and the major version wanted
NPM_FILES = {
    "mathjax": ("mathjax/MathJax.js", 2),
    "@jupyter-widgets/html-manager": ("@jupyter-widgets/html-manager/dist/embed-amd.js", 1),
    "requirejs": ("requirejs/require.js", 2),
}
MATHJAX_CONFIG = "TeX-AMS_CHTML-full,Safe"  # as nbconvert's default URL asks for

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")
VIRTUAL_TIME_MS = 15000
SCREENSHOT_SIZE = "1280,2400"

IMAGE_MIMES = ("image/png", "image/jpeg")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
STDERR_MIME = "application/vnd.jupyter.stderr"
WIDGET_FAILURE_TEXTS = ("Loading widget...", "Error rendering widget", "Error displaying widget",
                        "Click to show javascript error", "Could not create a view", "Failed to load model class")


# ----------------------------------------------------------------------------------------------
# pure helpers: notebooks
# ----------------------------------------------------------------------------------------------

def lesson_notebooks(nbs_dir: Path, only: str | None = None) -> list[Path]:
    "Lesson notebooks in `nbs_dir` (not `_*`, not checkpoints), sorted, optionally filtered by regex on the stem."
    nbs = sorted(p for p in Path(nbs_dir).glob("*.ipynb") if not p.name.startswith(("_", ".")))
    if only: nbs = [p for p in nbs if re.search(only, p.stem)]
    return nbs


def skip_flags(tst_flags) -> list[str]:
    "The nbdev flags whose cells are not executed: pyproject's `tst_flags` plus slow/cuda/data."
    if isinstance(tst_flags, str): tst_flags = tst_flags.split()
    return sorted(set(tst_flags or ()) | set(ALWAYS_SKIP_FLAGS))


def cells_to_skip(nb_path: Path, flags) -> set[int]:
    """Indices of the code cells nbdev-test would not run in the notebook at `nb_path`: cells flagged
    with one of `flags`, `#| eval: false`, `nbdev_export()` calls, frontmatter `skip_exec`.
    Uses nbdev's own selection (`nbdev.test.nb_test_cells`) so the two never disagree."""
    from nbdev.test import nb_test_cells
    nb = json.loads(Path(nb_path).read_text(encoding="utf-8"))
    run = {c.idx_ for c in nb_test_cells(nb_path, skip_flags=list(flags))}
    return {i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code" and i not in run}


def mark_skipped(nb: dict, skip: set[int]) -> dict:
    "Tag the cells in `skip` with nbclient's skip tag (in place); returns `nb`."
    for i in skip:
        tags = nb["cells"][i].setdefault("metadata", {}).setdefault("tags", [])
        if SKIP_TAG not in tags: tags.append(SKIP_TAG)
    return nb


def _src(cell) -> str:
    s = cell.get("source", "")
    return "".join(s) if isinstance(s, list) else s


_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.S | re.M)
_INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
_HTML_CODE = re.compile(r"<(code|pre)\b.*?</\1>", re.S | re.I)
_DISPLAY_MATH = re.compile(r"\$\$.+?\$\$", re.S)
# pandoc's rule: an opening $ is followed by a non-space, a closing $ is preceded by a non-space and
# not followed by a digit; so "costs $5 and $10" is not math
_INLINE_MATH = re.compile(r"(?<![\\$])\$(?=[^\s$])[^$\n]+?(?<=[^\s\\])\$(?!\d)")
_OTHER_MATH = re.compile(r"\\\(|\\\[|\\begin\{[a-zA-Z*]+\}")


def strip_code(md: str) -> str:
    "Markdown source without fenced code blocks, inline code spans and <code>/<pre> elements."
    return _INLINE_CODE.sub(" ", _HTML_CODE.sub(" ", _FENCE.sub(" ", md)))


def has_math(md: str) -> bool:
    "Does this markdown source contain TeX math ($...$, $$...$$, \\(..\\), \\[..\\], \\begin{env})?"
    s = strip_code(md)
    return bool(_DISPLAY_MATH.search(s) or _INLINE_MATH.search(s) or _OTHER_MATH.search(s))


_RAW_INLINE = re.compile(r"(?<![\\$])\$[^$\n]*[\\^_{}][^$\n]*\$")


def raw_tex(text: str) -> str | None:
    "The first raw (untypeset) TeX fragment in rendered text, or None."
    for rx in (re.compile(r"\$\$"), _RAW_INLINE, _OTHER_MATH):
        if m := rx.search(text):
            a = max(m.start() - 30, 0)
            return text[a:m.end() + 30].replace("\n", " ").strip()
    return None


def _first_line(s: str, n: int = 60) -> str:
    for line in s.splitlines():
        if line.strip() and not line.lstrip().startswith("#|"):
            return line.strip()[:n]
    return ""


@dataclass
class NbFacts:
    "What an executed notebook says the page must show."
    n_cells: int = 0
    n_code: int = 0
    n_markdown: int = 0
    cells_run: int = 0
    cells_skipped: int = 0
    images: int = 0
    widget_views: int = 0
    widget_models: int = 0  # models in the saved widget state
    math_cells: list = field(default_factory=list)  # indices among markdown cells (0-based)
    md_index: list = field(default_factory=list)    # notebook index of each markdown cell
    errors: list = field(default_factory=list)      # "cell N: message"


def notebook_facts(nb: dict) -> NbFacts:
    "Count cells run, image outputs, widget views/state, markdown cells with math and errors in an executed notebook."
    f = NbFacts(n_cells=len(nb.get("cells", [])))
    md_i = 0
    for i, c in enumerate(nb.get("cells", [])):
        if c["cell_type"] == "markdown":
            if has_math(_src(c)): f.math_cells.append(md_i)
            md_i += 1; f.n_markdown += 1; f.md_index.append(i)
            continue
        if c["cell_type"] != "code": continue
        f.n_code += 1
        if SKIP_TAG in c.get("metadata", {}).get("tags", []): f.cells_skipped += 1
        if c.get("execution_count") is not None: f.cells_run += 1
        for o in c.get("outputs", []):
            ot = o.get("output_type")
            if ot in ("display_data", "execute_result"):
                data = o.get("data", {})
                if any(m in data for m in IMAGE_MIMES): f.images += 1
                if WIDGET_VIEW in data: f.widget_views += 1
            elif ot == "error":
                ev = " | ".join(l.strip() for l in str(o.get("evalue", "")).splitlines() if l.strip())
                f.errors.append(f"cell {i} ({_first_line(_src(c))!r}) raised {o.get('ename')}: {ev[:300]}")
            elif ot == "stream" and o.get("name") == "stderr" and "Traceback" in _src({"source": o.get("text", "")}):
                f.errors.append(f"cell {i} ({_first_line(_src(c))!r}) printed a Traceback to stderr")
    state = nb.get("metadata", {}).get("widgets", {}).get(WIDGET_STATE, {})
    f.widget_models = len(state.get("state", {}) or {})
    return f


# ----------------------------------------------------------------------------------------------
# pure helpers: the dumped DOM
# ----------------------------------------------------------------------------------------------

def _soup(html: str):
    from bs4 import BeautifulSoup
    return BeautifulSoup(html, "html.parser")


def _visible_text(tag) -> str:
    "Text of `tag` without <script>, <style>, <code>, <pre> and MathJax's assistive MathML."
    import copy
    t = copy.copy(tag)
    for bad in t.find_all(["script", "style", "code", "pre", "math"]): bad.decompose()
    for bad in t.find_all(class_=lambda c: c and ("MJX_Assistive_MathML" in c or "MathJax_Preview" in c)):
        bad.decompose()
    return t.get_text(" ")


def remote_script_urls(html: str) -> list[str]:
    "src URLs of <script> elements (and widget renderer/MathJax URLs in inline scripts) that are remote."
    s = _soup(html)
    urls = [t.get("src") for t in s.find_all("script") if t.get("src")]
    for t in s.find_all("script"):
        urls += re.findall(r"""['"](https?://[^'"]+\.js[^'"]*)['"]""", t.string or "")
    return [u for u in urls if re.match(r"(https?:)?//", u)]


@dataclass
class PageResult:
    page: str
    proc: str = "ok"
    cells_run: str = "-"
    figures: str = "-"
    math: str = "-"
    widgets: str = "-"
    errors: int = 0
    executed: str = "-"  # seconds the lesson's execution took, or "reused" (executed by make test)
    seconds: float = 0.0
    problems: list = field(default_factory=list)

    @property
    def ok(self) -> bool: return not self.problems


def check_page(page: str, dom: str, nb: dict, result: PageResult | None = None) -> PageResult:
    """Check the DOM Chromium dumped for `page` against its executed notebook `nb`.
    Fills (and returns) a `PageResult`; every failed check appends a problem naming the page."""
    r = result or PageResult(page)
    f = notebook_facts(nb)
    bad = lambda msg: r.problems.append(f"{page}: {msg}")
    r.cells_run = f"{f.cells_run}/{f.n_code}" + (f" ({f.cells_skipped} skipped)" if f.cells_skipped else "")
    s = _soup(dom or "")

    # 1. the page renders: every code and markdown cell is there
    code_cells = [t for t in s.find_all(class_="jp-CodeCell")]
    md_cells = [t for t in s.find_all(class_="jp-MarkdownCell")]
    if not s.find("body") or not (code_cells or md_cells):
        bad("page did not render (no notebook cells in the DOM)")
    elif (len(code_cells), len(md_cells)) != (f.n_code, f.n_markdown):
        bad(f"page rendered {len(code_cells)} code + {len(md_cells)} markdown cells, notebook has {f.n_code} + {f.n_markdown}")

    # 2. math typeset
    frames = s.find_all(id=re.compile(r"^MathJax-Element-\d+-Frame$"))
    mj = s.find_all(class_=lambda c: c and any(k.startswith(("MathJax", "mjx-")) for k in c.split()))
    if f.math_cells:
        problems = []
        if not (frames or mj): problems.append("no MathJax output (MathJax did not load or run)")
        for k in f.math_cells:
            if k >= len(md_cells): continue
            if frag := raw_tex(_visible_text(md_cells[k])):
                problems.append(f"raw TeX left in (markdown) cell {f.md_index[k]}: {frag!r}")
                break
        errs = s.find_all(class_=lambda c: c and any(k in ("mjx-merror", "MathJax_Error") for k in c.split()))
        if errs or "Math Processing Error" in s.get_text(" "):
            what = errs[0].get_text(" ").strip()[:80] if errs else "Math Processing Error"
            problems.append(f"MathJax reported a TeX error: {what!r}")
        for p in problems: bad(f"math not typeset: {p}")
        r.math = "NO" if problems else f"yes ({len(frames) or len(mj)})"
    elif frames:
        r.math = f"yes ({len(frames)})"

    # 3. figures
    imgs = [t for t in s.find_all("img") if str(t.get("src", "")).startswith(tuple(f"data:{m}" for m in IMAGE_MIMES))]
    r.figures = f"{len(imgs)}/{f.images}"
    if len(imgs) < f.images:
        bad(f"figures missing: {len(imgs)} <img> with image data in the page, {f.images} image outputs in the notebook")

    # 4. widget snapshots
    if f.widget_views or f.widget_models:
        subareas = s.find_all(class_="widget-subarea")
        rendered = [a for a in subareas
                    if a.find(class_=lambda c: c and any(k.startswith(("widget-", "lm-Widget", "jupyter-widgets"))
                                                         for k in c.split()))]
        errors_w = s.find_all(class_="jupyter-widgets-error-widget")
        text = s.get_text(" ")
        r.widgets = f"{len(rendered)}/{f.widget_views}"
        if f.widget_views and not f.widget_models:
            bad(f"{f.widget_views} widget outputs but no saved widget state (run with store_widget_state=True)")
        elif len(rendered) < f.widget_views:
            bad(f"widgets not rendered: {len(rendered)} of {f.widget_views} widget views have widget DOM")
        if errors_w: bad(f"{len(errors_w)} widget(s) failed to render (widget error view)")
        for t in WIDGET_FAILURE_TEXTS:
            if t in text: bad(f"widget failure text on page: {t!r}"); break

    # 5. no errors shown
    shown = []
    for t in s.find_all(attrs={"data-mime-type": STDERR_MIME}):
        if "Traceback" in t.get_text(" "):
            cell = t.find_parent(class_="jp-CodeCell")
            idx = code_cells.index(cell) if cell in code_cells else None
            shown.append(idx)
    for e in f.errors: bad(f"error in notebook: {e}")
    if len(shown) > len(f.errors):
        bad(f"{len(shown)} traceback(s) shown on the page" + (f" (code cell {shown[0]})" if shown[0] is not None else ""))
    r.errors = max(len(f.errors), len(shown))
    return r


# ----------------------------------------------------------------------------------------------
# pure helpers: docs settings and the table
# ----------------------------------------------------------------------------------------------

def check_docs_config(quarto_yml: dict, nbdev_cfg: dict, nbs_dir: Path, root: Path) -> list[str]:
    "Problems with the Quarto/nbdev docs settings a user with Quarto relies on (`nbdev-docs` into doc_path)."
    p = []
    if (quarto_yml.get("project") or {}).get("type") != "website": p.append("_quarto.yml: project.type must be website")
    html = ((quarto_yml.get("format") or {}).get("html")) or {}
    if not html: p.append("_quarto.yml: no format.html")
    if not html.get("theme"): p.append("_quarto.yml: format.html.theme missing")
    css = html.get("css")
    for c in ([css] if isinstance(css, str) else css or []):
        if not (nbs_dir / c).exists(): p.append(f"_quarto.yml: format.html.css {c} does not exist in {nbs_dir.name}/")
    if not css: p.append("_quarto.yml: format.html.css missing")
    meta = quarto_yml.get("metadata-files") or []
    for m in ("nbdev.yml", "sidebar.yml"):
        if m not in meta: p.append(f"_quarto.yml: metadata-files must list {m} (nbdev writes it)")
    site = quarto_yml.get("website") or {}
    title = site.get("title")
    want = nbdev_cfg.get("title") or nbdev_cfg.get("lib_name")
    if title and want and title != want:
        p.append(f"_quarto.yml: website.title {title!r} differs from nbdev's title {want!r} (nbdev.yml)")
    if site.get("repo-actions") and not nbdev_cfg.get("git_url"):
        p.append("_quarto.yml: repo-actions need a repo URL: set [project.urls] Repository")
    doc_path = Path(nbdev_cfg.get("doc_path") or "")
    if not str(doc_path) or doc_path.resolve() in (root.resolve(), nbs_dir.resolve()):
        p.append(f"[tool.nbdev] doc_path {doc_path} must be its own folder (nbdev-docs deletes and rewrites it)")
    if str(nbdev_cfg.get("custom_sidebar", False)).lower() in ("true", "1") and not (nbs_dir / "sidebar.yml").exists():
        p.append("[tool.nbdev] custom_sidebar is true but nbs/sidebar.yml does not exist")
    if not (nbs_dir / "_quarto.yml").exists(): p.append(f"{nbs_dir.name}/_quarto.yml missing (nbdev reads it from there)")
    if not (nbs_dir / nbdev_cfg.get("readme_nb", "index.ipynb")).exists(): p.append("no index notebook: the site has no home page")
    return p


def sidebar_problems(sidebar: dict, nbs_dir: Path) -> list[str]:
    "Entries of nbdev's sidebar.yml that are not doc pages that exist."
    out = []
    def walk(items):
        for it in items or []:
            if isinstance(it, dict):
                walk(it.get("contents"))
                it = it.get("href") or it.get("file")
                if not it: continue
            if isinstance(it, str) and not it.startswith(("http:", "https:")):
                if not re.search(r"\.(ipynb|qmd|md|html)$", it): out.append(f"sidebar.yml lists {it}, not a page")
                elif not (nbs_dir / it).exists(): out.append(f"sidebar.yml lists {it}, which does not exist")
    walk(((sidebar or {}).get("website") or {}).get("sidebar", {}).get("contents"))
    return out


COLUMNS = ("page", "proc", "cells run", "figures", "math", "widgets", "errors", "executed", "seconds")


def format_table(results: list[PageResult]) -> str:
    rows = [COLUMNS] + [(r.page, r.proc, r.cells_run, r.figures, r.math, r.widgets, str(r.errors), r.executed,
                         f"{r.seconds:.1f}") for r in results]
    w = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    line = lambda row: "  ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(row))
    return "\n".join([line(rows[0]), "  ".join("-" * x for x in w)] + [line(r) for r in rows[1:]])


def parse_proc_error(stderr: str, cells: list | None = None) -> str:
    """The one-line cause of an nbdev-proc-nbs failure: the failing cell (its index among `cells`, the
    notebook's cells, when given) and the exception."""
    m = re.findall(r"Exception: Error (?:in notebook: .*? )?in cell \d+ :\n((?:.*\n){1,12})", stderr)
    last = [l for l in stderr.strip().splitlines() if re.match(r"^[\w.]*(Error|Exception)\b.*:", l)]
    cause = last[-1].strip() if last else (stderr.strip().splitlines() or ["(no output)"])[-1]
    if not m: return cause
    first = next((l.strip() for l in m[-1].splitlines() if l.strip() and not l.lstrip().startswith("#|")), "")
    idx = next((i for i, c in enumerate(cells or []) if c.get("cell_type") == "code" and first and
                any(l.strip() == first for l in _src(c).splitlines())), None)
    return f"{'cell %d ' % idx if idx is not None else 'cell '}({first[:60]!r}): {cause}"


PROC_HINT = ("nbdev's docs step (nbdev-proc-nbs, nbdev-docs) executes only the cells that are exported or contain "
             "an import, each in a shared kernel but skipping all other cells; a cell that mixes an import with code "
             "using variables of ordinary cells fails there. Move such imports into an import-only cell.")


# ----------------------------------------------------------------------------------------------
# tools: npm assets, chromium
# ----------------------------------------------------------------------------------------------

def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.environ.get("VIVIT_EDU_DOCS_CACHE") or Path(base) / "vivit_edu" / "docs_check")


def _npm_ok(node_modules: Path) -> bool:
    for pkg, (rel, major) in NPM_FILES.items():
        pj = node_modules / pkg / "package.json"
        if not (node_modules / rel).exists() or not pj.exists(): return False
        if int(json.loads(pj.read_text())["version"].split(".")[0]) != major: return False
    return True


def ensure_npm_assets(cache: Path, install: bool = True) -> tuple[Path, float]:
    """node_modules with MathJax 2, the widget HTML manager 1 and require.js 2; installs them with npm when
    missing (and npm itself with apt-get when missing and allowed)."""
    prefix = cache / "npm"
    nm = prefix / "node_modules"
    if _npm_ok(nm): return nm, 0.0
    t0 = time.time()
    if not shutil.which("npm"):
        hint = f"install Node.js and npm (Debian: apt-get install npm) so the check can install {' '.join(NPM_PACKAGES)}"
        if not install: raise SetupError(f"npm not found: {hint}")
        apt_install("npm", hint)
    npm = shutil.which("npm")
    if not npm: raise SetupError("npm not found after apt-get install npm")
    prefix.mkdir(parents=True, exist_ok=True)
    cmd = [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--loglevel=error", *NPM_PACKAGES]
    print("$", " ".join(shlex.quote(c) for c in cmd), flush=True)
    p = subprocess.run(cmd, capture_output=True, text=True)
    dt = time.time() - t0
    if p.returncode != 0 or not _npm_ok(nm):
        raise SetupError(f"npm install failed (exit {p.returncode}):\n{p.stderr[-2000:]}")
    return nm, dt


def find_chromium() -> str | None:
    if c := os.environ.get("CHROMIUM"): return shutil.which(c) or (c if Path(c).exists() else None)
    return next((p for n in CHROMIUM_NAMES if (p := shutil.which(n))), None)


def apt_install(package: str, hint: str) -> float:
    "`apt-get install -y PACKAGE` (as root, or with passwordless sudo), with an `apt-get update` retry; seconds taken."
    apt = shutil.which("apt-get")
    if not apt: raise SetupError(f"{package} is missing and there is no apt-get: {hint}")
    pre = [] if os.geteuid() == 0 else (["sudo", "-n"] if shutil.which("sudo") and
                                        subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0 else None)
    if pre is None: raise SetupError(f"{package} is missing and apt-get needs root: {hint}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    t0 = time.time()
    for attempt in (1, 2):
        cmd = pre + [apt, "install", "-y", package]
        print("$", " ".join(cmd), flush=True)
        p = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if p.returncode == 0: return time.time() - t0
        if attempt == 1:  # package lists may be missing or stale
            print("$", " ".join(pre + [apt, "update"]), flush=True)
            subprocess.run(pre + [apt, "update"], capture_output=True, text=True, env=env)
    raise SetupError(f"`apt-get install -y {package}` failed (exit {p.returncode}): {p.stderr.strip()[-800:]}\n{hint}")


def ensure_chromium(install: bool = True) -> tuple[str, float]:
    "Path of a Chromium binary; installs Debian's `chromium` with apt-get when missing and allowed."
    if c := find_chromium(): return c, 0.0
    hint = "install Debian's chromium (sudo apt-get install chromium) or set CHROMIUM=/path/to/chromium"
    if not install: raise SetupError(f"chromium not found on PATH: {hint}")
    dt = apt_install("chromium", hint)
    if c := find_chromium(): return c, dt
    raise SetupError(f"apt-get installed chromium but it is not on PATH: {hint}")


class SetupError(RuntimeError): pass


def chromium_cmd(chrome: str, profile: str, *action: str) -> list[str]:
    return [chrome, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={VIRTUAL_TIME_MS}", *action]


def dump_dom(chrome: str, html: Path, timeout: int = 240) -> str:
    with tempfile.TemporaryDirectory(prefix="docs_check_chromium_") as prof:
        p = subprocess.run(chromium_cmd(chrome, prof, "--dump-dom", html.resolve().as_uri()),
                           capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0 or not p.stdout.strip():
        raise RuntimeError(f"chromium exited {p.returncode} with no DOM: {p.stderr.strip()[-500:]}")
    return p.stdout


def figure_view(html: str) -> str | None:
    """The page without the cells above its first widget, else its first figure, and the markdown cell just
    above it (None without either), so that a screenshot of the window's height shows one (headless
    Chromium scrolls to #anchors unreliably)."""
    s = _soup(html)
    out = (s.find("script", attrs={"type": WIDGET_VIEW}) or
           next((t for t in s.find_all("img") if str(t.get("src", "")).startswith("data:image")), None))
    cell = out.find_parent(class_="jp-Cell") if out else None
    if cell is None: return None
    start = cell  # from the markdown cell that introduces it, if one is close above
    for prev in cell.find_previous_siblings(class_="jp-Cell", limit=3):
        if "jp-MarkdownCell" in prev.get("class", []): start = prev; break
    for prev in list(start.find_previous_siblings(class_="jp-Cell")): prev.decompose()
    return str(s)


def screenshot(chrome: str, html: Path, png: Path, timeout: int = 240) -> None:
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)
    url = html.resolve().as_uri()
    with tempfile.TemporaryDirectory(prefix="docs_check_chromium_") as prof:
        p = subprocess.run(chromium_cmd(chrome, prof, f"--screenshot={png.resolve()}", f"--window-size={SCREENSHOT_SIZE}",
                                        "--hide-scrollbars", url),
                           capture_output=True, text=True, timeout=timeout)
    if not png.exists(): raise RuntimeError(f"chromium wrote no screenshot (exit {p.returncode}): {p.stderr.strip()[-500:]}")


# ----------------------------------------------------------------------------------------------
# steps
# ----------------------------------------------------------------------------------------------

def run_proc_nbs(bin_dir: Path, env: dict, names: list[str] | None) -> dict[str, str]:
    """Run nbdev-proc-nbs (then nbdev-sidebar). Returns {notebook stem: cause} for the notebooks it fails on
    ('*' when the failure is not tied to a notebook). On failure each not-yet-processed notebook is rerun
    alone, so every failing notebook is named, not only the first."""
    exe = bin_dir / "nbdev-proc-nbs"
    if not exe.exists(): raise SetupError(f"{exe} not found: create the virtualenv first (make venv)")
    env = dict(env)
    stub = None
    if not shutil.which("quarto", path=env.get("PATH")):
        # nbdev-proc-nbs only asks whether quarto exists, and when not it tries `sudo` + curl to install it;
        # a stub that answers "not installed" keeps this check from installing anything
        stub = tempfile.mkdtemp(prefix="docs_check_noquarto_")
        (Path(stub) / "quarto").write_text("#!/bin/sh\necho 'quarto is not installed (docs_check stub)' >&2\nexit 1\n")
        (Path(stub) / "quarto").chmod(0o755)
        env["PATH"] = stub + os.pathsep + env.get("PATH", "")
    base = [str(exe)]
    if names: base += ["--file-re", "^(" + "|".join(re.escape(n) for n in names) + r")\.ipynb$"]
    try:
        print("$", " ".join(shlex.quote(c) for c in base), flush=True)
        p = subprocess.run(base, cwd=ROOT, env=env, capture_output=True, text=True)
        fails: dict[str, str] = {}
        if p.returncode != 0:
            proc_dir = ROOT / "_proc"
            todo = [nb for nb in lesson_notebooks(ROOT / "nbs") if (not names or nb.stem in names) and
                    (not (proc_dir / nb.name).exists() or (proc_dir / nb.name).stat().st_mtime < nb.stat().st_mtime)]
            print(f"nbdev-proc-nbs failed; rerunning it on {len(todo)} unprocessed notebook(s) one at a time", flush=True)
            for nb in todo:
                q = subprocess.run([str(exe), "--n-workers", "1", "--file-re", f"^{re.escape(nb.name)}$"],
                                   cwd=ROOT, env=env, capture_output=True, text=True)
                if q.returncode != 0:
                    fails[nb.stem] = parse_proc_error(q.stderr, json.loads(nb.read_text(encoding="utf-8"))["cells"])
            if not fails: fails["*"] = parse_proc_error(p.stderr)
        sb = bin_dir / "nbdev-sidebar"
        if sb.exists(): subprocess.run([str(sb)], cwd=ROOT, env=env, capture_output=True, text=True)
        return fails
    finally:
        if stub: shutil.rmtree(stub, ignore_errors=True)


# ----------------------------------------------------------------------------------------------
# executing the lessons: one executor serves `make test` (tools/test_all.sh runs `--execute-only`) and the
# docs check, which renders the notebooks the test phase executed instead of executing them again
# ----------------------------------------------------------------------------------------------

EXEC_META = "vivit_edu_execution"  # notebook metadata: fingerprint, seconds, CPU seconds and problems of the run
SHELL_WAIT_SLICE_S = 0.2           # see LessonClient


def source_fingerprint(src: Path, flags) -> str:
    "Hash of what executing lesson `src` depends on: the notebook, the library's code, the flags of cells not run."
    h = hashlib.sha1(Path(src).read_bytes())
    for p in sorted((ROOT / "vivit_edu").rglob("*.py")):
        if "__pycache__" not in p.parts: h.update(str(p.relative_to(ROOT)).encode() + b"\0" + p.read_bytes())
    h.update(" ".join(sorted(flags)).encode())
    return h.hexdigest()


def cell_label(nb: dict, i: int) -> str:
    "'cell 12 (\'first line\')': how problems name cell `i` of `nb` (its index among all cells, as nbdev counts)."
    cells = nb.get("cells", [])
    return f"cell {i} ({_first_line(_src(cells[i]))!r})" if 0 <= i < len(cells) else f"cell {i}"


def stalled_cells(nb: dict, seconds: dict, timeout: float) -> list[str]:
    """Problems for the cells whose execution took the whole cell timeout or longer. A cell can get there without a
    timeout error: when the client misses the kernel's reply it waits until the timeout, then finds the reply and
    carries on (jupyter/nbclient issue 312); a check that reports such a lesson as ok hides a stall."""
    return [f"{cell_label(nb, i)} took {s:.0f} s, the whole cell timeout ({timeout:.0f} s): a stalled execution"
            for i, s in sorted(seconds.items()) if s >= timeout]


def _lesson_client_class():
    from queue import Empty
    from nbclient import NotebookClient

    class LessonClient(NotebookClient):
        """nbclient's `NotebookClient`, timing each cell, and waiting for each cell's reply in short slices.

        Workaround for jupyter/nbclient issue 312 ("when cell contains ipywidget, execute cell will sometimes
        blocks"), the cause of lesson 13's stall (616 s, every cell run, reported ok). nbclient stands in for the
        front end of an `Output` widget (`interactive_output`, our explorers): each output the widget captures is
        answered with a comm message on the shell socket (`OutputWidget.sync_state` -> `shell_channel.send`) while
        the client awaits the cell's execute_reply on that same socket. jupyter_client's `Session.send` writes through
        a plain, non-asyncio shadow of the zmq.asyncio socket; that send can use up ZeroMQ's edge-triggered
        "readable" signal, and pyzmq's asyncio poller is then never woken for a reply that has already arrived. The
        client sits idle until the cell timeout, when the poller's last zero-wait poll finds the reply and the cell
        counts as done. (150 cells that each redraw an explorer three times: 6-8 such 10-15 s waits per run, none
        without the widget's sends, none with this class.) Waiting in slices of `SHELL_WAIT_SLICE_S` starts a new
        poll each slice, and a new poll looks at the socket at once: a missed signal costs at most one slice, and the
        cell timeout still applies to the whole wait."""

        def __init__(self, *args, **kw):
            super().__init__(*args, on_cell_execute=self._started, on_cell_executed=self._finished, **kw)
            self.cell_seconds, self.current_cell, self._t0, self.cpu_seconds = {}, None, None, None

        def _started(self, cell, cell_index):
            self.current_cell, self._t0 = cell_index, time.perf_counter()

        def _finished(self, cell, cell_index, execute_reply):
            self.cell_seconds[cell_index] = time.perf_counter() - self._t0
            self.cpu_seconds = _kernel_cpu_seconds(self.km) or self.cpu_seconds

        async def async_start_new_kernel_client(self):
            kc = await super().async_start_new_kernel_client()
            shell, get_msg = kc.shell_channel, kc.shell_channel.get_msg

            async def get_msg_in_slices(timeout=None):
                deadline = None if timeout is None else time.monotonic() + timeout
                while True:
                    left = None if deadline is None else max(0.0, deadline - time.monotonic())
                    try: return await get_msg(timeout=SHELL_WAIT_SLICE_S if left is None else min(SHELL_WAIT_SLICE_S, left))
                    except Empty:
                        if left is not None and left <= SHELL_WAIT_SLICE_S: raise

            shell.get_msg = get_msg_in_slices
            return kc

    return LessonClient


def _kernel_cpu_seconds(km) -> float | None:
    "CPU seconds (user + system, its children included) the kernel process has used so far, if it can be read."
    try:
        import psutil
        t = psutil.Process(km.provisioner.process.pid).cpu_times()
        return t.user + t.system + t.children_user + t.children_system
    except Exception:
        return None


def execute_notebook(src: Path, dst: Path, flags, timeout: int, log: Path | None = None) -> tuple[dict, list[str]]:
    """Execute a copy of `src` (cwd: its folder) with the flagged cells skipped; write it to `dst` (kernel's own log:
    `log`). Returns the executed notebook and its problems, each naming the cell: an execution stopped by the cell
    timeout or a dead kernel, a cell that took the whole timeout (`stalled_cells`). The run is recorded in the
    notebook's metadata (`EXEC_META`) so that the docs check can reuse it (`reusable_execution`)."""
    import nbformat
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    nb = nbformat.read(src, as_version=4)
    mark_skipped(nb, cells_to_skip(src, flags))
    problems = []
    client = _lesson_client_class()(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                                    store_widget_state=True, skip_cells_with_tag=SKIP_TAG,
                                    resources={"metadata": {"path": str(src.parent)}})
    log_f = None
    if log:
        log.parent.mkdir(parents=True, exist_ok=True)
        log_f = open(log, "w")
    t0 = time.perf_counter()
    try:
        client.execute(**({"stderr": log_f} if log_f else {}))  # kernel start-up chatter, not cell output
    except CellTimeoutError:
        problems.append(f"{cell_label(nb, client.current_cell)} timed out after {timeout} s; execution stopped there")
    except DeadKernelError:
        problems.append(f"{cell_label(nb, client.current_cell)}: the kernel died; execution stopped there")
    except Exception as e:  # keep what ran and report it
        msg = str(e).strip().splitlines()
        where = cell_label(nb, client.current_cell) if client.current_cell is not None else "before the first cell"
        problems.append(f"execution stopped at {where}: {type(e).__name__}: {msg[-1] if msg else ''}")
    finally:
        if log_f: log_f.close()
    problems += stalled_cells(nb, client.cell_seconds, timeout)
    nb.metadata[EXEC_META] = {"fingerprint": source_fingerprint(src, flags), "seconds": round(time.perf_counter() - t0, 1),
                              "cpu_seconds": None if client.cpu_seconds is None else round(client.cpu_seconds, 1),
                              "problems": problems}
    dst.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, dst)
    return json.loads(dst.read_text(encoding="utf-8")), problems


def reusable_execution(src: Path, dst: Path, flags) -> dict | None:
    "The executed notebook at `dst` if it is a complete run of `src` as it is now (same fingerprint), else None."
    try: nb = json.loads(dst.read_text(encoding="utf-8"))
    except (OSError, ValueError): return None
    meta = nb.get("metadata", {}).get(EXEC_META) or {}
    return nb if meta.get("fingerprint") == source_fingerprint(src, flags) else None


def execution_problems(nb: dict) -> list[str]:
    "What went wrong in an executed notebook: the run's own problems (timeouts, stalls), then each cell's error."
    return list((nb.get("metadata", {}).get(EXEC_META) or {}).get("problems", [])) + notebook_facts(nb).errors


def _timings_file() -> Path: return default_cache_dir() / "lesson_seconds.json"


def longest_first(nbs: list[Path]) -> list[Path]:
    """Lessons ordered by their last recorded execution time, longest first, so that the workers finish together; lessons
    not timed yet come first, the later lessons (which build on more) before the earlier ones."""
    try: seen = json.loads(_timings_file().read_text())
    except (OSError, ValueError): seen = {}
    late_first = sorted(nbs, key=lambda p: p.stem, reverse=True)
    return sorted(late_first, key=lambda p: -seen.get(p.stem, float("inf")))


def _record_timings(runs: dict) -> None:
    f = _timings_file()
    try:
        seen = json.loads(f.read_text()) if f.exists() else {}
        seen.update({k: v["seconds"] for k, v in runs.items() if v.get("seconds") is not None})
        f.parent.mkdir(parents=True, exist_ok=True); f.write_text(json.dumps(seen, indent=1, sort_keys=True))
    except (OSError, ValueError): pass


def execute_lessons(nbs: list[Path], build: Path, flags, timeout: int, workers: int = 1, reuse: bool = False,
                    echo=print) -> dict[str, dict]:
    """Execute lessons `nbs` into `build`/executed/, `workers` kernels at a time (each in its own process, running
    `execute_notebook`); with `reuse`, a lesson already executed from its current source is not run again.
    Returns {stem: {"nb": executed notebook or None, "problems": [...], "seconds": float, "cpu_seconds", "reused"}}."""
    from concurrent.futures import ThreadPoolExecutor, as_completed
    out, todo = {}, []
    for src in nbs:
        dst = build / "executed" / src.name
        nb = reusable_execution(src, dst, flags) if reuse else None
        if nb is None: todo.append(src); continue
        meta = nb["metadata"][EXEC_META]
        out[src.stem] = dict(nb=nb, problems=execution_problems(nb), seconds=meta.get("seconds"),
                             cpu_seconds=meta.get("cpu_seconds"), reused=True)
        echo(f"{src.stem}: executed earlier from the same source ({meta.get('seconds')} s), not run again")

    def run(src: Path) -> tuple[str, dict]:
        dst, log = build / "executed" / src.name, build / "logs" / f"{src.stem}.kernel.log"
        dst.unlink(missing_ok=True)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--execute-one", str(src), "--build-dir", str(build),
               "--timeout", str(timeout), "--flags", " ".join(flags)]
        t0 = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        try: nb = json.loads(dst.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # the executing process died before writing the notebook
            tail = (p.stderr or p.stdout).strip().splitlines()[-5:]
            return src.stem, dict(nb=None, problems=[f"execution failed (exit {p.returncode}): {' | '.join(tail)}"],
                                  seconds=round(time.perf_counter() - t0, 1), cpu_seconds=None, reused=False)
        meta = nb["metadata"].get(EXEC_META, {})
        return src.stem, dict(nb=nb, problems=execution_problems(nb), seconds=meta.get("seconds"),
                              cpu_seconds=meta.get("cpu_seconds"), reused=False)

    with ThreadPoolExecutor(max(1, workers)) as pool:
        for k, fut in enumerate(as_completed([pool.submit(run, src) for src in longest_first(todo)]), 1):
            stem, r = fut.result()
            out[stem] = r
            cpu = f", CPU {r['cpu_seconds']:.0f} s" if r["cpu_seconds"] is not None else ""
            echo(f"[{k}/{len(todo)}] {stem}: {'ok' if not r['problems'] else 'FAILED'} ({r['seconds']:.0f} s{cpu})")
    _record_timings({k: v for k, v in out.items() if not v["reused"]})
    return {src.stem: out[src.stem] for src in nbs}


def first_traceback(nb: dict, n: int = 25) -> str:
    "The last `n` lines of the first error's traceback in an executed notebook (ANSI colours removed), or ''."
    for c in nb.get("cells", []):
        for o in c.get("outputs", []):
            if o.get("output_type") == "error":
                tb = "\n".join(o.get("traceback") or [f"{o.get('ename')}: {o.get('evalue')}"])
                return "\n".join(re.sub(r"\x1b\[[0-9;]*m", "", tb).splitlines()[-n:])
    return ""


def execute_only(nbs: list[Path], build: Path, flags, timeout: int, workers: int) -> int:
    "The lessons' tests (`make test`): execute every lesson once, print a timing table and each failure; 1 if any failed."
    t0 = time.time()
    print(f"executing {len(nbs)} lesson(s), {workers} at a time; cells flagged {', '.join(flags)} or eval: false are not "
          f"run; cell timeout {timeout} s", flush=True)
    runs = execute_lessons(nbs, build, flags, timeout, workers, echo=lambda m: print(m, flush=True))
    failed = {k: r for k, r in runs.items() if r["problems"]}
    print("\nlesson                    seconds   CPU s")
    for k, r in sorted(runs.items(), key=lambda kv: -(kv[1]["seconds"] or 0)):
        cpu = f"{r['cpu_seconds']:7.0f}" if r["cpu_seconds"] is not None else "      -"
        print(f"{k:<24}{r['seconds'] or 0:8.0f} {cpu}" + ("   FAILED" if k in failed else ""))
    for k, r in failed.items():
        print(f"\n{k} FAILED:")
        for p in r["problems"]: print(f"  - {k}: {p}")
        if r["nb"] and (tb := first_traceback(r["nb"])): print("  first traceback:\n" + "\n".join("    " + l for l in tb.splitlines()))
    print(f"\nlessons: {len(runs) - len(failed)} passed, {len(failed)} failed in {time.time() - t0:.0f} s "
          f"(executed notebooks in {build.relative_to(ROOT) if build.is_relative_to(ROOT) else build}/executed)")
    return 1 if failed else 0


def html_exporter(node_modules: Path, html_dir: Path):
    "nbconvert's HTMLExporter with MathJax, require.js and the widget manager pointed at local files."
    from nbconvert import HTMLExporter
    exp = HTMLExporter(template_name="lab")
    rel = Path(os.path.relpath(node_modules, html_dir)).as_posix()
    urls = {"mathjax_url": f"{rel}/{NPM_FILES['mathjax'][0]}?config={MATHJAX_CONFIG}",
            "require_js_url": f"{rel}/{NPM_FILES['requirejs'][0]}",
            "widget_renderer_url": f"{rel}/{NPM_FILES['@jupyter-widgets/html-manager'][0]}"}
    for trait, url in urls.items():
        if not exp.has_trait(trait):
            raise SetupError(f"nbconvert {__import__('nbconvert').__version__} has no HTMLExporter.{trait}: need nbconvert>=7")
        setattr(exp, trait, url)
    return exp


def to_html(exp, nb: dict, out: Path, title: str) -> None:
    import nbformat
    node = nbformat.reads(json.dumps(nb), as_version=4)  # joins the multi-line lists of the file format
    body, _ = exp.from_notebook_node(node, resources={"metadata": {"name": title}})
    if remote := remote_script_urls(body):
        raise RuntimeError(f"page still loads scripts from the network: {remote[:3]}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(body, encoding="utf-8")


def _load_yaml(p: Path):
    import yaml
    return yaml.safe_load(p.read_text()) if p.exists() else {}


def config_check(nbs_dir: Path) -> list[str]:
    from nbdev.config import get_config
    cfg = get_config(ROOT)
    d = {k: cfg.get(k) for k in ("title", "lib_name", "git_url", "doc_path", "custom_sidebar", "readme_nb")}
    return check_docs_config(_load_yaml(nbs_dir / "_quarto.yml"), d, nbs_dir, ROOT)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", metavar="REGEX", help="check only the notebooks whose name matches (e.g. '05|index')")
    ap.add_argument("--keep", action="store_true", help="keep the build folder (executed notebooks, HTML, dumped DOMs)")
    ap.add_argument("--build-dir", type=Path, default=ROOT / "_docs_check")
    ap.add_argument("--cache-dir", type=Path, default=None,
                    help="where the npm packages are installed (default: $VIVIT_EDU_DOCS_CACHE or ~/.cache/vivit_edu/docs_check)")
    ap.add_argument("--reports", type=Path, default=ROOT / "reports" / "docs_check", help="screenshots go here")
    ap.add_argument("--screenshots", default=None,
                    help="comma-separated pages to screenshot (default: index and 13_viz, else 05_layers.attention)")
    ap.add_argument("--timeout", type=int, default=None, help="seconds per cell (default: pyproject's cell_timeout or 600)")
    ap.add_argument("--threads", type=int, default=1, help="OMP/MKL threads for the kernels (default 1)")
    ap.add_argument("--no-install", action="store_true", help="never apt-get install chromium or npm")
    ap.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                    help="lessons executed at once, each in its own kernel (default: the CPUs, at most 4)")
    ap.add_argument("--execute-only", action="store_true",
                    help="the lessons' tests (make test): execute every lesson into BUILD_DIR/executed and report failures, "
                         "no rendering; a docs check afterwards reuses these executions")
    ap.add_argument("--execute-one", type=Path, metavar="NOTEBOOK", help=argparse.SUPPRESS)  # one lesson, for --workers
    ap.add_argument("--flags", default=None, help=argparse.SUPPRESS)                          # with --execute-one
    args = ap.parse_args(argv)
    t_start = time.time()
    if args.execute_one:  # a worker of execute_lessons: the environment comes from the parent
        src = args.execute_one.resolve()
        execute_notebook(src, args.build_dir / "executed" / src.name, args.flags.split(), args.timeout,
                         log=args.build_dir / "logs" / f"{src.stem}.kernel.log")
        return 0
    nbs_dir = ROOT / "nbs"
    bin_dir = Path(sys.executable).parent

    # the kernels inherit this environment: inline figures, few threads, a throwaway data cache
    os.environ.pop("MPLBACKEND", None)
    for v in THREAD_VARS: os.environ[v] = str(args.threads)
    # the kernel "python3" is this virtualenv's (its kernelspec runs sys.executable), not one in ~/.local/share
    venv_jupyter = Path(sys.prefix) / "share" / "jupyter"
    if (venv_jupyter / "kernels" / "python3").exists():
        os.environ["JUPYTER_PATH"] = os.pathsep.join(p for p in (str(venv_jupyter), os.environ.get("JUPYTER_PATH")) if p)
    tmp_cache = None
    if not os.environ.get("VIVIT_EDU_CACHE"):
        tmp_cache = tempfile.mkdtemp(prefix="vivit_edu_docs_cache_")
        os.environ["VIVIT_EDU_CACHE"] = tmp_cache
        atexit.register(shutil.rmtree, tmp_cache, True)

    from nbdev.config import get_config
    cfg = get_config(ROOT)
    flags = skip_flags(cfg.get("tst_flags"))
    timeout = args.timeout or int(cfg.get("cell_timeout") or 600)
    nbs = lesson_notebooks(nbs_dir, args.only)
    if not nbs:
        print(f"docs check: no notebook in {nbs_dir} matches --only {args.only!r}"); return 2
    if args.execute_only: return execute_only(nbs, args.build_dir, flags, timeout, args.workers)
    names = [p.stem for p in nbs]
    print(f"docs check: {len(nbs)} page(s); cells flagged {', '.join(flags)} or eval: false are not run; "
          f"cell timeout {timeout} s; {THREAD_VARS[0]}={args.threads}; VIVIT_EDU_CACHE={os.environ['VIVIT_EDU_CACHE']}", flush=True)

    failures: list[str] = []
    # 0. settings
    for p in config_check(nbs_dir): failures.append(f"docs settings: {p}")

    # tools first: a missing tool fails in seconds, not after the notebooks ran
    try:
        cache = args.cache_dir or default_cache_dir()
        node_modules, t_npm = ensure_npm_assets(cache, install=not args.no_install)
        chrome, t_apt = ensure_chromium(install=not args.no_install)
    except SetupError as e:
        print(f"docs check: SETUP FAILED: {e}", file=sys.stderr); return 2
    ver = subprocess.run([chrome, "--version"], capture_output=True, text=True).stdout.strip()
    print(f"tools: npm packages in {node_modules} ({'installed in %.0f s' % t_npm if t_npm else 'cached'}); "
          f"{ver or chrome} ({'installed in %.0f s' % t_apt if t_apt else 'already there'})", flush=True)

    # 1. nbdev's docs processing
    t0 = time.time()
    proc_fails = run_proc_nbs(bin_dir, dict(os.environ), names if args.only else None)
    print(f"nbdev-proc-nbs: {'ok' if not proc_fails else 'FAILED'} in {time.time() - t0:.0f} s", flush=True)
    if "*" in proc_fails: failures.append(f"nbdev-proc-nbs failed: {proc_fails['*']}")
    for p in sidebar_problems(_load_yaml(nbs_dir / "sidebar.yml"), nbs_dir): failures.append(f"docs settings: {p}")

    # 2. the lessons' executions: those `make test` made from the current sources are reused, the rest run now
    build = args.build_dir
    for sub in ("html", "dom"): shutil.rmtree(build / sub, ignore_errors=True)
    t0 = time.time()
    runs = execute_lessons(nbs, build, flags, timeout, args.workers, reuse=True, echo=lambda m: print("  " + m, flush=True))
    reused = sum(r["reused"] for r in runs.values())
    print(f"lessons: {len(nbs) - reused} executed now, {reused} reused, in {time.time() - t0:.0f} s", flush=True)

    # 3-4. convert, render, check each page
    exp = html_exporter(node_modules, build / "html")
    results: list[PageResult] = []
    for src in nbs:
        t0 = time.time()
        r, run = PageResult(src.stem), runs[src.stem]
        r.executed = "reused" if run["reused"] else f"{run['seconds']:.0f} s"
        if src.stem in proc_fails:
            r.proc = "FAIL"
            r.problems.append(f"{src.stem}: nbdev-proc-nbs (nbdev-docs) fails: {proc_fails[src.stem]}")
        print(f"[{len(results) + 1}/{len(nbs)}] {src.stem}: rendering", end="", flush=True)
        nb = run["nb"]
        if nb is None:  # (errors in cells are check_page's to report; these are the run's own: timeouts, stalls)
            r.problems += [f"{src.stem}: {p}" for p in run["problems"]]
        else:
            r.problems += [f"{src.stem}: {p}" for p in nb["metadata"][EXEC_META].get("problems", [])]
            try:
                html = build / "html" / f"{src.stem}.html"
                to_html(exp, nb, html, src.stem)
                dom = dump_dom(chrome, html)
                (build / "dom").mkdir(parents=True, exist_ok=True)
                (build / "dom" / f"{src.stem}.html").write_text(dom, encoding="utf-8")
                check_page(src.stem, dom, nb, r)
            except Exception as e:
                import traceback
                (build / "logs").mkdir(parents=True, exist_ok=True)
                (build / "logs" / f"{src.stem}.check.log").write_text(traceback.format_exc())
                r.problems.append(f"{src.stem}: {type(e).__name__}: {e} (traceback in {build.name}/logs/{src.stem}.check.log)")
        r.seconds = time.time() - t0
        print(f" -> {'ok' if r.ok else 'FAILED'} ({r.seconds:.0f} s)", flush=True)
        results.append(r)

    # screenshots (artefacts; a failure here is reported, it is not a page check)
    shots = []
    for old in args.reports.glob("*.png"): old.unlink()  # no stale artefacts from an earlier run
    wanted = (args.screenshots.split(",") if args.screenshots else
              ["index", "13_viz" if any(n.startswith("13_viz") for n in names) else "05_layers.attention"])
    for w in wanted:
        page = next((n for n in names if n == w or n.startswith(w)), None)
        html = build / "html" / f"{page}.html"
        if page is None or not html.exists(): continue
        try:
            png = args.reports / f"{page}.png"
            screenshot(chrome, html, png); shots.append(png)
            # the page top rarely reaches a widget or figure: a second shot starts just above the first one
            if page != "index" and (view := figure_view(html.read_text(encoding="utf-8"))):
                fig_html = html.with_name(f"{page}.figure.html")  # same folder: the relative script URLs still work
                fig_html.write_text(view, encoding="utf-8")
                png = args.reports / f"{page}.figure.png"
                screenshot(chrome, fig_html, png); shots.append(png)
        except Exception as e:
            failures.append(f"screenshot of {page}: {e}")

    print("\n" + format_table(results))
    problems = failures + [p for r in results for p in r.problems]
    took = time.time() - t_start
    if shots: print("screenshots: " + ", ".join(str(p.relative_to(ROOT) if p.is_relative_to(ROOT) else p) for p in shots))
    if problems:
        print(f"\ndocs check FAILED ({len(problems)} problem(s), {took:.0f} s); build kept in {build}:")
        for p in problems: print(f"  - {p}")
        if proc_fails: print(f"\nnbdev-proc-nbs: {PROC_HINT}")
        return 1
    if not args.keep: shutil.rmtree(build, ignore_errors=True)
    print(f"\ndocs check passed: {len(results)} page(s) in {took:.0f} s" + (f"; build kept in {build}" if args.keep else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
