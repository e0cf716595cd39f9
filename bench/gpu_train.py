"""Training throughput on one GPU for the paper's presets and ViViT-B Model 1: clips/s, model FLOPs utilisation (MFU)
against the card's measured bf16 matmul rate, peak memory; fp32 vs bf16 autocast, SDPA math vs fused (flash/efficient)
kernels, torch.compile on/off, channels-last for the ResNet. Plus the data pipeline's clips/s with N DataLoader workers
(decode + transform of embedded-dataset videos), so the report says whether decoding or the model bounds an epoch, and
the projected epoch time for the paper's 6,060 training clips.

    python bench/gpu_train.py [--out bench/results/h100.md] [--models vivit_paper,nl_paper,vivit_b_m1] [--full]
    python bench/gpu_train.py --quick        # CPU (or no CUDA): small shapes, a couple of steps, same table

FLOPs per clip are counted once per model with `torch.utils.flop_counter.FlopCounterMode` on the meta device
(forward + backward, batch 1, attention in its from-scratch form so every matmul is counted); MFU = FLOPs/clip x
clips/s / measured matmul rate. `--out X.md` also writes X.json (and `--out X.json` also writes X.md), rewritten after
every row, so a run stopped by a time limit keeps what it measured. Order of work: every eager row, then the data
pipeline, then the torch.compile rows (slowest to build, so the first to give way to `--budget-s`).
"""
import argparse, contextlib, gc, json, math, os, platform, statistics, tempfile, time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from vivit_edu.core import to_channels_last
from vivit_edu.models.vivit import vivit
from vivit_edu.models.resnet_nl import nl_resnet50

PAPER_TRAIN_CLIPS = 6060   # the paper's training clips per epoch (UCF101 at its preset, 4:1 split)

# name -> (builder(**overrides), input (C, T, H, W) on CUDA, input on CPU --quick, builder overrides on CPU, batch)
MODELS = {
    "vivit_paper": dict(label="ViViT paper preset (Model 2)", build=lambda **o: vivit(preset="paper", **o),
                        shape=(3, 150, 240, 320), batch=8,
                        small=dict(frames=20, image_size=(80, 80), patch_size=(20, 20), tubelet_depth=10, dim=128,
                                   spatial_depth=2, temporal_depth=1, heads=4, dim_head=32, mlp_dim=256),
                        small_shape=(3, 20, 80, 80), small_batch=2, resnet=False),
    "nl_paper": dict(label="Non-local ResNet-50 paper preset (C2D, 1 block)", build=lambda **o: nl_resnet50(preset="paper", **o),
                     shape=(3, 150, 240, 320), batch=1,
                     small=dict(frames=2, image_size=(32, 32)), small_shape=(3, 2, 32, 32), small_batch=2, resnet=True),
    "vivit_b_m1": dict(label="ViViT-B/16x2 Model 1 (spatio-temporal)",
                       build=lambda **o: vivit(preset="base", variant="spatio_temporal", **o),
                       shape=(3, 32, 224, 224), batch=4,
                       small=dict(frames=8, image_size=(64, 64), dim=96, depth=2, heads=4, dim_head=24, mlp_dim=192),
                       small_shape=(3, 8, 64, 64), small_batch=2, resnet=False),
}

# Each config: precision, SDPA kernel choice, compile, channels-last (ResNet only).
def configs(resnet: bool, full: bool, cuda: bool) -> list[dict]:
    precs = ["fp32", "bf16"]
    sdpas = ["math", "fused", "auto"] if cuda else ["default"]
    comps = [False, True]
    cls = [False, True] if resnet else [False]
    allc = [dict(prec=p, sdpa=s, compile=c, channels_last=l) for p in precs for s in sdpas for c in comps for l in cls]
    if full: return allc
    auto = "auto" if cuda else "default"
    pick = [dict(prec="fp32", sdpa=auto, compile=False, channels_last=False)]
    if cuda: pick += [dict(prec="bf16", sdpa="math", compile=False, channels_last=False),
                      dict(prec="bf16", sdpa="fused", compile=False, channels_last=False)]
    pick.append(dict(prec="bf16", sdpa=auto, compile=False, channels_last=False))
    if resnet: pick.append(dict(prec="bf16", sdpa=auto, compile=False, channels_last=True))
    pick.append(dict(prec="bf16", sdpa=auto, compile=True, channels_last=resnet))
    seen, out = set(), []
    for c in pick:
        k = tuple(c.values())
        if k not in seen: seen.add(k); out.append(c)
    return out


def sync(dev):
    if dev.type == "cuda": torch.cuda.synchronize(dev)


def matmul_rate(dev, dtype, n: int, reps: int) -> float:
    "Measured FLOP/s of an n x n x n matmul in `dtype` (best of `reps`)."
    a, b = torch.randn(n, n, device=dev, dtype=dtype), torch.randn(n, n, device=dev, dtype=dtype)
    for _ in range(3): a @ b
    sync(dev); best = float("inf")
    for _ in range(reps):
        t = time.perf_counter(); a @ b; a @ b; a @ b; sync(dev); best = min(best, (time.perf_counter() - t) / 3)
    return 2 * n ** 3 / best


def count_flops(spec: dict, small: bool) -> tuple[int, int]:
    "(forward, forward + backward) FLOPs of one clip, counted on the meta device with from-scratch attention."
    with torch.device("meta"):
        model = spec["build"](**(spec["small"] if small else {}))
        x = torch.randn(1, *(spec["small_shape"] if small else spec["shape"]))
    for m in model.modules():
        if hasattr(m, "attn_impl"): m.attn_impl = "math"
        if hasattr(m, "fast") and isinstance(m.fast, bool): m.fast = False     # non-local: explicit softmax
    with FlopCounterMode(display=False) as fc:
        y = model(x); fwd = fc.get_total_flops(); y.float().sum().backward()
    return fwd, fc.get_total_flops()


def sdpa_context(choice: str):
    "math: the reference kernel only; fused: flash / memory-efficient / cuDNN only (fails if none fits); auto: PyTorch's pick."
    from torch.nn.attention import sdpa_kernel, SDPBackend
    if choice == "math": return sdpa_kernel([SDPBackend.MATH])
    if choice == "fused": return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION])
    return contextlib.nullcontext()


def train_speed(spec: dict, cfg: dict, dev, batch: int, small: bool, steps: int, warmup: int) -> dict:
    "clips/s, step ms and peak memory of forward + backward + AdamW with one config."
    gc.collect()                              # what earlier rows left must not count in this row's peak memory
    torch.manual_seed(0)
    model = spec["build"](**(spec["small"] if small else {})).to(dev)
    shape = spec["small_shape"] if small else spec["shape"]
    fmt = torch.contiguous_format
    if cfg["channels_last"]:   # conv weights NHWC / NDHWC; a channels-last (B, C, T, H, W) clip folds to NHWC frames for free
        fmt = torch.channels_last_3d
        to_channels_last(model)
    model = model.train()
    x = torch.randn(batch, *shape, device=dev).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,), device=dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=dev.type == "cuda")
    fwd = torch.compile(model) if cfg["compile"] else model
    dtype = torch.bfloat16 if cfg["prec"] == "bf16" else None
    def step():
        with torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None), sdpa_context(cfg["sdpa"]):
            loss = F.cross_entropy(fwd(x).float(), y)
            loss.backward()
        opt.step(); opt.zero_grad(set_to_none=True)
    if dev.type == "cuda": torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats(dev)
    t0 = time.perf_counter()
    for _ in range(warmup): step()
    sync(dev); first = time.perf_counter() - t0
    times = []
    for _ in range(steps):
        t = time.perf_counter(); step(); sync(dev); times.append(time.perf_counter() - t)
    peak = torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else None
    med = statistics.median(times)
    del model, opt, fwd, x
    if cfg["compile"]: torch._dynamo.reset()  # drop the compiled graphs (and what they hold) before the next row
    return dict(step_ms=1000 * med, clips_s=batch / med, peak_gib=None if peak is None else peak / 2 ** 30,
                warmup_s=first)


def paper_like_videos(folder: Path, n: int, frames: int, scale: int) -> list[Path]:
    "`n` MPEG-4 AVIs of `frames` frames: embedded-dataset clips (80x60) stretched in time and upscaled `scale` times."
    from vivit_edu.data.synthetic import EmbeddedConfig, embedded_clip
    from vivit_edu.data.video import write_video
    import numpy as np
    cfg, paths = EmbeddedConfig(), []
    for i in range(n):
        action = cfg.classes[i % len(cfg.classes)]
        clip = embedded_clip(cfg, action, i // len(cfg.classes) % cfg.groups + 1, 1)         # (T, 60, 80, 3)
        big = clip[np.arange(frames) * len(clip) // frames].repeat(scale, 1).repeat(scale, 2)  # (frames, 60s, 80s, 3)
        paths.append(write_video(folder / f"v_{action}_{i:03d}.avi", big, fps=25))
    return paths


class FileClips(torch.utils.data.Dataset):
    "Decode `frames` uniformly spaced frames of each file and transform them, as the training datasets do."
    def __init__(self, paths, frames, uint8: bool = False):
        from vivit_edu.data.datasets import UniformSampler, video_transform
        self.paths, self.sampler, self.tf = paths, UniformSampler(frames), video_transform(train=True)
        if uint8: self.tf = video_transform(train=True, uint8=True)   # made float on the GPU (`--uint8-clips`)
    def __len__(self): return len(self.paths)
    def __getitem__(self, i):
        from vivit_edu.data.video import read_video
        return self.tf(read_video(self.paths[i], self.sampler(self.sampler.num_frames))), 0   # files hold exactly T frames


def data_speed(ds, workers: int, batch: int) -> float:
    "Clips/s that a DataLoader with `workers` workers delivers (decode + transform), after its first batch."
    from torch.utils.data import DataLoader
    dl = DataLoader(ds, batch_size=batch, num_workers=workers, shuffle=False, prefetch_factor=4 if workers else None)
    it, got = iter(dl), 0
    next(it)                                  # the first batch pays for starting the workers: not counted
    t = time.perf_counter()
    for xb, _ in it: got += len(xb)
    return got / (time.perf_counter() - t)


def fmt(v, spec="{:.1f}"):
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else spec.format(v)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", "--cpu-small", dest="quick", action="store_true",
                    help="small shapes and few steps (automatic without CUDA)")
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {list(MODELS)}")
    ap.add_argument("--full", action="store_true", help="every combination instead of the usual ladder of configs")
    ap.add_argument("--steps", type=int, default=None); ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--batch", type=int, default=None, help="clips per step (default: per model)")
    ap.add_argument("--workers", default=None, help="DataLoader workers to try, e.g. 0,4,8 (default: 0,2,4,8,16 up to the CPUs)")
    ap.add_argument("--data-clips", type=int, default=None, help="clips per data-pipeline measurement")
    ap.add_argument("--no-data", action="store_true", help="skip the data-pipeline measurement")
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile configs")
    ap.add_argument("--compile-on-cpu", action="store_true", help="--quick skips torch.compile configs (slow to build on CPU) unless this is given")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default on CPU: 1, steady on a shared machine)")
    ap.add_argument("--tf32", action="store_true", help="allow TF32 in fp32 matmuls/convolutions (off by default)")
    ap.add_argument("--out", default=None, help="also write the tables to this .md (and a .json next to it)")
    ap.add_argument("--budget-s", type=float, default=None,
                    help="stop starting new model configs this many seconds after the start (eager rows run first, "
                         "then the data pipeline, then the torch.compile rows)")
    a = ap.parse_args(argv)
    t_start = time.perf_counter()                       # --budget-s counts from here
    cuda = torch.cuda.is_available()
    small = a.quick or not cuda
    dev = torch.device("cuda" if cuda and not a.quick else "cpu")
    if dev.type == "cpu" or a.threads: torch.set_num_threads(a.threads or 1)
    steps, warmup = a.steps or (2 if small else 10), a.warmup or (1 if small else 3)
    ncpu = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    record = dict(device=None, torch=torch.__version__, small=small, rows=[], data=[], flops={})
    # The report's sections, in the order the .md lists them; each is filled (and the files rewritten) as results come,
    # so that a run stopped by a time limit still leaves every row measured so far.
    sections = {k: [] for k in ("head", "models", "flops", "data", "bounds", "notes")}
    def out(s="", section="head", echo=True):
        if echo: print(s, flush=True)
        sections[section].append(s)
    def save():
        if not a.out: return
        p = Path(a.out); p.parent.mkdir(parents=True, exist_ok=True)
        md, js = (p.with_suffix(".md"), p) if p.suffix == ".json" else (p, p.with_suffix(".json"))
        text = "\n".join(l for k in sections for l in sections[k]) + "\n"
        for f, body in ((md, text), (js, json.dumps(record, indent=1, default=str) + "\n")):
            tmp = f.with_name(f".{f.name}.tmp"); tmp.write_text(body); os.replace(tmp, f)
        return md, js

    # 1. the reference rate
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = a.tf32
        name = torch.cuda.get_device_name(dev)
        peak, peak_what = matmul_rate(dev, torch.bfloat16, 8192, 10), "bf16 8192^3 matmul"
    else:
        name = f"CPU {platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"
        peak, peak_what = matmul_rate(dev, torch.float32, 1024, 5), "fp32 1024^3 matmul (CPU: no bf16 reference)"
    record.update(device=name, peak_flops=peak, peak_what=peak_what)
    out(f"# Training throughput on {name}" + (" (--quick: small shapes, not the paper's)" if small else ""))
    out(f"torch {torch.__version__}; reference rate: {peak / 1e12:.2f} TFLOP/s measured ({peak_what}); "
        f"median of {steps} steps after {warmup} warm-up" + (f"; TF32 {'on' if a.tf32 else 'off'} for fp32" if dev.type == "cuda" else ""))
    out()

    # 2. models: every eager row first, then the data pipeline, then the torch.compile rows (the slow part, and the
    # first to give way to --budget-s); the table in the .md keeps one order whatever ran when.
    table_head = ["| model | batch | precision | SDPA | compile | channels-last | step ms | clips/s | GFLOP/clip (fwd+bwd) | MFU | "
                  f"peak GiB | epoch of {PAPER_TRAIN_CLIPS} clips (model only) |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for l in table_head: out(l, "models")
    best_model, best_data, best_data8, jobs = {}, 0.0, 0.0, []
    out("", "flops", echo=False)
    for key in a.models.split(","):
        spec = MODELS[key]
        f_fwd, f_all = count_flops(spec, small)
        record["flops"][key] = dict(forward=f_fwd, forward_backward=f_all)
        out(f"FLOPs per clip, {key}: forward {f_fwd / 1e9:.1f} G, forward+backward {f_all / 1e9:.1f} G"
            + (" (the paper preset: 127.9 / 383.8 G)" if key == "vivit_paper" and not small else ""), "flops", echo=False)
        jobs += [(key, cfg) for cfg in configs(spec["resnet"], a.full, dev.type == "cuda")
                 if not (cfg["compile"] and (a.no_compile or (dev.type == "cpu" and not a.compile_on_cpu)))]
    out("", "flops", echo=False)

    def bounds():
        "The table of what bounds an epoch, from the best rows so far (rewritten after every row once data is measured)."
        if a.no_data or not record["data"]: return
        b = sections["bounds"]; b.clear(); record["bounds"] = []
        b += ["Which bounds an epoch (best config of each model vs the best data loader):", "",
              "| model | model clips/s | data clips/s | bound | projected epoch | uint8 data clips/s | epoch with --uint8-clips |",
              "|---|---|---|---|---|---|---|"]
        for key, mc in best_model.items():
            e = PAPER_TRAIN_CLIPS / min(mc, best_data) if best_data else PAPER_TRAIN_CLIPS / mc
            bound = "data (decoding)" if best_data and best_data < mc else "model"
            e8 = PAPER_TRAIN_CLIPS / min(mc, best_data8) if best_data8 else float("nan")
            record["bounds"].append(dict(model=key, model_clips_s=mc, data_clips_s=best_data, bound=bound, epoch_s=e,
                                         uint8_data_clips_s=best_data8, uint8_epoch_s=e8))
            b.append(f"| {MODELS[key]['label']} | {mc:.2f} | {best_data:.1f} | {bound} | {e:.0f} s | {best_data8:.1f} | {e8:.0f} s |")
        b.append("")

    def run_rows(todo):
        for key, cfg in todo:
            spec, f_all = MODELS[key], record["flops"][key]["forward_backward"]
            batch = a.batch or (spec["small_batch"] if small else spec["batch"])
            row = dict(model=key, batch=batch, **cfg, gflop_clip=f_all / 1e9)
            if a.budget_s is not None and time.perf_counter() - t_start > a.budget_s:
                row["error"] = "skipped (--budget-s)"
                res = ["skipped (time budget)", "-", fmt(row["gflop_clip"]), "-", "-", "-"]
            else:
                try:
                    row.update(train_speed(spec, cfg, dev, batch, small, steps, warmup))
                    row["mfu"] = f_all * row["clips_s"] / peak
                    row["epoch_s"] = PAPER_TRAIN_CLIPS / row["clips_s"]
                    best_model[key] = max(best_model.get(key, 0), row["clips_s"])
                    res = [fmt(row["step_ms"]), fmt(row["clips_s"], "{:.2f}"), fmt(row["gflop_clip"]),
                           fmt(100 * row["mfu"], "{:.1f}%"), fmt(row["peak_gib"], "{:.2f}"), fmt(row["epoch_s"], "{:.0f} s")]
                except Exception as e:            # OOM or an unsupported kernel: record it, go on
                    msg = "OOM" if "out of memory" in str(e).lower() else f"{type(e).__name__}: {str(e).splitlines()[0][:80]}"
                    row["error"] = msg
                    res = [msg, "-", fmt(row["gflop_clip"]), "-", "-", "-"]
                    del e; gc.collect()
                    if dev.type == "cuda": torch.cuda.empty_cache()
            record["rows"].append(row)
            out(f"| {spec['label'] + (' [shrunk]' if small else '')} | {batch} | {cfg['prec']} | {cfg['sdpa']} | {'on' if cfg['compile'] else 'off'} | "
                f"{('on' if cfg['channels_last'] else 'off') if spec['resnet'] else '-'} | " + " | ".join(res) + " |", "models")
            bounds(); save()

    run_rows([j for j in jobs if not j[1]["compile"]])
    print("\n".join(sections["flops"]), flush=True); save()

    # 3. the data pipeline
    if not a.no_data:
        frames, scale, n = (16, 1, a.data_clips or 24) if small else (150, 4, a.data_clips or 64)
        if n < 8: ap.error("--data-clips must be at least 8 (the first batch of 4 is not timed)")
        t = time.perf_counter()
        ds = FileClips(paper_like_videos(Path(tempfile.mkdtemp()), n, frames, scale), frames)
        made = time.perf_counter() - t
        ws = [int(w) for w in a.workers.split(",")] if a.workers else [w for w in (0, 2, 4, 8, 16) if w <= ncpu]
        if small and not a.workers: ws = [0, 2]
        H, W = 60 * scale, 80 * scale
        out(f"Data pipeline: {n} MPEG-4 AVIs made from embedded-dataset clips ({frames} frames of {W}x{H}, 25 fps; "
            f"written in {made:.0f} s); each clip: decode its {frames} frames, to float, normalise; "
            f"batch 4; {ncpu} CPUs; first batch (worker start-up) not counted", "data")
        out("", "data")
        out("| DataLoader workers | clips/s | frames/s | epoch of 6,060 clips (data only) | uint8 clips/s (--uint8-clips) |"
            "\n|---|---|---|---|---|", "data")
        ds8 = FileClips(ds.paths, frames, uint8=True)   # the ceiling if the float conversion and normalising ran on the GPU
        for w in ws:
            try:
                cs = data_speed(ds, w, 4)
                best_data = max(best_data, cs)
                c8 = data_speed(ds8, w, 4)
                best_data8 = max(best_data8, c8)
                record["data"].append(dict(workers=w, clips_s=cs, frames=frames, uint8_clips_s=c8))
                out(f"| {w} | {cs:.1f} | {cs * frames:.0f} | {PAPER_TRAIN_CLIPS / cs:.0f} s | {c8:.1f} |", "data")
            except Exception as e:
                out(f"| {w} | {type(e).__name__}: {str(e).splitlines()[0][:80]} | - | - | - |", "data")
            save()
        out("(uint8: `video_transform(uint8=True)`, as `vivit-edu train/experiment --uint8-clips` use it: the same decoding, "
            "clips reordered to (C, T, H, W) but not made float; the trainer converts and normalises them on the GPU)", "data")
        out("", "data")
        bounds(); save()

    # 4. the torch.compile rows, last
    compiled = [j for j in jobs if j[1]["compile"]]
    if compiled:
        print("\n(torch.compile rows, run last; the .md lists them in the table above)\n" + "\n".join(table_head), flush=True)
        run_rows(compiled)
        print(flush=True)
    if sections["bounds"]: print("\n".join(sections["bounds"]), flush=True)
    if dev.type == "cpu" and not a.compile_on_cpu: out("(torch.compile rows skipped on CPU; --compile-on-cpu adds them.)", "notes")
    if small:
        out("(--quick: shapes are shrunk so the script runs on a CPU; the numbers test the script, not the paper's model.)", "notes")
    if a.out:
        md, js = save()
        print(f"wrote {md} and {js}")
    return record


if __name__ == "__main__":
    main()
