"""What the outbox keeps in RAM while its file cannot be written (disk full,
read-only, I/O error): events only, bounded, with the kv entries that came
with them (docs/durability.md "Disk full, read-only filesystem")."""
from __future__ import annotations

from collections import OrderedDict

from .outbox_rows import Priority, Row

MEMORY_EVENTS = 10_000
MEMORY_BYTES = 8 * 1024 * 1024


class Held:
    """Held events under negative ids (never a row id), oldest first."""

    def __init__(self, max_events: int = MEMORY_EVENTS, max_bytes: int = MEMORY_BYTES) -> None:
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.rows: OrderedDict[int, Row] = OrderedDict()
        self.bytes = 0
        self.kv: dict[str, str] = {}
        self._next_id = -1

    def __bool__(self) -> bool:
        return bool(self.rows or self.kv)

    def __len__(self) -> int:
        return len(self.rows)

    def hold(self, rows: list[Row], kv: dict[str, str], inflight: set[int]) -> list[int]:
        """Keep the events, drop the rest; returns drops by Priority."""
        dropped = [0, 0, 0]
        for r in rows:
            if r.prio != Priority.EVENT:
                dropped[r.prio] += 1
                continue
            self.rows[self._next_id] = r
            self._next_id -= 1
            self.bytes += r.size
        # The kv (a log cursor) stays with its events: both are written back
        # together, or both are lost and the source is re-read after restart.
        self.kv.update(kv)
        while len(self.rows) > self.max_events or self.bytes > self.max_bytes:
            victim = next((mid for mid in self.rows if mid not in inflight), None)
            if victim is None:
                break
            self.bytes -= self.rows.pop(victim).size
            dropped[Priority.EVENT] += 1
        return dropped

    def pop(self, mid: int) -> None:
        r = self.rows.pop(mid, None)
        if r is not None:
            self.bytes -= r.size

    def clear(self) -> None:
        self.rows.clear()
        self.kv.clear()
        self.bytes = 0

    def oldest_stamp(self) -> float | None:
        return next(iter(self.rows.values())).stamp if self.rows else None
