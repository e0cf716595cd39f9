"""The benchmark scripts run (on CPU, small shapes) and print their tables; nothing here asserts on speed."""
import importlib.util, json, subprocess, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod


def test_flop_counter_matches_the_paper_preset():
    g = load("gpu_train")
    fwd, total = g.count_flops(g.MODELS["vivit_paper"], small=False)      # meta device: no real compute
    assert fwd / 1e9 == pytest.approx(127.9, abs=0.05) and total / 1e9 == pytest.approx(383.8, abs=0.05)


def test_gpu_train_quick_runs_on_cpu(tmp_path):
    out = tmp_path / "res" / "cpu.md"
    r = subprocess.run([sys.executable, "bench/gpu_train.py", "--quick", "--steps", "1", "--warmup", "1", "--workers", "0",
                        "--data-clips", "8", "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "| model | batch | precision | SDPA | compile | channels-last | step ms | clips/s |" in r.stdout
    for label in ("ViViT paper preset (Model 2)", "Non-local ResNet-50 paper preset", "ViViT-B/16x2 Model 1"):
        assert f"| {label}" in r.stdout
    assert "| DataLoader workers | clips/s |" in r.stdout and "| model | model clips/s | data clips/s | bound |" in r.stdout
    assert out.read_text().startswith("# Training throughput on CPU")
    rec = json.loads(out.with_suffix(".json").read_text())
    assert rec["small"] and len(rec["rows"]) >= 7 and all("error" not in row for row in rec["rows"])
    assert all(row["clips_s"] > 0 and 0 < row["mfu"] for row in rec["rows"])


def test_inference_bench_runs(tmp_path):
    r = subprocess.run([sys.executable, "bench/inference.py", "--presets", "tiny", "--hops", "4", "--frames", "30",
                        "--width", "80", "--height", "60", "--repeats", "1"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "| tiny | 8 | 32x32 | 4 |" in r.stdout and "keeps up with 25 fps" in r.stdout


def test_gpu_train_time_budget_skips_rows(tmp_path):
    "--budget-s 0: every model config is listed as skipped, none is timed, the data pipeline is still measured."
    out = tmp_path / "b.md"
    r = subprocess.run([sys.executable, "bench/gpu_train.py", "--quick", "--steps", "1", "--warmup", "1", "--workers", "0",
                        "--data-clips", "8", "--budget-s", "0", "--models", "vivit_paper", "--out", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    rec = json.loads(out.with_suffix(".json").read_text())
    assert rec["rows"] and all(row["error"] == "skipped (--budget-s)" for row in rec["rows"])
    assert "skipped (time budget)" in r.stdout and rec["data"][0]["clips_s"] > 0
    assert rec["data"][0]["uint8_clips_s"] > 0                 # the decode-only ceiling is measured too


def test_gpu_session_script_dry_run(tmp_path):
    "bench/gpu_session.sh, the prepared command for a lent GPU, runs its steps end to end on the CPU (DRY=1)."
    import os
    out = tmp_path / "session"
    r = subprocess.run(["bash", "bench/gpu_session.sh"], cwd=ROOT, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "DRY": "1", "PY": sys.executable, "OUT": str(out)})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    summary = (out / "summary.txt").read_text().splitlines()
    assert [l.split(":")[0] for l in summary] == ["env", "cuda_tests", "train_bench", "inference_bench"]
    assert all(": exit 0 in" in l for l in summary), summary
    assert "passed" in (out / "cuda_tests.log").read_text()
    assert (out / "train.md").read_text().startswith("# Training throughput on")
    assert len(list(out.iterdir())) <= 8                      # what the device tool brings back


def _main_in_process(g, argv):
    "Run bench/gpu_train.py's main here (it sets torch's CPU threads: put them back)."
    import torch
    n = torch.get_num_threads()
    try: return g.main(argv)
    finally: torch.set_num_threads(n)


def test_gpu_train_writes_rows_as_it_goes(tmp_path, monkeypatch):
    "A run stopped part-way (on the device: the step's time limit) has already written every row it measured."
    g = load("gpu_train")
    def killed(*a, **k): raise KeyboardInterrupt("time limit")
    monkeypatch.setattr(g, "paper_like_videos", killed)                       # dies after the eager model rows
    out = tmp_path / "partial.md"
    with pytest.raises(KeyboardInterrupt):
        _main_in_process(g, ["--quick", "--steps", "1", "--warmup", "1", "--models", "vivit_paper", "--out", str(out)])
    md = out.read_text()
    assert md.startswith("# Training throughput on") and "| ViViT paper preset (Model 2) [shrunk] | 2 | bf16 |" in md
    assert len(json.loads(out.with_suffix(".json").read_text())["rows"]) == 2


def test_gpu_train_compile_rows_come_last(tmp_path, monkeypatch):
    "Eager rows, then the data pipeline, then torch.compile rows; the .md still shows one unbroken model table."
    g = load("gpu_train")
    calls = []
    def fake_speed(spec, cfg, *a, **k):
        calls.append("compile" if cfg["compile"] else "eager")
        return dict(step_ms=10.0, clips_s=100.0 if cfg["compile"] else 50.0, peak_gib=None, warmup_s=0.0)
    def fake_data(ds, workers, batch): calls.append("data"); return 75.0
    monkeypatch.setattr(g, "train_speed", fake_speed); monkeypatch.setattr(g, "data_speed", fake_data)
    out = tmp_path / "order.md"
    rec = _main_in_process(g, ["--quick", "--compile-on-cpu", "--models", "vivit_paper", "--workers", "0",
                               "--data-clips", "8", "--out", str(out)])
    assert calls == ["eager", "eager", "data", "data", "compile"], calls   # data: float, then uint8 clips
    lines = out.read_text().splitlines()
    start = lines.index(next(l for l in lines if l.startswith("| model | batch |")))
    table = lines[start:lines.index("", start)]
    assert len(table) == 2 + 3 and "| on |" in table[-1]                      # header, rule, 2 eager rows, the compiled one
    assert rec["bounds"][0]["model_clips_s"] == 100.0 and rec["bounds"][0]["bound"] == "data (decoding)"


def test_gpu_session_step_limits_fit_one_device_call():
    """The limits of bench/gpu_session.sh's steps add up to less than one device call (600 s), with room for the
    wheel install and the shell; the training benchmark's own budget leaves its step time for a last compile row and
    the data pipeline."""
    import re
    text = (ROOT / "bench" / "gpu_session.sh").read_text()
    limits = {m[0]: int(m[1]) for m in re.findall(r"^step (\w+) (\d+) ", text, flags=re.M)}
    assert list(limits) == ["env", "cuda_tests", "train_bench", "inference_bench"], limits
    assert sum(limits.values()) <= 570, limits
    budget = float(re.search(r"gpu_train\.py .*--budget-s (\d+)", text)[1])
    assert budget + 90 <= limits["train_bench"], (budget, limits)
