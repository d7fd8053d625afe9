"""Logging set-up shared by stages and the CLI."""

import logging
import os
import warnings


def setup() -> None:
    logging.basicConfig(
        level=os.environ.get("TALOOP_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    # reasoning-gym and transformers warn about things we handle; keep the log readable.
    warnings.filterwarnings("ignore", category=UserWarning, module="reasoning_gym")
    # One line per HTTP request from the API clients would bury the progress bar; their retry
    # notices (openai/anthropic loggers) stay.
    for name in ("httpx", "httpx2", "matplotlib"):
        logging.getLogger(name).setLevel(logging.WARNING)
