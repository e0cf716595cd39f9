"""Property-based tests (hypothesis) of what reads files from outside (issue 18).

The video reader: arbitrary bytes, real files cut at any byte or overwritten anywhere give uint8 frames or a
`VideoError` naming the file, never another exception, a hang or a crash; a file cut short gives exactly the first
frames of the whole file, never a patched-up or misplaced one. The reader runs in a separate process, asked one file at
a time with a time limit, so a hang or a segfault fails the test instead of stopping it.

The text parsers (`read_class_index`, `read_split_list`) and the UTA-RLDD file-name pattern: arbitrary text gives a
result of the documented form or a `ValueError` naming the file (and line); well-formed lists round-trip.

Examples are few and fixed (`derandomize`), so the file runs in seconds; `HYPOTHESIS_PROFILE=explore` runs thousands of
random ones."""
import hashlib, json, os, re, select, subprocess, sys, textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings, strategies as st

from vivit_edu.data.video import write_video

ROOT = Path(__file__).resolve().parents[1]
settings.register_profile("default", max_examples=100, derandomize=True, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.register_profile("explore", max_examples=2000, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
TIMEOUT = 30                                                        # seconds one file may take (they take milliseconds)

# The reader process: vivit_edu/data/video.py loaded on its own (numpy and PyAV, no torch: it starts in a fraction of a
# second), answering one JSON line per request.
SERVER = textwrap.dedent("""
    import hashlib, importlib.util, json, sys, traceback
    spec = importlib.util.spec_from_file_location("vivit_edu_video", sys.argv[1])
    video = importlib.util.module_from_spec(spec); sys.modules["vivit_edu_video"] = video; spec.loader.exec_module(video)
    for line in sys.stdin:
        req = json.loads(line)
        try:
            if req["op"] == "probe": info = video.probe_video(req["path"]); res = dict(ok=[info.num_frames, info.width, info.height])
            else:
                if req["op"] == "iter": frames = list(video.iter_frames(req["path"]))
                else: frames = video.read_video(req["path"], req.get("indices"), threaded=req.get("threaded"))
                bad = [f.dtype.str for f in frames if f.dtype != "uint8" or f.ndim != 3 or f.shape[-1] != 3]
                res = dict(ok=[len(frames), *(frames[0].shape if len(frames) else ())], bad=bad,
                           sha=[hashlib.sha1(f.tobytes()).hexdigest()[:12] for f in frames])
        except video.VideoError as e: res = dict(error="VideoError", message=str(e), path=e.path)
        except BaseException as e: res = dict(error=type(e).__name__, message=str(e), trace=traceback.format_exc()[-1500:])
        print(json.dumps(res), flush=True)
""")


class Reader:
    "The reader process: `ask(path, op)` returns its answer, or fails the test on a hang or a crash (and restarts it)."
    def __init__(self): self.p = None
    def start(self):
        self.p = subprocess.Popen([sys.executable, "-c", SERVER, str(ROOT / "vivit_edu" / "data" / "video.py")],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                  env={**os.environ, "OMP_NUM_THREADS": "1"})
    def ask(self, path, op="read", **kw) -> dict:
        if self.p is None or self.p.poll() is not None: self.start()
        self.p.stdin.write(json.dumps(dict(path=str(path), op=op, **kw)) + "\n"); self.p.stdin.flush()
        ready, _, _ = select.select([self.p.stdout], [], [], TIMEOUT)
        if not ready:
            self.p.kill(); self.p.wait(); self.p = None
            pytest.fail(f"{op} {path}: no answer in {TIMEOUT} s (a hang)")
        line = self.p.stdout.readline()
        if not line:
            code = self.p.wait(); self.p = None
            pytest.fail(f"{op} {path}: the reader process died (exit status {code}: a crash)")
        return json.loads(line)
    def close(self):
        if self.p is not None and self.p.poll() is None: self.p.stdin.close(); self.p.wait(timeout=30)


@pytest.fixture(scope="module")
def reader():
    r = Reader(); yield r; r.close()


def check_answer(res: dict, path: Path) -> dict:
    "An answer must be frames (uint8 (H, W, 3), at least one) or a VideoError whose message starts with the path."
    if "error" in res:
        assert res["error"] == "VideoError", f"{path}: {res['error']} instead of VideoError: {res['message']}\n{res.get('trace', '')}"
        assert res["message"].startswith(f"{path}: ") and res["path"] == str(path), res
    else:
        assert not res.get("bad") and res["ok"][0] >= 1, res
    return res


@pytest.fixture(scope="module")
def videos(tmp_path_factory, reader):
    "Small real files of three containers (B-frames in each), with the per-frame hashes of their full decode."
    d = tmp_path_factory.mktemp("real")
    rng = np.random.default_rng(0)
    t, y, x = np.arange(24)[:, None, None], np.arange(48)[None, :, None], np.arange(64)[None, None, :]
    clip = np.stack(np.broadcast_arrays((x * 3 + 7 * t) % 256, (y * 4 + 5 * t) % 256, (x + y + 11 * t) % 256), -1).astype(np.uint8)
    clip = np.clip(clip.astype(int) + rng.integers(-20, 20, clip.shape), 0, 255).astype(np.uint8)   # texture: frames differ
    out = {}
    import av
    for name, kw in (("mpeg4.avi", dict(bframes=2, gop=8)), ("h264.mkv", dict(bframes=3, gop=12)), ("h264.mp4", dict(bframes=2, gop=12))):
        p = write_video(d / name, clip, **kw)
        if name.endswith(".mp4"):                                   # index first ("faststart"), so a cut file still opens
            with av.open(str(p)) as i, av.open(str(d / "fast.mp4"), "w", options={"movflags": "+faststart"}) as o:
                s = o.add_stream_from_template(i.streams.video[0])
                for pkt in i.demux(i.streams.video[0]):
                    if pkt.dts is not None: pkt.stream = s; o.mux(pkt)
            p = (d / "fast.mp4").replace(p)
        res = reader.ask(p)
        assert "ok" in res and res["ok"][0] == 24, res
        out[name] = (p, res["sha"])                                  # (paths, not bytes: short reports of failing examples)
    return out


NAMES = st.sampled_from(["x.avi", "x.mp4", "x.mkv", "x.mov", "x.webm", "x.mpg", "x"])


@given(data=st.binary(max_size=3000), name=NAMES, op=st.sampled_from(["read", "probe", "iter"]))
@example(data=b"", name="x.avi", op="read")
@example(data=b"RIFF\xff\xff\xff\x7fAVI LIST", name="x.avi", op="read")
@example(data=b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2", name="x.mp4", op="probe")
@example(data=b"\x1aE\xdf\xa3" + bytes(64), name="x.mkv", op="iter")
def test_arbitrary_bytes(reader, tmp_path, data, name, op):
    p = tmp_path / name; p.write_bytes(data)
    check_answer(reader.ask(p, op), p)


@given(which=st.sampled_from(["mpeg4.avi", "h264.mkv", "h264.mp4"]), at=st.floats(0, 1))
def test_a_file_cut_anywhere_gives_its_first_frames(reader, videos, tmp_path, which, at):
    "Cut at any byte: `VideoError`, or exactly the first frames of the whole file (none patched up, none misplaced)."
    src, sha = videos[which]
    data = src.read_bytes()
    p = tmp_path / f"cut_{which}"; p.write_bytes(data[: int(at * len(data))])
    res = check_answer(reader.ask(p), p)
    if "ok" in res:
        n = res["ok"][0]
        assert res["sha"] == sha[:n], f"{which} cut at byte {int(at * len(data))} of {len(data)}: frames differ from the whole file's"
        probe = check_answer(reader.ask(p, "probe"), p)
        assert probe["ok"][0] == n                                  # the index and the reader agree on the count


@given(which=st.sampled_from(["mpeg4.avi", "h264.mkv", "h264.mp4"]), at=st.floats(0, 1), junk=st.binary(min_size=1, max_size=300),
       op=st.sampled_from(["read", "probe", "iter", "indices"]), threaded=st.booleans())
def test_a_file_damaged_anywhere_gives_frames_or_a_clear_error(reader, videos, tmp_path, which, at, junk, op, threaded):
    "Bytes overwritten anywhere (headers, index, frames): frames of the right kind, or `VideoError` naming the file."
    data = videos[which][0].read_bytes()
    i = int(at * len(data))
    p = tmp_path / f"bad_{which}"; p.write_bytes(data[:i] + junk + data[i + len(junk):])
    kw = dict(indices=[0, 5, 11, 23, 5], threaded=threaded) if op == "indices" else {}
    res = check_answer(reader.ask(p, "read" if op == "indices" else op, **kw), p)
    if "ok" in res and op == "indices": assert res["ok"][0] == 5 and res["sha"][1] == res["sha"][4]   # as asked, repeats too


def test_the_reader_process_reports_hangs_and_crashes(tmp_path):
    "The harness itself: a reader that sleeps, or dies, fails the test with a message (so the properties above can fail)."
    r = Reader()
    r.start()
    r.p.stdin.write("not json\n"); r.p.stdin.flush()                  # the server dies on a request it cannot parse
    with pytest.raises(pytest.fail.Exception, match="died"):
        r.ask(tmp_path / "x.avi")
    global TIMEOUT
    saved, TIMEOUT = TIMEOUT, 1
    try:
        r.p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
        with pytest.raises(pytest.fail.Exception, match="a hang"):
            r.ask(tmp_path / "x.avi")
    finally: TIMEOUT = saved
    with pytest.raises(AssertionError, match="IndexError instead of VideoError"):
        check_answer(dict(error="IndexError", message="x"), tmp_path / "x.avi")


# text parsers
from vivit_edu.data.datasets import read_class_index, read_split_list, RLDD_FILE, UCF_NAME, find_rldd, VIDEO_EXTENSIONS

TEXT = st.one_of(st.text(max_size=300), st.binary(max_size=300), st.lists(st.text(max_size=20), max_size=8).map("\n".join))


def write(path: Path, data) -> Path:
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass")); return path


@given(data=TEXT)
@example(data="1 A\n2 B\n")
@example(data="\u00b2 A")                                           # a digit int() does not read
@example(data="1 A\x00B")
def test_class_index_on_any_text(tmp_path, data):
    p = write(tmp_path / "classInd.txt", data)
    try: names = read_class_index(p)
    except ValueError as e: assert str(e).startswith(f"{p}"), e; return
    assert names and all(n and n.isprintable() and not any(c.isspace() for c in n) for n in names), names


NAME = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cc", "Cs", "Zs", "Zl", "Zp"], exclude_characters="\x85\x1c\x1d\x1e\x1f\u180e"),
               min_size=1, max_size=12).filter(lambda s: s.isprintable() and not any(c.isspace() for c in s))


@given(names=st.lists(NAME, min_size=1, max_size=10), crlf=st.booleans(), bom=st.booleans(), blank=st.booleans())
def test_class_index_round_trip(tmp_path, names, crlf, bom, blank):
    nl = "\r\n" if crlf else "\n"
    text = ("\ufeff" if bom else "") + nl.join(f"{i} {n}" + ("  " if blank else "") for i, n in enumerate(names, 1)) + (nl * 2 if blank else nl)
    assert read_class_index(write(tmp_path / "classInd.txt", text)) == names


@given(data=TEXT)
@example(data="A/v_A_g01_c01.avi 1\nA/v_A_g01_c02.avi\n")
@example(data="A/b/c.avi")
@example(data="A/x.txt 1")
def test_split_list_on_any_text(tmp_path, data):
    p = write(tmp_path / "trainlist01.txt", data)
    try: rels = read_split_list(p)
    except ValueError as e: assert str(e).startswith(f"{p}"), e; return
    for r in rels:
        cls, name = r.split("/")                                   # exactly one folder and one file
        assert cls and name and Path(name).suffix.lower() in VIDEO_EXTENSIONS and r.isprintable(), r


@given(rows=st.lists(st.tuples(NAME.filter(lambda s: "/" not in s and "\\" not in s), NAME.filter(lambda s: "/" not in s and "\\" not in s),
                               st.sampled_from(VIDEO_EXTENSIONS), st.none() | st.integers(1, 101)), max_size=10),
       crlf=st.booleans(), windows=st.booleans())
def test_split_list_round_trip(tmp_path, rows, crlf, windows):
    sep, nl = "\\" if windows else "/", "\r\n" if crlf else "\n"
    text = nl.join(f"{c}{sep}{f}{x}" + ("" if k is None else f" {k}") for c, f, x, k in rows) + nl
    assert read_split_list(write(tmp_path / "list.txt", text)) == [f"{c}/{f}{x}" for c, f, x, _ in rows]


RLDD_NAMES_OK = {f"{s}.{x}" for s in (0, 5, 10) for x in ("mov", "mp4", "m4v", "avi", "mkv")}


@given(name=st.one_of(st.text(max_size=12), st.sampled_from(sorted(RLDD_NAMES_OK)).flatmap(
    lambda n: st.tuples(st.text(max_size=2), st.sampled_from([n, n.upper(), n.title()]), st.text(max_size=2)).map("".join))))
@example(name="5.mov\n")
@example(name="05.mov")
@example(name="10.MOV")
def test_rldd_file_pattern(name):
    "A recording's name is exactly 0, 5 or 10 with a video suffix (any case): nothing more, nothing less."
    m = RLDD_FILE.match(name)
    assert bool(m) == (name.lower() in RLDD_NAMES_OK), name
    if m: assert int(m[1]) in (0, 5, 10)


@given(files=st.lists(st.tuples(st.sampled_from(["01", "02", "17", "60"]),
                                st.one_of(st.sampled_from(sorted(RLDD_NAMES_OK)), st.sampled_from(["5.txt", "15.mov", "0.mov.part", "notes"]))),
                      min_size=1, max_size=8, unique=True),
       nest=st.sampled_from(["Fold1_part1", "Fold1_part1/Fold1_part1", "fold3_part2"]))
def test_find_rldd_finds_exactly_the_recordings(tmp_path_factory, files, nest):
    root = tmp_path_factory.mktemp("rldd")
    for subject, name in files:
        (root / nest / subject).mkdir(parents=True, exist_ok=True); (root / nest / subject / name).write_bytes(b"")
    want = sorted((s, int(n.split(".")[0]), root / nest / s / n) for s, n in files if n.lower() in RLDD_NAMES_OK)
    if not want:
        with pytest.raises(FileNotFoundError, match=re.escape(str(root))): find_rldd(root)
    else: assert sorted(find_rldd(root)) == want


@given(cls=NAME.filter(lambda s: "_" not in s), g=st.integers(0, 99), c=st.integers(0, 99), tail=st.sampled_from(["", "\n", " ", ".bak"]))
def test_ucf_name_pattern(cls, g, c, tail):
    m = UCF_NAME.match(f"v_{cls}_g{g:02d}_c{c:02d}.avi{tail}")
    assert bool(m) == (tail == "")
    if m: assert (m["cls"], int(m["group"]), int(m["clip"])) == (cls, g, c)
