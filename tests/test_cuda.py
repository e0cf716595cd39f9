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
    from vivit_edu.train import TrainConfig, fit
    if amp == "fp16": cuda_only("fp16 autocast with a GradScaler")
    model = tiny_vivit()
    h = fit(model, shifted_clips(), shifted_clips(48, seed=1),
            TrainConfig(epochs=4, batch_size=16, lr=2e-3, device=str(DEV), amp=amp, progress=False, live_plot=False))
    assert all(p.dtype == torch.float32 for p in model.parameters())          # autocast keeps fp32 master weights
    assert all(torch.isfinite(torch.tensor(h["train_loss"])))
    assert h["train_loss"][-1] < 0.8 * h["train_loss"][0] and h["val_acc"][-1] > 0.6, (h["train_loss"], h["val_acc"])


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
        with ctx, torch.autocast(DEV.type, dtype=torch.bfloat16):
            try: y = m(xi)                                                     # a forced kernel that cannot run raises
            except RuntimeError as e:
                if kernel == "cudnn" and "No available kernel" in str(e):     # cuDNN attention is optional in PyTorch builds
                    pytest.skip(f"cuDNN attention is not available in this PyTorch build: {str(e).splitlines()[0][:120]}")
                raise
        y.float().square().sum().backward()
        outs.append(y.float()); grads.append(xi.grad.float())
    rel = lambda a, b: ((a - b).abs().max() / b.abs().max()).item()          # error relative to the largest value
    assert rel(*outs) < 2e-2 and rel(*grads) < 5e-2, (rel(*outs), rel(*grads))


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
    "torch.compile gives the eager losses (same seed, same batches) within bf16 rounding."
    from vivit_edu.train import TrainConfig, fit
    hs = []
    for compile_ in (False, True):
        h = fit(tiny_vivit(), shifted_clips(64), None, TrainConfig(epochs=2, batch_size=16, lr=1e-3, device=str(DEV),
                amp="bf16", compile=compile_, progress=False, live_plot=False))
        hs.append(h["train_loss"])
    assert hs[0] == pytest.approx(hs[1], rel=3e-2), hs


def test_train_command_on_gpu_with_amp(tmp_path):
    from vivit_edu.cli import make_example_folder, load_run
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
                        "vivit_edu.distributed", "--demo", "--device", DEV.type, "--quiet", "--epochs", "2",
                        "--out-dir", str(tmp_path / "ddp")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert f"world_size=1 backend={backend}" in p.stdout, p.stdout


def test_predictor_bf16_channels_last_agrees(tmp_path):
    "The real-time predictor's fast settings (bf16, channels-last) give the fp32 CPU path's probabilities and classes."
    import numpy as np
    from vivit_edu.data.video import write_video
    from vivit_edu.inference import predict_video
    rng = np.random.default_rng(0)
    video = write_video(tmp_path / "v.avi", rng.integers(0, 255, (40, 48, 64, 3), dtype=np.uint8), fps=25)
    model = tiny_vivit(classes=5)
    ref = predict_video(video, model, device="cpu", hop=4)
    fast = predict_video(video, model, device=str(DEV), hop=4, bf16=True, channels_last=DEV.type == "cuda")
    assert len(ref.predictions) == len(fast.predictions) > 0
    diff = max((a.probs - b.probs.float().cpu()).abs().max().item() for a, b in zip(ref.predictions, fast.predictions))
    assert diff < 0.05, diff
    for a, b in zip(ref.predictions, fast.predictions):       # where fp32's top two are not a near tie, bf16 agrees
        top2 = a.probs.topk(2).values
        if top2[0] - top2[1] > 2 * diff: assert a.label == b.label, (a.topk, b.topk)
