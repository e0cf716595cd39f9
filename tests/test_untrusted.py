"""Untrusted files (issue 18): no file is unpickled blindly anywhere in the package (every `torch.load` asks for
`weights_only=True`, checked in the source), a checkpoint crafted to run code is refused by every loader before that code
runs, and weights loaders refuse weights that fit too little of the model, or a classifier for other classes unless
`reinit_head=True` says the head starts new."""
import ast, builtins, json, textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from vivit_edu.cli import main
from vivit_edu.core import load_torch_file
from vivit_edu.train import RunSpec, save_weights, load_weights, read_checkpoint_state, write_checkpoint, Trainer, TrainConfig

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "vivit_edu"


# every torch.load in the package passes weights_only=True; nothing else unpickles
def unsafe_loads(source: str, name: str = "<source>") -> list[str]:
    "Calls in `source` that could unpickle code: torch.load without a literal weights_only=True, pickle/dill/joblib loads, np.load(allow_pickle=True)."
    found = []
    for node in ast.walk(ast.parse(source, name)):
        if not isinstance(node, ast.Call): continue
        f = node.func
        dotted = (f"{f.value.id}.{f.attr}" if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name)
                  else f.id if isinstance(f, ast.Name) else "")
        kw = {k.arg: k.value for k in node.keywords}
        literal_true = lambda v: isinstance(v, ast.Constant) and v.value is True
        if dotted == "torch.load" and not literal_true(kw.get("weights_only")): found.append(f"{name}:{node.lineno} torch.load")
        if dotted in ("pickle.load", "pickle.loads", "dill.load", "dill.loads", "joblib.load", "marshal.loads"):
            found.append(f"{name}:{node.lineno} {dotted}")
        if dotted in ("np.load", "numpy.load") and literal_true(kw.get("allow_pickle")): found.append(f"{name}:{node.lineno} {dotted}(allow_pickle=True)")
    return found


def test_the_checker_finds_unsafe_loads():
    "The checker itself, on made-up sources: it must flag each unsafe form and pass the safe one."
    bad = textwrap.dedent("""
        import torch, pickle, numpy as np
        a = torch.load(p)
        b = torch.load(p, weights_only=False)
        c = torch.load(p, weights_only=flag)
        d = pickle.loads(data)
        e = np.load(p, allow_pickle=True)
        ok = torch.load(p, map_location="cpu", weights_only=True)
        ok2 = np.load(p)
    """)
    assert [x.split()[1] for x in unsafe_loads(bad)] == ["torch.load"] * 3 + ["pickle.loads", "np.load(allow_pickle=True)"]


def test_every_torch_load_in_the_package_is_weights_only():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 15
    calls = sum(src.count("torch.load(") for src in (f.read_text() for f in files))
    assert calls >= 1                                                # the checker has something to look at
    found = [x for f in files for x in unsafe_loads(f.read_text(), str(f.relative_to(ROOT)))]
    assert not found, f"unpickling that could run code: {found}"


# a real malicious checkpoint: unpickling it creates a file
class CreatesFile:
    "What an attacker pickles: loading it calls open(path, 'w'), which creates the file."
    def __init__(self, path): self.path = str(path)
    def __reduce__(self): return (builtins.open, (self.path, "w"))


@pytest.fixture
def evil(tmp_path):
    "(a malicious .pt file, the file its unpickling would create)."
    marker = tmp_path / "pwned.txt"
    path = tmp_path / "evil.pt"
    torch.save({"epoch": 1, "conv1.weight": torch.zeros(1), "x": CreatesFile(marker)}, path)
    return path, marker


def test_the_malicious_file_is_real(evil):
    "Loaded the unsafe way (never done by the package), the file does run code: the tests below test something."
    path, marker = evil
    torch.load(path, weights_only=False).get("x").close()
    assert marker.exists()


def test_load_torch_file_refuses_it(evil):
    path, marker = evil
    with pytest.raises(ValueError, match=r"evil\.pt: refused: loading it would call io\.open, but only tensors"):
        load_torch_file(path)
    assert not marker.exists()


def test_every_loader_refuses_it(evil, tmp_path):
    path, marker = evil
    from vivit_edu.models.resnet_nl import nl_resnet50
    from vivit_edu.pretrained import read_image_vit
    ck = write_checkpoint(tmp_path / "last", nn.Linear(2, 2), {"epoch": 1})
    (ck / "state.pt").write_bytes(path.read_bytes())                  # a checkpoint whose training state is the payload
    model = nn.Linear(2, 2)
    data = torch.utils.data.TensorDataset(torch.zeros(4, 1, 1, 1, 2), torch.zeros(4, dtype=torch.long))
    loaders = {
        "read_checkpoint_state": lambda: read_checkpoint_state(ck),
        "Trainer.fit(resume=...)": lambda: Trainer(model, data, None, TrainConfig(epochs=2, progress=False, live_plot=False)).fit(resume=ck),
        "nl_resnet50(weights=...)": lambda: nl_resnet50(preset="tiny", weights=path),
        "read_image_vit": lambda: read_image_vit(path),
    }
    for name, load in loaders.items():
        with pytest.raises(ValueError, match="refused: loading it would call io.open") as e:
            load()
        assert str(path.name) in str(e.value) or "state.pt" in str(e.value), (name, e.value)
        assert not marker.exists(), name


def test_cli_refuses_it(evil, tmp_path, capsys):
    "train --resume on a run whose state.pt is the payload, and --image-weights PAYLOAD: one line, nothing run."
    path, marker = evil
    out = tmp_path / "run"
    spec = RunSpec(classes=["a", "b"], frames=4, size=(32, 32))
    spec.save(out)
    save_weights(spec.build(), out / "last" / "model.safetensors")
    (out / "last" / "state.pt").write_bytes(path.read_bytes())
    assert main(["train", str(tmp_path), "--out-dir", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vivit-edu: error: ") and err.count("\n") == 1 and "refused: loading it would call io.open" in err, err
    assert main(["train", str(tmp_path), "--out-dir", str(tmp_path / "o"), "--model", "nonlocal", "--image-weights", str(path)]) == 2
    err = capsys.readouterr().err
    assert "refused: loading it would call io.open" in err and err.count("\n") == 1, err
    assert not marker.exists() and not (tmp_path / "o").exists()


# weights that fit too little, or a head for other classes
class Net(nn.Module):
    def __init__(self, k=4, width=8):
        super().__init__()
        self.body, self.norm, self.head = nn.Linear(6, width), nn.LayerNorm(width), nn.Linear(width, k)
    def forward(self, x): return self.head(self.norm(self.body(x)))


def test_load_weights_refuses_too_little_and_names_other_classes(tmp_path):
    torch.manual_seed(0)
    f = save_weights(Net(), tmp_path / "w.safetensors")
    with pytest.raises(ValueError, match=r"w\.safetensors: weights do not fit Net: shape mismatch: head\.bias: file \(4,\) vs "
                                         r"model \(7,\), head\.weight: file \(4, 8\) vs model \(7, 8\); to train the model on other "
                                         r"classes, pass reinit_head=True"):
        load_weights(Net(k=7), f)
    seven = Net(k=7); fresh = {k: v.clone() for k, v in seven.state_dict().items()}
    load_weights(seven, f, reinit_head=True)
    src = Net(); load_weights(src, f)
    assert torch.equal(seven.body.weight, src.body.weight) and torch.equal(seven.norm.bias, src.norm.bias)   # the rest loaded
    assert torch.equal(seven.head.weight, fresh["head.weight"]) and torch.equal(seven.head.bias, fresh["head.bias"])  # head new
    other = nn.Sequential(nn.Linear(6, 8), nn.Linear(8, 8), nn.Linear(8, 4))
    other.body = nn.Linear(6, 8)                                          # 2 of its 8 tensors share a name with the file
    with pytest.raises(ValueError, match=r"only 2 of the model's 8 tensors match the file by name and shape"):
        load_weights(other, f, strict=False)
    with pytest.raises(ValueError, match="has no classifier Linear"):
        load_weights(nn.Sequential(nn.Linear(6, 8)), f, reinit_head=True)


def test_resnet_loaders_refuse_misfits(tmp_path):
    from torchvision.models import resnet50
    from vivit_edu.models.resnet_nl import nl_resnet50, load_resnet2d
    m = nl_resnet50(preset="tiny")                                       # 5 classes
    with pytest.raises(ValueError, match=r"state dict: only 0 of the model's \d+ tensors match"):
        load_resnet2d(m, {"encoder.layers.0.weight": torch.zeros(3)})    # e.g. a ViT's weights: nothing matches
    wide = {k: v for k, v in resnet50(num_classes=5).state_dict().items() if k.startswith(("conv1", "bn1", "layer1"))}
    with pytest.raises(ValueError, match=r"only \d+ of the model's \d+ tensors match"):
        load_resnet2d(m, wide)                                           # a stem and one stage: under half
    sd = resnet50(num_classes=9).state_dict()
    sd["layer2.0.conv1.weight"] = sd["layer2.0.conv1.weight"][:, :1]     # a mis-shaped tensor is named, never skipped
    torch.save(sd, tmp_path / "r.pt")
    with pytest.raises(ValueError, match=r"r\.pt: weights do not fit this model: shape mismatch: layer2\.0\.conv1\.weight: file "
                                         r"\(128, 1, 1, 1\) vs model \(128, 256, 1, 1\), fc\.weight"):
        nl_resnet50(preset="tiny", weights=tmp_path / "r.pt")


def test_image_vit_loaders_place_everything_or_name_the_misfit(tmp_path):
    from torchvision.models.vision_transformer import VisionTransformer
    from torchvision.models import resnet50
    from vivit_edu.models.vivit import vivit
    from vivit_edu.pretrained import load_image_vit, read_image_vit
    torch.manual_seed(0)
    vit = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=64, mlp_dim=128)
    narrow = vivit(preset="tiny", num_classes=3, frames=4, image_size=32)  # other heads and biases than the image ViT
    with pytest.raises(ValueError, match=r"torchvision state dict: these weights don.t fit this ViViT: .*heads=4 \(the image model: 2\)"):
        load_image_vit(narrow, vit.state_dict(), heads=2)
    torch.save(resnet50().state_dict(), tmp_path / "r50.pth")
    with pytest.raises(ValueError, match=r"r50\.pth: these are ResNet weights, not a ViT"):
        read_image_vit(tmp_path / "r50.pth")
    sd = dict(vit.state_dict()); sd["extra.weight"] = torch.zeros(2)
    with pytest.raises(ValueError, match=r"weights a plain ViT does not have, which this loader would drop: \['extra\.weight'\]"):
        read_image_vit(sd)


def test_init_from_names_mismatched_tensors(tmp_path):
    "Fine-tuning from a run with another architecture names what differs; a weights file of another shape names the tensors."
    from vivit_edu.pretrained import init_from
    spec = RunSpec(classes=["a", "b"], frames=4, size=(32, 32), options=dict(pool="mean"))
    other = RunSpec(classes=["a", "b"], frames=4, size=(32, 32), options=dict(pool="mean", dim=32, heads=2, dim_head=16))
    f = save_weights(other.build(), tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match=r"other\.safetensors: weights do not fit the vivit \(tiny\) being trained: .*shape mismatch: "):
        init_from(spec.build(), spec, f)
