"""``m2la`` command: convert a model to latent attention, inspect and try a converted one.

    m2la convert MODEL OUT --rank R --rope-dim D [--shared-rope | --per-group-rope]
                 [--key-norm scale|fold] [--dtype auto|float32|bfloat16|float16]
                 [--gguf-file F] [--calibration-text FILE] [--calibration-image FILE ...]
                 [--calibration-video FILE ...] [--device cpu|cuda] [--force]

A vision-language model (Qwen2-VL, Qwen2.5-VL, Qwen3-VL) has its language attention
converted and its vision tower kept as it is; ``--calibration-image`` and
``--calibration-video`` add image and video tokens' activations to the calibration.
    m2la info PATH
    m2la generate PATH --prompt TEXT [--max-new-tokens N]

This module imports neither torch nor transformers at import time; the handlers do.
Handlers return an exit code; failures print one ``error:`` line to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mcr.cli.options import add_device_option
from mcr.m2la.errors import M2LAError

DTYPES = ("auto", "float32", "bfloat16", "float16")
DTYPE_SIZES = {"float32": 4, "bfloat16": 2, "float16": 2}


def register(subparsers) -> None:
    """Add the ``m2la`` command (with ``convert``, ``info`` and ``generate``) to ``subparsers``."""
    parser = subparsers.add_parser("m2la", help="latent-attention (M2LA) conversion and inspection")
    parser.set_defaults(func=lambda args: _usage(parser))
    sub = parser.add_subparsers(dest="m2la_command", metavar="{convert,info,generate}")

    conv = sub.add_parser("convert", help="convert a grouped-query model to M2LA and save it")
    conv.add_argument("model", help="model folder, .gguf file, or hub id available offline")
    conv.add_argument("out", help="output folder (safetensors + config)")
    conv.add_argument("--rank", type=int, required=True, help="latent rank per token and layer")
    conv.add_argument("--rope-dim", type=int, required=True, help="rotated dimensions kept per rope key (even)")
    rope = conv.add_mutually_exclusive_group()
    rope.add_argument(
        "--shared-rope",
        dest="shared_rope",
        action="store_true",
        default=None,
        help="one rope key shared by all heads (default with one KV head)",
    )
    rope.add_argument(
        "--per-group-rope",
        dest="shared_rope",
        action="store_false",
        help="one rope key per KV group (default with several KV heads)",
    )
    conv.add_argument(
        "--key-norm",
        choices=("scale", "fold"),
        default=None,
        help="for models with a key norm: keep it exactly (scale, default) or fold it (fold)",
    )
    conv.add_argument("--dtype", choices=DTYPES, default="auto", help="dtype to load and save in")
    conv.add_argument("--gguf-file", default=None, help="GGUF file name inside MODEL (a folder)")
    conv.add_argument(
        "--calibration-text", default=None, help="text file used to choose RoPE dimensions and weight the factorisation"
    )
    conv.add_argument("--calibration-tokens", type=int, default=1024, help="tokens of calibration text to use")
    conv.add_argument(
        "--calibration-image",
        action="append",
        default=[],
        metavar="FILE",
        help="an image to calibrate on (vision-language models; repeatable)",
    )
    conv.add_argument(
        "--calibration-video",
        action="append",
        default=[],
        metavar="FILE",
        help="a video to calibrate on (vision-language models; repeatable)",
    )
    conv.add_argument(
        "--calibration-frames", type=int, default=8, help="frames taken from each calibration video (default 8)"
    )
    add_device_option(conv, "device to convert on (cpu, cuda)", default="cpu", choices=None)
    conv.add_argument("--force", action="store_true", help="write into OUT even if it is not empty")
    conv.set_defaults(func=convert_command)

    info = sub.add_parser("info", help="show the settings and cache size of a converted model")
    info.add_argument("path")
    info.set_defaults(func=info_command)

    gen = sub.add_parser("generate", help="greedy generation with a converted model and its latent cache")
    gen.add_argument("path")
    gen.add_argument("--prompt", required=True)
    gen.add_argument("--max-new-tokens", type=int, default=32)
    add_device_option(gen, "device to generate on (cpu, cuda)", default="cpu", choices=None)
    gen.set_defaults(func=generate_command)


def _usage(parser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _fail(message) -> int:
    text = " ".join(str(message).split()) or "failed"
    print(f"error: {text}", file=sys.stderr)
    return 2


def _source_location(model: str, gguf_file: str | None):
    path = Path(model)
    if path.suffix == ".gguf":
        if not path.is_file():
            raise M2LAError(f"GGUF file not found: {path}")
        return str(path.parent), path.name
    if gguf_file is not None:
        if not (path / gguf_file).is_file():
            raise M2LAError(f"GGUF file not found: {path / gguf_file}")
        return str(path), gguf_file
    if not path.exists() and (path.is_absolute() or model.startswith(".")):
        raise M2LAError(f"model folder not found: {path}")
    if path.exists() and not (path / "config.json").is_file():
        raise M2LAError(f"{path} has no config.json (pass --gguf-file for a GGUF model)")
    return model, None


def load_source_config(model: str, gguf_file: str | None = None):
    """The config of the source model, read without loading weights."""
    from transformers import AutoConfig

    location, gguf = _source_location(model, gguf_file)
    try:
        return AutoConfig.from_pretrained(location, **({"gguf_file": gguf} if gguf else {}))
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise M2LAError(f"cannot load model {model!r}: {first}") from None


def load_source_model(model: str, gguf_file: str | None = None, dtype: str = "auto", device: str = "cpu"):
    """Load a transformers model (and its tokenizer or processor, if any) from disk."""
    import torch
    import transformers

    location, gguf = _source_location(model, gguf_file)
    kwargs = {"gguf_file": gguf} if gguf else {}
    if dtype != "auto":
        kwargs["dtype"] = getattr(torch, dtype)
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    errors = []
    loaded = None
    order = ("AutoModelForCausalLM", "AutoModelForImageTextToText")
    config = load_source_config(model, gguf_file)
    if getattr(config, "model_type", None) in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
        order = order[::-1]  # a vision-language model: keep its vision tower
    for name in order:
        try:
            loaded = getattr(transformers, name).from_pretrained(location, **kwargs)
            break
        except (OSError, ValueError, KeyError) as exc:
            errors.append(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    if loaded is None:
        raise M2LAError(f"cannot load model {model!r}: {errors[-1]}")
    loaded.to(device).eval()
    tokenizer = None
    for name in ("AutoProcessor", "AutoTokenizer"):
        try:
            tokenizer = getattr(transformers, name).from_pretrained(location, **({"gguf_file": gguf} if gguf else {}))
            break
        except (OSError, ValueError, KeyError, TypeError, ImportError):
            continue  # a model without tokenizer files is still convertible
    return loaded, tokenizer


def _text_tokenizer(tokenizer):
    return getattr(tokenizer, "tokenizer", tokenizer)


def convert_command(args) -> int:
    if args.rope_dim < 2 or args.rope_dim % 2:
        return _fail(f"--rope-dim must be an even number of at least 2, got {args.rope_dim}")
    if args.rank < 1:
        return _fail(f"--rank must be at least 1, got {args.rank}")
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not args.force)):
        return _fail(f"{out} exists and is not an empty folder (use --force to write into it)")
    try:
        from mcr.m2la.convert import check_config, convert_to_m2la
        from mcr.m2la.io import save_m2la

        check_config(load_source_config(args.model, args.gguf_file), args.rank, args.rope_dim)
        model, tokenizer = load_source_model(args.model, args.gguf_file, args.dtype, args.device)
        calibration = _calibration(args, tokenizer)
        report = convert_to_m2la(
            model,
            args.rank,
            args.rope_dim,
            shared_rope=args.shared_rope,
            key_norm=args.key_norm,
            calibration=calibration,
        )
        save_m2la(model, out, tokenizer=tokenizer)  # a processor too: image and video settings travel along
        (out / "m2la_report.json").write_text(json.dumps(report.to_dict(), indent=1))
    except (M2LAError, OSError) as exc:
        return _fail(exc)
    print(report.format())
    print(f"saved to {out}")
    return 0


def _calibration(args, tokenizer):
    """Calibration data from the command's options: token ids, or processor outputs with media."""
    text_ids = None
    if args.calibration_text:
        if tokenizer is None:
            raise M2LAError("--calibration-text needs a tokenizer, and none was found with the model")
        text = Path(args.calibration_text).read_text()
        text_ids = _text_tokenizer(tokenizer)(text, return_tensors="pt")["input_ids"][:, : args.calibration_tokens]
    if not (args.calibration_image or args.calibration_video):
        return text_ids
    if args.calibration_frames < 2:
        raise M2LAError(f"--calibration-frames must be at least 2, got {args.calibration_frames}")
    from mcr.m2la.calibrate import processor_batches

    images = [_read_image(path) for path in args.calibration_image]
    videos = [_read_video(path, args.calibration_frames) for path in args.calibration_video]
    batches = processor_batches(tokenizer, images, videos)
    if text_ids is not None:
        batches.append({"input_ids": text_ids})
    return batches


def _read_image(path):
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.array(image.convert("RGB"))
    except (OSError, UnidentifiedImageError) as exc:
        raise M2LAError(f"cannot read calibration image {path}: {exc}") from None


def _read_video(path, count):
    """``count`` frames spread over the video, and their rate."""
    import numpy as np

    from mcr.errors import MCRError
    from mcr.media.video import Video

    try:
        video = Video(path)
        frames = video.frames(fps=max(count / max(video.duration, 1e-3), 0.01), max_frames=count, max_pixels=448 * 448)
    except (MCRError, OSError, ValueError, RuntimeError) as exc:
        raise M2LAError(f"cannot read calibration video {path}: {exc}") from None
    times = list(frames.timestamps)
    fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 1.0
    return np.stack(list(frames.images)), fps


def info_command(args) -> int:
    config_path = Path(args.path) / "config.json"
    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError) as exc:
        return _fail(f"cannot read {config_path}: {exc}")
    settings = config.get("m2la")
    if not settings:
        return _fail(f"{config_path} has no 'm2la' entry; not a converted model")
    dtype = str(config.get("dtype") or config.get("torch_dtype") or "float32")
    size = DTYPE_SIZES.get(dtype, 4)
    layers = settings["layers"]
    values = [_values_per_token(spec) for spec in layers]
    original = [2 * spec["num_kv_heads"] * spec["head_dim"] for spec in layers]
    print(f"model type: {config.get('model_type')}  layers: {len(layers)}  dtype: {dtype}")
    print(
        f"rank {settings['rank']}, rope_dim {settings['rope_dim']}, "
        f"{'shared' if settings['shared_rope'] else 'per-group'} rope key, key norm {settings['key_norm']}"
    )
    print(
        f"cache per token and layer: {values[0]} values = {values[0] * size} bytes "
        f"(original {original[0]} values = {original[0] * size} bytes)"
    )
    print(f"cache per token, all layers: {sum(values) * size} bytes, {sum(values) / sum(original):.4f} of the original")
    return 0


def _values_per_token(spec: dict) -> int:
    keys = 1 if spec["shared_rope"] else spec["num_kv_heads"]
    scales = spec["num_kv_heads"] if spec.get("key_norm") == "scale" else 0
    return spec["rank"] + spec["rope_dim"] * keys + scales


def generate_command(args) -> int:
    try:
        import torch
        from transformers import AutoProcessor, AutoTokenizer

        from mcr.m2la.cache import LatentCache, cache_argument
        from mcr.m2la.io import load_m2la

        model = load_m2la(args.path, device=args.device)
        try:
            tokenizer = AutoTokenizer.from_pretrained(args.path)
        except (OSError, ValueError):
            tokenizer = _text_tokenizer(AutoProcessor.from_pretrained(args.path))
    except (M2LAError, OSError, ValueError) as exc:
        return _fail(exc)
    inputs = tokenizer(args.prompt, return_tensors="pt").to(args.device)
    cache = LatentCache(config=model.config)
    with torch.no_grad():
        out = model.generate(
            **inputs, max_new_tokens=args.max_new_tokens, do_sample=False, **{cache_argument(model): cache}
        )
    new = out[0, inputs["input_ids"].shape[1] :]
    print(tokenizer.decode(new, skip_special_tokens=True))
    print(f"[latent cache: {cache.get_seq_length()} tokens, {cache.nbytes()} bytes]", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="mcr-agent")
    sub = parser.add_subparsers(dest="command")
    register(sub)
    args = parser.parse_args(["m2la", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
