"""Training runs: GRPO and GSPO through MCR episodes, SFT on verified trajectories.

The output folder holds the trainer's checkpoints (``checkpoint-N``: the LoRA adapter or the
weights, with the optimizer's state; a run started again on the same folder resumes from the
last one), ``log.jsonl`` (one line per logged step: rewards, loss, learning rate), ``curves.png``
(reward and loss against the step), ``train.json`` (how it was run) and ``final/`` (the trained
model, LoRA merged into the weights, with its processor): ``load_model(OUT)`` and ``mcr-agent
eval --model OUT`` load it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

from mcr.errors import MCRError
from mcr.eval.samples import Sample
from mcr.files import write_text

from .environment import EnvConfig, Episodes, dataset_rows
from .rewards import DEFAULT_WEIGHTS, chosen

METHODS = ("grpo", "gspo", "sft")


class TrainError(MCRError):
    """A training run that cannot start: bad data, a model that cannot be trained, a missing package."""


def _need_packages() -> None:
    missing = [m for m in ("trl", "peft", "datasets") if _absent(m)]
    if missing:
        raise TrainError(f"training needs {', '.join(missing)}: pip install 'mcr-agent[train]'")


def _absent(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is None


def lora_config(rank: int = 16) -> Any:
    from peft import LoraConfig

    # the language model's attention and MLP projections (a vision tower's are left as they are)
    targets = r".*(language_model|model\.layers|^layers).*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
    return LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=targets, task_type="CAUSAL_LM")


def _logging_callback(out: Path) -> Any:
    from transformers import TrainerCallback

    class LogLines(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
            if logs and state.is_world_process_zero:
                line = {"step": state.global_step, **{k: v for k, v in logs.items() if isinstance(v, (int, float))}}
                with open(out / "log.jsonl", "a", encoding="utf-8") as f:
                    f.write(json.dumps(line) + "\n")

    return LogLines()


def read_log(out: str | os.PathLike) -> list[dict]:
    path = Path(out) / "log.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def plot_curves(out: str | os.PathLike) -> Path | None:
    """``curves.png``: the mean reward (and each reward term) and the loss against the step."""
    rows = [r for r in read_log(out) if "loss" in r or "reward" in r]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    keys = sorted({k for r in rows for k in r if k == "reward" or (k.startswith("rewards/") and k.endswith("/mean"))})
    for key in keys:
        pts = [(r["step"], r[key]) for r in rows if key in r]
        axes[0].plot(*zip(*pts), marker="o", label=key.replace("rewards/", "").replace("/mean", ""))
    axes[0].set_title("reward")
    axes[0].set_xlabel("step")
    if keys:
        axes[0].legend(fontsize=7)
    loss = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    if loss:
        axes[1].plot(*zip(*loss), marker="o", color="tab:red")
    axes[1].set_title("loss")
    axes[1].set_xlabel("step")
    fig.tight_layout()
    path = Path(out) / "curves.png"
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def _last_checkpoint(out: Path) -> str | None:
    points = sorted(
        out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]) if p.name.split("-")[-1].isdigit() else -1
    )
    return str(points[-1]) if points else None


def shared_settings(out: Path, save_every: int, device: str) -> dict:
    """The trainer settings GRPO, GSPO and SFT share: logging every step, checkpoints, the device."""
    gpu = device != "cpu" and _cuda()
    return dict(
        output_dir=str(out),
        logging_steps=1,
        save_steps=save_every,
        save_total_limit=2,
        report_to=[],
        use_cpu=not gpu,
        bf16=False,
        gradient_checkpointing=gpu,  # memory for recomputation: worth it on a GPU only
        disable_tqdm=True,
    )


def run_to_end(trainer: Any, base: Any, out: Path, lora: bool) -> Path:
    """Train (resuming from the folder's last checkpoint), keep the adapter or weights, write
    ``final/`` and the curves."""
    trainer.train(resume_from_checkpoint=_last_checkpoint(out))
    trainer.save_model(str(out / "adapter" if lora else out / "weights"))
    _save_final(trainer, base, out)
    plot_curves(out)
    return out


def _save_final(trainer: Any, base: Any, out: Path) -> Path:
    """The trained model, LoRA merged, with its processor, written whole into ``out/final``."""
    import shutil

    model = trainer.accelerator.unwrap_model(trainer.model)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    final, tmp = out / "final", out / "final.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    (base.processor or base.tokenizer).save_pretrained(tmp)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return final


def _load_base(model: str, device: str, constrain: bool | None) -> Any:
    from mcr.models import load_model

    gpu = device != "cpu" and _cuda()  # on a CPU the weights train in float32
    options: dict[str, Any] = {"device_map": "auto" if gpu else "cpu", "dtype": "auto" if gpu else "float32"}
    if constrain is not None:
        options["constrain"] = constrain
    base = load_model(model, **options)
    if not hasattr(base, "tokenizer") or not hasattr(base, "model"):
        raise TrainError(f"{model} is not a local transformers model: training needs its weights")
    tok = base.tokenizer
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return base


def train_rl(
    method: str,
    model: str,
    samples: Sequence[Sample],
    out: str | os.PathLike,
    env: EnvConfig | None = None,
    steps: int = 100,
    generations: int = 4,
    questions_per_step: int = 1,
    learning_rate: float = 1e-5,
    lora: bool = True,
    lora_rank: int = 16,
    weights: dict[str, float] | None = None,
    use_vllm: bool = False,
    save_every: int = 50,
    device: str = "auto",
    constrain: bool | None = None,
    seed: int = 0,
) -> Path:
    """GRPO (``method="grpo"``) or GSPO (``"gspo"``: sequence-level importance sampling) of
    ``model`` on MCR episodes of ``samples``; returns the output folder."""
    if method not in ("grpo", "gspo"):
        raise TrainError(f"unknown method {method!r}: grpo or gspo")
    if generations < 2:
        raise TrainError("group methods need at least 2 generations per question")
    if not samples:
        raise TrainError("no questions to train on")
    _need_packages()
    if use_vllm and _absent("vllm"):
        raise TrainError("--vllm needs vLLM on a CUDA machine: pip install vllm (or train without --vllm)")
    from datasets import Dataset
    from trl import GRPOConfig

    from .trainer import EpisodeTrainer

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    env = env or EnvConfig()
    weights = dict(DEFAULT_WEIGHTS, **(weights or {}))
    funcs, func_weights = chosen(weights)
    base = _load_base(model, device, constrain)
    sequence = method == "gspo"
    args = GRPOConfig(
        **shared_settings(out, save_every, device),
        max_steps=steps,
        per_device_train_batch_size=generations * questions_per_step,
        gradient_accumulation_steps=1,
        num_generations=generations,
        learning_rate=learning_rate,
        temperature=env.temperature,
        beta=0.0,
        loss_type="grpo",  # the per-sequence objective of both papers
        importance_sampling_level="sequence" if sequence else "token",
        # GSPO's clipping range is on sequence-level ratios, which stay far closer to 1 than token ratios
        epsilon=3e-4 if sequence else 0.2,
        epsilon_high=4e-4 if sequence else 0.28,
        reward_weights=func_weights,
        seed=seed,
        use_vllm=use_vllm,
        max_completion_length=env.max_new_tokens,
    )
    episodes = Episodes(base, list(samples), out / "episodes", env)
    trainer = EpisodeTrainer(
        model=base.model,
        reward_funcs=funcs,
        args=args,
        train_dataset=Dataset.from_list(dataset_rows(samples)),
        processing_class=base.processor if _is_vlm(base) else base.tokenizer,
        peft_config=lora_config(lora_rank) if lora else None,
        rollout_func=episodes,
        callbacks=[_logging_callback(out)],
    )
    trainer.episodes = episodes
    write_text(
        out / "train.json",
        json.dumps(_settings(method, model, env, steps, generations, learning_rate, lora, weights), indent=1),
    )
    return run_to_end(trainer, base, out, lora)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _is_vlm(base: Any) -> bool:
    processor = getattr(base, "processor", None)
    return (
        processor is not None
        and processor is not getattr(base, "tokenizer", None)
        and hasattr(processor, "image_processor")
    )


def _settings(
    method: str, model: str, env: EnvConfig, steps: int, generations: int, lr: float, lora: bool, weights: dict
) -> dict:
    return {
        "method": method,
        "model": model,
        "env": {**asdict(env), "index": list(env.index), "tools": None if env.tools is None else list(env.tools)},
        "steps": steps,
        "generations": generations,
        "learning_rate": lr,
        "lora": lora,
        "importance_sampling": "sequence" if method == "gspo" else "token",
        "rewards": weights,
    }
