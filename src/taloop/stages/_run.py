"""How a stage module runs as a process: ``python -m taloop.stages.<name>`` calls
:func:`run` with its ``main``."""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable

from taloop.core.errors import DEBUG_ENV, UsageError, debug


def run(main: Callable[[], object]) -> None:
    """Run ``main`` with the objects that exist before it (the imports) frozen out of garbage
    collection, and everything frozen once it returns.

    The imports of torch and transformers make ~460k objects that live until the process ends,
    and every full collection walked them all: during an evaluate stage four took 0.48 s, and
    the one the interpreter runs at exit 0.8 s, of a 13 s stage. Frozen, they are never walked;
    what the stage makes and drops is collected as before. At exit nothing is left to collect,
    and no stage holds garbage whose finalizer matters then: files are closed where written.

    A :class:`~taloop.core.errors.UsageError` ends the process with its message alone (exit 1): the
    message names what to fix, and dvc shows the stage's output above its own failure line."""
    gc.freeze()
    try:
        main()
    except UsageError as err:
        if debug():
            raise
        stage = sys.argv[0].rsplit("/", 1)[-1].removesuffix(".py")
        sys.stderr.write(f"error in {stage}: {err}\n(set {DEBUG_ENV}=1 for the traceback)\n")
        sys.exit(1)
    gc.freeze()
