"""Training faults (issue 18): a nan loss, a folder that cannot be written, a disk that fills while a checkpoint is
written, Ctrl-C while a checkpoint is written, Ctrl-C in `experiment` and its `--resume`, and bad files skipped by
`train` and `predict` with one warning each and a count. SIGKILL mid-run and mid-checkpoint is
tests/test_train_resume.py.

Run as a script, this file is a training process: `python test_faults.py OUT_DIR` trains the tiny run below and, while
writing its second checkpoint, creates OUT_DIR/../writing and waits (so the parent can press Ctrl-C there)."""
import contextlib, errno, hashlib, os, shutil, signal, subprocess, sys, tempfile, time, warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from tiny_run import tiny_run
from ctrl_c import ctrl_c_in_this_process, default_sigint

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 4


def make_run(width: int = 4):
    "Model, data and config of a tiny run (an epoch takes milliseconds); `width` makes the checkpoint bigger."
    return tiny_run(width=width, epochs=EPOCHS)


def straight_weights():
    from vivit_edu.train import fit
    model, data, config = make_run()
    fit(model, data, None, config)
    return model.state_dict()


def same_weights(a: dict, b: dict) -> bool: return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def digest(folder: Path) -> str: return hashlib.sha1(b"".join(f.read_bytes() for f in sorted(folder.iterdir()))).hexdigest()


@pytest.fixture(scope="module")
def straight():
    torch.set_num_threads(1)
    return straight_weights()


# a nan loss: epoch, step and batch named; last/ untouched and resumable
def test_nan_loss_names_epoch_and_step_and_keeps_the_last_checkpoint(straight, tmp_path):
    from vivit_edu.train import Trainer, load_weights, read_checkpoint_state
    model, data, config = make_run()
    B = 6                                                             # 48 clips / 8 per batch
    calls = [0]
    def poison(module, inputs, output):                              # the 3rd training batch of epoch 3 gives nan logits
        if module.training:
            calls[0] += 1
            if calls[0] == 2 * B + 3: return output * float("nan")
    hook = model.register_forward_hook(poison)
    seen = {}
    def look(trainer, row):                                          # runs before the check and the save
        if trainer.epoch == 3: seen["last"] = digest(tmp_path / "run" / "last")
    t = Trainer(model, data, None, replace(config, out_dir=str(tmp_path / "run")), callbacks=[look])
    with pytest.raises(FloatingPointError) as e:
        t.fit()
    msg = str(e.value)
    assert msg.startswith(f"epoch 3 (optimiser step {2 * B + 3}, batch 3 of {B}: the first nan/inf loss): train_loss nan"), msg
    assert f"stopped before saving; {tmp_path / 'run' / 'last'} still holds epoch 2" in msg, msg
    assert digest(tmp_path / "run" / "last") == seen["last"]         # byte for byte the checkpoint of epoch 2
    assert read_checkpoint_state(tmp_path / "run" / "last")["epoch"] == 2
    hook.remove()
    fresh, _, _ = make_run()                                          # a new process would start like this
    from vivit_edu.train import fit
    h = fit(fresh, data, None, config, out_dir=str(tmp_path / "run"), resume=True)
    assert h["epoch"] == [1, 2, 3, 4] and same_weights(fresh.state_dict(), straight)   # as if the nan never happened


# a folder that cannot be written: refused before any training
@contextlib.contextmanager
def unwritable(folder: Path):
    "`folder`, made unwritable: by permissions, or (as root, whom permissions do not stop) by the immutable attribute."
    folder.mkdir(parents=True, exist_ok=True)
    def writable():
        try: tempfile.TemporaryFile(dir=folder).close(); return True
        except OSError: return False
    folder.chmod(0o555)
    immutable = False
    if writable() and shutil.which("chattr"):
        immutable = subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0
    try:
        if writable(): pytest.skip("cannot make a folder unwritable here (root, and no chattr +i on this file system)")
        yield folder
    finally:
        if immutable: subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
        folder.chmod(0o755)


class Counting(torch.utils.data.Dataset):
    "A dataset that counts the items read from it."
    def __init__(self, data): self.data, self.reads = data, 0
    def __len__(self): return len(self.data)
    def __getitem__(self, i): self.reads += 1; return self.data[i]


def test_unwritable_folder_fails_before_training(tmp_path, monkeypatch, capsys):
    from vivit_edu.train import Trainer, fit, read_checkpoint_state, load_weights
    from vivit_edu.cli import main
    model, data, config = make_run()
    counting = Counting(data)
    with unwritable(tmp_path / "ro") as ro:
        with pytest.raises(PermissionError, match=rf"TrainConfig.out_dir {ro / 'run'}: cannot write in {ro} .*nothing was trained"):
            Trainer(model, counting, None, replace(config, out_dir=str(ro / "run"))).fit()
        assert counting.reads == 0                                    # not one clip was read
        import vivit_edu.distributed as D
        monkeypatch.setattr(D, "clip_datasets", lambda *a, **k: pytest.fail("indexed the videos before checking --out-dir"))
        assert main(["train", str(tmp_path), "--out-dir", str(ro / "run")]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"vivit-edu: error: --out-dir {ro / 'run'}: cannot write in {ro} (") and err.count("\n") == 1 and \
            err.endswith("); nothing was trained: choose another folder, or make this one writable\n"), err
    # a run folder that became read-only: resuming fails before training, and its checkpoint still loads
    fit(model, data, None, config, out_dir=str(tmp_path / "run"), stop_after=1)
    before = digest(tmp_path / "run" / "last")
    counting.reads = 0
    with unwritable(tmp_path / "run"):
        with pytest.raises(PermissionError, match="cannot write in"):
            fit(make_run()[0], counting, None, config, out_dir=str(tmp_path / "run"), resume=True)
    assert counting.reads == 0 and digest(tmp_path / "run" / "last") == before
    assert read_checkpoint_state(tmp_path / "run" / "last")["epoch"] == 1
    load_weights(make_run()[0], tmp_path / "run" / "last")


# a disk that fills while a checkpoint is written
@pytest.mark.parametrize("part", ["weights", "state"])
def test_full_disk_while_writing_a_checkpoint(straight, tmp_path, monkeypatch, part):
    "The 3rd checkpoint's weights (or training state) hit ENOSPC half-way: a clear error, epoch 2 intact, and it resumes."
    import vivit_edu.train as T
    model, data, config = make_run()
    calls = [0]
    def fill_up(real):
        def write(obj, path, *a, **k):
            calls[0] += 1
            if calls[0] == 3:
                real(obj, path, *a, **k)
                with open(path, "r+b") as f: f.truncate(os.path.getsize(path) // 2)     # half of it reached the disk
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(obj, path, *a, **k)
        return write
    if part == "weights": monkeypatch.setattr(T, "save_file", fill_up(T.save_file))
    else: monkeypatch.setattr(T.torch, "save", fill_up(torch.save))
    out = tmp_path / "run"
    with pytest.raises(OSError) as e:
        T.fit(model, data, None, config, out_dir=str(out))
    assert str(e.value).startswith(f"{out / 'last'}: the checkpoint could not be written (the disk is full: No space left on "
                                   f"device); ") and f"MB free there; the previous checkpoint {out / 'last'} is untouched" in str(e.value)
    assert e.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert sorted(os.listdir(out)) == ["curves.png", "history.csv", "last"]            # no last.tmp/ left behind
    assert T.read_checkpoint_state(out / "last")["epoch"] == 2
    fresh = make_run()[0]
    h = T.fit(fresh, data, None, config, out_dir=str(out), resume=True)
    assert h["epoch"] == [1, 2, 3, 4] and same_weights(fresh.state_dict(), straight)


def test_full_disk_in_the_cli_is_one_line(tmp_path, monkeypatch, capsys):
    import vivit_edu.train as T
    from vivit_edu.cli import main
    from vivit_edu.data.datasets import make_example_folder
    folder = make_example_folder(tmp_path / "clips", classes=("FadeIn", "ZoomIn"), videos_per_class=3)
    def full(*a, **k): raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(T, "save_file", full)
    out = tmp_path / "run"
    assert main(["train", str(folder), "--out-dir", str(out), "--epochs", "1", "--batch-size", "4", "--num-workers", "0",
                 "--device", "cpu", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"vivit-edu: error: {out / 'last'}: the checkpoint could not be written (the disk is full") and \
        err.endswith("there was no earlier checkpoint\n") and err.count("\n") == 1, err


def _mount_tmpfs(where: Path, size: str) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True).returncode == 0


def test_a_really_full_disk(tmp_path):
    "On a small tmpfs (where this machine lets us mount one): room for one checkpoint, not for its replacement."
    import vivit_edu.train as T
    model, data, config = make_run(width=2000)                       # about 0.75 MB per checkpoint (weights, Adam moments)
    T.fit(model, data, None, config, out_dir=str(tmp_path / "probe"), stop_after=1)
    one = sum(f.stat().st_size for f in (tmp_path / "probe").rglob("*") if f.is_file())   # a checkpoint, history and curves
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, f"{int(1.4 * one) // 1024}k"): pytest.skip("cannot mount a tmpfs here (needs root); the patched tests above still run")
    try:
        model, data, config = make_run(width=2000)
        with pytest.raises(OSError, match=rf"{disk / 'run' / 'last'}: the checkpoint could not be written .*the previous "
                                          rf"checkpoint {disk / 'run' / 'last'} is untouched and loads"):
            T.fit(model, data, None, config, out_dir=str(disk / "run"))
        assert T.read_checkpoint_state(disk / "run" / "last")["epoch"] == 1 and not (disk / "run" / "last.tmp").exists()
        T.load_weights(make_run(width=2000)[0], disk / "run" / "last")
    finally: subprocess.run(["umount", str(disk)], capture_output=True)


# Ctrl-C while a checkpoint is written: it is finished first
def worker(out_dir: str):
    "Train; while writing the 2nd checkpoint, say so (a file) and wait 1.5 s, so that Ctrl-C arrives in the middle of it."
    torch.set_num_threads(1)
    import vivit_edu.train as T
    real, calls = T.save_file, []
    def save_file(tensors, filename, metadata=None):
        calls.append(filename)
        if len(calls) == 2:                                          # epoch 2's `last`
            (Path(out_dir).parent / "writing").touch()
            time.sleep(1.5)
        real(tensors, filename, metadata=metadata)
    T.save_file = save_file
    model, data, config = make_run()
    try: T.fit(model, data, None, config, out_dir=out_dir)
    except KeyboardInterrupt:
        print("KeyboardInterrupt after the checkpoint", flush=True); sys.exit(130)


def test_ctrl_c_while_writing_a_checkpoint_waits_for_it(tmp_path):
    out = tmp_path / "run"
    p = subprocess.Popen([sys.executable, __file__, str(out)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, preexec_fn=default_sigint)
    try:
        deadline = time.time() + 120
        while not (tmp_path / "writing").exists() and p.poll() is None and time.time() < deadline: time.sleep(0.02)
        assert (tmp_path / "writing").exists(), p.communicate()[0][-3000:]
        p.send_signal(signal.SIGINT)                                # in the middle of writing epoch 2's checkpoint
        said = p.communicate(timeout=60)[0]
    finally:
        if p.poll() is None: p.kill()
    assert p.returncode == 130 and "KeyboardInterrupt after the checkpoint" in said, said[-3000:]
    from vivit_edu.train import read_checkpoint_state, fit
    assert read_checkpoint_state(out / "last")["epoch"] == 2         # the checkpoint being written was finished
    assert sorted(os.listdir(out)) == ["curves.png", "history.csv", "last"], os.listdir(out)   # no last.tmp/ or last.old/
    threads = torch.get_num_threads(); torch.set_num_threads(1)      # as the worker: with 2 threads the CPU's conv3d backward
    try:                                                             # differs in the last bits from one run to the next
        model, data, config = make_run()
        fit(model, data, None, config, out_dir=str(out), resume=True)
        ref, _, _ = make_run()
        fit(ref, data, None, config)
    finally: torch.set_num_threads(threads)
    assert same_weights(model.state_dict(), ref.state_dict())          # and it resumes exactly


# a Ctrl-C that library code swallows (C code clearing the KeyboardInterrupt raised in a Python callback) still stops fit
def test_swallowed_ctrl_c_still_stops_training(tmp_path, monkeypatch):
    import vivit_edu.train as T
    real, n = T.mixup_batch, [0]
    def swallowing(*a, **k):
        n[0] += 1
        if n[0] == 3:                                               # epoch 1, batch 3
            try:
                os.kill(os.getpid(), signal.SIGINT)
                for _ in range(1000): time.sleep(0.001)            # the handler runs here, and its KeyboardInterrupt ...
            except KeyboardInterrupt: pass                          # ... is swallowed, as a C library clearing errors would
        return real(*a, **k)
    monkeypatch.setattr(T, "mixup_batch", swallowing)
    model, data, config = make_run()
    with ctrl_c_in_this_process():                                  # (a pytest-xdist worker ignores SIGINT)
        with pytest.raises(KeyboardInterrupt): T.fit(model, data, None, config, out_dir=str(tmp_path / "run"))
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler   # fit put the handler back
    assert n[0] == 3                                                # stopped at the next batch, not after the run
    assert not (tmp_path / "run" / "last").exists()                 # no epoch had finished
    assert not T._CTRL_C[0]                                         # the flag is cleared when fit ends


# Ctrl-C in `vivit-edu experiment`, then --resume
EXPERIMENT = ["experiment", "--preset", "smoke", "--device", "cpu", "--epochs", "2", "--finetune-epochs", "2",
              "--max-train-batches", "1", "--no-nonlocal", "--baselines", "one frame", "--seeds", "0", "--finetune-seeds", "0",
              "--num-workers", "0", "--threads", "1", "--workers", "1"]
# runs in order: image start, ViViT, one frame (2 epochs each), then case1..case4 (2 epochs each). The process counts its
# training epochs (printed) and sends itself a real SIGINT when epoch STOP_AT starts (6: case1's second epoch).
INTERRUPT = """import os, signal, sys
import vivit_edu.train as T
real, n, stop = T.train_one_epoch, [0], int(os.environ["STOP_AT"])
def train_one_epoch(*a, **k):
    n[0] += 1
    print("training epoch", n[0], flush=True)
    if n[0] == stop: os.kill(os.getpid(), signal.SIGINT)
    return real(*a, **k)
T.train_one_epoch = train_one_epoch
from vivit_edu.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_experiment_ctrl_c_then_resume(tmp_path, capsys):
    out, ck = tmp_path / "report", tmp_path / "report" / "checkpoints"
    def experiment(stop, *more):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "STOP_AT": str(stop)}
        return subprocess.run([sys.executable, "-c", INTERRUPT, *EXPERIMENT, "--out", str(out), *more], cwd=ROOT,
                              capture_output=True, text=True, env=env, timeout=300, preexec_fn=default_sigint)
    p = experiment(6)
    assert p.returncode == 130 and "Traceback" not in p.stderr, p.stderr[-3000:]
    assert p.stderr.strip().endswith(f"vivit-edu: interrupted: 3 of 7 training runs finished, kept in {ck} with the last epoch of "
                                     "the others; go on with the same command and --resume"), p.stderr[-2000:]
    finished = sorted(f.parent.name for f in ck.glob("*/result.pt"))
    assert finished == ["image", "vivit_one_frame_seed_0", "vivit_seed_0"], finished
    assert not (ck / "case1_seed_0" / "result.pt").exists() and (ck / "case1_seed_0" / "last").is_dir()   # its first epoch kept
    first = (ck / "vivit_seed_0" / "history.csv").read_text()
    from vivit_edu.cli import main                                  # without --resume: refused before anything runs
    assert main([*EXPERIMENT, "--out", str(out)]) == 2
    assert f"{ck} holds the checkpoints of an unfinished run: pass --resume" in capsys.readouterr().err
    assert main([*EXPERIMENT, "--out", str(out), "--epochs", "3", "--resume"]) == 2        # other options: refused too
    capsys.readouterr()
    p = experiment(0, "--resume")
    assert p.returncode == 0, p.stderr[-3000:]
    # finished runs are read, not retrained; case1 trains only its second epoch; case2..case4 two each: 7 epochs
    assert p.stdout.count("training epoch ") == 7, p.stdout
    assert (out / "report.md").is_file() and (out / "table2.csv").is_file() and not ck.exists()   # done, checkpoints gone
    rows = (out / "table2.csv").read_text().splitlines()
    assert len(rows) == 5 and all(r.startswith(c) for r, c in zip(rows[1:], ("case1", "case2", "case3", "case4"))), rows
    assert (out / "table1.csv").read_text().count("\n") >= 3 and first.splitlines()[0].startswith("epoch")


# bad files: skipped with one warning each and counted, by train and predict
def test_train_and_predict_skip_bad_files_and_count_them(tmp_path, capsys):
    from vivit_edu.cli import main
    from vivit_edu.data.datasets import BadVideoWarning, make_example_folder
    from vivit_edu.data.video import write_video
    torch.set_num_threads(1)
    folder = make_example_folder(tmp_path / "clips", classes=("FadeIn", "ZoomIn"), videos_per_class=4)
    (folder / "FadeIn" / "empty.avi").write_bytes(b"")
    (folder / "ZoomIn" / "notes.mp4").write_text("not a video")
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        assert main(["train", str(folder), "--out-dir", str(tmp_path / "run"), "--epochs", "1", "--batch-size", "4",
                     "--num-workers", "0", "--device", "cpu", "--quiet", "--frames", "4"]) == 0
    bad = sorted(w.message.path for w in said if issubclass(w.category, BadVideoWarning))
    assert bad == sorted([str(folder / "FadeIn" / "empty.avi"), str(folder / "ZoomIn" / "notes.mp4")])   # one warning each
    out = capsys.readouterr().out
    assert "(2 file(s) skipped, named above)" in out.splitlines()[0], out
    good = sorted((folder / "ZoomIn").glob("*.avi"))[0]
    short = write_video(tmp_path / "short.avi", np.zeros((2, 32, 32, 3), np.uint8))
    videos = [good, folder / "FadeIn" / "empty.avi", tmp_path / "missing.avi", short, folder / "ZoomIn" / "notes.mp4", good]
    assert main(["predict", *map(str, videos), "--run", str(tmp_path / "run"), "--quiet"]) == 1
    r = capsys.readouterr()
    warned = [l for l in r.err.splitlines() if l.startswith("vivit-edu: warning: skipped ")]
    assert [l.split()[3].rstrip(":") for l in warned] == [str(v) for v in videos[1:5]], r.err
    assert "empty file (0 bytes)" in warned[0] and "no such video file" in warned[1] and "no prediction" in warned[2]
    assert r.out.splitlines()[-1] == "2 of 6 video(s) predicted, 4 skipped (named above)", r.out
    assert sum(l.startswith(f"{good}: ") for l in r.out.splitlines()) == 2


if __name__ == "__main__":
    worker(sys.argv[1])
