"""vivit_edu.pretrained against the libraries whose files it reads: timm, transformers (new and old names, through
transformers' own loader) and Google's .npz layout (through timm's own .npz reader). Every image model is small and
randomly initialised; nothing is downloaded."""
import warnings
import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from vivit_edu.layers.embedding import prepend_cls
from vivit_edu.pretrained import read_image_vit, load_image_vit, vivit_from_image, inflate_patch_kernel
from vivit_edu.models.vivit import vivit

timm = pytest.importorskip("timm")  # a dev dependency (pyproject [dev]); skipped only outside the dev install
transformers = pytest.importorskip("transformers")


def jiggle(model, seed=0):
    "Random weights everywhere (CLS tokens and positions included), so that a misplaced tensor shows."
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters(): p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model.eval()


def spatial_cls(model, clip):  # Model 2's per-time-index spatial summaries, (B, nt, D)
    return model.spatial(prepend_cls(model.tokens(clip), model.spatial_cls))[..., 0, :]


def per_centre_frame(features, clip, pt=2):  # the image model's features of each tubelet's centre frame, (B, nt, D)
    return torch.stack([features(clip[:, :, j * pt + pt // 2]) for j in range(clip.shape[2] // pt)], 1)


CLIP = torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(3))


def tiny_timm(**kw):
    return jiggle(timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=2,
                                       embed_dim=128, num_heads=2, **kw))  # 2 heads of 64: Model 4 splits them


def test_timm_safetensors_file_matches_timm(tmp_path):
    tm = tiny_timm(num_classes=0)
    save_file(tm.state_dict(), tmp_path / "model.safetensors")
    img = read_image_vit(tmp_path)                                  # a timm model folder, as the Hub stores it
    assert (img.dim, img.depth, img.heads, img.eps, img.gelu) == (128, 2, None, 1e-6, "none")
    with pytest.raises(ValueError, match="do not say how many attention heads"):       # no guess (ViT-H has 80-wide heads)
        vivit_from_image(tmp_path / "model.safetensors", frames=4, num_classes=3)
    m = vivit_from_image(tmp_path / "model.safetensors", heads=2, frames=4, num_classes=3).eval()
    assert m.cfg.heads == 2
    with torch.no_grad():
        torch.testing.assert_close(spatial_cls(m, CLIP), per_centre_frame(lambda x: tm.forward_features(x)[:, 0], CLIP), atol=1e-5, rtol=0)


def test_google_npz_matches_timms_own_reader(tmp_path):
    D, h, dh, M = 192, 3, 64, 768
    rng = np.random.default_rng(0)
    rnd = lambda *s: (rng.standard_normal(s) * 0.1).astype(np.float32)
    z = {"embedding/kernel": rnd(8, 8, 3, D), "embedding/bias": rnd(D), "cls": rnd(1, 1, D),
         "Transformer/posembed_input/pos_embedding": rnd(1, 17, D), "head/kernel": rnd(D, 7), "head/bias": rnd(7),
         "Transformer/encoder_norm/scale": 1 + rnd(D), "Transformer/encoder_norm/bias": rnd(D)}
    for i in range(2):
        b = f"Transformer/encoderblock_{i}/"
        for ln in ("LayerNorm_0", "LayerNorm_2"): z |= {b + ln + "/scale": 1 + rnd(D), b + ln + "/bias": rnd(D)}
        for n in ("query", "key", "value"):
            z |= {b + f"MultiHeadDotProductAttention_1/{n}/kernel": rnd(D, h, dh), b + f"MultiHeadDotProductAttention_1/{n}/bias": rnd(h, dh)}
        z |= {b + "MultiHeadDotProductAttention_1/out/kernel": rnd(h, dh, D), b + "MultiHeadDotProductAttention_1/out/bias": rnd(D),
              b + "MlpBlock_3/Dense_0/kernel": rnd(D, M), b + "MlpBlock_3/Dense_0/bias": rnd(M),
              b + "MlpBlock_3/Dense_1/kernel": rnd(M, D), b + "MlpBlock_3/Dense_1/bias": rnd(D)}
    np.savez(tmp_path / "ViT-tiny.npz", **z)
    ref = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=2, num_classes=7)
    from timm.models.vision_transformer import _load_weights
    _load_weights(ref, str(tmp_path / "ViT-tiny.npz")); ref.eval()
    img = read_image_vit(tmp_path / "ViT-tiny.npz")
    assert img.source.startswith("vit_jax") and (img.heads, img.gelu) == (3, "tanh")   # the .npz says its heads; Flax's GELU is tanh
    np.savez(tmp_path / "train_state.npz", **{"opt/target/" + k: v for k, v in z.items()})   # as a training checkpoint stores it
    again = read_image_vit(tmp_path / "train_state.npz")
    assert all(torch.equal(again.blocks[1][k], v) for k, v in img.blocks[1].items()) and torch.equal(again.pos, img.pos)
    with pytest.warns(UserWarning, match="gelu"):                   # timm computes the exact GELU: build ours the same
        m = vivit_from_image(img, frames=4, num_classes=3, gelu="none").eval()
    with torch.no_grad():
        torch.testing.assert_close(spatial_cls(m, CLIP), per_centre_frame(lambda x: ref.forward_features(x)[:, 0], CLIP), atol=1e-5, rtol=0)


def tiny_hf():
    cfg = transformers.ViTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128, image_size=32, patch_size=8)
    return jiggle(transformers.ViTModel(cfg, add_pooling_layer=False)), cfg


def test_transformers_model_object():
    hm, _ = tiny_hf()
    m = vivit_from_image(hm, frames=4, num_classes=3).eval()
    assert (m.cfg.heads, m.cfg.norm_eps) == (2, 1e-12)             # from the model's config
    with torch.no_grad():
        torch.testing.assert_close(spatial_cls(m, CLIP), per_centre_frame(lambda x: hm(pixel_values=x).last_hidden_state[:, 0], CLIP),
                                   atol=1e-5, rtol=0)


OLD_NAMES = [("attention.q_proj", "attention.attention.query"), ("attention.k_proj", "attention.attention.key"),
             ("attention.v_proj", "attention.attention.value"), ("attention.o_proj", "attention.output.dense"),
             ("mlp.fc1", "intermediate.dense"), ("mlp.fc2", "output.dense")]


def test_transformers_folder_with_hub_names(tmp_path):
    "A folder as the Hub serves google/vit-*: the classifier model's names before transformers 5, and config.json."
    hm, cfg = tiny_hf()
    old = {}
    for k, v in hm.state_dict().items():
        for new, o in OLD_NAMES: k = k.replace(new, o)
        old["vit." + ("encoder.layer." + k[len("layers."):] if k.startswith("layers.") else k)] = v.clone()
    save_file(old, tmp_path / "model.safetensors"); cfg.save_pretrained(tmp_path)
    ref, info = transformers.ViTForImageClassification.from_pretrained(tmp_path, output_loading_info=True)
    assert info["missing_keys"] == {"classifier.weight", "classifier.bias"} and not info["unexpected_keys"]  # transformers reads these names too
    img = read_image_vit(tmp_path)
    assert img.source.startswith("transformers-v4") and img.heads == 2
    m = vivit_from_image(img, frames=4, num_classes=3).eval()
    with torch.no_grad():
        torch.testing.assert_close(spatial_cls(m, CLIP), per_centre_frame(lambda x: ref.eval().vit(pixel_values=x).last_hidden_state[:, 0], CLIP),
                                   atol=1e-5, rtol=0)


@pytest.mark.parametrize("variant", [1, 2, 3, 4])
@pytest.mark.parametrize("embed_init", ["central", "average"])
def test_every_variant_loads_and_trains(variant, embed_init):
    tm = tiny_timm(num_classes=0)
    m = vivit_from_image(tm, variant=variant, frames=4, num_classes=3, embed_init=embed_init)
    rep = load_image_vit(m, tm, embed_init=embed_init)
    loaded = set(rep["loaded"])
    assert "embed.proj.weight" in loaded and "pos_embed" in loaded and not any(k.startswith("head.") for k in loaded)
    assert ("temporal.blocks.0.attn.qkv.weight" in rep["new"]) == (variant == 2)
    w = m.embed.proj.weight                                          # (D, C, pt, ph, pw)
    if embed_init == "central": assert w[:, :, 0].abs().sum() == 0 and w[:, :, 1].abs().sum() > 0
    else: torch.testing.assert_close(w[:, :, 0], w[:, :, 1])
    out = m(CLIP)
    assert out.shape == (2, 3) and torch.isfinite(out).all()
    out.sum().backward()


def test_linear_embedding_gets_the_same_tokens():
    "A model with our Linear (rearrange) embedding gets the inflated kernel in its (c t h w) order."
    tm = tiny_timm(num_classes=0)
    conv = vivit_from_image(tm, frames=4, num_classes=3)
    lin = vivit_from_image(tm, frames=4, num_classes=3, embedding="linear")
    with torch.no_grad(): torch.testing.assert_close(lin.embed(CLIP), conv.embed(CLIP), atol=1e-5, rtol=0)


def test_misfits_and_bad_files_are_named(tmp_path):
    tm = tiny_timm(num_classes=0)
    with pytest.raises(ValueError, match=r"dim=64 \(the image model: 128\)"): load_image_vit(vivit(preset="tiny"), tm)
    with pytest.raises(ValueError, match="3 layers to fill"): vivit_from_image(tm, frames=4, spatial_depth=3)
    with pytest.raises(ValueError, match="the weights have 2 attention heads, not heads=4"): vivit_from_image(tm, frames=4, heads=4)
    with pytest.raises(FileNotFoundError, match="nope.pth"): read_image_vit(tmp_path / "nope.pth")
    (tmp_path / "x.pth").write_text("garbage")
    with pytest.raises(ValueError, match="x.pth: can't read weights"): read_image_vit(tmp_path / "x.pth")
    torch.save({"a": torch.zeros(1)}, tmp_path / "y.pth")
    with pytest.raises(ValueError, match="y.pth: not a ViT"): read_image_vit(tmp_path / "y.pth")
    sd = tm.state_dict() | {"blocks.0.ls1.gamma": torch.ones(128)}   # layer scale: a plain ViT has none
    with pytest.raises(ValueError, match="ls1.gamma"): read_image_vit(sd)
    with pytest.raises(ValueError, match="embed_init='middle'"): inflate_patch_kernel(torch.zeros(4, 3, 2, 2), 2, "middle")
    m = vivit_from_image(tm, frames=4)
    m.cfg.norm_eps = 1e-5
    with pytest.warns(UserWarning, match="eps=1e-05"): load_image_vit(m, tm)


def test_ddp_wrapped_checkpoint(tmp_path):
    "A training checkpoint: {'model': state dict} with DDP's module. prefix."
    tm = tiny_timm(num_classes=0)
    torch.save({"model": {"module." + k: v for k, v in tm.state_dict().items()}, "epoch": 3}, tmp_path / "ckpt.pth")
    a, b = read_image_vit(tmp_path / "ckpt.pth"), read_image_vit(tm)
    assert all(torch.equal(a.blocks[1][k], b.blocks[1][k]) for k in b.blocks[1]) and torch.equal(a.cls, b.cls)
