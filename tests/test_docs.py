"""The documentation cannot rot: every Python and shell example in docs/ and the README runs here,
unless a marker right before its fence says what it needs that a test machine lacks (a GPU, the
network, a server), and the generated reference pages name every command, option and route."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
PAGES = sorted((ROOT / "docs").rglob("*.md")) + [ROOT / "README.md"]
# <!-- not run: REASON --> right before a fence: what the example needs that the tests lack.
# "ci" is for the install and test commands that .ci/run itself runs.
REASONS = ("gpu", "network", "server", "ci")
MARKER = re.compile(r"<!--\s*not run:\s*([a-z]+)\s*-->")
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[A-Za-z]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.S | re.M)
RUNNABLE = ("python", "bash", "console", "sh", "shell")


@dataclass
class Example:
    page: Path
    line: int
    lang: str
    body: str
    not_run: str | None  # the marker's reason, None when the example runs

    def __str__(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def examples(page: Path) -> list[Example]:
    text = page.read_text()
    found = []
    for m in FENCE.finditer(text):
        lang = m["lang"].lower()
        if lang not in RUNNABLE:
            continue
        before = text[: m.start()].rstrip().splitlines()
        marker = MARKER.fullmatch(before[-1].strip()) if before else None
        body = "\n".join(line[len(m["indent"]) :] for line in m["body"].splitlines())
        found.append(Example(page, text.count("\n", 0, m.start()) + 1, lang, body, marker and marker[1]))
    return found


def all_examples() -> list[Example]:
    return [e for page in PAGES for e in examples(page)]


def shell_commands(example: Example) -> str:
    """A console block's commands are its ``$ `` lines; a bash block is run whole."""
    if example.lang != "console":
        return example.body
    return "\n".join(line[2:] for line in example.body.splitlines() if line.startswith("$ "))


@pytest.fixture
def checkout(tmp_path):
    """A folder laid out like a checkout beside the shared media: examples/ (the replay scripts)
    and ../shared/media, so the docs' relative paths hold; nothing the examples write leaks."""
    work = tmp_path / "repo"
    work.mkdir()
    (work / "examples").symlink_to(ROOT / "examples")
    (tmp_path / "shared").symlink_to(SHARED)
    return work


def run_example(example: Example, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # mcr-agent beside python
    if example.lang == "python":
        args = [sys.executable, "-c", example.body]
    else:
        args = ["bash", "-euo", "pipefail", "-c", shell_commands(example)]
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_every_example_is_found_and_every_marker_is_known():
    found = all_examples()
    assert len([e for e in found if e.not_run is None]) >= 20, "the docs should show examples that run"
    for example in found:
        assert example.not_run in (None, *REASONS), f"{example}: unknown marker {example.not_run!r}"
    for page in PAGES:
        text = page.read_text()
        for m in MARKER.finditer(text):  # a marker that stands before no fence would silently do nothing
            rest = text[m.end() :].lstrip("\n")
            assert rest.lstrip().startswith("```"), f"{page.name}: a marker not followed by a fence"


def test_a_page_with_examples_that_are_not_run_says_so():
    for page in (ROOT / "docs").rglob("*.md"):
        if any(e.not_run for e in examples(page)):
            assert re.search(r'^(!!!|\?\?\?) \w+ "[^"]*not run', page.read_text(), re.M), (
                f"{page.name} has examples that are not run but no admonition that says so"
            )


def test_the_examples_are_counted(capsys):
    found = all_examples()
    runs = [e for e in found if e.not_run is None]
    with capsys.disabled():
        by = {r: sum(e.not_run == r for e in found) for r in REASONS}
        print(f"\ndocs examples: {len(found)}, run: {len(runs)}, not run: {by}")
    assert len(runs) + sum(by.values()) == len(found)


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_examples_of_a_page_run(page, checkout):
    """A page's examples run in order in one folder, so a later one may use what an earlier one wrote
    (a trace, an index); an example that fails fails the page, naming its line."""
    runs = [e for e in examples(page) if e.not_run is None]
    if not runs:
        pytest.skip(f"{page.name} has no examples to run")
    if not (SHARED / "media").is_dir():
        pytest.skip(f"the shared media folder {SHARED / 'media'} is not here")
    for example in runs:
        done = run_example(example, checkout)
        assert done.returncode == 0, (
            f"{example} failed:\n{example.body}\n---\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        )


# ---------------------------------------------------------------- the generated reference pages


def hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parsers(parser, path=("mcr-agent",)):
    yield path, parser
    for name, child in hooks()._subparsers(parser).items():
        yield from parsers(child, (*path, name))


def test_the_command_reference_lists_every_command_and_option():
    from mcr.cli.main import build_parser

    page = hooks().commands_page()
    seen = 0
    for path, parser in parsers(build_parser()):
        if len(path) > 1:
            assert f"## `{' '.join(path)}`" in page, f"{' '.join(path)} has no section"
        for action in parser._actions:
            for option in action.option_strings:
                assert option in page, f"{' '.join(path)} {option} is not in the command reference"
                seen += 1
        assert parser.format_help().rstrip() in page
    assert seen > 100


def test_the_http_reference_names_every_route():
    module = hooks()
    doc = module.openapi()
    page = module.http_page()
    routes = [(method.upper(), path) for path, methods in doc["paths"].items() for method in methods]
    assert len(routes) >= 10
    for method, path in routes:
        assert f"## `{method} {path}`" in page, f"{method} {path} is not in the HTTP reference"


def test_a_marked_example_is_not_run_and_an_unmarked_one_is(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "Text.\n\n<!-- not run: gpu -->\n```bash\nfalse\n```\n\n```python\nprint('ran')\n```\n\n"
        "    ```console\n    $ echo hi\n    hi\n    ```\n\n```text\nnot code\n```\n"
    )
    found = examples(page)
    assert [(e.lang, e.not_run) for e in found] == [("bash", "gpu"), ("python", None), ("console", None)]
    assert shell_commands(found[2]) == "echo hi"
    assert run_example(found[1], tmp_path).stdout == "ran\n"
    assert run_example(found[0], tmp_path).returncode != 0  # what a marker holds back would fail here


def test_examples_name_files_as_a_checkout_does():
    """The docs' runnable commands name files as a checkout does (../shared/media, examples/), so
    they run where a reader pastes them; an absolute path of this machine would run only here."""
    for example in all_examples():
        assert "/work/" not in example.body, f"{example}: a path of this machine"
        if example.lang != "python":
            for line in shell_commands(example).splitlines():
                shlex.split(line.rstrip("\\"), comments=True)  # each line parses as a shell line
