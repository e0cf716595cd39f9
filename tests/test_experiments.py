"Tests of the experiment pipeline and the `vivit-edu` command (lesson 12)."
import csv, subprocess, sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from vivit_edu.core import count_parameters
from vivit_edu.data.synthetic import make_embedded_dataset, make_embedded_rldd
from vivit_edu.experiments import (ExperimentConfig, run_experiments, summarise_table1, vivit, nl_resnet50)
from vivit_edu.cli import main

TINY = dict(epochs=1, nl_epochs=1, finetune_epochs=1, max_train_batches=2, seeds=(0,), finetune_seeds=(0,))

@pytest.fixture(scope="module")
def data():
    "The embedded datasets (generated once, then cached)."
    torch.set_num_threads(1)
    return make_embedded_dataset(), make_embedded_rldd()

def read_csv(path):
    with open(path) as f: return list(csv.DictReader(f))

def test_end_to_end_with_dataset_paths(data, tmp_path):
    "The real-data code path (explicit --ucf101/--rldd folders), tiny settings: every report file with the right columns."
    ucf, rldd = data
    cfg = ExperimentConfig(ucf101_root=str(ucf), rldd_root=str(rldd), out_dir=str(tmp_path / "r"), **TINY)
    res = run_experiments(cfg, verbose=False)
    out = Path(res["out_dir"])
    for name in ("report.md", "table1.csv", "table2.csv", "curves.png", "vivit_seed0/history.csv",
                 "vivit_shuffled_seed0/history.csv", "nonlocal_seed0/history.csv"):
        assert (out / name).is_file(), name
    t1 = read_csv(out / "table1.csv")
    assert {"model", "seed", "epochs", "time_per_epoch_s", "parameters", "val_acc", "val_video_acc"} <= set(t1[0])
    assert [r["model"] for r in t1] == ["ViViT", "ViViT (shuffled frames)", "Non-local ResNet-50"]
    K = len(res["table1"]["classes"])
    assert int(t1[0]["parameters"]) == count_parameters(vivit(**cfg.vivit_kwargs(), num_classes=K))
    assert int(t1[2]["parameters"]) == count_parameters(nl_resnet50(**cfg.nl_kwargs(), num_classes=K))
    t2 = read_csv(out / "table2.csv")
    assert {"case", "seed", "val_acc", "drowsy_acc", "old_acc_before", "old_acc_after", "forgetting",
            "trainable_parameters", "time_s"} <= set(t2[0])
    assert [r["case"] for r in t2] == ["case1", "case2", "case3", "case4"]
    tp = [int(r["trainable_parameters"]) for r in t2]
    assert tp[0] == count_parameters(vivit(**cfg.vivit_kwargs(), num_classes=K + 1)) and tp[0] > tp[1] > tp[2] > tp[3]
    md = (out / "report.md").read_text()
    assert "Protocol: paper" in md and "77.81" in md and "Table 2" in md

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
    assert main(["experiment", "--preset", "demo", "--device", "cpu", "--ucf101", str(tmp_path / "empty"),
                 "--out", str(tmp_path / "r")]) == 2
    assert "UCF-101" in capsys.readouterr().err

def test_cli_bad_arguments():
    "argparse rejects unknown choices."
    for argv in (["experiment", "--protocol", "random"], ["experiment", "--preset", "huge"], ["frobnicate"], []):
        with pytest.raises(SystemExit) as e: main(argv)
        assert e.value.code == 2

def test_config_errors():
    with pytest.raises(ValueError, match="preset"): ExperimentConfig(preset="huge")
    with pytest.raises(FileNotFoundError, match="/no/such/rldd"): ExperimentConfig(rldd_root="/no/such/rldd")

def test_console_script_data(tmp_path):
    "The installed `vivit-edu data` command generates the embedded datasets and prints where."
    exe = Path(sys.executable).with_name("vivit-edu")
    if not exe.exists(): pytest.skip("vivit-edu is not installed in this environment")
    r = subprocess.run([str(exe), "data", "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert str(tmp_path / "ucf101") in r.stdout and (tmp_path / "ucf101" / "ucfTrainTestlist").is_dir()
    assert (tmp_path / "rldd").is_dir()

@pytest.mark.slow
def test_temporal_order_matters(data, tmp_path):
    "With the demo settings, ViViT beats the same model on frame-shuffled clips (mean over the demo's three seeds)."
    cfg = ExperimentConfig(out_dir=str(tmp_path / "demo"), nonlocal_model=False)
    from vivit_edu.experiments import run_table1
    rows = summarise_table1(run_table1(cfg)["rows"])
    assert rows[0]["model"] == "ViViT" and rows[1]["model"] == "ViViT (shuffled frames)"
    assert rows[0]["val acc (%)"] > rows[1]["val acc (%)"] + 3, rows

def test_cli_bad_rldd_layout_fails_before_training(data, tmp_path, capsys, monkeypatch):
    "A --rldd folder that is not in UTA-RLDD's layout is reported before Table 1 trains anything."
    import vivit_edu.experiments as E
    def no_training(*a, **k): raise AssertionError("Table 1 started training before the RLDD folder was checked")
    monkeypatch.setattr(E, "run_table1", no_training)
    (tmp_path / "not_rldd").mkdir(); (tmp_path / "not_rldd" / "notes.txt").write_text("hello")
    assert main(["experiment", "--preset", "demo", "--device", "cpu", "--rldd", str(tmp_path / "not_rldd"),
                 "--out", str(tmp_path / "r")]) == 2
    assert "not_rldd" in capsys.readouterr().err

def test_uint8_clips_in_both_tables(data, tmp_path):
    "uint8_clips: UCF101 and RLDD clips stay uint8 until the trainer; normalised, they are the float clips to within rounding."
    from vivit_edu.experiments import ucf_splits, rldd_sets
    from vivit_edu.data.datasets import normalize_clips, KINETICS_STD
    ucf, rldd = data
    base = ExperimentConfig(ucf101_root=str(ucf), rldd_root=str(rldd), preset="demo", out_dir=str(tmp_path / "f"), **TINY)
    u8 = replace(base, uint8_clips=True, out_dir=str(tmp_path / "u8"))
    for make in (lambda c: ucf_splits(c, ucf)[1], lambda c: rldd_sets(c, rldd, new_label=8)[1]):
        (xf, yf, *_), (x8, y8, *_) = make(base)[0], make(u8)[0]
        assert xf.dtype == torch.float32 and x8.dtype == torch.uint8 and yf == y8
        assert (normalize_clips(x8[None])[0] - xf).abs().max() <= 0.5 / 255 / KINETICS_STD[0] + 1e-5
    res = run_experiments(u8, verbose=False)                     # the whole pipeline runs on uint8 clips
    assert len(res["table1"]["rows"]) == 3 and len(res["table2"]["rows"]) == 4
