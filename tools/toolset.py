"""Tools that share state: ``@tool`` methods of a class, bound to an instance.

class Counter(Toolset):
    def __init__(self):
        self.seen = 0

    @tool
    async def count(self, n: int) -> int:
        \"\"\"Add to the count.

        Args:
            n: How many to add.
        \"\"\"
        self.seen += n
        return self.seen

Agent(tools=Counter().tools())     # or tools_of(any_object)
"""

from __future__ import annotations

from typing import Any

from .base import Tool


def tools_of(obj: Any) -> list[Tool]:
    """The tools of ``obj``: its class's ``@tool`` methods bound to it, in the order they were written."""
    seen: dict[str, Tool] = {}
    for cls in reversed(type(obj).__mro__):
        for attribute, value in vars(cls).items():
            if isinstance(value, Tool):
                seen[attribute] = value
    return [getattr(obj, attribute) for attribute in seen]


class Toolset:
    """A base for a class whose ``@tool`` methods share state; ``.tools()`` gives them bound."""

    def tools(self) -> list[Tool]:
        return tools_of(self)
