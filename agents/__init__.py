"""Agents: ``Agent`` and its run result."""
from __future__ import annotations

from .agent import Agent, RunResult

__all__ = ["Agent", "RunResult"]
