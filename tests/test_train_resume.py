"""Kill a training process (SIGKILL) mid-run and mid-checkpoint-write, restart it with resume=True, and check that it
ends with every epoch in its history and the same weights as a run that was never interrupted.

Run as a script, this file is the training process: `python test_train_resume.py OUT_DIR [crash-on-write]`."""
import os, signal, subprocess, sys, time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from tiny_run import tiny_run

EPOCHS = 6


def make_run():
    "The model, data and config every process of this test uses (tiny: an epoch takes milliseconds)."
    return tiny_run(epochs=EPOCHS, grad_accum=2)


def worker(out_dir: str, crash_on_write: bool):
    "Train with resume=True, slowly (so the parent can kill us), optionally dying in the middle of a checkpoint write."
    torch.set_num_threads(1)
    import vivit_edu.train as T
    if crash_on_write:                                    # die while writing the weights of the 2nd `last` checkpoint
        real, calls = T.save_file, []
        def save_file(tensors, filename, metadata=None):
            if "last.tmp" in str(filename): calls.append(filename)
            real(tensors, filename, metadata=metadata)
            if len(calls) == 2:
                with open(filename, "r+b") as f: f.truncate(os.path.getsize(filename) // 2)   # half-written file
                os.kill(os.getpid(), signal.SIGKILL)
        T.save_file = save_file
    model, data, config = make_run()
    slow = lambda trainer, row: time.sleep(0.4)           # leaves time to be killed between and inside epochs
    T.fit(model, data, data, config, out_dir=out_dir, resume=True, callbacks=[slow])


def spawn(out_dir, *extra):
    return subprocess.Popen([sys.executable, __file__, str(out_dir), *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def straight_weights(tmp_path):
    from vivit_edu.train import fit
    torch.set_num_threads(1)
    model, data, config = make_run()
    fit(model, data, data, config, out_dir=str(tmp_path / "straight"))
    return model.state_dict()


def check_finished(out_dir: Path, expected: dict):
    from vivit_edu.train import History, load_weights, read_checkpoint_state
    h = History.from_csv(out_dir / "history.csv")
    assert h["epoch"] == list(range(1, EPOCHS + 1)), h["epoch"]           # no lost or repeated epochs
    state = read_checkpoint_state(out_dir / "last")
    assert state["epoch"] == EPOCHS and [r["epoch"] for r in state["history"]] == h["epoch"]
    model, _, _ = make_run()
    load_weights(model, out_dir / "last")
    for k, v in expected.items(): assert torch.equal(model.state_dict()[k], v), k
    assert sorted(p.name for p in out_dir.iterdir() if p.is_dir()) == ["best", "last"]   # no .tmp/.old left


def test_sigkill_mid_run_then_resume(tmp_path):
    expected = straight_weights(tmp_path)
    out = tmp_path / "run"
    p = spawn(out)
    deadline = time.time() + 120
    from vivit_edu.train import read_checkpoint_state, find_checkpoint
    while find_checkpoint(out / "last") is None or read_checkpoint_state(out / "last")["epoch"] < 2:
        assert p.poll() is None, p.communicate()[0]
        assert time.time() < deadline, "no checkpoint after 120 s"
        time.sleep(0.05)
    time.sleep(0.2)                                       # somewhere inside epoch 3 (or its sleep)
    p.send_signal(signal.SIGKILL); p.wait()
    assert p.returncode == -signal.SIGKILL
    done = read_checkpoint_state(out / "last")["epoch"]
    assert 2 <= done < EPOCHS                             # killed mid-run, with a complete checkpoint on disk
    p = spawn(out); log = p.communicate(timeout=180)[0]
    assert p.returncode == 0, log
    check_finished(out, expected)


def test_crash_while_writing_checkpoint_leaves_previous_one_usable(tmp_path):
    expected = straight_weights(tmp_path)
    out = tmp_path / "run"
    p = spawn(out, "crash-on-write"); log = p.communicate(timeout=180)[0]
    assert p.returncode == -signal.SIGKILL, log
    from vivit_edu.train import find_checkpoint, read_checkpoint_state, load_weights
    from safetensors.torch import load_file
    left = list((out / "last.tmp").iterdir())            # the half-written file is there, under a temporary name ...
    assert len(left) == 1 and left[0].name.startswith(".model.safetensors.tmp"), left
    with pytest.raises(Exception): load_file(str(left[0]))
    assert find_checkpoint(out / "last") == out / "last"  # ... but `last` is the complete epoch-1 checkpoint
    assert read_checkpoint_state(out / "last")["epoch"] == 1
    load_weights(make_run()[0], out / "last")
    p = spawn(out); log = p.communicate(timeout=180)[0]
    assert p.returncode == 0, log
    check_finished(out, expected)


if __name__ == "__main__":
    worker(sys.argv[1], crash_on_write="crash-on-write" in sys.argv[2:])
