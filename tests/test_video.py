"""mcr.media.video on real clips and on videos made with ffmpeg, with the real decoders."""

from __future__ import annotations

import json
import re
import subprocess
import threading
import tracemalloc

import numpy as np
import pytest
from media import MEDIA, copy_to, ffmpeg, make_bad_file, read_code
from procs import worker

from mcr.media.video import NoAudioError, Video, VideoError
from mcr.types import Frames, TimeSpan, TimeSpanError

# name: (duration, fps, frame_count, (width, height), has_audio)
CLIPS = {
    "boats.mp4": (12.5, 24.0, 300, (640, 360), True),
    "kitchen_segment3.mp4": (6.0, 15.0, 90, (640, 480), False),
    "internvid_example1.mp4": (8.0, 5.0, 40, (640, 480), False),
    "megamind.mp4": (11.303, 23.976, 271, (720, 528), True),
    "pedestrians.mp4": (79.5, 10.0, 795, (768, 576), False),
}

needs_media = pytest.mark.skipif(not MEDIA.is_dir(), reason=f"real clips not found at {MEDIA}")


# ------------------------------------------------------------------ real clips


@needs_media
@pytest.mark.parametrize("name", sorted(CLIPS))
def test_real_clip_properties(name):
    duration, fps, count, size, has_audio = CLIPS[name]
    with Video(MEDIA / name) as v:
        assert v.path == (MEDIA / name).resolve()
        assert v.duration == pytest.approx(duration, abs=0.01)
        assert v.fps == pytest.approx(fps, abs=0.01)
        assert v.frame_count == count
        assert v.size == size == (v.width, v.height)
        assert v.has_audio is has_audio
        assert v.span == TimeSpan(0, v.duration)
        info = v.info()
        assert json.loads(json.dumps(info)) == info
        assert info["frame_count"] == count and info["has_audio"] is has_audio
        assert name in repr(v)


@pytest.mark.slow
@needs_media
@pytest.mark.parametrize("name", sorted(CLIPS))
def test_real_clip_frames(name):
    duration, _, _, (w, h), _ = CLIPS[name]
    v = Video(MEDIA / name)
    f = v.frames(fps=1)
    assert isinstance(f, Frames)
    assert len(f) == int(np.floor(duration + 0.5))
    assert f.images.shape == (len(f), h, w, 3) and f.images.dtype == np.uint8
    assert f.timestamps == sorted(f.timestamps) and 0 <= f.timestamps[0] and f.timestamps[-1] < duration
    assert len(f.indices) == len(f) and f.indices == sorted(set(f.indices))
    assert f.source == str(v.path) and f.video_id == v.id
    assert f.images.std() > 5  # real pictures, not blank buffers
    few = v.frames(max_frames=4, max_pixels=200 * 200)
    assert len(few) == 4 and few.images.shape[1] * few.images.shape[2] <= 200 * 200


@needs_media
@pytest.mark.parametrize("name", ["boats.mp4", "megamind.mp4"])
def test_real_clip_audio(name):
    v = Video(MEDIA / name)
    a = v.audio()
    assert a.dtype == np.float32 and a.ndim == 1
    assert len(a) == round(v.duration * 16000)
    assert np.abs(a).max() <= 1.0 and np.sqrt(np.mean(a**2)) > 0.01
    part = v.audio("3-5")
    assert len(part) == 32000
    # a span decodes the same samples as the whole track (within resampling jitter)
    assert np.corrcoef(part, a[48000:80000])[0, 1] > 0.98


@needs_media
@pytest.mark.parametrize("name", ["kitchen_segment3.mp4", "internvid_example1.mp4", "pedestrians.mp4"])
def test_no_audio_track_raises(name):
    v = Video(MEDIA / name)
    assert not v.has_audio
    with pytest.raises(NoAudioError, match="has no audio track") as err:
        v.audio()
    assert isinstance(err.value, VideoError) and name in str(err.value)


# ------------------------------------------------------------ generated videos


def test_timestamps_are_the_real_frames(code_video):
    v = Video(code_video)
    assert (v.duration, v.fps, v.frame_count, v.size) == (10.0, 25.0, 250, (320, 240))
    f = v.frames(fps=2)
    requested = [(k + 0.5) / 2 for k in range(20)]
    assert len(f) == 20
    for t, ts, idx, img in zip(requested, f.timestamps, f.indices, f.images):
        assert read_code(img) == idx  # the picture is the frame we say it is
        assert ts == pytest.approx(idx / 25, abs=1e-3)  # at its real presentation time
        assert ts <= t + 1e-6 < ts + 1 / 25  # the frame on screen at the requested time


def test_native_rate_gives_every_frame_once(code_video):
    f = Video(code_video).frames(fps=25)
    assert f.indices == list(range(250))
    assert [read_code(img) for img in f.images] == list(range(250))
    assert len(Video(code_video).frames("0-1", fps=100)) == 25  # above the native rate: deduped
    assert Video(code_video).frames(fps=1e9).indices == list(range(250))  # and no huge time grid


def test_non_integer_frame_rate(ntsc_video):
    v = Video(ntsc_video)
    assert v.fps == pytest.approx(29.97, abs=0.01)
    f = v.frames("1-3", fps=10)
    assert len(f) == 20
    for k, (ts, idx, img) in enumerate(zip(f.timestamps, f.indices, f.images)):
        assert read_code(img) == idx
        assert ts == pytest.approx(idx * 1001 / 30000, abs=1e-3)
        assert abs(ts - (1 + (k + 0.5) / 10)) < 1001 / 30000


@pytest.mark.parametrize(
    "span", ["00:02-00:04", "2-4", "2 to 4", [2, 4], (2.0, 4.0), {"start": 2, "end": 4}, TimeSpan(2, 4)]
)
def test_span_forms(code_video, span):
    f = Video(code_video).frames(span, fps=5)
    assert f.indices == [52 + 5 * k for k in range(10)]  # centres 2.1, 2.3, ... 3.9 s at 25 fps


def test_span_is_clamped(code_video):
    v = Video(code_video)
    f = v.frames("8-30", fps=5)
    assert len(f) == 10 and 8 <= f.timestamps[0] and f.timestamps[-1] < 10
    past = v.frames("20-30")
    assert past.indices == [249]
    with pytest.raises(TimeSpanError):
        v.frames("4-2")


def test_max_frames_spreads_over_the_span(code_video):
    v = Video(code_video)
    f = v.frames(fps=25, max_frames=5)
    assert len(f) == 5
    assert f.timestamps == pytest.approx([1, 3, 5, 7, 9], abs=1 / 25)
    assert len(v.frames(fps=1, max_frames=100)) == 10  # fewer asked for by fps: fps wins
    g = v.frames("4-6", fps=25, max_frames=4)
    assert g.timestamps == pytest.approx([4.25, 4.75, 5.25, 5.75], abs=1 / 25)


@pytest.mark.parametrize("max_pixels", [10_000, 5_000, 48 * 36, 1_234, 50])  # decord cannot make 48x36: PIL does
def test_max_pixels(code_video, max_pixels):
    f = Video(code_video).frames("0-2", fps=2, max_pixels=max_pixels)
    _, h, w, _ = f.images.shape
    assert w * h <= max_pixels
    assert w * h >= 0.9 * max_pixels - (w + h)  # not needlessly small
    assert abs(w / h - 4 / 3) < 0.1  # the shape is kept, down to 8x6 for 50 pixels
    if w >= 40:
        assert [read_code(img) for img in f.images] == f.indices


def test_max_pixels_above_size_keeps_size(code_video):
    f = Video(code_video).frames("0-1", max_pixels=1_000_000)
    assert f.images.shape[1:] == (240, 320, 3)


@needs_media
def test_max_pixels_on_real_clip():
    f = Video(MEDIA / "boats.mp4").frames(fps=0.5, max_pixels=224 * 224)
    _, h, w, _ = f.images.shape
    assert w * h <= 224 * 224 and abs(w / h - 640 / 360) < 0.02


def test_frame_at(code_video):
    v = Video(code_video)
    assert v.frame_at(3.0).indices == [75]
    one = v.frame_at("00:00:07.5", max_pixels=80 * 60)
    assert one.indices == [187] and read_code(one.images[0]) == 187
    assert one.images.shape[1:] == (60, 80, 3)
    assert v.frame_at(99).indices == [249]
    assert v.frame_at(0).timestamps == [0.0]


def test_bad_arguments(code_video):
    v = Video(code_video)
    for kwargs in ({"fps": 0}, {"fps": -1}, {"fps": float("nan")}, {"max_frames": 0}, {"max_pixels": 0}):
        with pytest.raises(ValueError):
            v.frames(**kwargs)
    with pytest.raises(ValueError):
        v.frames("soon")
    with pytest.raises(ValueError):
        v.audio(sr=0)


def test_audio_tone_and_timing(code_video):
    v = Video(code_video)
    assert v.has_audio
    a = v.audio()
    assert len(a) == 160_000 and a.dtype == np.float32
    assert np.abs(a[: int(4.95 * 16000)]).max() < 0.01  # silent before 5 s
    tone = a[int(5.05 * 16000) :]
    assert 0.6 < np.abs(tone).max() <= 0.75  # stereo 0.5 sines downmixed to mono
    spectrum = np.abs(np.fft.rfft(tone * np.hanning(len(tone))))
    assert np.fft.rfftfreq(len(tone), 1 / 16000)[spectrum.argmax()] == pytest.approx(440, abs=2)
    part = v.audio("4-6")  # seeks: the tone must start 1 s into the span
    onset = np.argmax(np.abs(part) > 0.05) / 16000
    assert len(part) == 32_000 and onset == pytest.approx(1.0, abs=0.005)
    assert len(v.audio(sr=8000)) == 80_000
    assert len(v.audio("9-20")) == 16_000  # clamped to the video
    assert len(v.audio("20-30")) == 0


def test_no_audio_on_generated_video(long_video):
    with pytest.raises(NoAudioError):
        Video(long_video).audio("0-1")


def test_threads_share_one_video(code_video):
    v = Video(code_video)
    results: dict[int, list[int]] = {}

    def work(k):
        f = v.frames((k, k + 2), fps=5)
        results[k] = [read_code(img) for img in f.images]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(4):
        assert results[k] == v.frames((k, k + 2), fps=5).indices


def test_close_and_reuse(code_video):
    v = Video(code_video)
    with v:
        assert len(v.frames("0-1", fps=2)) == 2
    assert len(v.frames("0-1", fps=2)) == 2  # decoders reopen after close


# --------------------------------------------------------------------- memory


def test_memory_follows_frames_asked_for_not_video_length(long_video):
    v = Video(long_video)
    assert v.duration == pytest.approx(600) and v.frame_count == 3000
    v.frames(max_frames=1)  # open the decoder and read the frame index first
    frame_bytes = 320 * 240 * 3
    for kwargs, n in (({"fps": 5, "max_frames": 16}, 16), ({"span": "100-400", "fps": 0.5}, 150)):
        tracemalloc.start()
        try:
            f = v.frames(**kwargs)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert len(f) == n
        # the result plus at most one decoded chunk, never the 3000 frames of the video
        assert peak < (n + min(n, 32)) * frame_bytes + (1 << 20), peak


def test_rss_stays_bounded_on_long_video(long_video):
    proc = subprocess.run(worker("video_rss", long_video), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["n"] == 24
    # all 3000 frames would be ~690 MB; 24 frames are ~5.5 MB
    assert out["growth"] < 64 * 2**20, out


# ------------------------------------------------------------------ bad input

BAD_KINDS = ["missing", "directory", "text", "png", "zero_bytes", "truncated", "corrupt"]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_files_give_video_error(kind, tmp_path, code_video):
    path = make_bad_file(kind, tmp_path, code_video)
    with pytest.raises(VideoError) as err:
        Video(path).frames(fps=25)  # opening refuses it, or decoding the damage does
    message = str(err.value)
    assert path.name in message
    assert "Traceback" not in message and len(message) < 600
    assert not re.search(r"\d{9}|\.cc:\d|av_read_frame|avcodec_", message), message  # no decoder jargon


@pytest.mark.parametrize(
    "kind, words",
    [
        ("missing", "not found"),
        ("directory", "directory"),
        ("zero_bytes", "empty"),
        ("text", "not a video"),
        ("png", "still image"),
        ("truncated", "copied completely"),
    ],
)
def test_bad_files_are_refused_at_open_with_a_reason(kind, words, tmp_path, code_video):
    with pytest.raises(VideoError, match=words):
        Video(make_bad_file(kind, tmp_path, code_video))


def test_a_cut_off_tail_is_used_up_to_the_cut_and_the_rest_recorded_as_damaged(tmp_path, code_video, monkeypatch):
    """An mp4 written for streaming (index at the front) whose last 70% is cut off: decord cannot
    open it, but the packets up to the cut are intact. The video is that part, with its frames
    and audio, and the missing span is recorded."""
    monkeypatch.setenv("MCR_CACHE", str(tmp_path / "cache"))
    path = make_bad_file("truncated_faststart", tmp_path, code_video)
    v = Video(path)
    assert v.path == path.resolve() and 1.0 < v.duration < 9.0
    assert [(round(s.start, 2), s.end) for s in v.damaged] == [(round(v.duration, 2), 10.0)]
    assert v.info()["damaged"] == [[v.damaged[0].start, 10.0]]
    got = v.frames(fps=5)
    assert [read_code(img) for img in got.images] == got.indices  # the right frames, in order
    assert got.timestamps[-1] <= v.duration
    if v.duration > 5.5:  # the tone starts at 5 s
        assert v.audio((5.0, v.duration)).std() > 0.05
    salvaged = list((tmp_path / "cache" / "media" / "salvaged").glob("*.mp4"))
    assert len(salvaged) == 1 and not list(salvaged[0].parent.glob(".*tmp*"))
    again = Video(path)  # the salvaged copy is reused
    assert again.duration == v.duration and len(list(salvaged[0].parent.iterdir())) == 1


def test_a_cut_off_file_with_nothing_usable_is_refused(tmp_path, code_video, monkeypatch):
    monkeypatch.setenv("MCR_CACHE", str(tmp_path / "cache"))
    whole = tmp_path / "fast.mp4"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(code_video), "-c", "copy", "-movflags", "+faststart", str(whole)], check=True)  # fmt: skip
    data = whole.read_bytes()
    cut = tmp_path / "stub.mp4"
    cut.write_bytes(data[: data.index(b"mdat") + 2000])  # the index and a sliver of the first frame
    with pytest.raises(VideoError) as err:
        Video(cut)
    assert "stub.mp4" in str(err.value) and "Traceback" not in str(err.value)


def test_corrupt_middle_opens_and_fails_only_where_damaged(tmp_path, code_video):
    v = Video(make_bad_file("corrupt", tmp_path, code_video))  # start and end decode fine
    assert [read_code(img) for img in v.frames("0-1", fps=5).images] == v.frames("0-1", fps=5).indices
    with pytest.raises(VideoError, match="cannot be decoded"):
        v.frames(fps=25)
    assert len(v.frames("0-1", fps=5)) == 5  # still usable after the error
    assert len(v.frame_at(9.9)) == 1


def test_subprocess_survives_bad_files(tmp_path, code_video):
    """No bad file may abort the interpreter (decord can, given the chance)."""
    paths = [make_bad_file(k, tmp_path / k, code_video) for k in BAD_KINDS]
    proc = subprocess.run(worker("video_bad_files", *paths), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "alive", proc.stderr[-2000:]
    assert "[h264 @" not in proc.stderr, proc.stderr[-2000:]  # the decoder's own lines stay out of the terminal


# --------------------------------------------------------------------- hashing


def test_content_hash(tmp_path, code_video):
    v = Video(code_video)
    h = v.content_hash
    assert len(h) == 64 and int(h, 16) >= 0 and v.id == h[:16]
    copy = Video(copy_to(code_video, tmp_path / "renamed copy.mp4"))
    assert copy.content_hash == h and copy.id == v.id
    data = bytearray((tmp_path / "renamed copy.mp4").read_bytes())
    data[len(data) // 2] ^= 0xFF
    changed = tmp_path / "changed.mp4"
    changed.write_bytes(bytes(data))
    assert Video(changed).content_hash != h
    # computed once and cached on the object
    (tmp_path / "renamed copy.mp4").write_bytes(bytes(data))
    assert copy.content_hash == h
    assert v.frames("0-1").video_id == v.id


def test_import_is_lazy():
    out = subprocess.run(
        worker("loaded", "mcr.media.video", "av,decord,torch"), capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------ other containers


@pytest.mark.parametrize("ext", ["ts", "mkv"])
def test_other_containers_keep_frames_and_audio_in_sync(ext, tmp_path, code_video):
    """MPEG-TS starts its clock at ~1.4 s and mkv keeps the AAC priming before the
    video: time 0 is the first frame either way, for frames and audio alike."""

    path = tmp_path / f"code.{ext}"
    ffmpeg("-i", str(code_video), "-c", "copy", str(path))
    v = Video(path)
    assert v.duration == pytest.approx(10.0, abs=0.05) and v.frame_count == 250
    f = v.frames("2-3", fps=5)
    assert [read_code(img) for img in f.images] == f.indices == [52, 57, 62, 67, 72]
    part = v.audio("4-6")
    assert np.argmax(np.abs(part) > 0.05) / 16000 == pytest.approx(1.0, abs=0.01)


def test_a_video_s_hash_is_kept_until_the_file_changes(code_video, tmp_path, monkeypatch):
    from mcr.media import hashes

    monkeypatch.setenv("MCR_CACHE", str(tmp_path / "cache"))
    video = copy_to(code_video, tmp_path / "v.mp4")
    reads = []
    real = hashes.sha256_of
    monkeypatch.setattr(hashes, "sha256_of", lambda p: reads.append(p) or real(p))
    first = Video(video).id
    assert Video(video).id == first and len(reads) == 1  # the second open reads nothing
    assert hashes.cache_path().exists()
    with open(video, "r+b") as f:  # the same size, one byte changed: read again, a new id
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))
    changed = Video(video).id
    assert changed != first and len(reads) == 2
    moved = video.rename(tmp_path / "moved.mp4")
    assert Video(moved).id == changed and len(reads) == 3  # a new path is read once: the same bytes, the same id
    (tmp_path / "not-a-folder").write_text("x")  # a cache that cannot be made: the file is hashed all the same
    monkeypatch.setenv("MCR_CACHE", str(tmp_path / "not-a-folder"))
    assert Video(copy_to(code_video, tmp_path / "w.mp4")).id == first and len(reads) == 4
