"""The `vivit()` entry point and the four ViViT models: contract, shapes, errors, positions, attention maps."""
import os

import pytest
import torch
from torch import nn

from vivit_edu.core import count_parameters
from vivit_edu.layers.attention import attention_maps
from vivit_edu.models.vivit import (VIVIT_PRESETS, VIVIT_VARIANTS, FactorisedDotProductViViT, FactorisedEncoderViViT,
                                    FactorisedSelfAttentionViViT, SpatioTemporalViViT, ViViTConfig, vivit, vivit_config, vivit_flops)

VARIANTS = [1, 2, 3, 4]


@pytest.mark.parametrize("variant,cls", [(1, SpatioTemporalViViT), ("model2", FactorisedEncoderViViT),
                                         ("factorised_self_attention", FactorisedSelfAttentionViViT),
                                         ("4", FactorisedDotProductViViT), ("factorized_encoder", FactorisedEncoderViViT)])
def test_variant_names(variant, cls):
    m = vivit(variant=variant, num_classes=3)
    assert type(m) is cls
    assert m(torch.randn(2, 3, 8, 32, 32)).shape == (2, 3)


def test_default_is_the_papers_variant():
    assert type(vivit()) is FactorisedEncoderViViT
    assert set(VIVIT_VARIANTS) == {"spatio_temporal", "factorised_encoder", "factorised_self_attention",
                                   "factorised_dot_product"}
    assert {"tiny", "small", "base", "paper"} <= set(VIVIT_PRESETS)


def test_paper_count_and_breakdown():
    m = vivit(preset="paper", num_classes=99)
    assert count_parameters(m) == 125_689_699
    parts = {n: count_parameters(getattr(m, n)) for n in ("embed", "spatial", "temporal", "head")}
    assert parts == {"embed": 49_251_072, "spatial": 37_797_888, "temporal": 37_797_888, "head": 103_523}
    assert m.pos_embed.shape == (1, 15, 48, 1024)
    assert m.spatial_cls.shape == m.temporal_cls.shape == (1, 1, 1024)
    assert not any(k.endswith("bias") and ".qkv." in k for k in m.state_dict())


def test_factorised_encoder_contract():
    "The attribute names the fine-tuning module relies on."
    m = vivit(num_classes=4)
    assert isinstance(m.pos_embed, nn.Parameter)
    assert isinstance(m.spatial_cls, nn.Parameter) and isinstance(m.temporal_cls, nn.Parameter)
    assert isinstance(m.embed, nn.Module) and isinstance(m.spatial, nn.Module) and isinstance(m.temporal, nn.Module)
    assert isinstance(m.head.norm, nn.LayerNorm) and isinstance(m.head.fc, nn.Linear)
    assert m.num_classes == 4 and m.head.fc.out_features == 4
    names = {n.split(".")[0] for n, _ in m.named_parameters()}
    assert names == {"embed", "pos_embed", "spatial_cls", "temporal_cls", "spatial", "temporal", "head"}
    for v in (1, 3, 4):
        o = vivit(variant=v, num_classes=4)
        assert isinstance(o.embed, nn.Module) and isinstance(o.head.fc, nn.Linear) and o.num_classes == 4


@pytest.mark.parametrize("variant", VARIANTS)
def test_bad_input_errors(variant):
    m = vivit(variant=variant)
    with pytest.raises(ValueError, match="expected C=3"):
        m(torch.randn(1, 1, 8, 32, 32))
    with pytest.raises(ValueError, match=r"H \(height\)=30 is not divisible by the patch size 8"):
        m(torch.randn(1, 3, 8, 30, 32))
    with pytest.raises(ValueError, match=r"W \(width\)=36 is not divisible"):
        m(torch.randn(1, 3, 8, 32, 36))
    with pytest.raises(ValueError, match=r"T \(frames\)=7 is not divisible by the tubelet depth 2"):
        m(torch.randn(1, 3, 7, 32, 32))
    with pytest.raises(ValueError, match="expected 5 dims"):
        m(torch.randn(3, 8, 32, 32))


def test_bad_options():
    with pytest.raises(ValueError, match="unknown ViViT variant"):
        vivit(variant="model7")
    with pytest.raises(ValueError, match="unknown preset"):
        vivit(preset="large")
    with pytest.raises(TypeError, match="unknown ViViT option"):
        vivit(depht=3)
    with pytest.raises(ValueError, match="no CLS token"):
        vivit(variant=3, pool="cls")
    with pytest.raises(ValueError, match="attn_impl"):
        vivit(attn_impl="flash2")
    with pytest.raises(ValueError, match="must be even"):
        vivit(variant=4, heads=3)


@pytest.mark.parametrize("variant", VARIANTS)
def test_other_clip_sizes_interpolate_positions(variant):
    "Built for 8x32x32, runs on 16x48x48 (and smaller); the built size uses the positions unchanged."
    torch.manual_seed(0)
    m = vivit(variant=variant, frames=8, image_size=32).eval()
    with torch.no_grad():
        assert m(torch.randn(2, 3, 16, 48, 48)).shape == (2, 10)
        assert m(torch.randn(1, 3, 4, 16, 24)).shape == (1, 10)
        x = torch.randn(1, 3, 8, 32, 32)
        assert torch.equal(m.tokens(x), m.embed(x) + m.pos_embed)


@pytest.mark.parametrize("variant", VARIANTS)
def test_sdpa_and_math_paths_agree(variant):
    torch.manual_seed(0)
    fast = vivit(variant=variant).eval()
    slow = vivit(variant=variant, attn_impl="math").eval()
    slow.load_state_dict(fast.state_dict())
    x = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), slow(x), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("variant", VARIANTS)
def test_training_step_reaches_every_parameter(variant):
    torch.manual_seed(0)
    m = vivit(variant=variant, dropout=0.1, emb_dropout=0.1).train()
    loss = nn.functional.cross_entropy(m(torch.randn(2, 3, 8, 32, 32)), torch.tensor([1, 2]))
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())


@pytest.mark.parametrize("variant", VARIANTS)
def test_attention_maps(variant):
    m = vivit(variant=variant).eval()
    maps = attention_maps(m, torch.randn(1, 3, 8, 32, 32))
    assert len(maps) >= 2
    for a in maps.values():
        for t in (a if isinstance(a, tuple) else (a,)):
            torch.testing.assert_close(t.sum(-1), torch.ones_like(t.sum(-1)))
    assert all(getattr(mod, "store_attention", False) is False for mod in m.modules())


def test_presets_build_and_small_runs():
    m = vivit(preset="small")
    assert m.cfg.grid == (8, 8, 8)
    assert m(torch.randn(1, 3, 16, 64, 64)).shape == (1, 10)
    base = vivit(preset="base", variant=1)
    assert base.cfg.embedding == "conv" and base.cfg.qkv_bias and base.num_classes == 400
    assert isinstance(vivit_config(preset="paper"), ViViTConfig)


def test_state_dict_round_trip():
    a, b = vivit(variant=2), vivit(variant=2)
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 3, 8, 32, 32)
    with torch.no_grad():
        assert torch.equal(a.eval()(x), b.eval()(x))


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("VIVIT_EDU_SLOW"), reason="paper-size forward: set VIVIT_EDU_SLOW=1")
def test_paper_forward():
    m = vivit(preset="paper", num_classes=99).eval()
    x = torch.randn(1, 3, 150, 240, 320)
    with torch.no_grad():
        assert m(x).shape == (1, 99)
    assert abs(vivit_flops(m, x) / 1e9 - 127.9) < 0.05       # FACTS.md: 127.9 GFLOPs forward


def test_paper_flops_on_the_meta_device():
    "vivit_flops of the paper preset, counted from shapes alone (meta tensors: no memory, no arithmetic)."
    with torch.device("meta"): m = vivit(preset="paper", num_classes=99)
    assert abs(vivit_flops(m, torch.empty(1, 3, 150, 240, 320, device="meta")) / 1e9 - 127.9) < 0.05   # FACTS.md
