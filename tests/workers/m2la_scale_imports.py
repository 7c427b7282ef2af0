"""What importing benchmarks/m2la_scale.py (found through PYTHONPATH) and every mcr.m2la module
loads: prints the mcr modules on one line and the heavy libraries on the next (``-`` for none)."""

import sys

import m2la_scale  # noqa: F401

import mcr.m2la  # noqa: F401

HEAVY = {"av", "decord", "onnxruntime", "pydantic", "networkx", "faster_whisper", "open_clip", "rich", "xgrammar",
         "cv2", "fastapi", "sqlite3", "ddgs", "jsonschema"}  # fmt: skip

for name in ("attention", "cache", "convert", "calibrate", "io", "triton_decode"):
    __import__("mcr.m2la." + name)
ours = sorted(m for m in sys.modules if m == "mcr" or m.startswith("mcr."))
heavy = sorted({m.split(".")[0] for m in sys.modules} & HEAVY)
print(" ".join(ours))
print(" ".join(heavy) or "-")
