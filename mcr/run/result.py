"""``RunResult``: how a run ended. The loop returns it, the ``run_finished`` event carries it,
and ``Agent.run`` hands it to the caller."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mcr.types import TimeSpan, Usage

NOT_OK = ("failed", "no_answer", "error", "interrupted")  # the README's status table lists these last


@dataclass
class RunResult:
    answer: str = ""
    status: str = "no_answer"  # verified | unverified | failed | answered | max_steps | timeout | ... | error
    evidence: list[TimeSpan] = field(default_factory=list)
    steps: int = 0
    trace_path: str | None = None
    usage: Usage = field(default_factory=Usage)
    run_id: str = ""
    wall_s: float = 0.0
    error: str | None = None
    answer_form: str = "text"
    value: Any = None  # choice: option index; span: TimeSpan; count: int; text: str
    verdicts: list[dict] = field(default_factory=list)
    frames_seen: int = 0
    evidence_videos: list[str] = field(default_factory=list)  # a library run's: the video of each evidence span

    @property
    def ok(self) -> bool:
        """False when the run gave no trustworthy answer: it failed its checks, gave none, hit an
        error or was interrupted."""
        return self.status not in NOT_OK

    def _value_json(self) -> Any:
        return self.value.to_list() if isinstance(self.value, TimeSpan) else self.value

    def to_dict(self) -> dict:
        return {
            "answer": self.answer,
            "status": self.status,
            "evidence": [str(s) for s in self.evidence],
            "evidence_seconds": [s.to_list() for s in self.evidence],
            "steps": self.steps,
            "trace_path": self.trace_path,
            "usage": self.usage.to_dict(),
            "run_id": self.run_id,
            "wall_s": self.wall_s,
            "error": self.error,
            "answer_form": self.answer_form,
            "value": self._value_json(),
            "verdicts": self.verdicts,
            "frames_seen": self.frames_seen,
            **self._videos(),
        }

    def _videos(self) -> dict:
        """The videos of the evidence, in a library run only (a one-video run's fields stay as they are)."""
        return {"evidence_videos": list(self.evidence_videos)} if self.evidence_videos else {}

    def to_trace(self) -> dict:
        """The fields of the ``run_finished`` line of a trace (its run id is the event's)."""
        return {
            "answer": self.answer,
            "status": self.status,
            "evidence": [s.to_list() for s in self.evidence],
            "steps": self.steps,
            "usage": self.usage.to_dict(),
            "wall_s": self.wall_s,
            "error": self.error,
            "trace_path": self.trace_path,
            "answer_form": self.answer_form,
            "value": self._value_json(),
            "verdicts": list(self.verdicts),
            "frames_seen": self.frames_seen,
            **self._videos(),
        }

    @classmethod
    def from_trace(cls, d: dict, run_id: str = "") -> "RunResult":
        """Read back what ``to_trace`` wrote; missing fields take their defaults."""
        form = d.get("answer_form") or "text"
        value = d.get("value")
        return cls(
            answer=d.get("answer") or "",
            status=d.get("status") or "",
            evidence=[TimeSpan(*s) for s in d.get("evidence") or []],
            steps=int(d.get("steps") or 0),
            trace_path=d.get("trace_path"),
            usage=Usage.from_dict(d.get("usage") or {}),
            run_id=run_id or d.get("run_id") or "",
            wall_s=float(d.get("wall_s") or 0.0),
            error=d.get("error"),
            answer_form=form,
            value=TimeSpan(*value) if form == "span" and value else value,
            verdicts=list(d.get("verdicts") or []),
            frames_seen=int(d.get("frames_seen") or 0),
            evidence_videos=[str(v) for v in d.get("evidence_videos") or []],
        )


__all__ = ["NOT_OK", "RunResult"]
