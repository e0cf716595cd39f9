"""Memory bounds (issue 18): sampling a clip from a video, streaming its frames and indexing a folder take memory that
does not grow with the video's length or the folder's size (bench/memory.py measures the real sizes: a 10-minute
640x480 recording, 1,000 videos; bench/results/ has the numbers); the in-memory clip cache stops at MEMORY_CACHE_MB.
Each measurement runs in a fresh process and reads its peak resident memory (Linux's VmHWM, reset after the imports)."""
import json, subprocess, sys
from pathlib import Path

import numpy as np
import pytest

from vivit_edu.data.video import write_video

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's /proc/self/clear_refs")

PROBE = """
import importlib.util, json, sys, numpy as np
if sys.argv[1] == "index": from vivit_edu.data.datasets import index_videos
else:                                                  # the reader alone (no torch: a fast start)
    spec = importlib.util.spec_from_file_location("video", "vivit_edu/data/video.py")
    video = importlib.util.module_from_spec(spec); sys.modules["video"] = video; spec.loader.exec_module(video)
    read_video, iter_frames = video.read_video, video.iter_frames
def status(k): return next(int(l.split()[1]) / 1024 for l in open("/proc/self/status") if l.startswith(k + ":"))
what, path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
if what != "index": read_video(path, [0])              # warm up: the decoder's own allocations are not the question
open("/proc/self/clear_refs", "w").write("5"); base = status("VmRSS")
if what == "window": x = read_video(path, n - 20 + np.arange(16))
elif what == "spread": x = read_video(path, np.linspace(0, n - 1, 16).astype(int))
elif what == "stream": x = sum(1 for _ in iter_frames(path))
elif what == "index": x = index_videos(sorted(str(p) for p in __import__("pathlib").Path(path).rglob("*.avi")), workers=2)
print(json.dumps(dict(added=status("VmHWM") - base)))
"""


def added_mb(what: str, path, n: int = 0) -> float:
    r = subprocess.run([sys.executable, "-c", PROBE, what, str(path), str(n)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])["added"]


def frames(T, H=240, W=320):
    "Frames one at a time (a generator: write_video keeps one in memory)."
    yy, xx = np.mgrid[:H, :W]
    for t in range(T): yield np.stack([(xx + 3 * t) % 256, (yy + t) % 256, np.full((H, W), t % 256)], -1).astype(np.uint8)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("long")
    return {T: write_video(d / f"v{T}.mp4", frames(T), crf=35, preset="ultrafast") for T in (100, 800)}


@pytest.mark.parametrize("what", ["window", "spread", "stream"])
def test_decoding_memory_does_not_grow_with_length(videos, what):
    "800 frames of 320x240 are 176 MiB decoded: a reader that kept them would add that much; ours adds what 100 frames cost."
    short, long = added_mb(what, videos[100], 100), added_mb(what, videos[800], 800)
    assert long < 40 and long < short + 15, (short, long)


def test_indexing_memory_does_not_grow_with_the_folder(tmp_path):
    for n in (10, 80):
        for i in range(n):
            (tmp_path / f"f{n}" / f"c{i % 4}").mkdir(parents=True, exist_ok=True)
            write_video(tmp_path / f"f{n}" / f"c{i % 4}" / f"v{i:03d}.avi", np.zeros((8, 32, 32, 3), np.uint8) + i % 256)
    small, big = added_mb("index", tmp_path / "f10"), added_mb("index", tmp_path / "f80")
    assert big < small + 10, (small, big)                            # a few hundred bytes per file, not a decoded video


def test_memory_cache_stops_at_its_budget(tmp_path, monkeypatch):
    "The in-memory cache keeps whole decoded videos until MEMORY_CACHE_MB; after that clips are decoded from disk, the same."
    import vivit_edu.data.datasets as D
    paths = [write_video(tmp_path / f"v{i}.avi", np.full((20, 48, 64, 3), 40 * i, np.uint8)) for i in range(5)]
    records = [D.VideoRecord(str(p), i % 2, 20, p.name) for i, p in enumerate(paths)]
    per_video = 20 * 48 * 64 * 3
    monkeypatch.setattr(D, "MEMORY_CACHE_MB", 2.5 * per_video / 2**20)  # room for two videos
    cache = {}
    ds = D.VideoClips(records, ["a", "b"], sampler=D.UniformSampler(4), transform=D.ToUint8(), memory_cache=cache)
    clips = [ds[i][0] for i in range(5)]
    assert len(cache) == 2 and sum(v.nbytes for v in cache.values()) <= D.MEMORY_CACHE_MB * 2**20
    plain = D.VideoClips(records, ["a", "b"], sampler=D.UniformSampler(4), transform=D.ToUint8())
    assert all((a == plain[i][0]).all() for i, a in enumerate(clips))   # cached or not, the same clips


def test_the_memory_benchmark_runs(tmp_path):
    "bench/memory.py at a tiny size (the real one writes a 10-minute recording and 1,000 videos): its table comes out."
    r = subprocess.run([sys.executable, "bench/memory.py", "--minutes", "0.02", "--videos", "4", "--work", str(tmp_path),
                        "--only", "VideoFolder on 1,000 videos", "--out", str(tmp_path / "m.md")],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [l for l in (tmp_path / "m.md").read_text().splitlines() if l.startswith("| ")]
    assert rows[0].startswith("| measurement | baseline MiB | peak MiB | added MiB |") and len(rows) == 2, rows
    assert rows[1].startswith("| VideoFolder on 1,000 videos |") and "4 clips; index cache" in rows[1]
