"""The errors a user can cause and fix: one family, printed by ``mcr-agent`` as one line.

Every error that comes from what a user passed (a video, a model name, a file, an
option) derives from :class:`MCRError`; its message names the problem and what to do.
``mcr-agent`` prints ``mcr-agent: error: MESSAGE`` and exits with the error's
``exit_code``. Errors a tool raises while the model works (``ToolRetry``, ``ToolError``)
are not part of it: they go back to the model as tool results.

This module imports nothing from ``mcr``, so every layer can use it.
"""

from __future__ import annotations


class MCRError(Exception):
    """A problem the user can fix. The message says what is wrong and what to do.

    ``exit_code`` (default 2) is the status ``mcr-agent`` exits with.
    """

    exit_code: int = 2

    def __init__(self, *args: object, exit_code: int | None = None) -> None:
        super().__init__(*args)
        if exit_code is not None:
            self.exit_code = int(exit_code)

    def one_line(self) -> str:
        """The message on one line (line breaks folded), or the class name when it is empty."""
        text = " ".join(part.strip() for part in str(self).splitlines() if part.strip())
        return text or type(self).__name__


class StageError(MCRError, ValueError):
    """An index stage name that is not known; the message lists the known ones."""


class ToolNameError(MCRError, ValueError):
    """A tool asked for by name (``Agent(tools=[...])``, ``--tools``) that is not there."""


__all__ = ["MCRError", "StageError", "ToolNameError"]
