"""Lesson 11's parameter-efficient methods (issue 19): LoRA through Hugging Face peft, BitFit, layer-wise LR decay, the
linear probe; LoRA adapters saved alone, loaded on their base weights, merged; `vivit-edu train --method` and
`predict --run` on an adapter run folder; Table 2 rows for the methods (`vivit-edu experiment --methods`)."""
import copy, csv, json

import pytest
import torch
from torch import nn

import peft  # noqa: F401  (the `peft` extra, in `dev`: a missing peft fails here, it is not skipped)

from vivit_edu.core import count_parameters
from vivit_edu.finetune import (ADAPTER_WEIGHTS, METHODS, PEFT_METHODS, apply_method, bitfit, grow_head, layer_depths,
                                layerwise_lr_decay, linear_probe, load_adapter, load_adapter_run, lora, save_adapter,
                                save_adapter_run)
from vivit_edu.models.vivit import vivit
from vivit_edu.train import RunSpec, TrainConfig, build_optimizer, save_weights

SPEC = RunSpec(model="vivit", preset="tiny", options=dict(variant="factorised_encoder"), classes=["a", "b", "c", "new"],
               frames=8, size=(32, 32))


def tiny(seed=0, classes=3):
    torch.manual_seed(seed)
    return vivit(preset="tiny", variant="factorised_encoder", num_classes=classes)


def train_steps(model, steps=3, seed=0, lr=1e-2):
    "A few AdamW steps on random clips through lesson 10's build_optimizer (which reads each parameter's lr_scale)."
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(4, 3, 8, 32, 32, generator=g), torch.randint(0, 4, (4,), generator=g)
    opt = build_optimizer(model, TrainConfig(lr=lr, weight_decay=0.0))
    model.train()
    for _ in range(steps):
        opt.zero_grad(); nn.functional.cross_entropy(model(x), y).backward(); opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    "A base ViViT saved as a weights file, and a LoRA (rank 4) fine-tuning of it with one class more, trained a few steps."
    tmp = tmp_path_factory.mktemp("lora")
    base = tiny()
    base_file = save_weights(base, tmp / "base" / "model.safetensors")
    model = train_steps(lora(grow_head(copy.deepcopy(base)), r=4))
    return dict(base=base, base_file=base_file, model=model, tmp=tmp)


def test_lora_trains_only_a_b_and_head(lora_run):
    base, model = lora_run["base"], lora_run["model"]
    trains = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trains and all("lora_A" in n or "lora_B" in n or ".head.modules_to_save." in n for n in trains), trains
    assert any("lora_B" in n for n in trains) and any("modules_to_save" in n for n in trains)
    # every frozen base weight W is exactly the base model's; B moved away from zero (it trained)
    inner = model.get_base_model()
    for name, p in base.named_parameters():
        if name.startswith("head."): continue
        mod, _, attr = name.rpartition(".")
        layer = inner.get_submodule(mod)
        w = getattr(layer.base_layer, attr) if hasattr(layer, "base_layer") else getattr(layer, attr)
        assert torch.equal(w, p), name
    b = inner.spatial.blocks[0].attn.qkv.lora_B["default"].weight
    assert float(b.detach().abs().sum()) > 0
    # the original head is frozen and untouched; the trained copy differs
    assert torch.equal(inner.head.original_module.fc.weight[:3], base.head.fc.weight)
    assert not torch.equal(inner.head.modules_to_save["default"].fc.weight[:3], base.head.fc.weight)


def test_adapter_is_small_and_merging_keeps_the_logits(lora_run):
    folder = save_adapter(lora_run["model"], lora_run["tmp"] / "adapter")
    size = (folder / ADAPTER_WEIGHTS).stat().st_size
    full = lora_run["base_file"].stat().st_size
    print(f"adapter {size / 1024:.1f} KiB vs base weights {full / 1024:.1f} KiB")
    assert size < 300 * 1024 and size < full / 4
    x = torch.randn(3, 3, 8, 32, 32)
    with torch.no_grad():
        trained = lora_run["model"](x)
        loaded = load_adapter(grow_head(copy.deepcopy(lora_run["base"])), folder).eval()
        unmerged = loaded(x)
        merged_model = loaded.merge_and_unload()                      # one call
        merged = merged_model(x)
    assert type(merged_model) is type(lora_run["base"])
    assert not any("lora" in n for n, _ in merged_model.named_parameters())
    torch.testing.assert_close(unmerged, trained, atol=1e-5, rtol=0)
    torch.testing.assert_close(merged, unmerged, atol=1e-5, rtol=0)


def test_adapter_run_folder_and_base_mismatch(lora_run, tmp_path):
    run = save_adapter_run(lora_run["model"], tmp_path / "run", spec=SPEC, base=lora_run["base_file"],
                           base_state=lora_run["base"].state_dict(), method="lora4")
    assert sorted(p.name for p in run.iterdir()) == ["adapter", "run.json"]   # no copy of the base weights
    x = torch.randn(2, 3, 8, 32, 32)
    net, spec = load_adapter_run(run)
    assert spec.classes == SPEC.classes
    with torch.no_grad(): torch.testing.assert_close(net(x), lora_run["model"](x), atol=1e-5, rtol=0)
    other = copy.deepcopy(lora_run["base"])
    with torch.no_grad(): other.spatial.blocks[0].attn.qkv.weight.add_(1e-3)
    bad = save_weights(other, tmp_path / "other" / "model.safetensors")
    ft = json.loads((run / "run.json").read_text())
    ft["finetune"]["base"] = str(bad)
    (run / "run.json").write_text(json.dumps(ft))
    with pytest.raises(ValueError, match=f"{bad}: these are not the weights the adapter"): load_adapter_run(run)


def test_bitfit_trains_biases_and_head():
    m = bitfit(grow_head(tiny()))
    trains = [n for n, p in m.named_parameters() if p.requires_grad]
    assert all(n.endswith(".bias") or n.startswith("head.") for n in trains)
    biases = [n for n, _ in m.named_parameters() if n.endswith(".bias")]
    assert set(biases) <= set(trains) and {"head.fc.weight", "head.fc.bias"} <= set(trains)
    assert not any(n.endswith(".weight") and not n.startswith("head.") for n in trains)


def test_llrd_optimizer_groups():
    lr, decay = 1e-3, 0.5
    m = layerwise_lr_decay(grow_head(tiny()), decay=decay)
    depth = layer_depths(m); top = max(depth.values())
    assert all(p.requires_grad for p in m.parameters())
    opt = build_optimizer(m, TrainConfig(lr=lr))
    name_of = {id(p): n for n, p in m.named_parameters()}
    seen = set()
    for g in opt.param_groups:
        for p in g["params"]:
            n = name_of[id(p)]; seen.add(n)
            assert g["lr"] == pytest.approx(lr * decay ** (top - depth[n])), n
    assert seen == set(name_of.values())
    head_lrs = {g["lr"] for g in opt.param_groups for p in g["params"] if name_of[id(p)].startswith("head.")}
    assert head_lrs == {lr}                                                   # the head learns at the run's rate
    assert depth["embed.proj.weight"] == 0 and top == len(m.spatial.blocks) + len(m.temporal.blocks) + 1
    assert len({g["lr"] for g in opt.param_groups}) == top + 1


def test_linear_probe_trains_only_the_classifier():
    m = grow_head(tiny())
    r = apply_method(m, "probe")
    assert [n for n, p in r.model.named_parameters() if p.requires_grad] == ["head.fc.weight", "head.fc.bias"]
    assert r.trainable == m.head.fc.weight.numel() + m.head.fc.bias.numel()
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    train_steps(m)
    moved = {n for n, p in m.named_parameters() if not torch.equal(p, before[n])}
    assert moved == {"head.fc.weight", "head.fc.bias"}


def test_method_registry_counts():
    m = grow_head(tiny())
    counts = {k: apply_method(copy.deepcopy(m), k).trainable for k in METHODS}
    assert counts["probe"] < counts["case4"] < counts["bitfit"] < counts["lora4"] < counts["lora16"] < counts["case3"]
    assert counts["llrd"] == counts["case1"] == count_parameters(m)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    from vivit_edu.data.datasets import make_example_folder
    return make_example_folder(tmp_path_factory.mktemp("clips") / "clips", videos_per_class=4)


COMMON = ["--epochs", "1", "--batch-size", "6", "--lr", "2e-3", "--no-augment", "--num-workers", "0", "--device", "cpu",
          "--quiet", "--max-train-batches", "2"]


def test_train_method_lora_writes_an_adapter_run_and_predict_reads_it(clips, tmp_path, capsys):
    from vivit_edu.cli import main
    from vivit_edu.data.datasets import make_example_folder
    from vivit_edu.inference import predict_video
    assert main(["train", str(clips), *COMMON, "--out-dir", str(tmp_path / "base")]) == 0
    folder4 = make_example_folder(tmp_path / "clips4", classes=("FadeIn", "MoveRight", "RotateClockwise", "ZoomIn"),
                                  videos_per_class=3)
    out = tmp_path / "lora"
    assert main(["train", str(folder4), *COMMON, "--init", str(tmp_path / "base"), "--method", "lora4", "--out-dir", str(out)]) == 0
    said = capsys.readouterr().out
    assert "LoRA run: kept the best epoch's adapter" in said, said
    assert (out / "adapter" / ADAPTER_WEIGHTS).stat().st_size < 300 * 1024
    assert not (out / "last").exists() and not (out / "best").exists()      # only the adapter is kept
    spec = RunSpec.load(out)
    assert spec.finetune["case"] == "lora4" and spec.finetune["adapter"] == "adapter"
    video = sorted((folder4 / "RotateClockwise").iterdir())[0]
    assert main(["predict", str(video), "--run", str(out), "--hop", "8", "--quiet"]) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith(str(video)))
    net, _ = load_adapter_run(out)                                            # the same model, in memory
    name, p = predict_video(video, net, hop=8, class_names=spec.classes, frames=spec.frames, size=spec.size, crop=spec.crop,
                            threads=1).top()
    assert line.startswith(f"{video}: {name} {p:.3f}"), (line, name, p)
    with pytest.raises(SystemExit): main(["train", str(folder4), *COMMON, "--method", "lora5"])
    assert main(["train", str(folder4), *COMMON, "--method", "lora4", "--out-dir", str(tmp_path / "x")]) == 2
    assert "give --init" in capsys.readouterr().err


def test_predict_run_matches_the_model_in_memory_and_refuses_other_base_weights(lora_run, clips, tmp_path, capsys):
    from vivit_edu.cli import main
    from vivit_edu.inference import predict_video
    spec = RunSpec(model="vivit", preset="tiny", options=dict(variant="factorised_encoder"),
                   classes=["FadeIn", "MoveRight", "ZoomIn", "new"], frames=8, size=(32, 32))
    base_file = save_weights(lora_run["base"], tmp_path / "base" / "model.safetensors")
    run = save_adapter_run(lora_run["model"], tmp_path / "run", spec=spec, base=base_file,
                           base_state=lora_run["base"].state_dict(), method="lora4")
    video = sorted((clips / "ZoomIn").iterdir())[0]
    assert main(["predict", str(video), "--run", str(run), "--hop", "8", "--quiet"]) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith(str(video)))
    res = predict_video(video, lora_run["model"], hop=8, class_names=spec.classes, frames=8, size=(32, 32), threads=1)
    name, p = res.top()                                                       # the trained LoRA model itself, unmerged
    assert line.startswith(f"{video}: {name} {p:.3f}"), (line, name, p)
    save_weights(tiny(seed=1), base_file)                                     # other weights under the same name
    capsys.readouterr()
    assert main(["predict", str(video), "--run", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{base_file}: these are not the weights the adapter" in err, err


def test_table2_rows_for_methods(tmp_path, capsys):
    from vivit_edu.cli import main
    out = tmp_path / "exp"
    assert main(["experiment", "--preset", "smoke", "--device", "cpu", "--methods", "lora4", "bitfit", "probe", "--seeds", "0",
                 "--finetune-seeds", "0", "1", "--no-nonlocal", "--baselines", "--workers", "1", "--num-workers", "0",
                 "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out / "table2.csv")))
    names = [r["case"] for r in rows]
    assert names == [c for c in ("case1", "case2", "case3", "case4", "lora4", "bitfit", "probe") for _ in (0, 1)]
    for r in rows:
        assert float(r["peak_memory_mib"]) > 0 and float(r["time_s"]) >= 0 and r["memory"].startswith(("rss", "cuda"))
        for k in ("val_acc", "drowsy_acc", "old_acc_before", "old_acc_after", "forgetting"): float(r[k])
    tp = {r["case"]: int(r["trainable_parameters"]) for r in rows}
    assert tp["probe"] < tp["case4"] < tp["bitfit"] < tp["lora4"] < tp["case3"]
    report = (out / "report.md").read_text()
    assert "peak memory (MiB)" in report and "| lora4 |" in report and "lora4 vs case3, Drowsy accuracy" in report
    assert (out / "methods.png").stat().st_size > 0
    with pytest.raises(SystemExit): main(["experiment", "--preset", "smoke", "--methods", "case3"])   # the cases always run


def test_experiment_config_methods():
    from vivit_edu.experiments import ExperimentConfig, table2_jobs
    assert ExperimentConfig(preset="demo").methods == ("lora4", "bitfit", "probe")
    assert ExperimentConfig(preset="paper").methods == PEFT_METHODS
    assert ExperimentConfig(preset="smoke").methods == ()
    cfg = ExperimentConfig(preset="smoke", methods=("llrd",), finetune_seeds=(0, 1, 2))
    assert [j.case for j in table2_jobs(cfg)] == [c for c in ("case1", "case2", "case3", "case4", "llrd") for _ in range(3)]
    with pytest.raises(ValueError, match="unknown"): ExperimentConfig(preset="smoke", methods=("case3",))


def test_demo_and_experiment_pass_methods_on(monkeypatch):
    "`vivit-edu demo/experiment --methods ...` reach ExperimentConfig.methods; no --methods: the preset's; --methods alone: none."
    import vivit_edu.cli as cli
    seen = []
    monkeypatch.setattr(cli, "run_experiments", lambda cfg: seen.append(cfg.methods))
    monkeypatch.setattr(cli.torch, "set_num_threads", lambda n: None)       # demo sets it: not for the rest of this process
    assert cli.main(["demo", "--methods", "lora16", "llrd", "--out", "unused"]) == 0
    assert cli.main(["demo", "--out", "unused"]) == 0
    assert cli.main(["experiment", "--preset", "smoke", "--methods", "--out", "unused"]) == 0
    assert cli.main(["experiment", "--out", "unused"]) == 0
    assert seen == [("lora16", "llrd"), ("lora4", "bitfit", "probe"), (), PEFT_METHODS]


def test_lora_run_stopped_early_resumes_and_only_then_keeps_its_adapter(clips, tmp_path, capsys):
    "A LoRA run stopped before its last epoch keeps last/ (resumable), predict says it is unfinished; --resume ends it."
    from vivit_edu.cli import main
    from vivit_edu.distributed import train_folder
    quick = dict(batch_size=6, lr=2e-3, augment=False, num_workers=0, device="cpu", quiet=True, max_train_batches=2)
    train_folder(clips, out_dir=tmp_path / "base", epochs=1, **quick)
    out = tmp_path / "lora"
    train_folder(clips, out_dir=out, init=tmp_path / "base", method="lora4", epochs=2, stop_after=1, **quick)
    assert (out / "last").is_dir() and not (out / "adapter").exists()      # unfinished: the checkpoint stays
    video = sorted((clips / "ZoomIn").iterdir())[0]
    capsys.readouterr()
    assert main(["predict", str(video), "--run", str(out)]) == 2
    err = capsys.readouterr().err
    assert "a LoRA run (lora4) that has not finished" in err and "--resume" in err, err
    h = train_folder(clips, out_dir=out, init=tmp_path / "base", method="lora4", epochs=2, resume=True, **quick)
    assert [r["epoch"] for r in h.rows] == [1, 2]                           # epoch 1 read back, epoch 2 trained
    assert (out / "adapter" / ADAPTER_WEIGHTS).is_file() and not (out / "last").exists()
    assert main(["predict", str(video), "--run", str(out), "--quiet"]) == 0
