"""Non-local blocks (lesson 08) and the non-local ResNet-50 (lesson 09): identity at init, the four pairwise
functions, SDPA vs explicit path, an independent conv-based reference block, the paper's parameter count,
I3D inflation, block placements and clear errors."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet50

from vivit_edu.core import count_parameters
from vivit_edu.layers.non_local import PAIRWISE, NonLocalBlock, Concatenation
from vivit_edu.models.resnet_nl import (NL_PRESETS, PLACEMENTS, inflate_state_dict, load_resnet2d, nl_resnet50,
                                        temporal_kernels)


def trained(block: NonLocalBlock) -> NonLocalBlock:
    "A block that is no longer the identity (BN gamma = 1), in eval mode."
    nn.init.ones_(block.bn.weight)
    return block.eval()


@pytest.mark.parametrize("pairwise", list(PAIRWISE))
@pytest.mark.parametrize("dims,shape", [(3, (2, 16, 3, 6, 6)), (2, (2, 16, 6, 6)), (1, (2, 16, 10))])
@pytest.mark.parametrize("subsample", [False, True])
def test_identity_at_init(pairwise, dims, shape, subsample):
    x = torch.randn(shape)
    for bn in (True, False):
        nl = NonLocalBlock(in_channels=16, pairwise=pairwise, dims=dims, subsample=subsample, bn=bn)
        with torch.no_grad():
            assert torch.equal(nl(x), x)
            assert torch.equal(nl.eval()(x), x)
    with torch.no_grad():
        assert not torch.allclose(trained(nl if bn else NonLocalBlock(in_channels=16, pairwise=pairwise, dims=dims))(x), x)


@pytest.mark.parametrize("pairwise,rows_sum_to_one", [("gaussian", True), ("embedded_gaussian", True),
                                                      ("dot_product", False), ("concatenation", False)])
def test_pairwise_shapes_and_normalisation(pairwise, rows_sum_to_one):
    torch.manual_seed(0)
    x = torch.randn(2, 8, 3, 4, 4)  # N = 48
    for subsample, m in ((False, 48), (True, 12)):
        nl = NonLocalBlock(in_channels=8, pairwise=pairwise, subsample=subsample)
        w = nl.attention(x)
        assert w.shape == (2, 48, m)
        assert torch.allclose(w.sum(-1), torch.ones(2, 48), atol=1e-5) == rows_sum_to_one
        assert nl(x).shape == x.shape
    if pairwise == "concatenation": assert (w >= 0).all()  # ReLU


def test_dot_product_and_concatenation_divide_by_n():
    torch.manual_seed(0)
    x, xs = torch.randn(1, 5, 8), torch.randn(1, 7, 8)
    f = PAIRWISE["dot_product"](in_channels=8, inter_channels=4)
    assert torch.allclose(f.weights(x, xs) * 7, f.theta(x) @ f.phi(xs).transpose(1, 2), atol=1e-6)
    c = Concatenation(in_channels=8, inter_channels=4)
    th, ph = c.theta(x), c.phi(xs)
    pairs = torch.cat([th[:, :, None].expand(-1, -1, 7, -1), ph[:, None].expand(-1, 5, -1, -1)], -1)
    assert torch.allclose(c.weights(x, xs), F.relu(c.w_f(pairs)).squeeze(-1) / 7, atol=1e-6)


@pytest.mark.parametrize("pairwise", ["embedded_gaussian", "gaussian"])
@pytest.mark.parametrize("subsample", [False, True])
def test_sdpa_path_matches_explicit(pairwise, subsample):
    torch.manual_seed(0)
    nl = trained(NonLocalBlock(in_channels=32, pairwise=pairwise, subsample=subsample))
    x = torch.randn(2, 32, 4, 8, 8) * (0.3 if pairwise == "gaussian" else 1.0)
    with torch.no_grad():
        nl.fast = True
        fast = nl(x)
        nl.fast = False
        slow = nl(x)
        explicit = x + nl.bn(nl.W_z(nl.attention(x) @ nl.g(nl.embed(x)[1])).transpose(1, 2)).view_as(x)
    assert torch.allclose(fast, slow, atol=1e-5)
    assert torch.allclose(slow, explicit, atol=1e-5)


class ReferenceNonLocal(nn.Module):
    """Embedded-Gaussian block written as in Wang et al.'s Figure 2 with 1x1x1 convolutions (independent of ours);
    subsampling max-pools x before phi and g, as the authors' released code does."""
    def __init__(self, c, ci, subsample):
        super().__init__()
        self.theta, self.phi, self.g = (nn.Conv3d(c, ci, 1) for _ in range(3))
        self.out, self.bn = nn.Conv3d(ci, c, 1), nn.BatchNorm3d(c)
        self.pool = nn.MaxPool3d((1, 2, 2)) if subsample else nn.Identity()

    def forward(self, x):
        b, c = x.shape[:2]
        xp = self.pool(x)
        th = self.theta(x).reshape(b, -1, x[0, 0].numel())  # (B, Ci, N)
        ph, g = self.phi(xp).reshape(b, th.shape[1], -1), self.g(xp).reshape(b, th.shape[1], -1)  # (B, Ci, M)
        p = torch.softmax(torch.einsum("bcn,bcm->bnm", th, ph), dim=-1)
        y = torch.einsum("bnm,bcm->bcn", p, g).reshape(b, -1, *x.shape[2:])
        return x + self.bn(self.out(y))


@pytest.mark.parametrize("subsample", [False, True])
def test_matches_conv_reference(subsample):
    torch.manual_seed(0)
    ours = trained(NonLocalBlock(in_channels=16, subsample=subsample))
    ref = ReferenceNonLocal(16, 8, subsample).eval()
    with torch.no_grad():
        for a, b in ((ref.theta, ours.f.theta), (ref.phi, ours.f.phi), (ref.g, ours.g), (ref.out, ours.W_z)):
            a.weight.copy_(b.weight.reshape(a.weight.shape)); a.bias.copy_(b.bias)
        ref.bn.load_state_dict(ours.bn.state_dict())
        x = torch.randn(2, 16, 3, 6, 6)
        assert torch.allclose(ours(x), ref(x), atol=1e-5)


def test_paper_parameter_count():
    model = nl_resnet50(preset="paper", num_classes=99)
    block = NonLocalBlock(in_channels=1024, pairwise="embedded_gaussian")
    assert count_parameters(block) == 2_101_760
    assert count_parameters(model) == count_parameters(resnet50(num_classes=99)) + count_parameters(block)
    assert count_parameters(model) == 25_812_643
    assert list(model.nonlocal_blocks) == ["layer3_5"]
    assert model.config.variant == "c2d" and model.config.input_shape == (3, 150, 240, 320)


@pytest.mark.parametrize("variant", ["c2d", "i3d"])
@pytest.mark.parametrize("n,expected", [
    (0, {}),
    (1, {"layer3": [4]}),
    (5, {"layer2": [1, 3], "layer3": [1, 3, 5]}),
    (10, {"layer2": [0, 1, 2, 3], "layer3": [0, 1, 2, 3, 4, 5]})])
def test_placements(variant, n, expected):
    with torch.device("meta"):
        m = nl_resnet50(preset="tiny", variant=variant, num_nonlocal=n)
    found = {}
    for key, block in m.nonlocal_blocks.items():
        layer, i = key.rsplit("_", 1)
        found.setdefault(layer, []).append(int(i))
        assert block.in_channels == getattr(m, layer)[int(i)].bn3.num_features == {"layer2": 512, "layer3": 1024}[layer]
    assert found == expected and len(m.nonlocal_blocks) == n


def test_i3d_kernels_every_other_block():
    with torch.device("meta"):
        m = nl_resnet50(preset="tiny", variant="i3d", num_nonlocal=0)
    assert m.conv1.weight.shape == (64, 3, 5, 7, 7)
    t = [blk.conv1.weight.shape[2] for layer in (m.layer1, m.layer2, m.layer3, m.layer4) for blk in layer]
    assert t == [3, 3, 3, 3, 1, 3, 1, 3, 1, 3, 1, 3, 1, 1, 3, 1]
    assert all(blk.conv2.weight.shape[2] == 1 and blk.conv3.weight.shape[2] == 1
               for layer in (m.layer1, m.layer2, m.layer3, m.layer4) for blk in layer)
    assert temporal_kernels()["layer4.1.conv1"] == 3


def test_i3d_inflation_identical_frames_give_2d_features():
    """A clip of identical frames through the inflated I3D backbone (and new, identity non-local blocks) gives the
    2D ResNet-50's layer4 features at frames far enough from the clip's ends (temporal zero padding)."""
    torch.manual_seed(0)
    r2 = resnet50(num_classes=5).eval()
    m = nl_resnet50(preset="tiny", variant="i3d", num_nonlocal=5).eval()
    left = load_resnet2d(m, r2.state_dict())
    assert left and all(k.startswith("nonlocal_blocks.") for k in left)
    reach = 2 + 3 + 2 + 3 + 1  # temporal radius: stem 5x7x7, then 3x1x1 kernels in res2, res3, res4, res5
    frame = torch.randn(1, 3, 32, 32)
    clip = frame[:, :, None].expand(-1, -1, 2 * reach + 1, -1, -1).contiguous()
    with torch.no_grad():
        f2 = r2.layer4(r2.layer3(r2.layer2(r2.layer1(r2.maxpool(r2.relu(r2.bn1(r2.conv1(frame))))))))
        f3 = m.features(clip)
    assert f3.shape == (1, 2048, 2 * reach + 1, 1, 1)
    assert torch.allclose(f3[:, :, reach], f2, atol=1e-4, rtol=1e-3)
    assert not torch.allclose(f3[:, :, 0], f2, atol=1e-3)


def test_c2d_is_2d_resnet_per_frame():
    torch.manual_seed(0)
    r2 = resnet50(num_classes=5).eval()
    m = nl_resnet50(preset="tiny", num_nonlocal=1).eval()
    load_resnet2d(m, r2.state_dict())
    x = torch.randn(2, 3, 3, 32, 32)
    with torch.no_grad():
        expected = torch.stack([r2(x[:, :, t]) for t in range(3)]).mean(0)
        assert torch.allclose(m(x), expected, atol=1e-4)


def test_weights_path_is_inflated(tmp_path):
    torch.manual_seed(0)
    r2 = resnet50()  # 1000-class fc: does not fit; an error, unless the head is asked to start new
    path = tmp_path / "r50.pt"
    torch.save(r2.state_dict(), path)
    with pytest.raises(ValueError, match=r"r50\.pt: weights do not fit this model: shape mismatch: fc\.weight: file \(1000, 2048\) vs model \(5, 2048\).*reinit_head=True"):
        nl_resnet50(preset="tiny", variant="i3d", weights=path)
    m = nl_resnet50(preset="tiny", variant="i3d", weights=path, reinit_head=True)
    assert torch.allclose(m.conv1.weight.sum(2), r2.conv1.weight, atol=1e-6)
    assert torch.equal(m.layer4[2].bn3.running_var, r2.layer4[2].bn3.running_var)
    assert m.fc.out_features == 5


@pytest.mark.parametrize("variant", ["c2d", "i3d"])
def test_forward_backward_tiny(variant):
    m = nl_resnet50(preset="tiny", variant=variant, num_nonlocal=1, subsample=True)
    x = torch.randn(2, *NL_PRESETS["tiny"].input_shape)
    out = m(x)
    assert out.shape == (2, 5)
    out.sum().backward()
    assert m.nonlocal_blocks["layer3_4"].bn.weight.grad.abs().sum() > 0  # gamma learns first


def test_bad_input_errors():
    nl = NonLocalBlock(in_channels=16)
    with pytest.raises(ValueError, match="NonLocalBlock input: expected 5 dims"):
        nl(torch.randn(2, 16, 6, 6))
    with pytest.raises(ValueError, match="expected C=16"):
        nl(torch.randn(2, 8, 3, 6, 6))
    with pytest.raises(ValueError, match="pairwise='cosine'"):
        NonLocalBlock(in_channels=16, pairwise="cosine")
    with pytest.raises(ValueError, match="dims=4"):
        NonLocalBlock(in_channels=16, dims=4)
    with torch.device("meta"):
        m = nl_resnet50(preset="tiny")
    with pytest.raises(ValueError, match="NonLocalResNet input: expected 5 dims"):
        m(torch.randn(1, 3, 32, 32, device="meta"))
    with pytest.raises(ValueError, match="expected C=3"):
        m(torch.randn(1, 1, 2, 32, 32, device="meta"))
    with pytest.raises(ValueError, match="num_nonlocal=3"):
        nl_resnet50(preset="tiny", num_nonlocal=3)
    with pytest.raises(ValueError, match="has 1 non-local blocks, but num_nonlocal=5"):
        nl_resnet50(preset="tiny", num_nonlocal=5, placement="after_layer3")
    with pytest.raises(ValueError, match="preset='huge'"):
        nl_resnet50(preset="huge")
    with pytest.raises(ValueError, match="variant='r2plus1d'"):
        nl_resnet50(preset="tiny", variant="r2plus1d")
    with pytest.raises(TypeError, match="unknown option"):
        nl_resnet50(preset="tiny", depth=101)
    assert set(PLACEMENTS) >= {"wang1", "wang5", "wang10", "after_layer3"}
