"""The outbox's byte and age budgets: what is dropped, in which order.

Rules (docs/durability.md "Priorities, budgets and coalescing"): TELEMETRY
goes first, then STATE, then EVENT; an event outlives its age while anything
less important is still queued; what is in flight or already acknowledged is
never dropped. Every drop is counted per class in the counters row, inside
the caller's transaction."""
from __future__ import annotations

import sqlite3
from collections.abc import Callable

from .outbox_rows import Counters, Priority

AGE_CHECK_S = 1.0
_SCAN = 500


class Budget:
    def __init__(self, max_bytes: int | None, max_age_s: float | None) -> None:
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self.last_age_check = float("-inf")
        # expiry is checked at most this often: it costs a query per class
        self.age_every = AGE_CHECK_S if max_age_s is None else min(AGE_CHECK_S, max_age_s / 4)

    def expiry_due(self, db: sqlite3.Connection, now: float) -> bool:
        """Cheap look at the oldest row of each class, so that draining does not
        pay a write transaction every second when nothing has expired."""
        if self.max_age_s is None or now - self.last_age_check < self.age_every:
            return False
        cutoff = now - self.max_age_s
        for prio in Priority:
            row = db.execute("SELECT stamp FROM msg WHERE prio=? ORDER BY id LIMIT 1", (prio,)).fetchone()
            if row is not None and row[0] < cutoff:
                return True
        self.last_age_check = now
        return False

    def enforce(self, db: sqlite3.Connection, c: Counters, now: float, excluded: set[int],
                delete: Callable[[list[int]], list]) -> None:
        """Inside a write transaction: drop what the budgets say must go."""
        def drop(prio: int, want: int | None, older: float | None) -> None:
            gone = _drop_oldest(db, prio, want, older, excluded, delete)
            c.dropped[prio] += gone

        if self.max_age_s is not None and now - self.last_age_check >= self.age_every:
            self.last_age_check = now
            cutoff = now - self.max_age_s
            drop(Priority.TELEMETRY, None, cutoff)
            drop(Priority.STATE, None, cutoff)
            # an event outlives its age while anything else is still queued
            if c.n[Priority.TELEMETRY] + c.n[Priority.STATE] == 0:
                drop(Priority.EVENT, None, cutoff)
        if self.max_bytes is not None and c.bytes > self.max_bytes:
            for prio in (Priority.TELEMETRY, Priority.STATE, Priority.EVENT):
                excess = c.bytes - self.max_bytes
                if excess <= 0:
                    break
                drop(prio, excess, None)


def _drop_oldest(db: sqlite3.Connection, prio: int, want_bytes: int | None, older_than: float | None,
                 excluded: set[int], delete: Callable[[list[int]], list]) -> int:
    """Drop the oldest messages of one class until want_bytes are freed, or
    all stamped before older_than. Returns how many were dropped."""
    freed = 0
    dropped = 0
    last = 0
    while True:
        rows = db.execute(
            "SELECT id, size, stamp FROM msg WHERE prio=? AND id>? ORDER BY id LIMIT ?",
            (prio, last, _SCAN),
        ).fetchall()
        if not rows:
            return dropped
        victims = []
        done = False
        for rid, size, stamp in rows:
            last = rid
            if older_than is not None and stamp >= older_than:
                done = True  # stamps rise with id: the rest are younger
                break
            if rid in excluded:
                continue
            victims.append(rid)
            freed += size
            if want_bytes is not None and freed >= want_bytes:
                done = True
                break
        if victims:
            dropped += len(delete(victims))
        if done:
            return dropped
