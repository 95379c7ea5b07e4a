"""The outbox's storing side: opening the file, one transaction per put
(messages, kv and counters together), coalescing, budgets, deferred ack
deletes, and holding events in RAM while the file cannot be written.
The sending side (seqs, order, the in-flight window) is gateway/deliver/outbox.py.

Single-threaded by design: one thread calls every method and the sqlite3
connection is never shared. In the daemon that is the store's own thread
(gateway/deliver/writer.py), so no commit, fsync or checkpoint ever runs on
the event loop; tests and tools call it directly.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
import time
from typing import Any, Callable, Iterable

from .outbox_budget import Budget
from .outbox_file import SeqFloor, health_of, open_store, rollback
from .outbox_memory import MEMORY_EVENTS, Held
from .outbox_rows import Counters, Message, Priority, Row, encode, encode_kv
from .outbox_space import Space, is_full

DEFAULT_MAX_BYTES = 256 * 1024 * 1024  # as docs/configuration.md [outbox] max_bytes
DEFAULT_MAX_AGE_S = 30 * 24 * 3600.0
ACK_FLUSH_COUNT = 50
ACK_FLUSH_S = 0.2
_SCAN = 500


class Store:
    """The outbox minus sending; see Outbox."""

    def __init__(self, path, *, max_bytes: int | None = DEFAULT_MAX_BYTES,
                 max_age_s: float | None = DEFAULT_MAX_AGE_S, synchronous: str = "FULL",
                 inflight: int = 100, memory_events: int = MEMORY_EVENTS):
        synchronous = synchronous.upper()
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError("synchronous must be FULL or NORMAL")
        if inflight < 1:
            raise ValueError("inflight must be >= 1")
        self.path = os.path.abspath(os.fspath(path))
        self.directory = os.path.dirname(self.path)
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self.synchronous = synchronous
        self.inflight_max = inflight
        self.ram_only = ""  # why the store lives in RAM (see in_ram), or ""
        self.ack_deletes_wait = False  # set by the StoreWriter while a put is due: they ride in it
        self._inflight: set[int] = set()
        self._alias: dict[int, int] = {}  # memory id -> row id once written back
        self._acks: list[int] = []
        self._acks_since = 0.0
        self._held = Held(memory_events)
        self._budget = Budget(max_bytes, max_age_s)
        self._health = "ok"
        self._health_detail = ""

        os.makedirs(self.directory, exist_ok=True)
        self._floor = SeqFloor(self.path + ".seq")
        floor = self._floor.read()
        if not self._floor.valid and time.time() > 1.7e9:
            floor = int(time.time() * 1000)  # a damaged bound: be safe, jump
        self._db, self.quarantined, self.quarantine_reason = open_store(self.path, synchronous, floor)
        self._c = self._load_counters()
        self._clock_base = self._c.clock
        self._mono0 = time.monotonic()
        # A floor above the counter is a reservation that a run which died
        # while the database was unwritable may have used: never reuse it.
        self._seq = max(self._c.seq_next, floor)
        self._reserved = self._seq  # memory-held events may use seqs below this
        if self._seq != self._c.seq_next:
            try:
                self._tx(self._persist_seq, seq=True)
            except sqlite3.Error:
                pass  # the floor file still holds it
        self._floor.open(self._seq)
        self._space = Space(self.path, self._db.execute("PRAGMA page_size").fetchone()[0])
        self._space.open(self._db)

    @classmethod
    def open(cls, path, *, max_bytes: int | None = DEFAULT_MAX_BYTES,
             max_age_s: float | None = DEFAULT_MAX_AGE_S, synchronous: str = "FULL",
             inflight: int = 100, **kw) -> "Store":
        return cls(path, max_bytes=max_bytes, max_age_s=max_age_s, synchronous=synchronous,
                   inflight=inflight, **kw)

    @classmethod
    def in_ram(cls, reason: str, **kw) -> "Store":
        """When the state folder cannot be opened for writing at boot (a
        read-only or failing SD card): a store on tmpfs, so the daemon runs
        and alarms still go out instead of a crash loop under systemd.
        Its seq starts at the Unix time in ms: the real store's counter is
        unknown here, and a seq must never be reused."""
        base = "/dev/shm" if os.path.isdir("/dev/shm") else None
        d = tempfile.mkdtemp(prefix="edgegw-ram-", dir=base)
        path = os.path.join(d, "outbox.db")
        floor = SeqFloor(path + ".seq")
        floor.open(int(time.time() * 1000))
        floor.close()
        ob = cls(path, **kw)
        ob.ram_only = reason
        return ob

    # ------------------------------------------------------------ internals

    def _load_counters(self) -> Counters:
        r = self._db.execute(
            "SELECT seq_next, last_id, clock, bytes, n_event, n_state, n_telemetry,"
            " dropped_event, dropped_state, dropped_telemetry, coalesced FROM counters WHERE id=1"
        ).fetchone()
        return Counters(r[0], r[1], r[2], r[3], [r[4], r[5], r[6]], [r[7], r[8], r[9]], r[10])

    def _now(self) -> float:
        """Store clock: gateway running seconds accumulated over all runs.

        Immune to wall-clock jumps; downtime does not advance it."""
        return self._clock_base + (time.monotonic() - self._mono0)

    def _save_counters(self) -> None:
        c = self._c
        c.clock = max(c.clock, self._now())
        self._db.execute(
            "UPDATE counters SET seq_next=?, last_id=?, clock=?, bytes=?, n_event=?, n_state=?,"
            " n_telemetry=?, dropped_event=?, dropped_state=?, dropped_telemetry=?, coalesced=? WHERE id=1",
            (c.seq_next, c.last_id, c.clock, c.bytes, *c.n, *c.dropped, c.coalesced),
        )

    def _tx(self, fn: Callable[[], Any], *, seq: bool = False) -> Any:
        """Run fn in one write transaction. On failure the in-memory counters
        go back to what is committed, so they never describe a rolled-back write.

        seq=True: the transaction records seqs that are about to leave the box.
        It is synced even under synchronous=NORMAL: a power cut that rolled it
        back would hand the same seq to another message, and consumers drop
        duplicates by seq. Syncing the WAL also makes every earlier commit
        durable, so nothing is ever sent that a power cut could un-store."""
        saved = self._c.copy()
        seq_before = self._seq
        db = self._db
        force = seq and self.synchronous != "FULL"
        try:
            if force:
                db.execute("PRAGMA synchronous=FULL")
            db.execute("BEGIN IMMEDIATE")
            result = fn()
            self._save_counters()
            db.execute("COMMIT")
        except BaseException:
            self._c = saved
            self._seq = seq_before
            rollback(db)
            raise
        finally:
            if force:
                db.execute(f"PRAGMA synchronous={self.synchronous}")
        return result

    def _drain_tx(self, fn: Callable[[], Any], *, seq: bool = False) -> Any:
        """A write that sending depends on (seqs, ack deletes): if it fails for
        want of space, free the reserve kept for exactly this and try again."""
        try:
            return self._tx(fn, seq=seq)
        except sqlite3.Error as exc:
            if not is_full(exc) or not self._space.give_spare(self._db):
                raise
        return self._tx(fn, seq=seq)

    def _degrade(self, exc: sqlite3.Error) -> None:
        health = health_of(exc, self.directory)
        if health is None:
            raise exc
        self._health = health
        self._health_detail = f"{type(exc).__name__}: {exc}"
        if health == "disk_full" and not self._space.tight:
            try:
                self._space.go_tight(self._db)
            except sqlite3.Error:
                pass  # still degraded; the next retry looks again

    def _delete(self, ids: list[int]) -> list[tuple[int, int]]:
        """Delete rows; returns (prio, size) of those that existed and fixes the counters."""
        out: list[tuple[int, int]] = []
        for i in range(0, len(ids), _SCAN):
            chunk = ids[i:i + _SCAN]
            q = "DELETE FROM msg WHERE id IN (%s) RETURNING prio, size" % ",".join("?" * len(chunk))
            out.extend(self._db.execute(q, chunk).fetchall())
        for prio, size in out:
            self._c.n[prio] -= 1
            self._c.bytes -= size
        return out

    def _excluded(self) -> set[int]:
        # in flight: on its way, will be acked or released; acked: already gone
        return self._inflight.union(self._acks)

    def _enforce_budget(self) -> None:
        self._budget.enforce(self._db, self._c, self._now(), self._excluded(), self._delete)

    def _insert(self, rows: list[Row], kv: dict[str, str]) -> list[int]:
        db = self._db
        c = self._c
        # Ids come from the counters row (written in this transaction anyway)
        # rather than AUTOINCREMENT, which would dirty one more page per commit.
        ids = []
        pending: list[tuple] = []
        ins = ("INSERT INTO msg (id, prio, topic, payload, qos, retain, stamp, size, seq)"
               " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
        for r in rows:
            if r.prio == Priority.STATE:
                if pending:
                    db.executemany(ins, pending)
                    pending = []
                gone = db.execute(
                    "DELETE FROM msg WHERE prio=1 AND seq IS NULL AND topic=? RETURNING size", (r.topic,)
                ).fetchall()
                for (size,) in gone:
                    c.n[Priority.STATE] -= 1
                    c.bytes -= size
                c.coalesced += len(gone)
            c.last_id += 1
            pending.append((c.last_id, r.prio, r.topic, r.body, r.qos, r.retain, r.stamp, r.size, r.seq))
            ids.append(c.last_id)
            c.n[r.prio] += 1
            c.bytes += r.size
        if pending:
            db.executemany(ins, pending)
        if kv:
            db.executemany(
                "INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                list(kv.items()),
            )
        self._enforce_budget()
        return ids

    def _hold(self, rows: list[Row], kv: dict[str, str]) -> None:
        """The store cannot be written: keep events in memory, drop the rest."""
        for prio, n in enumerate(self._held.hold(rows, kv, self._inflight)):
            self._c.dropped[prio] += n

    def _write_back(self) -> list[int]:
        ids = self._insert(list(self._held.rows.values()), self._held.kv)
        # every seq handed out is now in a row or acked and gone
        self._c.seq_next = self._seq
        return ids

    def _persist_seq(self) -> None:
        self._c.seq_next = self._seq

    def _no_room(self) -> None:
        self._health = "disk_full"
        self._health_detail = "no room for new messages: the space left is kept for sending what is stored"

    # ------------------------------------------------------------------ API

    def put(self, messages: Iterable[Message], kv: dict[str, object] | None = None,
            take: int = 0) -> list:
        """Store messages (and kv entries) in one transaction; durable on return.

        take > 0: when nothing stored waits to be sent, up to `take` new
        messages get their seqs in that (synced) transaction and are returned,
        in flight, as next_batch would (no second commit); else [].
        Bad input (non-dict payload, non-JSON value) raises; a store that
        cannot be written never does (see health in stats())."""
        return self.put_encoded([encode(m) for m in messages], encode_kv(kv), take)

    def put_encoded(self, rows: list[Row], kv: dict[str, str], take: int = 0) -> list:
        """put() for messages already encoded (outbox_rows.encode), e.g. by the
        event loop before it hands them to the store's thread."""
        now = self._now()
        for r in rows:
            r.stamp = now
        try:
            self._space.check(self._db, writing=sum(r.size for r in rows))
        except sqlite3.Error as exc:
            self._degrade(exc)
        if self._held or self._health != "ok":
            self.retry()
        if self._held:
            # nothing may commit ahead of what memory holds (order, kv with its events)
            self._hold(rows, kv)
            return []
        try:
            if not self._space.ensure_spare(self._db):
                self._no_room()
                self._hold(rows, kv)
                return []
            # Every stored row in flight or acked: the new ones are next in line.
            acks = self._acks
            take = take if sum(self._c.n) == len(self._inflight) + len(acks) else 0
            taken = self._tx(lambda: self._insert_and_take(rows, kv, take, acks), seq=take > 0)
        except sqlite3.Error as exc:
            self._degrade(exc)
            self._hold(rows, kv)
            return []
        self._acks = []
        self._health, self._health_detail = "ok", ""
        return self._taken(taken)  # type: ignore[attr-defined]

    def _insert_and_take(self, rows: list[Row], kv: dict[str, str], take: int, acks: list[int]) -> list[tuple]:
        self._delete(acks)   # no commit of their own (a third of the syncs at a few polls a second)
        self._insert(rows, kv)   # _take_new and _taken: the sending side (Outbox) gives seqs
        return self._take_new(take) if take > 0 else []  # type: ignore[attr-defined]

    def retry(self) -> bool:
        """Try to write memory-held messages back; True when the store is healthy."""
        if self._acks:
            self._flush_acks()
        try:
            self._space.check(self._db, force=True)
            if self._held:
                if not self._space.ensure_spare(self._db):
                    self._no_room()
                    return False
                ids = self._tx(self._write_back, seq=True)
                for mid, rid in zip(list(self._held.rows), ids):
                    if mid in self._inflight:  # its PUBACK will name the old id
                        self._inflight.discard(mid)
                        self._inflight.add(rid)
                        self._alias[mid] = rid
                self._held.clear()
                # the reservation is no longer needed: no gap at the next start
                if self._floor.write(self._seq):
                    self._reserved = self._seq
            elif self._health != "ok":
                self._tx(lambda: None)  # a real write proves the store is writable again
        except sqlite3.Error as exc:
            self._degrade(exc)
            return False
        self._health, self._health_detail = "ok", ""
        return True

    def kv_get(self, key: str, default: Any = None) -> Any:
        if key in self._held.kv:
            return json.loads(self._held.kv[key])
        row = self._db.execute("SELECT value FROM kv WHERE key=?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def kv_items(self) -> dict[str, str]:
        """Every kv entry as stored (JSON text), held ones included."""
        out = dict(self._db.execute("SELECT key, value FROM kv").fetchall())
        out.update(self._held.kv)
        return out

    def _maybe_flush_acks(self) -> None:
        if self._acks and not self.ack_deletes_wait and (
                len(self._acks) >= ACK_FLUSH_COUNT or time.monotonic() - self._acks_since >= ACK_FLUSH_S):
            self._flush_acks()

    def flush(self) -> None:
        """Delete acked rows now (the daemon may call this on a timer)."""
        self._flush_acks()

    def _flush_acks(self) -> None:
        """Delete the acknowledged rows. Short of space, fewer at a time: one
        delete of hundreds of rows needs more WAL than a full disk has (acks
        pile up while the puts they were to ride in cannot commit), and if it
        can never go through, no page is ever freed."""
        k = len(self._acks)
        while self._acks:
            chunk = self._acks[:k]
            try:
                self._drain_tx(lambda: self._delete(chunk))
            except sqlite3.Error as exc:
                if is_full(exc) and k > 1:
                    k //= 2
                    self._space.checkpoint(self._db)   # the WAL can start over
                    continue
                self._degrade(exc)
                return
            self._acks = self._acks[len(chunk):]

    @property
    def health(self) -> str:
        return self._health

    def close(self) -> None:
        """Flush acks, try to store what memory holds, persist the store clock."""
        if self._db is None:
            return
        try:
            self.retry()
            if self._health == "ok":
                self._tx(lambda: None)
        except sqlite3.Error:
            pass
        self._floor.write(self._seq)
        self._floor.close()
        self._db.close()
        self._db = None  # type: ignore[assignment]

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

