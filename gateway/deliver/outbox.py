"""Durable store-and-forward queue between the poll loop and MQTT.

paho-mqtt keeps unacknowledged QoS 1 messages only in RAM, and a site box
loses power and uplink regularly. Every message is committed to SQLite (WAL)
before put() returns and deleted only when the broker's PUBACK arrives, so a
reading or alarm survives broker outages, power cuts and restarts.

Guarantees and rules are documented for operators and consumers in
docs/durability.md; the internal contract is in docs/dev/interfaces.md.

Single-threaded by design: every method is called from the asyncio thread,
and the sqlite3 connection is never shared with another thread.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Callable, Iterable

from .outbox_file import SeqFloor, health_of, open_store

__all__ = ["Priority", "Message", "Pending", "Outbox"]

DEFAULT_MAX_BYTES = 256 * 1024 * 1024  # as docs/configuration.md [outbox] max_bytes
DEFAULT_MAX_AGE_S = 30 * 24 * 3600.0
ACK_FLUSH_COUNT = 50
ACK_FLUSH_S = 0.2
AGE_CHECK_S = 1.0
MEMORY_EVENTS = 10_000
MEMORY_BYTES = 8 * 1024 * 1024
# Seqs that may be handed to memory-held events without a further write; see
# "Seq while the store cannot be written" in docs/durability.md.
SEQ_RESERVE = 1_000
_SCAN = 500


class Priority(IntEnum):
    EVENT = 0  # faults, rule findings, access events, log gaps: dropped last
    STATE = 1  # retained state: coalesced per topic
    TELEMETRY = 2  # dropped first


_NAMES = {Priority.EVENT: "event", Priority.STATE: "state", Priority.TELEMETRY: "telemetry"}


@dataclass
class Message:
    topic: str
    payload: dict  # JSON-serialisable; the outbox adds "seq" at first send
    priority: Priority
    retain: bool = False
    qos: int = 1


@dataclass
class Pending:
    id: int
    topic: str
    payload: bytes
    qos: int
    retain: bool
    seq: int


@dataclass
class _Row:
    """A message encoded for storage (payload is compact JSON without seq)."""

    prio: int
    topic: str
    body: bytes
    qos: int
    retain: int
    size: int
    stamp: float = 0.0
    seq: int | None = None


@dataclass
class _Counters:
    seq_next: int = 1
    last_id: int = 0
    clock: float = 0.0
    bytes: int = 0
    n: list[int] = field(default_factory=lambda: [0, 0, 0])  # by Priority
    dropped: list[int] = field(default_factory=lambda: [0, 0, 0])
    coalesced: int = 0

    def copy(self) -> "_Counters":
        return _Counters(self.seq_next, self.last_id, self.clock, self.bytes,
                         list(self.n), list(self.dropped), self.coalesced)


def _with_seq(body: bytes, seq: int) -> bytes:
    # body is compact JSON of a dict without "seq": splice instead of re-encoding.
    if body == b"{}":
        return b'{"seq":%d}' % seq
    return b'{"seq":%d,' % seq + body[1:]


class Outbox:
    """Durable ordered queue; see docs/dev/interfaces.md for the contract."""

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
        self.memory_events = memory_events
        self.ram_only = ""  # why the store lives in RAM (see in_ram), or ""

        self._inflight: set[int] = set()
        self._alias: dict[int, int] = {}  # memory id -> row id once written back
        self._acks: list[int] = []
        self._acks_since = 0.0
        self._mem: OrderedDict[int, _Row] = OrderedDict()
        self._mem_bytes = 0
        self._mem_kv: dict[str, str] = {}
        self._mem_next_id = -1
        self._health = "ok"
        self._health_detail = ""
        self._last_age_check = float("-inf")
        # expiry is checked at most this often: it costs a query per class
        self._age_every = AGE_CHECK_S if max_age_s is None else min(AGE_CHECK_S, max_age_s / 4)

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

    @classmethod
    def open(cls, path, *, max_bytes: int | None = DEFAULT_MAX_BYTES,
             max_age_s: float | None = DEFAULT_MAX_AGE_S, synchronous: str = "FULL",
             inflight: int = 100, **kw) -> "Outbox":
        return cls(path, max_bytes=max_bytes, max_age_s=max_age_s, synchronous=synchronous,
                   inflight=inflight, **kw)

    @classmethod
    def in_ram(cls, reason: str, **kw) -> "Outbox":
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

    # ------------------------------------------------------------------ open

    def _load_counters(self) -> _Counters:
        r = self._db.execute(
            "SELECT seq_next, last_id, clock, bytes, n_event, n_state, n_telemetry,"
            " dropped_event, dropped_state, dropped_telemetry, coalesced FROM counters WHERE id=1"
        ).fetchone()
        return _Counters(r[0], r[1], r[2], r[3], [r[4], r[5], r[6]], [r[7], r[8], r[9]], r[10])

    # ------------------------------------------------------------ internals

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
            if db.in_transaction:
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            raise
        finally:
            if force:
                db.execute(f"PRAGMA synchronous={self.synchronous}")
        return result

    def _degrade(self, exc: sqlite3.Error) -> None:
        health = health_of(exc, self.directory)
        if health is None:
            raise exc
        self._health = health
        self._health_detail = f"{type(exc).__name__}: {exc}"

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

    def _drop_oldest(self, prio: int, want_bytes: int | None, older_than: float | None) -> int:
        """Drop the oldest messages of one class until want_bytes are freed, or
        all stamped before older_than. Returns bytes freed."""
        excl = self._excluded()
        freed = 0
        last = 0
        while True:
            rows = self._db.execute(
                "SELECT id, size, stamp FROM msg WHERE prio=? AND id>? ORDER BY id LIMIT ?",
                (prio, last, _SCAN),
            ).fetchall()
            if not rows:
                return freed
            victims = []
            done = False
            for rid, size, stamp in rows:
                last = rid
                if older_than is not None and stamp >= older_than:
                    done = True  # stamps rise with id: the rest are younger
                    break
                if rid in excl:
                    continue
                victims.append(rid)
                freed += size
                if want_bytes is not None and freed >= want_bytes:
                    done = True
                    break
            if victims:
                gone = self._delete(victims)
                self._c.dropped[prio] += len(gone)
            if done:
                return freed

    def _expiry_due(self) -> bool:
        """Cheap look at the oldest row of each class, so that draining does not
        pay a write transaction every second when nothing has expired."""
        if self.max_age_s is None:
            return False
        now = self._now()
        if now - self._last_age_check < self._age_every:
            return False
        cutoff = now - self.max_age_s
        for prio in Priority:
            row = self._db.execute("SELECT stamp FROM msg WHERE prio=? ORDER BY id LIMIT 1", (prio,)).fetchone()
            if row is not None and row[0] < cutoff:
                return True
        self._last_age_check = now
        return False

    def _enforce_budget(self) -> None:
        if self.max_age_s is not None:
            now = self._now()
            if now - self._last_age_check >= self._age_every:
                self._last_age_check = now
                cutoff = now - self.max_age_s
                self._drop_oldest(Priority.TELEMETRY, None, cutoff)
                self._drop_oldest(Priority.STATE, None, cutoff)
                # an event outlives its age while anything else is still queued
                if self._c.n[Priority.TELEMETRY] + self._c.n[Priority.STATE] == 0:
                    self._drop_oldest(Priority.EVENT, None, cutoff)
        if self.max_bytes is not None and self._c.bytes > self.max_bytes:
            for prio in (Priority.TELEMETRY, Priority.STATE, Priority.EVENT):
                excess = self._c.bytes - self.max_bytes
                if excess <= 0:
                    break
                self._drop_oldest(prio, excess, None)

    def _encode(self, m: Message) -> _Row:
        if not isinstance(m.payload, dict):
            raise TypeError(f"payload of {m.topic!r} must be a dict")
        payload = m.payload
        if "seq" in payload:  # the outbox owns seq
            payload = {k: v for k, v in payload.items() if k != "seq"}
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
        prio = int(Priority(m.priority))
        qos = int(m.qos)
        if qos not in (0, 1, 2):
            raise ValueError(f"qos {qos}")
        return _Row(prio, m.topic, body, qos, int(bool(m.retain)), len(body) + len(m.topic.encode()))

    def _insert(self, rows: list[_Row], kv: dict[str, str]) -> list[int]:
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

    def _hold(self, rows: list[_Row], kv: dict[str, str]) -> None:
        """The store cannot be written: keep events in memory, drop the rest."""
        for r in rows:
            if r.prio != Priority.EVENT:
                self._c.dropped[r.prio] += 1
                continue
            self._mem[self._mem_next_id] = r
            self._mem_next_id -= 1
            self._mem_bytes += r.size
        # The kv (a log cursor) stays with its events: both are written back
        # together, or both are lost and the source is re-read after restart.
        self._mem_kv.update(kv)
        while len(self._mem) > self.memory_events or self._mem_bytes > MEMORY_BYTES:
            victim = next((mid for mid in self._mem if mid not in self._inflight), None)
            if victim is None:
                break
            self._mem_bytes -= self._mem.pop(victim).size
            self._c.dropped[Priority.EVENT] += 1

    def _write_back(self) -> list[int]:
        ids = self._insert(list(self._mem.values()), self._mem_kv)
        # every seq handed out is now in a row or acked and gone
        self._c.seq_next = self._seq
        return ids

    def _persist_seq(self) -> None:
        self._c.seq_next = self._seq

    # ------------------------------------------------------------------ API

    def put(self, messages: Iterable[Message], kv: dict[str, object] | None = None) -> None:
        """Store messages (and kv entries) in one transaction; durable on return.

        Bad input (non-dict payload, non-JSON value) raises; a store that
        cannot be written never does (see health in stats())."""
        rows = [self._encode(m) for m in messages]
        self._maybe_flush_acks()  # acked rows must not count as "still queued" below
        kvj = {str(k): json.dumps(v, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
               for k, v in (kv or {}).items()}
        now = self._now()
        for r in rows:
            r.stamp = now
        if self._mem or self._mem_kv or self._health != "ok":
            self.retry()
        if self._mem or self._mem_kv:
            # nothing may commit ahead of what memory holds (order, kv with its events)
            self._hold(rows, kvj)
            return
        try:
            self._tx(lambda: self._insert(rows, kvj))
        except sqlite3.Error as exc:
            self._degrade(exc)
            self._hold(rows, kvj)
            return
        self._health, self._health_detail = "ok", ""

    def retry(self) -> bool:
        """Try to write memory-held messages back; True when the store is healthy."""
        if self._acks:
            self._flush_acks()
        try:
            if self._mem or self._mem_kv:
                ids = self._tx(self._write_back, seq=True)
                for mid, rid in zip(list(self._mem), ids):
                    if mid in self._inflight:  # its PUBACK will name the old id
                        self._inflight.discard(mid)
                        self._inflight.add(rid)
                        self._alias[mid] = rid
                self._mem.clear()
                self._mem_kv.clear()
                self._mem_bytes = 0
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
        if key in self._mem_kv:
            return json.loads(self._mem_kv[key])
        row = self._db.execute("SELECT value FROM kv WHERE key=?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def next_batch(self, limit: int) -> list[Pending]:
        """Oldest messages not in flight, at most the free part of the in-flight
        window. A message gets its seq here at first send (persisted first)."""
        self._maybe_flush_acks()
        room = min(limit, self.inflight_max - len(self._inflight))
        if room <= 0:
            return []
        out: list[Pending] = []
        if self._expiry_due() and not self._mem:
            try:
                self._tx(self._enforce_budget)
            except sqlite3.Error as exc:
                self._degrade(exc)
        excl = self._excluded()
        extra = sum(1 for i in excl if i > 0)
        rows = self._db.execute(
            "SELECT id, topic, payload, qos, retain, seq FROM msg ORDER BY id LIMIT ?", (room + extra,)
        ).fetchall()
        rows = [r for r in rows if r[0] not in excl][:room]
        need = [r[0] for r in rows if r[5] is None]
        seqs: dict[int, int] = {}
        if need:
            first = self._seq
            seqs = {rid: first + k for k, rid in enumerate(need)}

            def assign() -> None:
                self._db.executemany("UPDATE msg SET seq=? WHERE id=?", [(s, rid) for rid, s in seqs.items()])
                self._seq = first + len(need)
                self._c.seq_next = self._seq

            try:
                self._tx(assign, seq=True)
            except sqlite3.Error as exc:
                self._degrade(exc)
                # a seq not on disk could be reused after a crash: send only
                # the leading rows that already have one
                seqs = {}
                cut = next(k for k, r in enumerate(rows) if r[5] is None)
                rows = rows[:cut]
        for rid, topic, body, qos, retain, seq in rows:
            s = seq if seq is not None else seqs[rid]
            out.append(Pending(rid, topic, _with_seq(body, s), qos, bool(retain), s))
            self._inflight.add(rid)
        room -= len(out)
        if room > 0 and self._mem:
            out.extend(self._offer_memory(room))
        return out

    def _offer_memory(self, room: int) -> list[Pending]:
        out: list[Pending] = []
        for mid, r in self._mem.items():
            if len(out) >= room:
                break
            if mid in self._inflight:
                continue
            if r.seq is None:
                if self._seq >= self._reserved:
                    # The database cannot record this seq, and a number known
                    # only to RAM could be handed out again after a crash:
                    # reserve a block in the floor file first.
                    if not self._floor.write(self._seq + SEQ_RESERVE):
                        break  # nowhere to record it: events wait for the store
                    self._reserved = self._seq + SEQ_RESERVE
                r.seq = self._seq
                self._seq += 1
            out.append(Pending(mid, r.topic, _with_seq(r.body, r.seq), r.qos, bool(r.retain), r.seq))
            self._inflight.add(mid)
        return out

    def reserve_seq(self) -> int | None:
        """A seq for a message sent outside the outbox (the retained status).

        Recorded like any other seq before it is returned, so it is never
        issued again; if that message is then lost, consumers see a gap.
        None when no seq can be made safe (read-only filesystem)."""
        def take() -> None:
            self._seq += 1
            self._c.seq_next = self._seq

        if not self._mem:
            try:
                self._tx(take, seq=True)
                return self._seq - 1
            except sqlite3.Error as exc:
                self._degrade(exc)
        if self._seq >= self._reserved:
            if not self._floor.write(self._seq + SEQ_RESERVE):
                return None
            self._reserved = self._seq + SEQ_RESERVE
        self._seq += 1
        return self._seq - 1

    def ack(self, id: int) -> None:
        """PUBACK for a message from next_batch. The delete may be deferred
        (batched); a crash before it only causes a bounded duplicate."""
        id = self._alias.pop(id, id)
        self._inflight.discard(id)
        if id < 0:
            r = self._mem.pop(id, None)
            if r is not None:
                self._mem_bytes -= r.size
            return
        if not self._acks:
            self._acks_since = time.monotonic()
        self._acks.append(id)
        self._maybe_flush_acks()

    def _maybe_flush_acks(self) -> None:
        if self._acks and (len(self._acks) >= ACK_FLUSH_COUNT or time.monotonic() - self._acks_since >= ACK_FLUSH_S):
            self._flush_acks()

    def flush(self) -> None:
        """Delete acked rows now (the daemon may call this on a timer)."""
        self._flush_acks()

    def _flush_acks(self) -> None:
        if not self._acks:
            return
        ids = self._acks
        try:
            self._tx(lambda: self._delete(ids))
        except sqlite3.Error as exc:
            self._degrade(exc)
            return
        self._acks = []

    def release_inflight(self) -> None:
        """After a disconnect: in-flight messages go back to the queue and are
        resent first, with the seq they already have."""
        self._flush_acks()
        self._inflight.clear()
        self._alias.clear()

    def stats(self) -> dict:
        c = self._c
        now = self._now()
        oldest = None
        row = self._db.execute("SELECT stamp FROM msg ORDER BY id LIMIT 1").fetchone()
        if row is not None:
            oldest = row[0]
        if self._mem:
            first = next(iter(self._mem.values())).stamp
            oldest = first if oldest is None else min(oldest, first)
        return {
            "backlog_msgs": sum(c.n) + len(self._mem),
            "backlog_bytes": c.bytes + self._mem_bytes,
            "oldest_age_s": 0.0 if oldest is None else max(0.0, now - oldest),
            "inflight": len(self._inflight),
            "dropped": {_NAMES[p]: c.dropped[p] for p in Priority},
            "coalesced": c.coalesced,
            "health": "ram_only" if self.ram_only and self._health == "ok" else self._health,
            "health_detail": self.ram_only or self._health_detail,
            "quarantined": list(self.quarantined),
            "memory_held": len(self._mem),
            "seq_next": self._seq,
        }

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

    def __enter__(self) -> "Outbox":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
