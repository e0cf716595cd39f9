"""Our ViViT models give the same logits as two independent implementations once weights are mapped.

vit-pytorch (pinned 1.2.9, the layout of the paper's model) for Model 2 (factorised encoder) and
transformers 5.x `VivitForVideoClassification` for Model 1. Test-only dependencies, randomly initialised,
nothing is downloaded.
"""
import pytest
import torch

from vivit_edu.core import count_parameters
from vivit_edu.models.vivit import (FactorisedEncoderViViT, SpatioTemporalViViT, from_hf_vivit, from_vit_pytorch,
                                    load_vit_pytorch_state_dict, vivit)

import vit_pytorch  # test-only dependency (pyproject dev extra)
from vit_pytorch.vivit import ViT as RefViViT  # noqa: E402


def _randomise(model, seed=0):
    "Give every parameter (also zero-initialised CLS/positions and LayerNorms) random values."
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters(): p.copy_(torch.randn(p.shape, generator=g) * 0.2 + (0.0 if p.dim() > 1 else 0.1))
    return model


VITPT_CASES = [
    dict(image_size=32, image_patch_size=8, frames=8, frame_patch_size=2, dim=64, spatial_depth=2, temporal_depth=1,
         heads=4, dim_head=16, mlp_dim=128, pool="cls"),
    dict(image_size=32, image_patch_size=8, frames=8, frame_patch_size=2, dim=64, spatial_depth=1, temporal_depth=2,
         heads=2, dim_head=32, mlp_dim=96, pool="mean"),
    dict(image_size=(24, 40), image_patch_size=(8, 4), frames=6, frame_patch_size=3, dim=48, spatial_depth=2,
         temporal_depth=2, heads=3, dim_head=16, mlp_dim=64, pool="cls"),
]


@pytest.mark.parametrize("cfg", VITPT_CASES)
def test_factorised_encoder_matches_vit_pytorch(cfg):
    torch.manual_seed(0)
    ref = _randomise(RefViViT(num_classes=7, **cfg)).eval()
    ours = from_vit_pytorch(ref, image_size=cfg["image_size"], image_patch_size=cfg["image_patch_size"],
                            frames=cfg["frames"], frame_patch_size=cfg["frame_patch_size"]).eval()
    assert isinstance(ours, FactorisedEncoderViViT)
    assert count_parameters(ours) == count_parameters(ref)
    H, W = (cfg["image_size"],) * 2 if isinstance(cfg["image_size"], int) else cfg["image_size"]
    x = torch.randn(2, 3, cfg["frames"], H, W)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), atol=1e-4, rtol=1e-4)


def test_vit_pytorch_gradients_agree():
    cfg = VITPT_CASES[0]
    torch.manual_seed(0)
    ref = _randomise(RefViViT(num_classes=7, **cfg))
    ours = from_vit_pytorch(ref, image_size=32, image_patch_size=8, frames=8, frame_patch_size=2)
    x = torch.randn(2, 3, 8, 32, 32)
    ref(x).square().sum().backward(); ours(x).square().sum().backward()
    g_ref = ref.temporal_transformer.layers[0][1].fn.net[0].weight.grad
    torch.testing.assert_close(ours.temporal.blocks[0].mlp.fc1.weight.grad, g_ref, atol=1e-4, rtol=1e-3)
    torch.testing.assert_close(ours.pos_embed.grad, ref.pos_embedding.grad, atol=1e-4, rtol=1e-3)


def test_vit_pytorch_state_dict_path():
    cfg = VITPT_CASES[0]
    ref = _randomise(RefViViT(num_classes=7, **cfg)).eval()
    sd = ref.state_dict()
    with pytest.raises(ValueError, match="heads"):
        from_vit_pytorch(sd, image_size=32, image_patch_size=8, frames=8, frame_patch_size=2)
    ours = from_vit_pytorch(sd, image_size=32, image_patch_size=8, frames=8, frame_patch_size=2, heads=4).eval()
    # and loading into a model built with vivit()
    built = load_vit_pytorch_state_dict(vivit(num_classes=7, dim=64, heads=4, dim_head=16, mlp_dim=128,
                                              spatial_depth=2, temporal_depth=1), sd).eval()
    x = torch.randn(1, 3, 8, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(built(x), ref(x), atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="do not fit"):
        load_vit_pytorch_state_dict(vivit(num_classes=7, dim=32), sd)      # another width


def test_paper_count_matches_vit_pytorch():
    "The paper's 125,689,699 parameters, counted in both implementations (no forward pass)."
    ref = RefViViT(image_size=(240, 320), image_patch_size=40, frames=150, frame_patch_size=10, num_classes=99,
                   dim=1024, spatial_depth=6, temporal_depth=6, heads=8, mlp_dim=2048)
    n_ref = count_parameters(ref)
    del ref
    ours = vivit(preset="paper", num_classes=99)
    assert n_ref == count_parameters(ours) == 125_689_699


import transformers  # noqa: E402  test-only dependency (pyproject dev extra)


def _hf_model(attn_implementation="eager", **kw):
    from transformers import VivitConfig, VivitForVideoClassification
    cfg = dict(image_size=32, num_frames=8, tubelet_size=[2, 8, 8], hidden_size=64, num_hidden_layers=2,
               num_attention_heads=4, intermediate_size=128, num_labels=7)
    cfg.update(kw)
    torch.manual_seed(0)
    return _randomise(VivitForVideoClassification(VivitConfig(**cfg, attn_implementation=attn_implementation))).eval()


@pytest.mark.parametrize("kw", [dict(), dict(attn_implementation="sdpa"),
                                dict(hidden_act="gelu", qkv_bias=False, layer_norm_eps=1e-5, image_size=(24, 40),
                                     tubelet_size=[4, 8, 4], num_frames=8)])
def test_spatio_temporal_matches_transformers(kw):
    hf = _hf_model(**kw)
    ours = from_hf_vivit(hf).eval()
    assert isinstance(ours, SpatioTemporalViViT)
    # ours has no separate CLS position (folded into the CLS token): one D-vector fewer
    assert count_parameters(ours) == count_parameters(hf) - hf.config.hidden_size
    H, W = (hf.config.image_size,) * 2 if isinstance(hf.config.image_size, int) else hf.config.image_size
    x = torch.randn(2, 3, hf.config.num_frames, H, W)                          # ours: (B, C, T, H, W)
    with torch.no_grad():
        want = hf(pixel_values=x.transpose(1, 2)).logits                        # transformers: (B, T, C, H, W)
        torch.testing.assert_close(ours(x), want, atol=1e-4, rtol=1e-4)


def test_from_hf_vivit_needs_classifier():
    from transformers import VivitConfig, VivitModel
    with pytest.raises(TypeError, match="VivitForVideoClassification"):
        from_hf_vivit(VivitModel(VivitConfig(image_size=32, num_frames=8, tubelet_size=[2, 8, 8], hidden_size=64,
                                             num_hidden_layers=1, num_attention_heads=4, intermediate_size=128)))


def test_base_preset_is_transformers_vivit_b():
    "ViViT-B/16x2 Model 1 = transformers' default VivitConfig, minus the CLS position folded into our CLS token."
    from transformers import VivitConfig, VivitForVideoClassification
    with torch.device("meta"):
        hf = VivitForVideoClassification(VivitConfig(num_labels=400))
        ours = vivit(preset="base", variant=1)
    assert count_parameters(ours) == count_parameters(hf) - hf.config.hidden_size == 88_953_232
