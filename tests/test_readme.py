"""The README's first command, as written there: a run on a real clip with speech in which the
index, the overview, ``asr`` and ``ocr`` do their real work and only the model's turns are a
recorded script."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def first_command() -> list[str]:
    block = re.search(r"```bash\n(.*?)\n```", (ROOT / "README.md").read_text(), re.S).group(1)
    run = block.split("&&")[-1].strip()
    assert run.startswith("mcr-agent run "), run
    args = []
    for arg in shlex.split(run):  # paths in the README are relative to the checkout
        head, sep, rest = arg.partition(":")
        if sep and head == "replay":
            arg = f"replay:{ROOT / rest}"
        elif (ROOT / arg).exists() and "/" in arg:
            arg = str((ROOT / arg).resolve())
        args.append(arg)
    return args


def test_the_readmes_first_command_runs_the_real_tools_on_a_clip_with_speech(tmp_path):
    args = first_command()
    assert "megamind.mp4" in args[2] and args[-1].startswith("replay:")
    done = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, timeout=600, env=None)
    assert done.returncode == 0, done.stderr[-3000:]
    out = " ".join(done.stdout.split())
    assert "index transcript: built, 5 entries" in out and "You judge them based on their actions." in out
    assert "→ asr(" in out and "→ ocr(" in out and "no on-screen text found" in out
    assert "status verified" in out
