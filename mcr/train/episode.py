"""One training episode's tokens: what the policy model was shown and what it sampled.

An episode is an ordinary MCR run (the agent's loop, context rendering and tools) whose model
is an :class:`EpisodeModel`: it samples each turn from the model being trained and keeps the
turn's prompt ids, sampled ids and their log-probabilities.

The trainer needs one token sequence per episode. The last turn's prompt is the whole
conversation as MCR rendered it (the task, what was perceived, every earlier turn and tool
result), so the sequence is that prompt plus the last sampled turn, cut after the first turn's
prompt: ``prompt_ids`` is the opening context, ``completion_ids`` everything after it. Tokens
the model wrote (each assistant turn, from after its header through its end-of-turn token)
are trained on (``env_mask`` 1); tool results and other context are not (0). Every call of a
run is offered the same tools and its context is append-only, so the last prompt begins with
the first, a forced answer's included: the chain is trained whole. Only a compaction of the
context changes what was sent; the sequence then starts at the earliest turn whose prompt the
last one still begins with (``compacted``). A check of the answer made after the last turn,
with its own prompt, is left out.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

MEDIA_KEYS = ("pixel_values", "image_grid_thw", "pixel_values_videos", "video_grid_thw", "mm_token_type_ids")


@dataclass
class Turn:
    prompt_ids: list[int]
    sampled_ids: list[int]
    logprobs: list[float]
    media: dict = field(default_factory=dict)  # the processor's pixel tensors for this prompt (VLMs)


@dataclass
class Sample:
    """One episode as the trainer takes it."""

    prompt_ids: list[int]
    completion_ids: list[int]
    logprobs: list[float]  # NaN where no sampling log-probability is known (re-rendered turns, context)
    env_mask: list[int]  # 1: written by the model; 0: tool results and other context
    media: dict
    compacted: bool = False  # the context was compacted: the sequence starts after the compaction

    def key(self) -> str:
        return sequence_key(self.prompt_ids + self.completion_ids)


def sequence_key(ids: Sequence[int]) -> str:
    """A key for a token sequence (how the trainer's forward pass finds an episode's pixels)."""
    return hashlib.sha1(",".join(map(str, ids)).encode()).hexdigest()


class EpisodeModel:
    """An MCR model that samples from ``policy`` (the model being trained) and records each turn.

    ``base`` is the loaded :class:`~mcr.models.local.TransformersModel` (its processor, chat
    template, profile and constrained decoding); its weights are swapped for ``policy``. Every
    other attribute is the base model's."""

    streams_text = False

    def __init__(self, base: Any, temperature: float = 1.0, top_p: float | None = None, vllm: Any = None) -> None:
        self.base = base
        self.vllm = vllm  # TRL's vLLM generation, when the trainer is configured for it
        self.temperature = float(temperature)
        self.top_p = top_p
        self.turns: list[Turn] = []
        self.picture_tokens = picture_tokens(base)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.base, name)

    def generate(self, messages: list, tools: list[dict] | None = None, **options: Any) -> Any:
        import torch

        options.pop("on_text", None)
        if self.vllm is not None:
            return self._generate_vllm(messages, tools, options)
        options["temperature"] = self.temperature
        if self.picture_tokens:  # a sampled placeholder would stand for pixels that do not exist
            options.setdefault("suppress_tokens", self.picture_tokens)
        if self.top_p:
            options["top_p"] = self.top_p

        def record(batch: Any, new: Any, logits: Sequence[Any]) -> None:
            ids = new.tolist()
            logprobs = []
            for i, token in enumerate(ids[: len(logits)]):
                row = torch.log_softmax(logits[i][0].float() / max(self.temperature, 1e-6), dim=-1)
                logprobs.append(float(row[token]))
            media = {k: batch[k].detach().cpu() for k in MEDIA_KEYS if k in batch}
            self.turns.append(Turn(batch["input_ids"][0].tolist(), ids, logprobs, media))

        return self.base.generate(messages, tools, record=record, **options)

    def _generate_vllm(self, messages: list, tools: list[dict] | None, options: dict) -> Any:
        """One turn sampled by TRL's vLLM engine (weights synced by the trainer each step), from the
        same rendered prompt; text contexts only, and without constrained decoding."""
        from mcr.models.base import ModelOutput
        from mcr.types import Usage

        _, batch = self.base.inputs(messages, tools, options.get("enable_thinking"))
        if any(k in batch for k in MEDIA_KEYS):
            raise ValueError("episodes generated with vLLM take text contexts only: train this model without --vllm")
        ids = batch["input_ids"][0].tolist()
        _, completions, logprobs, _ = self.vllm.generate([ids], None, 1)
        new = list(completions[0])
        sampled = [float(x[0]) if x and x[0] is not None else float("nan") for x in logprobs[0]]
        self.turns.append(Turn(ids, new, sampled, {}))
        raw = self.base.tokenizer.decode(new, skip_special_tokens=True)
        known = {t.get("function", t).get("name") for t in tools or []}
        return ModelOutput.from_text(raw, Usage(len(ids), len(new), 1), known=known or None)


def picture_tokens(base: Any) -> list[int]:
    """The ids of the tokens that stand for pictures (image and video placeholders, vision brackets)."""
    tok, processor = base.tokenizer, getattr(base, "processor", None)
    ids = {getattr(processor, k, None) for k in ("image_token_id", "video_token_id")}
    for name in (
        "<|vision_start|>",
        "<|vision_end|>",
        "<|image_pad|>",
        "<|video_pad|>",
        "<start_of_image>",
        "<image_soft_token>",
    ):
        i = tok.convert_tokens_to_ids(name) if name in tok.get_vocab() else None
        ids.add(i)
    return sorted(i for i in ids if isinstance(i, int) and i >= 0)


def assistant_header(tokenizer: Any) -> list[int]:
    """The tokens a chat template puts before an assistant turn (``<|im_start|>assistant\\n``,
    ``<start_of_turn>model\\n``...): the generation prompt of a one-message conversation."""
    if not getattr(tokenizer, "chat_template", None):  # MCR writes the turns itself
        from mcr.models.local import plain_header

        header = plain_header(tokenizer)
    else:
        conv = [{"role": "user", "content": "x"}]
        bare = tokenizer.apply_chat_template(conv, tokenize=False, add_generation_prompt=False)
        full = tokenizer.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
        header = full[len(bare) :] if full.startswith(bare) else ""
    return tokenizer.encode(header, add_special_tokens=False) if header else []


def _find(seq: list[int], part: list[int], start: int) -> int:
    n = len(part)
    for i in range(start, len(seq) - n + 1):
        if seq[i : i + n] == part:
            return i
    return -1


def model_token_mask(ids: list[int], header: list[int], stops: Sequence[int]) -> list[int]:
    """1 for the tokens inside assistant turns of ``ids`` (after each header, through the turn's
    end-of-turn token), 0 elsewhere."""
    mask = [0] * len(ids)
    if not header:
        return mask
    stop_set, i = set(stops), 0
    while True:
        at = _find(ids, header, i)
        if at < 0:
            return mask
        j = at + len(header)
        while j < len(ids):
            mask[j] = 1
            if ids[j] in stop_set:
                break
            j += 1
        i = j + 1


def episode_sample(turns: list[Turn], header: list[int], stops: Sequence[int], phases: Sequence[str] = ()) -> Sample:
    """The trainer's sample of an episode (see the module's docstring).

    ``phases`` names each turn's phase (act, plan, reflect, verify). The sequence ends with the
    last acting turn (the one that committed the answer, or was made to); a check of the answer
    after it has its own prompt and is not part of the sequence. It starts at the earliest turn
    whose prompt the final prompt still begins with: a turn asked with a prompt of its own (a
    context compacted since) is not in it."""
    if not turns:
        raise ValueError("an episode with no model turn has nothing to train on")
    acting = [i for i, ph in enumerate(phases[: len(turns)]) if ph == "act"]
    last = turns[acting[-1] if acting else len(turns) - 1]
    nan = float("nan")
    start = next(i for i, t in enumerate(turns) if last.prompt_ids[: len(t.prompt_ids)] == t.prompt_ids)
    first = turns[start]
    if first is last:
        return Sample(
            last.prompt_ids, last.sampled_ids, list(last.logprobs), [1] * len(last.sampled_ids), last.media, start > 0
        )
    cut = len(first.prompt_ids)
    context = last.prompt_ids[cut:]
    # the context after the opening prompt starts inside the first assistant turn (its header is in the prompt)
    mask = model_token_mask(header + context, header, stops)[len(header) :]
    logprobs = [nan] * len(context)
    # turns rendered back exactly as sampled keep their sampling log-probabilities
    pos = 0
    for turn in turns[start:]:
        if turn is last:
            break
        at = _find(context, turn.sampled_ids, pos) if turn.sampled_ids else -1
        if at >= 0:
            logprobs[at : at + len(turn.sampled_ids)] = turn.logprobs[: len(turn.sampled_ids)]
            pos = at + len(turn.sampled_ids)
    sampled = list(last.logprobs) + [nan] * (len(last.sampled_ids) - len(last.logprobs))
    return Sample(
        first.prompt_ids,
        context + last.sampled_ids,
        logprobs + sampled,
        mask + [1] * len(last.sampled_ids),
        last.media,
        start > 0,
    )


def finite(values: Sequence[float]) -> list[float]:
    """``values`` with NaN kept (the trainer reads NaN as 'unknown') and infinities clipped."""
    return [v if math.isnan(v) else max(min(v, 0.0), -1e4) for v in values]
