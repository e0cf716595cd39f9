"""One training step (forward + backward + AdamW step) of a mid-size factorised-encoder ViViT on CPU:
ours (vivit_edu, SDPA attention) vs vit-pytorch 1.2.9's `vivit.ViT` with the same configuration and weights.

    python bench/vivit_step.py [--steps 15] [--warmup 3] [--batch 8] [--threads N]

Prints the median and minimum step time of each and their ratios. Steps alternate between the two models so that
both see the same machine load; on a busy machine trust the minima and the paired ratio, or use --threads 1.
"""
import argparse, platform, statistics, time

import torch
from torch import nn

from vivit_edu.core import count_parameters
from vivit_edu.models.vivit import from_vit_pytorch

CFG = dict(image_size=64, image_patch_size=8, frames=8, frame_patch_size=2, dim=256, spatial_depth=4,
           temporal_depth=4, heads=8, dim_head=32, mlp_dim=512)


def make_step(model, x, y):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    def step():
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    return step


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    from vit_pytorch.vivit import ViT

    torch.manual_seed(0)
    ref = ViT(num_classes=10, **CFG).train()
    ours = from_vit_pytorch(ref, image_size=CFG["image_size"], image_patch_size=CFG["image_patch_size"],
                            frames=CFG["frames"], frame_patch_size=CFG["frame_patch_size"]).train()
    x = torch.randn(a.batch, 3, CFG["frames"], CFG["image_size"], CFG["image_size"])
    y = torch.randint(0, 10, (a.batch,))
    steps = {"vivit_edu (sdpa)": make_step(ours, x, y), "vit-pytorch 1.2.9": make_step(ref, x, y)}
    times = {k: [] for k in steps}
    for i in range(a.warmup + a.steps):
        for name, step in steps.items():
            t0 = time.perf_counter(); step(); dt = time.perf_counter() - t0
            if i >= a.warmup: times[name].append(dt)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"ViViT factorised encoder, one training step on CPU ({platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__})")
    print(f"config: {CFG}, batch {a.batch}, {count_parameters(ours):,} parameters; median of {a.steps} steps "
          f"after {a.warmup} warm-up")
    print("| implementation | median step (ms) | min (ms) |\n|---|---|---|")
    for k in steps: print(f"| {k} | {1000 * med[k]:.1f} | {1000 * min(times[k]):.1f} |")
    ours_t, ref_t = times["vivit_edu (sdpa)"], times["vit-pytorch 1.2.9"]
    paired = statistics.median(r / o for o, r in zip(ours_t, ref_t))   # steps alternate: robust to load drift
    print(f"speed-up of vivit_edu over vit-pytorch: {med['vit-pytorch 1.2.9'] / med['vivit_edu (sdpa)']:.2f}x (medians), "
          f"{min(ref_t) / min(ours_t):.2f}x (minima), {paired:.2f}x (median of paired steps)")


if __name__ == "__main__":
    main()
