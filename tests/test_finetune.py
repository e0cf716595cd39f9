"""Tests for vivit_edu.finetune beyond the lesson's examples: every case on every model kind, the paper's counts,
head growth for any input, optimizer/frozen-parameter behaviour, rehearsal composition and the report arithmetic."""
import copy, math
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from vivit_edu.core import count_parameters
from vivit_edu.finetune import (CASES, FineTuneCase, apply_case, case_table, collect_logits, dataset_labels,
                                evaluate_finetune, finetune_report, report_from_confusion, freeze_norm_stats, get_case, grow_head,
                                markdown_table, mix_with_rehearsal, model_blocks, recommend_case, trainable_parameters)

import vivit_edu.models.vivit as vivit_mod
CLIP = (3, 8, 32, 32)  # (C, T, H, W) accepted by the tiny preset


@pytest.fixture
def model():
    torch.manual_seed(0)
    return vivit_mod.vivit(preset="tiny", variant="factorised_encoder", num_classes=5)


class TinyCNN(nn.Module):
    "A ResNet in miniature: conv body with BatchNorm, `fc` head."
    def __init__(self, num_classes=3, bias=True):
        super().__init__()
        self.conv, self.bn = nn.Conv3d(3, 4, 3, padding=1), nn.BatchNorm3d(4)
        self.fc = nn.Linear(4, num_classes, bias=bias)
    def forward(self, x): return self.fc(self.bn(self.conv(x)).mean((2, 3, 4)))


class Clips(Dataset):
    "Tiny dataset; `with_attr=False` hides the labels so they must be read from items."
    def __init__(self, labels, with_attr=True, extra=False, seed=0):
        self._labels, self.extra = list(labels), extra
        if with_attr: self.labels = self._labels
        self.x = torch.randn(len(self._labels), *CLIP, generator=torch.Generator().manual_seed(seed))
    def __len__(self): return len(self._labels)
    def __getitem__(self, i):
        return (self.x[i], self._labels[i], f"video{i}") if self.extra else (self.x[i], self._labels[i])


# ---------------------------------------------------------------- cases

def test_blocks_partition_all_parameters(model):
    blocks = model_blocks(model)
    names = [n for ns in blocks.values() for n in ns]
    assert sorted(names) == sorted(n for n, _ in model.named_parameters())
    assert len(names) == len(set(names))
    assert list(blocks)[:6] == ["embed", "pos_embed", "cls", "spatial", "temporal", "head"]


@pytest.mark.parametrize("name", list(CASES))
def test_apply_case_sets_exactly_the_case(model, name):
    rep = apply_case(model, name)
    train = set(CASES[name].trainable_names(model))
    for n, p in model.named_parameters(): assert p.requires_grad == (n in train), n
    assert rep.trainable == count_parameters(model, trainable_only=True) == sum(n for _, n, t in rep.blocks if t)
    assert rep.total == count_parameters(model)
    assert name in str(rep)


def test_cases_are_nested(model):
    sets = [set(CASES[c].trainable_names(model)) for c in ("case1", "case2", "case3", "case4")]
    assert sets[0] > sets[1] > sets[2] > sets[3]
    assert sets[2] - sets[3] == {n for n, _ in model.named_parameters() if n.startswith("temporal.")}
    # case2 freezes exactly the embedding of eq. 1: patches, positions, both CLS tokens
    frozen2 = sets[0] - sets[1]
    assert {"pos_embed", "spatial_cls", "temporal_cls"} <= frozen2
    assert all(n.split(".")[0] in ("embed", "pos_embed", "spatial_cls", "temporal_cls") for n in frozen2)


def test_case_table_restores_flags(model):
    apply_case(model, "case3")
    before = {n: p.requires_grad for n, p in model.named_parameters()}
    rows = case_table(model)
    assert {n: p.requires_grad for n, p in model.named_parameters()} == before
    assert [r["trainable"] + r["frozen"] for r in rows] == [count_parameters(model)] * 4
    assert markdown_table(rows).count("\n") == 5


def test_custom_case_and_errors(model):
    c = FineTuneCase("mine", ("temporal", "cls", "head"), "temporal + CLS + head", "-")
    assert apply_case(model, c).trainable == (count_parameters(model.temporal) + count_parameters(model.head)
                                               + model.spatial_cls.numel() + model.temporal_cls.numel())
    c3 = FineTuneCase("case3+cls", ("temporal_cls", "temporal", "head", "head.fc"), "prefixes", "-")
    assert apply_case(model, c3).trainable == apply_case(model, "case3").trainable + model.temporal_cls.numel()
    assert len(c3.trainable_names(model)) == len(set(c3.trainable_names(model)))  # head.fc not counted twice
    with pytest.raises(KeyError, match="unknown fine-tuning case"): get_case("case9")
    with pytest.raises(ValueError, match="does not have"): apply_case(model, FineTuneCase("x", ("nope",), "", ""))


@pytest.mark.parametrize("wrap", [torch.compile, nn.DataParallel])
def test_wrapped_models_are_unwrapped(model, wrap):
    w = wrap(model)
    assert apply_case(w, "case3").trainable == count_parameters(model.temporal) + count_parameters(model.head)
    assert not model.spatial_cls.requires_grad
    assert [r["trainable"] for r in case_table(w)] == [r["trainable"] for r in case_table(model)]
    assert grow_head(w) is w and model.head.fc.out_features == 6


def test_fc_models_support_case1_and_case4_only():
    m = TinyCNN()
    assert apply_case(m, "case4").trainable == count_parameters(m.fc)
    assert apply_case(m, "case1").trainable == count_parameters(m)
    for c in ("case2", "case3"):
        with pytest.raises(ValueError, match="needs a factorised-encoder ViViT"): apply_case(m, c)
    with pytest.raises(AttributeError, match="neither"): model_blocks(nn.Sequential(nn.ReLU()))


def test_nl_resnet50_head_only():
    import vivit_edu.models.resnet_nl as mod
    with torch.device("meta"): m = mod.nl_resnet50(num_classes=99)
    assert apply_case(m, "case4").trainable == 2048 * 99 + 99
    with pytest.raises(ValueError, match="needs a factorised-encoder ViViT"): apply_case(m, "case3")
    grow_head(m)
    assert m.fc.out_features == 100


def test_paper_counts():
    "The paper preset, counted on the meta device: 99-row head as in FACTS.md, then one drowsy row more."
    with torch.device("meta"): m = vivit_mod.vivit(preset="paper", variant="factorised_encoder", num_classes=99)
    rows = {r["case"]: r["trainable"] for r in case_table(m)}
    assert rows == {"case1": 125_689_699, "case2": 2 * 37_797_888 + 103_523,
                    "case3": 37_901_411, "case4": 103_523}
    grow_head(m)
    rows = {r["case"]: r["trainable"] for r in case_table(m)}
    assert rows["case4"] == 103_523 + 1025 == 104_548 and rows["case3"] == 37_902_436


# ---------------------------------------------------------------- head growth

@pytest.mark.parametrize("num_new", [1, 3])
def test_grow_head_keeps_old_logits(model, num_new):
    model.eval()
    old_w, old_b = model.head.fc.weight.detach().clone(), model.head.fc.bias.detach().clone()
    grown = grow_head(copy.deepcopy(model), num_new)
    assert grown.num_classes == grown.head.fc.out_features == 5 + num_new
    assert torch.equal(grown.head.fc.weight[:5], old_w) and torch.equal(grown.head.fc.bias[:5], old_b)
    assert torch.all(grown.head.fc.bias[5:] == 0) and grown.head.fc.weight[5:].abs().max() < 0.1
    for seed in range(3):
        x = torch.randn(2, *CLIP, generator=torch.Generator().manual_seed(seed)) * (seed + 1)
        with torch.no_grad(): torch.testing.assert_close(grown(x)[:, :5], model(x), rtol=1e-5, atol=1e-5)


def test_grow_head_fc_variants():
    m = TinyCNN(bias=False).double()
    apply_case(m, "case1")
    grow_head(m, 2)
    assert m.fc.bias is None and m.fc.weight.dtype == torch.float64 and m.fc.weight.requires_grad
    m.fc.weight.requires_grad_(False)
    grow_head(m)
    assert not m.fc.weight.requires_grad  # the case's flag is kept
    with pytest.raises(ValueError, match="num_new"): grow_head(m, 0)


# ---------------------------------------------------------------- optimizer and frozen parameters

@pytest.mark.parametrize("name", list(CASES))
def test_frozen_parameters_do_not_move(model, name):
    grow_head(model); apply_case(model, name); model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW(trainable_parameters(model), lr=1e-2, weight_decay=0.1)
    x, y = torch.randn(4, *CLIP), torch.tensor([0, 1, 5, 5])
    for _ in range(2):
        opt.zero_grad(); nn.functional.cross_entropy(model(x), y).backward(); opt.step()
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]) != p.requires_grad, n


def test_frozen_batchnorm_keeps_statistics():
    m = TinyCNN().train()
    apply_case(m, "case4")
    rm = m.bn.running_mean.clone()
    m(torch.randn(2, *CLIP) + 3)
    assert torch.equal(m.bn.running_mean, rm) and m.bn.weight.grad is None
    apply_case(m, "case1")  # BN trains again: hooks removed
    m.train(); m(torch.randn(2, *CLIP) + 3)
    assert not torch.equal(m.bn.running_mean, rm)
    apply_case(m, "case4", freeze_norms=False)
    assert freeze_norm_stats(m) == 1


# ---------------------------------------------------------------- rehearsal

def test_rehearsal_composition():
    old = Clips([0] * 100 + [1] * 80 + [2] * 30 + [4] * 76)
    new = Clips([7] * 90, seed=1)
    mix = mix_with_rehearsal(new, old, new_label=5, per_class=75, seed=0)
    assert mix.composition() == {0: 75, 1: 75, 2: 30, 4: 75, 5: 75}
    assert len(set(mix.old_indices)) == len(mix.old_indices)
    assert all(old[i][1] == l for i, l in zip(mix.old_indices, mix.labels[75:]))
    assert all(mix[i][1] == 5 for i in range(75)) and torch.equal(mix[0][0], new[mix.new_indices[0]][0])
    assert mix_with_rehearsal(new, old, new_label=5, seed=0).old_indices == mix.old_indices
    assert mix_with_rehearsal(new, old, new_label=5, seed=1).old_indices != mix.old_indices
    assert mix_with_rehearsal(new, old, new_label=5, new_count=None).composition()[5] == 90
    assert mix_with_rehearsal(new, old, new_label=5, new_count=10).composition()[5] == 10
    with pytest.raises(IndexError): mix[len(mix)]
    with pytest.raises(ValueError, match="per_class"): mix_with_rehearsal(new, old, new_label=5, per_class=0)


def test_rehearsal_reads_labels_and_keeps_extra_fields():
    old = Clips([0, 0, 1, 1, 1], with_attr=False, extra=True)
    assert dataset_labels(old) == [0, 0, 1, 1, 1]
    from torch.utils.data import ConcatDataset, Subset
    assert dataset_labels(Subset(Clips([0, 1, 2, 3]), [3, 1])) == [3, 1]
    assert dataset_labels(ConcatDataset([Clips([0, 1]), Subset(Clips([5, 6]), [1])])) == [0, 1, 6]
    mix = mix_with_rehearsal(Clips([0, 0], extra=True), old, new_label=2, per_class=2)
    assert mix.composition() == {0: 2, 1: 2, 2: 2}
    assert len(mix[0]) == 3 and mix[0][1] == 2 and mix[-1][2].startswith("video")


# ---------------------------------------------------------------- report

def test_report_arithmetic():
    labels = torch.tensor([0, 1, 2, 3, 3, 3])
    before = torch.nn.functional.one_hot(torch.tensor([0, 1, 0, 0, 0, 0]), 3).float()  # old 3-class model
    after = torch.tensor([0, 2, 2, 3, 3, 1])
    r = finetune_report(labels=labels, after=after, before=before, new_classes=[3])
    assert (r.n_val, r.n_new) == (6, 3)
    assert math.isclose(r.val_acc, 400 / 6) and math.isclose(r.new_acc, 200 / 3)
    assert math.isclose(r.old_acc_before, 200 / 3) and math.isclose(r.old_acc_after, 200 / 3)
    assert r.forgetting == 0
    r = finetune_report(labels=labels[:3], after=after[:3], new_classes=3)
    assert math.isnan(r.new_acc) and r.old_acc_before is None and r.forgetting is None


def test_report_from_confusion_matches_predictions():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 6, (200,), generator=g); after = torch.randint(0, 6, (200,), generator=g)
    before = torch.randint(0, 5, (200,), generator=g)
    conf = torch.zeros(6, 6, dtype=torch.long).index_put_((labels, after), torch.ones(200, dtype=torch.long), accumulate=True)
    old = labels < 5
    conf_b = torch.zeros(5, 5, dtype=torch.long).index_put_((labels[old], before[old]), torch.ones(int(old.sum()), dtype=torch.long), accumulate=True)
    a = finetune_report(labels=labels, after=after, before=before, new_classes=5)
    b = report_from_confusion(conf, new_classes=5, before=conf_b)
    for f in ("val_acc", "new_acc", "old_acc_after", "old_acc_before", "forgetting"):
        assert math.isclose(getattr(a, f), getattr(b, f), abs_tol=1e-9), f
    assert (a.n_val, a.n_new) == (b.n_val, b.n_new)


def test_report_with_train_evaluate(model):
    import vivit_edu.train as train
    ds = Clips([0, 1, 5, 5, 2])
    grown = grow_head(copy.deepcopy(model))
    res = train.evaluate(grown, ds, batch_size=2)
    r = report_from_confusion(res.confusion, new_classes=5)
    assert math.isclose(r.val_acc, 100 * res.top1, abs_tol=1e-6) and r.n_new == 2


def test_evaluate_finetune(model):
    ds = Clips([0, 1, 5, 5, 2], extra=True)
    grown = grow_head(copy.deepcopy(model))
    logits, labels = collect_logits(grown, ds, batch_size=2)
    assert logits.shape == (5, 6) and labels.tolist() == [0, 1, 5, 5, 2]
    for mode in (True, False):                # each model's own mode is restored, whichever it was
        grown.train(mode); model.train(not mode)
        r = evaluate_finetune(grown, ds, new_classes=5, before=model, batch_size=3)
        assert r.n_new == 2 and r.old_acc_before is not None
        assert {m.training for m in grown.modules()} == {mode} and {m.training for m in model.modules()} == {not mode}


def test_recommend_case():
    got = {(s, q): recommend_case(s, q).case for s in ("large", "small") for q in ("high", "low")}
    assert got == {("large", "low"): "case1", ("large", "high"): "case2",
                   ("small", "low"): "case3", ("small", "high"): "case4"}
    assert recommend_case("small", "low").number == 3
    with pytest.raises(ValueError, match="similarity must be one of"): recommend_case("small", "medium")
