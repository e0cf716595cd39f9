"""The GPU paths, checked on a GPU: bf16 and fp16 autocast training, fused SDPA kernels against the from-scratch
attention, CUDA against CPU numerics, checkpoints across devices, the training command with AMP and torch.compile,
NCCL under torchrun, and the real-time predictor in bf16 with channels-last.

Marked `cuda`: they run where CUDA is available (`bench/gpu_session.sh` runs them on a lent GPU) and are skipped
elsewhere. `VIVIT_EDU_CUDA_DRY_RUN=1` runs the same code on the CPU, leaving out the CUDA-only steps, so that the
test code itself is exercised on machines without a GPU (that is a check of the tests, not of the GPU paths)."""
import os, subprocess, sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
DRY = os.environ.get("VIVIT_EDU_CUDA_DRY_RUN") == "1"
CUDA = torch.cuda.is_available()
pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not (CUDA or DRY), reason="needs CUDA (or VIVIT_EDU_CUDA_DRY_RUN=1 to dry-run on the CPU)")]
DEV = torch.device("cuda" if CUDA else "cpu")


def cuda_only(what: str):
    "Skip a CUDA-only step in a CPU dry run."
    if DEV.type != "cuda": pytest.skip(f"dry run on the CPU: {what} needs CUDA")


@pytest.fixture(autouse=True)
def no_tf32():
    "Full fp32 matmuls, so that fp32 comparisons with the CPU are meaningful."
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def tiny_vivit(classes=3, **kw):
    from vivit_edu.models.vivit import vivit
    torch.manual_seed(0)
    return vivit(preset="tiny", num_classes=classes, pool="mean", temporal_pos=True, **kw)


def shifted_clips(n=96, classes=3, seed=0):
    "Tensor clips whose class shifts the first channel: learnable in a few epochs."
    from torch.utils.data import TensorDataset
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    x = torch.randn(n, 3, 8, 32, 32, generator=g)
    x[:, 0] += (y.float() - (classes - 1) / 2)[:, None, None, None]
    return TensorDataset(x, y)


@pytest.mark.parametrize("amp", ["bf16", "fp16", "off"])
def test_amp_training_learns(amp):
    "Training under each AMP mode learns, really runs the layers in the low precision, and uses a GradScaler for fp16 only."
    from vivit_edu.train import TrainConfig, Trainer
    if amp == "fp16": cuda_only("fp16 autocast with a GradScaler")
    model = tiny_vivit()
    tr = Trainer(model, shifted_clips(), shifted_clips(48, seed=1),
                 TrainConfig(epochs=4, batch_size=16, lr=2e-3, device=str(DEV), amp=amp, progress=False, live_plot=False))
    want = {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}[amp]
    assert tr.amp_dtype == want and tr.scaler.is_enabled() == (amp == "fp16")   # bf16 needs no loss scaling
    seen = set()
    hook = model.head.register_forward_hook(lambda m, i, o: seen.add(o.dtype) if m.training else None)
    h = tr.fit(); hook.remove()
    assert seen == {want or torch.float32}, seen                              # the head's matmul ran in that dtype
    assert all(p.dtype == torch.float32 for p in model.parameters())          # autocast keeps fp32 master weights
    assert all(torch.isfinite(torch.tensor(h["train_loss"])))
    assert h["train_loss"][-1] < 0.8 * h["train_loss"][0] and h["val_acc"][-1] > 0.6, (h["train_loss"], h["val_acc"])
    if amp == "fp16": assert 0 < tr.scaler.get_scale() < 2.0 ** 24              # the scaler ran (and did not blow up)


@pytest.mark.parametrize("kernel", ["flash", "efficient", "cudnn"])
def test_fused_sdpa_matches_math(kernel):
    "Each fused kernel, forced alone, agrees with the from-scratch eq. 2 in bf16, forward and backward."
    from torch.nn.attention import sdpa_kernel, SDPBackend
    from vivit_edu.layers.attention import MultiHeadSelfAttention
    backend = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
               "cudnn": SDPBackend.CUDNN_ATTENTION}[kernel]
    if kernel != "flash": cuda_only(f"the {kernel} SDPA kernel")
    torch.manual_seed(0)
    fast = MultiHeadSelfAttention(dim=256, heads=4, dim_head=64, attn_impl="sdpa").to(DEV)
    ref = MultiHeadSelfAttention(dim=256, heads=4, dim_head=64, attn_impl="math").to(DEV)
    ref.load_state_dict(fast.state_dict())
    x = torch.randn(6, 197, 256, device=DEV)                                   # ViT-B-like token count
    outs, grads = [], []
    for m, ctx in ((fast, sdpa_kernel([backend])), (ref, sdpa_kernel([SDPBackend.MATH]))):
        xi = x.clone().requires_grad_()
        try:
            with ctx, torch.autocast(DEV.type, dtype=torch.bfloat16): y = m(xi)   # a forced kernel that cannot run raises
            y.float().square().sum().backward()
        except RuntimeError as e:
            # cuDNN attention is optional in PyTorch builds and not one the models rely on (PyTorch ranks it after
            # flash and efficient): report why it did not run instead of failing the GPU session on it
            if kernel == "cudnn" and m is fast:
                pytest.skip(f"cuDNN attention did not run here: {str(e).splitlines()[0][:160]}")
            raise
        outs.append(y.float()); grads.append(xi.grad.float())
    rel = lambda a, b: ((a - b).abs().max() / b.abs().max()).item()          # error relative to the largest value
    assert rel(*outs) < 2e-2 and rel(*grads) < 5e-2, (rel(*outs), rel(*grads))


@pytest.mark.parametrize("function", ["embedded_gaussian", "gaussian"])
def test_non_local_runs_a_fused_kernel(function):
    "The non-local block's Gaussian functions run on the memory-efficient kernel alone (forced, so a fallback to the\n    math kernel, which stores the N x N matrix, raises) and agree with the explicit softmax in bf16."
    from torch.nn.attention import sdpa_kernel, SDPBackend
    from vivit_edu.layers.non_local import NonLocalBlock
    # the CPU has no memory-efficient kernel: a dry run forces its flash kernel instead (which also takes 3-D input)
    fused = SDPBackend.EFFICIENT_ATTENTION if DEV.type == "cuda" else SDPBackend.FLASH_ATTENTION
    torch.manual_seed(0)
    # the Gaussian's theta, phi are the identity (64 wide): g as wide too, so that q, k and v share one head size
    nl = NonLocalBlock(in_channels=64, inter_channels=64 if function == "gaussian" else 32, pairwise=function).to(DEV).eval()
    torch.nn.init.normal_(nl.bn.weight)                                        # a new block is the identity: make it not
    x = torch.randn(2, 64, 4, 14, 14, device=DEV)                              # 784 positions
    outs = []
    for fast, backend in ((True, fused), (False, SDPBackend.MATH)):
        nl.fast = fast
        with torch.no_grad(), sdpa_kernel([backend]), torch.autocast(DEV.type, dtype=torch.bfloat16):
            outs.append(nl(x).float())
    rel = ((outs[0] - outs[1]).abs().max() / (outs[1] - x).abs().max()).item()
    assert rel < 3e-2, rel


def test_cuda_matches_cpu_fp32():
    cuda_only("comparing CUDA with the CPU")
    model = tiny_vivit().eval()
    x = torch.randn(4, 3, 8, 32, 32)
    with torch.inference_mode():
        y_cpu = model(x)
        y_gpu = model.to(DEV)(x.to(DEV)).cpu()
    assert (y_cpu - y_gpu).abs().max() < 1e-4


def test_checkpoint_saved_on_gpu_loads_on_cpu(tmp_path):
    from vivit_edu.train import save_weights, load_weights
    model = tiny_vivit().to(DEV)
    save_weights(model, tmp_path / "w.safetensors")
    cpu = load_weights(tiny_vivit(classes=3), tmp_path / "w.safetensors")
    for k, v in model.state_dict().items(): assert torch.equal(v.cpu(), cpu.state_dict()[k]), k


def test_compiled_training_step_matches_eager():
    "torch.compile gives the eager losses (same seed, same batches) within bf16 rounding, and really compiles."
    from torch._dynamo.utils import counters
    from vivit_edu.train import TrainConfig, fit
    hs = []
    for compile_ in (False, True):
        counters.clear()
        h = fit(tiny_vivit(), shifted_clips(64), None, TrainConfig(epochs=2, batch_size=16, lr=1e-3, device=str(DEV),
                amp="bf16", compile=compile_, progress=False, live_plot=False))
        hs.append(h["train_loss"])
    assert counters["stats"]["unique_graphs"] >= 1, dict(counters["stats"])   # dynamo captured the model
    assert hs[0] == pytest.approx(hs[1], rel=3e-2), hs


def test_train_command_on_gpu_with_amp(tmp_path):
    from vivit_edu.data.datasets import make_example_folder
    from vivit_edu.train import load_run
    folder = make_example_folder(tmp_path / "clips", videos_per_class=6)
    out = tmp_path / "run"
    p = subprocess.run([sys.executable, "-m", "vivit_edu", "train", str(folder), "--device", str(DEV.type), "--amp", "bf16",
                        "--epochs", "2", "--batch-size", "6", "--num-workers", "2", "--quiet", "--out-dir", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert f"device {DEV.type}" in p.stdout
    model, spec = load_run(out, "last")
    assert model(torch.randn(1, 3, spec.frames, *spec.image_size)).shape == (1, 3)


def test_torchrun_backend_on_gpu(tmp_path):
    "Under torchrun on a GPU the process group is NCCL (one process: one GPU is all this check needs)."
    backend = "nccl" if DEV.type == "cuda" else "gloo"
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=1", "-m",
                        "vivit_edu", "ddp-demo", "--device", DEV.type, "--quiet", "--epochs", "2",
                        "--out-dir", str(tmp_path / "ddp")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert f"world_size=1 backend={backend}" in p.stdout, p.stdout


@pytest.mark.parametrize("kind", ["vivit", "nl_resnet50"])
def test_predictor_bf16_channels_last_agrees(tmp_path, kind):
    """The real-time predictor's fast settings (bf16, channels-last) give the fp32 CPU path's probabilities and classes.
    Channels-last runs in the dry run too (the CPU has the formats): a ViViT holds a 4-D position embedding and the C2D
    ResNet 4-D conv weights, which must not be asked for the 5-D `channels_last_3d` format."""
    import numpy as np
    from vivit_edu.data.video import write_video
    from vivit_edu.inference import predict_video
    from vivit_edu.models.resnet_nl import nl_resnet50
    rng = np.random.default_rng(0)
    video = write_video(tmp_path / "v.avi", rng.integers(0, 255, (40, 48, 64, 3), dtype=np.uint8), fps=25)
    torch.manual_seed(0)
    model = tiny_vivit(classes=5) if kind == "vivit" else nl_resnet50(preset="tiny", num_classes=5)
    ref = predict_video(video, model, device="cpu", hop=4)
    fast = predict_video(video, model, device=str(DEV), hop=4, bf16=True, channels_last=True)
    assert len(ref.predictions) == len(fast.predictions) > 0
    diff = max((a.probs - b.probs.float().cpu()).abs().max().item() for a, b in zip(ref.predictions, fast.predictions))
    assert diff < 0.05, diff
    for a, b in zip(ref.predictions, fast.predictions):       # where fp32's top two are not a near tie, bf16 agrees
        top2 = a.probs.topk(2).values
        if top2[0] - top2[1] > 2 * diff: assert a.label == b.label, (a.topk, b.topk)
