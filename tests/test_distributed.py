"""DDP under torchrun with 2 CPU processes (gloo): the same losses and weights as one process with the same global batch,
resume under DDP, and a clear error for a global batch that the world size does not divide.

Why they agree: DDP averages the ranks' gradients, (g_0 + g_1) / 2 with g_r the mean over the rank's 4 clips, which
is the mean over the 8 clips of the single-process batch; the rank-aware sampler gives the two ranks together exactly
the clips of each single-process batch, and the demo model has no dropout or BatchNorm. Only the order of float
additions differs. Tolerances: SGD weights within 1e-6 (measured 2.4e-7 after 24 steps); AdamW within 1e-4
(measured ~1e-5: Adam divides by sqrt(v), which amplifies rounding differences in near-zero gradients)."""
import os, subprocess, sys
from pathlib import Path

import pytest
import torch

EPOCHS = 3


def torchrun(out_dir, *args, nproc=2, check=True):
    "Run `python -m vivit_edu ddp-demo` under torchrun with `nproc` CPU processes."
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "vivit_edu", "ddp-demo", "--device", "cpu", "--quiet", "--out-dir", str(out_dir), *args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if check and p.returncode: raise AssertionError(f"torchrun failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-5000:]}")
    return p


def single_process(*args):
    "The same demo in this process (no torchrun): plain `fit` with the same config and global batch."
    from vivit_edu.cli import build_parser
    from vivit_edu.distributed import demo_config, demo_data, demo_model
    from vivit_edu.train import fit
    torch.set_num_threads(1)
    a = build_parser().parse_args(["ddp-demo", "--quiet", "--epochs", str(EPOCHS), *args])     # the command's defaults
    model = demo_model(seed=a.seed)
    h = fit(model, demo_data(a.n_train, seed=a.seed), demo_data(a.n_val, seed=a.seed + 1),
            demo_config(epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, grad_accum=a.grad_accum, optimizer=a.optimizer,
                        seed=a.seed, device="cpu", quiet=True))
    return h, model.state_dict()


def ddp_result(out_dir):
    from vivit_edu.distributed import demo_model
    from vivit_edu.train import History, load_weights
    model = demo_model()
    load_weights(model, Path(out_dir) / "last")                  # strict: the file has no `module.` prefix
    return History.from_csv(Path(out_dir) / "history.csv"), model.state_dict()


def max_diff(a, b): return max((a[k] - b[k]).abs().max().item() for k in a)


@pytest.fixture(scope="module")
def adamw_ddp(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "adamw"
    p = torchrun(out, "--epochs", str(EPOCHS))
    assert "world_size=2 backend=gloo" in p.stdout, p.stdout
    return out


@pytest.mark.parametrize("opt,lr,atol", [("sgd", "0.05", 1e-6), ("adamw", "3e-3", 1e-4)])
def test_ddp_matches_single_process(opt, lr, atol, adamw_ddp, tmp_path):
    out = adamw_ddp if opt == "adamw" else tmp_path / "sgd"
    if opt != "adamw": torchrun(out, "--epochs", str(EPOCHS), "--optimizer", opt, "--lr", lr)
    h2, w2 = ddp_result(out)
    h1, w1 = single_process("--optimizer", opt, "--lr", lr)
    assert h2["epoch"] == list(range(1, EPOCHS + 1)) and h2["step"] == h1["step"]     # same number of optimiser steps
    for col in ("train_loss", "train_acc", "val_loss", "val_acc", "lr"):
        assert h1[col] == pytest.approx(h2[col], abs=atol), col
    d = max_diff(w1, w2)
    print(f"{opt}: max |weight difference| single vs 2-process DDP = {d:.2e}")
    assert d < atol
    assert sorted(p.name for p in out.iterdir()) == ["best", "curves.png", "history.csv", "last"]   # rank 0 wrote once


def test_ddp_resume_matches_uninterrupted(adamw_ddp, tmp_path):
    out = tmp_path / "resumed"
    torchrun(out, "--epochs", str(EPOCHS), "--stop-after", "1")
    from vivit_edu.train import read_checkpoint_state
    assert read_checkpoint_state(out / "last")["epoch"] == 1
    p = torchrun(out, "--epochs", str(EPOCHS), "--resume")
    assert f"epoch={EPOCHS}" in p.stdout
    h, w = ddp_result(out)
    h0, w0 = ddp_result(adamw_ddp)
    assert h["epoch"] == list(range(1, EPOCHS + 1))
    assert h["train_loss"] == pytest.approx(h0["train_loss"], abs=1e-6)
    print(f"resumed vs uninterrupted DDP: max |weight difference| = {max_diff(w, w0):.2e}")
    assert max_diff(w, w0) < 1e-6                                 # DDP resumed == DDP uninterrupted


def test_global_batch_must_divide(tmp_path):
    p = torchrun(tmp_path / "bad", "--batch-size", "7", check=False)
    assert p.returncode != 0
    assert "batch_size=7 is the global batch and must be divisible by the world size 2" in p.stdout + p.stderr
