"Tests of the experiment pipeline and the `vivit-edu demo` / `experiment` commands (lesson 12)."
import csv, io, subprocess, sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from vivit_edu.core import count_parameters
from vivit_edu.experiments import (ExperimentConfig, run_experiments, summarise_table1, summarise_table2, table1_jobs,
                                   table2_jobs, Progress, vivit, nl_resnet50, resolve_data)
from vivit_edu.cli import main

SMOKE = dict(preset="smoke", seeds=(0,), finetune_seeds=(0,))

@pytest.fixture(scope="module")
def data():
    "The smoke preset's embedded datasets (generated once per session in the throwaway cache, then reused)."
    torch.set_num_threads(1)
    return resolve_data(ExperimentConfig(**SMOKE, out_dir="unused"), rldd_too=True)

def read_csv(path):
    with open(path) as f: return list(csv.DictReader(f))

def test_end_to_end_with_dataset_paths(data, tmp_path):
    "The real-data code path (explicit folders, ViViT from scratch as in the paper, one process): every report file, the right columns."
    ucf, rldd = data
    cfg = ExperimentConfig(ucf101_root=str(ucf), rldd_root=str(rldd), image_start=None, workers=1, out_dir=str(tmp_path / "r"), **SMOKE)
    res = run_experiments(cfg, verbose=False)
    out = Path(res["out_dir"])
    for name in ("report.md", "table1.csv", "table2.csv", "curves.png", "confusions.png", "vivit/model.safetensors"):
        assert (out / name).is_file(), name
    t1 = read_csv(out / "table1.csv")
    assert {"model", "seed", "epochs", "time_per_epoch_s", "parameters", "val_acc", "val_video_acc"} <= set(t1[0])
    assert [r["model"] for r in t1] == ["ViViT", "ViViT, shuffled frames", "ViViT, one frame", "3D CNN (small)", "Non-local ResNet-50"]
    K = len(res["table1"]["classes"])
    assert int(t1[0]["parameters"]) == count_parameters(vivit(**cfg.vivit_kwargs(), num_classes=K))
    assert int(t1[-1]["parameters"]) == count_parameters(nl_resnet50(**cfg.nl_kwargs(), num_classes=K))
    t2 = read_csv(out / "table2.csv")
    assert {"case", "seed", "val_acc", "drowsy_acc", "old_acc_before", "old_acc_after", "forgetting",
            "trainable_parameters", "time_s"} <= set(t2[0])
    assert [r["case"] for r in t2] == ["case1", "case2", "case3", "case4"]
    tp = [int(r["trainable_parameters"]) for r in t2]
    assert tp[0] == count_parameters(vivit(**cfg.vivit_kwargs(), num_classes=K + 1)) and tp[0] > tp[1] > tp[2] > tp[3]
    md = (out / "report.md").read_text()
    assert "Protocol: official" in md and "77.81" in md and "Table 2" in md and "image model" not in md.lower().split("table 1")[0]

def test_same_seeds_same_tables_in_any_process(data, tmp_path):
    "A run's numbers depend on its seeds, not on which process trains it or when: two workers and one give the same rows."
    ucf, rldd = data
    two = run_experiments(ExperimentConfig(**SMOKE, out_dir=str(tmp_path / "two")), verbose=False)
    one = run_experiments(ExperimentConfig(**SMOKE, workers=1, out_dir=str(tmp_path / "one")), verbose=False)
    strip = lambda rows: [{k: v for k, v in r.items() if "time" not in k and k not in ("wall_s", "peak_memory_mib")} for r in rows]
    assert strip(two["table1"]["rows"]) == strip(one["table1"]["rows"])
    assert strip(two["table2"]["rows"]) == strip(one["table2"]["rows"])
    assert two["table1"]["image"]["r2"] == one["table1"]["image"]["r2"]

def test_jobs_of_the_demo():
    "The demo's runs: the image model, three seeds of ViViT and its twins, the baselines; Table 2 paired by seed."
    cfg = ExperimentConfig(out_dir="unused")
    jobs = table1_jobs(cfg)
    assert [j.name for j in jobs if j.model == "ViViT"] == ["ViViT seed 0", "ViViT seed 1", "ViViT seed 2"]
    assert all(j.needs == ("image",) for j in jobs if j.kind == "vivit")
    assert {j.model for j in jobs} >= {"ViViT, shuffled frames", "ViViT, one frame", "ViViT, random weights", "3D CNN (small)",
                                        "Non-local ResNet-50"}
    t2 = table2_jobs(cfg)
    assert len(t2) == 21 and {j.needs[0] for j in t2 if j.seed == 1} == {"ViViT seed 1"}   # 4 cases + lora4, bitfit, probe
    assert [j.case for j in t2[12::3]] == ["lora4", "bitfit", "probe"]

def test_progress_lines_and_bar():
    "Plain output: one timestamped line per finished run with the time left; a terminal gets a bar instead."
    jobs = table1_jobs(ExperimentConfig(**SMOKE, out_dir="unused"))
    buf = io.StringIO()
    p = Progress(jobs, bar=False, stream=buf)
    p.update(jobs[0].name, 5, 10); p.finished(jobs[0].name, "done")
    line = buf.getvalue().strip()
    assert line.endswith(f"(1/{len(jobs)} runs; about 0 min left)") and f"{jobs[0].name}: done" in line and line.startswith("[")
    bar = io.StringIO()
    q = Progress(jobs, bar=True, stream=bar)
    q.update(jobs[1].name, 1, 2); q.finished(jobs[0].name, "done"); q.close()
    assert "experiments" in bar.getvalue() and "%" in bar.getvalue() and "min left" not in bar.getvalue()

def test_cli_bad_paths(tmp_path, capsys):
    "A missing dataset folder is named in a clear error, exit status 2."
    missing = tmp_path / "no_such_ucf"
    assert main(["experiment", "--ucf101", str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err
    assert main(["experiment", "--rldd", str(missing)]) == 2
    assert "--rldd" in capsys.readouterr().err

def test_cli_bad_ucf_layout(tmp_path, capsys):
    "A folder that is not in UCF101's layout gives an error naming what is missing."
    (tmp_path / "empty").mkdir()
    assert main(["experiment", "--preset", "smoke", "--image-start", "none", "--device", "cpu", "--ucf101", str(tmp_path / "empty"),
                 "--out", str(tmp_path / "r")]) == 2
    assert "UCF-101" in capsys.readouterr().err

def test_cli_bad_arguments():
    "argparse rejects unknown choices."
    for argv in (["experiment", "--protocol", "random"], ["experiment", "--preset", "huge"], ["experiment", "--baselines", "mirror"],
                 ["frobnicate"], []):
        with pytest.raises(SystemExit) as e: main(argv)
        assert e.value.code == 2

def test_config_errors(tmp_path):
    with pytest.raises(ValueError, match="preset"): ExperimentConfig(preset="huge")
    with pytest.raises(FileNotFoundError, match="/no/such/rldd"): ExperimentConfig(rldd_root="/no/such/rldd")
    with pytest.raises(ValueError, match="image_start='embedded'"): ExperimentConfig(ucf101_root=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="no such weights"): ExperimentConfig(image_start=str(tmp_path / "vit.pth"))
    with pytest.raises(ValueError, match="workers"): ExperimentConfig(workers=0)

def test_console_script_data(tmp_path):
    "The installed `vivit-edu data` command generates the embedded datasets and prints where."
    exe = Path(sys.executable).with_name("vivit-edu")
    if not exe.exists(): pytest.skip("vivit-edu is not installed in this environment")
    r = subprocess.run([str(exe), "data", "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert str(tmp_path / "ucf101") in r.stdout and (tmp_path / "ucf101" / "ucfTrainTestlist").is_dir()
    assert (tmp_path / "rldd").is_dir()

def test_cli_bad_rldd_layout_fails_before_training(data, tmp_path, capsys, monkeypatch):
    "A --rldd folder that is not in UTA-RLDD's layout is reported before anything trains."
    import vivit_edu.experiments as E
    def no_training(*a, **k): raise AssertionError("training started before the RLDD folder was checked")
    monkeypatch.setattr(E, "run_jobs", no_training)
    (tmp_path / "not_rldd").mkdir(); (tmp_path / "not_rldd" / "notes.txt").write_text("hello")
    assert main(["experiment", "--preset", "smoke", "--device", "cpu", "--rldd", str(tmp_path / "not_rldd"),
                 "--out", str(tmp_path / "r")]) == 2
    assert "not_rldd" in capsys.readouterr().err

def test_uint8_clips_in_both_tables(data, tmp_path):
    "uint8_clips: UCF101 and RLDD clips stay uint8 until the trainer; normalised, they are the float clips to within rounding."
    from vivit_edu.experiments import ucf_splits, rldd_sets
    from vivit_edu.data.datasets import normalize_clips, KINETICS_STD
    ucf, rldd = data
    base = ExperimentConfig(**SMOKE, out_dir=str(tmp_path / "f"))
    u8 = replace(base, uint8_clips=True, out_dir=str(tmp_path / "u8"))
    for make in (lambda c: ucf_splits(c, ucf)[1], lambda c: rldd_sets(c, rldd, new_label=8)[1]):
        (xf, yf, *_), (x8, y8, *_) = make(base)[0], make(u8)[0]
        assert xf.dtype == torch.float32 and x8.dtype == torch.uint8 and yf == y8
        assert (normalize_clips(x8[None])[0] - xf).abs().max() <= 0.5 / 255 / KINETICS_STD[0] + 1e-5
    res = run_experiments(u8, verbose=False)                     # the whole pipeline runs on uint8 clips
    assert len(res["table1"]["rows"]) == 6 and len(res["table2"]["rows"]) == 4

@pytest.mark.slow
def test_demo_claims_hold_with_other_seeds(tmp_path):
    """The demo's claims, on another data seed and another set of training seeds, with fewer runs (about 5 minutes on 2 cores):
    ViViT >= 85% (no seed below 80%), its shuffled-frame and one-frame twins <= 55%, and case 4 apart from case 3 on Drowsy."""
    cfg = ExperimentConfig(data_seed=1, seeds=(3, 4), finetune_seeds=(3, 4), baselines=("shuffled", "one frame"),
                           nonlocal_model=False, out_dir=str(tmp_path / "demo"))
    res = run_experiments(cfg, verbose=False)
    acc = lambda m: [r["val_video_acc"] for r in res["table1"]["rows"] if r["model"] == m]
    vv = acc("ViViT")
    print("data seed 1, seeds 3 4:", {m: acc(m) for m in ("ViViT", "ViViT, shuffled frames", "ViViT, one frame")},
          {c: [r["drowsy_acc"] for r in res["table2"]["rows"] if r["case"] == c] for c in ("case1", "case2", "case3", "case4")})
    assert sum(vv) / len(vv) >= 85 and min(vv) >= 80, vv
    assert max(acc("ViViT, shuffled frames")) <= 55 and max(acc("ViViT, one frame")) <= 55
    drowsy = {c: [r["drowsy_acc"] for r in res["table2"]["rows"] if r["case"] == c] for c in ("case3", "case4")}
    assert min(drowsy["case3"]) - max(drowsy["case4"]) >= 5, drowsy
