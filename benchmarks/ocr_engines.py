"""Part f of the perception benchmark: OCR engines on drawn text, rapidocr-onnxruntime
against tesseract (when installed), on eight frames of text over plain and busy backgrounds."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

from long_video import FONT


def child_ocr_engines() -> dict:
    import io
    import re

    import numpy as np
    from PIL import Image

    from mcr.tools import ModelCache
    from mcr.tools.ocr import load_ocr, read_text

    serif = "/usr/share/fonts/truetype/dejavu/DejaVuSerif-Bold.ttf"
    cases = [
        ("Platform nine departures", 36, "white", "color=c=0x202840", FONT),
        ("Fresh lemon cake four dollars", 28, "yellow", "color=c=0x202840", FONT),
        ("Welcome to the harbour museum", 24, "black", "color=c=0xdddddd", serif),
        ("Exit seventeen north", 20, "white", "testsrc2", FONT),
        ("Chapter three the long winter", 40, "red", "color=c=0x101010", serif),
        ("Quarterly revenue grew by twelve percent", 22, "white", "smptebars", FONT),
        ("Gate closes at noon", 18, "white", "color=c=0x303030", FONT),
        ("Bridge inspection report", 30, "cyan", "mandelbrot", serif),
    ]
    images = []
    for i, (text, size, colour, bg, font) in enumerate(cases):
        sep = ":" if "=" in bg else "="
        png = subprocess.run(
            [
                "ffmpeg",
                "-nostdin",
                "-v",
                "error",
                "-f",
                "lavfi",
                "-i",
                f"{bg}{sep}size=640x360",
                "-frames:v",
                "1",
                "-vf",
                f"drawtext=fontfile={font}:text='{text}':fontsize={size}:"
                f"fontcolor={colour}:x={30 + 10 * i}:y={40 + 35 * i}",
                "-f",
                "image2pipe",
                "-vcodec",
                "png",
                "-",
            ],
            capture_output=True,
            check=True,
        ).stdout
        images.append(np.asarray(Image.open(io.BytesIO(png)).convert("RGB")))

    def found(truth: str, got: str) -> float:
        g = re.sub(r"[^a-z0-9]", "", got.lower())
        words = truth.lower().split()
        return sum(w in g for w in words) / len(words)

    out = {}
    engine = load_ocr(ModelCache())
    read_text(engine, images[0])
    t0 = time.perf_counter()
    scores = [found(c[0], " ".join(d.text for d in read_text(engine, im))) for c, im in zip(cases, images)]
    out["rapidocr"] = {"words": float(np.mean(scores)), "s_per_frame": (time.perf_counter() - t0) / len(images)}
    if shutil.which("tesseract"):
        t0 = time.perf_counter()
        scores = []
        for c, im in zip(cases, images):
            buf = io.BytesIO()
            Image.fromarray(im).save(buf, format="PNG")
            got = subprocess.run(
                ["tesseract", "stdin", "stdout", "-l", "eng"],
                input=buf.getvalue(),
                capture_output=True,
                env={**os.environ, "OMP_THREAD_LIMIT": "2"},
            ).stdout.decode()
            scores.append(found(c[0], got))
        out["tesseract"] = {"words": float(np.mean(scores)), "s_per_frame": (time.perf_counter() - t0) / len(images)}
    return out
