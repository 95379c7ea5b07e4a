"""The store's own thread: the event loop hands work over and never waits on
the disk (issue 13).

One thread owns the outbox's SQLite connection and the writes of state.json.
The loop encodes messages (bad input still raises in the caller), hands them
over and goes on polling; the thread commits everything handed over within
WINDOW_S in one transaction (a group commit: one sync of the SD card per
window, not per poll), then tells the loop (`on_commit` listeners, through
call_soon_threadsafe). The publisher asks for batches with an awaitable and
hands acks over; `stats()` and `health` answer from a snapshot the thread
refreshes after each round, `kv_get` from a copy of the kv table kept here.

What is acknowledged as stored is exactly as durable as before: a message is
offered for sending only by the thread that committed it, after the commit
(a held event when the disk is full, as before); a put's messages and its kv
(a door cursor, an interpreter snapshot) commit in the same transaction; a
seq is synced before its message leaves. A crash loses only what was handed
over in the last window and not yet committed: the same as having crashed a
moment earlier, with cursors and snapshots rolled back with their events.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from gateway.site.state import StateStore

from .outbox import Outbox
from .outbox_rows import NAMES, Message, Priority, encode, encode_kv
from .rounds import Batch, Rounds, _Op  # noqa: F401 - Batch: next_batch's answer
from .statefile import StateWrites

log = logging.getLogger(__name__)

# Puts handed over within this window share one transaction. A commit with
# its hand-overs costs the two threads about a millisecond of CPU here, so
# on a slow serial bus (a poll every 90 ms) a short window was a commit per
# poll and half the gateway's CPU. A put with an event ends it at once: an
# alarm waits for no window.
WINDOW_S = 0.2
# ... or shorter, once this many messages wait: a busy gateway commits as
# often as before (every 50 ms at 500 polls a second). 500 kept a 200 ms
# window's puts waiting in memory: +1.7 MB RSS at 500 devices, no CPU saved.
MAX_PENDING = 25
# Messages waiting for the thread, at most. Above it the thread is stuck on
# a dying card: readings and state are dropped (counted), events still wait.
MAX_QUEUED = 20_000
SYNC_TIMEOUT_S = 10.0


class StoreWriter(Rounds):
    """The outbox (and state.json) behind one thread; the loop's side.

    Has the outbox's API, minus waiting: put, ack, release_inflight, flush
    and retry hand work over; next_batch is awaited; stats, health and kv_get
    answer at once. reserve_seq() is the one call that still waits (for one
    synced commit, ahead of puts waiting for their window): use
    reserve_seq_async on the loop."""

    def __init__(self, open_outbox: Callable[[], Outbox], loop: asyncio.AbstractEventLoop,
                 state: StateStore | None = None) -> None:
        """Open the outbox on the store's own thread (the connection never
        leaves it) and wait for it: what open raises is raised here."""
        self._states = StateWrites(state, log)
        self._loop = loop
        self._ops: deque[_Op] = deque()
        self._cv = threading.Condition()
        self._pending = 0
        self._put_since: float | None = None   # when the oldest waiting put was handed over
        self._urgent = False
        self._closed = False
        self._listeners: list[Callable[[], None]] = []
        self._seq_waiting: list[concurrent.futures.Future] = []   # reserve_seq() callers, blocked
        self._queued = 0                    # messages handed over, not yet taken by the thread
        self._shed = [0, 0, 0]              # dropped by Priority because the thread was that far behind
        self.commits = 0
        self._snap_at = 0.0
        self._parked: tuple[Any, int] | None = None   # the publisher's waiting batch (fut, limit)
        self._back: list[tuple[Callable, tuple]] = []   # for the loop, handed over once per round
        self.rounds = 0
        self._put_waiting = False   # a put waits for its window (set by _take)
        ready: concurrent.futures.Future = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, args=(open_outbox, ready), name="edgegw-store",
                                        daemon=True)
        self._thread.start()
        ob, self._kv, self._snap = ready.result()
        self._ob: Outbox = ob   # only the store's thread calls it
        self.path = ob.path
        self.directory = ob.directory
        self.quarantined = list(ob.quarantined)
        self.ram_only = ob.ram_only

    # -- the loop's side ------------------------------------------------------

    def _submit(self, op: _Op, urgent: bool = False, lazy: bool = False) -> bool:
        with self._cv:
            if self._closed:
                return False
            self._closed = op.kind == "close"
            self._ops.append(op)
            # Acks ride with the next round (a batch, a put, the housekeeping
            # flush): waking the thread for each PUBACK would cost more than
            # the ack itself. A release wakes it: it answers a waiting batch.
            wake = not lazy and op.kind not in ("put", "ack") or (op.kind == "put" and self._put_since is None)
            if op.kind == "put" and self._put_since is None:
                self._put_since = time.monotonic()
            self._pending += len(op.rows)
            self._queued += len(op.rows)
            if (urgent or self._pending >= MAX_PENDING) and not self._urgent:
                self._urgent = wake = True
            if wake:   # a later put joins a window the thread already waits out
                self._cv.notify()
        return True

    def attach_state(self, state: StateStore) -> None:
        """The state store whose writes this thread makes (if not given at start)."""
        self._states.state = state

    def on_commit(self, fn: Callable[[], None]) -> None:
        """fn runs on the loop after each commit that stored messages."""
        self._listeners.append(fn)

    def put(self, messages: list[Message], kv: dict | None = None) -> None:
        """Hand messages (and kv entries) over; they commit together in the
        next group commit. Bad input raises here and nothing is handed over."""
        rows = [encode(m) for m in messages]
        kvj = encode_kv(kv)
        if self._queued + len(rows) > MAX_QUEUED:
            for r in rows:
                if r.prio != Priority.EVENT:
                    self._shed[r.prio] += 1
            rows = [r for r in rows if r.prio == Priority.EVENT]
        if not rows and not kvj:
            return
        self._kv.update(kvj)  # the running process reads its own writes
        if not self._submit(_Op("put", rows=rows, kv=kvj), urgent=any(r.prio == Priority.EVENT for r in rows)):
            log.warning("store closed: %d message(s) not stored", len(rows))

    def commit_soon(self) -> None:
        """End the current window now (shutdown, snapshot save)."""
        with self._cv:
            self._urgent = True
            self._cv.notify()

    def kv_get(self, key: str, default: Any = None) -> Any:
        raw = self._kv.get(key)
        return default if raw is None else json.loads(raw)

    def next_batch(self, limit: int, wait: bool = False, lazy: bool = False) -> asyncio.Future:
        """Awaitable: the next messages to send (see Outbox.next_batch), a Batch.

        wait=True, with nothing to send: the answer waits for the next put,
        whose messages then get their seqs in the storing commit (one synced
        commit, one hand-over back) or for a disconnect, close or unpark()
        ([] then). lazy=True, after a drained batch: the request waits for
        the thread's next round, which a put, release or retry starts anyway."""
        fut = self._loop.create_future()
        if not self._submit(_Op("next", (limit, wait), fut), lazy=lazy and wait):
            fut.set_result([])
        return fut

    def unpark(self) -> None:
        """Answer a waiting next_batch now."""
        self._submit(_Op("unpark"))

    def ack(self, id: int) -> None:
        self._submit(_Op("ack", (id,)))

    def release_inflight(self) -> None:
        self._submit(_Op("release"))

    def flush(self) -> None:
        self._submit(_Op("flush"))

    def retry(self) -> None:
        self._submit(_Op("retry"))

    def write_state(self, table: str, docs: dict[str, Any]) -> None:
        """state.json: the latest docs of a table, written once, off the loop,
        only if something changed (a newer hand-over replaces an unwritten one)."""
        if self._states.due(table, docs):
            self._submit(_Op("state"))

    async def reserve_seq_async(self) -> int | None:
        fut = self._loop.create_future()
        if not self._submit(_Op("seq", (), fut)):
            return None
        return await fut

    def reserve_seq(self) -> int | None:
        """A seq for a message sent outside the outbox, recorded before it is
        returned. Waits on the loop for one synced commit: the thread serves
        it between any two of its steps, ahead of everything queued."""
        fut: concurrent.futures.Future = concurrent.futures.Future()
        with self._cv:
            if self._closed:
                return None
            self._seq_waiting.append(fut)
            self._cv.notify()
        try:
            return fut.result(SYNC_TIMEOUT_S)
        except concurrent.futures.TimeoutError:
            log.warning("store: no seq within %.0f s", SYNC_TIMEOUT_S)
            return None

    def stats(self) -> dict:
        out = dict(self._snap)
        if any(self._shed):
            dropped = dict(out.get("dropped") or {})
            for p in Priority:
                dropped[NAMES[p]] = dropped.get(NAMES[p], 0) + self._shed[p]
            out["dropped"] = dropped
        return out

    @property
    def health(self) -> str:
        return self._snap.get("health", "ok")

    def close(self, timeout: float = 30.0) -> dict:
        """Commit what was handed over, write state.json, close the outbox.
        Returns the last stats."""
        fut: concurrent.futures.Future = concurrent.futures.Future()
        if self._submit(_Op("close", (), fut), urgent=True):
            try:
                fut.result(timeout)
            except concurrent.futures.TimeoutError:
                log.error("store: not closed within %.0f s", timeout)
        self._thread.join(timeout)
        return self.stats()

    async def aclose(self) -> dict:
        return await asyncio.get_running_loop().run_in_executor(None, self.close)

    # -- the store's thread -----------------------------------------------------

    def _take(self) -> list[_Op]:
        """The next round: everything once the oldest put's window is over (or
        something urgent came); before that, only what is not a put, so a
        batch or an ack never waits for the window."""
        with self._cv:
            while True:
                if self._seq_waiting:
                    return []   # _round serves them first
                if self._ops:
                    since = self._put_since
                    if self._urgent or since is None or time.monotonic() - since >= WINDOW_S:
                        ops = list(self._ops)
                        self._ops.clear()
                        self._pending = 0
                        self._queued = 0
                        self._put_since = None
                        self._urgent = False
                        self._put_waiting = False
                        return ops
                    others = [op for op in self._ops if op.kind != "put"]
                    if others:
                        self._ops = deque(op for op in self._ops if op.kind == "put")
                        self._put_waiting = True   # acks' deletes wait for it (rounds.py)
                        return others
                    self._cv.wait(since + WINDOW_S - time.monotonic())
                else:
                    self._cv.wait()

    def _run(self, open_outbox: Callable[[], Outbox], ready: concurrent.futures.Future) -> None:
        try:
            ob = open_outbox()
            ready.set_result((ob, ob.kv_items(), ob.stats()))
        except BaseException as exc:  # noqa: BLE001 - handed to the opener
            ready.set_exception(exc)
            return
        self._ob = ob
        go_on = True
        while go_on:
            ops = self._take()
            self.rounds += 1
            try:
                go_on = self._round(ops)
            except Exception:  # noqa: BLE001 - the store's thread must outlive any one bug
                log.exception("store: unexpected error")
            self._hand_back()
