"""Benchmark adapters: each reads a benchmark's own published annotation files into ``Sample``s.

Nothing is downloaded: the annotations are read from the path the user names, the
videos are found under the folder they name (see :func:`mcr.eval.samples.resolve_videos`).
The fields each adapter reads are listed in its docstring.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any, Callable

from .samples import EvalError, Sample, duration_group

LETTERS = "ABCDEFGHIJ"
_LETTER_PREFIX = re.compile(r"^\s*\(?([A-J])\)?[.:)]\s+")
_OPTION_LINE = re.compile(r"^\s*\(([A-J])\)\s*(.*)$")


# ------------------------------------------------------------------ reading


def _need(path: str | Path, what: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise EvalError(f"annotation file not found: {p} ({what})")
    return p


def read_records(path: Path) -> list[dict]:
    """Rows of a JSON list, a JSON object of lists, JSON lines, a CSV or a parquet file."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            try:
                import pyarrow.parquet as pq
            except ImportError:
                raise EvalError(f"reading {path} needs pyarrow: pip install 'mcr-agent[eval]'") from None
            return pq.read_table(path).to_pylist()
        if suffix == ".csv":
            with open(path, newline="", encoding="utf-8") as f:
                return list(csv.DictReader(f))
        text = path.read_text(encoding="utf-8")
        if suffix == ".jsonl":
            rows = []
            for n, line in enumerate(text.splitlines(), 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise EvalError(f"{path}:{n}: not a JSON line ({exc.msg})") from None
            return rows
        data = json.loads(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise EvalError(f"cannot read {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise EvalError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    if isinstance(data, dict):
        data = next((v for v in data.values() if isinstance(v, list)), [data])
    if not isinstance(data, list):
        raise EvalError(f"{path}: expected a list of records")
    return data


def _first(folder: Path, patterns: list[str], what: str) -> Path:
    for pattern in patterns:
        found = sorted(folder.glob(pattern))
        if found:
            return found[0]
    raise EvalError(f"annotation file not found in {folder}: expected {' or '.join(patterns)} ({what})")


def strip_letter(option: str) -> str:
    """``"A. a red car"`` -> ``"a red car"``."""
    return _LETTER_PREFIX.sub("", str(option), count=1).strip()


def letter_index(answer: Any, options: list[str]) -> int | None:
    """A gold answer given as a letter, an index or the option's text, as an option index."""
    if answer is None or answer == "":
        return None
    if isinstance(answer, int) and not isinstance(answer, bool):
        return answer if 0 <= answer < len(options) else None
    text = str(answer).strip()
    m = re.fullmatch(r"\(?([A-J])\)?[.:)]?(\s.*)?", text)
    if m and LETTERS.index(m.group(1)) < len(options):
        return LETTERS.index(m.group(1))
    if text.isdigit() and int(text) < len(options):
        return int(text)
    lowered = [o.strip().lower() for o in options]
    return lowered.index(text.lower()) if text.lower() in lowered else None


_YOUTUBE_ID = re.compile(r"(?:[?&]v=|youtu\.be/|/shorts/|/embed/)([A-Za-z0-9_-]{11})(?![A-Za-z0-9_-])")


def youtube_id(url: Any) -> str | None:
    """The 11-character video id of a YouTube link (``watch?v=``, ``youtu.be/``, ``/shorts/``,
    ``/embed/``), or None. Video-MME's per-video files name each video only by its link, and a
    download names the file by this id."""
    m = _YOUTUBE_ID.search(str(url or ""))
    return m.group(1) if m else None


def _num(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


# ----------------------------------------------------------------- adapters


def load_videomme(path: str | Path, **_: Any) -> list[Sample]:
    """Video-MME: ``videomme/test-00000-of-00001.parquet`` (or the same rows as JSON/JSONL), fields
    ``question_id, videoID, video_id, duration, domain, sub_category, task_type, question,
    options ["A. ...", ...], answer "A"``; also the per-video JSON of the official repository
    (``video_id, duration, domain, sub_category, questions: [{question_id, task_type, question,
    options, answer}]``, the video named only by its YouTube ``url``). Videos are ``<videoID>.mp4``, the
    id taken from ``url`` where the row has no ``videoID``."""
    p = _need(path, "Video-MME: videomme/test-00000-of-00001.parquet")
    if p.is_dir():
        p = _first(p, ["videomme/test-*.parquet", "test-*.parquet", "*.parquet", "*.json"], "Video-MME")
    rows = []
    for rec in read_records(p):
        if isinstance(rec.get("questions"), list):
            rows += [{**{k: v for k, v in rec.items() if k != "questions"}, **q} for q in rec["questions"]]
        else:
            rows.append(rec)
    samples = []
    for r in rows:
        options = [strip_letter(o) for o in r.get("options") or r.get("choices") or []]
        video = str(r.get("videoID") or youtube_id(r.get("url")) or r.get("video_id"))
        samples.append(
            Sample(
                id=str(r["question_id"]),
                video=video,
                question=str(r["question"]).strip(),
                options=options,
                gold=letter_index(r.get("answer"), options),
                categories={
                    "duration": r.get("duration") or r.get("duration_category"),
                    "task": r.get("task_type"),
                    "domain": r.get("domain"),
                    "sub_category": r.get("sub_category"),
                },
                candidates=[f"{video}.mp4", f"data/{video}.mp4"],
                meta={"video_id": r.get("video_id"), "url": r.get("url")},
            )
        )
    return samples


def _split_lvbench_question(text: str) -> tuple[str, list[str]]:
    lines = str(text).splitlines()
    first = next((i for i, line in enumerate(lines) if _OPTION_LINE.match(line)), len(lines))
    options = [_OPTION_LINE.match(line).group(2).strip() for line in lines[first:] if _OPTION_LINE.match(line)]
    return "\n".join(lines[:first]).strip(), options


def load_lvbench(path: str | Path, **_: Any) -> list[Sample]:
    """LVBench: ``video_info.meta.jsonl``, one video a line: ``key, type, qa: [{uid, question (the
    options follow as "\\n(A) ..." lines), answer "A", question_type [..], time_reference}]``.
    Videos are ``<key>.mp4``. A question counts in each of its question types."""
    p = _need(path, "LVBench: video_info.meta.jsonl")
    if p.is_dir():
        p = _first(p, ["video_info.meta.jsonl", "data/video_info.meta.jsonl", "*.jsonl"], "LVBench")
    samples = []
    for rec in read_records(p):
        key = str(rec["key"])
        for qa in rec.get("qa") or []:
            question, options = _split_lvbench_question(qa["question"])
            types = qa.get("question_type") or []
            samples.append(
                Sample(
                    id=str(qa["uid"]),
                    video=key,
                    question=question,
                    options=options,
                    gold=letter_index(qa.get("answer"), options),
                    categories={"task": list(types) if isinstance(types, list) else [types], "domain": rec.get("type")},
                    candidates=[f"{key}.mp4"],
                    meta={"time_reference": qa.get("time_reference")},
                )
            )
    return samples


def load_longvideobench(path: str | Path, **_: Any) -> list[Sample]:
    """LongVideoBench: ``lvb_val.json`` (or ``validation-00000-of-00001.parquet``): ``id, video_path,
    question, candidates, correct_choice (an index; absent in the test split), duration_group,
    question_category, topic_category, duration``. Videos are ``videos/<video_path>``."""
    p = _need(path, "LongVideoBench: lvb_val.json")
    if p.is_dir():
        p = _first(p, ["lvb_val.json", "validation-*.parquet", "*.json"], "LongVideoBench")
    samples = []
    for r in read_records(p):
        options = [str(c) for c in r.get("candidates") or []]
        group = r.get("duration_group")
        samples.append(
            Sample(
                id=str(r["id"]),
                video=str(r["video_path"]),
                question=str(r["question"]).strip(),
                options=options,
                gold=letter_index(r.get("correct_choice"), options),
                categories={
                    "duration": f"{group}s" if group is not None else duration_group(_num(r.get("duration"))),
                    "task": r.get("question_category"),
                    "domain": r.get("topic_category"),
                },
                candidates=[str(r["video_path"]), f"videos/{r['video_path']}"],
                meta={"subtitle_path": r.get("subtitle_path"), "duration": r.get("duration")},
            )
        )
    return samples


def load_mlvu(path: str | Path, **_: Any) -> list[Sample]:
    """MLVU (dev): ``json/<n>_<task>.json`` files (a file, or the folder of them), each a list of
    ``video, duration, question, candidates, answer (the option's text), question_type``. Videos are
    ``video/<n>_<task>/<video>``. Open-ended tasks (no candidates) need a judge model and are left out."""
    p = _need(path, "MLVU: json/1_plotQA.json ... or the json folder")
    files = [p] if p.is_file() else sorted((p / "json").glob("*.json")) or sorted(p.glob("*.json"))
    if not files:
        raise EvalError(f"annotation file not found in {p}: expected json/*.json (MLVU)")
    samples = []
    for f in files:
        for n, r in enumerate(read_records(f)):
            options = [str(c) for c in r.get("candidates") or []]
            if not options:
                continue
            task = r.get("question_type") or f.stem.split("_", 1)[-1]
            video = str(r["video"])
            samples.append(
                Sample(
                    id=f"{f.stem}/{n}",
                    video=video,
                    question=str(r["question"]).strip(),
                    options=options,
                    gold=letter_index(r.get("answer"), options),
                    categories={"task": task, "duration": duration_group(_num(r.get("duration")))},
                    candidates=[f"{f.stem}/{video}", f"video/{f.stem}/{video}", f"{task}/{video}"],
                    meta={"duration": r.get("duration")},
                )
            )
    return samples


def load_egoschema(
    path: str | Path, answers: str | Path | None = None, include_unscored: bool = False, **_: Any
) -> list[Sample]:
    """EgoSchema: ``questions.json`` (``q_uid, question, option 0`` ... ``option 4``) and the answers of
    the 500-question subset, ``subset_answers.json`` (``{q_uid: index}``; found beside questions.json
    unless given). Only answered questions are loaded unless ``include_unscored``. Videos are ``<q_uid>.mp4``."""
    p = _need(path, "EgoSchema: questions.json")
    if p.is_dir():
        p = _first(p, ["questions.json"], "EgoSchema")
    answer_file = Path(answers).expanduser() if answers else p.parent / "subset_answers.json"
    gold: dict[str, int] = {}
    if answer_file.is_file():
        try:
            gold = {str(k): int(v) for k, v in json.loads(answer_file.read_text(encoding="utf-8")).items()}
        except (json.JSONDecodeError, ValueError, AttributeError) as exc:
            raise EvalError(f"{answer_file}: expected {{q_uid: option index}} ({exc})") from None
    elif answers:
        raise EvalError(f"answer file not found: {answer_file} (EgoSchema: subset_answers.json)")
    elif not include_unscored:
        raise EvalError(
            f"no EgoSchema answers: {answer_file} not found; pass --answers subset_answers.json "
            "(or --include-unscored to run questions without answers)"
        )
    samples = []
    for r in read_records(p):
        uid = str(r["q_uid"])
        if uid not in gold and not include_unscored:
            continue
        if "question" not in r:
            raise EvalError(f"{p}: question {uid} has no 'question' field")
        options = [str(r[f"option {i}"]) for i in range(10) if f"option {i}" in r]
        samples.append(
            Sample(
                id=uid,
                video=uid,
                question=str(r["question"]).strip(),
                options=options,
                gold=gold.get(uid),
                candidates=[f"{uid}.mp4"],
                meta={"google_drive_id": r.get("google_drive_id")},
            )
        )
    return samples


NEXTQA_GROUPS = {"C": "causal", "T": "temporal", "D": "descriptive"}


def load_nextqa(path: str | Path, **_: Any) -> list[Sample]:
    """NExT-QA (multiple choice): ``val.csv`` / ``test.csv`` with ``video, frame_count, width, height,
    question, answer (an index), qid, type (CW, CH, TN, TC, TP, DL, DC, DO), a0`` ... ``a4``, and
    ``map_vid_vidorID.json`` beside it (video -> ``"<folder>/<vidor id>"``). Videos are
    ``<folder>/<vidor id>.mp4`` (NExTVideo), or ``<video>.mp4``."""
    p = _need(path, "NExT-QA: val.csv")
    if p.is_dir():
        p = _first(p, ["val.csv", "test.csv", "*.csv"], "NExT-QA")
    mapping_file = p.parent / "map_vid_vidorID.json"
    mapping = json.loads(mapping_file.read_text(encoding="utf-8")) if mapping_file.is_file() else {}
    samples = []
    for r in read_records(p):
        video = str(r["video"])
        options = [str(r[f"a{i}"]) for i in range(10) if r.get(f"a{i}") not in (None, "")]
        qtype = str(r.get("type") or "")
        mapped = mapping.get(video)
        samples.append(
            Sample(
                id=f"{video}_{r['qid']}",
                video=video,
                question=str(r["question"]).strip().rstrip("?") + "?",
                options=options,
                gold=letter_index(int(r["answer"]) if str(r.get("answer", "")).isdigit() else None, options),
                categories={"task": qtype or None, "group": NEXTQA_GROUPS.get(qtype[:1])},
                candidates=[f"{mapped}.mp4", f"NExTVideo/{mapped}.mp4"] if mapped else [f"{video}.mp4"],
            )
        )
    return samples


def load_charades_sta(path: str | Path, **_: Any) -> list[Sample]:
    """Charades-STA: ``charades_sta_test.txt``, one query a line: ``<video> <start> <end>##<sentence>``
    (seconds). The answer is a span, scored by temporal IoU. Videos are ``<video>.mp4``."""
    p = _need(path, "Charades-STA: charades_sta_test.txt")
    if p.is_dir():
        p = _first(p, ["charades_sta_test.txt", "*.txt"], "Charades-STA")
    samples = []
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        head, sep, sentence = line.partition("##")
        parts = head.split()
        if not sep or len(parts) != 3 or _num(parts[1]) is None or _num(parts[2]) is None:
            raise EvalError(f"{p}:{n}: expected '<video> <start> <end>##<sentence>', got {line[:80]!r}")
        vid, start, end = parts[0], float(parts[1]), float(parts[2])
        text = sentence.strip().rstrip(".")
        samples.append(
            Sample(
                id=f"{vid}#{n}",
                video=vid,
                question=f"When does this happen in the video: {text}?",
                form="span",
                gold=[start, end],
                candidates=[f"{vid}.mp4"],
                meta={"query": text},
            )
        )
    return samples


def load_jsonl(path: str | Path, **_: Any) -> list[Sample]:
    """The generic format, one question a line: ``video`` and ``question`` (required), ``id``,
    ``options`` (a list), ``answer`` (a letter, index or option text for options; else text or a
    number), ``span`` ([start, end] or "HH:MM:SS-HH:MM:SS") for grounding, ``form`` (choice, span,
    count or text; inferred when absent), ``category`` or ``categories`` (an object), ``duration_group``."""
    from mcr.types import TimeSpan, TimeSpanError

    p = _need(path, "a JSONL file of {video, question, options?, answer | span}")
    samples = []
    for n, r in enumerate(read_records(p), 1):
        if "video" not in r or "question" not in r:
            raise EvalError(f"{p}: record {n} needs 'video' and 'question'")
        options = [str(o) for o in r.get("options") or []]
        form = r.get("form") or (
            "choice"
            if options
            else "span"
            if r.get("span") is not None
            else "count"
            if isinstance(r.get("answer"), int) and not isinstance(r.get("answer"), bool)
            else "text"
        )
        gold: Any = None
        if form == "choice":
            gold = letter_index(r.get("answer"), options)
            if gold is None and r.get("answer") is not None:
                raise EvalError(f"{p}: record {n}: answer {r.get('answer')!r} is not one of the options")
        elif form == "span":
            try:
                span = TimeSpan.parse(r.get("span", r.get("answer")))
            except TimeSpanError as exc:
                raise EvalError(f"{p}: record {n}: {exc}") from None
            gold = [span.start, span.end]
        elif form == "count" and r.get("answer") is not None:
            gold = int(r["answer"])
        elif r.get("answer") is not None:
            gold = str(r["answer"])
        cats = dict(r.get("categories") or {})
        if r.get("category") is not None:
            cats.setdefault("task", r["category"])
        if r.get("duration_group") is not None:
            cats.setdefault("duration", r["duration_group"])
        samples.append(
            Sample(
                id=str(r.get("id", n)),
                video=str(r["video"]),
                question=str(r["question"]).strip(),
                form=form,
                options=options,
                gold=gold,
                categories=cats,
                meta=dict(r.get("meta") or {}),
            )
        )
    return samples


BENCHMARKS: dict[str, Callable[..., list[Sample]]] = {
    "videomme": load_videomme,
    "lvbench": load_lvbench,
    "longvideobench": load_longvideobench,
    "mlvu": load_mlvu,
    "egoschema": load_egoschema,
    "nextqa": load_nextqa,
    "charades-sta": load_charades_sta,
    "jsonl": load_jsonl,
}
ALIASES = {
    "video-mme": "videomme",
    "lvb": "longvideobench",
    "next-qa": "nextqa",
    "charades": "charades-sta",
    "generic": "jsonl",
}


def benchmark_name(name: str) -> str:
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in BENCHMARKS:
        raise EvalError(f"unknown benchmark {name!r}; one of {', '.join(BENCHMARKS)}")
    return key


def load_benchmark(name: str, annotations: str | Path, **options: Any) -> list[Sample]:
    """The samples of a benchmark, in annotation order; ids must be unique."""
    key = benchmark_name(name)
    try:
        samples = BENCHMARKS[key](annotations, **options)
    except KeyError as exc:
        raise EvalError(f"{annotations}: a record lacks the field {exc} that {key} annotations have") from None
    seen: set[str] = set()
    for s in samples:
        if s.id in seen:
            raise EvalError(f"{annotations}: question id {s.id!r} appears twice")
        seen.add(s.id)
    if not samples:
        raise EvalError(f"{annotations}: no questions found for {key}")
    return samples


__all__ = ["BENCHMARKS", "benchmark_name", "letter_index", "load_benchmark", "read_records", "strip_letter"]
