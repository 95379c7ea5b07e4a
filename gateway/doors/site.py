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
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from gateway.deliver import payloads
from gateway.deliver.outbox import Message, Priority
from gateway.site.cardfile import RegistryError, check_entries, parse_csv
from gateway.site.state import StateStore

from .cards import CardRegistry, CardState, Pseudonymizer, Rules, load_or_create_key
from .history import HISTORY_FILE, History
from .poller import DoorPoller, iso

log = logging.getLogger(__name__)

REMINDER_CHECK_S = 60.0

DEFAULTS = {
    "publish_raw_card_numbers": False,
    "history_days": 90.0,
    "clock_skew_warn_s": 300.0,
    "expiry_reminder_days": 30,
    "reminder_hour": 8,
    "timezone": "Asia/Shanghai",
}
KEY_FILE = "door-pseudonym.key"   # as gateway/config.py DOOR_KEY_NAME
CARDS_FILE = "cards.json"


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
        self.registry.set_meta(mqtt_sha256=digest, mqtt_applied=iso(self.now()))
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


# --------------------------------------------------------------------------- edgegw doorlog


