"""``mcr-agent watch SOURCE``: a live stream into memory, with questions typed while it plays,
standing ``--when`` queries, and ``mcr-agent ask SESSION "question"`` from another terminal."""

from __future__ import annotations

import argparse
import json
import queue
import sys
import threading
import time

from mcr.cli.options import PROG, add_model_options, memory_from, model_from, positive
from mcr.types import format_time


def register(sub: argparse._SubParsersAction) -> None:
    w = sub.add_parser(
        "watch",
        help="watch a live stream (rtsp, rtmp, udp, srt, .m3u8, webcam:N, a growing file) into memory",
        description="Watch a live stream into memory segment by segment. Type a question and press "
        "Enter to ask it about the stream so far; Ctrl-C stops (the last segment is kept).",
    )
    w.add_argument("source", help="rtsp://, rtmp://, udp://, srt://, an .m3u8 address, webcam:N or a growing file")
    w.add_argument("--stages", default=None, help="index stages per segment (default: shots,transcript,ocr,embeddings)")
    w.add_argument("--segment", type=positive, default=10.0, metavar="SECONDS", help="segment length (default 10)")
    w.add_argument(
        "--when", action="append", default=[], metavar="TEXT", help="a standing query checked on each segment"
    )
    w.add_argument("--webhook", default=None, metavar="URL", help="POST each --when match here as JSON")
    add_model_options(w, "the model for questions (and to confirm --when matches)")
    w.add_argument("--for", dest="seconds", type=positive, default=None, metavar="SECONDS", help="stop after this long")
    w.add_argument(
        "--give-up-after",
        type=positive,
        default=60.0,
        metavar="SECONDS",
        help="stop retrying a source that has not given one segment in this long (default 60)",
    )
    w.add_argument("--no-input", action="store_true", help="do not read questions from stdin")
    w.add_argument("--json", action="store_true", help="one JSON line per event on stdout")
    w.set_defaults(func=cmd_watch)

    a = sub.add_parser("ask", help="ask a live session (watching or stopped) about what it saw so far")
    a.add_argument("session", help="the session id `watch` printed (live-...)")
    a.add_argument("question")
    add_model_options(a, "the model that answers")
    a.add_argument("--json", action="store_true", help="print the result as JSON")
    a.set_defaults(func=cmd_ask)


def _line(event: dict) -> str:
    kind = event["event"]
    if kind == "segment":
        found = ", ".join(f"{n} {stage}" for stage, n in event["entries"].items() if n) or "nothing new"
        span = f"{format_time(event['start'])}-{format_time(event['end'])}"
        return f"segment {event['index']} {span}: {found} (searchable {event['lag_s']:.1f} s after it ended)"
    if kind == "match":
        return f"MATCH {event['query']!r} at {format_time(event['span'][0])} ({event['wall']}): {event['text']}"
    if kind == "gap":
        return event["text"]
    if kind == "source_failed":
        return f"source: attempt {event['attempt']} failed: {event['reason']}"
    if kind == "source_gave_up":
        return f"source: given up: {event['reason']}"
    return f"{kind}: {event.get('reason', '')}"


TO_STDERR = ("segment", "source_failed", "source_gave_up", "error")  # progress and trouble; answers go to stdout


def _printer(as_json: bool):
    lock = threading.Lock()

    def show(event: dict) -> None:
        with lock:
            if as_json:
                print(json.dumps(event, default=str), flush=True)
            else:
                print(_line(event), file=sys.stderr if event["event"] in TO_STDERR else sys.stdout, flush=True)

    return show


def cmd_watch(args: argparse.Namespace) -> int:
    from mcr.agents.live import LiveSession

    stages = [s.strip() for s in args.stages.split(",") if s.strip()] if args.stages else None
    if stages:
        from mcr.memory.index import check_stages

        check_stages(stages, " in --stages")
    model = model_from(args, optional=True)
    show = _printer(args.json)
    session = LiveSession(
        args.source,
        memory=memory_from(args),
        stages=stages,
        segment_s=args.segment,
        when=args.when,
        webhook=args.webhook,
        model=model,
        on_event=show,
        give_up_after_s=args.give_up_after,
    ).start()
    ask_hint = "type a question and Enter to ask it; " if not args.no_input else ""
    print(
        f"watching {args.source} as session {session.id} ({session.memory.path}); {ask_hint}Ctrl-C stops",
        file=sys.stderr,
        flush=True,
    )
    questions: queue.Queue = queue.Queue()
    if not args.no_input:
        threading.Thread(target=_read_questions, args=(questions,), daemon=True).start()
    deadline = time.monotonic() + args.seconds if args.seconds else None
    try:
        while session.watching and (deadline is None or time.monotonic() < deadline):
            try:
                question = questions.get(timeout=0.2)
            except queue.Empty:
                continue
            _answer(session, question, model, show, args.json)
    except KeyboardInterrupt:
        pass
    finally:
        session.stop()
    n = len(session.record["segments"])
    if n == 0:  # nothing to ask about: say why, and fail
        waited = f" in {args.seconds:g} s (--for)" if args.seconds else " before it was stopped"
        why = session.error or f"no segment arrived from {args.source}{waited}"
        print(f"{PROG}: error: nothing was watched: {why}", file=sys.stderr)
        return 1
    end = session.record["segments"][-1]["end"]
    print(
        f"stopped: session {session.id}, {n} segments, {format_time(end)} of stream; "
        f'ask it later with `mcr-agent ask {session.id} "question"`',
        file=sys.stderr,
    )
    return 0


def _read_questions(questions: queue.Queue) -> None:
    for line in sys.stdin:
        if line.strip():
            questions.put(line.strip())


def _answer(session, question: str, model, show, as_json: bool) -> None:
    from mcr.errors import MCRError

    if model is None:
        show({"event": "error", "reason": "no model to answer with: start watch with --model"})
        return
    try:
        from mcr.agents import Agent

        result = session.ask(question, Agent(model=model, memory=session.memory, trace_dir=False))
    except MCRError as exc:
        show({"event": "error", "reason": exc.one_line()})
        return
    event = {"event": "answer", "question": question, "answer": result.answer, "status": result.status}
    if as_json:
        show(event)
    else:
        print(f"Q: {question}\nA: {result.answer} ({result.status})", flush=True)


def cmd_ask(args: argparse.Namespace) -> int:
    from mcr.agents import Agent
    from mcr.agents.live import ask

    result = ask(args.session, args.question, Agent(model=model_from(args), memory=memory_from(args)))
    if args.json:
        print(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
    elif result.answer:
        print(result.answer)
    if not result.ok:
        why = result.error or "no answer"
        print(f"{PROG}: error: the question about {args.session} ended {result.status}: {why}", file=sys.stderr)
    return 0 if result.ok else 1
