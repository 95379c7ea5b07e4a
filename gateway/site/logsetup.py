"""Logging to stderr in a form journald understands.

Under systemd (JOURNAL_STREAM set) or when stderr is not a terminal, each line
starts with a syslog priority prefix `<N>` that journald turns into the
entry's priority, and no timestamp (journald adds its own). On a terminal,
lines carry a local timestamp for a person.
"""
from __future__ import annotations

import logging
import os
import sys

_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        prio = _PRIORITY.get(record.levelno, 6)
        text = super().format(record)
        # A multi-line message (a traceback) keeps its priority on every line.
        return "\n".join(f"<{prio}>{line}" for line in text.splitlines())


def setup(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM") or not sys.stderr.isatty():
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # pymodbus logs every failed request with a frame dump at ERROR; the bus
    # task classifies and counts failures itself.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
