"""`vivit-edu train` / `predict` on a folder of real video files, in one process and under torchrun (2 CPU processes,
gloo; and 2 "machines" on this host, each a torchrun agent with one process, joined through a static rendezvous).

DDP runs use `--no-augment` so that every run sees exactly the same clips; then the only difference from one process
with the same global batch is the order of float additions (see tests/test_distributed.py for why). Tolerance for
AdamW: 1e-4 on losses and weights, as there."""
import json, os, socket, subprocess, sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 3
COMMON = ["--epochs", str(EPOCHS), "--batch-size", "6", "--lr", "2e-3", "--pool", "mean", "--temporal-pos",
          "--no-augment", "--num-workers", "0", "--device", "cpu", "--quiet"]


def env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def run(cmd, timeout=300, check=True):
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env())
    if check and p.returncode: raise AssertionError(f"{cmd} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-5000:]}")
    return p


def free_port() -> int:
    with socket.socket() as s: s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from vivit_edu.data.datasets import make_example_folder
    return make_example_folder(tmp_path_factory.mktemp("clips") / "clips", videos_per_class=8)


@pytest.fixture(scope="module")
def single(folder, tmp_path_factory):
    "The reference: one process, `python -m vivit_edu train`."
    out = tmp_path_factory.mktemp("single") / "run"
    p = run([sys.executable, "-m", "vivit_edu", "train", str(folder), *COMMON, "--out-dir", str(out)])
    assert "1 process(es), backend none" in p.stdout, p.stdout
    return out


def result(out):
    from vivit_edu.train import load_run
    from vivit_edu.train import History
    model, spec = load_run(out, "last")
    return History.from_csv(Path(out) / "history.csv"), model.state_dict(), spec


def max_diff(a, b): return max((a[k] - b[k]).abs().max().item() for k in a)


def check_same(out, ref, atol=1e-4):
    h, w, spec = result(out)
    h0, w0, spec0 = result(ref)
    assert spec == spec0
    assert h["epoch"] == list(range(1, EPOCHS + 1)) and h["step"] == h0["step"]
    for col in ("train_loss", "train_acc", "val_loss", "val_acc", "lr"):
        assert h[col] == pytest.approx(h0[col], abs=atol), col
    d = max_diff(w, w0)
    print(f"max |weight difference| vs one process: {d:.2e}")
    assert d < atol
    return h


def test_single_process_run_folder(single, folder):
    assert sorted(p.name for p in single.iterdir()) == ["best", "curves.png", "history.csv", "last", "run.json"]
    spec = json.loads((single / "run.json").read_text())
    assert spec["classes"] == ["FadeIn", "MoveRight", "ZoomIn"] and spec["frames"] == 8 and spec["size"] == [32, 32]
    assert spec["options"] == {"pool": "mean", "temporal_pos": True}
    h, _, _ = result(single)
    assert h["train_loss"][-1] < h["train_loss"][0]


def test_torchrun_two_processes_match_one(single, folder, tmp_path):
    out = tmp_path / "ddp"
    p = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
             "-m", "vivit_edu", "train", str(folder), *COMMON, "--out-dir", str(out)])
    assert "2 process(es), backend gloo" in p.stdout and p.stdout.count("vivit-edu train:") == 1, p.stdout   # rank 0 prints
    check_same(out, single)
    assert sorted(q.name for q in out.iterdir()) == ["best", "curves.png", "history.csv", "last", "run.json"]


@pytest.mark.parametrize("rdzv", ["static", "c10d"])
def test_two_nodes_match_one(rdzv, single, folder, tmp_path):
    """Two torchrun agents (one process each) meeting at 127.0.0.1: a multi-machine run on one host. `static`: node
    ranks given, node 0 hosts the store (--master-addr/--master-port); `c10d`: the rendezvous assigns them."""
    out, port = tmp_path / "nodes", free_port()
    meet = (lambda r: [f"--node-rank={r}", "--master-addr=127.0.0.1", f"--master-port={port}"]) if rdzv == "static" else \
           (lambda r: ["--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=test"])
    cmd = lambda r: [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1", *meet(r),
                     "-m", "vivit_edu", "train", str(folder), *COMMON, "--out-dir", str(out)]
    procs = [subprocess.Popen(cmd(r), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
             for r in (0, 1)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (o, e) in zip(procs, outs): assert p.returncode == 0, f"{o[-2000:]}\n{e[-4000:]}"
    said = [o for o, _ in outs if "vivit-edu train:" in o]                  # only the agent holding rank 0 prints
    assert len(said) == 1 and "2 process(es), backend gloo" in said[0], [o[-500:] for o, _ in outs]
    check_same(out, single)


def test_torchrun_resume(single, folder, tmp_path):
    out = tmp_path / "resumed"
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "vivit_edu", "train",
              str(folder), *COMMON, "--out-dir", str(out)]
    run(launch + ["--stop-after", "1"])
    assert len(json.loads((out / "run.json").read_text())["classes"]) == 3
    from vivit_edu.train import read_checkpoint_state
    assert read_checkpoint_state(out / "last")["epoch"] == 1
    run(launch + ["--resume"])
    check_same(out, single)


def test_resume_refuses_another_model(single, folder, tmp_path):
    import shutil
    out = tmp_path / "copy"; shutil.copytree(single, out)
    p = run([sys.executable, "-m", "vivit_edu", "train", str(folder), *COMMON, "--frames", "4", "--out-dir", str(out), "--resume"],
            check=False)
    assert p.returncode == 2 and "cannot resume with another model or clip format: frames 8 -> 4" in p.stderr


def test_bad_folder_and_batch(tmp_path, folder):
    p = run([sys.executable, "-m", "vivit_edu", "train", str(tmp_path / "missing"), "--device", "cpu"], check=False)
    assert p.returncode == 2 and "missing: no such folder" in p.stderr
    (tmp_path / "empty").mkdir()
    p = run([sys.executable, "-m", "vivit_edu", "train", str(tmp_path / "empty"), "--device", "cpu"], check=False)
    assert p.returncode == 2 and "expected class sub-folders holding video files" in p.stderr
    p = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "vivit_edu", "train",
             str(folder), *COMMON, "--batch-size", "5", "--out-dir", str(tmp_path / "odd")], check=False)
    assert p.returncode != 0 and "batch_size=5 is the global batch and must be divisible by the world size 2" in p.stdout + p.stderr


def test_predict_with_run(single, folder):
    video = sorted((folder / "ZoomIn").iterdir())[0]
    p = run([sys.executable, "-m", "vivit_edu", "predict", str(video), "--run", str(single), "--hop", "8"])
    lines = p.stdout.strip().splitlines()
    assert lines[0].startswith("frame ") and any(n in lines[0] for n in ("FadeIn", "MoveRight", "ZoomIn"))
    assert "frames/s" in lines[-1] and "keeps up" in lines[-1]
    p = run([sys.executable, "-m", "vivit_edu", "predict", str(video)], check=False)
    assert p.returncode == 2 and "give --run RUN_DIR" in p.stderr


def test_experiment_under_torchrun(tmp_path):
    "The experiments' command under torchrun: DDP for Table 1 and for the four fine-tuning cases (frozen parameters)."
    out = tmp_path / "exp"
    p = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "vivit_edu", "experiment",
             "--preset", "smoke", "--device", "cpu", "--epochs", "1", "--finetune-epochs", "1", "--max-train-batches", "2",
             "--no-nonlocal", "--no-shuffled", "--num-workers", "0", "--out", str(out)], timeout=600)
    assert p.stdout.count("Table 1 (official protocol)") == 1, p.stdout          # rank 0 prints the tables once
    rows = (out / "table2.csv").read_text().splitlines()
    assert rows[0].startswith("case,") and len(rows) == 5                     # four cases
    assert (out / "report.md").read_text().startswith("# ViViT vs Non-local")


def test_finetune_adds_a_class(single, tmp_path):
    "`--init RUN --case case4`: the body keeps the run's weights, old classes keep their head rows by name."
    from vivit_edu.data.datasets import make_example_folder
    from vivit_edu.train import load_run
    folder4 = make_example_folder(tmp_path / "clips4", classes=("FadeIn", "MoveRight", "RotateClockwise", "ZoomIn"),
                                  videos_per_class=4)
    out = tmp_path / "ft"
    p = run([sys.executable, "-m", "vivit_edu", "train", str(folder4), *COMMON, "--epochs", "1", "--init", str(single),
             "--case", "case4", "--out-dir", str(out)])
    assert "classifier rows kept for 3 class(es) (FadeIn, MoveRight, ZoomIn), new for 1 (RotateClockwise)" in p.stdout, p.stdout
    old, _ = load_run(single)
    new, spec = load_run(out, "last")
    assert spec.classes == ["FadeIn", "MoveRight", "RotateClockwise", "ZoomIn"] and spec.finetune["case"] == "case4"
    so, sn = old.state_dict(), new.state_dict()
    assert all(torch.equal(so[k], sn[k]) for k in so if not k.startswith("head."))    # case 4: only the head trained
    assert sn["head.fc.weight"].shape == (4, so["head.fc.weight"].shape[1])
    p = run([sys.executable, "-m", "vivit_edu", "train", str(folder4), *COMMON, "--frames", "4", "--init", str(single),
             "--out-dir", str(tmp_path / "bad")], check=False)
    assert p.returncode == 2 and "fine-tuning keeps the architecture, but frames 8 -> 4" in p.stderr


def test_corrupt_video_is_named_and_skipped(folder, tmp_path):
    "A file that does not decode is reported by name and left out; training goes on with the rest."
    import shutil
    data = tmp_path / "clips"; shutil.copytree(folder, data)
    (data / "ZoomIn" / "broken.avi").write_bytes(b"RIFF\x00\x00\x00\x00AVI not really a video")
    p = subprocess.run([sys.executable, "-m", "vivit_edu", "train", str(data), *COMMON, "--epochs", "1",
                        "--out-dir", str(tmp_path / "run")], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={**env(), "PYTHONWARNINGS": "default"})
    assert p.returncode == 0, p.stderr[-3000:]
    assert f"vivit-edu: warning: skipped {data / 'ZoomIn' / 'broken.avi'}: " in p.stderr, p.stderr[-3000:]
    assert "vivit-edu train: 18 training / 6 validation clips, 3 classes" in p.stdout      # the 24 good videos


def test_nonlocal_run_and_predict(folder, tmp_path):
    "The Non-local ResNet-50 through the same command and the same run folder."
    out = tmp_path / "nl"
    run([sys.executable, "-m", "vivit_edu", "train", str(folder), "--model", "nonlocal", "--frames", "4", "--epochs", "1",
         "--batch-size", "4", "--max-train-batches", "2", "--num-workers", "0", "--device", "cpu", "--quiet", "--out-dir", str(out)])
    spec = json.loads((out / "run.json").read_text())
    assert spec["model"] == "nonlocal" and spec["frames"] == 4
    video = sorted((folder / "FadeIn").iterdir())[0]
    p = run([sys.executable, "-m", "vivit_edu", "predict", str(video), "--run", str(out), "--hop", "16", "--quiet"])
    assert "frames/s" in p.stdout


def test_finished_run_is_not_overwritten(single, folder):
    "Without --resume, a folder that holds a run is refused and left as it was."
    before = {p: p.stat().st_mtime_ns for p in single.rglob("*") if p.is_file()}
    p = run([sys.executable, "-m", "vivit_edu", "train", str(folder), *COMMON, "--out-dir", str(single)], check=False)
    assert p.returncode == 2 and "holds a run already: pass --resume to continue it" in p.stderr
    assert {p: p.stat().st_mtime_ns for p in single.rglob("*") if p.is_file()} == before


def train_cmd(data, out, *extra):
    return [sys.executable, "-m", "vivit_edu", "train", str(data), *COMMON, "--epochs", "1", "--out-dir", str(out), *extra]


def test_folders_a_classifier_cannot_learn_from(folder, tmp_path):
    "One class, or a class folder with no usable video, is refused naming the folder (it used to train a model with "
    "a class it never saw, or a one-class model scoring 100%); a file or a missing --val folder is named as such."
    import shutil
    data = tmp_path / "clips"; shutil.copytree(folder, data)
    (data / "Nothing").mkdir(); (data / "Nothing" / "notes.txt").write_text("no videos here")
    (data / "Broken").mkdir(); (data / "Broken" / "a.mp4").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    p = run(train_cmd(data, tmp_path / "r1"), check=False)
    assert p.returncode == 2 and "class folder(s) without a usable video: Broken/ (1 file(s) skipped" in p.stderr, p.stderr[-2000:]
    assert "Nothing/ (no .avi/.mp4" in p.stderr and "Traceback" not in p.stderr and not (tmp_path / "r1").exists()
    one = tmp_path / "one"; shutil.copytree(folder / "FadeIn", one / "FadeIn")
    p = run(train_cmd(one, tmp_path / "r2"), check=False)
    assert p.returncode == 2 and "only one class folder (FadeIn/); a classifier needs at least two" in p.stderr, p.stderr[-2000:]
    p = run(train_cmd(folder / "FadeIn" / "fadein_000.avi", tmp_path / "r3"), check=False)
    assert p.returncode == 2 and "fadein_000.avi: a file, not a folder" in p.stderr
    p = run(train_cmd(folder, tmp_path / "r4", "--val", tmp_path / "no_val"), check=False)
    assert p.returncode == 2 and "no_val: no such validation folder" in p.stderr


@pytest.mark.parametrize("part", ["state.pt", "model.safetensors"])
def test_resume_from_a_corrupt_checkpoint_names_the_file(single, folder, tmp_path, part):
    "A truncated last/ checkpoint: a clear error naming the file and what to do (state.pt was a torch traceback)."
    import shutil
    out = tmp_path / "copy"; shutil.copytree(single, out)
    f = out / "last" / part; f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    before = {q: q.stat().st_mtime_ns for q in out.rglob("*") if q.is_file()}
    p = run(train_cmd(folder, out, "--resume"), check=False)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr[-3000:]
    assert f"{f}: cannot resume" in p.stderr and "best holds a checkpoint too" in p.stderr, p.stderr[-3000:]
    assert {q: q.stat().st_mtime_ns for q in out.rglob("*") if q.is_file()} == before       # nothing touched


def test_resume_after_kill_mid_epoch(folder, tmp_path):
    "kill -9 in the middle of an epoch, then --resume: it continues from the last saved epoch and finishes."
    import signal, time
    from vivit_edu.train import read_checkpoint_state, History
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "vivit_edu", "train", str(folder), *COMMON, "--epochs", "40", "--batch-size", "2",
           "--out-dir", str(out)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env())
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            if (out / "history.csv").exists() and len((out / "history.csv").read_text().splitlines()) >= 3: break
            time.sleep(0.05)
        assert proc.poll() is None, "training ended before it could be killed"
        time.sleep(0.1)                                             # into the next epoch
        proc.send_signal(signal.SIGKILL); proc.wait(30)
    finally:
        if proc.poll() is None: proc.kill()
    done = read_checkpoint_state(out / "last")["epoch"]
    assert 2 <= done < 40
    run(cmd + ["--resume"], timeout=600)
    h = History.from_csv(out / "history.csv")
    assert h["epoch"] == list(range(1, 41)) and read_checkpoint_state(out / "last")["epoch"] == 40


def test_predict_run_folder_problems(single, folder, tmp_path):
    "A missing run folder, a run with no checkpoint yet, and another run's weights (other class names) via --checkpoint."
    import shutil
    video = sorted((folder / "ZoomIn").iterdir())[0]
    predict = lambda *a: run([sys.executable, "-m", "vivit_edu", "predict", str(video), "--hop", "16", "--quiet", *map(str, a)],
                             check=False)
    p = predict("--run", tmp_path / "nowhere")
    assert p.returncode != 0 and "nowhere: no such run folder" in p.stderr, p.stderr
    (tmp_path / "fresh").mkdir(); shutil.copy(single / "run.json", tmp_path / "fresh")
    p = predict("--run", tmp_path / "fresh")
    assert p.returncode != 0 and "fresh: no complete checkpoint" in p.stderr and "in best/ or last/" in p.stderr, p.stderr
    other = tmp_path / "other"; shutil.copytree(single, other)
    spec = json.loads((other / "run.json").read_text()); spec["classes"] = ["Cat", "Dog", "Fish"]
    (other / "run.json").write_text(json.dumps(spec))
    for ck in (other / "last", other, other / "best" / "model.safetensors"):        # same shapes: used to load silently
        p = predict("--run", single, "--checkpoint", ck)
        assert p.returncode != 0 and "these weights belong to the run" in p.stderr and "'Cat'" in p.stderr, p.stderr
    p = predict("--run", single, "--checkpoint", single / "last")                  # the run's own checkpoint: fine
    assert p.returncode == 0 and "frames/s" in p.stdout, p.stderr


def test_uint8_clips_match_float_clips(folder, tmp_path):
    """--uint8-clips: the loader hands over uint8 clips and the trainer normalises them on the device. At the videos' own
    size (no resize, so no rounding to grey levels) the run is the float run, weights and history alike."""
    outs = {}
    for name, extra in (("float", []), ("uint8", ["--uint8-clips"])):
        outs[name] = tmp_path / name
        run(train_cmd(folder, outs[name], "--size", "48", "64", *extra))
    (h, w, spec), (h8, w8, spec8) = result(outs["uint8"]), result(outs["float"])
    assert spec == spec8 and tuple(spec.size) == (48, 64)
    assert h["train_loss"] == h8["train_loss"] and h["val_loss"] == h8["val_loss"]
    assert max_diff(w, w8) == 0


def test_data_out_must_be_a_folder(tmp_path, capsys):
    "`vivit-edu data --out FILE` names the file and says a folder is wanted (it was a bare `[Errno 17] File exists`)."
    from vivit_edu.cli import main
    f = tmp_path / "notes.txt"; f.write_text("not a folder")
    assert main(["data", "--out", str(f)]) == 2
    assert f"vivit-edu: error: --out {f}: a file, not a folder; vivit-edu data writes ucf101/ and rldd/ into a folder" in capsys.readouterr().err
    assert main(["data", "--out", str(f / "sub")]) == 2                     # was a NotADirectoryError traceback
    assert f"--out {f / 'sub'}: {f} is a file, not a folder" in capsys.readouterr().err
    (tmp_path / "mine").mkdir(); (tmp_path / "mine" / "ucf101").write_text("")
    assert main(["data", "--out", str(tmp_path / "mine")]) == 2              # was a NotADirectoryError traceback
    assert f"{tmp_path / 'mine' / 'ucf101'} is a file, but vivit-edu data writes the folder ucf101/ there" in capsys.readouterr().err


def test_skipped_video_is_one_plain_line(folder, tmp_path):
    """From the command line a skipped video is one line naming the file and the problem, not Python's
    `file:line: BadVideoWarning:` plus a source line; library code still gets the BadVideoWarning."""
    import shutil
    from vivit_edu.data.datasets import VideoFolder, BadVideoWarning
    data = tmp_path / "clips"; shutil.copytree(folder / "FadeIn", data / "FadeIn")
    bad = data / "Broken" / "a.avi"; bad.parent.mkdir(); bad.write_bytes(b"RIFF\x00\x00\x00\x00AVI not really a video")
    p = subprocess.run(train_cmd(data, tmp_path / "run"), cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={**env(), "PYTHONWARNINGS": "default"})
    assert p.returncode == 2, p.stderr[-3000:]                              # refused: Broken/ has no usable video
    lines = p.stderr.splitlines()
    assert f"vivit-edu: warning: skipped {bad}: has no video stream (audio-only or data file)" in lines, p.stderr
    assert "BadVideoWarning" not in p.stderr and "VideoFolder(" not in p.stderr, p.stderr    # no Python prefix, no source line
    with pytest.warns(BadVideoWarning, match="a.avi") as rec:
        VideoFolder(data, num_frames=8)
    assert [(w.message.path, w.message.why) for w in rec] == [(str(bad), "has no video stream (audio-only or data file)")]


def test_resume_on_another_data_folder_warns(folder, tmp_path, capsys):
    "run.json records the data folder; --resume from another one (same classes) goes on with a warning naming both."
    import shutil
    from vivit_edu.cli import main
    out = tmp_path / "run"
    args = lambda data: train_cmd(data, out, "--resume")[3:]                 # in this process: `vivit-edu train ...`
    assert main(args(folder)) == 0
    assert json.loads((out / "run.json").read_text())["data"] == {"train": str(folder.resolve()), "val": None}
    assert main(args(folder)) == 0 and "warning" not in capsys.readouterr().err     # the same folder: nothing new
    moved = shutil.copytree(folder, tmp_path / "moved")
    assert main(args(moved)) == 0                                            # 1 epoch done already: nothing to train
    err = capsys.readouterr().err
    assert (f"vivit-edu: warning: resuming {out} on other data than it was trained on: data folder {folder.resolve()} -> "
            f"{moved.resolve()} (same class names, so training goes on; {out / 'run.json'} now names the new folder)") in err, err
    assert json.loads((out / "run.json").read_text())["data"]["train"] == str(moved.resolve())
    assert main(args(moved)) == 0 and "warning" not in capsys.readouterr().err


def test_torchrun_resume_on_another_data_folder_warns_once(folder, tmp_path):
    "Under torchrun only rank 0 prints the moved-data warning."
    import shutil
    from vivit_edu.cli import main
    out, moved = tmp_path / "run", shutil.copytree(folder, tmp_path / "moved")
    assert main(train_cmd(folder, out)[3:]) == 0
    p = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", *train_cmd(moved, out, "--resume")[1:]])
    assert p.stderr.count("on other data than it was trained on") == 1, p.stderr[-3000:]


def test_image_weights_case3_under_torchrun(folder, tmp_path):
    """--image-weights from a timm model folder, case 3 (temporal transformer + head train), under torchrun with 2
    processes: the image layers are exactly the image model's after training, the new ones moved, predict needs only
    the run folder."""
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file
    from vivit_edu.pretrained import read_image_vit
    torch.manual_seed(0)
    tm = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=2, embed_dim=128,
                           num_heads=2, num_classes=0)
    (tmp_path / "vit").mkdir(); save_file(tm.state_dict(), tmp_path / "vit" / "model.safetensors")
    out = tmp_path / "run"
    p = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "vivit_edu", "train",
             str(folder), "--image-weights", str(tmp_path / "vit"), "--heads", "2", "--case", "case3", "--epochs", "2", "--batch-size", "6",
             "--no-augment", "--num-workers", "0", "--device", "cpu", "--quiet", "--out-dir", str(out)])
    assert p.stdout.count("initialised from the image model") == 1, p.stdout          # rank 0 says it once
    h, w, spec = result(out)
    assert spec.finetune["case"] == "case3" and spec.options["dim"] == 128 and len(h) == 2
    img = read_image_vit(tmp_path / "vit")
    for k, v in img.blocks[1].items(): assert torch.equal(w[f"spatial.blocks.1.{k}"], v), k     # frozen: still the image model's
    assert torch.equal(w["spatial.norm.weight"], img.norm["weight"])
    torch.manual_seed(0)
    from vivit_edu.train import RunSpec
    fresh = RunSpec.load(out).build().state_dict()                                     # same seed, same initial new layers
    assert not torch.equal(w["temporal.blocks.0.attn.qkv.weight"], fresh["temporal.blocks.0.attn.qkv.weight"])   # trained
    (tmp_path / "vit" / "model.safetensors").unlink()
    video = next(iter(sorted(Path(folder).rglob("*.avi")) or sorted(Path(folder).rglob("*.mp4"))))
    q = run([sys.executable, "-m", "vivit_edu", "predict", str(video), "--run", str(out), "--device", "cpu"])
    assert any(c in q.stdout for c in spec.classes), q.stdout


def test_image_weights_refused_by_name(folder, tmp_path):
    torch.save({"weight": torch.zeros(3)}, tmp_path / "not_a_vit.pth")
    p = run([sys.executable, "-m", "vivit_edu", "train", str(folder), "--image-weights", str(tmp_path / "not_a_vit.pth"),
             "--out-dir", str(tmp_path / "run")], check=False)
    assert p.returncode != 0 and "not_a_vit.pth: not a ViT state dict" in p.stderr, p.stderr
    assert not (tmp_path / "run").exists()                                              # refused before writing anything


def test_torchrun_skipped_video_is_said_once(folder, tmp_path):
    "Under torchrun every rank reads the folder, but a skipped video is reported once (by rank 0)."
    import shutil
    data = tmp_path / "clips"; shutil.copytree(folder, data)
    bad = data / "ZoomIn" / "broken.avi"; bad.write_bytes(b"RIFF\x00\x00\x00\x00AVI not really a video")
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "vivit_edu",
                        "train", str(data), *COMMON, "--epochs", "1", "--out-dir", str(tmp_path / "run")], cwd=ROOT,
                       capture_output=True, text=True, timeout=300, env={**env(), "PYTHONWARNINGS": "default"})
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stderr.count(f"vivit-edu: warning: skipped {bad}: ") == 1, p.stderr[-3000:]
