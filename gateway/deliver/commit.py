"""Group commit, the loop's side: readings go to the store's thread, which
commits what every bus handed over within a few milliseconds in one
transaction (gateway/deliver/writer.py)."""
from __future__ import annotations

from collections.abc import Callable

from .outbox import Message
from .writer import StoreWriter


class GroupCommit:
    """Readings of all buses within a few milliseconds go into the outbox in
    one transaction: one SD-card sync per window instead of one per poll.

    The window is kept by the store's thread, so adding never waits on the
    disk. A crash can lose only what was read in the last window and not yet
    committed, which is the same as having crashed a moment earlier: nothing
    that was stored is lost, and a reading's messages and the interpreter
    snapshot that goes with them always commit together.
    """

    def __init__(self, outbox: StoreWriter, after: Callable[[], None]) -> None:
        self.outbox = outbox
        self.after = after
        outbox.on_commit(self._committed)
        self.commits = 0

    def add(self, msgs: list[Message], kv: dict | None) -> None:
        self.outbox.put(msgs, kv)

    def flush(self) -> None:
        """Commit what was handed over without waiting for the window to end."""
        self.outbox.commit_soon()

    def _committed(self) -> None:
        self.commits += 1
        self.after()
