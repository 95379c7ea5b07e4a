"""Group commit: the readings of every bus within a few milliseconds go into
the outbox in one transaction."""
from __future__ import annotations

import asyncio
from collections.abc import Callable

from .outbox import Message, Outbox


class GroupCommit:
    """Readings of all buses within a few milliseconds go into the outbox in
    one transaction: one SD-card sync per window instead of one per poll.

    A crash can lose only what was read in the last window and not yet
    committed, which is the same as having crashed a moment earlier: nothing
    that was stored is lost, and a reading's messages and the interpreter
    snapshot that goes with them always commit together.
    """

    WINDOW_S = 0.02
    MAX_PENDING = 500

    def __init__(self, outbox: Outbox, after: "Callable[[], None]") -> None:
        self.outbox = outbox
        self.after = after
        self.msgs: list[Message] = []
        self.kv: dict = {}
        self._timer: asyncio.TimerHandle | None = None
        self.commits = 0

    def add(self, msgs: list[Message], kv: dict | None) -> None:
        self.msgs.extend(msgs)
        if kv:
            self.kv.update(kv)
        if len(self.msgs) >= self.MAX_PENDING:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.WINDOW_S, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.msgs and not self.kv:
            return
        msgs, kv = self.msgs, self.kv
        self.msgs, self.kv = [], {}
        self.outbox.put(msgs, kv=kv or None)
        self.commits += 1
        self.after()
