"""Agents: ``Agent`` and its run result."""

from __future__ import annotations

from .agent import Agent, BaselineAgent, RunResult

__all__ = ["Agent", "BaselineAgent", "RunResult"]
