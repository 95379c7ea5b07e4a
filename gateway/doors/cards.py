"""Card validity rules, a card's state from its history, and card
pseudonyms (docs/doors.md). Where the history is kept: registry.py.

The registry is the site's card issue/anomaly register as data: every issue,
top-up, parking entitlement, loss, damage, replacement or revocation is one
history entry, and a card's state on a given day is what its entries up to
that day say.

Validity (service manual section J, our decisions in docs/doors.md):

    owner, family   2 years   } the day before the same date N months later;
    tenant          1 year    } when that date does not exist (31 January +1
    merchant        1 year    } month), valid to the end of that month.
    parking         1 month   } 9 June -> 8 July; 31 January -> 28/29 February.
    staff           no expiry

A parking entitlement on a card of another holder type runs by the parking
rule and leaves the card's own validity alone.

Published events and logs never carry a card number: a keyed pseudonym
(HMAC-SHA256 with the site's secret) stands for it, stable at one site and
different at every other.
"""
from __future__ import annotations

import calendar
import hashlib
import hmac
import logging
import os
import secrets
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Callable

from gateway.site.cardfile import ENDS, PARKING

log = logging.getLogger(__name__)


DEFAULT_RULES = {"owner_years": 2, "family_years": 2, "tenant_years": 1, "merchant_years": 1,
                 "parking_months": 1}


# --------------------------------------------------------------------------- validity

def valid_until(issued: date, months: int) -> date:
    """Last valid day of a period of ``months`` starting on ``issued``: the
    day before the same date ``months`` later, or, when that month has no
    such date, its last day."""
    y, m = divmod(issued.month - 1 + months, 12)
    y += issued.year
    m += 1
    last = calendar.monthrange(y, m)[1]
    if issued.day <= last:
        return date(y, m, issued.day) - timedelta(days=1)
    return date(y, m, last)


class Rules:
    def __init__(self, overrides: dict | None = None) -> None:
        r = {**DEFAULT_RULES, **{k: v for k, v in (overrides or {}).items() if k in DEFAULT_RULES}}
        self.months = {"owner": 12 * r["owner_years"], "family": 12 * r["family_years"],
                       "tenant": 12 * r["tenant_years"], "merchant": 12 * r["merchant_years"],
                       "parking": r["parking_months"], "staff": None}

    def until(self, holder_type: str | None, issued: date) -> date | None:
        """Last valid day of a period starting on ``issued``; None: no expiry."""
        months = self.months.get(holder_type or "")
        return None if months is None else valid_until(issued, months)


# --------------------------------------------------------------------------- a card's state

@dataclass(frozen=True)
class CardState:
    known: bool
    status: str               # valid | expired | not_yet_valid | lost | damaged | replaced |
                              # revoked | no_holder_type | unknown
    holder_type: str | None
    issued: date | None
    valid_until: date | None  # None: no expiry (staff) or unknown card
    parking_until: date | None = None   # last day of the parking entitlement, if the card has one

    @property
    def valid(self) -> bool:
        return self.status == "valid"


UNKNOWN = CardState(False, "unknown", None, None, None)


def period_text(months: int) -> str:
    if months % 12 == 0:
        return f"{months // 12} year{'s' if months > 12 else ''}"
    return f"{months} month{'s' if months > 1 else ''}"


class Fold:
    """A card's history folded in date order (then the order entries were
    added): what the card is after each entry. ``keys`` are the card's keys
    in the registry (its number and its pseudonym); ``old_state(key, day)``
    is the state of a card this one replaces.

    Service manual J: parking is an entitlement on a card with its own
    monthly validity, not a holder type: on an owner's card it leaves the
    door validity alone. A parking card (holder type ``parking``) is one
    whose validity is the parking month itself."""

    def __init__(self, rules: Rules, keys: tuple[str, ...], old_state: Callable[[str, date], CardState]) -> None:
        self.rules = rules
        self.keys = keys
        self.old_state = old_state
        self.status: str | None = None     # None: nothing yet; "active": in a validity period
        self.holder: str | None = None
        self.issued: date | None = None
        self.until: date | None = None
        self.parking: date | None = None
        self.applied = 0

    def apply(self, e: dict) -> None:
        day = date.fromisoformat(e["date"])
        ev = e["event"]
        self.applied += 1
        if e["card"] not in self.keys:
            if ev == "replacement" and e.get("replaces") in self.keys:
                # a lost card stays "lost" once replaced: used again, it
                # means someone found it, which "replaced" would hide
                self.status = "replaced" if self.status in (None, "active") else self.status
            return
        if ev == "issue":
            self.holder = e.get("holder_type") or self.holder
            self._start(day, e)
        elif ev in ("top_up", "renewal"):
            ht = e.get("holder_type")
            if ht and self.holder and ht != self.holder:
                if ht == PARKING:
                    # stored before parking was an entitlement: what the office meant
                    self._parking(day, e)
                    return
                # a top-up never changes the holder type; new updates refuse this
            self.holder = self.holder or ht
            self._start(day, e)
        elif ev == "replacement":
            old = self.old_state(e["replaces"], day)
            self.holder = self.holder or e.get("holder_type") or old.holder_type
            self.issued = day
            if e.get("valid_until"):
                self.until = date.fromisoformat(e["valid_until"])
            else:
                self.until = old.valid_until if old.known else self.rules.until(self.holder, day)
            if old.known and old.parking_until and self.holder != PARKING:
                self.parking = max(self.parking or old.parking_until, old.parking_until)
            self.status = "active"
        elif ev == PARKING:
            if self.holder == PARKING:
                self._start(day, e)
            else:
                self._parking(day, e)
        elif ev in ENDS:
            self.status = ENDS[ev]

    def _start(self, day: date, e: dict) -> None:
        self.issued = day
        self.until = date.fromisoformat(e["valid_until"]) if e.get("valid_until") else \
            self.rules.until(self.holder, day)
        self.status = "active"

    def _parking(self, day: date, e: dict) -> None:
        self.parking = date.fromisoformat(e["valid_until"]) if e.get("valid_until") else \
            self.rules.until(PARKING, day)

    def allowance(self, e: dict) -> tuple[str, str, date, date] | None:
        """Before ``e`` is applied: (what, period, from, last day) for the
        latest ``valid_until`` the manual allows it; None when no rule limits
        it (staff, or no holder type). A renewal before the end of the period
        may carry the days left over: one period counted from the old end."""
        day = date.fromisoformat(e["date"])
        ev = e["event"]
        active = self.status == "active"
        if ev == "issue":
            what, base, carry = e.get("holder_type"), day, None
        elif ev == "replacement":
            old = self.old_state(e["replaces"], day)
            what, base, carry = self.holder or e.get("holder_type") or old.holder_type, day, None
        elif ev == PARKING and self.holder != PARKING:
            what, base, carry = "parking entitlement", day, self.parking
        elif ev in ("top_up", "renewal", PARKING):
            what, base, carry = self.holder or e.get("holder_type"), day, self.until if active else None
        else:
            return None
        months = self.rules.months.get(PARKING if what == "parking entitlement" else (what or ""))
        if months is None:
            return None
        if carry is not None and carry >= day:
            base = carry + timedelta(days=1)
        label = "a parking entitlement" if what == "parking entitlement" else f"a {what} card"
        return label, period_text(months), base, valid_until(base, months)

    def result(self, on: date) -> CardState:
        status = self.status
        if status is None:
            # only a parking entitlement so far, on a card never issued here
            return CardState(True, "no_holder_type" if self.applied else "not_yet_valid",
                             self.holder, self.issued, self.until, self.parking)
        if status == "active" and self.holder is None:
            # a top-up or replacement for a card never issued here: no rule
            # says how long it lasts, and "forever" must not be the default
            status = "no_holder_type"
        if status == "active":
            status = "expired" if self.until is not None and on > self.until else "valid"
        parking = self.until if self.holder == PARKING else self.parking
        return CardState(True, status, self.holder, self.issued, self.until, parking)


# --------------------------------------------------------------------------- pseudonyms

KEY_BYTES = 32


class Pseudonymizer:
    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("pseudonym key shorter than 16 bytes")
        self._key = key

    @property
    def key(self) -> bytes:
        return self._key

    def __call__(self, card: int | None) -> str | None:
        if not card:
            return None
        return hmac.new(self._key, b"card:%d" % int(card), hashlib.sha256).hexdigest()[:16]


def read_key(path: Path) -> bytes:
    raw = Path(path).read_bytes().strip()
    try:
        key = bytes.fromhex(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        key = raw  # a site may bring its own secret in any form
    if len(key) < 16:
        raise ValueError(f"{path}: the pseudonym key must hold at least 16 bytes")
    return key


def load_or_create_key(path: Path) -> tuple[bytes, bool]:
    """The site's pseudonym secret; created (mode 0600) when missing.
    Returns (key, created)."""
    path = Path(path)
    try:
        return read_key(path), False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(KEY_BYTES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, key.hex().encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    return key, True
