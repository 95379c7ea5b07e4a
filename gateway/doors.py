"""Door controllers: read their event logs with no gap and no duplicate, and
publish access events (docs/doors.md; protocol in docs/models/door-controller.md).

Each controller gets a DoorPoller, set on DeviceRuntime.custom by the daemon;
the bus task calls ``poll(bus, device)`` in the controller's turn. Per
controller a cursor ``{serial, epoch, last_index, fingerprint}`` lives in the
outbox kv (key ``door/<device>``) and is written in the same put() as the
events it covers, so a crash between reading and publishing can neither skip
nor repeat an event: either both are stored or neither is, and then the same
records are read again and get the same ids.

DoorSite holds what the controllers of a site share: the card registry, the
pseudonym key, the local access history (doors.db in the state folder,
bounded by ``history_days``) and the daily ``cards_expiring`` reminder.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import time
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from protocols import doorlog
from protocols.modbus import types
from protocols.modbus.plan import Read

from . import payloads
from .cards import (CardRegistry, CardState, Pseudonymizer, RegistryError, Rules, check_entries,
                    load_or_create_key, parse_csv)
from .outbox import Message, Priority

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
HISTORY_PRUNE_S = 3600.0
REMINDER_CHECK_S = 60.0
RECENT_EVENTS = 20

DEFAULTS = {
    "publish_raw_card_numbers": False,
    "history_days": 90.0,
    "clock_skew_warn_s": 300.0,
    "expiry_reminder_days": 30,
    "reminder_hour": 8,
    "timezone": "Asia/Shanghai",
}
KEY_FILE = "door-pseudonym.key"   # as gateway/config.py DOOR_KEY_NAME
HISTORY_FILE = "doors.db"
CARDS_FILE = "cards.json"


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def cursor_key(device: str) -> str:
    return f"door/{device}"


@dataclass(frozen=True)
class DoorSettings:
    state_dir: Path
    key_file: Path
    publish_raw: bool
    registry_csv: Path | None
    history_days: float
    clock_skew_warn_s: float
    reminder_days: int
    reminder_hour: int
    tz: ZoneInfo
    rules: Rules

    @classmethod
    def from_config(cls, doors: dict, state_dir: Path) -> "DoorSettings":
        d = {**DEFAULTS, **doors}
        return cls(state_dir=Path(state_dir),
                   key_file=Path(d.get("pseudonym_key_file") or Path(state_dir) / KEY_FILE),
                   publish_raw=bool(d["publish_raw_card_numbers"]),
                   registry_csv=Path(d["registry_csv"]) if d.get("registry_csv") else None,
                   history_days=float(d["history_days"]),
                   clock_skew_warn_s=float(d["clock_skew_warn_s"]),
                   reminder_days=int(d["expiry_reminder_days"]),
                   reminder_hour=int(d["reminder_hour"]),
                   tz=ZoneInfo(d["timezone"]), rules=Rules(d))


# --------------------------------------------------------------------------- local history

class History:
    """Published door events, kept locally for `edgegw doorlog` and bounded
    by age. An id is stored once: a window read again after a crash
    rewrites the same rows."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        if readonly:
            self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5.0)
            return
        if not self.path.exists():
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        self.db = sqlite3.connect(self.path, isolation_level=None, timeout=5.0)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # a lost row is harmless: the outbox has it
        self.db.execute("CREATE TABLE IF NOT EXISTS event (id TEXT PRIMARY KEY, controller TEXT NOT NULL,"
                        " stamp REAL NOT NULL, kind TEXT NOT NULL, body TEXT NOT NULL)")
        self.db.execute("CREATE INDEX IF NOT EXISTS event_ctl ON event(controller, kind, stamp)")
        self.db.execute("CREATE INDEX IF NOT EXISTS event_stamp ON event(stamp)")
        self._pruned = 0.0

    def add(self, controller: str, bodies: list[dict], now: float) -> None:
        rows = [(b["id"], controller, now, b["type"], json.dumps(b, ensure_ascii=False, separators=(",", ":")))
                for b in bodies if b.get("id")]
        if not rows:
            return
        try:
            self.db.execute("BEGIN")
            self.db.executemany("INSERT OR REPLACE INTO event VALUES (?, ?, ?, ?, ?)", rows)
            self.db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            log.warning("door history not written (%s); the events themselves are in the outbox", exc)

    def prune(self, now: float, days: float, force: bool = False) -> int:
        if not force and now - self._pruned < HISTORY_PRUNE_S:
            return 0
        self._pruned = now
        try:
            cur = self.db.execute("DELETE FROM event WHERE stamp < ?", (now - days * 86400.0,))
            return cur.rowcount
        except sqlite3.Error as exc:
            log.warning("door history not pruned: %s", exc)
            return 0

    def recent(self, controller: str, kinds: tuple[str, ...], limit: int) -> list[dict]:
        q = ("SELECT body FROM event WHERE controller=? AND kind IN (%s) ORDER BY stamp DESC, rowid DESC LIMIT ?"
             % ",".join("?" * len(kinds)))
        try:
            rows = self.db.execute(q, (controller, *kinds, limit)).fetchall()
        except sqlite3.Error:
            return []
        return [json.loads(r[0]) for r in rows]

    def close(self) -> None:
        self.db.close()


# --------------------------------------------------------------------------- the site

class DoorSite:
    """What the door controllers of one gateway share."""

    def __init__(self, cfg, outbox, topics, *, wake=None, now=time.time) -> None:
        self.cfg = cfg
        self.outbox = outbox
        self.topics = topics
        self.wake = wake or (lambda: None)
        self.now = now
        self.settings = s = DoorSettings.from_config(cfg.doors, cfg.gateway.state_dir)
        key, created = load_or_create_key(s.key_file)
        if created:
            log.warning("doors: created a new card pseudonym key %s (mode 0600); keep a copy with the "
                        "site records: without it pseudonyms change", s.key_file)
        self.key = key
        self.pseudonym = Pseudonymizer(key)
        from .state import StateStore
        self.cards_store = StateStore(str(s.state_dir / CARDS_FILE))
        self.registry = CardRegistry(self.cards_store, s.rules)
        if s.registry_csv is not None:
            entries = parse_csv(s.registry_csv.read_bytes(), source=str(s.registry_csv))
            added = self.registry.merge(entries, source=f"csv:{s.registry_csv.name}")
            log.info("doors: card registry %s: %d entries, %d new, %d cards",
                     s.registry_csv, len(entries), added, len(self.registry))
        self.history = History(s.state_dir / HISTORY_FILE)
        self.pollers: dict[str, DoorPoller] = {}
        self.cards_topic = f"{topics.base}/config/cards"

    @property
    def subscriptions(self) -> tuple[str, ...]:
        return (self.cards_topic,) if self.pollers else ()

    def poller(self, rt) -> "DoorPoller":
        p = DoorPoller(self, rt.name, rt.model)
        self.pollers[rt.name] = p
        return p

    # -- shared helpers

    def put(self, controller: str, msgs: list[Message], kv: dict | None = None) -> None:
        self.outbox.put(msgs, kv=kv)
        self.history.add(controller, [m.payload for m in msgs if m.priority == Priority.EVENT], self.now())
        self.history.prune(self.now(), self.settings.history_days)

    def local_date(self, ts: float) -> date:
        return datetime.fromtimestamp(ts, self.settings.tz).date()

    def card_fields(self, card: int, when_ts: float) -> tuple[dict, CardState | None]:
        """card (pseudonym), holder_type, card_valid, card_status for a record."""
        if not card:
            return {"card": None, "holder_type": None, "card_valid": None, "card_status": None}, None
        out: dict[str, object] = {"card": self.pseudonym(card)}
        if self.settings.publish_raw:
            out["card_number"] = str(card)
        if not self.registry.loaded:
            # no registry at this site: the controller's own decision stands
            out.update(holder_type=None, card_valid=None, card_status="no_registry")
            return out, None
        st = self.registry.state(card, self.local_date(when_ts))
        out.update(holder_type=st.holder_type, card_valid=st.valid, card_status=st.status,
                   valid_until=st.valid_until.isoformat() if st.valid_until else None)
        return out, st

    # -- registry updates over MQTT (retained <prefix>/<gw>/config/cards)

    def on_message(self, topic: str, payload: bytes) -> None:
        if topic != self.cards_topic:
            return
        try:
            self.apply_update(payload)
        except Exception:  # noqa: BLE001 - a bad message must not stop the MQTT thread hand-off
            log.exception("doors: card registry update failed")

    def apply_update(self, payload: bytes) -> int | None:
        if not payload.strip():
            return None  # the retained message was cleared
        import hashlib
        digest = hashlib.sha256(payload).hexdigest()
        if self.registry.meta().get("mqtt_sha256") == digest:
            return 0  # redelivered on reconnect: already applied
        try:
            entries = parse_update(payload)
        except RegistryError as exc:
            log.warning("doors: card registry update on %s refused: %d problem(s): %s",
                        self.cards_topic, len(exc.problems), "; ".join(exc.problems[:5]))
            body = payloads.envelope()
            body.update({"type": "gateway", "code": "cards_update_rejected", "severity": "minor",
                         "detail": {"topic": self.cards_topic, "problems": exc.problems[:50]}})
            self.outbox.put([Message(f"{self.topics.base}/event", body, Priority.EVENT)])
            self.wake()
            return None
        added = self.registry.merge(entries, source="mqtt")
        self.registry.set_meta(mqtt_sha256=digest, mqtt_applied=_iso(self.now()))
        log.info("doors: card registry update: %d entries, %d new, %d cards", len(entries), added,
                 len(self.registry))
        return added

    # -- daily reminder

    def remind_if_due(self) -> dict | None:
        now = self.now()
        local = datetime.fromtimestamp(now, self.settings.tz)
        today = local.date()
        if local.hour < self.settings.reminder_hour or not self.registry.loaded:
            return None
        if self.registry.meta().get("reminded_on") == today.isoformat():
            return None
        expiring = self.registry.expiring(today, self.settings.reminder_days)
        body = None
        if expiring:
            body = payloads.envelope()
            body.update({
                "type": "cards_expiring", "id": f"cards_expiring/{today.isoformat()}",
                "date": today.isoformat(), "within_days": self.settings.reminder_days,
                "count": len(expiring),
                "cards": [{"card": self.pseudonym(c), "holder_type": st.holder_type,
                           "valid_until": str(st.valid_until),
                           "days_left": (st.valid_until - today).days if st.valid_until else None}
                          | ({"card_number": str(c)} if self.settings.publish_raw else {})
                          for c, st in expiring],
            })
            self.outbox.put([Message(f"{self.topics.base}/event", body, Priority.EVENT)])
            self.wake()
            log.info("doors: %d card(s) expire within %d days", len(expiring), self.settings.reminder_days)
        self.registry.set_meta(reminded_on=today.isoformat())
        return body

    async def run(self) -> None:
        while True:
            try:
                self.remind_if_due()
            except Exception:  # noqa: BLE001 - a reminder bug must not stop the daemon
                log.exception("doors: expiry reminder failed")
            await asyncio.sleep(REMINDER_CHECK_S)

    def view(self, controller: str) -> dict:
        p = self.pollers.get(controller)
        if p is None:
            raise KeyError(f"{controller!r} is not a door controller of this gateway "
                           f"({', '.join(sorted(self.pollers)) or 'none configured'})")
        return p.view()


def parse_update(payload: bytes) -> list[dict]:
    """A registry update: CSV text (as the registry file), or JSON
    ``{"entries": [{"card": ..., "holder_type": ..., "issued": ...}, ...]}``."""
    text = payload.decode("utf-8-sig", errors="replace").strip()
    if not text.startswith(("{", "[")):
        return parse_csv(text, source="mqtt")
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise RegistryError([f"not JSON: {exc}"]) from None
    rows = doc if isinstance(doc, list) else doc.get("entries", doc.get("cards"))
    if not isinstance(rows, list):
        raise RegistryError(['expected {"entries": [...]} or a list of entries'])
    return check_entries((f"entries[{i}].", row) for i, row in enumerate(rows))


# --------------------------------------------------------------------------- one controller

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
                          severity=t.severity, granted=t.granted, device_ts=_iso(rec.time_s), **card)
        if flagged:
            body["clock_skew_s"] = skew
            body["device_ts_corrected"] = _iso(rec.time_s - skew)
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
            d.next_due = time.monotonic()

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


# --------------------------------------------------------------------------- edgegw doorlog

def _view_from(controller: str, cursor: dict | None, history: History | None, gaps=None, resets=None) -> dict:
    events = history.recent(controller, ("access", "expired_card_used"), RECENT_EVENTS) if history else []
    gap_events = history.recent(controller, ("log_gap",), 10) if history else []
    reset_events = history.recent(controller, ("log_reset",), 10) if history else []
    cursor = cursor or {}
    return {
        "controller": controller,
        "serial": cursor.get("serial"),
        "epoch": cursor.get("epoch"),
        "cursor": None if not cursor else {"last_index": cursor.get("last_index"),
                                           "fingerprint": cursor.get("fingerprint")},
        "gaps_total": cursor.get("gaps", 0) if gaps is None else gaps,
        "resets_total": cursor.get("resets", 0) if resets is None else resets,
        "gaps": [{k: g.get(k) for k in ("id", "epoch", "first_index", "last_index", "missing", "reason", "ts")}
                 for g in gap_events],
        "resets": [{k: r.get(k) for k in ("id", "epoch", "reason", "first_index", "previous", "ts")}
                   for r in reset_events],
        "events": [{k: e.get(k) for k in ("id", "ts", "device_ts", "index", "epoch", "door", "event", "type",
                                          "card", "holder_type", "card_valid", "card_status",
                                          "clock_skew_s", "reason") if k in e}
                   for e in events],
    }


def doorlog_view(daemon_or_state, controller: str) -> dict:
    """What `edgegw doorlog CONTROLLER` shows: latest events, cursor, epoch, gaps.

    ``daemon_or_state`` is the running Daemon (live: adds the controller's
    status and clock skew), or, with the daemon stopped, the Config or the
    state folder (read-only: cursor from the outbox, events from the local
    history). Raises KeyError for a name that is not a door controller."""
    doors = getattr(daemon_or_state, "doors", None)
    if doors is not None and hasattr(doors, "view"):
        return doors.view(controller)
    if hasattr(daemon_or_state, "runtimes"):
        raise KeyError(f"{controller!r}: this gateway has no door controllers")
    if hasattr(daemon_or_state, "gateway"):
        cfg = daemon_or_state
        state_dir = Path(cfg.gateway.state_dir)
        names = [dc.name for dc in cfg.devices]
        if controller not in names:
            raise KeyError(f"{controller!r} is not a device of this gateway")
    else:
        state_dir = Path(daemon_or_state)
    cursor = None
    ob = state_dir / "outbox.db"
    if ob.exists():
        try:
            db = sqlite3.connect(f"file:{ob}?mode=ro", uri=True, timeout=5.0)
            try:
                row = db.execute("SELECT value FROM kv WHERE key=?", (cursor_key(controller),)).fetchone()
            finally:
                db.close()
            cursor = json.loads(row[0]) if row else None
        except sqlite3.Error:
            cursor = None
    hist = None
    hp = state_dir / HISTORY_FILE
    if hp.exists():
        try:
            hist = History(hp, readonly=True)
        except sqlite3.Error:
            hist = None
    try:
        if cursor is None and (hist is None or not hist.recent(controller, ("access", "log_reset", "log_gap"), 1)):
            raise KeyError(f"{controller!r}: no door log has been read for it (is it a door controller?)")
        out = _view_from(controller, cursor, hist)
    finally:
        if hist is not None:
            hist.close()
    out["source"] = "state"
    return out


def render_doorlog(view: dict) -> str:
    """Text for a field engineer; `--json` prints the view itself."""
    lines = [f"door controller {view['controller']}  serial {view.get('serial') or '?'}  "
             f"epoch {view.get('epoch') or '?'}  ({'live' if view.get('source') == 'daemon' else 'from the state folder'})"]
    cur = view.get("cursor")
    st = view.get("controller_status")
    if cur:
        text = f"cursor: last record read {cur['last_index']}"
        if st:
            text += (f"; controller holds {st['oldest']}..{st['newest']} of {st['capacity']}, "
                     f"{st['unread']} unread")
        lines.append(text)
    else:
        lines.append("cursor: none yet (nothing read from this controller)")
    skew = view.get("clock_skew_s")
    if skew is not None:
        warn = view.get("clock_skew_warn_s") or DEFAULTS["clock_skew_warn_s"]
        lines.append(f"controller clock: {skew:+d} s from the gateway"
                     + ("  ** beyond the limit: set the controller's clock **" if abs(skew) > warn else ""))
    lines.append(f"gaps: {view.get('gaps_total', 0)}   log resets: {view.get('resets_total', 0)}")
    for g in view.get("gaps", []):
        lines.append(f"  gap  epoch {g['epoch']}: records {g['first_index']}..{g['last_index']} "
                     f"({g['missing']} lost, {g['reason']})  seen {g.get('ts')}")
    for r in view.get("resets", []):
        lines.append(f"  new epoch {r['epoch']}: {r['reason']}, from record {r['first_index']}  seen {r.get('ts')}")
    events = view.get("events", [])
    lines.append(f"latest events ({len(events)}):")
    for e in events:
        if e.get("type") == "expired_card_used":
            lines.append(f"  {e.get('device_ts')}  #{e.get('index')}  door {e.get('door')}  "
                         f"** GRANTED a card that is {e.get('reason')} **  card {e.get('card')}")
            continue
        who = ""
        if e.get("card"):
            who = f"  card {e['card']}"
            if e.get("holder_type"):
                who += f" ({e['holder_type']}{'' if e.get('card_valid') in (True, None) else ', ' + str(e.get('card_status'))})"
        skewed = "  [controller clock off]" if e.get("clock_skew_s") is not None else ""
        lines.append(f"  {e.get('device_ts')}  #{e.get('index')}  door {e.get('door')}  {e.get('event')}{who}{skewed}")
    return "\n".join(lines)
