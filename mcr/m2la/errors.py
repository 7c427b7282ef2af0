"""Errors raised by the M2LA package (no heavy imports here)."""

from mcr.errors import MCRError


class M2LAError(MCRError, ValueError):
    """Invalid input for a latent-attention operation (conversion, loading, caching).

    The message is one line that says what was wrong and what is allowed.
    """
