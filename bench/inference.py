"""Real-time inference speed: video frames per second processed (decode + preprocess + model) by the sliding-window
`Predictor` for the tiny and small ViViT presets at hops 1, 4 and 8, and whether that keeps up with 25 fps video.

    python bench/inference.py [--frames 150] [--width 320 --height 240] [--threads 1] [--repeats 3] [--device cpu]

The video is generated (moving noise, MPEG-4 AVI at 25 fps, like UCF101). Weights are random: speed does not depend on
them. Each setting runs once to warm up, then `--repeats` times; the best run is reported (the machine may be shared).
"""
import argparse, platform, tempfile
from pathlib import Path

import numpy as np
import torch

from vivit_edu.data.video import write_video
from vivit_edu.inference import predict_video
from vivit_edu.models.vivit import vivit


def make_video(path, T, H, W, fps=25):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (H, W, 3)).astype(np.int16)
    frames = np.stack([np.clip(np.roll(base, 3 * t, axis=1) + rng.integers(-8, 8, (H, W, 3)), 0, 255) for t in range(T)])
    return write_video(path, frames.astype(np.uint8), fps=fps)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=150); ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=240); ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3); ap.add_argument("--device", default="cpu")
    ap.add_argument("--presets", default="tiny,small"); ap.add_argument("--hops", default="1,4,8")
    ap.add_argument("--stride", type=int, default=1); ap.add_argument("--fps", type=float, default=25)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    path = make_video(Path(tempfile.mkdtemp()) / "bench.avi", a.frames, a.height, a.width, a.fps)
    print(f"Sliding-window inference on {a.device} ({platform.processor() or platform.machine()}, {a.threads} torch "
          f"thread(s), torch {torch.__version__}); video {a.width}x{a.height}, {a.frames} frames at {a.fps:g} fps; "
          f"stride {a.stride}; best of {a.repeats}")
    print("| preset | T | input | hop | frames/s | ms/model call | decode s | preprocess s | model s | keeps up with "
          f"{a.fps:g} fps |\n|---|---|---|---|---|---|---|---|---|---|")
    for preset in a.presets.split(","):
        torch.manual_seed(0)
        model = vivit(preset=preset, num_classes=101)
        for hop in map(int, a.hops.split(",")):
            if hop % a.stride: continue
            kw = dict(hop=hop, stride=a.stride, device=a.device)
            predict_video(path, model, max_frames=40, **kw)                  # warm-up
            best = max((predict_video(path, model, **kw).stats for _ in range(a.repeats)), key=lambda s: s.fps)
            cfg = model.cfg
            print(f"| {preset} | {cfg.frames} | {cfg.image_size[0]}x{cfg.image_size[1]} | {hop} | {best.fps:.0f} | "
                  f"{best.ms_per_call:.1f} | {best.decode_s:.3f} | {best.preprocess_s:.3f} | {best.model_s:.3f} | "
                  f"{'yes' if best.keeps_up else 'NO'} ({best.fps / a.fps:.1f}x) |", flush=True)


if __name__ == "__main__":
    main()
