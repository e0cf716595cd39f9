"""Lesson 13 where learners use it: a live JupyterLab with a kernel, driven by Playwright in Debian's Chromium.

The docs check proves the rendered pages; this proves that a learner who runs `.venv/bin/jupyter lab nbs/` can use
the explorers. The test copies nbs/ to a temporary folder, starts `.venv/bin/jupyter lab` there on a free port with
a token (its own config, data, settings and workspace folders, so nothing of the user's is read or written), opens
lesson 13, runs all its cells, and checks that

- every code cell ran, no cell has an error output (or a traceback on stderr) and no widget failed to display;
- dragging a slider of the attention explorer and of the clip explorer with the mouse changes the explorer's
  figure: the image in the page (DOM) and its pixels (screenshots before and after);
- JupyterLab shuts down (its REST `api/shutdown`), taking its kernel with it, and frees its port.

The explorers are found by their controls' descriptions, not by cell position, so cells may be added to the lesson:
an attention explorer is a widget box whose controls are labelled `frame`, `patch`, `layer`, `t layer`, `head`
(`vivit_edu.viz.attention_explorer`); a clip explorer one labelled `frame`, `patch px`, `tubelet pt`, `grid`
(`clip_explorer`). Every explorer found gets its slider (`patch`, resp. `frame`) dragged. The test relies on
`Explorer`'s layout, a VBox holding a row (HBox) of controls and then an Output widget in which the figure is
one PNG `<img>`, and on ipywidgets 8's DOM classes (`widget-vbox`, `widget-hbox`, `widget-output`, `widget-hslider`,
`widget-label`, `widget-readout`, noUiSlider's `noUi-handle` and `noUi-target`, `jupyter-widgets-error-widget`).

Chromium: the first of chromium, chromium-browser, google-chrome on PATH (or $CHROMIUM), else Debian's `chromium`
is installed with apt-get (tools/docs_check.py's `ensure_chromium`); Playwright never downloads a browser. The test
skips, saying why, only when no Chromium can be found or installed. Screenshots go to reports/jupyterlab/.
"""
from __future__ import annotations

import base64
import contextlib
import hashlib
import importlib.util
import io
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LESSON = "13_viz.ipynb"
ATTENTION_LABELS = ("frame", "patch", "layer", "t layer", "head")   # attention_explorer's controls
CLIP_LABELS = ("frame", "patch px", "tubelet pt", "grid")          # clip_explorer's controls
REPORTS = ROOT / "reports" / "jupyterlab"
RUN_ALL_TIMEOUT_S = 300                                            # lesson 13 takes ~15 s in nbdev-test


def _docs_check():
    spec = importlib.util.spec_from_file_location("docs_check", ROOT / "tools" / "docs_check.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("docs_check", mod)
    spec.loader.exec_module(mod)
    return mod


def chromium() -> str:
    "A Chromium binary (installed with apt-get when missing and allowed); skips, saying why, when there is none."
    dc = _docs_check()
    try: return dc.ensure_chromium(install=True)[0]
    except dc.SetupError as e: pytest.skip(f"no Chromium for the JupyterLab test: {e}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, token: str, method: str = "GET", timeout: float = 5):
    req = urllib.request.Request(url, method=method, headers={"Authorization": f"token {token}"})
    return urllib.request.urlopen(req, timeout=timeout)


def lab_settings(settings_dir: Path) -> None:
    "JupyterLab settings for a test: every cell in the DOM (no windowing), no news or update checks (no network)."
    for plugin, values in {"@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
                           "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False,
                                                                           "doNotDisturbMode": True}}.items():
        f = settings_dir / f"{plugin}.jupyterlab-settings"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(values))


@contextlib.contextmanager
def jupyterlab(root_dir: Path, work: Path):
    "Start `.venv/bin/jupyter lab` serving `root_dir` on a free port with a token; yield (base URL, token); shut it down."
    port, token = free_port(), secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if k not in ("MPLBACKEND", "JUPYTER_TOKEN")}   # the kernel draws inline
    env.update(PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
               JUPYTER_CONFIG_DIR=str(work / "config"), JUPYTER_DATA_DIR=str(work / "data"),
               JUPYTER_RUNTIME_DIR=str(work / "runtime"), JUPYTERLAB_SETTINGS_DIR=str(work / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(work / "workspaces"), IPYTHONDIR=str(work / "ipython"),
               OMP_NUM_THREADS="1",
               VIVIT_EDU_CACHE=os.environ.get("VIVIT_EDU_CACHE") or str(work / "cache"))
    lab_settings(work / "settings")
    log = work / "jupyterlab.log"
    cmd = [str(BIN / "jupyter"), "lab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root_dir}",
           "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    tail = lambda: log.read_text()[-3000:]
    try:
        t0 = time.time()
        while True:
            if proc.poll() is not None: pytest.fail(f"jupyter lab exited {proc.returncode} at start:\n{tail()}")
            with contextlib.suppress(OSError):
                if _get(f"{base}/api/status", token).status == 200: break
            if time.time() - t0 > 90: pytest.fail(f"jupyter lab did not answer within 90 s:\n{tail()}")
            time.sleep(0.3)
        yield base, token
        kernels = json.load(_get(f"{base}/api/kernels", token))
        assert _get(f"{base}/api/shutdown", token, method="POST").status in (200, 204)
        proc.wait(timeout=30)
        assert proc.returncode == 0, f"jupyter lab exited {proc.returncode} after api/shutdown:\n{tail()}"
        assert kernels, "no kernel was running when JupyterLab was shut down"
        with pytest.raises(OSError):                                    # the server and its port are gone
            _get(f"{base}/api/status", token, timeout=2)
    finally:
        if proc.poll() is None:                                         # a failure above: stop it and its kernels
            os.killpg(proc.pid, signal.SIGTERM)
            try: proc.wait(timeout=15)
            except subprocess.TimeoutExpired: os.killpg(proc.pid, signal.SIGKILL); proc.wait()


# JavaScript run in the page (window.jupyterapp: --LabApp.expose_app_in_browser)
JS_NOTEBOOK_READY = """(path) => {
  // the lesson's notebook panel, opened and with an idle kernel (kept as window.__lesson: the shell's current
  // widget changes with focus); a synchronous predicate, polled by wait_for_function
  const app = window.jupyterapp; if (!app) return false;
  const nb = [...app.shell.widgets('main')].find(w => w.context && w.context.path === path);
  if (!nb || !nb.context.isReady || !nb.sessionContext.isReady) return false;
  const k = nb.sessionContext.session && nb.sessionContext.session.kernel;
  if (!k || k.status !== 'idle') return false;
  window.__lesson = nb; return true;
}"""
JS_RUN_STATE = """() => {
  const nb = window.__lesson;
  const code = nb.content.widgets.filter(c => c.model.type === 'code');
  const prompts = code.map(c => (c.node.querySelector('.jp-InputPrompt') || {}).textContent || '');
  const errors = [];
  code.forEach((c, i) => {
    const where = `code cell ${i} (${c.model.sharedModel.getSource().split('\\n')[0].slice(0, 60)})`;
    for (const o of c.model.outputs.toJSON()) {
      if (o.output_type === 'error') errors.push(`${where}: ${o.ename}: ${o.evalue}`);
      const text = o.output_type === 'stream' && o.name === 'stderr' ? [].concat(o.text).join('') : '';
      if (/Traceback|Error\\b/.test(text)) errors.push(`${where} on stderr: ${text.slice(-300)}`);
    }
  });
  for (const w of document.querySelectorAll('.jp-Notebook .jupyter-widgets-error-widget'))
    errors.push('widget error: ' + w.textContent.slice(0, 300));
  return {n: code.length, ran: code.filter(c => c.model.executionCount !== null).length,
          busy: prompts.filter(p => p.includes('*')).length, errors,
          kernel: nb.sessionContext.session.kernel.status};
}"""
JS_EXPLORERS = """(labels) => {
  // widget boxes (an Explorer: a row of controls above an Output) whose controls carry all of `labels`
  const out = [];
  document.querySelectorAll('.jp-Notebook .widget-vbox').forEach((box, i) => {
    const row = box.querySelector(':scope > .widget-hbox'); if (!row) return;
    const names = [...row.querySelectorAll('.widget-label, .widget-label-basic span')].map(e => e.textContent.trim());
    if (labels.every(l => names.includes(l))) out.push(i);
  });
  return out;
}"""


def explorer_image_src(box) -> str | None:
    img = box.locator(":scope > .widget-output img")
    return img.first.get_attribute("src") if img.count() == 1 else None


def drag_slider(page, box, label: str) -> tuple[str, str]:
    "Drag the handle of the slider labelled `label` in `box` with the mouse, most of the way to the far end; (before, after) readouts."
    sliders = box.locator(":scope > .widget-hbox .widget-hslider")
    names = [sliders.nth(i).locator(".widget-label").first.inner_text().strip() for i in range(sliders.count())]
    assert names.count(label) == 1, f"{names.count(label)} sliders labelled {label!r} in the explorer (sliders: {names})"
    slider = sliders.nth(names.index(label))
    readout = slider.locator(".widget-readout")
    before = readout.inner_text()
    handle, track = slider.locator(".noUi-handle"), slider.locator(".noUi-target")
    handle.scroll_into_view_if_needed()
    h, t = handle.bounding_box(), track.bounding_box()
    fraction = 0.15 if h["x"] + h["width"] / 2 > t["x"] + t["width"] / 2 else 0.85   # away from where it is
    page.mouse.move(h["x"] + h["width"] / 2, h["y"] + h["height"] / 2)
    page.mouse.down()
    page.mouse.move(t["x"] + fraction * t["width"], h["y"] + h["height"] / 2, steps=8)
    page.mouse.up()
    return before, readout.inner_text()


def png_of(src: str) -> bytes:
    "The PNG bytes of a data:image/png;base64 <img> source."
    return base64.b64decode(src.split(",", 1)[1])


def changed_pixels(png_a: bytes, png_b: bytes) -> float:
    "Fraction of pixels that differ (by more than antialiasing noise) between two images, over their common area."
    import numpy as np
    from PIL import Image
    a, b = (np.asarray(Image.open(io.BytesIO(p)).convert("RGB"), dtype=np.int16) for p in (png_a, png_b))
    h, w = min(a.shape[0], b.shape[0]), min(a.shape[1], b.shape[1])
    return float((np.abs(a[:h, :w] - b[:h, :w]).max(-1) > 8).mean())


def settled_image(page, box, old: str, timeout: float = 30) -> str:
    """The explorer's new figure once redrawing has stopped: the <img> differs from `old`, the kernel is idle and the
    image has not changed for a second (a drag sends intermediate values, each redrawn)."""
    deadline, last, since = time.time() + timeout, None, time.time()
    while True:
        src = explorer_image_src(box)
        if src != last: last, since = src, time.time()
        idle = page.evaluate("() => window.__lesson.sessionContext.session.kernel.status") == "idle"
        if src not in (None, old) and idle and time.time() - since > 1.0: return src
        if time.time() > deadline: return src
        time.sleep(0.1)


def move_and_check(page, box, label: str, name: str, shots: Path) -> dict:
    "Drag one slider of an explorer; the figure's <img> must change in the DOM and in pixels."
    box.scroll_into_view_if_needed()
    src0 = explorer_image_src(box)
    assert src0 and src0.startswith("data:image/png"), f"{name}: no figure (PNG <img>) in its output before the drag"
    fig = box.locator(":scope > .widget-output")
    fig.screenshot(path=str(shots / f"{name}.before.png"))
    before, after = drag_slider(page, box, label)
    assert after != before, f"{name}: dragging the {label!r} slider left its value at {before}"
    src1 = settled_image(page, box, src0)
    assert src1 not in (None, src0), f"{name}: the figure did not change within 30 s of moving {label!r} {before} -> {after}"
    fig.screenshot(path=str(shots / f"{name}.after.png"))
    moved = changed_pixels(png_of(src0), png_of(src1))
    assert moved > 0.005, f"{name}: only {moved:.2%} of the figure's pixels changed"
    return dict(slider=label, values=(before, after), changed_pixels=round(moved, 4),
                dom=(hashlib.sha1(src0.encode()).hexdigest()[:8], hashlib.sha1(src1.encode()).hexdigest()[:8]))


def drive_lesson(nbs: Path, work: Path, chrome: str, shots: Path, lesson: str = LESSON) -> dict:
    "Open `lesson` from `nbs` in a fresh JupyterLab, run all cells, move the two explorers' sliders; the facts seen."
    from playwright.sync_api import sync_playwright
    shots.mkdir(parents=True, exist_ok=True)
    facts, t0 = {}, time.time()
    with jupyterlab(nbs, work) as (base, token), sync_playwright() as pw:
        facts["lab_start_s"] = round(time.time() - t0, 1)
        browser = pw.chromium.launch(executable_path=chrome, headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            page.goto(f"{base}/lab/tree/{lesson}?token={token}")
            page.wait_for_function(JS_NOTEBOOK_READY, arg=lesson, timeout=120_000, polling=500)
            facts["open_s"] = round(time.time() - t0, 1)
            page.evaluate("() => { window.jupyterapp.shell.activateById(window.__lesson.id);"
                          " void window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
            page.wait_for_function(f"() => ({JS_RUN_STATE})().busy > 0 || ({JS_RUN_STATE})().ran > 0", timeout=30_000)
            deadline = time.time() + RUN_ALL_TIMEOUT_S
            while True:
                st = page.evaluate(JS_RUN_STATE)
                if st["busy"] == 0 and st["kernel"] == "idle" and (st["ran"] == st["n"] or st["errors"]): break
                if time.time() > deadline:
                    page.screenshot(path=str(shots / "timeout.png"))
                    pytest.fail(f"lesson {lesson} did not finish within {RUN_ALL_TIMEOUT_S} s: {st}")
                time.sleep(0.5)
            page.wait_for_timeout(1000)                                 # widget views render after the last reply
            st = page.evaluate(JS_RUN_STATE)
            facts.update(run_all_s=round(time.time() - t0 - facts["open_s"], 1), cells=st["n"], ran=st["ran"],
                         errors=st["errors"])
            page.screenshot(path=str(shots / "after_run_all.png"))
            boxes = page.locator(".jp-Notebook .widget-vbox")
            for name, labels, slider in (("attention_explorer", ATTENTION_LABELS, "patch"),
                                         ("clip_explorer", CLIP_LABELS, "frame")):
                idx = page.evaluate(JS_EXPLORERS, list(labels))
                facts[f"{name}_count"] = len(idx)
                facts[name] = [move_and_check(page, boxes.nth(i), slider, f"{name}{j}", shots)
                               for j, i in enumerate(idx)]
            facts["errors_after"] = page.evaluate(JS_RUN_STATE)["errors"]
        finally:
            browser.close()
    facts["total_s"] = round(time.time() - t0, 1)
    return facts


def test_lesson_13_explorers_in_jupyterlab(tmp_path):
    chrome = chromium()
    original = (ROOT / "nbs" / LESSON).read_bytes()
    nbs = tmp_path / "nbs"
    shutil.copytree(ROOT / "nbs", nbs, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "_proc"))
    shots = REPORTS if os.access(ROOT, os.W_OK) else tmp_path / "shots"
    f = drive_lesson(nbs, tmp_path / "lab", chrome, shots)
    print("JupyterLab test:", json.dumps(f))
    assert not f["errors"], f"cells show errors in JupyterLab: {f['errors']}"
    assert f["ran"] == f["cells"], f"only {f['ran']} of {f['cells']} code cells ran"
    assert f["attention_explorer_count"] >= 1, f"no attention explorer (a widget with controls {ATTENTION_LABELS})"
    assert f["clip_explorer_count"] >= 1, f"no clip explorer (a widget with controls {CLIP_LABELS})"
    assert not f["errors_after"], f"errors after moving the sliders: {f['errors_after']}"
    assert (ROOT / "nbs" / LESSON).read_bytes() == original              # JupyterLab worked on a copy


def test_changed_pixels_measures_a_change():
    "The pixel comparison itself: 0 for equal images, the changed fraction otherwise."
    import numpy as np
    from PIL import Image
    def png(a):
        buf = io.BytesIO(); Image.fromarray(a).save(buf, format="PNG"); return buf.getvalue()
    a = np.zeros((10, 10, 3), np.uint8); b = a.copy(); b[:2] = 200
    assert changed_pixels(png(a), png(a)) == 0.0
    assert changed_pixels(png(a), png(b)) == pytest.approx(0.2)
    b[:2] = 5                                                           # below the threshold: antialiasing noise
    assert changed_pixels(png(a), png(b)) == 0.0
