"""Import the built-in tool modules with tool-definition warnings turned into errors; prints
``clean`` when none warned."""

import importlib
import warnings

from mcr.tools import ToolDefinitionWarning

warnings.simplefilter("error", ToolDefinitionWarning)
for name in ("frames", "memory", "asr", "ocr", "shots", "grounding", "segment", "web"):
    importlib.import_module("mcr.tools." + name)
print("clean")
