"""The store's thread, one round at a time (gateway/deliver/writer.py hands
the work over): the puts of a window in one transaction, then what else
was handed over, in order; what goes back to the loop goes in one
hand-over per round (one wake-up of the loop, not one per answer)."""
from __future__ import annotations

import concurrent.futures
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .outbox_rows import Row

log = logging.getLogger("gateway.deliver.writer")

SNAPSHOT_EVERY_S = 0.2   # stats() for status and diag: fresh enough, and not a query per round


class Batch(list):
    """next_batch's answer. drained: it took everything that waited, so the
    publisher may wait for the next put without asking (lazy)."""
    drained = False


@dataclass
class _Op:
    kind: str
    args: tuple = ()
    fut: Any = None                       # asyncio or concurrent future for an answer
    rows: list[Row] = field(default_factory=list)
    kv: dict[str, str] = field(default_factory=dict)


class Rounds:
    """StoreWriter's thread side: runs on the store's thread only."""

    def _serve_seqs(self) -> None:
        with self._cv:
            waiting, self._seq_waiting = self._seq_waiting, []
        for fut in waiting:
            try:
                fut.set_result(self._ob.reserve_seq())
            except Exception as exc:  # noqa: BLE001
                log.exception("store: seq failed")
                fut.set_exception(exc)

    def _round(self, ops: list[_Op]) -> bool:
        self._serve_seqs()
        ob = self._ob
        rows: list[Row] = []
        kv: dict[str, str] = {}
        for op in ops:
            if op.kind == "put":
                rows.extend(op.rows)
                kv.update(op.kv)
        # A put is stored in this round or the next: acks are applied now (the
        # in-flight window frees at once) and their deletes ride in its
        # transaction, with no commit of their own.
        ob.ack_deletes_wait = bool(rows or kv) or self._put_waiting
        acked = any(op.kind == "ack" for op in ops)
        for op in ops:
            # asked for before these puts came, with nothing waiting: they are the answer
            if op.kind == "next" and op.args[1] and ob.nothing_waits():
                self._unpark([])
                self._parked, op.kind = (op.fut, op.args[0]), "done"
            elif op.kind == "ack":
                ob.ack(*op.args)
                op.kind = "done"
        if rows or kv:
            # puts first: a batch asked for in the same round sees them
            try:
                taken = ob.put_encoded(rows, kv, take=self._parked[1] if self._parked and rows else 0)
                if taken:
                    self._unpark(taken)
            except Exception:  # noqa: BLE001 - not bad input (that raised on the loop)
                log.exception("store: %d message(s) could not be stored", len(rows))
        go_on = True
        for op in ops:
            self._serve_seqs()   # a blocked loop comes before queued work
            try:
                go_on = self._do(op)
            except Exception as exc:  # noqa: BLE001
                log.exception("store: %s failed", op.kind)
                self._answer(op.fut, exc=exc)
            if not go_on:
                break  # closed: nothing is queued after a close
        else:
            if self._parked is not None and (rows or acked or any(op.kind == "retry" for op in ops)):
                batch = ob.next_batch(self._parked[1])   # room freed, or memory-held events
                if batch:
                    self._unpark(batch)
            now = time.monotonic()
            if now - self._snap_at >= SNAPSHOT_EVERY_S or ob.health != self._snap.get("health"):
                self._snap = ob.stats()
                self._snap_at = now
        if rows:
            self.commits += 1
            for fn in self._listeners:
                self._call(fn)
        return go_on

    def _do(self, op: _Op) -> bool:
        ob = self._ob
        kind = op.kind
        if kind == "next":
            limit, wait = op.args
            # the publisher asks again as soon as a batch is out: mostly nothing waits
            batch = [] if wait and ob.nothing_waits() else ob.next_batch(limit)
            if batch or not wait:
                self._answer(op.fut, self._batch(batch))
            else:
                self._unpark([])
                self._parked = (op.fut, limit)
        elif kind == "unpark":
            if self._parked is not None:
                self._unpark(ob.next_batch(self._parked[1]))
        elif kind == "release":
            self._unpark([])   # before the release: what it got would be dropped
            ob.release_inflight()
        elif kind == "flush":
            ob.flush()
        elif kind == "retry":
            ob.retry()
        elif kind == "seq":
            self._answer(op.fut, ob.reserve_seq())
        elif kind == "state":
            self._states.write()
        elif kind == "close":
            self._unpark([])
            self._serve_seqs()
            self._states.write()
            ob.flush()
            last = ob.stats()
            ob.close()
            self._states.close()
            self._snap = {**last, "inflight": 0}
            self._answer(op.fut, True)
            return False
        return True

    def _unpark(self, batch: list) -> None:
        if self._parked is not None:
            fut, self._parked = self._parked[0], None
            self._answer(fut, self._batch(batch))

    def _batch(self, rows: list) -> Batch:
        out = Batch(rows)
        out.drained = bool(rows) and self._ob.nothing_waits()
        return out

    def _call(self, fn: Callable, *args) -> None:
        self._back.append((fn, args))

    def _hand_back(self) -> None:
        """What the round has for the loop, in one hand-over."""
        if self._back:
            back, self._back = self._back, []
            try:
                self._loop.call_soon_threadsafe(_run_all, back)
            except RuntimeError:
                pass  # the loop is closed: nobody is waiting any more

    def _answer(self, fut, result=None, exc: BaseException | None = None) -> None:
        def settle() -> None:
            if not fut.done():
                fut.set_exception(exc) if exc is not None else fut.set_result(result)

        if isinstance(fut, concurrent.futures.Future):
            settle()
        elif fut is not None:
            self._call(settle)


def _run_all(calls: list[tuple[Callable, tuple]]) -> None:
    for fn, args in calls:
        try:
            fn(*args)
        except Exception:  # noqa: BLE001 - one listener must not keep the others from running
            log.exception("store: a callback on the loop failed")
