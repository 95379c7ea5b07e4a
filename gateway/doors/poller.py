"""One door controller's event log, read window by window in its bus turn."""
from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from gateway.deliver import payloads
from gateway.deliver.outbox import Message, Priority
from protocols import doorlog
from protocols.modbus import types
from protocols.modbus.plan import Read

if TYPE_CHECKING:
    from .site import DoorSite

from .view import _view_from, cursor_key

log = logging.getLogger(__name__)

# Windows one poll may read before it gives the bus back: 13 records each,
# so a 10 000-record first read takes many polls instead of blocking every
# other unit on the line for minutes.
MAX_WINDOWS_PER_POLL = 8
# A slot that fails its check this many polls running is given up as a
# one-record gap rather than blocking the log for ever.
BAD_RECORD_SKIP = 3
# The ring moving under our reads (wrap, clear) this often in one poll: stop
# and try again at the next poll.
MAX_MOVES_PER_POLL = 3
# Numbers a door controller's state carries beyond its register map (see
# _state_values), for consumers that build entities from the model.
STATE_NUMBERS = ("log_cursor_index", "log_gaps", "log_resets", "clock_skew_s")


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")




class DoorPoller:
    """DeviceRuntime.custom for one door controller."""

    def __init__(self, site: DoorSite, name: str, model) -> None:
        self.site = site
        self.name = name
        self.model = model
        self.layout = doorlog.Layout.from_model(model)
        lay = self.layout
        self.status_read = Read(lay.status_function, lay.status_address, lay.status_count,
                                lay.status_fields)
        self.cursor = doorlog.Cursor.from_kv(site.outbox.kv_get(cursor_key(name)))
        saved = site.outbox.kv_get(cursor_key(name)) or {}
        self.gaps = int(saved.get("gaps", 0))
        self.resets = int(saved.get("resets", 0))
        self.status: doorlog.Status | None = None
        self.clock_skew_s: int | None = None       # latest controller clock - gateway clock, for diag
        self.clock_skew_flagged = False
        self.last_event: dict | None = None
        self.caught_up = False
        self.bad: dict[int, int] = {}
        self.topic = site.topics.event(name)

    # -- cursor commit

    def _kv(self, cursor: doorlog.Cursor) -> dict:
        return {cursor_key(self.name): {**cursor.to_kv(), "gaps": self.gaps, "resets": self.resets}}

    def _commit(self, msgs: list[Message], cursor: doorlog.Cursor) -> None:
        # One transaction: the events and the cursor that says they are done.
        self.site.put(self.name, msgs, self._kv(cursor))
        self.cursor = cursor

    def _base(self, kind: str, **fields) -> dict:
        body = payloads.envelope()
        body.update({"type": kind, "controller": self.name})
        body.update(fields)
        return body

    def _start(self, start: doorlog.Start, status: doorlog.Status) -> doorlog.Cursor:
        msgs = []
        cur = start.cursor
        if start.reset:
            self.resets += 1
            prev = start.previous
            body = self._base(
                "log_reset", id=f"{cur.serial}/{cur.epoch}/reset", serial=cur.serial, epoch=cur.epoch,
                reason=start.reset, first_index=cur.last_index + 1, oldest=status.oldest,
                newest=status.newest, capacity=status.capacity,
                previous=None if prev is None else {"serial": prev.serial, "epoch": prev.epoch,
                                                    "last_index": prev.last_index})
            body["severity"] = "info" if start.reset == doorlog.FIRST_CONTACT else "minor"
            msgs.append(Message(self.topic, body, Priority.EVENT))
            log.log(logging.INFO if start.reset == doorlog.FIRST_CONTACT else logging.WARNING,
                    "door %s: log epoch %d (%s): reading the retained log from record %d",
                    self.name, cur.epoch, start.reset, cur.last_index + 1)
        if start.gap:
            msgs.append(self._gap_message(cur, start.gap, "overrun"))
        if msgs:
            self._commit(msgs, cur)
        return cur

    def _gap_message(self, cur: doorlog.Cursor, gap: tuple[int, int], reason: str) -> Message:
        first, last = gap
        self.gaps += 1
        body = self._base("log_gap", id=f"{cur.serial}/{cur.epoch}/gap/{first}-{last}", serial=cur.serial,
                          epoch=cur.epoch, first_index=first, last_index=last, missing=last - first + 1,
                          reason=reason, severity="major")
        log.warning("door %s: records %d..%d (%d) lost before they were read (%s)",
                    self.name, first, last, last - first + 1, reason)
        return Message(self.topic, body, Priority.EVENT)

    # -- events

    def _access(self, cur: doorlog.Cursor, rec: doorlog.Record, skew: int) -> list[Message]:
        t = rec.type
        flagged = abs(skew) > self.site.settings.clock_skew_warn_s
        when = rec.time_s - skew if flagged else rec.time_s
        card, st = self.site.card_fields(rec.card, when)
        eid = doorlog.event_id(cur.serial, cur.epoch, rec.index)
        body = self._base("access", id=eid, serial=cur.serial, epoch=cur.epoch, index=rec.index,
                          door=rec.door, event=t.name, event_code=rec.event, category=t.category,
                          severity=t.severity, granted=t.granted, device_ts=iso(rec.time_s), **card)
        if flagged:
            body["clock_skew_s"] = skew
            body["device_ts_corrected"] = iso(rec.time_s - skew)
        msgs = [Message(self.topic, body, Priority.EVENT)]
        if t.granted and st is not None and not st.valid:
            # The controller let in a card the registry says is not valid:
            # its own card list is out of date, or the card was not blocked.
            alarm = self._base("expired_card_used", id=f"{eid}/card", access_id=eid, serial=cur.serial,
                               epoch=cur.epoch, index=rec.index, door=rec.door, device_ts=body["device_ts"],
                               severity="major", reason=st.status, **card)
            msgs.append(Message(self.topic, alarm, Priority.EVENT))
            log.warning("door %s: door %d opened for card %s, which the registry has as %s",
                        self.name, rec.door, card["card"], st.status)
        self.last_event = {k: body.get(k) for k in ("id", "event", "door", "card", "holder_type",
                                                    "card_valid", "device_ts", "index", "epoch")}
        return msgs

    def _commit_records(self, cur: doorlog.Cursor, recs: list[doorlog.Record], skew: int) -> doorlog.Cursor:
        msgs: list[Message] = []
        for rec in recs:
            msgs += self._access(cur, rec, skew)
            cur = doorlog.advance(cur, rec, self.site.key)
            self.bad.pop(rec.index, None)
        self._commit(msgs, cur)
        return cur

    # -- the poll

    def _note_skew(self, status: doorlog.Status) -> int:
        skew = int(round(status.clock_s - self.site.now()))
        self.clock_skew_s = skew
        flagged = abs(skew) > self.site.settings.clock_skew_warn_s
        if flagged != self.clock_skew_flagged:
            log.warning("door %s: controller clock is %+d s from the gateway's%s", self.name, skew,
                        "" if flagged else " again within limits")
            self.clock_skew_flagged = flagged
        return skew

    async def _status(self, bus, unit: int, results: list) -> doorlog.Status | str:
        lay = self.layout
        regs = await bus.read(unit, lay.status_function, lay.status_address, lay.status_count)
        results[:] = [(self.status_read, regs)]
        if isinstance(regs, str):
            return regs
        try:
            return lay.status(regs)
        except types.DecodeError:
            return "decode_error"

    async def poll(self, bus, d) -> None:
        unit = d.cfg.unit
        lay = self.layout
        results: list = []
        status = await self._status(bus, unit, results)
        if isinstance(status, str):
            d.counters[status] += 1
            await bus.finish(d, results, status)
            return
        reason = None
        more = False
        try:
            reason, more = await self._read_log(bus, d, unit, lay, status, results)
        except Exception:  # noqa: BLE001 - a reader bug must not take the bus (and its meters) down
            log.exception("door %s: reading the log failed", self.name)
            reason = "internal_error"
        finally:
            if reason:
                d.counters[reason] += 1
            d.last_values.update(self._state_values())
            await bus.finish(d, results, reason)
        if more:
            # Backlog left: come back as soon as the units already due have had their turn.
            bus.reschedule(d, time.monotonic())

    async def _read_log(self, bus, d, unit, lay, status, results) -> tuple[str | None, bool]:
        self.status = status
        skew = self._note_skew(status)
        start = doorlog.begin(self.cursor, status)
        cur = self._start(start, status)
        verify = start.verify
        windows = moves = 0
        while True:
            first, count = doorlog.window(cur, status, verify, lay.slots_per_read)
            if count == 0:
                self.caught_up = True
                return None, False
            if windows >= MAX_WINDOWS_PER_POLL:
                self.caught_up = False
                return None, True
            windows += 1
            err = await bus.write(unit, lay.select_address, lay.select(first, count))
            if err:
                return err, False
            regs = await bus.read(unit, lay.slot_function, lay.slot_address, count * lay.slot_registers)
            if isinstance(regs, str):
                return regs, False
            slots: list = []
            for s in lay.split(regs):
                try:
                    slots.append(lay.decode_slot(s))
                except doorlog.RecordError as exc:
                    slots.append(exc)
            res = doorlog.check_window(cur, first, slots, verify, self.site.key)
            verify = False
            if res.records:
                cur = self._commit_records(cur, res.records, skew)
            if res.outcome == "ok":
                continue
            if res.outcome == "mismatch":
                cur = self._start(doorlog.new_epoch(cur, status, doorlog.FINGERPRINT_MISMATCH), status)
                continue
            if res.outcome == "bad_record":
                at = int(res.at or 0)
                n = self.bad[at] = self.bad.get(at, 0) + 1
                log.info("door %s: %s (attempt %d)", self.name, res.detail, n)
                if n < BAD_RECORD_SKIP:
                    return "record_check", False
                self.bad.pop(at, None)
                nxt = doorlog.Cursor(cur.serial, cur.epoch, at, None)
                self._commit([self._gap_message(cur, (at, at), "unreadable_record")], nxt)
                cur = nxt
                continue
            # moved: the ring changed between the status read and this window
            moves += 1
            log.info("door %s: %s; reading the status again", self.name, res.detail)
            if moves > MAX_MOVES_PER_POLL:
                return "log_moving", False
            status = await self._status(bus, unit, results)
            if isinstance(status, str):
                return status, False
            self.status = status
            start = doorlog.begin(cur, status)
            cur = self._start(start, status)
            verify = start.verify

    # -- state for payloads and the CLI

    def _state_values(self) -> dict:
        c = self.cursor
        return {
            "log_epoch": c.epoch if c else None,
            "log_cursor_index": c.last_index if c else None,
            "log_caught_up": self.caught_up,
            "log_gaps": self.gaps,
            "log_resets": self.resets,
            "clock_skew_s": self.clock_skew_s,
            "last_event": self.last_event,
        }

    def view(self) -> dict:
        st = self.status
        c = self.cursor
        out = _view_from(self.name, c.to_kv() if c else None, self.site.history, self.gaps, self.resets)
        out["source"] = "daemon"
        out["clock_skew_s"] = self.clock_skew_s
        out["clock_skew_warn_s"] = self.site.settings.clock_skew_warn_s
        out["caught_up"] = self.caught_up
        out["controller_status"] = None if st is None else {
            "serial": st.serial, "firmware": st.firmware, "capacity": st.capacity,
            "oldest": st.oldest, "newest": st.newest,
            "unread": max(0, st.newest - (c.last_index if c and c.serial == st.serial else 0)),
        }
        return out


