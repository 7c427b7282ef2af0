"""``mcr-agent`` as a user runs it: subprocesses, real clip, recorded model turns."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from media import shared_clip
from procs import run_cli

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "scripts" / "boats.json"
HEAVY = ("torch", "transformers", "decord", "av", "rich", "numpy", "pydantic", "networkx")


def cli(*args, cwd=None, env_extra=None):
    return run_cli(*args, cwd=cwd, env_extra=env_extra, timeout=120)


@pytest.mark.slow
def test_run_json_and_replay(tmp_path, boats):
    trace = tmp_path / "t.jsonl"
    proc = cli(
        "run", boats, "What is on the water?", "--model", f"replay:{SCRIPT}", "--json", "--trace", trace, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] == "verified" and result["answer"] == "Boats moving on the water."
    assert result["evidence"] == ["00:00:04.0-00:00:08.0"] and result["steps"] == 2
    assert [v["verdict"] for v in result["verdicts"]] == ["pass", "supported"]
    assert result["trace_path"] == str(trace) and result["frames_seen"] == 16 + 4
    kinds = [json.loads(line)["event"] for line in trace.read_text().splitlines()]
    assert kinds.count("tool_returned") == 1 and kinds[-1] == "run_finished"
    assert kinds.count("phase") == 3 and kinds.count("verification") == 2 and kinds.count("model_called") == 5

    shown = cli("replay", trace)
    assert shown.returncode == 0, shown.stderr
    assert "What is on the water?" in shown.stdout and "inspect_frames" in shown.stdout
    assert "Boats moving on the water." in shown.stdout and "00:00:04.0-00:00:08.0" in shown.stdout
    assert "plan" in shown.stdout and "model check: supported" in shown.stdout

    # a trace is itself a recording: run it again against the current tools
    again = cli("run", boats, "What is on the water?", "--model", f"replay:{trace}", "--json", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["answer"] == "Boats moving on the water."
    assert list((tmp_path / ".mcr" / "traces").glob("*.jsonl"))  # default trace folder


@pytest.mark.slow
def test_run_live_trace_and_quiet(tmp_path, boats):
    live = cli("run", boats, "What is on the water?", "--model", f"replay:{SCRIPT}", cwd=tmp_path)
    assert live.returncode == 0, live.stderr
    assert "step 1" in live.stdout and "→ inspect_frames" in live.stdout and "Answer: Boats" in live.stdout
    assert "perceive" in live.stdout and "reflect" in live.stdout and "status verified" in live.stdout
    quiet = cli("run", boats, "What?", "--model", f"replay:{SCRIPT}", "--quiet", cwd=tmp_path)
    assert quiet.stdout.strip() == "Boats moving on the water."


def test_tools_listing():
    proc = cli("tools", "--json", "--tools", ROOT / "examples" / "custom_tool.py")
    assert proc.returncode == 0, proc.stderr
    names = [t["function"]["name"] for t in json.loads(proc.stdout)]
    assert names[:4] == ["inspect_frames", "memory_write", "memory_search", "memory_events"]
    assert {"asr", "ocr", "shots", "temporal_grounding", "web_search"} <= set(names)
    assert names[-1] == "dominant_colours"
    table = cli("tools")
    assert "inspect_frames" in table.stdout and "span" in table.stdout


@pytest.mark.parametrize(  # "BOATS": the real clip
    "args, message",
    [
        (["run", "missing.mp4", "q", "--model", f"replay:{SCRIPT}"], "not found"),
        (["run", "BOATS", "q", "--model", "no-such-model"], "unknown model 'no-such-model'"),
        (["run", "BOATS", "q", "--model", "replay:nowhere.json"], "replay file not found"),
        (["run", "BOATS", "q", "--model", "OpenGVLab/InternVideo3-8B-Instruct"], "not available offline"),
        (["run", "BOATS", "q"], "OpenGVLab/InternVideo3-8B-Instruct is not available offline"),
        (["replay", "nowhere.jsonl"], "trace not found"),
        (["run", "BOATS", "q", "--tools", "nowhere.py"], "tools file not found"),
        (["run", "BOATS", "q", "--tools", "asr,nope"], "unknown tool 'nope' in --tools asr,nope"),
        (["run", "BOATS", "q", "--index", "shots,nope"], "unknown index stage 'nope' in --index"),
    ],
)
def test_errors_are_one_clear_line(tmp_path, args, message):
    args = [shared_clip("boats.mp4") if a == "BOATS" else a for a in args]
    proc = cli(*args, cwd=tmp_path, env_extra={"HF_HOME": str(tmp_path / "hf"), "MCR_MODEL": ""})
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("mcr-agent: error: ") and message in lines[0]
    assert "Traceback" not in proc.stderr


def test_not_a_video_is_one_clear_line(tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("these are not frames")
    proc = cli("run", bad, "q", "--model", f"replay:{SCRIPT}", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("mcr-agent: error: ") and "notes.mp4" in proc.stderr


def test_help_and_import_stay_light():
    """Heavy libraries load only where they are used (speed itself: benchmarks/startup.py)."""
    code = (
        "import sys, mcr, mcr.cli.main; from mcr import tool, TimeSpan; mcr.cli.main.build_parser();"
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
    helped = subprocess.run(["mcr-agent", "--help"], capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and "run" in helped.stdout and "replay" in helped.stdout


@pytest.mark.slow
def test_example_custom_tool_runs_as_documented(tmp_path, boats):
    proc = subprocess.run(
        [sys.executable, ROOT / "examples" / "custom_tool.py", boats],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "answer: The water looks dark blue-grey." in proc.stdout and "status: verified" in proc.stdout
    trace = next((tmp_path / ".mcr" / "traces").glob("*.jsonl"))
    returned = [json.loads(line) for line in trace.read_text().splitlines() if '"tool_returned"' in line]
    assert (
        returned[0]["name"] == "dominant_colours" and "dominant colours in 00:00:00.0-00:00:06.0" in returned[0]["text"]
    )
    assert returned[0]["metadata"]["colours"]


BUILT_IN = [
    "run", "replay", "resume", "report", "clips", "tools", "doctor", "models", "memory", "index", "search",
    "library", "watch", "ask", "analyze", "serve", "mcp", "m2la", "eval", "train",
]  # fmt: skip


def listed_commands(help_text: str) -> list[str]:
    """The command names of ``mcr-agent --help``, in their order."""
    block = help_text.split("  COMMAND\n", 1)[1].split("\n\n")[0]
    return [line.split()[0] for line in block.splitlines() if line[4:5].strip()]  # a wrapped help line is deeper


def test_another_packages_command_is_listed_and_runs_and_a_broken_one_is_one_line(tmp_path):
    """A package installed beside MCR adds a command under the ``mcr.commands`` entry point; one
    whose module cannot be imported is left out with one line, and every other command still works."""
    (tmp_path / "mcr_hello.py").write_text(
        "def register(sub):\n"
        "    p = sub.add_parser('hello', help='greet someone, from another package')\n"
        "    p.add_argument('name')\n"
        "    p.set_defaults(func=lambda args: print(f'hello {args.name}'))\n",
        encoding="utf-8",
    )
    info = tmp_path / "mcr_hello-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mcr-hello\nVersion: 0.1\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(
        "[mcr.commands]\nhello = mcr_hello:register\nbroken = mcr_nowhere:register\n", encoding="utf-8"
    )
    path = {"PYTHONPATH": os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH", "")) if p)}

    helped = run_cli("--help", env_extra=path)
    assert helped.returncode == 0, helped.stderr
    assert listed_commands(helped.stdout) == [*BUILT_IN, "hello"]  # the built-in ones first, in their order
    assert "greet someone, from another package" in helped.stdout
    warned = helped.stderr.strip().splitlines()
    assert len(warned) == 1 and "command 'broken' (mcr_nowhere:register) is left out" in warned[0]
    assert "mcr_nowhere" in warned[0] and "Traceback" not in helped.stderr

    ran = run_cli("hello", "world", env_extra=path)
    assert ran.returncode == 0 and ran.stdout == "hello world\n"
    shown = run_cli("tools", "--json", env_extra=path)
    assert shown.returncode == 0 and "inspect_frames" in shown.stdout


def test_the_help_lists_the_built_in_commands_alone_without_warnings():
    helped = run_cli("--help")
    assert helped.returncode == 0 and helped.stderr == ""
    assert listed_commands(helped.stdout) == BUILT_IN


def test_the_model_options_are_declared_in_one_place():
    """``--model``, ``--endpoint``, ``--device`` and ``--memory`` are added to a parser in
    mcr/cli/options.py only; every command takes them from there."""
    options = ("--model", "--endpoint", "--device", "--memory", "--no-memory")
    found: dict[str, list[str]] = {}
    for folder in ("mcr", "tools", "memory", "agents"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument":
                    for arg in node.args:
                        if isinstance(arg, ast.Constant) and arg.value in options:
                            found.setdefault(arg.value, []).append(str(path.relative_to(ROOT)))
    assert found == {option: ["mcr/cli/options.py"] for option in options}
