"""Resolve the speech model (fetched from HF_ENDPOINT on first use) and transcribe a video with
the ``asr`` tool: ``asr_first_use.py VIDEO``. Prints the model's folder, then the tool's text."""

import sys

from mcr.media.video import Video
from mcr.tools import ToolContext, ToolRegistry
from mcr.tools.asr import asr, resolve_model
from mcr.types import ToolCall

print(resolve_model())
ctx = ToolContext(video=Video(sys.argv[1]))
print(ToolRegistry([asr]).execute(ToolCall("asr", {}, "c"), ctx).text)
