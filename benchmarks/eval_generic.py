"""A small end-to-end evaluation set in the generic JSONL format: 20 test-made videos, each with
one spoken sentence (espeak-ng) and one drawn text (ffmpeg drawtext) at known times, and one
question about each whose answer is in the video (speech, on-screen text, or when a sentence
is said). Needs ffmpeg and espeak-ng.

    python benchmarks/eval_generic.py OUT_DIR            # writes OUT_DIR/videos/*.mp4 and OUT_DIR/questions.jsonl
    mcr-agent eval jsonl --annotations OUT_DIR/questions.jsonl --videos OUT_DIR/videos \\
        --model gemma3-270m --agent baseline --index shots,transcript,ocr --out OUT_DIR/results
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
SECONDS = 12.0

# (spoken sentence, spoken at, question kind, question, options, answer index)
ITEMS = [
    (
        "The orange cat is sleeping on the piano.",
        "PLATFORM 7",
        "speech",
        "Which animal is mentioned in the speech?",
        ["a dog", "a cat", "a horse", "a bird"],
        1,
    ),
    (
        "Please water the tomato plants tomorrow.",
        "MUSEUM CLOSED",
        "speech",
        "Which plants should be watered?",
        ["roses", "tomato plants", "cactus", "apple trees"],
        1,
    ),
    (
        "The train to Edinburgh leaves at noon.",
        "EXIT 14",
        "speech",
        "Where does the train go?",
        ["London", "Paris", "Edinburgh", "Dublin"],
        2,
    ),
    (
        "My grandmother baked a chocolate cake.",
        "FRESH BREAD",
        "speech",
        "What did the grandmother bake?",
        ["a chocolate cake", "bread", "cookies", "a pie"],
        0,
    ),
    (
        "The football match was cancelled because of snow.",
        "GATE B",
        "speech",
        "Why was the match cancelled?",
        ["rain", "wind", "fog", "snow"],
        3,
    ),
    (
        "I left my umbrella on the red bus.",
        "NO PARKING",
        "speech",
        "Where was the umbrella left?",
        ["on the red bus", "at home", "in a taxi", "at school"],
        0,
    ),
    (
        "The library opens at nine in the morning.",
        "SALE 50",
        "speech",
        "When does the library open?",
        ["at seven", "at eight", "at nine", "at ten"],
        2,
    ),
    (
        "We saw three dolphins near the harbour.",
        "HOTEL",
        "speech",
        "Which animals were seen near the harbour?",
        ["seals", "dolphins", "whales", "sharks"],
        1,
    ),
    (
        "The concert starts after dinner.",
        "WIFI SEAGULL",
        "text",
        "What is the wifi password shown on screen?",
        ["lighthouse", "seagull", "harbour", "anchor"],
        1,
    ),
    (
        "Turn left at the bakery.",
        "ROOM 404",
        "text",
        "Which room number is shown on screen?",
        ["101", "202", "303", "404"],
        3,
    ),
    (
        "It will be sunny on Friday.",
        "OPEN MONDAY",
        "text",
        "Which day is written on screen?",
        ["Monday", "Tuesday", "Friday", "Sunday"],
        0,
    ),
    (
        "The kettle is in the kitchen.",
        "BLUE LINE",
        "text",
        "Which line colour is written on screen?",
        ["red", "green", "blue", "yellow"],
        2,
    ),
    (
        "Do not forget the keys.",
        "PRICE 12 EUROS",
        "text",
        "What price is shown on screen?",
        ["5 euros", "12 euros", "20 euros", "8 euros"],
        1,
    ),
    (
        "The meeting moved to Thursday.",
        "TERMINAL 3",
        "text",
        "Which terminal is shown on screen?",
        ["terminal 1", "terminal 2", "terminal 3", "terminal 5"],
        2,
    ),
    (
        "Our neighbour plays the violin.",
        "SPEED 30",
        "text",
        "Which speed limit is shown on screen?",
        ["30", "50", "70", "90"],
        0,
    ),
    (
        "The parcel arrived this morning.",
        "CAFE LUNA",
        "text",
        "What is the name of the cafe on screen?",
        ["Cafe Sol", "Cafe Luna", "Cafe Roma", "Cafe Mar"],
        1,
    ),
    ("The bridge is closed for repairs.", "ZOO", "when", "When does the speaker say the bridge is closed?", None, None),
    ("My brother fixed the old bicycle.", "PARK", "when", "When does the speaker talk about the bicycle?", None, None),
    ("The soup needs more salt.", "MENU", "when", "When is the soup mentioned?", None, None),
    ("The plane landed in heavy rain.", "TAXI", "when", "When is the plane mentioned?", None, None),
]


def run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed: {proc.stderr.strip()[:500]}")


def make_video(path: Path, sentence: str, spoken_at: float, text: str, shown: tuple[float, float]) -> float:
    """The video; returns how long the sentence lasts."""
    wav = path.with_suffix(".wav")
    run(["espeak-ng", "-s", "150", "-w", str(wav), sentence])
    import wave

    with wave.open(str(wav)) as w:
        spoken_for = w.getnframes() / w.getframerate()
    font = f"fontfile={FONT}:" if FONT.exists() else ""
    draw = (
        f"drawtext={font}text='{text}':fontsize=28:fontcolor=white:x=(w-text_w)/2:y=(h-text_h)/2:"
        f"enable='between(t,{shown[0]},{shown[1]})'"
    )
    ms = int(spoken_at * 1000)
    run(
        [
            "ffmpeg",
            "-nostdin",
            "-y",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            f"color=c=0x1d2b44:size=320x180:rate=10:duration={SECONDS}",
            "-i",
            str(wav),
            "-filter_complex",
            f"[1:a]aresample=16000,adelay={ms}|{ms},apad,atrim=0:{SECONDS}[a];[0:v]{draw}[v]",
            "-map",
            "[v]",
            "-map",
            "[a]",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-ar",
            "16000",
            "-ac",
            "1",
            "-t",
            str(SECONDS),
            str(path),
        ]
    )
    wav.unlink()
    return spoken_for


def build(out: Path) -> Path:
    videos = out / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (sentence, text, kind, question, options, answer) in enumerate(ITEMS):
        spoken_at = 1.0 + (i % 4) * 1.5
        shown = (6.0 + (i % 3), 10.0 + (i % 3) * 0.5)
        name = f"cue{i:02d}.mp4"
        spoken_for = make_video(videos / name, sentence, spoken_at, text, shown)
        record = {"id": f"cue{i:02d}", "video": name, "question": question, "category": kind}
        if kind == "when":
            record["span"] = [spoken_at, round(spoken_at + spoken_for, 2)]
        else:
            record |= {"options": options, "answer": "ABCD"[answer]}
        lines.append(json.dumps(record))
    path = out / "questions.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    print(build(Path(sys.argv[1])))
