"Hostile and multi-codec files for vivit_edu.data.video (fixtures are generated into tmp dirs)."
import shutil, subprocess
from fractions import Fraction
from pathlib import Path

import av
import re
import numpy as np
import pytest

from vivit_edu.data.video import VideoError, VideoInfo, probe_video, read_video, write_video


def _clip(T=60, H=96, W=128):
    "Moving gradient + square, different in every frame."
    t, y, x = np.arange(T)[:, None, None], np.arange(H)[None, :, None], np.arange(W)[None, None, :]
    r, g, b = np.broadcast_arrays((x * 2 + 5 * t) % 256, (y * 2 + 3 * t) % 256, (x + y + t) % 256)
    clip = np.stack([r, g, b], -1).astype(np.uint8)
    for i in range(T): clip[i, 20:50, (i % 90) + 5:(i % 90) + 35] = 255
    return clip


def _plain_count(path):
    "Frames PyAV's own plain full decode yields (the reference count)."
    with av.open(str(path)) as c: return sum(1 for _ in c.decode(video=0))


def _plain_frames(path):
    "RGB frames of PyAV's own plain decode, up to where FFmpeg reports invalid data (the reference for damaged files)."
    frames = []
    with av.open(str(path)) as c:
        try:
            for f in c.decode(video=0): frames.append(f.to_ndarray(format="rgb24"))
        except av.error.InvalidDataError: pass
    return frames


@pytest.fixture(scope="module")
def clip(): return _clip()


@pytest.fixture(scope="module")
def files(tmp_path_factory, clip):
    d = tmp_path_factory.mktemp("videos")
    out = {
        "avi": write_video(d / "xvid_b.avi", clip, bframes=2, gop=12),
        "mp4": write_video(d / "h264.mp4", clip, preset="veryfast"),
        "mov": write_video(d / "h264.mov", clip, preset="veryfast"),
        "mov_mpeg4": write_video(d / "mpeg4.mov", clip, codec="mpeg4"),
        "mkv": write_video(d / "h264.mkv", clip, bframes=3, gop=30),
    }
    # UCF101's encoder, libxvid with packed B-frames: from imageio-ffmpeg's binary (a dev dependency), which has it
    p = d / "libxvid.avi"
    subprocess.run([_ffmpeg(), "-v", "error", "-y", "-i", str(out["mkv"]), "-c:v", "libxvid", "-bf", "2", "-q:v", "4",
                    str(p)], check=True)
    out["libxvid"] = p
    return out


def _ffmpeg():
    "An ffmpeg with libxvid: Debian's if it has it, else imageio-ffmpeg's (shipped in its wheel)."
    if shutil.which("ffmpeg") and "libxvid" in subprocess.run(["ffmpeg", "-hide_banner", "-encoders"],
                                                               capture_output=True, text=True).stdout:
        return "ffmpeg"
    import imageio_ffmpeg
    return imageio_ffmpeg.get_ffmpeg_exe()


@pytest.mark.parametrize("kind", ["avi", "mp4", "mov", "mov_mpeg4", "mkv", "libxvid"])
def test_codecs_count_and_pixels(files, clip, kind):
    p = files[kind]
    v = read_video(p)
    assert v.dtype == np.uint8 and v.shape[1:] == clip.shape[1:]
    assert len(v) == _plain_count(p)
    info = probe_video(p)
    assert isinstance(info, VideoInfo) and info.num_frames == len(v)
    assert (info.width, info.height) == (clip.shape[2], clip.shape[1])
    if kind != "libxvid":  # libxvid re-encodes and may pad/drop at the ends
        assert len(v) == len(clip)
        assert np.abs(v.astype(int) - clip).mean() < 8
    assert read_video(p, threaded=False).tolist() == v.tolist()


@pytest.mark.parametrize("kind", ["avi", "mp4", "mkv", "libxvid"])
def test_sparse_equals_full_rows(files, kind):
    p = files[kind]
    full = read_video(p)
    for idx in ([0], [len(full) - 1], np.linspace(0, len(full) - 1, 16).round().astype(int),
                [7, 3, 3, len(full) - 1, 0], [1, 2, 4, 5], [2], np.arange(len(full))[::-1], np.arange(0, len(full), 3)):
        np.testing.assert_array_equal(read_video(p, idx), full[np.asarray(idx)])


def test_fewer_frames_than_requested(files):
    p = files["avi"]
    with pytest.raises(VideoError, match=r"xvid_b\.avi.*only 60 frames"): read_video(p, [0, 60])
    with pytest.raises(VideoError, match="xvid_b.avi"): read_video(p, [-1, 2])
    with pytest.raises(VideoError, match="xvid_b.avi"): read_video(p, [])
    with pytest.raises(VideoError, match="xvid_b.avi"): read_video(p, [1.5])


def test_nonexistent(tmp_path):
    p = tmp_path / "missing.avi"
    for fn in (read_video, probe_video):
        with pytest.raises(VideoError, match="missing.avi: no such file"): fn(p)
    with pytest.raises(VideoError, match="directory"): read_video(tmp_path)


def test_empty_file(tmp_path):
    p = tmp_path / "empty.avi"; p.write_bytes(b"")
    for fn in (read_video, probe_video):
        with pytest.raises(VideoError, match="empty.avi: empty file"): fn(p)


def test_text_renamed(tmp_path):
    p = tmp_path / "notes.avi"; p.write_text("this is not a video\n" * 200)
    for fn in (read_video, probe_video):
        with pytest.raises(VideoError, match="notes.avi"): fn(p)


def test_png_renamed(tmp_path, clip):
    png = tmp_path / "frame.png"
    with av.open(str(png), "w", format="image2") as c:  # one PNG image through FFmpeg
        s = c.add_stream("png", rate=1); s.width, s.height, s.pix_fmt = 128, 96, "rgb24"
        for pkt in s.encode(av.VideoFrame.from_ndarray(clip[0], format="rgb24")): c.mux(pkt)
        for pkt in s.encode(): c.mux(pkt)
    p = tmp_path / "picture.avi"; p.write_bytes(png.read_bytes())
    # FFmpeg opens a PNG as a one-frame "video": either a clear error or exactly that one frame.
    try: v = read_video(p)
    except VideoError as e: assert "picture.avi" in str(e)
    else:
        assert v.shape == (1, 96, 128, 3) and probe_video(p).num_frames == 1
        with pytest.raises(VideoError, match="picture.avi.*only 1 frames"): read_video(p, [0, 5])


def test_audio_only(tmp_path):
    p = tmp_path / "tone.mp4"
    with av.open(str(p), "w") as c:
        s = c.add_stream("aac", rate=16000)
        t = np.arange(16000, dtype=np.float32) / 16000
        samples = (0.3 * np.sin(2 * np.pi * 440 * t))[None].astype(np.float32)
        fr = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono"); fr.sample_rate = 16000
        for pkt in s.encode(fr): c.mux(pkt)
        for pkt in s.encode(): c.mux(pkt)
    for fn in (read_video, probe_video):
        with pytest.raises(VideoError, match="tone.mp4: has no video stream"): fn(p)


def test_truncated_avi(tmp_path, files):
    src = files["avi"]
    data = src.read_bytes()
    p = tmp_path / "cut.avi"; p.write_bytes(data[: len(data) // 2])
    with av.open(str(p)) as c: header = c.streams.video[0].frames
    info = probe_video(p)
    v = read_video(p)
    # the damaged last packet's frame, and the frames the decoder held back for the B-frames cut off, are dropped
    assert 0 < info.num_frames < 60 and len(v) == info.num_frames <= _plain_count(p) <= len(v) + 3
    assert header in (0, 60)  # the header still claims the full clip (or nothing)
    np.testing.assert_array_equal(v, read_video(src)[:len(v)])  # every frame returned is the whole file's frame, none patched up
    with pytest.raises(VideoError, match=rf"cut\.avi.*only {len(v)} frames"): read_video(p, [0, 59])
    np.testing.assert_array_equal(read_video(p, [len(v) - 1, 0]), v[[len(v) - 1, 0]])


@pytest.mark.parametrize("kind", ["avi", "mp4"])
def test_corrupted_middle(tmp_path, files, kind):
    src = files[kind]
    data = bytearray(src.read_bytes())
    rng = np.random.default_rng(0)
    lo, hi = len(data) // 3, 2 * len(data) // 3
    data[lo:hi] = rng.integers(0, 256, hi - lo, dtype=np.uint8).tobytes()
    p = tmp_path / f"middle.{src.suffix[1:]}"; p.write_bytes(bytes(data))   # not "corrupt.*": an error must not pass by echoing the name
    ref = _plain_frames(p)
    # Either an error naming the file and the first damaged frame, every frame before it still readable and equal to
    # PyAV's own decode (damage in the middle is never patched up), or -- damage the decoder does not notice -- exactly PyAV's frames.
    try: v = read_video(p)
    except VideoError as e:
        m = re.search(rf"{re.escape(p.name)}: (?:corrupt data at frame (\d+)|.*)", str(e))
        assert m, f"the error does not name the file: {e}"
        if m.group(1) is None: assert not ref, f"read_video failed ({e}) where PyAV decodes {len(ref)} frames"; return
        first = int(m.group(1)); assert 0 < first <= len(ref), (first, len(ref))
        before = list(range(first))
        np.testing.assert_array_equal(read_video(p, before), np.stack(ref[:first]))
        return
    assert v.dtype == np.uint8 and v.ndim == 4 and 0 < len(v) < 60
    np.testing.assert_array_equal(v, np.stack(ref))
    assert len(v) == probe_video(p).num_frames


def test_truncated_mp4_header_only(tmp_path, files):
    data = files["mp4"].read_bytes()
    p = tmp_path / "cut.mp4"; p.write_bytes(data[: len(data) // 2])
    try: v = read_video(p)
    except VideoError as e: assert "cut.mp4" in str(e)
    else: assert len(v) == probe_video(p).num_frames


def test_rotation_metadata(tmp_path, clip):
    p = write_video(tmp_path / "rot.mp4", clip[:5], rotation=90)
    info = probe_video(p)
    assert info.rotation == 90 and info.num_frames == 5
    assert read_video(p).shape == (5, 96, 128, 3)  # pixels are not rotated
    assert probe_video(write_video(tmp_path / "plain.mp4", clip[:5])).rotation == 0


def test_odd_size_and_fps(tmp_path):
    clip = _clip(T=10, H=61, W=81)
    with pytest.raises(ValueError, match="odd.mkv.*even"): write_video(tmp_path / "odd.mkv", clip)
    p = write_video(tmp_path / "odd.mkv", clip, fps=Fraction(30000, 1001), pix_fmt="yuv444p")
    v = read_video(p)
    assert v.shape[1:] == (61, 81, 3) and np.abs(v.astype(int) - clip).mean() < 8
    info = probe_video(p)
    assert info.num_frames == len(v) == 10 and abs(info.fps - 29.97) < 0.01


def test_write_video_validates(tmp_path):
    with pytest.raises(ValueError, match="uint8"): write_video(tmp_path / "x.avi", np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="suffix"): write_video(tmp_path / "x.xyz", np.zeros((2, 8, 8, 3), np.uint8))


def test_write_video_from_a_generator(tmp_path, clip):
    "Frames that come one at a time (a long recording never in memory) give the same video as the array."
    a = write_video(tmp_path / "a.mp4", clip[:12], preset="veryfast")
    b = write_video(tmp_path / "b.mp4", (f for f in clip[:12]), preset="veryfast")
    np.testing.assert_array_equal(read_video(a), read_video(b))
    with pytest.raises(ValueError, match=r"c\.avi: frame 2 is uint8 \(8, 8, 3\), not uint8 \(96, 128, 3\)"):
        write_video(tmp_path / "c.avi", iter([clip[0], clip[1], np.zeros((8, 8, 3), np.uint8)]))
    with pytest.raises(ValueError, match="d.avi: no frames to write"): write_video(tmp_path / "d.avi", iter([]))


def test_sparse_mpeg4_skips_b_frames(files):
    "The MPEG-4 part 2 fast path returns the same frames as a plain decode, and declines when unsure."
    from vivit_edu.data.video import _read_sparse_mpeg4
    for kind in ("avi", "libxvid"):
        if kind not in files: continue
        full = read_video(files[kind], threaded=False)
        for idx in ([0, 1, 2], [2, 20, 40, len(full) - 1], list(range(1, len(full), 3))):
            for threaded in (False, True):  # one decoder, or two split at a keyframe
                with av.open(str(files[kind])) as c:
                    got = _read_sparse_mpeg4(c, c.streams.video[0], {i: k for k, i in enumerate(idx)}, idx[-1],
                                             threaded=threaded)
                np.testing.assert_array_equal(got, full[idx])
        with av.open(str(files[kind])) as c:
            assert _read_sparse_mpeg4(c, c.streams.video[0], {len(full): 0}, len(full)) is None


def test_sparse_truncated_and_corrupt_avi_agree_with_plain_decode(tmp_path, files):
    "On damaged MPEG-4 files sparse reads still equal the rows of a plain full read (or of the intact file, before damage)."
    data = files["avi"].read_bytes()
    cut = tmp_path / "cut.avi"; cut.write_bytes(data[: 2 * len(data) // 3])
    bad = bytearray(data); bad[len(data) // 2 : len(data) // 2 + 400] = bytes(400)
    zeroed = tmp_path / "zeroed.avi"; zeroed.write_bytes(bytes(bad))
    full = read_video(cut, threaded=False)
    idx = np.linspace(0, len(full) - 1, 10).round().astype(int)
    np.testing.assert_array_equal(read_video(cut, idx), full[idx])
    with pytest.raises(VideoError, match=r"zeroed\.avi: corrupt data at frame (\d+), in the middle of the file") as e:
        read_video(zeroed, threaded=False)                    # damage the decoder flags is an error, not patched-up frames
    k = int(str(e.value).split("frame ")[1].split(",")[0])
    idx = np.linspace(0, k - 1, 10).round().astype(int)       # the frames before it read, sparse or not, as in the intact file
    for threaded in (False, True): np.testing.assert_array_equal(read_video(zeroed, idx, threaded=threaded), read_video(files["avi"])[idx])


def test_size_and_iter_frames(files, tmp_path):
    from vivit_edu.data.video import iter_frames
    for kind in ("avi", "mp4"):
        p = files[kind]
        small = read_video(p, size=(48, 64))
        assert small.shape == (60, 48, 64, 3)
        np.testing.assert_array_equal(read_video(p, [3, 40, 1], size=(48, 64)), small[[3, 40, 1]])
        np.testing.assert_array_equal(np.stack(list(iter_frames(p))), read_video(p))
    with pytest.raises(ValueError, match="size"): read_video(files["avi"], size=(0, 10))
    (tmp_path / "e.avi").write_bytes(b"")
    with pytest.raises(VideoError, match="e.avi"): next(iter_frames(tmp_path / "e.avi"))


def test_probe_packet_count_matches_on_intact_files(files):
    for kind, p in files.items():
        exact, fast = probe_video(p), probe_video(p, exact=False)
        assert fast.num_frames == exact.num_frames, kind
        assert (fast.width, fast.height, fast.rotation, fast.codec) == (exact.width, exact.height, exact.rotation, exact.codec)


@pytest.mark.parametrize("kind", ["avi", "libxvid"])
def test_sparse_random_subsets_intact_and_cut(tmp_path, files, kind):
    "Random index sets through the MPEG-4 fast path equal the rows of a full read, also on cut files."
    rng = np.random.default_rng(0)
    data = files[kind].read_bytes()
    for frac in (1.0, 0.8, 0.55, 0.3):
        p = tmp_path / f"part{int(frac * 100)}.avi"; p.write_bytes(data[: int(len(data) * frac)])
        full = read_video(p, threaded=False)
        for _ in range(15):
            idx = rng.choice(len(full), rng.integers(1, 8), replace=False)
            for threaded in (False, True):
                np.testing.assert_array_equal(read_video(p, idx, threaded=threaded), full[idx])
        np.testing.assert_array_equal(read_video(p, [len(full) - 1]), full[-1:])
