"Explorers of `vivit_edu.viz`: the figures draw what the models compute (checked against independent computations), the widgets carry the expected controls and redraw when a control changes."
import copy
import math

import numpy as np
import pytest
import torch
import matplotlib
import matplotlib.pyplot as plt
import ipywidgets as widgets

from vivit_edu.data.datasets import video_transform
from vivit_edu.data.synthetic import EmbeddedConfig, embedded_clip
from vivit_edu.finetune import CASES, apply_case
from vivit_edu.layers.non_local import NonLocalBlock
from vivit_edu.models.vivit import vivit
from vivit_edu.viz import (Explorer, as_clip, as_frames, attention_explorer, attention_figure, attention_rollout,
                           clip_explorer, clip_figure, finetune_explorer, finetune_figure, module_groups,
                           non_local_attention, non_local_explorer, non_local_figure, predict_windows,
                           prediction_figure, prediction_viewer, token_layout, tubelet_colour, vivit_attention)

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def no_figure_left():
    "Every test closes what it drew; the explorers must leave nothing open in pyplot."
    yield
    leaked = plt.get_fignums()
    plt.close("all")
    assert leaked == [], f"pyplot still holds figures {leaked}"


@pytest.fixture(scope="module")
def clip():
    return embedded_clip(EmbeddedConfig(size=(32, 32), frames=(8, 8)), "MoveRight", 1, 1)  # uint8 (8, 32, 32, 3)


@pytest.fixture(scope="module")
def model2():
    torch.manual_seed(0)
    return vivit(preset="tiny", variant="factorised_encoder", num_classes=8).eval()


def heatmap(ax) -> np.ndarray:
    "The heatmap laid over a frame (image 1 of the axes)."
    return np.asarray(ax.images[1].get_array(), dtype=np.float64)


def close(fig):
    plt.close(fig)


# ---------------------------------------------------------------- clip explorer

@pytest.mark.parametrize("patch,pt", [(8, 2), (4, 1), ((16, 8), 4), (32, 8)])
def test_clip_figure_draws_the_token_grid(clip, patch, pt):
    ph, pw = (patch, patch) if isinstance(patch, int) else patch
    nh, nw, nt = 32 // ph, 32 // pw, 8 // pt
    fig = clip_figure(clip, frame=5, patch_size=patch, tubelet_depth=pt, dim=64)
    ax, info, strip = fig.axes
    assert len(fig.axes) == 3
    assert fig._suptitle.get_text() == f"nt={nt} ns={nh * nw} N={nt * nh * nw} D=64"
    assert len(ax.lines) == (nh - 1) + (nw - 1)
    ys = sorted(l.get_ydata()[0] for l in ax.lines if l.get_xdata()[0] == 0)      # axhline: x from 0 to 1 (axes coords)
    assert ys == [r * ph - 0.5 for r in range(1, nh)]
    assert len(ax.texts) == (nh * nw if nh * nw <= 64 else 0)
    np.testing.assert_array_equal(ax.images[0].get_array(), clip[5])
    assert all(l.get_color() == tubelet_colour(5 // pt) for l in ax.lines)         # grid in the frame's tubelet colour
    bars = [p for p in strip.patches if p.get_gid() == "tubelet"]
    assert [tuple(b.get_facecolor()) for b in bars] == [tuple(matplotlib.colors.to_rgba(tubelet_colour(t // pt))) for t in range(8)]
    assert len({tuple(b.get_facecolor()) for b in bars}) == min(nt, 10)
    cur = [p for p in strip.patches if p.get_gid() == "current"]
    assert len(cur) == 1 and cur[0].get_x() == 5 * 32 - 0.5
    assert len(strip.lines) == nt - 1
    close(fig)


def test_clip_figure_without_grid_and_float_clip(clip):
    x = video_transform(train=False)(clip)                                            # float (C, T, H, W), normalised
    fig = clip_figure(x, frame=0, grid=False)
    assert len(fig.axes[0].lines) == 0 and len(fig.axes[0].texts) == 0
    img = np.asarray(fig.axes[0].images[0].get_array()).astype(int)
    xs = x.numpy().transpose(1, 2, 3, 0)                                              # (T, H, W, C), normalised
    want = 255 * (xs[0] - xs.min()) / (xs.max() - xs.min())                           # one stretch over the clip, all channels
    assert np.abs(img - want).max() <= 1
    assert np.corrcoef(img.reshape(-1), clip[0].reshape(-1))[0, 1] > 0.99             # the picture, not restored colours
    close(fig)


def test_clip_bad_input_is_explained(clip):
    with pytest.raises(IndexError, match=r"frame=8 is out of range 0\.\.7"):
        clip_figure(clip, frame=8)
    with pytest.raises(ValueError, match="W \\(width\\)=32 is not divisible by the patch size 5"):
        token_layout(clip, patch_size=(8, 5))
    with pytest.raises(ValueError, match="expected uint8 frames"):
        as_frames(np.zeros((2, 8, 32, 32, 3), np.uint8))


def test_clip_explorer_controls_and_redraw(clip):
    ex = clip_explorer(clip, patch_size=8, tubelet_depth=2, dim=64)
    assert isinstance(ex, Explorer) and isinstance(ex, widgets.VBox)
    assert isinstance(ex.children[1], widgets.Output)
    c = ex.controls
    assert (c["frame"].min, c["frame"].max) == (0, 7)
    assert set(c) == {"frame", "patch_size", "tubelet_depth", "grid"}
    assert all(32 % p == 0 for p in c["patch_size"].options) and all(8 % t == 0 for t in c["tubelet_depth"].options)
    fig0 = ex.figure
    c["patch_size"].value = 4
    assert ex.figure is not fig0 and len(ex.figure.axes[0].lines) == 7 + 7
    assert ex.figure._suptitle.get_text() == "nt=4 ns=64 N=256 D=64"
    c["frame"].value = 6
    np.testing.assert_array_equal(ex.figure.axes[0].images[0].get_array(), clip[6])
    c["grid"].value = False
    assert len(ex.figure.axes[0].lines) == 0


# ---------------------------------------------------------------- attention

def manual_attention(module, x):
    "softmax(Q K^T / sqrt(dh)) from a MultiHeadSelfAttention's own q/k projection: (..., N, D) -> (..., h, N, N)."
    h, dh = module.heads, module.dim_head
    q, k, _ = module.qkv(x).unflatten(-1, (3, h, dh)).unbind(-3)                     # (..., N, h, dh) each
    scores = torch.einsum("...ihd,...jhd->...hij", q, k) / math.sqrt(dh)
    return scores.softmax(-1)


def captured_inputs(model, modules, clip):
    "Inputs of `modules` during one forward pass (forward pre-hooks)."
    got, hooks = {}, [m.register_forward_pre_hook(lambda m, a, i=i: got.__setitem__(i, a[0].detach())) for i, m in enumerate(modules)]
    with torch.no_grad(): model(as_clip(clip))
    for hk in hooks: hk.remove()
    return [got[i] for i in range(len(modules))]


def test_spatial_and_temporal_maps_equal_independent_attention(model2, clip):
    blocks = [model2.spatial.blocks[0].attn, model2.spatial.blocks[1].attn, model2.temporal.blocks[0].attn]
    xs = captured_inputs(model2, blocks, clip)                                          # (1, nt, 1+ns, D) x2, (1, 1+nt, D)
    with torch.no_grad(): A_s1, A_t = manual_attention(blocks[1], xs[1])[0], manual_attention(blocks[2], xs[2])[0]
    assert A_s1.shape == (4, 4, 17, 17) and A_t.shape == (4, 5, 5)                       # (nt, h, 1+ns, 1+ns), (h, 1+nt, 1+nt)
    torch.testing.assert_close(A_s1.sum(-1), torch.ones(4, 4, 17))
    att = vivit_attention(model2, clip)
    frame, patch, head = 5, 9, 1                                                        # time index 2
    fig = attention_figure(att, frame=frame, patch=patch, layer=1, temporal_layer=0, head=head)
    a_s, a_t, a_r = fig.axes[:3]
    np.testing.assert_allclose(heatmap(a_s), A_s1[2, head, 1 + patch, 1:].reshape(4, 4).numpy(), atol=1e-5)
    np.testing.assert_allclose(heatmap(a_s).sum() + float(A_s1[2, head, 1 + patch, 0]), 1.0, atol=1e-5)
    heights = np.array([b.get_height() for b in a_t.patches])
    np.testing.assert_allclose(heights, A_t[head, 1 + 2].numpy(), atol=1e-5)
    np.testing.assert_allclose(heights.sum(), 1.0, atol=1e-5)
    assert [t.get_text() for t in a_t.get_xticklabels()] == ["CLS", "0", "1", "2", "3"]
    box = [p for p in a_s.patches][0]
    assert (box.get_x(), box.get_y()) == ((9 % 4) * 8 - 0.5, (9 // 4) * 8 - 0.5)        # the chosen patch is outlined
    close(fig)


def test_model3_temporal_map_is_per_location(clip):
    torch.manual_seed(1)
    m3 = vivit(preset="tiny", variant="factorised_self_attention").eval()
    mod = m3.encoder.blocks[1].temporal_attn
    (xin,) = captured_inputs(m3, [mod], clip)                                           # (1, ns, nt, D)
    with torch.no_grad(): A = manual_attention(mod, xin)[0]                              # (ns, h, nt, nt)
    fig = attention_figure(vivit_attention(m3, clip), frame=3, patch=7, layer=0, temporal_layer=1, head=2)
    np.testing.assert_allclose([b.get_height() for b in fig.axes[1].patches], A[7, 2, 3 // 2].numpy(), atol=1e-5)
    assert "patch 7 at time index 1" in fig.axes[1].get_title()
    close(fig)


def test_rollout_two_layer_toy_by_hand():
    rng = np.random.default_rng(0)
    def stochastic(*shape):
        a = rng.random(shape)
        return a / a.sum(-1, keepdims=True)
    A1, A2 = stochastic(2, 4, 4), stochastic(2, 4, 4)                                   # 2 heads, N = 4
    hat = lambda A: (A.mean(0) + np.eye(4)) / (A.mean(0) + np.eye(4)).sum(-1, keepdims=True)
    expected = hat(A2) @ hat(A1)
    R = attention_rollout([torch.tensor(A1), torch.tensor(A2)]).numpy()
    np.testing.assert_allclose(R, expected, atol=1e-6)
    np.testing.assert_allclose(R.sum(-1), np.ones(4), atol=1e-6)
    np.testing.assert_allclose(hat(A1), 0.5 * (A1.mean(0) + np.eye(4)), atol=1e-12)    # rows of A-bar + I sum to 2
    R_nores = attention_rollout(torch.tensor(np.stack([A1, A2])), residual=False).numpy()
    np.testing.assert_allclose(R_nores, A2.mean(0) @ A1.mean(0), atol=1e-6)
    R_max = attention_rollout([torch.tensor(A1)], fuse="max").numpy()
    m = A1.max(0) + np.eye(4)
    np.testing.assert_allclose(R_max, m / m.sum(-1, keepdims=True), atol=1e-6)
    with pytest.raises(ValueError, match="fuse='median'"):
        attention_rollout([torch.tensor(A1)], fuse="median")
    with pytest.raises(ValueError, match="no layers"):
        attention_rollout([])


def test_rollout_panel_equals_rollout_of_model_maps(model2, clip):
    att = vivit_attention(model2, clip)
    A = att.spatial[:, :, 3].double().numpy()                                          # frame 7 -> time index 3: (Ls, h, 17, 17)
    hat = [(a.mean(0) + np.eye(17)) / 2 for a in A]
    R = hat[1] @ hat[0]
    fig = attention_figure(att, frame=7, patch=12)
    np.testing.assert_allclose(heatmap(fig.axes[2]), R[1 + 12, 1:].reshape(4, 4), atol=1e-5)
    np.testing.assert_allclose(R.sum(-1), np.ones(17), atol=1e-6)
    assert f"CLS {R[13, 0]:.2f}" in fig.axes[2].get_title()
    close(fig)


def test_attention_explorer_controls_follow_the_model(model2, clip):
    ex = attention_explorer(model2, clip)
    c = ex.controls
    assert [(k, c[k].min, c[k].max) for k in ("frame", "patch", "layer", "temporal_layer", "head")] == \
        [("frame", 0, 7), ("patch", 0, 15), ("layer", 0, 1), ("temporal_layer", 0, 0), ("head", 0, 3)]
    att = ex.fixed["att"]
    for name, value, want in (("frame", 6, dict(frame=6)), ("patch", 11, dict(frame=6, patch=11)),
                              ("layer", 1, dict(frame=6, patch=11, layer=1)), ("head", 3, dict(frame=6, patch=11, layer=1, head=3))):
        before = heatmap(ex.figure.axes[0]).copy()
        c[name].value = value
        after = heatmap(ex.figure.axes[0])
        np.testing.assert_allclose(after, att.spatial_row(want.get("frame", 0), want.get("patch", 0), want.get("layer", 0), want.get("head", 0)).numpy(), atol=1e-6)
        assert not np.allclose(before, after), f"moving {name} did not change the heatmap"
    m4 = vivit(preset="tiny", variant=4, depth=3)
    c4 = attention_explorer(m4, clip).controls
    assert (c4["layer"].max, c4["temporal_layer"].max, c4["head"].max) == (2, 2, 1)    # Model 4: half the heads each way


def test_attention_bad_input_is_explained(model2, clip):
    att = vivit_attention(model2, clip)
    with pytest.raises(IndexError, match=r"patch=16 is out of range 0\.\.15 \(ns = 4 x 4 = 16 patches per frame\)"):
        attention_figure(att, patch=16)
    with pytest.raises(IndexError, match=r"layer=2 is out of range 0\.\.1"):
        attention_figure(att, layer=2)
    with pytest.raises(IndexError, match="frame=-1"):
        att.spatial_row(-1, 0)
    with pytest.raises(ValueError, match="Model 1 attends jointly"):
        vivit_attention(vivit(preset="tiny", variant=1), clip)
    with pytest.raises(ValueError, match="one clip at a time"):
        vivit_attention(model2, torch.zeros(2, 3, 8, 32, 32))
    with pytest.raises(ValueError, match="not divisible by the patch size 8"):
        vivit_attention(model2, clip[:, :30, :30])


# ---------------------------------------------------------------- non-local

def test_non_local_figure_equals_softmax_of_embeddings():
    torch.manual_seed(0)
    blk = NonLocalBlock(in_channels=8, pairwise="embedded_gaussian", subsample=True).eval()
    x = torch.randn(1, 8, 3, 6, 8)                                                      # (B, C, T, H, W), H != W
    q = x.flatten(2).transpose(1, 2)                                                    # (1, N, C), N = 144
    kv = torch.nn.functional.max_pool3d(x, (1, 2, 2)).flatten(2).transpose(1, 2)        # (1, M, C), M = 36
    with torch.no_grad(): W = (blk.f.theta(q) @ blk.f.phi(kv).transpose(1, 2)).softmax(-1)[0]   # (N, M)
    nla = non_local_attention(blk, x)
    assert nla.frames is None and nla.grid == (3, 6, 8) and nla.key_grid == (3, 3, 4)
    t, y, xq = 2, 4, 6
    fig = non_local_figure(nla, t=t, y=y, x=xq, top=4)
    assert len(fig.axes) == 3                                                           # no frames: one row of T heatmaps
    row = W[(t * 6 + y) * 8 + xq].reshape(3, 3, 4)                                    # queries in (t, y, x) order
    for f, ax in enumerate(fig.axes):
        np.testing.assert_allclose(ax.images[0].get_array(), row[f].numpy(), atol=1e-6)
        assert ax.get_title() == f"t={f}: sum {float(row[f].sum()):.2f}"
    np.testing.assert_allclose(float(row.sum()), 1.0, atol=1e-5)
    close(fig)
    with pytest.raises(IndexError, match=r"x=8 is out of range 0\.\.7 \(the block's feature map is T x H x W = 3 x 6 x 8\)"):
        non_local_figure(nla, t=0, y=0, x=8)
    with pytest.raises(ValueError, match="needs a space-time block"):
        non_local_attention(NonLocalBlock(in_channels=8, dims=2), torch.randn(1, 8, 6, 6))


def test_non_local_inside_resnet_matches_manual_backbone():
    from vivit_edu.models.resnet_nl import nl_resnet50
    torch.manual_seed(0)
    m = nl_resnet50(preset="tiny")                                                     # C2D, block after layer3[4]
    clip64 = embedded_clip(EmbeddedConfig(size=(64, 64), frames=(4, 4)), "ZoomIn", 1, 1)
    x = as_clip(clip64)                                                                 # (1, 3, 4, 64, 64)
    m.eval()
    with torch.no_grad():                                                               # the backbone by hand, up to the block
        h = x.transpose(1, 2).flatten(0, 1)                                             # (T, 3, H, W)
        h = m.maxpool(m.relu(m.bn1(m.conv1(h))))
        h = m.layer2(m.layer1(h))
        for i in range(5): h = m.layer3[i](h)
        feat = h.unflatten(0, (1, 4)).transpose(1, 2)                                   # (1, 1024, 4, 4, 4)
        W = m.nonlocal_blocks["layer3_4"].attention(feat)[0]
    m.train()
    nla = non_local_attention(m, clip64)
    assert m.training                                                                   # the model's mode is restored
    assert nla.name == "nonlocal_blocks.layer3_4" and nla.grid == (4, 4, 4)
    torch.testing.assert_close(nla.weights, W, atol=1e-5, rtol=1e-4)
    fig = non_local_figure(nla, t=2, y=1, x=3)
    assert len(fig.axes) == 2 * 4                                                       # frames on top, weights below
    np.testing.assert_array_equal(fig.axes[2].images[0].get_array(), clip64[2])
    np.testing.assert_allclose(fig.axes[4 + 1].images[0].get_array(), W[(2 * 4 + 1) * 4 + 3].reshape(4, 4, 4)[1].numpy(), atol=1e-5)
    query = [l for l in fig.axes[2].lines if l.get_marker() == "x"]
    assert len(query) == 1 and query[0].get_xdata()[0] == pytest.approx((3 + 0.5) * 16 - 0.5)
    close(fig)
    with pytest.raises(KeyError, match="choose one of \\['nonlocal_blocks.layer3_4'\\]"):
        non_local_attention(m, clip64, block="nope")
    with pytest.raises(ValueError, match="contains no NonLocalBlock"):
        non_local_attention(torch.nn.Sequential(torch.nn.Linear(2, 2)), clip64)


def test_non_local_explorer_controls_and_redraw():
    torch.manual_seed(0)
    blk = NonLocalBlock(in_channels=4, pairwise="dot_product")
    x = torch.randn(1, 4, 5, 6, 7)
    ex = non_local_explorer(blk, x)
    c = ex.controls
    assert [(k, c[k].min, c[k].max) for k in "tyx"] == [("t", 0, 4), ("y", 0, 5), ("x", 0, 6)]
    assert len(ex.figure.axes) == 5                                                     # features, not frames: weights only
    nla = ex.fixed["nla"]
    before = np.stack([ax.images[0].get_array() for ax in ex.figure.axes])
    c["t"].value, c["x"].value = 3, 0
    now = np.stack([ax.images[0].get_array() for ax in ex.figure.axes])
    np.testing.assert_allclose(now, nla.row(3, 3, 0).numpy(), atol=1e-6)
    assert not np.allclose(before, now)


def test_non_local_figure_marks_the_strongest_keys(clip):
    blk = NonLocalBlock(in_channels=3, pairwise="gaussian")
    feat = torch.nn.functional.avg_pool3d(as_clip(clip), (1, 4, 4))                    # (1, 3, 8, 8, 8)
    ex = non_local_explorer(blk, feat, frames=clip)
    assert len(ex.figure.axes) == 2 * 8
    for k in (1, 4, 9):
        ex.controls["top"].value = k
        rings = [l for ax in ex.figure.axes[:8] for l in ax.lines if l.get_marker() == "o"]
        assert sum(len(l.get_xdata()) for l in rings) == k
    w = ex.fixed["nla"].row(ex.controls["t"].value, ex.controls["y"].value, ex.controls["x"].value)
    t, y, x = np.unravel_index(int(w.argmax()), w.shape)                                # the strongest key is ringed
    ring = [l for l in ex.figure.axes[t].lines if l.get_marker() == "o"][0]
    assert (y + 0.5) * 4 - 0.5 in ring.get_ydata() and (x + 0.5) * 4 - 0.5 in ring.get_xdata()


# ---------------------------------------------------------------- fine-tuning

def test_finetune_bars_sum_to_the_policy(model2):
    for name in CASES:
        fig = finetune_figure(model2, name)
        ax = fig.axes[0]
        total, trained = ax.containers
        want = apply_case(copy.deepcopy(model2), name).trainable
        assert int(sum(b.get_width() for b in trained)) == want
        assert int(sum(b.get_width() for b in total)) == sum(p.numel() for p in model2.parameters())
        assert f"trainable {want:,} of" in ax.get_title()
        labels = [t.get_text() for t in ax.get_yticklabels()]
        widths = dict(zip(labels, (b.get_width() for b in trained)))
        assert widths["head"] > 0 and (widths["embed"] > 0) == (name == "case1")
        assert (widths["spatial.blocks.0"] > 0) == (name in ("case1", "case2"))
        close(fig)
    assert all(p.requires_grad for p in model2.parameters())


def test_finetune_paper_counts_on_meta_device():
    with torch.device("meta"): paper = vivit(preset="paper", num_classes=99)
    for name, want in (("case3", 37_901_411), ("case4", 103_523)):
        fig = finetune_figure(paper, name)
        assert int(sum(b.get_width() for b in fig.axes[0].containers[1])) == want
        close(fig)


def test_module_groups_split_lists_of_blocks():
    from vivit_edu.models.resnet_nl import nl_resnet50
    with torch.device("meta"): m = nl_resnet50(preset="tiny")
    g = module_groups(m)
    assert list(g)[:3] == ["conv1", "bn1", "layer1.0"] and "layer3.5" in g and "nonlocal_blocks.layer3_4" in g
    assert "layer1.0.downsample.0.weight" in g["layer1.0"]                             # nested Sequentials stay in their block
    assert sorted(n for ns in g.values() for n in ns) == sorted(n for n, _ in m.named_parameters())


def test_finetune_explorer_options_and_redraw(model2):
    ex = finetune_explorer(model2, case="case3")
    dd = ex.controls["case"]
    assert isinstance(dd, widgets.Dropdown) and dd.options == ("case1", "case2", "case3", "case4")
    bars = lambda: int(sum(b.get_width() for b in ex.figure.axes[0].containers[1]))
    assert bars() == sum(p.numel() for m in (model2.temporal, model2.head) for p in m.parameters())
    dd.value = "case4"
    assert bars() == sum(p.numel() for p in model2.head.parameters())
    with pytest.raises(ValueError, match="case2 does not fit"):
        from vivit_edu.models.resnet_nl import nl_resnet50
        with torch.device("meta"): r = nl_resnet50(preset="tiny")
        finetune_explorer(r, case=2)


# ---------------------------------------------------------------- predictions

@pytest.fixture(scope="module")
def video():
    cfg = EmbeddedConfig(size=(32, 32), frames=(12, 12))
    return np.concatenate([embedded_clip(cfg, a, 2, 1) for a in ("ZoomOut", "FadeIn", "MoveLeft")])   # (36, 32, 32, 3)


def test_prediction_lines_are_the_top5_classes(model2, video):
    names = [f"class{c}" for c in range(8)]
    preds = predict_windows(model2, video, class_names=names, hop=3, stride=1)
    ends = list(range(7, 36, 3))
    assert preds.ends.tolist() == ends
    tf = video_transform(train=False)
    with torch.no_grad():                                                              # every window by hand
        probs = torch.stack([model2(tf(video[e - 7:e + 1])[None]).softmax(-1)[0] for e in ends])
    torch.testing.assert_close(preds.probs, probs, atol=1e-5, rtol=1e-4)
    top5 = probs.mean(0).argsort(descending=True)[:5].tolist()
    fig = prediction_figure(preds, k=5)
    ax = fig.axes[-1]
    handles, labels = ax.get_legend_handles_labels()
    assert labels == [names[c] for c in top5]
    for h, c in zip(handles, top5):
        np.testing.assert_array_equal(h.get_xdata(), ends)
        np.testing.assert_allclose(h.get_ydata(), probs[:, c].numpy(), atol=1e-5)
    thumbs = fig.axes[:-1]
    assert [a.get_title() for a in thumbs] == [f"frame {f}" for f in np.linspace(0, 35, 6).round().astype(int)]
    close(fig)


def test_prediction_figure_at_a_frame_shows_its_window(model2, video):
    preds = predict_windows(model2, video, hop=4, stride=2)                             # span 15: ends 14, 18, ...
    m = copy.deepcopy(model2).train()
    torch.testing.assert_close(predict_windows(m, video, hop=4, stride=2).probs, preds.probs)
    assert m.training                                                                   # the model's mode is left as it was
    assert preds.span == 15 and preds.ends.tolist() == list(range(14, 36, 4))
    fig = prediction_figure(preds, frame=21, n_frames=4)                                # last window ends at 18: frames 4..18
    assert [a.get_title() for a in fig.axes[:-1]] == [f"frame {f}" for f in (4, 9, 13, 18)]
    assert "window 4-18" in fig.axes[-1].get_title()
    close(fig)
    fig = prediction_figure(preds, frame=3)
    assert "no window has ended yet" in fig.axes[-1].get_title()
    close(fig)
    with pytest.raises(IndexError, match=r"frame=36 is out of range 0\.\.35"):
        prediction_figure(preds, frame=36)
    with pytest.raises(ValueError, match="one window needs 15"):
        predict_windows(model2, video[:10], stride=2)
    with pytest.raises(ValueError, match="needs uint8 frames"):
        predict_windows(model2, video_transform(train=False)(video))


def test_prediction_viewer_controls_and_redraw(model2, video):
    pv = prediction_viewer(model2, video, hop=4)
    c = pv.controls
    assert (c["frame"].min, c["frame"].max, c["frame"].value) == (0, 35, 7)
    assert (c["k"].min, c["k"].max, c["k"].value) == (1, 8, 5)
    titles = lambda: [a.get_title() for a in pv.figure.axes[:-1]]
    before = titles()
    c["frame"].value = 20                                                               # window ending at 19: frames 12..19
    assert titles() != before and titles()[0] == "frame 12" and titles()[-1] == "frame 19"
    c["k"].value = 3
    assert len(pv.figure.axes[-1].get_legend_handles_labels()[1]) == 3


def test_as_clip_and_as_frames_round_trip(clip):
    x = as_clip(clip)
    assert x.shape == (1, 3, 8, 32, 32) and x.dtype == torch.float32
    assert as_clip(x).data_ptr() == x.data_ptr()                                        # float clips pass through
    grey = as_frames(torch.rand(1, 4, 8, 8))
    assert grey.shape == (4, 8, 8, 1) and grey.dtype == np.uint8 and grey.max() == 255
    fig = clip_figure(grey, patch_size=4, tubelet_depth=2)                              # grey clips draw too
    assert fig.axes[0].images[0].get_array().shape == (8, 8)
    close(fig)
    with pytest.raises(ValueError, match="expected a clip"):
        as_clip(torch.zeros(8, 8))
