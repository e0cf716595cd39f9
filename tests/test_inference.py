"""Sliding-window inference (`vivit_edu.inference`): windows, probabilities, agreement with a direct model call,
and the command line on good and bad files. Speed is measured in bench/inference.py, never asserted here."""
import subprocess, sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vivit_edu.data.datasets import video_transform
from vivit_edu.data.video import read_video, write_video
from vivit_edu.inference import Predictor, predict_video, window_ends
from vivit_edu.models.vivit import vivit
from vivit_edu.train import save_weights

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return vivit(preset="tiny", num_classes=8).eval()


@pytest.fixture(scope="module")
def video_file(tmp_path_factory):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (1, 60, 80, 3)).astype(np.int16)
    frames = np.clip(base + rng.integers(-40, 40, (50, 60, 80, 3)), 0, 255).astype(np.uint8)   # (T, H, W, C)
    return write_video(tmp_path_factory.mktemp("v") / "clip.avi", frames, fps=25)


@pytest.mark.parametrize("stride,hop,smooth", [(1, 1, 1), (1, 4, 1), (2, 4, 1), (2, 6, 1), (3, 3, 2)])
def test_windows_and_direct_agreement(model, video_file, stride, hop, smooth):
    r = predict_video(video_file, model, hop=hop, stride=stride, smooth=smooth, device="cpu", threads=1)
    frames = read_video(video_file)
    ends = window_ends(len(frames), 8, stride=stride, hop=hop)
    assert [p.frame for p in r.predictions] == ends and ends
    tf = video_transform(train=False, size=32, crop=32)
    direct = []
    with torch.no_grad():
        for e in ends:
            window = frames[e - 7 * stride : e + 1 : stride]
            assert len(window) == 8
            direct.append(model(tf(window)[None]).softmax(-1)[0])
    for j, p in enumerate(r.predictions):
        expect = torch.stack(direct[max(0, j - smooth + 1) : j + 1]).mean(0)
        torch.testing.assert_close(p.probs, expect, atol=1e-5, rtol=1e-4)
        assert abs(float(p.probs.sum()) - 1) < 1e-5
        assert [v for _, v in p.topk] == sorted((v for _, v in p.topk), reverse=True)
        assert p.time_s == pytest.approx(p.frame / 25)
    assert r.stats.frames == len(frames) and r.stats.model_calls == len(ends)
    assert r.stats.source_fps == pytest.approx(25) and r.stats.keeps_up is (r.stats.fps >= 25)
    assert ("keeps up" if r.stats.keeps_up else "too slow") in r.stats.summary()


def test_keeps_up_compares_frame_rates():
    "A stream keeps up when it processes frames at least as fast as the source delivers them."
    from vivit_edu.inference import StreamStats
    assert StreamStats(frames=50, seconds=1.0, source_fps=25).keeps_up is True           # 50 frames/s for a 25 fps video
    assert StreamStats(frames=25, seconds=1.0, source_fps=25).keeps_up is True           # exactly real time
    slow = StreamStats(frames=50, seconds=4.0, source_fps=25)                             # 12.5 frames/s
    assert slow.keeps_up is False and "too slow (0.5x real time)" in slow.summary()
    assert StreamStats(frames=50, seconds=1.0).keeps_up is None                          # source rate unknown


def test_stream_from_iterator_and_reset(model):
    frames = (np.full((48, 64, 3), k, np.uint8) for k in range(20))         # a generator, like a camera
    p = Predictor(model, hop=4, device="cpu", class_names=list("abcdefgh"), topk=3)
    out = list(p.stream(frames))                                             # fps unknown: wall-clock times
    assert [q.frame for q in out] == [7, 11, 15, 19]
    assert all(len(q.topk) == 3 and q.label in "abcdefgh" for q in out)
    assert p.stats.source_fps is None and p.stats.keeps_up is None
    again = list(p.stream(np.zeros((8, 48, 64, 3), np.uint8)))              # stream() starts afresh
    assert [q.frame for q in again] == [7]


def test_bad_frames_and_settings(model):
    p = Predictor(model, device="cpu")
    with pytest.raises(ValueError, match="uint8 RGB frame"): p.push(np.zeros((60, 80), np.uint8))
    p.reset(); p.push(np.zeros((60, 80, 3), np.uint8)); p.push(np.zeros((90, 90, 3), np.uint8))   # resized + cropped: fine
    raw = Predictor(torch.nn.Sequential(model), frames=8, device="cpu")      # no cfg, no size: frames are not resized
    raw.push(np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="shape changed"): raw.push(np.zeros((32, 40, 3), np.uint8))
    with pytest.raises(ValueError, match="multiple of stride"): Predictor(model, hop=3, stride=2)
    with pytest.raises(ValueError, match="pass frames=T"): Predictor(torch.nn.Identity(), crop=32)


def cli(*args):
    return subprocess.run([sys.executable, "-m", "vivit_edu", "predict", *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)


@pytest.fixture(scope="module")
def weights(model, tmp_path_factory):
    return save_weights(model, tmp_path_factory.mktemp("w") / "tiny.safetensors")


def test_cli_good_file(video_file, weights, tmp_path):
    names = tmp_path / "classInd.txt"
    names.write_text("".join(f"{i + 1} Class{i}\n" for i in range(8)))
    r = cli(video_file, "--weights", weights, "--preset", "tiny", "--num-classes", 8, "--hop", 8, "--classes", names)
    assert r.returncode == 0, r.stderr
    lines = [l for l in r.stdout.splitlines() if l.startswith("frame")]
    assert [int(l.split()[1]) for l in lines] == window_ends(50, 8, hop=8)
    assert "Class" in lines[0] and "frames/s" in r.stdout and "vs source 25 fps" in r.stdout


def test_cli_bad_inputs(video_file, weights, tmp_path):
    missing = tmp_path / "nope.avi"
    r = cli(missing, "--weights", weights, "--num-classes", 8)
    assert r.returncode != 0 and "nope.avi" in r.stderr and "no such" in r.stderr
    bad = tmp_path / "corrupt.avi"; bad.write_text("this is not a video\n" * 50)
    r = cli(bad, "--weights", weights, "--num-classes", 8)
    assert r.returncode != 0 and "corrupt.avi" in r.stderr and "Traceback" not in r.stderr
    r = cli(video_file, "--weights", weights, "--num-classes", 5)              # weights of an 8-class model
    assert r.returncode != 0 and "tiny.safetensors" in r.stderr and "do not fit" in r.stderr
    r = cli(video_file, "--weights", tmp_path / "none.safetensors", "--num-classes", 8)
    assert r.returncode != 0 and "none.safetensors" in r.stderr
    short = write_video(tmp_path / "short.avi", np.zeros((4, 60, 80, 3), np.uint8))
    r = cli(short, "--weights", weights, "--num-classes", 8)
    assert r.returncode == 1 and "fewer than one window" in r.stderr              # no prediction: a failure (issue 18)


def test_cli_non_local_resnet(video_file, tmp_path):
    from vivit_edu.models.resnet_nl import nl_resnet50
    w = save_weights(nl_resnet50(preset="tiny"), tmp_path / "nl.safetensors")    # 5 classes, 4 frames of 64x64
    r = cli(video_file, "--weights", w, "--model", "nl_resnet50", "--preset", "tiny", "--num-classes", 5, "--hop", 4,
            "--max-frames", 20)
    assert r.returncode == 0, r.stderr
    assert [int(l.split()[1]) for l in r.stdout.splitlines() if l.startswith("frame")] == window_ends(20, 4, hop=4)


def test_cli_ignored_options_are_refused(video_file, weights, tmp_path):
    "--weights with --run, or --checkpoint without --run, would be silently ignored: refused instead; a folder is no video."
    r = cli(video_file, "--run", tmp_path, "--weights", weights)
    assert r.returncode == 2 and "with --run, choose its weights with --checkpoint" in r.stderr
    r = cli(video_file, "--weights", weights, "--num-classes", 8, "--checkpoint", "last")
    assert r.returncode == 2 and "--checkpoint picks the weights of a --run folder" in r.stderr
    r = cli(tmp_path, "--weights", weights, "--num-classes", 8)
    assert r.returncode != 0 and "a folder, not a video file" in r.stderr and "Traceback" not in r.stderr
