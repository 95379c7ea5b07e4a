"""The writes of state.json that the store's thread makes (writer.py): the
latest docs of each table, written once per flush, only when something
changed; a file that cannot be written is one warning every ten minutes,
not one per flush."""
from __future__ import annotations

import logging
import threading
import time
from typing import Any

from gateway.site.state import StateStore

STATE_WARN_EVERY_S = 600.0


class StateWrites:
    def __init__(self, state: StateStore | None, log: logging.Logger) -> None:
        self.state = state
        self._log = log
        self._lock = threading.Lock()
        self._due: dict[str, dict] = {}
        self._failing = False
        self._warned = float("-inf")

    def due(self, table: str, docs: dict[str, Any]) -> bool:
        """Hand docs over (a newer hand-over replaces an unwritten one);
        True when nothing was waiting, so the thread must be told."""
        with self._lock:
            first = not self._due
            self._due[table] = docs
        return first

    def write(self) -> None:
        """On the store's thread."""
        with self._lock:
            due, self._due = self._due, {}
        if self.state is None:
            return
        for table, docs in due.items():
            try:
                self.state.put_many(table, docs)
            except OSError as exc:
                self._failing = True
                if time.monotonic() - self._warned >= STATE_WARN_EVERY_S:
                    self._warned = time.monotonic()
                    self._log.warning("%s not written (%s): `edgegw status` shows older values while the "
                                      "daemon is stopped; tried again at every flush", self.state.path, exc)
                continue
            if self._failing:
                self._log.info("%s written again", self.state.path)
                self._failing, self._warned = False, float("-inf")

    def close(self) -> None:
        if self.state is not None:
            self.state.close()
