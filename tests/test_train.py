"""vivit_edu.train: exact resume, loaders with workers, AMP modes, metrics and weight loading, on tiny CPU models."""
import math, os
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from vivit_edu.train import (TrainConfig, Trainer, fit, evaluate, load_weights, save_weights, find_checkpoint,
                             read_checkpoint_state, metrics_from_logits, History)

torch.set_num_threads(1)  # small models: one thread is fastest and keeps runs bitwise repeatable


class Dots(Dataset):
    "Clips (1, 6, 12, 12) of a dot moving in one of 4 directions; items (clip, label, video_id)."
    def __init__(self, n, seed=0, clips_per_video=1):
        g = torch.Generator().manual_seed(seed)
        self.y = torch.randint(0, 4, (n,), generator=g)[torch.arange(n) // clips_per_video * clips_per_video]
        self.x = 0.1 * torch.randn(n, 1, 6, 12, 12, generator=g)
        mid = torch.randint(3, 9, (n, 2), generator=g)
        for i, (r, c) in enumerate(mid.tolist()):
            dy, dx = [(0, 1), (0, -1), (1, 0), (-1, 0)][self.y[i]]
            for t in range(6): self.x[i, 0, t, r + dy * (t - 3), c + dx * (t - 3)] += 1
        self.vid = [i // clips_per_video for i in range(n)]
    def __len__(self): return len(self.y)
    def __getitem__(self, i): return self.x[i], int(self.y[i]), self.vid[i]


class Net(nn.Module):
    def __init__(self, k=4):
        super().__init__()
        self.conv, self.drop, self.head = nn.Conv3d(1, 8, 3, padding=1), nn.Dropout(0.2), nn.Linear(8, k)
    def forward(self, x): return self.head(self.drop(F.relu(self.conv(x)).amax(dim=(2, 3, 4))))


def cfg(tmp, **kw):
    base = dict(epochs=4, batch_size=8, lr=1e-2, warmup_epochs=1, grad_accum=2, clip_grad=1.0, label_smoothing=0.1,
                mixup_alpha=0.4, progress=False, out_dir=str(tmp))
    return TrainConfig(**{**base, **kw})


def weights(m): return {k: v.clone() for k, v in m.state_dict().items()}


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_resume_is_exact(tmp_path, optimizer):
    train, val = Dots(40, seed=0), Dots(16, seed=1, clips_per_video=2)
    torch.manual_seed(0); a = Net()
    ha = fit(a, train, val, cfg(tmp_path / "a", optimizer=optimizer))
    torch.manual_seed(0); b = Net()
    hb = fit(b, train, val, cfg(tmp_path / "b", optimizer=optimizer), stop_after=2)
    assert len(hb) == 2 and read_checkpoint_state(tmp_path / "b" / "last")["epoch"] == 2
    torch.manual_seed(123); b = Net()                       # a different init: everything must come from the checkpoint
    hb = fit(b, train, val, cfg(tmp_path / "b", optimizer=optimizer), resume=True)
    assert hb["epoch"] == [1, 2, 3, 4] and hb["step"] == ha["step"]
    for k, v in a.state_dict().items(): assert torch.equal(v, b.state_dict()[k]), k
    assert hb["val_loss"] == ha["val_loss"] and hb["train_loss"] == ha["train_loss"]
    assert History.from_csv(tmp_path / "b" / "history.csv")["epoch"] == [1, 2, 3, 4]
    assert (tmp_path / "b" / "curves.png").stat().st_size > 1000
    assert sorted(os.listdir(tmp_path / "b" / "last")) == ["model.safetensors", "state.pt"]


def test_resume_true_without_checkpoint_starts_fresh_and_bad_path_fails(tmp_path):
    h = fit(Net(), Dots(16), None, cfg(tmp_path, epochs=1), resume=True)
    assert h["epoch"] == [1] and math.isnan(h["val_acc"][0])
    with pytest.raises(FileNotFoundError, match="nowhere"):
        fit(Net(), Dots(16), None, cfg(tmp_path, epochs=1), resume=tmp_path / "nowhere")
    with pytest.raises(ValueError, match="out_dir"):
        fit(Net(), Dots(16), None, cfg(None, epochs=1, out_dir=None), resume=True)


def test_resume_warns_on_changed_config(tmp_path):
    fit(Net(), Dots(16), None, cfg(tmp_path, epochs=2), stop_after=1)
    with pytest.warns(UserWarning, match=r"lr 0.01 -> 0.02"):
        fit(Net(), Dots(16), None, cfg(tmp_path, epochs=2, lr=0.02), resume=True)


def test_learns_with_workers_and_two_tuple_items(tmp_path):
    "Persistent workers, (clip, label) items, eval every 2 epochs, best checkpoint."
    d = Dots(96, seed=3)
    train = TensorDataset(d.x, d.y)                          # items (clip, label): no video ids
    v = Dots(48, seed=4)
    val = TensorDataset(v.x, v.y)
    torch.manual_seed(0)
    m = Net()
    h = fit(m, train, val, cfg(tmp_path, epochs=6, num_workers=2, mixup_alpha=0.0, grad_accum=1, lr=3e-2, eval_every=2))
    assert [math.isnan(v) for v in h["val_acc"]] == [True, False] * 3
    assert h["val_acc"][-1] > 0.6, h["val_acc"]               # chance is 0.25
    assert all(math.isnan(v) for v in h["val_video_acc"])
    best = History.from_csv(tmp_path / "history.csv").best()
    assert read_checkpoint_state(tmp_path / "best")["epoch"] == best["epoch"]
    r = evaluate(load_weights(Net(), tmp_path / "best"), val)
    assert r.video_top1 is None and abs(r.top1 - best["val_acc"]) < 1e-6


def test_callbacks_add_columns_and_stop_early(tmp_path):
    def cb(trainer, row):
        row["twice_acc"] = 2 * row["train_acc"]
        if trainer.epoch == 2: trainer.should_stop = True
    h = fit(Net(), Dots(16), None, cfg(tmp_path, epochs=5), callbacks=[cb])
    assert h["epoch"] == [1, 2] and h["twice_acc"] == [2 * a for a in h["train_acc"]]
    assert History.from_csv(tmp_path / "history.csv")["twice_acc"] == pytest.approx(h["twice_acc"])
    assert read_checkpoint_state(tmp_path / "last")["history"][1]["twice_acc"] == h["twice_acc"][1]
    h = fit(Net(), Dots(16), None, cfg(tmp_path, epochs=5), resume=True)   # picks up at epoch 3
    assert h["epoch"] == [1, 2, 3, 4, 5]


def test_amp_modes_on_cpu(tmp_path):
    h = fit(Net(), Dots(16), Dots(8), cfg(tmp_path, epochs=1, amp="bf16"))
    assert math.isfinite(h["train_loss"][0]) and math.isfinite(h["val_loss"][0])
    with pytest.raises(ValueError, match="needs a CUDA device"):
        Trainer(Net(), Dots(16), None, cfg(tmp_path, amp="fp16", device="cpu"))


def test_evaluate_topk_per_class_and_video_level():
    logits = torch.eye(10)[[0, 1, 2, 3, 4, 5]] * 5 - 0.1 * torch.arange(10)   # predict 0..5; class 9 ranks last
    labels = torch.tensor([0, 1, 2, 3, 9, 9])
    r = metrics_from_logits(logits, labels)
    assert r.top1 == pytest.approx(4 / 6) and r.topk[5] == pytest.approx(4 / 6)
    assert r.per_class[9] == 0 and math.isnan(r.per_class[7]) and r.confusion[9, 4] == 1
    # video level: 3 clips of one video, one wrong, averaged probabilities are right
    r = metrics_from_logits(torch.tensor([[3., 0], [3, 0], [0, 4]]), torch.tensor([0, 0, 0]), video_ids=["v"] * 3)
    assert r.top1 == pytest.approx(2 / 3) and r.video_top1 == 1.0
    with pytest.raises(ValueError, match=r"labels must be in \[0, 2\)"):
        metrics_from_logits(torch.zeros(2, 2), torch.tensor([0, 2]))


def test_load_weights_errors_name_file_and_keys(tmp_path):
    f = save_weights(Net(), tmp_path / "w.safetensors")
    with pytest.raises(ValueError, match=r"w\.safetensors.*head\.weight: file \(4, 8\) vs model \(5, 8\)"):
        load_weights(Net(k=5), f)
    with pytest.raises(ValueError, match=r"w\.safetensors.*missing keys: extra\.weight"):
        m = Net(); m.extra = nn.Linear(2, 2); load_weights(m, f)
    with pytest.raises(ValueError, match=r"unexpected keys: conv\.bias, conv\.weight"):
        load_weights(nn.Sequential(), f)
    m = Net(); m.extra = nn.Linear(2, 2)
    load_weights(m, f, strict=False)                          # the matching keys load
    (tmp_path / "trunc.safetensors").write_bytes(f.read_bytes()[:100])
    with pytest.raises(ValueError, match="trunc.safetensors: not a readable safetensors file"):
        load_weights(Net(), tmp_path / "trunc.safetensors")
    compiled_like = nn.Module(); compiled_like._orig_mod = Net()  # torch.compile's wrapper keeps the model here
    load_weights(compiled_like, f)


def test_bad_batches_and_empty_data(tmp_path):
    with pytest.raises(ValueError, match="is empty"):
        fit(Net(), TensorDataset(torch.zeros(0, 1, 6, 12, 12), torch.zeros(0, dtype=torch.long)), None, cfg(tmp_path))
    with pytest.raises(ValueError, match="a batch must be"):
        fit(Net(), TensorDataset(torch.zeros(4, 1, 6, 12, 12)), None, cfg(tmp_path, epochs=1))


def test_compile_on_cpu_trains_and_saves_plain_keys(tmp_path, monkeypatch):
    "torch.compile (inductor, on the CPU) trains, and the weights it writes have no `_orig_mod.` prefix."
    import torch._inductor.config as inductor
    monkeypatch.setattr(inductor, "compile_threads", 1)      # no pool of compile workers: it costs more than it saves on 2 cores
    h = fit(Net(), Dots(16), Dots(8), cfg(tmp_path, epochs=1, compile=True))
    assert math.isfinite(h["train_loss"][0])
    from safetensors.torch import load_file                  # the file itself, not load_weights (which strips prefixes)
    assert sorted(load_file(tmp_path / "last" / "model.safetensors")) == sorted(Net().state_dict())
    load_weights(Net(), tmp_path / "last")
    f = save_weights(torch.compile(Net()), tmp_path / "c.safetensors")   # the wrapper alone (compiles nothing until called)
    assert sorted(load_file(f)) == sorted(Net().state_dict())


def test_rng_state_resumes_on_a_machine_with_fewer_gpus(monkeypatch):
    "A checkpoint from a 2-GPU machine restores the CUDA generators this machine has, never an absent GPU's."
    from vivit_edu.train import rng_state, set_rng_state
    calls = []
    def set_one(s, device="cuda"):
        i = device if isinstance(device, int) else torch.device(device).index or 0
        if i >= torch.cuda.device_count(): raise RuntimeError(f"invalid device ordinal {i}")   # what CUDA says
        calls.append(i)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state", set_one)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: [set_one(s, i) for i, s in enumerate(states)])
    state = {**rng_state(), "cuda": [torch.zeros(16, dtype=torch.uint8), torch.ones(16, dtype=torch.uint8)]}
    set_rng_state(state)
    assert calls == [0]


def test_resume_in_another_amp_mode(tmp_path):
    "A checkpoint written without a loss scaler (amp off or bf16) resumes in a trainer that scales (fp16): the scaler starts afresh."
    fit(Net(), Dots(16), Dots(8), cfg(tmp_path, epochs=1))
    tr = Trainer(Net(), Dots(16), Dots(8), cfg(tmp_path, epochs=2))
    tr.scaler = torch.amp.GradScaler("cpu", enabled=True)     # what amp="fp16" builds (fp16 itself needs CUDA)
    tr.load_checkpoint(tmp_path / "last")
    assert tr.epoch == 1 and tr.scaler.get_scale() == 2.0 ** 16


def test_uint8_clips_train_exactly_like_float_clips(tmp_path):
    "Clips kept uint8 through the loader and normalised by the trainer give the same weights and metrics as float clips."
    from vivit_edu.data.datasets import video_transform
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (24, 6, 12, 12, 1), dtype=torch.uint8, generator=g)   # (N, T, H, W, C)
    y = torch.arange(24) % 4
    frames[y == 1, :, :6] //= 2                                                  # something to learn
    mean, std = (0.4,), (0.3,)
    def data(uint8):
        tf = video_transform(train=False, mean=mean, std=std, uint8=uint8)
        return TensorDataset(torch.stack([tf(f.numpy()) for f in frames]), y)
    runs = {}
    for uint8 in (False, True):
        ds = data(uint8)
        assert ds.tensors[0].dtype == (torch.uint8 if uint8 else torch.float32)
        torch.manual_seed(0); m = Net()
        h = fit(m, ds, ds, cfg(tmp_path / str(uint8), epochs=2, uint8_norm=(mean, std)))
        runs[uint8] = (weights(m), h["val_acc"], evaluate(m, ds, uint8_norm=(mean, std)).loss)
    for k, v in runs[False][0].items(): assert torch.equal(v, runs[True][0][k]), k
    assert runs[False][1:] == runs[True][1:]
