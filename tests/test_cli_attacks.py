"""The command line attacked (issue 18, "Found by attacking the command line", items 1-7; `check-data`) and the two CLI
bugs of issue 17 (resuming a run whose image-model file is gone; heads a weights file does not state). Most calls run
`vivit_edu.cli.main` in this process, as the shell would call it, on a small folder of AVI files; the Ctrl-C test runs
the command in a subprocess."""
import json, os, shutil, signal, subprocess, sys, time
from pathlib import Path

import numpy as np
import pytest
import torch

from vivit_edu.cli import main
from vivit_edu.data.datasets import make_example_folder
from vivit_edu.data.video import write_video
from vivit_edu.train import History, read_checkpoint_state
from ctrl_c import default_sigint

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["--batch-size", "6", "--pool", "mean", "--temporal-pos", "--num-workers", "0", "--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    torch.set_num_threads(1)
    return make_example_folder(tmp_path_factory.mktemp("clips") / "clips", videos_per_class=4)


@pytest.fixture(scope="module")
def run1(folder, tmp_path_factory):
    "A finished 1-epoch run."
    out = tmp_path_factory.mktemp("run1") / "run"
    assert main(["train", str(folder), *QUICK, "--epochs", "1", "--out-dir", str(out)]) == 0
    return out


def train(folder, out, *extra):
    return main(["train", str(folder), *QUICK, "--out-dir", str(out), *extra])


def said(capsys):
    r = capsys.readouterr()
    return r.out, r.err


# 1. A failed start leaves nothing behind
@pytest.mark.parametrize("bad", [["--epochs", "0"], ["--lr", "nan"], ["--batch-size", "0"], ["--size", "0", "0"],
                                 ["--init", "no_such_run"], ["--crop", "0", "--size", "40"]])
def test_failed_start_writes_nothing(folder, tmp_path, capsys, bad):
    out = tmp_path / "o"
    assert train(folder, out, "--epochs", "1", *bad) == 2
    _, err = said(capsys)
    assert err.startswith("vivit-edu: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert not out.exists()                                           # nothing written: the folder stays usable
    assert train(folder, out, "--epochs", "1") == 0 and (out / "last").is_dir()


def test_folder_with_only_run_json_counts_as_empty(run1, folder, tmp_path):
    out = tmp_path / "o"; out.mkdir(); shutil.copy(run1 / "run.json", out)
    spec = json.loads((out / "run.json").read_text()); spec["frames"] = 4; (out / "run.json").write_text(json.dumps(spec))
    assert train(folder, out, "--epochs", "1") == 0                   # not "holds a run already"
    assert json.loads((out / "run.json").read_text())["frames"] == 8


# 2. Extending a finished run trains, with a rebuilt schedule
def test_extending_a_finished_run_trains(run1, folder, tmp_path):
    "In a subprocess, to see what the command prints (pytest records warnings instead of printing them)."
    out = shutil.copytree(run1, tmp_path / "run")
    p = subprocess.run([sys.executable, "-m", "vivit_edu", "train", str(folder), *QUICK, "--epochs", "3", "--resume",
                        "--out-dir", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "default"})
    assert p.returncode == 0, p.stderr[-3000:]
    h = History.from_csv(out / "history.csv")
    assert h["epoch"] == [1, 2, 3] and h["lr"][0] == 0 and h["lr"][1] > 0, h["lr"]   # the 1-epoch schedule had ended at 0
    from safetensors.torch import load_file
    w1, w2 = load_file(run1 / "last" / "model.safetensors"), load_file(out / "last" / "model.safetensors")
    assert any(not torch.equal(w1[k], w2[k]) for k in w1)              # epochs 2 and 3 moved the weights
    assert "vivit-edu: warning: resuming" in p.stderr and "the learning-rate schedule is rebuilt for epochs 1 -> 3" in p.stderr, p.stderr
    assert "UserWarning" not in p.stderr and "changed config" not in p.stderr, p.stderr   # one plain line, no false "warmup changed"


# 3. Non-finite values: refused, or stopped naming the file
def test_non_finite_values(run1, folder, tmp_path, capsys):
    assert train(folder, tmp_path / "inf", "--lr", "inf") == 2 and "must be a finite number" in said(capsys)[1]
    assert not (tmp_path / "inf").exists()
    out = shutil.copytree(run1, tmp_path / "nan")
    from safetensors.torch import load_file, save_file
    w = load_file(out / "last" / "model.safetensors"); k = next(iter(w)); w[k] = torch.full_like(w[k], float("nan"))
    save_file(w, out / "last" / "model.safetensors")                  # overwritten bytes: nan weights
    assert train(folder, out, "--epochs", "2", "--resume") == 2
    err = said(capsys)[1]
    assert f"{out / 'last' / 'model.safetensors'}: the weights hold nan or inf values" in err, err
    shutil.copy(out / "last" / "model.safetensors", out / "best" / "model.safetensors")
    video = next((folder / "ZoomIn").iterdir())
    assert main(["predict", str(video), "--run", str(out), "--quiet"]) == 2
    assert "the weights hold nan or inf values" in said(capsys)[1]


def test_loss_turning_nan_stops_before_saving(run1, tmp_path, folder, monkeypatch, capsys):
    "Poisoned clips make the loss nan: training stops naming the epoch, and last/ still holds the epoch before."
    from vivit_edu.data import datasets
    out = shutil.copytree(run1, tmp_path / "run")
    real = datasets.VideoClips.__getitem__
    monkeypatch.setattr(datasets.VideoClips, "__getitem__", lambda self, i: (real(self, i)[0] * float("nan"), *real(self, i)[1:]))
    assert train(folder, out, "--epochs", "2", "--resume") == 2
    err = said(capsys)[1]
    assert "vivit-edu: error: epoch 2 (optimiser step" in err and "stopped before saving" in err, err
    assert read_checkpoint_state(out / "last")["epoch"] == 1


# 4. One-line errors, not tracebacks; Ctrl-C says where the run stands
@pytest.mark.parametrize("bad", [["--size", "0", "0"], ["--device", "foo"], ["--threads", "-1"]]
                         + ([] if torch.cuda.is_available() else [["--device", "cuda"]]))
def test_one_line_errors(run1, folder, tmp_path, capsys, bad):
    assert train(folder, tmp_path / "o", *bad) == 2
    err = said(capsys)[1]
    assert err.startswith("vivit-edu: error: ") and err.count("\n") == 1, err
    if bad[0] in ("--device", "--threads"):
        video = next((folder / "ZoomIn").iterdir())
        assert main(["predict", str(video), "--run", str(run1), *bad]) == 2
        err = said(capsys)[1].splitlines()
        assert err[-1].startswith("vivit-edu: error: ") and len(err) <= 2, err   # (the weights line, then the error)


def test_ctrl_c_says_where_the_run_stands(folder, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "vivit_edu", "train", str(folder), *QUICK, "--epochs", "200", "--batch-size", "2",
           "--out-dir", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=default_sigint)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            if (out / "history.csv").exists() and len((out / "history.csv").read_text().splitlines()) >= 2: break
            time.sleep(0.05)
        assert proc.poll() is None, "training ended before it could be interrupted"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None: proc.kill()
    done = read_checkpoint_state(out / "last")["epoch"]
    assert proc.returncode == 130 and "Traceback" not in err, err[-3000:]
    assert f"vivit-edu: interrupted at epoch {done + 1}; {out / 'last'} holds epoch {done}: resume with --resume" in err, err


# 5. predict without a prediction fails; --quiet still names the class
def test_predict_without_a_prediction_fails(run1, folder, tmp_path, capsys):
    video = next((folder / "ZoomIn").iterdir())
    one = write_video(tmp_path / "still.avi", np.zeros((1, 48, 64, 3), np.uint8))   # one frame: a picture as a video
    for argv in (["predict", str(one), "--run", str(run1)], ["predict", str(video), "--run", str(run1), "--frames", "1000"]):
        assert main(argv) == 1
        out, err = said(capsys)
        assert "fewer than one window" in err and "no prediction" in err and "nan frames/s" not in out + err, (out, err)
    for flag in ("--max-frames", "--frames"):
        assert main(["predict", str(video), "--run", str(run1), flag, "0"]) == 2
        assert f"{flag} 0: must be at least 1" in said(capsys)[1]
    assert main(["predict", str(video), "--run", str(run1), "--quiet"]) == 0
    lines = said(capsys)[0].splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{video}: ") and "mean probability" in lines[0], lines
    assert lines[0].split()[1] in ("FadeIn", "MoveRight", "ZoomIn") and "frames/s" in lines[1]


# 6. predict --run says which weights it uses
def test_predict_says_which_weights(run1, folder, tmp_path, capsys):
    video = next((folder / "ZoomIn").iterdir())
    assert main(["predict", str(video), "--run", str(run1), "--quiet"]) == 0
    assert f"vivit-edu predict: weights {run1 / 'best' / 'model.safetensors'}\n" in said(capsys)[1]
    out = shutil.copytree(run1, tmp_path / "no_best"); shutil.rmtree(out / "best")
    assert main(["predict", str(video), "--run", str(out), "--quiet"]) == 0
    err = said(capsys)[1]
    assert f"weights {out / 'last' / 'model.safetensors'} (the run has no best/ checkpoint" in err, err


# 7. Messages that name the right thing
def test_messages(run1, folder, tmp_path, capsys):
    f = tmp_path / "afile.txt"; f.write_text("x")
    assert train(folder, f) == 2 and f"--out-dir {f}: a file, not a folder" in said(capsys)[1]
    assert train(folder, tmp_path / "o", "--val", str(f)) == 2 and f"{f}: a file, not a validation folder" in said(capsys)[1]
    video = next((folder / "ZoomIn").iterdir())
    assert main(["predict", str(video), "--run", str(f)]) == 2 and f"{f}: a file, not a run folder" in said(capsys)[1]
    out = shutil.copytree(run1, tmp_path / "no_classes")
    spec = json.loads((out / "run.json").read_text()); del spec["classes"]; (out / "run.json").write_text(json.dumps(spec))
    assert main(["predict", str(video), "--run", str(out)]) == 2
    assert f"{out / 'run.json'}: no class names" in said(capsys)[1]
    assert train(folder, tmp_path / "x", "--frames", "0") == 2 and "frames" in said(capsys)[1]
    spaced = tmp_path / "my runs" / "it's here"
    assert train(folder, spaced, "--epochs", "1") == 0
    out_text = said(capsys)[0]
    assert "predict: vivit-edu predict VIDEO --run '" in out_text, out_text
    cmd = out_text.splitlines()[-1].removeprefix("predict: ")
    import shlex
    assert shlex.split(cmd)[-1] == str(spaced)                       # the suggested command survives the shell


# check-data: every bad file, one line each, a summary, status 1
def test_check_data(folder, tmp_path, capsys):
    assert main(["check-data", str(folder)]) == 0
    out = said(capsys)[0]
    assert out.strip().endswith("12 video file(s), 12 good, 0 bad"), out
    data = shutil.copytree(folder, tmp_path / "data")
    good = next((data / "ZoomIn").iterdir())
    (data / "ZoomIn" / "empty.avi").write_bytes(b"")
    (data / "ZoomIn" / "cut.avi").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (data / "FadeIn" / "text.mp4").write_text("not a video")
    write_video(data / "FadeIn" / "short.avi", np.zeros((3, 48, 64, 3), np.uint8))
    write_video(data / "FadeIn" / "tiny.avi", np.zeros((20, 8, 8, 3), np.uint8))
    import av
    with av.open(str(data / "MoveRight" / "sound.mp4"), "w") as c:      # audio only
        a = c.add_stream("aac", rate=8000); a.layout = "mono"
        fr = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono"); fr.sample_rate = 8000
        for pkt in [*a.encode(fr), *a.encode()]: c.mux(pkt)
    assert main(["check-data", str(data)]) == 1
    lines = said(capsys)[0].splitlines()
    why = {Path(l.split(": ", 1)[0]).name: l.split(": ", 1)[1] for l in lines[:-1]}
    assert sorted(why) == ["cut.avi", "empty.avi", "short.avi", "sound.mp4", "text.mp4", "tiny.avi"], lines
    assert why["empty.avi"] == "empty file (0 bytes)" and why["cut.avi"].startswith("truncated")
    assert why["short.avi"].startswith("too short") and why["tiny.avi"].startswith("frames of 8x8")
    assert "no video stream" in why["sound.mp4"]
    assert lines[-1].endswith("18 video file(s), 12 good, 6 bad"), lines[-1]
    assert main(["check-data", str(tmp_path / "nowhere")]) == 2


def test_check_data_layouts(tmp_path, capsys):
    from vivit_edu.data.synthetic import make_embedded_dataset, make_embedded_rldd
    ucf = make_embedded_dataset(tmp_path / "ucf", groups=2, clips_per_group=1)
    rldd = make_embedded_rldd(tmp_path / "rldd", subjects_per_part=1, frames=16)
    assert main(["check-data", str(ucf)]) == 0 and "(UCF101)" in said(capsys)[0]
    assert main(["check-data", str(rldd)]) == 0 and "(UTA-RLDD)" in said(capsys)[0]


# issue 17: resuming a run whose image-model file is gone; heads the file does not state
def test_resume_after_the_image_file_is_gone(folder, tmp_path, capsys):
    from torchvision.models.vision_transformer import VisionTransformer
    torch.manual_seed(0)
    vit = tmp_path / "vit.pth"
    torch.save(VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=64, mlp_dim=128).state_dict(), vit)
    image = ["--image-weights", str(vit), "--batch-size", "6", "--num-workers", "0", "--device", "cpu", "--quiet"]
    out = tmp_path / "run"
    assert main(["train", str(folder), *image, "--epochs", "1", "--out-dir", str(out)]) == 2
    assert "vit.pth: the weights do not say how many attention heads" in said(capsys)[1] and not out.exists()
    assert main(["train", str(folder), *image, "--heads", "2", "--epochs", "1", "--out-dir", str(out)]) == 0
    assert json.loads((out / "run.json").read_text())["options"]["heads"] == 2
    vit.unlink()
    assert main(["train", str(folder), *image, "--heads", "2", "--epochs", "2", "--out-dir", str(out), "--resume"]) == 0  # the flag
    assert main(["train", str(folder), "--batch-size", "6", "--num-workers", "0", "--device", "cpu", "--quiet", "--epochs", "3",
                 "--out-dir", str(out), "--resume"]) == 0                                             # or none at all
    assert History.from_csv(out / "history.csv")["epoch"] == [1, 2, 3]
    assert main(["train", str(folder), *image, "--heads", "4", "--epochs", "4", "--out-dir", str(out), "--resume"]) == 2
    assert "cannot resume with another model or clip format: options" in said(capsys)[1]


def test_image_model_patch_must_tile_the_frames(folder, tmp_path, capsys):
    from torchvision.models.vision_transformer import VisionTransformer
    vit = tmp_path / "vit14.pth"
    torch.save(VisionTransformer(image_size=28, patch_size=14, num_layers=1, num_heads=2, hidden_dim=64, mlp_dim=128).state_dict(), vit)
    assert train(folder, tmp_path / "o", "--image-weights", str(vit), "--heads", "2") == 2
    assert "14x14 patches, which do not tile 32x32 frames" in said(capsys)[1] and not (tmp_path / "o").exists()
