"""MCR as an environment for TRL's ``GRPOTrainer``: one episode is one question on one video.

:class:`Episodes` is the trainer's ``rollout_func``. For each prompt it is given (a dataset row
naming a question), it runs MCR's own agent (policy, context rendering, tools) with an
:class:`~mcr.train.episode.EpisodeModel` that samples every turn from the model being
trained. The episode ends as any run does: on a committed answer or when its budget is spent.
The run is scored by :func:`mcr.eval.question.make_record`, the very function ``mcr-agent
eval`` scores with, and the record goes to the reward functions of :mod:`mcr.train.rewards`.

Each video has one index database under the work folder, built by the first rollout that needs
it; every episode runs on a scratch copy of it, so the rollouts of a group (and of later steps)
share the index and nothing else: an episode's answer and what it saw, which MCR keeps in memory
for later questions, never reach another episode's context.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from mcr.eval.question import make_record
from mcr.eval.samples import Sample

from .episode import EpisodeModel, assistant_header, episode_sample, finite
from .episode import Sample as EpisodeSample

ROW_PREFIX = "mcr-question:"  # the system message of a dataset row names its question


@dataclass
class EnvConfig:
    """How episodes run. ``tools``: the built-in tools kept (None: all); ``cost`` terms are
    per frame seen and per model call (subtracted)."""

    agent: str = "mcr"  # mcr | plain
    max_steps: int = 6
    index: tuple[str, ...] = ("shots", "transcript")
    tools: tuple[str, ...] | None = None
    temperature: float = 1.0
    top_p: float | None = None
    max_new_tokens: int = 256
    system_prompt: str | None = None


def row_prompt(sample: Sample) -> list[dict]:
    """The dataset's ``prompt`` for a question: the trainer hands it back to :class:`Episodes`,
    which runs the real context (the agent renders its own prompt)."""
    return [
        {"role": "system", "content": ROW_PREFIX + sample.id},
        {"role": "user", "content": sample.question},
    ]


def row_id(prompt: Any) -> str:
    for message in prompt if isinstance(prompt, list) else []:
        content = message.get("content")
        if isinstance(content, list):  # multimodal form: [{"type": "text", "text": ...}]
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if message.get("role") == "system" and isinstance(content, str) and content.startswith(ROW_PREFIX):
            return content[len(ROW_PREFIX) :]
    raise ValueError("a training prompt without its question id: build the dataset with mcr.train.dataset_rows")


def dataset_rows(samples: Sequence[Sample]) -> list[dict]:
    """One row per question: the prompt, and the columns the eval rewards read."""
    return [
        {
            "prompt": row_prompt(s),
            "question_id": s.id,
            "form": s.form,
            "options": list(s.options),
            "gold": "" if s.gold is None else str(s.gold),
        }
        for s in samples
    ]


@dataclass
class Episodes:
    """The ``rollout_func`` of ``GRPOTrainer`` (see the module's docstring)."""

    base: Any  # the loaded TransformersModel: processor, template, profile, constrained decoding
    samples: Sequence[Sample]
    work: Path
    config: EnvConfig = field(default_factory=EnvConfig)

    def __post_init__(self) -> None:
        self.by_id = {s.id: s for s in self.samples}
        self.work = Path(self.work)
        self.header = assistant_header(self.base.tokenizer)
        self.stops = list(self.base.stop_token_ids)
        self.media: dict[str, dict] = {}  # sequence key -> the episode's pixel tensors (VLMs)
        self._indexed: set[str] = set()
        self.episodes = 0

    def memory_for(self, sample: Sample) -> Path:
        """The video's index database: built once (by the first episode that needs it) and copied
        for every episode, so episodes share the index and nothing else."""
        name = hashlib.sha1(str(Path(sample.video_path or sample.video).resolve()).encode()).hexdigest()[:16]
        folder = self.work / "memory"
        folder.mkdir(parents=True, exist_ok=True)
        shared = folder / f"{name}.db"
        if name not in self._indexed and self.config.index:
            from mcr.media.sources import open_video
            from mcr.memory import Memory, VideoIndex

            memory = Memory(shared)
            try:
                VideoIndex(open_video(sample.video_path or sample.video), memory).build(list(self.config.index))
            finally:
                memory.close()
        self._indexed.add(name)
        return shared

    def episode_memory(self, sample: Sample) -> Path:
        """A scratch copy of the video's index database for one episode: what an episode writes
        (its answer, what it saw) never reaches another episode's context."""
        import sqlite3

        shared = self.memory_for(sample)
        scratch = self.work / "scratch" / f"{self.episodes}.db"
        scratch.parent.mkdir(parents=True, exist_ok=True)
        for leftover in scratch.parent.glob(f"{scratch.name}*"):
            _remove(leftover)
        source, target = sqlite3.connect(shared), sqlite3.connect(scratch)
        try:
            source.backup(target)  # the SQLite backup API: a consistent copy, WAL included
        finally:
            source.close()
            target.close()
        return scratch

    def run_episode(self, sample: Sample, policy: Any, vllm: Any = None) -> tuple[EpisodeSample, dict]:
        from mcr.agents import Agent

        self.base.model = policy
        model = EpisodeModel(self.base, self.config.temperature, self.config.top_p, vllm)
        c = self.config
        tools = list(c.tools) if c.tools is not None else ()
        phases: list[str] = []
        tools_run: list[str] = []

        def note(event: Any) -> None:
            if event.kind == "model_called":
                phases.append(event.phase)
            elif event.kind == "tool_returned" and not event.is_error:
                tools_run.append(event.name)

        agent = Agent(
            model,
            tools=tools,
            max_steps=c.max_steps,
            policy=c.agent,
            memory=self.episode_memory(sample),
            index=c.index,
            trace_dir=False,
            work_dir=self.work / "work",
            system_prompt=c.system_prompt,
            generate_options={"max_new_tokens": c.max_new_tokens},
            subscribers=[note],
        )
        try:
            result = agent.run(
                sample.video_path or sample.video,
                sample.question,
                options=sample.options or None,
                answer_form=sample.form,
            )
        finally:
            agent.memory.close()
            for scratch in (self.work / "scratch").glob(f"{self.episodes}.db*"):
                _remove(scratch)
        record = make_record(sample, result, model_name=str(getattr(self.base, "name", "")))
        record["frames_seen"] = int(getattr(result, "frames_seen", 0) or 0)
        record["evidence"] = [s.to_list() for s in getattr(result, "evidence", [])]
        record["tools_run"], record["phases"] = tools_run, phases
        self.episodes += 1
        if not model.turns:  # the run failed before the model was asked: nothing the model wrote
            ids = self.base.tokenizer.encode(sample.question, add_special_tokens=False) or [self.stops[0]]
            return EpisodeSample(ids, [self.stops[0]], [float("nan")], [0], {}), record
        return episode_sample(model.turns, self.header, self.stops, phases), record

    def _log(self, trainer: Any, sample: Sample, episode: EpisodeSample, record: dict) -> None:
        """One line of ``episodes.jsonl`` beside the work folder: what the episode did and scored."""
        line = {
            "step": int(getattr(getattr(trainer, "state", None), "global_step", 0)) + 1,
            "question_id": sample.id,
            "status": record.get("status"),
            "answer": record.get("answer"),
            "correct": record.get("correct"),
            "iou": record.get("iou"),
            "frames_seen": record.get("frames_seen"),
            "model_calls": (record.get("usage") or {}).get("model_calls"),
            "phases": record.get("phases"),
            "tools_run": record.get("tools_run"),
            "model_tokens": sum(episode.env_mask),
            "context_tokens": len(episode.env_mask) - sum(episode.env_mask),
            "pictures": bool(episode.media),
            "compacted": episode.compacted,
        }
        with open(self.work.parent / "episodes.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(line, default=str) + "\n")

    def __call__(self, prompts: Sequence[Any], trainer: Any) -> dict:
        policy = trainer.accelerator.unwrap_model(trainer.model)
        was_training = policy.training
        policy.eval()
        vllm = getattr(trainer, "vllm_generation", None) if getattr(trainer, "use_vllm", False) else None
        self.media.clear()  # the trainer is done with the last batch when it asks for the next
        out: dict[str, list] = {k: [] for k in ("prompt_ids", "completion_ids", "logprobs", "env_mask", "mcr_record")}
        try:
            for prompt in prompts:
                sample = self.by_id[row_id(prompt)]
                episode, record = self.run_episode(sample, policy, vllm)
                if episode.media:
                    self.media[episode.key()] = episode.media
                out["prompt_ids"].append(episode.prompt_ids)
                out["completion_ids"].append(episode.completion_ids)
                out["logprobs"].append(finite(episode.logprobs))
                out["env_mask"].append(episode.env_mask)
                out["mcr_record"].append(record)
                self._log(trainer, sample, episode, record)
        finally:
            if was_training:
                policy.train()
        return out


def _remove(path: Path) -> None:
    """A scratch file of an episode's memory, or a folder the store keeps beside it."""
    import shutil

    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
