"""Access-card registry, validity rules and card pseudonyms (docs/doors.md).

The registry is the site's card issue/anomaly register as data: every issue,
top-up, loss, damage, replacement or revocation is one history entry, and a
card's state on a given day is what its entries up to that day say. Entries
are never rewritten or dropped, only added; adding the same entry twice
changes nothing, so the CSV at start-up and the retained MQTT message on
every reconnect can be applied again and again.

Validity (service manual section J, our decisions in docs/doors.md):

    owner, family   2 years   } the day before the same date N months later;
    tenant          1 year    } when that date does not exist (31 January +1
    merchant        1 year    } month), valid to the end of that month.
    parking         1 month   } 9 June -> 8 July; 31 January -> 28/29 February.
    staff           no expiry

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
from typing import Iterable

from gateway.site.cardfile import ENDS, STARTS

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
        months = self.months.get(holder_type or "")
        return None if months is None else valid_until(issued, months)


# --------------------------------------------------------------------------- entries


def _identity(e: dict) -> tuple:
    return tuple(e.get(k) for k in ("card", "event", "date", "holder_type", "valid_until",
                                     "replaces", "holder_ref", "note"))


# --------------------------------------------------------------------------- registry

@dataclass(frozen=True)
class CardState:
    known: bool
    status: str               # valid | expired | not_yet_valid | lost | damaged | replaced |
                              # revoked | no_holder_type | unknown
    holder_type: str | None
    issued: date | None
    valid_until: date | None  # None: no expiry (staff) or unknown card

    @property
    def valid(self) -> bool:
        return self.status == "valid"


UNKNOWN = CardState(False, "unknown", None, None, None)


class CardRegistry:
    """History entries in a StateStore table ("cards"), folded on demand."""

    TABLE = "cards"

    def __init__(self, store=None, rules: Rules | None = None) -> None:
        self.store = store
        self.rules = rules or Rules()
        self.entries: list[dict] = []
        self._seen: set[tuple] = set()
        self._by_card: dict[int, list[int]] = {}
        if store is not None:
            for e in store.get(self.TABLE, "entries", []) or []:
                self._add(e)

    def __len__(self) -> int:
        return len(self._by_card)

    @property
    def loaded(self) -> bool:
        return bool(self.entries)

    def _add(self, e: dict) -> bool:
        ident = _identity(e)
        if ident in self._seen:
            return False
        self._seen.add(ident)
        i = len(self.entries)
        self.entries.append(e)
        self._by_card.setdefault(e["card"], []).append(i)
        if e.get("replaces") is not None:
            self._by_card.setdefault(e["replaces"], []).append(i)
        return True

    def merge(self, entries: Iterable[dict], source: str) -> int:
        """Add entries not seen before; returns how many were new. Stored
        before it returns when the registry has a store."""
        added = 0
        for e in entries:
            e = {**e, "source": source}
            if self._add(e):
                added += 1
        if added and self.store is not None:
            self.store.put(self.TABLE, "entries", self.entries)
        return added

    def meta(self) -> dict:
        return (self.store.get(self.TABLE, "meta", {}) if self.store is not None else {}) or {}

    def set_meta(self, **kw) -> None:
        if self.store is not None:
            self.store.put(self.TABLE, "meta", {**self.meta(), **kw})

    def history(self, card: int) -> list[dict]:
        return [self.entries[i] for i in self._by_card.get(card, [])]

    def state(self, card: int, on: date) -> CardState:
        idx = self._by_card.get(card)
        if not idx:
            return UNKNOWN
        day = on.isoformat()
        touching = sorted(idx, key=lambda i: (self.entries[i]["date"], i))
        status = None
        holder = issued = until = None
        for i in touching:
            e = self.entries[i]
            if e["date"] > day:
                break
            if e["card"] == card:
                if e["event"] in STARTS:
                    holder = e.get("holder_type") or holder
                    issued = date.fromisoformat(e["date"])
                    if e.get("valid_until"):
                        until = date.fromisoformat(e["valid_until"])
                    elif e["event"] == "replacement":
                        # a replacement card carries on the old card's period
                        old = self.state(e["replaces"], issued)
                        holder = holder or old.holder_type
                        until = old.valid_until if old.known else self.rules.until(holder, issued)
                    else:
                        until = self.rules.until(holder, issued)
                    status = "active"
                else:
                    status = ENDS[e["event"]]
            elif e.get("replaces") == card and e["event"] == "replacement":
                # a lost card stays "lost" once replaced: used again, it
                # means someone found it, which "replaced" would hide
                status = "replaced" if status in (None, "active") else status
        if status is None:
            return CardState(True, "not_yet_valid", holder, issued, until)
        if status == "active" and holder is None:
            # a top-up or replacement for a card never issued here: no rule
            # says how long it lasts, and "forever" must not be the default
            status = "no_holder_type"
        if status == "active":
            status = "expired" if until is not None and on > until else "valid"
        return CardState(True, status, holder, issued, until)

    def expiring(self, today: date, days: int) -> list[tuple[int, CardState]]:
        """Cards valid today whose last valid day is within ``days`` days."""
        limit = today + timedelta(days=days)
        out = []
        for card in self._by_card:
            st = self.state(card, today)
            if st.valid and st.valid_until is not None and st.valid_until <= limit:
                out.append((card, st))
        out.sort(key=lambda cs: (cs[1].valid_until, cs[0]))
        return out


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
