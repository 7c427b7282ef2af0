"""One error family: every error a user can cause derives from ``MCRError``, and ``mcr-agent``
prints each as one line and exits with its code."""

import ast
import builtins
import json
import pickle
from pathlib import Path

import pytest

from mcr.cli.main import CLIError, main
from mcr.errors import MCRError, StageError, ToolNameError
from mcr.eval.results import ResultsError
from mcr.eval.samples import EvalError, MissingVideos
from mcr.m2la.errors import M2LAError
from mcr.media.video import NoAudioError, VideoError
from mcr.memory.encoder import EncoderError
from mcr.memory.store import MemoryStoreError
from mcr.models import ModelError, ModelNotAvailable
from mcr.run.trace import TraceError
from mcr.tools import ToolError, ToolRetry
from mcr.types import TimeSpanError

ROOT = Path(__file__).resolve().parents[1]
BOATS = ROOT.parent / "shared" / "media" / "boats.mp4"
SCRIPT = ROOT / "examples" / "scripts" / "boats.json"

# each user-facing error with the other bases it keeps for code that catches those
FAMILY = {
    VideoError: (),
    NoAudioError: (VideoError,),
    ModelError: (RuntimeError,),
    ModelNotAvailable: (ModelError,),
    TraceError: (ValueError,),
    TimeSpanError: (ValueError,),
    EvalError: (),
    MissingVideos: (EvalError,),
    ResultsError: (ValueError,),
    M2LAError: (ValueError,),
    MemoryStoreError: (),
    EncoderError: (RuntimeError,),
    CLIError: (),
    StageError: (ValueError,),
    ToolNameError: (ValueError,),
}
# exceptions that are not the user's to fix: they go back to the model, or end a run as its error
NOT_USER_FACING = {
    "ToolRetry",
    "ToolError",
    "ASRModelError",
    "ClipUnavailable",
    "ConstraintError",
    "Problem",
    "LeaseLost",
    "Terminated",
    "ScriptExhausted",
    "_Stop",
    "ToolDefinitionWarning",  # a warning at decoration, not an error a run can meet
    "Cancelled",  # an index job stopped on request, caught by the service's job pool
    "MediaCount",  # too many or no videos named in a service request, answered as a 400 by its routes
}


@pytest.mark.parametrize("cls", list(FAMILY), ids=lambda c: c.__name__)
def test_user_facing_errors_are_one_family(cls):
    assert issubclass(cls, MCRError)
    for base in FAMILY[cls]:
        assert issubclass(cls, base)


def test_tool_errors_stay_out_of_the_family():
    assert not issubclass(ToolRetry, MCRError) and not issubclass(ToolError, MCRError)


def test_every_exception_class_is_placed():
    """A new exception class is either in the family or named here as not the user's to fix."""
    bases: dict[str, set[str]] = {}
    for folder in ("mcr", "tools", "memory", "agents"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ClassDef):
                    names = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases}
                    bases.setdefault(node.name, set()).update(names)

    def derives(name: str, roots: set[str], seen: frozenset = frozenset()) -> bool:
        parents = bases.get(name, set())
        return bool(parents & roots) or any(derives(p, roots, seen | {name}) for p in parents - seen)

    builtin_errors = {n for n, v in vars(builtins).items() if isinstance(v, type) and issubclass(v, BaseException)}
    exceptions = {n for n in bases if derives(n, builtin_errors)}
    family = {n for n in exceptions if n == "MCRError" or derives(n, {"MCRError"})}
    assert {c.__name__ for c in FAMILY} <= family
    assert "ToolError" in exceptions and "MCRError" in family
    assert exceptions - family - NOT_USER_FACING == set()


def test_exit_code_and_pickling():
    assert MCRError("x").exit_code == 2
    err = ModelNotAvailable("model m is not available offline", exit_code=3)
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is ModelNotAvailable and again.exit_code == 3 and str(again) == str(err)
    assert MCRError("first\n  second\n").one_line() == "first second"
    assert StageError().one_line() == "StageError"


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MCR_MODEL", "")
    return tmp_path


def fails(capsys, argv, message, code=2):
    assert main([str(a) for a in argv]) == code
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("mcr-agent: error: ") and message in lines[0], err
    return lines[0]


def test_video_errors(workdir, capsys):
    fails(capsys, ["run", "missing.mp4", "q", "--model", f"replay:{SCRIPT}"], "not found")
    (workdir / "notes.mp4").write_text("these are not frames")
    fails(capsys, ["run", "notes.mp4", "q", "--model", f"replay:{SCRIPT}"], "notes.mp4")


def test_model_errors(workdir, capsys):
    fails(capsys, ["run", BOATS, "q", "--model", "no-such-model"], "unknown model 'no-such-model'")
    fails(capsys, ["run", BOATS, "q", "--model", "replay:nowhere.json"], "replay file not found")
    fails(capsys, ["run", BOATS, "q", "--model", "OpenGVLab/InternVideo3-8B-Instruct"], "not available offline")
    fails(capsys, ["run", BOATS, "q"], "no default model is on this machine")


def test_argument_errors(workdir, capsys):
    fails(capsys, ["run", BOATS, "  ", "--model", f"replay:{SCRIPT}"], "the question is empty")
    fails(capsys, ["run", BOATS, "q", "--max-steps", "-1"], "argument --max-steps: must be 0 or more")
    fails(capsys, ["run", BOATS, "q", "--tools", "nowhere.py"], "tools file not found: nowhere.py")
    fails(capsys, ["run", BOATS, "q", "--tools", "asr,nope"], "unknown tool 'nope' in --tools asr,nope")
    fails(capsys, ["run", BOATS, "q", "--index", "shots,nope"], "unknown index stage 'nope' in --index")
    fails(
        capsys,
        ["eval", "jsonl", "--annotations", "a.jsonl", "--videos", ".", "--index", "shots,nope"],
        "unknown index stage 'nope' in --index",
    )
    fails(capsys, ["search", BOATS, "boats", "--span", "soon"], "not a span: 'soon'")
    fails(capsys, ["index", BOATS, "--stages", "shots,nope"], "unknown index stage 'nope'")


def test_trace_errors(workdir, capsys):
    fails(capsys, ["replay", "nowhere.jsonl"], "trace not found")
    (workdir / "bad.jsonl").write_text("{not json\n")
    fails(capsys, ["replay", "bad.jsonl"], "bad.jsonl:1: not a trace event")


def test_memory_errors(workdir, capsys, monkeypatch):
    (workdir / "notes.db").write_text("not a database")
    fails(
        capsys,
        ["run", BOATS, "q", "--model", f"replay:{SCRIPT}", "--memory", "notes.db"],
        "is not an MCR memory database",
    )
    from mcr.memory import Memory

    Memory(workdir / "m.db").close()
    monkeypatch.setenv("MCR_ENCODER", str(workdir / "no-encoder"))
    fails(capsys, ["memory", "search", "boats", "--memory", "m.db"], "sentence encoder folder not found")


def test_eval_errors(workdir, capsys):
    fails(capsys, ["eval", "report", "nowhere"], "result folder not found: nowhere")
    (workdir / "a.jsonl").write_text(json.dumps({"video": "v1.mp4", "question": "q", "answer": "x"}) + "\n")
    (workdir / "videos").mkdir()
    fails(
        capsys,
        ["eval", "jsonl", "--annotations", "a.jsonl", "--videos", "videos", "--no-progress"],
        "1 of 1 videos are not in",
    )
    out = workdir / "out"
    out.mkdir()
    (out / "results.jsonl").write_text("{torn\n" + json.dumps({"id": "q1"}) + "\n")
    fails(capsys, ["eval", "report", out, "--no-png"], "results.jsonl:1: not a result record")


def test_m2la_errors_are_one_line(workdir, capsys):
    assert main(["m2la", "info", "nowhere"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "error: " in lines[0] and "nowhere" in lines[0]


def test_exit_code_comes_from_the_error(workdir, capsys, monkeypatch):
    import mcr.cli.run

    def broken(args):
        raise TraceError("first line\nsecond line", exit_code=3)

    monkeypatch.setattr(mcr.cli.run, "cmd_replay", broken)
    assert fails(capsys, ["replay", "t.jsonl"], "first line second line", code=3)


def test_other_errors_are_not_hidden(workdir, monkeypatch):
    """Only the family becomes one line: a bug still shows its traceback."""
    import mcr.cli.run

    def buggy(args):
        raise KeyError("a bug")

    monkeypatch.setattr(mcr.cli.run, "cmd_replay", buggy)
    with pytest.raises(KeyError):
        main(["replay", "t.jsonl"])
