"""Embedded data and datasets against hostile files, workers, splits and caches (what notebooks cannot test well)."""
import shutil, warnings
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from vivit_edu.data import datasets as dsm
from vivit_edu.data.datasets import (UCF101, RLDD, VideoFolder, BadVideoWarning, UniformSampler, index_videos,
                                     average_by_video)
from vivit_edu.data.synthetic import (make_embedded_dataset, make_embedded_rldd, embedded_clip, embedded_recording,
                                      EmbeddedConfig, EmbeddedRLDDConfig, EMBEDDED_MIN_FRAMES)
from vivit_edu.data.video import read_video, write_video

TINY = dict(groups=4, clips_per_group=2)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VIVIT_EDU_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_embedded_dataset(tmp_path_factory.mktemp("emb") / "ucf", **TINY)


@pytest.fixture(scope="module")
def rldd(tmp_path_factory):
    return make_embedded_rldd(tmp_path_factory.mktemp("emb") / "rldd", subjects_per_part=2, frames=48)


def bad_messages(record):
    return [str(w.message) for w in record if issubclass(w.category, BadVideoWarning)]


def write_audio_only(path):
    with av.open(str(path), "w") as out:
        a = out.add_stream("aac", rate=8000); a.layout = "mono"
        fr = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono"); fr.sample_rate = 8000
        for pkt in [*a.encode(fr), *a.encode()]: out.mux(pkt)


# ---------------------------------------------------------------- embedded data
def test_embedded_deterministic_and_faithful(tiny, tmp_path):
    again = make_embedded_dataset(tmp_path / "again", **TINY)
    other = make_embedded_dataset(tmp_path / "other", seed=1, **TINY)
    rel = "MoveLeft/v_MoveLeft_g02_c01.avi"
    a, b = read_video(tiny / "UCF-101" / rel), read_video(again / "UCF-101" / rel)
    assert np.array_equal(a, b)                                         # same seed -> identical frames
    assert (tiny / "ucfTrainTestlist" / "trainlist02.txt").read_text() == (again / "ucfTrainTestlist" / "trainlist02.txt").read_text()
    c = read_video(other / "UCF-101" / rel)
    assert a.shape != c.shape or not np.array_equal(a, c)               # another seed -> other frames
    want = embedded_clip(EmbeddedConfig(**TINY), "MoveLeft", 2, 1)
    assert a.shape == want.shape
    assert np.abs(a.astype(float) - want).mean() < 8                    # decoded = drawn, within codec error (it smooths
                                                                        # away most of the std-4 noise: ~3 levels of this)


def test_embedded_reused_and_safe(tiny, tmp_path):
    f = tiny / "UCF-101" / "FadeIn" / "v_FadeIn_g01_c01.avi"
    mtime = f.stat().st_mtime_ns
    assert make_embedded_dataset(tiny, **TINY) == tiny
    assert f.stat().st_mtime_ns == mtime                                # reused, not rewritten
    foreign = tmp_path / "mine"; foreign.mkdir(); (foreign / "thesis.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="not an embedded dataset"):
        make_embedded_dataset(foreign, **TINY)
    assert (foreign / "thesis.txt").exists()
    d = make_embedded_dataset(None, groups=2, clips_per_group=1)        # default: in the cache, named by the recipe
    assert d.parent.name == "embedded" and (d / "manifest.json").exists()
    assert not list(d.parent.glob(".*tmp*"))                            # no temporary folder left behind


def test_embedded_lengths_straddle_min_frames(tiny):
    n = [read_video(p).shape[0] for p in sorted((tiny / "UCF-101").glob("*/*.avi"))]
    assert min(n) < EMBEDDED_MIN_FRAMES <= max(n)


def test_embedded_rldd_layout_and_determinism(rldd):
    files = sorted(str(p.relative_to(rldd)) for p in rldd.rglob("*.*") if p.name != "manifest.json")
    assert len(files) == 8 * 3
    assert any(f.startswith("Fold2_part1/Fold2_part1/") for f in files)
    assert {Path(f).suffix for f in files} == {".mp4", ".mov", ".MOV"}
    frames, _ = embedded_recording(EmbeddedRLDDConfig(subjects_per_part=2, frames=48), 1, 10)
    got = read_video(rldd / "Fold1_part1" / "01" / "10.mp4")
    assert got.shape == frames.shape and np.abs(got.astype(float) - frames).mean() < 6


# ---------------------------------------------------------------- splits
@pytest.mark.parametrize("fold", [1, 2, 3])
def test_official_split_is_group_aware(tiny, fold):
    tr, te = UCF101(tiny, split="train", fold=fold, num_frames=8), UCF101(tiny, split="test", fold=fold, num_frames=8)
    assert {r.group for r in tr.records}.isdisjoint({r.group for r in te.records})
    assert len(tr.records) + len(te.records) == 8 * 4 * 2
    assert tr.classes == te.classes == sorted(tr.classes)


def test_paper_protocol_filters_and_splits_4_to_1(tiny):
    tr, va = (UCF101(tiny, protocol="paper", split=s, num_frames=8) for s in ("train", "val"))
    kept = tr.records + va.records
    assert tr.min_frames == EMBEDDED_MIN_FRAMES
    assert all(r.num_frames >= EMBEDDED_MIN_FRAMES for r in kept)
    assert len(kept) == sum(read_video(p).shape[0] >= EMBEDDED_MIN_FRAMES for p in (tiny / "UCF-101").glob("*/*.avi"))
    assert len(va.records) == round(len(kept) / 5)
    assert {r.video_id for r in tr.records}.isdisjoint({r.video_id for r in va.records})
    same = UCF101(tiny, protocol="paper", split="val", num_frames=8)
    other = UCF101(tiny, protocol="paper", split="val", num_frames=8, seed=1)
    assert [r.video_id for r in same.records] == [r.video_id for r in va.records]
    assert [r.video_id for r in other.records] != [r.video_id for r in va.records]
    assert max(r.label for r in kept) == len(tr.classes) - 1            # labels contiguous over the kept classes


def test_paper_protocol_drops_classes_without_long_videos(tiny, tmp_path):
    root = tmp_path / "ucf"; shutil.copytree(tiny, root)
    for f in (root / "UCF-101" / "ZoomIn").glob("*.avi"):              # make one class all short
        write_video(f, read_video(f, indices=range(8)))
    tr, va = (UCF101(root, protocol="paper", split=s, num_frames=8) for s in ("train", "val"))
    assert "ZoomIn" not in tr.classes and len(tr.classes) == 7
    assert max(r.label for r in tr.records + va.records) == 6


def test_rldd_subject_split(rldd):
    tr, te = (RLDD(rldd, split=s, num_frames=8, size=(24, 32)) for s in ("train", "test"))
    assert {r.group for r in tr.records}.isdisjoint({r.group for r in te.records})
    assert len({r.group for r in tr.records + te.records}) == 8
    fixed = RLDD(rldd, split="test", test_subjects=["01", "07"], num_frames=8, size=(24, 32))
    assert {r.group for r in fixed.records} == {"01", "07"}
    x, y = fixed[0]
    assert x.shape == (3, 8, 24, 32) and y in (0, 1, 2)
    drowsy = RLDD(rldd, task="drowsy", num_frames=8, size=(24, 32))
    assert set(drowsy.targets) == {0} and "05" not in {r.group for r in drowsy.records}   # portrait subject dropped


# ---------------------------------------------------------------- bad input
@pytest.fixture
def hostile(tiny, tmp_path):
    root = tmp_path / "ucf"; shutil.copytree(tiny, root)
    d = root / "UCF-101" / "FadeIn"
    good = (d / "v_FadeIn_g01_c01.avi").read_bytes()
    bad = {
        "v_FadeIn_g20_c01.avi": lambda p: p.write_bytes(b""),                            # empty
        "v_FadeIn_g20_c02.avi": lambda p: p.write_bytes(good[:600]),                     # truncated to its header
        "v_FadeIn_g20_c03.avi": lambda p: p.write_text("hello, I am not a video\n" * 50),  # text
        "v_FadeIn_g20_c04.avi": lambda p: p.write_bytes(np.random.default_rng(0).bytes(5000)),  # noise
        "v_FadeIn_g20_c05.mp4": write_audio_only,                                        # audio only
        "v_FadeIn_g20_c06.avi": lambda p: write_video(p, np.zeros((3, 60, 80, 3), np.uint8)),  # too short
    }
    for name, make in bad.items(): make(d / name)
    (d / "Thumbs.db").write_bytes(b"\x00" * 100)                                         # not a video suffix: ignored
    lst = root / "ucfTrainTestlist" / "trainlist01.txt"
    lst.write_text(lst.read_text() + "".join(f"FadeIn/{n} 1\n" for n in bad) + "FadeIn/v_FadeIn_g21_c01.avi 1\n")
    return root, sorted(bad)


@pytest.mark.parametrize("protocol", ["official", "paper"])
def test_bad_files_reported_once_and_skipped(hostile, protocol):
    root, bad = hostile
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        ds = UCF101(root, protocol=protocol, min_frames=0, split="train",
                    val_fraction=0.0, num_frames=8)
    msgs = bad_messages(rec)
    skipped = sorted(Path(p).name for p, _ in ds.skipped)
    expect = bad + (["v_FadeIn_g21_c01.avi"] if protocol == "official" else [])
    assert skipped == sorted(expect)
    assert len(msgs) == len(expect)                                     # once each
    for name in expect: assert sum(name in m for m in msgs) == 1
    assert any("not on disk" in m for m in msgs) == (protocol == "official")
    assert any("fewer than the 8" in m for m in msgs) and any("no video stream" in m for m in msgs)
    assert all(Path(r.path).name not in bad for r in ds.records)
    # a whole epoch with two workers: every item is a good clip
    dl = DataLoader(ds, batch_size=5, shuffle=True, num_workers=2)
    n = 0
    for xb, yb in dl:
        assert xb.shape[1:] == (3, 8, 48, 64) and torch.isfinite(xb).all()
        n += len(yb)
    assert n == len(ds) > 0


def test_file_breaking_after_index_does_not_stop_the_epoch(tiny, tmp_path):
    root = tmp_path / "ucf"; shutil.copytree(tiny, root)
    ds = UCF101(root, split="test", num_frames=8, return_video_id=True)
    victim = Path(ds.records[0].path); victim.write_bytes(b"garbage" * 100)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        items = [ds[i] for i in range(len(ds))]
    msgs = bad_messages(rec)
    assert len(msgs) == 1 and victim.name in msgs[0]
    assert items[0][2] != 0                                              # another video took its place, with its own label
    assert items[0][1] == ds.records[items[0][2]].label


def test_case_mismatch_like_handstandpushups(tiny, tmp_path):
    root = tmp_path / "ucf"; shutil.copytree(tiny, root)
    for f in (root / "UCF-101" / "ZoomIn").glob("*.avi"):              # files named v_ZoomIN_* in folder ZoomIn
        f.rename(f.with_name(f.name.replace("v_ZoomIn_", "v_ZoomIN_")))
    with warnings.catch_warnings():
        warnings.simplefilter("error", BadVideoWarning)
        tr = UCF101(root, split="train", num_frames=8)
    zi = [r for r in tr.records if "ZoomIN" in r.path]
    assert len(zi) == 3 * 2 and {tr.classes[r.label] for r in zi} == {"ZoomIn"}
    assert {r.group for r in zi} == {"g02", "g03", "g04"}


def test_video_folder_and_rldd_with_bad_files(rldd, tmp_path):
    root = tmp_path / "rldd"; shutil.copytree(rldd, root)
    (root / "Fold1_part1" / "02" / "5.mov").write_bytes(b"")
    with pytest.warns(BadVideoWarning, match="5.mov"):
        ds = RLDD(root, num_frames=8, size=(24, 32))
    assert len(ds.records) == 23
    vf_root = tmp_path / "mine"
    for c in ("a", "b"): (vf_root / c).mkdir(parents=True)
    write_video(vf_root / "a" / "one.mp4", np.zeros((10, 48, 64, 3), np.uint8))
    write_video(vf_root / "b" / "two.avi", np.full((10, 48, 64, 3), 200, np.uint8))
    (vf_root / "b" / "broken.mov").write_text("nope")
    with pytest.warns(BadVideoWarning, match="broken.mov"):
        vf = VideoFolder(vf_root, num_frames=4)
    assert vf.classes == ["a", "b"] and len(vf) == 2 and vf[1][1] == 1


def test_index_cache_avoids_reprobing(tiny, monkeypatch):
    UCF101(tiny, split="test", num_frames=8)
    calls = []
    real = dsm.probe_video
    monkeypatch.setattr(dsm, "probe_video", lambda p: calls.append(p) or real(p))
    UCF101(tiny, split="test", num_frames=8)
    assert calls == []
    UCF101(tiny, split="test", num_frames=8, index_cache=False)
    assert len(calls) > 0


def test_eval_clips_per_video_and_averaging(tiny):
    ds = UCF101(tiny, split="test", num_frames=8, clips_per_video=3, return_video_id=True)
    vids = torch.tensor([ds[i][2] for i in range(len(ds))])
    assert len(ds) == 3 * len(ds.records) and torch.equal(vids, torch.arange(len(ds.records)).repeat_interleave(3))
    scores = torch.randn(len(ds), 8, generator=torch.Generator().manual_seed(0))   # distinct scores per clip
    order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(1))      # clips of a video need not be adjacent
    mean, v = average_by_video(scores[order], vids[order])
    assert mean.shape == (len(ds.records), 8) and torch.equal(v, torch.arange(len(ds.records)))
    torch.testing.assert_close(mean, scores.reshape(len(ds.records), 3, 8).mean(1))  # each video: the mean of its 3 clips


def test_clear_errors(tmp_path, tiny):
    with pytest.raises(FileNotFoundError, match="UCF101's layout"): UCF101(tmp_path)
    with pytest.raises(ValueError, match="protocol must be"): UCF101(tiny, protocol="random")
    with pytest.raises(FileNotFoundError, match="no such split list"): UCF101(tiny, fold=4)
    with pytest.raises(FileNotFoundError, match="no UTA-RLDD recordings"): RLDD(tmp_path)
    with pytest.raises(FileNotFoundError, match="class sub-folders"): VideoFolder(tmp_path)
    with pytest.raises(ValueError, match="too short"): UniformSampler(8)(5)
