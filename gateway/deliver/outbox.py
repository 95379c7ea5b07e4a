"""Durable store-and-forward queue between the poll loop and MQTT.

paho-mqtt keeps unacknowledged QoS 1 messages only in RAM, and a site box
loses power and uplink regularly. Every message is committed to SQLite (WAL)
before it is offered for sending and deleted only when the broker's PUBACK
arrives, so a reading or alarm survives broker outages, power cuts and
restarts.

This module is the sending side: first-send order, seqs persisted before a
message leaves, the in-flight window, acks. Storing (transactions, budgets,
holding in RAM on a full disk) is outbox_store.py; the file is outbox_file.py;
the room kept to drain a full disk is outbox_space.py.

Guarantees and rules are documented for operators and consumers in
docs/durability.md; the internal contract is in docs/dev/interfaces.md.
Single-threaded (see outbox_store.py); the event loop talks to it through
gateway/deliver/writer.py.
"""

from __future__ import annotations

import sqlite3
import time

from .outbox_rows import NAMES, Message, Pending, Priority, with_seq
from .outbox_space import is_full
from .outbox_store import (
    ACK_FLUSH_COUNT,
    ACK_FLUSH_S,
    DEFAULT_MAX_AGE_S,
    DEFAULT_MAX_BYTES,
    Store,
)

__all__ = ["Priority", "Message", "Pending", "Outbox", "ACK_FLUSH_COUNT", "ACK_FLUSH_S",
           "DEFAULT_MAX_AGE_S", "DEFAULT_MAX_BYTES"]

# Seqs that may be handed to memory-held events without a further write; see
# "Seq while the store cannot be written" in docs/durability.md.
SEQ_RESERVE = 1_000


class Outbox(Store):
    """Durable ordered queue; see docs/dev/interfaces.md for the contract."""

    def next_batch(self, limit: int) -> list[Pending]:
        """Oldest messages not in flight, at most the free part of the in-flight
        window. A message gets its seq here at first send (persisted first)."""
        self._maybe_flush_acks()
        room = min(limit, self.inflight_max - len(self._inflight))
        if room <= 0:
            return []
        out: list[Pending] = []
        if not self._held and self._budget.expiry_due(self._db, self._now()):
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
        waiting = False
        if need:
            try:
                seqs = self._assign(need)
            except sqlite3.Error as exc:
                self._degrade(exc)
            if len(seqs) < len(need):
                # a seq not on disk could be reused after a crash: send only
                # the leading rows that have one
                stop = need[len(seqs)]
                rows = rows[:next(k for k, r in enumerate(rows) if r[0] == stop)]
                waiting = True
        for rid, topic, body, qos, retain, seq in rows:
            s = seq if seq is not None else seqs[rid]
            out.append(Pending(rid, topic, with_seq(body, s), qos, bool(retain), s))
            self._inflight.add(rid)
        room -= len(out)
        if room > 0 and self._held and not (waiting and self._stored_event_waits()):
            out.extend(self._offer_memory(room))
        return out

    def _assign(self, need: list[int]) -> dict[int, int]:
        """Give the rows their seqs, in id order, in synced transactions: one
        for all of them normally. Short of space, the reserve is spent once,
        then fewer rows go per transaction (a row whose payload spills over
        several pages rewrites them all, and a WAL that cannot grow may still
        take a small transaction): sending goes on, a few rows at a time.
        Returns the seqs given, for a prefix of need."""
        out: dict[int, int] = {}
        spare_given = False
        k = len(need)
        while len(out) < len(need):
            first = self._seq
            chunk = need[len(out):len(out) + k]
            seqs = {rid: first + i for i, rid in enumerate(chunk)}

            def assign(seqs: dict[int, int] = seqs, first: int = first) -> None:
                self._db.executemany("UPDATE msg SET seq=? WHERE id=?", [(s, rid) for rid, s in seqs.items()])
                self._seq = first + len(seqs)
                self._c.seq_next = self._seq

            try:
                self._tx(assign, seq=True)
                out.update(seqs)
                continue
            except sqlite3.Error as exc:
                if is_full(exc) and not spare_given:
                    spare_given = True
                    if self._space.give_spare(self._db):
                        continue
                if is_full(exc) and k > 1:
                    k //= 2
                    continue
                if not out:
                    raise
                self._degrade(exc)
                break
        return out

    def _take_new(self, room: int) -> list[tuple]:
        """In put's transaction, with nothing stored unsent before them: seqs
        for the first new rows (state already coalesced, budget applied)."""
        room = min(room, self.inflight_max - len(self._inflight))
        if room <= 0:
            return []
        rows = self._db.execute(
            "SELECT id, topic, payload, qos, retain FROM msg WHERE seq IS NULL ORDER BY id LIMIT ?", (room,)
        ).fetchall()
        first = self._seq
        self._db.executemany("UPDATE msg SET seq=? WHERE id=?", [(first + k, r[0]) for k, r in enumerate(rows)])
        self._seq = self._c.seq_next = first + len(rows)
        return [(*r, first + k) for k, r in enumerate(rows)]

    def _taken(self, rows: list[tuple]) -> list[Pending]:
        """After the commit: what _take_new gave, in flight."""
        out = []
        for rid, topic, body, qos, retain, s in rows:
            out.append(Pending(rid, topic, with_seq(body, s), qos, bool(retain), s))
            self._inflight.add(rid)
        return out

    def nothing_waits(self) -> bool:
        """Every stored row is in flight or acked, and memory holds nothing:
        a batch asked for now would be empty (no query needed to say so)."""
        return not self._held and sum(self._c.n) == len(self._inflight) + len(self._acks)

    def _stored_event_waits(self) -> bool:
        """An event stored before the held ones has no seq yet: the held
        events wait behind it, or alarms would reach the broker out of order."""
        return self._db.execute(
            "SELECT 1 FROM msg WHERE prio=? AND seq IS NULL LIMIT 1", (int(Priority.EVENT),)
        ).fetchone() is not None

    def _offer_memory(self, room: int) -> list[Pending]:
        out: list[Pending] = []
        for mid, r in self._held.rows.items():
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
            out.append(Pending(mid, r.topic, with_seq(r.body, r.seq), r.qos, bool(r.retain), r.seq))
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

        if not self._held:
            try:
                self._drain_tx(take, seq=True)
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
        (batched, or to the next put's transaction: ack_deletes_wait); a
        crash before it only causes a bounded duplicate."""
        id = self._alias.pop(id, id)
        self._inflight.discard(id)
        if id < 0:
            self._held.pop(id)
            return
        if not self._acks:
            self._acks_since = time.monotonic()
        self._acks.append(id)
        self._maybe_flush_acks()

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
        held = self._held.oldest_stamp()
        if held is not None:
            oldest = held if oldest is None else min(oldest, held)
        return {
            "backlog_msgs": sum(c.n) + len(self._held),
            "backlog_bytes": c.bytes + self._held.bytes,
            "oldest_age_s": 0.0 if oldest is None else max(0.0, now - oldest),
            "inflight": len(self._inflight),
            "dropped": {NAMES[p]: c.dropped[p] for p in Priority},
            "coalesced": c.coalesced,
            "health": "ram_only" if self.ram_only and self._health == "ok" else self._health,
            "health_detail": self.ram_only or self._health_detail,
            "quarantined": list(self.quarantined),
            "memory_held": len(self._held),
            "seq_next": self._seq,
            "reserve": self._space.state(),
        }

