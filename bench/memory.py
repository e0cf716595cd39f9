"""Benchmark: peak memory (RSS) of decoding and indexing, the RAM budget the docs state (issue 18).

Usage: python bench/memory.py [--minutes 10] [--fps 30] [--videos 1000] [--work DIR] [--out FILE.md]

It writes (once, into --work) an RLDD-like recording, 640x480 H.264 of `--minutes` minutes (a moving scene, about
1 MB a minute), laid out as UTA-RLDD (`Fold1_part1/01/10.mp4`), and a folder of `--videos` small clips (160x120,
40 frames, MPEG-4 part 2 AVI) in 10 class folders. Then each measurement runs in a fresh process, which reports its
resident memory after importing the package (the baseline) and its peak during the work (Linux's VmHWM, reset after
the imports); the table gives both and their difference, with the wall time. Nothing is asserted: tests/test_bench.py runs a small version, and
the numbers are recorded in bench/results/."""
import argparse, json, os, platform, subprocess, sys, time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _status(key: str) -> float:
    "A memory line of /proc/self/status (VmRSS: now, VmHWM: the peak), MiB."
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"): return int(line.split()[1]) / 1024
    raise KeyError(key)


def reset_peak() -> float:
    "Start measuring the peak from now (Linux: writing 5 to clear_refs resets VmHWM); return the resident memory now, MiB."
    with open("/proc/self/clear_refs", "w") as f: f.write("5")
    return _status("VmRSS")


def peak_mb() -> float:
    "The peak resident memory since `reset_peak`, MiB."
    return _status("VmHWM")


def scene(T: int, H: int = 480, W: int = 640, fps: float = 30):
    "Frames of a slow, textured scene (a face-sized ellipse drifting over a gradient), made one at a time."
    yy, xx = np.mgrid[:H, :W]
    base = np.stack([(xx * 255 // W), (yy * 255 // H), np.full((H, W), 96)], -1).astype(np.uint8)
    for t in range(T):
        f = base.copy()
        cy, cx = H / 2 + 40 * np.sin(t / (3 * fps)), W / 2 + 80 * np.sin(t / (7 * fps))
        f[((yy - cy) / 120) ** 2 + ((xx - cx) / 90) ** 2 < 1] = (200, 160, 140)
        f[:, :, 2] = (f[:, :, 2].astype(int) + (t // 5) % 32).astype(np.uint8)      # a little change every few frames
        yield f


def make_data(work: Path, minutes: float, fps: int, videos: int) -> dict:
    "The long recording and the folder of small clips, written once (kept in `work`)."
    from vivit_edu.data.video import write_video
    work.mkdir(parents=True, exist_ok=True)
    long = work / "rldd" / "Fold1_part1" / "01" / "10.mp4"
    frames = int(minutes * 60 * fps)
    stamp = work / f"long-{minutes}-{fps}.done"
    if not stamp.exists():
        long.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        write_video(long, scene(frames, fps=fps), fps=fps, crf=30, gop=2 * fps, preset="veryfast")
        print(f"wrote {long} ({frames} frames, {long.stat().st_size / 2**20:.1f} MiB) in {time.perf_counter() - t0:.0f} s",
              file=sys.stderr)
        stamp.touch()
    folder = work / f"clips{videos}"
    if not (folder / "done").exists():
        t0 = time.perf_counter()
        rng = np.random.default_rng(0)
        for i in range(videos):
            c = folder / f"class{i % 10}"; c.mkdir(parents=True, exist_ok=True)
            clip = np.repeat(rng.integers(0, 256, (40, 30, 40, 3), dtype=np.uint8), 4, 1).repeat(4, 2)   # (40, 120, 160, 3)
            write_video(c / f"clip{i:04d}.avi", clip)
        (folder / "done").touch()
        print(f"wrote {videos} clips into {folder} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return dict(long=str(long), rldd=str(work / "rldd"), folder=str(folder), frames=frames)


# one measurement per process: import, note the baseline, work, report
def measure(name: str, data: dict, work: Path) -> dict:
    import torch; torch.set_num_threads(1)
    import vivit_edu                                                  # everything a training process imports
    from vivit_edu.data.video import read_video, iter_frames, probe_video
    from vivit_edu.data.datasets import RLDD, VideoFolder, index_videos, ConsecutiveSampler, UniformSampler
    base, t0, note = reset_peak(), time.perf_counter(), ""
    n = data["frames"]
    if name == "probe the long video":
        info = probe_video(data["long"]); note = f"{info.num_frames} frames counted"
    elif name == "16-frame windows at 5 places":
        s = ConsecutiveSampler(16)
        for at in (0.05, 0.25, 0.5, 0.75, 0.95):
            x = read_video(data["long"], int(at * (n - 16)) + np.arange(16)); assert x.shape == (16, 480, 640, 3)
        note = "read_video(path, 16 indices), decoded from the start each time"
    elif name == "16 frames spread over the video":
        x = read_video(data["long"], UniformSampler(16)(n)); assert x.shape == (16, 480, 640, 3)
        note = "UniformSampler(16): one full decode, 16 frames kept"
    elif name == "RLDD dataset, every clip":
        ds = RLDD(data["rldd"], split="all", num_frames=16, stride=n // 4, index_cache=str(work / "rldd_index.json"), workers=1)
        for i in range(len(ds)): x, y = ds[i]; assert tuple(x.shape) == (3, 16, 240, 320)
        note = f"{len(ds)} clips (16 frames, resized to 240x320), index cached"
    elif name == "every frame, streamed":
        k = sum(1 for _ in iter_frames(data["long"])); note = f"iter_frames: {k} frames, one at a time (the predict path)"
    elif name == "index 1,000 small videos":
        paths = sorted(str(p) for p in Path(data["folder"]).rglob("*.avi"))
        res = index_videos(paths, workers=4); note = f"{sum(not isinstance(v, str) for v in res.values())} of {len(paths)} probed, no cache"
    elif name == "VideoFolder on 1,000 videos":
        cache = work / "folder_index.json"
        if cache.exists(): cache.unlink()
        ds = VideoFolder(data["folder"], num_frames=8, index_cache=str(cache))
        VideoFolder(data["folder"], num_frames=8, index_cache=str(cache))   # again, from the cache
        note = f"{len(ds)} clips; index cache {cache.stat().st_size / 1024:.0f} KiB"
    else: raise SystemExit(f"unknown measurement {name!r}")
    return dict(name=name, baseline_mb=round(base, 1), peak_mb=round(peak_mb(), 1), seconds=round(time.perf_counter() - t0, 1), note=note)


MEASUREMENTS = ["probe the long video", "16-frame windows at 5 places", "16 frames spread over the video", "RLDD dataset, every clip",
                "every frame, streamed", "index 1,000 small videos", "VideoFolder on 1,000 videos"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10); ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--videos", type=int, default=1000)
    ap.add_argument("--work", default=str(Path.home() / ".cache" / "vivit_edu" / "bench_memory"))
    ap.add_argument("--only", nargs="*", help="run only these measurements (default: all)")
    ap.add_argument("--out", help="also write the table (markdown) here")
    ap.add_argument("--measure", help=argparse.SUPPRESS); ap.add_argument("--data", help=argparse.SUPPRESS)
    a = ap.parse_args()
    work = Path(a.work)
    if a.measure:                                                    # a child process: one measurement, one JSON line
        print(json.dumps(measure(a.measure, json.loads(a.data), work))); return
    data = make_data(work, a.minutes, a.fps, a.videos)
    size = Path(data["long"]).stat().st_size / 2**20
    rows = []
    for name in a.only or MEASUREMENTS:
        r = subprocess.run([sys.executable, __file__, "--measure", name, "--data", json.dumps(data), "--work", str(work)],
                           capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        if r.returncode: raise SystemExit(f"{name}: failed\n{r.stderr[-3000:]}")
        rows.append(json.loads(r.stdout.strip().splitlines()[-1])); print(rows[-1], file=sys.stderr, flush=True)
    head = (f"long video: {a.minutes:g} min of 640x480 H.264 at {a.fps} fps ({data['frames']} frames, {size:.1f} MiB; decoded: "
            f"{data['frames'] * 640 * 480 * 3 / 2**30:.1f} GiB); small videos: {a.videos} x 40 frames of 160x120 MPEG-4 AVI\n"
            f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; each row a fresh process "
            "(torch and vivit_edu imported: the baseline, VmRSS), peak = VmHWM during the work\n")
    table = ["| measurement | baseline MiB | peak MiB | added MiB | seconds | what |", "|---|---|---|---|---|---|"]
    table += [f"| {r['name']} | {r['baseline_mb']:.0f} | {r['peak_mb']:.0f} | {r['peak_mb'] - r['baseline_mb']:.0f} | "
              f"{r['seconds']:.1f} | {r['note']} |" for r in rows]
    text = head + "\n" + "\n".join(table) + "\n"
    print(text)
    if a.out: Path(a.out).parent.mkdir(parents=True, exist_ok=True); Path(a.out).write_text(text)


if __name__ == "__main__":
    main()
