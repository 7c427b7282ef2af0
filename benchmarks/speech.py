"""The speech stage against plain faster-whisper and the encoder-alone ceiling, in one run.

    python benchmarks/speech.py [--minutes 10] [--work DIR]

On the perception benchmark's long video (espeak-ng speech over its whole length, so
voice-activity filtering drops almost nothing), each in its own process with the same
threads (``MCR_ASR_THREADS``, default 2), reporting its peak memory:

- plain faster-whisper: ``WhisperModel.transcribe`` with VAD and word timestamps, one
  process, on the first ``--minutes`` of audio (decoded once, outside the timing);
- the ``transcript`` stage (``TranscriptStage.run_chunk`` over the same audio, chunk by
  chunk), on half the audio and on all of it, so its memory can be seen not to grow;
- the Whisper encoder alone on eight full 30 s windows: the ceiling for speech this dense.

Printed: seconds, real-time factor, peak MiB, and the stage's speed as a share of the
ceiling and as a multiple of plain faster-whisper.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from long_video import make_long_video

HERE = Path(__file__).resolve().parent


def child_plain(video_path: str, minutes: float) -> dict:
    from faster_whisper import WhisperModel

    from mcr.media.video import Video
    from mcr.tools.asr import SAMPLE_RATE, _threads, resolve_model
    from mcr.types import TimeSpan

    video = Video(video_path)
    end = min(video.duration, minutes * 60)
    audio = video.audio(TimeSpan(0, end), sr=SAMPLE_RATE)
    model = WhisperModel(resolve_model(), device="cpu", compute_type="int8", cpu_threads=_threads())
    list(model.transcribe(audio[: SAMPLE_RATE * 5], language="en")[0])  # loaded and warm outside the timing
    t0 = time.perf_counter()
    segments, _ = model.transcribe(audio, language="en", vad_filter=True, word_timestamps=True)
    sentences = sum(1 for _ in segments)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "audio_s": end, "rtf": end / seconds, "sentences": sentences}


def peak_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_child(*args: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, timeout=3600)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1][:200]}
    return json.loads(lines[-1])


def child_main(args: list[str]) -> int:
    sys.path.insert(0, str(HERE))
    from perception import child_asr, child_encoder

    name = args[0]
    if name == "plain":
        out = child_plain(args[1], float(args[2]))
    elif name == "stage":
        out = child_asr(args[1], float(args[2]))
    elif name == "encoder":
        out = child_encoder(args[1])
    else:
        raise SystemExit(f"unknown part {name}")
    out["peak_mib"] = peak_mib()
    print(json.dumps(out))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "mcr-perception-bench"))
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    minutes = max(args.minutes, 4.0)  # the encoder ceiling reads the first 240 s
    video = make_long_video(work / f"long_{int(round(minutes))}min.mp4", minutes=int(round(minutes)))
    os.environ.setdefault("MCR_ASR_THREADS", "2")
    rows = [
        (f"plain faster-whisper (VAD, word times), {minutes:g} min", run_child("plain", str(video), str(minutes))),
        (f"transcript stage, {minutes / 2:g} min", run_child("stage", str(video), str(minutes / 2))),
        (f"transcript stage, {minutes:g} min", run_child("stage", str(video), str(minutes))),
        ("ceiling: whisper encoder alone, 240 s", run_child("encoder", str(video))),
    ]
    print(f"speech on {video.name}, {os.environ['MCR_ASR_THREADS']} threads, tiny.en int8")
    print(f"{'':48} {'seconds':>8} {'x real time':>12} {'peak MiB':>9}  sentences")
    for name, r in rows:
        if "error" in r:
            print(f"{name:48} error: {r['error']}")
            continue
        print(f"{name:48} {r['seconds']:8.1f} {r['rtf']:12.1f} {r['peak_mib']:9.0f}  {r.get('sentences', '-')}")
    plain, stage, ceiling = rows[0][1], rows[2][1], rows[3][1]
    if all("rtf" in r for r in (plain, stage, ceiling)):
        print(
            f"the stage runs at {stage['rtf'] / ceiling['rtf']:.0%} of the encoder-alone ceiling (target 85%) and "
            f"{stage['rtf'] / plain['rtf']:.2f}x plain faster-whisper (target 1.3x); peak memory "
            f"{rows[1][1].get('peak_mib', 0):.0f} MiB at {minutes / 2:g} min, {stage['peak_mib']:.0f} MiB at {minutes:g} min"
        )
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        sys.exit(child_main(sys.argv[2:]))
    sys.exit(main())
