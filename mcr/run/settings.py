"""What a run is given besides its model, context and tools: its budget, and the settings that
say how it goes and where it stands among runs."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from mcr.run.policy import Policy
from mcr.types import TimeSpan


@dataclass
class Budget:
    """When a run must stop. A spent budget ends with one last call that asks for an answer."""

    max_steps: int = 12
    max_wall_s: float | None = None
    max_tokens: int | None = None
    max_parallel_tools: int = 4

    def to_dict(self) -> dict:
        return {"max_steps": self.max_steps, "max_wall_s": self.max_wall_s, "max_tokens": self.max_tokens}


@dataclass
class RunSettings:
    """How one run goes, beside what it works on (model, context, tools): its budget and policy,
    its place among runs (id, depth, parent), the model's options, the answer's form (None: read
    from the question), the span a child run looks at, and the model-call count that a run and
    its children share."""

    budget: Budget = field(default_factory=Budget)
    policy: Policy = field(default_factory=Policy.plain)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    depth: int = 0
    parent_run_id: str | None = None
    generate_options: dict = field(default_factory=dict)
    answer_form: str | None = None
    focus: TimeSpan | None = None
    calls: dict = field(default_factory=lambda: {"used": 0})


__all__ = ["Budget", "RunSettings"]
