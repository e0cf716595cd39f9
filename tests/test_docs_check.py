"Tests of tools/docs_check.py: its checking functions on small synthetic pages and notebooks (no Chromium), and its lesson executor on small notebooks (real kernels)."
import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("docs_check", ROOT / "tools" / "docs_check.py")
dc = importlib.util.module_from_spec(_spec)
sys.modules["docs_check"] = dc  # dataclasses look the module up while the class is built
_spec.loader.exec_module(dc)


# --- synthetic notebooks (nbformat 4 dicts, as read from an executed .ipynb) -------------------------

def md(src): return {"cell_type": "markdown", "metadata": {}, "source": src}


def code(src="x = 1", outputs=(), ran=True, tags=()):
    meta = {"tags": list(tags)} if tags else {}
    return {"cell_type": "code", "execution_count": 1 if ran else None, "metadata": meta,
            "outputs": list(outputs), "source": src}


def nb(*cells, widget_state=None):
    meta = {"kernelspec": {"name": "python3", "display_name": "python3", "language": "python"}}
    if widget_state is not None:
        meta["widgets"] = {dc.WIDGET_STATE: {"version_major": 2, "version_minor": 0, "state": widget_state}}
    cells = [{**c, "id": f"c{i}"} for i, c in enumerate(cells)]
    return {"cells": cells, "metadata": meta, "nbformat": 4, "nbformat_minor": 5}


PNG = {"output_type": "display_data", "metadata": {}, "data": {"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"}}
ERROR = {"output_type": "error", "ename": "ValueError", "evalue": "boom", "traceback": ["ValueError: boom"]}
VIEW = {"output_type": "display_data", "metadata": {},
        "data": {dc.WIDGET_VIEW: {"version_major": 2, "version_minor": 0, "model_id": "m1"}, "text/plain": "IntSlider()"}}
STATE = {"m1": {"model_name": "IntSliderModel", "model_module": "@jupyter-widgets/controls", "state": {}}}


# --- synthetic DOMs, shaped like nbconvert's lab template after the page's JavaScript ran -----------

def md_cell(inner):
    return ('<div class="jp-Cell jp-MarkdownCell jp-Notebook-cell"><div class="jp-RenderedHTMLCommon '
            f'jp-RenderedMarkdown jp-MarkdownOutput" data-mime-type="text/markdown">{inner}</div></div>')


def code_cell(outputs=""):
    return (f'<div class="jp-Cell jp-CodeCell jp-Notebook-cell"><div class="jp-InputArea"><pre>x = 1</pre></div>'
            f'<div class="jp-OutputArea">{outputs}</div></div>')


def page(*cells):
    return f"<html><head><title>t</title></head><body><main>{''.join(cells)}</main></body></html>"


TYPESET = ('<p>Attention <span class="MathJax_Preview"></span><span class="mjx-chtml MathJax_CHTML" '
           'id="MathJax-Element-1-Frame"><span class="mjx-math">x</span></span>'
           '<script type="math/tex" id="MathJax-Element-1">x^2</script> is shown.</p>')
IMG = '<div class="jp-RenderedImage jp-OutputArea-output"><img src="data:image/png;base64,iVBORw0KGgo="></div>'
STDERR_TB = ('<div class="jp-RenderedText jp-OutputArea-output" data-mime-type="application/vnd.jupyter.stderr">'
             '<pre>Traceback (most recent call last):\n  ...\nValueError: boom</pre></div>')
WIDGET_SCRIPT = '<script type="application/vnd.jupyter.widget-view+json">{"model_id": "m1"}</script>'
WIDGET_RENDERED = ('<div class="widget-subarea"><div class="lm-Widget jupyter-widgets widget-inline-hbox '
                   'widget-slider"><div class="widget-readout">3</div></div></div>')


# --- math --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("src,want", [
    ("Attention is $\\mathrm{softmax}(QK^T)V$.", True),
    ("$$\\sum_i a_i$$", True),
    ("\\begin{align} a &= b \\end{align}", True),
    ("It costs $5 and $10 later.", False),
    ("Use `$x$` literally, or\n```\necho $HOME $PATH\n```", False),
    ("No math here.", False),
])
def test_has_math(src, want):
    assert dc.has_math(src) is want


def test_raw_tex_finds_untypeset_math_only():
    assert "$$" in dc.raw_tex("the loss $$x^2$$ is")
    assert dc.raw_tex("inline $a_i$ left raw") is not None
    assert dc.raw_tex("It costs $5 and $10.") is None
    assert dc.raw_tex("typeset text without dollars") is None


def test_raw_display_math_fails_the_math_check():
    n = nb(md("The loss is $$x^2$$."), code())
    r = dc.check_page("05_layers.attention", page(md_cell("<p>The loss is $$x^2$$.</p>"), code_cell()), n)
    assert r.math == "NO"
    assert any(p.startswith("05_layers.attention: math not typeset") for p in r.problems), r.problems
    assert any("$$" in p and "cell 0" in p for p in r.problems)


def test_typeset_math_passes():
    n = nb(md("Attention $x^2$ is shown."), code())
    r = dc.check_page("p", page(md_cell(TYPESET), code_cell()), n)
    assert r.problems == [] and r.math == "yes (1)"


def test_math_without_mathjax_output_fails():
    # MathJax did not load (e.g. a CDN URL offline): the TeX stays as text
    n = nb(md("Attention $x^2$ is shown."), code())
    r = dc.check_page("p", page(md_cell("<p>Attention $x^2$ is shown.</p>"), code_cell()), n)
    assert any("no MathJax output" in p for p in r.problems)
    assert any("raw TeX" in p for p in r.problems)


def test_mathjax_tex_error_is_reported():
    n = nb(md("Bad $\\foo$ macro."), code())
    bad = ('<p>Bad <span class="mjx-chtml MathJax_CHTML" id="MathJax-Element-1-Frame">'
           '<span class="mjx-merror">Undefined control sequence \\foo</span></span> macro.</p>')
    r = dc.check_page("p", page(md_cell(bad), code_cell()), n)
    assert any("TeX error" in p and "Undefined control sequence" in p for p in r.problems)


# --- errors ------------------------------------------------------------------------------------------

def test_error_output_in_executed_notebook_names_page_and_cell():
    n = nb(md("# T"), code("raise ValueError('boom')", outputs=[ERROR]))
    r = dc.check_page("10_train", page(md_cell("<h1>T</h1>"), code_cell(STDERR_TB)), n)
    assert r.errors == 1
    assert any(p.startswith("10_train:") and "cell 1" in p and "ValueError: boom" in p for p in r.problems), r.problems


def test_multiline_error_value_is_reported_on_one_line():
    err = {**ERROR, "ename": "AssertionError", "evalue": "==:\n(1, 2)\n(1, 3)"}
    r = dc.check_page("p", page(code_cell(STDERR_TB)), nb(code(outputs=[err])))
    assert r.problems == ["p: error in notebook: cell 0 ('x = 1') raised AssertionError: ==: | (1, 2) | (1, 3)"]


def test_traceback_shown_on_page_fails_even_if_notebook_has_no_error_output():
    n = nb(code())
    r = dc.check_page("p", page(code_cell(STDERR_TB)), n)
    assert r.errors == 1 and any("traceback" in p for p in r.problems)


def test_stderr_traceback_stream_counts_as_error():
    stream = {"output_type": "stream", "name": "stderr", "text": ["Traceback (most recent call last):\n", "KeyError: 1\n"]}
    f = dc.notebook_facts(nb(code(outputs=[stream])))
    assert len(f.errors) == 1 and "Traceback" in f.errors[0]


def test_warnings_on_stderr_are_not_errors():
    stream = {"output_type": "stream", "name": "stderr", "text": "UserWarning: careful\n"}
    warn = ('<div class="jp-RenderedText jp-OutputArea-output" data-mime-type="application/vnd.jupyter.stderr">'
            '<pre>UserWarning: careful</pre></div>')
    r = dc.check_page("p", page(code_cell(warn)), nb(code(outputs=[stream])))
    assert r.problems == [] and r.errors == 0


# --- figures, rendering ------------------------------------------------------------------------------

def test_missing_figure_fails():
    n = nb(code(outputs=[PNG]), code(outputs=[PNG]))
    r = dc.check_page("p", page(code_cell(IMG), code_cell()), n)
    assert r.figures == "1/2" and any("figures missing" in p for p in r.problems)
    ok = dc.check_page("p", page(code_cell(IMG), code_cell(IMG)), n)
    assert ok.figures == "2/2" and ok.problems == []


def test_page_that_did_not_render_fails():
    r = dc.check_page("p", "", nb(md("# T"), code()))
    assert any("did not render" in p for p in r.problems)


def test_missing_cells_fail():
    r = dc.check_page("p", page(md_cell("<h1>T</h1>")), nb(md("# T"), code(), code()))
    assert any("rendered 0 code + 1 markdown cells" in p for p in r.problems), r.problems


def test_cells_run_counts_skipped_cells():
    n = nb(code(), code(ran=False, tags=[dc.SKIP_TAG]), md("x"))
    r = dc.check_page("p", page(code_cell(), code_cell(), md_cell("x")), n)
    assert r.cells_run == "1/2 (1 skipped)" and r.problems == []


# --- widgets -----------------------------------------------------------------------------------------

def _widget_page(rendered: bool, extra=""):
    out = (WIDGET_RENDERED if rendered else "") + WIDGET_SCRIPT
    return page(code_cell(f'<div class="jupyter-widgets jp-OutputArea-output">{out}</div>{extra}'))


def test_rendered_widget_snapshot_passes():
    r = dc.check_page("13_viz", _widget_page(True), nb(code(outputs=[VIEW]), widget_state=STATE))
    assert r.widgets == "1/1" and r.problems == []


def test_unrendered_widget_fails():
    # the widget manager did not run: only nbconvert's placeholder div (class jupyter-widgets) is there
    r = dc.check_page("13_viz", _widget_page(False), nb(code(outputs=[VIEW]), widget_state=STATE))
    assert r.widgets == "0/1" and any(p.startswith("13_viz: widgets not rendered") for p in r.problems)


def test_widget_error_view_and_loading_text_fail():
    err = '<div class="jupyter-widgets-error-widget icon-error"><pre>Click to show javascript error.</pre></div>'
    r = dc.check_page("p", _widget_page(True, err), nb(code(outputs=[VIEW]), widget_state=STATE))
    assert any("failed to render" in p for p in r.problems)
    r = dc.check_page("p", _widget_page(True, "<p>Loading widget...</p>"), nb(code(outputs=[VIEW]), widget_state=STATE))
    assert any("Loading widget..." in p for p in r.problems)


def test_widget_views_without_saved_state_fail():
    r = dc.check_page("p", _widget_page(False), nb(code(outputs=[VIEW])))
    assert any("no saved widget state" in p for p in r.problems)


# --- which cells run ---------------------------------------------------------------------------------

def test_cells_to_skip_follows_nbdev_flags(tmp_path):
    cells = [md("# T"), code("x = 1"), code("#| slow\ny = 2"), code("#| cuda\nimport torch"),
             code("#| eval: false\nz = 3"), code("#| data\nw = 4"), code("#| hide\nv = 5"),
             code("import nbdev; nbdev.nbdev_export()")]
    p = tmp_path / "01_x.ipynb"
    p.write_text(json.dumps(nb(*cells)))
    flags = dc.skip_flags(["slow"])
    assert flags == ["cuda", "data", "slow"]
    assert dc.cells_to_skip(p, flags) == {2, 3, 4, 5, 7}
    marked = dc.mark_skipped(nb(*cells), {2})
    assert marked["cells"][2]["metadata"]["tags"] == [dc.SKIP_TAG]


def test_skip_flags_accepts_a_string():
    assert dc.skip_flags("slow notest") == ["cuda", "data", "notest", "slow"]


def test_lesson_notebooks_skips_underscore_and_filters(tmp_path):
    for n in ("index", "05_layers.attention", "_scratch", "13_viz"):
        (tmp_path / f"{n}.ipynb").write_text("{}")
    assert [p.stem for p in dc.lesson_notebooks(tmp_path)] == ["05_layers.attention", "13_viz", "index"]
    assert [p.stem for p in dc.lesson_notebooks(tmp_path, "^(05|index)")] == ["05_layers.attention", "index"]


# --- docs settings, sidebar, table, nbconvert set-up -------------------------------------------------

GOOD_QUARTO = {"project": {"type": "website"},
               "format": {"html": {"theme": "cosmo", "css": "styles.css"}, "commonmark": "default"},
               "website": {"title": "vivit_edu", "repo-actions": ["issue"]},
               "metadata-files": ["nbdev.yml", "sidebar.yml"]}


def _nbs(tmp_path):
    nbs = tmp_path / "nbs"; nbs.mkdir()
    (nbs / "styles.css").write_text("")
    (nbs / "_quarto.yml").write_text("")
    (nbs / "index.ipynb").write_text("{}")
    return nbs


def test_docs_config_ok_and_broken(tmp_path):
    nbs = _nbs(tmp_path)
    cfg = {"title": "vivit_edu", "lib_name": "vivit_edu", "git_url": "https://github.com/a/b",
           "doc_path": tmp_path / "docs", "custom_sidebar": False, "readme_nb": "index.ipynb"}
    assert dc.check_docs_config(GOOD_QUARTO, cfg, nbs, tmp_path) == []
    bad = json.loads(json.dumps(GOOD_QUARTO))
    bad["format"]["html"]["css"] = "style.css"
    bad["website"]["title"] = "Vivit"
    bad["metadata-files"] = ["nbdev.yml"]
    probs = dc.check_docs_config(bad, {**cfg, "doc_path": tmp_path, "git_url": ""}, nbs, tmp_path)
    text = "\n".join(probs)
    for want in ("style.css does not exist", "website.title", "sidebar.yml", "doc_path", "repo-actions"):
        assert want in text, (want, probs)


def test_the_projects_own_docs_settings_are_right():
    assert dc.config_check(ROOT / "nbs") == []


def test_sidebar_listing_non_pages_is_reported(tmp_path):
    nbs = _nbs(tmp_path)
    sb = {"website": {"sidebar": {"contents": ["index.ipynb", "nbdev.yml", "styles.css", "99_gone.ipynb",
                                               {"section": "More", "contents": ["index.ipynb"]}]}}}
    probs = dc.sidebar_problems(sb, nbs)
    assert len(probs) == 3 and any("nbdev.yml" in p for p in probs) and any("99_gone" in p for p in probs)


def test_table_lists_pages_and_columns():
    rs = [dc.PageResult("05_layers.attention", cells_run="14/14", figures="1/1", math="yes (26)", seconds=6.1),
          dc.PageResult("index", cells_run="1/1", figures="0/0")]
    t = dc.format_table(rs).splitlines()
    assert t[0].split()[:2] == ["page", "proc"] and "seconds" in t[0]
    assert t[2].startswith("05_layers.attention") and t[2].rstrip().endswith("6.1")
    assert len(t) == 4


def test_parse_proc_error_names_cell_and_cause():
    err = ("Traceback ...\nException: Error in notebook: Datasets in cell 67 :\nimport av\nfolder = tmpdir / 'x'\n"
           "NameError: name 'tmpdir' is not defined\n\"\"\"\n\nThe above exception ...\n"
           "Exception: Error in notebook: Datasets in cell 67 :\nimport av\nfolder = tmpdir / 'x'\n"
           "NameError: name 'tmpdir' is not defined\n")
    msg = dc.parse_proc_error(err)
    assert "import av" in msg and "NameError: name 'tmpdir' is not defined" in msg
    cells = [md("# Datasets"), code("x = 1"), code("import av\nfolder = tmpdir / 'x'")]
    assert dc.parse_proc_error(err, cells).startswith("cell 2 ('import av'): NameError")
    # directive lines are not what names the cell
    err2 = err.replace("in cell 67 :\nimport av", "in cell 67 :\n#| hide\nimport av")
    assert dc.parse_proc_error(err2, cells).startswith("cell 2 ('import av'): NameError")


def test_remote_script_urls():
    html = ('<script src="https://cdnjs.cloudflare.com/require.min.js"></script><script src="../n/require.js"></script>'
            "<script>var widgetRendererSrc = 'https://unpkg.com/@jupyter-widgets/html-manager@*/dist/embed-amd.js';</script>")
    assert dc.remote_script_urls(html) == ["https://cdnjs.cloudflare.com/require.min.js",
                                           "https://unpkg.com/@jupyter-widgets/html-manager@*/dist/embed-amd.js"]


def test_exporter_points_every_script_at_local_files(tmp_path):
    nm, html_dir = tmp_path / "cache" / "node_modules", tmp_path / "build" / "html"
    exp = dc.html_exporter(nm, html_dir)
    out = html_dir / "p.html"
    dc.to_html(exp, nb(md("$x$"), code(outputs=[VIEW]), widget_state=STATE), out, "p")
    html = out.read_text()
    assert dc.remote_script_urls(html) == []
    assert "../../cache/node_modules/mathjax/MathJax.js?config=" in html
    assert "../../cache/node_modules/requirejs/require.js" in html
    assert "../../cache/node_modules/@jupyter-widgets/html-manager/dist/embed-amd.js" in html


def test_figure_view_starts_just_above_the_first_widget_or_figure():
    html = page(md_cell("<h1>Top</h1>"), code_cell(), md_cell("<h2>Look</h2>"), code_cell(), code_cell(IMG))
    view = dc.figure_view(html)
    assert "Top" not in view and "Look" in view and "data:image/png" in view
    html = page(md_cell("<h1>Top</h1>"), code_cell(IMG), md_cell("<p>Drag it</p>"),
                code_cell(f'<div class="jupyter-widgets jp-OutputArea-output">{WIDGET_SCRIPT}</div>'))
    view = dc.figure_view(html)
    assert "Top" not in view and "data:image/png" not in view and "Drag it" in view and "widget-view" in view
    assert dc.figure_view(page(md_cell("<h1>T</h1>"))) is None


# --- executing lessons (real kernels: these start ipykernel, not torch) ------------------------------

@pytest.fixture
def kernels(monkeypatch):
    "The kernel named python3 is this virtualenv's, as in docs_check.main."
    monkeypatch.setenv("JUPYTER_PATH", str(Path(sys.prefix) / "share" / "jupyter"))
    monkeypatch.delenv("MPLBACKEND", raising=False)


def _write(path, *cells):
    path.write_text(json.dumps(nb(*[{**c, "outputs": [], "execution_count": None} if c["cell_type"] == "code" else c
                                    for c in cells])))
    return path


def test_cell_at_the_timeout_fails_naming_lesson_and_cell(tmp_path, kernels, capsys):
    src = _write(tmp_path / "07_slow.ipynb", md("# T"), code("x = 1"), code("import time\ntime.sleep(60)"), code("y = 2"))
    build = tmp_path / "build"
    assert dc.execute_only([src], build, dc.skip_flags([]), timeout=3, workers=1) == 1
    out = capsys.readouterr().out
    assert "07_slow: cell 2 ('import time') timed out after 3 s; execution stopped there" in out, out
    assert "lessons: 0 passed, 1 failed" in out
    # the executed notebook keeps the problem, for the docs check that renders it
    done = json.loads((build / "executed" / src.name).read_text())
    assert done["metadata"][dc.EXEC_META]["problems"] == ["cell 2 ('import time') timed out after 3 s; execution stopped there"]
    assert done["cells"][1]["execution_count"] == 1 and done["cells"][3]["execution_count"] is None


def test_errors_fail_the_lesson_with_cell_and_traceback(tmp_path, kernels, capsys):
    src = _write(tmp_path / "03_bad.ipynb", code("x = 1"), code("#| slow\nraise SystemExit"), code("1 / 0"))
    assert dc.execute_only([src], tmp_path / "b", dc.skip_flags([]), timeout=60, workers=1) == 1
    out = capsys.readouterr().out
    assert "03_bad: cell 2 ('1 / 0') raised ZeroDivisionError: division by zero" in out, out
    assert "first traceback:" in out and "ZeroDivisionError" in out.split("first traceback:")[1]


def test_stalled_cells_are_problems():
    n = nb(code("a = 1"), code("import time\ntime.sleep(1)"))
    assert dc.stalled_cells(n, {0: 0.1, 1: 600.2}, 600) == [
        "cell 1 ('import time') took 600 s, the whole cell timeout (600 s): a stalled execution"]
    assert dc.stalled_cells(n, {0: 0.1, 1: 599.0}, 600) == []


def test_output_widget_cells_do_not_stall(tmp_path, kernels):
    """jupyter/nbclient issue 312: nbclient answers an Output widget's captured output on the shell socket while it waits
    there for the cell's reply, and now and then misses the reply until the cell timeout (a plain NotebookClient stalled in
    4 of 100 such cells here). The lesson executor must not: no cell may take the timeout."""
    cells = [code("import ipywidgets as widgets\nfrom IPython.display import display")]
    cells += [code("o = widgets.Output(); display(o)\nfor k in range(3):\n    with o: print(k)") for _ in range(100)]
    src = _write(tmp_path / "13_widgets.ipynb", *cells)
    done, problems = dc.execute_notebook(src, tmp_path / "out" / src.name, dc.skip_flags([]), timeout=10)
    assert problems == [] and dc.notebook_facts(done).errors == []
    assert done["metadata"][dc.EXEC_META]["seconds"] < 10 * 4      # a stall would cost 10 s
    assert len(done["metadata"]["widgets"][dc.WIDGET_STATE]["state"]) == 100 * 2    # Output models + their layouts


def test_docs_check_reuses_an_execution_of_the_same_source(tmp_path, kernels):
    src = _write(tmp_path / "05_ok.ipynb", code("print('hi')"))
    build = tmp_path / "build"
    first = dc.execute_lessons([src], build, dc.skip_flags([]), timeout=60)
    assert not first["05_ok"]["reused"] and first["05_ok"]["problems"] == []
    again = dc.execute_lessons([src], build, dc.skip_flags([]), timeout=60, reuse=True)
    assert again["05_ok"]["reused"] and "".join(again["05_ok"]["nb"]["cells"][0]["outputs"][0]["text"]) == "hi\n"
    _write(src, code("print('changed')"))                          # a changed lesson is executed again
    assert not dc.execute_lessons([src], build, dc.skip_flags([]), timeout=60, reuse=True)["05_ok"]["reused"]


def test_longest_lessons_start_first(tmp_path, monkeypatch):
    monkeypatch.setenv("VIVIT_EDU_DOCS_CACHE", str(tmp_path))
    nbs = [tmp_path / f"{n}.ipynb" for n in ("00_core", "12_experiments", "13_viz", "17_pretrained", "index")]
    assert [p.stem for p in dc.longest_first(nbs)] == ["index", "17_pretrained", "13_viz", "12_experiments", "00_core"]
    (tmp_path / "lesson_seconds.json").write_text(json.dumps({"00_core": 2, "12_experiments": 50, "17_pretrained": 90, "index": 3}))
    assert [p.stem for p in dc.longest_first(nbs)] == ["13_viz", "17_pretrained", "12_experiments", "index", "00_core"]
