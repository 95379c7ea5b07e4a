"""Door controllers: read their event logs with no gap and no duplicate, and
publish access events (docs/doors.md; protocol in docs/models/door-controller.md).

Each controller gets a DoorPoller, set on DeviceRuntime.custom by the daemon;
the bus task calls ``poll(bus, device)`` in the controller's turn. Per
controller a cursor ``{serial, epoch, last_index, fingerprint}`` lives in the
outbox kv (key ``door/<device>``) and is written in the same put() as the
events it covers, so a crash between reading and publishing can neither skip
nor repeat an event: either both are stored or neither is, and then the same
records are read again and get the same ids.

DoorSite holds what the controllers of a site share: the card registry
(cards.db, updated on its own worker thread: the loop hands over the bytes of
a registry message and later reports the outcome), the pseudonym key, the
local access history (doors.db in the state folder, bounded by
``history_days``) and the daily ``cards_expiring`` reminder.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import sqlite3
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import partial
from pathlib import Path
from zoneinfo import ZoneInfo

from gateway.deliver import payloads
from gateway.deliver.outbox import Message, Priority
from gateway.site.cardfile import (
    MAX_FILE_ENTRIES,
    MAX_PROBLEMS,
    RegistryError,
    file_chunks,
    file_rows,
)
from gateway.site.config.types import DOOR_KEY_NAME

from .cards import CardState, Pseudonymizer, Rules, load_or_create_key
from .history import HISTORY_FILE, History
from .migrate import migrate_json
from .poller import DoorPoller
from .registry import REGISTRY_FILE, CardRegistry
from .updates import Outcome, Worker, apply, is_blank

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
                   key_file=Path(d.get("pseudonym_key_file") or Path(state_dir) / DOOR_KEY_NAME),
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
        self.cards_topic = f"{topics.base}/config/cards"
        self.registry = CardRegistry(s.state_dir / REGISTRY_FILE, s.rules, self.pseudonym)
        migrate_json(s.state_dir, self.registry)
        if s.registry_csv is not None:
            self._load_csv(s.registry_csv)
        self.worker = Worker(self.registry, self._finish)
        self._refused: set[tuple] = set()
        self.last_update: Outcome | None = None
        self.history = History(s.state_dir / HISTORY_FILE)
        self.pollers: dict[str, DoorPoller] = {}

    def _load_csv(self, path: Path) -> None:
        """The registry file, at every start, before polling begins (on the
        loop, which has nothing else to do yet); skipped when unchanged. A
        file with problems leaves the registry as it was and is reported
        (log and cards_update_rejected): the gateway still starts."""
        digest = hashlib.sha256()
        try:
            for chunk in file_chunks(path)():
                digest.update(chunk)
            if self.registry.meta().get("csv_sha256") == digest.hexdigest():
                log.info("doors: card registry %s unchanged since it was last loaded", path)
                return
            entries, added = self.registry.ingest(file_rows(path), f"csv:{path.name}", limit=MAX_FILE_ENTRIES,
                                                  meta={"csv_sha256": digest.hexdigest()})
        except (RegistryError, OSError, sqlite3.Error) as exc:
            problems = exc.problems if isinstance(exc, RegistryError) else \
                [f"cannot be loaded ({getattr(exc, 'strerror', None) or type(exc).__name__})"]
            log.error("doors: card registry %s refused, the registry stays as it was: %s", path,
                      "; ".join(problems[:5]))
            self._reject(problems, source=f"csv:{path.name}")
            return
        self.registry.refresh()
        log.info("doors: card registry %s: %d entries, %d new, %d cards", path, entries, added,
                 self.registry.count_cards())

    def close(self) -> None:
        self.worker.close()
        self.registry.close()
        self.history.close()

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
        # The same keys on every access event, null when unknown: a consumer
        # never has to tell "left out" from "no value" (docs/doors.md 3.1).
        out: dict[str, object] = {"card": None, "holder_type": None, "card_valid": None, "card_status": None,
                                  "valid_until": None, "parking_until": None}
        if not card:
            return out, None
        out["card"] = self.pseudonym(card)
        if self.settings.publish_raw:
            out["card_number"] = str(card)
        if not self.registry.loaded:
            # no registry at this site: the controller's own decision stands
            out["card_status"] = "no_registry"
            return out, None
        st = self.registry.state(card, self.local_date(when_ts))
        out.update(holder_type=st.holder_type, card_valid=st.valid, card_status=st.status,
                   valid_until=st.valid_until.isoformat() if st.valid_until else None,
                   parking_until=st.parking_until.isoformat() if st.parking_until else None)
        return out, st

    # -- registry updates over MQTT (retained <prefix>/<gw>/config/cards)

    def on_message(self, topic: str, payload: bytes) -> None:
        """On the event loop: measure, hand the bytes to the worker, return."""
        if topic != self.cards_topic or is_blank(payload):
            return   # an empty retained message only clears the topic: it removes nothing
        try:
            why = self.worker.submit(payload, asyncio.get_running_loop())
        except RuntimeError:   # no running loop: a caller outside the daemon
            why = None
            self._finish(apply(self.registry, payload, self.worker.refused))
        if why is not None:
            # the same refused message again (retained, on every reconnect) is reported once
            key = (len(payload), hashlib.sha256(payload[:4096]).hexdigest())
            if key not in self._refused:
                self._refused.add(key)
                self._finish(Outcome("rejected", problems=[why]))

    def apply_update(self, payload: bytes) -> Outcome:
        """The same, all on the caller's thread (tools and tests)."""
        outcome = apply(self.registry, payload)
        self._finish(outcome)
        return outcome

    async def settled(self, timeout: float = 30.0) -> None:
        """Until the updates handed to the worker are applied and reported."""
        deadline = time.monotonic() + timeout
        while self.worker.pending and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    def _finish(self, outcome: Outcome) -> None:
        """On the loop: the worker's outcome becomes the registry in force
        (its commit is already visible) or a refusal event."""
        self.last_update = outcome
        if outcome.status == "applied":
            self.registry.refresh()
            log.info("doors: card registry update: %d entries, %d new, %d cards", outcome.entries,
                     outcome.added, outcome.cards)
        elif outcome.status == "rejected":
            log.warning("doors: card registry update on %s refused, the registry stays as it was: "
                        "%d problem(s): %s", self.cards_topic, len(outcome.problems),
                        "; ".join(outcome.problems[:5]))
            self._reject(outcome.problems, source="mqtt")

    def _reject(self, problems: list[str], source: str) -> None:
        body = payloads.envelope()
        body.update({"type": "gateway", "code": "cards_update_rejected", "severity": "minor",
                     "detail": {"topic": self.cards_topic if source == "mqtt" else None, "source": source,
                                "problems": problems[:MAX_PROBLEMS + 1]}})   # already capped: belt and braces
        self.outbox.put([Message(f"{self.topics.base}/event", body, Priority.EVENT)])
        self.wake()

    # -- daily reminder

    def _due_reminder(self, now: float) -> tuple[str, dict | None] | None:
        """(today, message or None) when today's reminder is due. A full pass
        over the registry: on the worker thread in the daemon."""
        local = datetime.fromtimestamp(now, self.settings.tz)
        today = local.date()
        if local.hour < self.settings.reminder_hour or not self.registry.loaded:
            return None
        if self.registry.meta().get("reminded_on") == today.isoformat():
            return None
        items = []
        for c, st in self.registry.expiring(today, self.settings.reminder_days):
            # the card itself, and the parking entitlement on it (service manual J)
            for what, until in ((None, st.valid_until), ("parking", st.parking_until)):
                if until is None or not today <= until <= today + timedelta(days=self.settings.reminder_days) \
                        or (what and st.holder_type == "parking"):
                    continue
                items.append({"card": self.pseudonym(c), "holder_type": st.holder_type, "entitlement": what,
                              "valid_until": until.isoformat(), "days_left": (until - today).days}
                             | ({"card_number": str(c)} if self.settings.publish_raw else {}))
        if not items:
            return today.isoformat(), None
        body = payloads.envelope()
        body.update({"type": "cards_expiring", "id": f"cards_expiring/{today.isoformat()}",
                     "date": today.isoformat(), "within_days": self.settings.reminder_days,
                     "count": len(items), "cards": items})
        return today.isoformat(), body

    def _send_reminder(self, body: dict) -> None:
        self.outbox.put([Message(f"{self.topics.base}/event", body, Priority.EVENT)])
        self.wake()
        log.info("doors: %d card(s) expire within %d days", body["count"], self.settings.reminder_days)

    def remind_if_due(self) -> dict | None:
        """The daily reminder, all on the caller's thread (tools and tests)."""
        due = self._due_reminder(self.now())
        if due is None:
            return None
        today, body = due
        if body is not None:
            self._send_reminder(body)
        self.registry.set_meta(reminded_on=today)
        return body

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                due = await loop.run_in_executor(self.worker.pool, self._due_reminder, self.now())
                if due is not None:
                    today, body = due
                    if body is not None:
                        self._send_reminder(body)
                    await loop.run_in_executor(self.worker.pool, partial(self.registry.set_meta, reminded_on=today))
            except Exception:  # noqa: BLE001 - a reminder bug must not stop the daemon
                log.exception("doors: expiry reminder failed")
            await asyncio.sleep(REMINDER_CHECK_S)

    def view(self, controller: str) -> dict:
        p = self.pollers.get(controller)
        if p is None:
            raise KeyError(f"{controller!r} is not a door controller of this gateway "
                           f"({', '.join(sorted(self.pollers)) or 'none configured'})")
        return p.view()


# --------------------------------------------------------------------------- one controller


# --------------------------------------------------------------------------- edgegw doorlog


