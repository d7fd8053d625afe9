"""Errors the user fixes, not the code: bad params, a malformed dataset row, a missing API key,
an unknown model, a spend the budget refuses.

The stages (taloop.stages._run) and the ``taloop`` command print such an error's message once,
without a traceback, and exit 1: the message says what is wrong, where and how to fix it, and a
traceback through taloop's internals would only bury it. ``TALOOP_DEBUG=1`` shows the traceback.
"""

from __future__ import annotations

import os

DEBUG_ENV = "TALOOP_DEBUG"


class UsageError(Exception):
    """Base of the errors whose message alone tells the user what to fix."""


def debug() -> bool:
    """Whether ``TALOOP_DEBUG`` asks for tracebacks (any value but empty, 0 or false)."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")
