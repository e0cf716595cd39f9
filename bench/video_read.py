"""Benchmark: full-clip RGB reading vs FFmpeg's own single-threaded loop, and sparse vs full reads.

Usage: python bench/video_read.py [FILE] [--repeats N]

Without FILE it makes a UCF101-like clip (320x240, 158 frames, MPEG-4 part 2 with B-frames in an AVI):
with Debian's `ffmpeg -c:v libxvid -bf 2` when that encoder exists (UCF101's packed B-frames), else with
PyAV's mpeg4 encoder (`write_video`). Prints one table; nothing is asserted.
"""
import argparse, os, re, shutil, statistics, subprocess, sys, tempfile, time
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from vivit_edu.data.video import probe_video, read_video, write_video


def textured_clip(T=158, H=240, W=320, seed=0):
    "A clip with texture and motion (a panning smooth-noise background and a moving disc)."
    rng = np.random.default_rng(seed)
    big = rng.integers(0, 256, (H // 4 + 8, (W + 4 * T) // 4 + 8, 3)).astype(np.float32)
    big = np.repeat(np.repeat(big, 4, 0), 4, 1)  # blocky noise, then blur a little
    big = (big + np.roll(big, 2, 0) + np.roll(big, 2, 1) + np.roll(big, 2, (0, 1))) / 4
    yy, xx = np.mgrid[:H, :W]
    out = np.empty((T, H, W, 3), np.uint8)
    for t in range(T):
        fr = big[:H, 2 * t:2 * t + W].copy()
        cy, cx = H / 2 + 60 * np.sin(t / 15), 40 + (t * 3) % (W - 80)
        fr[(yy - cy) ** 2 + (xx - cx) ** 2 < 30 ** 2] = (240, 60, 40)
        out[t] = fr.astype(np.uint8)
    return out


def has_libxvid(ffmpeg):
    r = subprocess.run([ffmpeg, "-hide_banner", "-encoders"], capture_output=True, text=True)
    return "libxvid" in r.stdout


def make_clip(folder: Path):
    "Write the UCF101-like test file; return (path, how it was made)."
    clip = textured_clip()
    debian = shutil.which("ffmpeg")
    if debian and has_libxvid(debian):
        src = write_video(folder / "src.mkv", clip, crf=10, preset="veryfast")
        p = folder / "ucf_like.avi"
        subprocess.run([debian, "-v", "error", "-y", "-i", str(src), "-c:v", "libxvid", "-bf", "2", "-b:v", "1000k",
                        "-vtag", "XVID", str(p)], check=True)
        return p, "ffmpeg libxvid -bf 2 (packed B-frames)"
    return write_video(folder / "ucf_like.avi", clip, bframes=2, bit_rate=1_000_000), "PyAV mpeg4, max_b_frames=2"


def ffmpeg_rtime(ffmpeg, path, rgb=True):
    "FFmpeg's own loop time (rtime, seconds; excludes process start-up)."
    cmd = [ffmpeg, "-hide_banner", "-threads", "1", "-benchmark", "-i", str(path)]
    cmd += (["-vf", "format=rgb24"] if rgb else []) + ["-f", "null", "-"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    m = re.search(r"rtime=([\d.]+)s", r.stderr)
    if not m: raise RuntimeError(f"no rtime in ffmpeg output:\n{r.stderr[-2000:]}")
    return float(m.group(1))


def naive_reader(path):
    with av.open(str(path)) as c: return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def shared_reader(path):
    r = VideoReformatter()
    with av.open(str(path)) as c: return np.stack([r.reformat(f, format="rgb24").to_ndarray() for f in c.decode(video=0)])


def decode_only(path):
    with av.open(str(path)) as c: return sum(1 for _ in c.decode(video=0))


def timed(fn, repeats):
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter(); fn(); ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file", nargs="?", help="video to read (default: generate a UCF101-like AVI)")
    ap.add_argument("--repeats", type=int, default=21, help="runs per measurement (median reported)")
    args = ap.parse_args()
    tmp = tempfile.TemporaryDirectory()
    if args.file: path, how = Path(args.file), "given"
    else: path, how = make_clip(Path(tmp.name))
    info = probe_video(path)
    n = info.num_frames
    full = read_video(path)
    assert len(full) == n == decode_only(path) == len(naive_reader(path)), "frame counts disagree"
    assert np.array_equal(full, naive_reader(path)), "pixels differ from the naive reader"
    sparse_idx = np.linspace(0, min(150, n) - 1, 16).round().astype(int)
    assert np.array_equal(read_video(path, sparse_idx), full[sparse_idx])

    ffmpegs = []
    if shutil.which("ffmpeg"): ffmpegs.append(("ffmpeg (Debian)", shutil.which("ffmpeg")))
    try:
        import imageio_ffmpeg
        ffmpegs.append(("ffmpeg (imageio-ffmpeg)", imageio_ffmpeg.get_ffmpeg_exe()))
    except Exception: pass
    if not ffmpegs: sys.exit("no ffmpeg binary found (apt-get install ffmpeg, or pip install imageio-ffmpeg)")

    R, m = args.repeats, min(150, n)
    every = np.arange(m)
    cases = []  # (name, fn returning seconds, frames)
    def wall(fn):
        def run():
            t0 = time.perf_counter(); fn(); return time.perf_counter() - t0
        return run
    for name, exe in ffmpegs:
        ver = subprocess.run([exe, "-version"], capture_output=True, text=True).stdout.split()[2]
        cases.append((f"{name} {ver}: rgb24 loop", lambda exe=exe: ffmpeg_rtime(exe, path), n))
        cases.append((f"{name} {ver}: decode only", lambda exe=exe: ffmpeg_rtime(exe, path, False), n))
    cases += [
        ("PyAV decode only (no RGB)", wall(lambda: decode_only(path)), n),
        ("naive to_ndarray('rgb24')", wall(lambda: naive_reader(path)), n),
        ("one shared VideoReformatter", wall(lambda: shared_reader(path)), n),
        ("read_video(threaded=False)", wall(lambda: read_video(path, threaded=False)), n),
        ("read_video(threaded=True)", wall(lambda: read_video(path, threaded=True)), n),
        ("read_video (default)", wall(lambda: read_video(path)), n),
        (f"read_video 16 spread over {m}, threaded=False", wall(lambda: read_video(path, sparse_idx, threaded=False)), 16),
        (f"read_video 16 spread over {m}, threaded=True", wall(lambda: read_video(path, sparse_idx, threaded=True)), 16),
        (f"read_video all {m} by index, threaded=True", wall(lambda: read_video(path, every, threaded=True)), m),
        (f"read_video 16 spread over {m}", wall(lambda: read_video(path, sparse_idx)), 16),
        (f"read_video all {m} by index", wall(lambda: read_video(path, every)), m),
    ]
    times = {name: [] for name, _, _ in cases}
    load0 = os.getloadavg()[0]
    for _ in range(R):  # round robin, so a busy moment slows every reader alike
        for name, fn, _ in cases: times[name].append(fn())
    med = {k: statistics.median(v) for k, v in times.items()}
    best = {k: min(v) for k, v in times.items()}
    ref_name = cases[0][0]
    ref_fps = n / med[ref_name]

    print(f"file: {path.name} ({how}); {info.width}x{info.height}, {n} frames, codec {info.codec}, {info.fps:g} fps")
    print(f"median of {R} round-robin runs; ffmpeg times are its own rtime (-threads 1, no start-up); "
          f"load average {load0:.2f} -> {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print(f"speed = frames/s relative to '{ref_name}'\n")
    w = max(len(c[0]) for c in cases)
    print(f"| {'reader':{w}s} | {'ms':>7s} | {'best ms':>7s} | {'frames/s':>9s} | {'speed':>6s} |")
    print(f"|{'-' * (w + 2)}|{'-' * 9}|{'-' * 9}|{'-' * 11}|{'-' * 8}|")
    for name, _, k in cases:
        fps = k / med[name]
        print(f"| {name:{w}s} | {1e3 * med[name]:7.2f} | {1e3 * best[name]:7.2f} | {fps:9.0f} | {fps / ref_fps:6.2f} |")
    full = med["read_video (default)"]
    print(f"\nfull-clip RGB read (default) vs ffmpeg rgb24 loop: {med[ref_name] / full:.2f}x (target >= 1.0); "
          f"threaded=False {med[ref_name] / med['read_video(threaded=False)']:.2f}x, "
          f"threaded=True {med[ref_name] / med['read_video(threaded=True)']:.2f}x")
    print(f"16 spread over {m} vs all {m} (default): {med[cases[-2][0]] / med[cases[-1][0]]:.2f} of the time (target <= 0.5); "
          f"threaded=True: {med[cases[-4][0]] / med[cases[-3][0]]:.2f}")

if __name__ == "__main__":
    main()
