"""``mcr-agent models``: the known model profiles and whether each is on this machine."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def where(profile) -> str:
    """Where the weights of a known model are on this machine, if anywhere (checks files only)."""
    import importlib.util

    from mcr.models import _hub_snapshot

    if _hub_snapshot(profile.name) is not None:
        return "HF cache"
    if profile.package and importlib.util.find_spec(profile.package) is not None:
        return "pip"
    return "-"


def pull(spec: str) -> Path:
    """Fetch what ``spec`` names ahead of its first use: a hub id (a VLM), ``sam`` or
    ``sam:vit_b|vit_l|vit_h``, ``whisper:SIZE_OR_REPO``, or ``clip:MODEL/TAG``; its local path."""
    from mcr.errors import MCRError
    from mcr.models.hub import fetch

    kind, _, rest = spec.partition(":")
    if kind == "sam":
        from mcr.tools.segment import OFFICIAL, fetch_official

        if (rest or "vit_b") not in OFFICIAL:
            raise MCRError(f"unknown SAM model {rest!r}: one of {', '.join(OFFICIAL)}")
        return fetch_official(rest or "vit_b")
    if kind == "whisper" and rest:
        from mcr.tools.asr import ASRModelError, resolve_model

        try:
            return Path(resolve_model(rest))
        except ASRModelError as exc:  # the model named here, not in the environment: say where it was named
            raise MCRError(str(exc).replace(" (MCR_WHISPER_MODEL)", f" (in {spec})")) from None
    if kind == "clip" and "/" in rest:
        import open_clip

        model, tag = rest.split("/", 1)
        repo = ((open_clip.get_pretrained_cfg(model, tag) or {}).get("hf_hub") or "").strip("/")
        if not repo:
            raise MCRError(f"{model}/{tag} is not an open_clip pretrained tag kept on the hub")
        return fetch(repo, allow_patterns=["open_clip_*"], what="CLIP weights")
    if spec.count("/") == 1 and ":" not in spec:
        return fetch(spec)
    raise MCRError(
        f"cannot tell what to fetch from {spec!r}: give a hub id (org/name), sam[:vit_b|vit_l|vit_h], "
        "whisper:SIZE_OR_REPO or clip:MODEL/TAG"
    )


def on_machine() -> list[dict]:
    """What model files this machine holds: the Hugging Face cache's repositories and MCR's own
    cache (SAM checkpoints, ONNX exports), each with its size."""
    from mcr.models.hub import cached_models, folder_sizes
    from mcr.onnxrun import cache_dir

    rows = [{"what": f"{r['kind']} {r['repo']}", "size_mib": r["size_mib"], "path": r["path"]} for r in cached_models()]
    for r in folder_sizes(cache_dir().parent):
        rows.append({"what": f"mcr cache {Path(r['path']).name}", "size_mib": r["size_mib"], "path": r["path"]})
    return rows


def cmd_models(args: argparse.Namespace) -> int:
    from mcr.models.profiles import PROFILES, SERVER

    if args.action == "pull":
        if not args.spec:
            raise SystemExit("mcr-agent models pull: name what to fetch (a hub id, sam, whisper:SIZE, clip:MODEL/TAG)")
        from mcr.models.hub import size_of

        path = pull(args.spec)
        size = size_of(path)
        print(json.dumps({"spec": args.spec, "path": str(path), "size_mib": round(size / 2**20, 1)}) if args.json
              else f"{args.spec}: {path} ({size / 2**20:,.1f} MiB)")  # fmt: skip
        return 0

    rows = []
    for p in PROFILES + [SERVER]:
        row = {**p.to_dict(), "vision": p.vision, "available": "server" if p is SERVER else where(p)}
        rows.append(row)
    here = on_machine()
    if args.json:
        print(json.dumps({"profiles": rows, "on_machine": here}, indent=2))
        return 0
    from rich.table import Table

    from mcr.cli.options import wide_console

    table = Table(title="Known models (--model NAME; a server: openai:MODEL@URL)", title_justify="left")
    for name in ("model", "input", "context", "frames", "pixels", "tool calls", "default", "weights"):
        table.add_column(name, no_wrap=True)
    for r in rows:
        sees = r["vision"] != "text only"
        table.add_row(
            r["name"],
            r["vision"],
            f"{r['context_window'] // 1024}K",
            str(r["max_frames"]) if sees else "-",
            f"{int(r['max_pixels'] ** 0.5)}²" if sees else "-",
            "native" if r["native_tools"] else "grammar",
            r["default_for"].upper(),
            r["available"],
        )
    wide_console().print(table)
    files = Table(title="On this machine (`mcr-agent models pull SPEC` fetches ahead of use)", title_justify="left")
    for name in ("what", "MiB", "path"):
        files.add_column(name)
    for r in here:
        files.add_row(r["what"], f"{r['size_mib']:,.1f}", r["path"])
    wide_console().print(files)
    return 0


def register(subparsers) -> None:
    """Add the ``models`` command to ``mcr-agent``."""
    models = subparsers.add_parser(
        "models", help="list the known models and the model files on this machine; `models pull SPEC` fetches one"
    )
    models.add_argument("action", nargs="?", choices=["list", "pull"], default="list")
    models.add_argument(
        "spec", nargs="?", help="for pull: a hub id, sam[:vit_b|vit_l|vit_h], whisper:SIZE, clip:MODEL/TAG"
    )
    models.add_argument("--json", action="store_true", help="print JSON")
    models.set_defaults(func=cmd_models)


__all__ = ["register"]
