"""The MCR policy: which phases run around the one loop, and the words that start them.

perceive: an overview of the whole video (shot-representative frames and the index's
    transcript and on-screen-text digest) before the first turn.
plan: the model writes sub-questions and spans to look at, before acting.
reflect: after every ``reflect_every`` turns that ran tools, the model says what it
    learned, what is missing, and how the plan changes.
verify: a proposed answer is checked (rules, then a model pass over the cited spans)
    before it is committed.
investigate: the model may hand a sub-question about a sub-span to a child run of the
    same loop, with denser frames and its own step budget, sharing memory.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from mcr.models.phases import said


@dataclass(frozen=True)
class Policy:
    perceive: bool = True
    overview_frames: int = 16
    plan: bool = True
    reflect_every: int = 1  # 0: never
    verify: bool = True
    model_check: bool = True
    max_verify_rounds: int = 3
    min_confidence: float = 0.5  # a model check's "supported" passes only this sure or more
    require_evidence: bool = True
    # A cited span was looked at only if a frame shown to the model lies inside it or this close
    # to it (seconds), or a reading tool's lines (or an investigation, or memory made by
    # perception) overlap it that closely. One second: the spacing of inspect_frames' default
    # 1 fps, and well under a typical shot (2-5 s), so the frame still shows the same shot.
    seen_within_s: float = 1.0
    reading_tools: tuple[str, ...] = ("asr", "ocr")  # tools whose result spans are what they read
    verify_fps: float = 2.0
    verify_frames: int = 8  # per cited span
    investigate: bool = True
    max_depth: int = 2
    investigate_steps: int = 4
    investigate_fps: float = 2.0
    max_model_calls: int = 80  # all runs of one question together, children included
    max_answer_chars: int = 4000  # a longer answer is cut there, with a note saying so

    @classmethod
    def plain(cls) -> "Policy":
        """A plain tool loop: no overview, plan, reflection, verification or investigation."""
        return cls(perceive=False, plan=False, reflect_every=0, verify=False, investigate=False)

    @classmethod
    def baseline(cls, frames: int = 32) -> "Policy":
        """How VLMs are usually evaluated: uniform frames, one answer, nothing else."""
        return cls(perceive=True, overview_frames=frames, plan=False, reflect_every=0, verify=False, investigate=False)

    def for_child(self) -> "Policy":
        """Children look and answer; the parent plans, reflects and verifies."""
        return replace(
            self,
            perceive=True,
            plan=False,
            reflect_every=0,
            model_check=False,
            overview_frames=min(self.overview_frames, 8),
        )

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict) -> "Policy":
        """The policy a trace recorded (fields it does not know are left at their defaults)."""
        known = {f for f in cls.__dataclass_fields__}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in known}
        return cls(**values)


# Each phase is said in a message appended to the context (``Phase: NAME. ...``): the system
# prompt and the tool list stay the same on every call, so a server reuses what it has read.
PLAN_PROMPT = said(
    "plan",
    "Before using tools, write a short plan: the sub-questions to answer, and the spans of the video "
    "(HH:MM:SS.s-HH:MM:SS.s) and tools you will use for each. Do not call tools or answer yet.",
)

REFLECT_PROMPT = said(
    "reflect",
    "Reflect in a few lines: what did the last results show (cite spans), what is still missing to "
    "answer, and how does the plan change? Do not call tools or answer yet.",
)

ACT_PROMPT = said(
    "act",
    "Call the tools you need to look at the video, or call the answer tool with the answer and the spans that show it.",
)


def answer_prompt(stop: str | None) -> str:
    """The last call of a run whose budget is spent (``stop``), or of a run with no steps (None)."""
    if stop is None:
        return said(
            "answer", "Answer the question now from the frames above, with the answer tool, and cite the spans."
        )
    return said(
        "answer",
        f"The budget is spent ({stop.replace('_', ' ')}). Call the answer tool now with your best answer "
        "from what you have seen, and cite the spans.",
    )


def refused(phase: str, names: list[str]) -> str:
    """What the model is told when it called tools in a phase that may call none: they were not run."""
    return (
        f"The {phase} phase may call no tool; the call of {', '.join(names)} was not run. "
        "Tools can be called in the act phase."
    )


def __getattr__(name: str) -> Any:
    # The investigate tool's schema and arguments load with pydantic, when first asked for.
    if name == "INVESTIGATE_SCHEMA":
        from mcr.run.replies import investigate_schema

        return investigate_schema()
    if name == "InvestigateArguments":
        from mcr.run.replies import InvestigateArguments

        return InvestigateArguments
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
