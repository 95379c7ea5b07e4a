"""The card registry on disk: history entries in SQLite (cards.db in the
state folder, mode 0600), indexed by card, so that a card's state is folded
from its own entries when an event needs it and nothing is loaded at start.
Memory does not grow with the registry; only the disk does, up to
MAX_FILE_ENTRIES entries.

Two connections: the reader, for the event loop (a card's state, a few
indexed rows), and the writer, for the worker thread that applies updates.
SQLite's WAL lets the reader go on with the registry as it was while an
update is being written; the update becomes visible whole at its commit,
which is the "swap": a refused update is rolled back and was never seen.

Entries are identified by their content (a hash of card, event, day, holder
type, validity, replaced card, holder reference and note): an entry added
twice is stored once, so the same CSV or retained message applies again
and again without change.

Erasure (docs/doors.md 5): a holder reference deleted at the source turns
the holder's cards into pseudonyms ("p:" + the card's pseudonym) and drops
the reference and the notes, keeping events and dates; the erasure itself is
kept as keyed hashes so that the same rows sent again are erased as they
arrive. secure_delete and a WAL checkpoint make sure the old text does not
linger in free pages or in the log.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import sqlite3
import threading
from datetime import date
from pathlib import Path
from typing import Callable, Iterable

from gateway.site.cardfile import (
    ERASE,
    MAX_FILE_ENTRIES,
    PARKING,
    Problems,
    RegistryError,
    check_entry,
    checked_rows,
)

from .cards import UNKNOWN, CardState, Fold, Rules

REGISTRY_FILE = "cards.db"
MAX_CHAIN = 8          # replacements followed back from a card (a loop in the data must not hang)
COLUMNS = ("seq", "card", "event", "date", "holder_type", "valid_until", "replaces", "holder_ref", "note", "source")

SCHEMA = """
CREATE TABLE IF NOT EXISTS entry (
  seq INTEGER PRIMARY KEY, ident BLOB NOT NULL UNIQUE,
  card TEXT NOT NULL, event TEXT NOT NULL, date TEXT NOT NULL, holder_type TEXT, valid_until TEXT,
  replaces TEXT, holder_ref TEXT, note TEXT, source TEXT, ref_key TEXT);
CREATE INDEX IF NOT EXISTS entry_card ON entry(card);
CREATE INDEX IF NOT EXISTS entry_replaces ON entry(replaces) WHERE replaces IS NOT NULL;
CREATE INDEX IF NOT EXISTS entry_ref ON entry(ref_key) WHERE ref_key IS NOT NULL;
CREATE TABLE IF NOT EXISTS erasure (ref_key TEXT NOT NULL, card TEXT NOT NULL, upto TEXT NOT NULL,
  PRIMARY KEY (ref_key, card, upto));
CREATE TABLE IF NOT EXISTS erased_card (card TEXT PRIMARY KEY, upto TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def _ident(card, event, day, holder_type, valid_until, replaces, holder_ref, note) -> bytes:
    parts = (card, event, day, holder_type, valid_until, replaces, holder_ref, note)
    return hashlib.sha256("\x1f".join("\x00" if p is None else str(p) for p in parts).encode()).digest()[:16]


def _connect(path: Path) -> sqlite3.Connection:
    # check_same_thread off: each connection is used by one thread at a
    # time under its own lock, but tests drive both from one thread
    db = sqlite3.connect(path, isolation_level=None, timeout=10.0, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA secure_delete=ON")
    return db


class CardRegistry:
    def __init__(self, path: Path, rules: Rules | None = None,
                 pseudonym: Callable[[int | None], str | None] | None = None) -> None:
        self.path = Path(path)
        self.rules = rules or Rules()
        self.pseudonym = pseudonym or (lambda c: None)
        self._key = getattr(pseudonym, "key", b"")
        if not self.path.exists():
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        os.chmod(self.path, 0o600)
        self._w = _connect(self.path)
        self._w.executescript(SCHEMA)
        self._r = _connect(self.path)
        self._wlock = threading.Lock()
        self._erasures = True
        self._rlock = threading.Lock()
        self.loaded = False
        self.refresh()

    def close(self) -> None:
        for db in (self._r, self._w):
            db.close()

    # ------------------------------------------------------------------ keys

    def _p(self, number: str) -> str:
        return "p:" + (self.pseudonym(int(number)) or "")

    def _keys(self, key: str) -> tuple[str, ...]:
        """A card's keys: its number and its pseudonym (its entries from
        before an erasure); a pseudonym alone when that is all there is."""
        return (key,) if key.startswith("p:") else (key, self._p(key))

    def _ref_key(self, ref: str) -> str:
        return hmac.new(self._key or b"-", b"ref:" + ref.encode(), hashlib.sha256).hexdigest()[:16]

    # ------------------------------------------------------------------ reading (event loop)

    def refresh(self) -> None:
        """After a commit: whether the site has a registry at all."""
        with self._rlock:
            self.loaded = self._r.execute("SELECT EXISTS (SELECT 1 FROM entry)").fetchone()[0] == 1

    def _rows(self, db: sqlite3.Connection, keys: tuple[str, ...]) -> list[dict]:
        marks = ",".join("?" * len(keys))
        q = (f"SELECT {', '.join(COLUMNS)} FROM entry WHERE card IN ({marks}) UNION "
             f"SELECT {', '.join(COLUMNS)} FROM entry WHERE replaces IN ({marks}) ORDER BY date, seq")
        return [dict(zip(COLUMNS, r)) for r in db.execute(q, (*keys, *keys))]

    def _fold(self, db, key: str, seen: frozenset = frozenset()) -> tuple[Fold, list[dict]]:
        keys = self._keys(key)
        seen = seen | set(keys)

        def old_state(old: str, day: date) -> CardState:
            if old in seen or len(seen) > 2 * MAX_CHAIN:
                return UNKNOWN
            return self._state(db, old, day, seen)
        return Fold(self.rules, keys, old_state), self._rows(db, keys)

    def _state(self, db, key: str, on: date, seen: frozenset = frozenset()) -> CardState:
        fold, rows = self._fold(db, key, seen)
        if not rows:
            return UNKNOWN
        day = on.isoformat()
        for e in rows:
            if e["date"] > day:
                break
            fold.apply(e)
        return fold.result(on)

    def state(self, card: int, on: date) -> CardState:
        with self._rlock:
            return self._state(self._r, str(int(card)), on)

    def history(self, card: int) -> list[dict]:
        with self._rlock:
            return self._rows(self._r, self._keys(str(int(card))))

    def meta(self) -> dict:
        with self._rlock:
            return dict(self._r.execute("SELECT key, value FROM meta"))

    # ------------------------------------------------------------------ writing (worker thread)

    def set_meta(self, **kw) -> None:
        with self._wlock:
            self._w.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [(k, str(v)) for k, v in kw.items()])

    def expiring(self, today: date, days: int) -> list[tuple[int, CardState]]:
        """Cards valid today whose last valid day, or whose parking
        entitlement's, is within ``days`` days (a full pass over the
        registry: for the worker thread, once a day). Erased cards are left
        out: their holder is gone from the source."""
        first, limit = today.toordinal(), today.toordinal() + days

        def soon(d: date | None) -> bool:
            return d is not None and first <= d.toordinal() <= limit
        out = []
        with self._wlock:
            for (key,) in self._w.execute("SELECT DISTINCT card FROM entry WHERE card NOT LIKE 'p:%'"):
                st = self._state(self._w, key, today)
                if st.valid and (soon(st.valid_until) or soon(st.parking_until)):
                    out.append((int(key), st))
        out.sort(key=lambda cs: (min(d for d in (cs[1].valid_until, cs[1].parking_until) if soon(d)), cs[0]))
        return out

    def ingest(self, rows: Iterable[tuple[str, dict]], source: str, *, limit: int = MAX_FILE_ENTRIES,
               checked: bool = True, meta: dict | None = None) -> tuple[int, int]:
        """Apply one load (a CSV, an MQTT message, a migrated file) in one
        transaction: every row checked, added when new, erasures applied,
        and (``checked``) the rules that depend on a card's history. Returns
        (entries, added); RegistryError, with nothing changed, on any problem."""
        with self._wlock:
            db = self._w
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute("CREATE TEMP TABLE IF NOT EXISTS fresh (seq INTEGER PRIMARY KEY, at TEXT)")
                db.execute("DELETE FROM fresh")
                # most sites never erase: then no row needs looking up
                self._erasures = db.execute("SELECT EXISTS (SELECT 1 FROM erasure)").fetchone()[0] == 1
                problems, counts = Problems(), [0, 0]
                try:
                    self._load_rows(rows, source, limit, problems, counts)
                except RegistryError as exc:   # the text itself is unreadable from some point on
                    for p in exc.problems:
                        problems.add(p)
                entries, erasures = counts
                erased = 0
                if not problems:
                    erased = self._erase_all()
                    if checked:
                        self._check_fresh(problems)
                    total = db.execute("SELECT COUNT(*) FROM entry").fetchone()[0]
                    if total > MAX_FILE_ENTRIES:
                        problems.add(f"the registry would hold {total} entries, above its limit of "
                                     f"{MAX_FILE_ENTRIES}")
                if problems:
                    raise RegistryError(problems.lines())
                added = db.execute("SELECT COUNT(*) FROM fresh").fetchone()[0]
                if meta:
                    db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                                   [(k, str(v)) for k, v in meta.items()])
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            if erased or erasures:
                # the erased text must not linger in the write-ahead log
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return entries, added

    def _load_rows(self, rows, source: str, limit: int, problems: Problems, counts: list[int]) -> None:
        def counted():
            for row in rows:
                counts[0] += 1
                yield row
        for where, e in checked_rows(counted(), limit, problems):
            if e["event"] == ERASE:
                counts[1] += self._record_erasure(e)
            else:
                seq = self._insert(e, source)
                if seq is not None:
                    self._w.execute("INSERT INTO fresh VALUES (?, ?)", (seq, where))

    def migrate(self, entries: Iterable[dict], meta: dict) -> tuple[int, int]:
        """Entries stored by an earlier version (cards.json), as they were:
        no rule of today refuses them. One that does not even pass the row
        checks is skipped and counted. Returns (added, skipped)."""
        added = skipped = 0
        with self._wlock:
            db = self._w
            db.execute("BEGIN IMMEDIATE")
            try:
                for old in entries:
                    e, found = check_entry({**old, "issued": old.get("date")}) if isinstance(old, dict) else (None, [1])
                    if e is None or e["event"] == ERASE:
                        skipped += 1
                        continue
                    added += self._insert(e, str(old.get("source") or "cards.json")) is not None
                db.executemany("INSERT OR IGNORE INTO meta VALUES (?, ?)", [(k, str(v)) for k, v in meta.items()])
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        self.refresh()
        return added, skipped

    def count_cards(self) -> int:
        with self._wlock:
            return self._w.execute("SELECT COUNT(DISTINCT card) FROM entry").fetchone()[0]

    def _insert(self, e: dict, source: str) -> int | None:
        db = self._w
        card, replaces = str(e["card"]), None if e["replaces"] is None else str(e["replaces"])
        ref, note = e["holder_ref"], e["note"]
        ref_key = self._ref_key(ref) if ref else None
        if self._erasures and self._erased(card, ref_key, e["date"]):
            card, ref, note, ref_key = self._p(card), None, None, None
        if self._erasures and replaces is not None and self._erased(replaces, None, e["date"]):
            replaces = self._p(replaces)
        ident = _ident(card, e["event"], e["date"], e["holder_type"], e["valid_until"], replaces, ref, note)
        cur = db.execute("INSERT OR IGNORE INTO entry (ident, card, event, date, holder_type, valid_until, "
                         "replaces, holder_ref, note, source, ref_key) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                         (ident, card, e["event"], e["date"], e["holder_type"], e["valid_until"], replaces,
                          ref, note, source, ref_key))
        return cur.lastrowid if cur.rowcount == 1 else None

    def _erased(self, card: str, ref_key: str | None, day: str) -> bool:
        db = self._w
        p = self._p(card)
        row = db.execute("SELECT 1 FROM erased_card WHERE card=? AND upto>=?", (p, day)).fetchone()
        if row is None and ref_key is not None:
            row = db.execute("SELECT 1 FROM erasure WHERE ref_key=? AND card IN ('', ?) AND upto>=?",
                             (ref_key, p, day)).fetchone()
        return row is not None

    def _record_erasure(self, e: dict) -> int:
        card = self._p(str(e["card"])) if e["card"] is not None else ""
        cur = self._w.execute("INSERT OR IGNORE INTO erasure VALUES (?, ?, ?)",
                              (self._ref_key(e["holder_ref"]), card, e["date"]))
        self._erasures = True
        return cur.rowcount

    def _erase_all(self) -> int:
        """Every recorded erasure, over what is stored now: the holder's
        cards (numbers) become pseudonyms up to the erasure day, with no
        reference and no note. Returns how many entries changed."""
        db = self._w
        changed = 0
        for ref_key, only, upto in db.execute("SELECT ref_key, card, upto FROM erasure").fetchall():
            cards = {c for (c,) in db.execute(
                "SELECT DISTINCT card FROM entry WHERE ref_key=? AND date<=? AND card NOT LIKE 'p:%'",
                (ref_key, upto)) if not only or self._p(c) == only}
            for number in cards:
                p = self._p(number)
                db.execute("INSERT INTO erased_card VALUES (?, ?) ON CONFLICT(card) DO UPDATE SET "
                           "upto=max(upto, excluded.upto)", (p, upto))
                changed += self._rewrite(number, p, upto)
        return changed

    def _rewrite(self, number: str, p: str, upto: str) -> int:
        db = self._w
        n = 0
        rows = db.execute(f"SELECT {', '.join(COLUMNS)} FROM entry WHERE (card=? OR replaces=?) AND date<=?",
                          (number, number, upto)).fetchall()
        for r in map(lambda r: dict(zip(COLUMNS, r)), rows):
            mine = r["card"] == number
            card = p if mine else r["card"]
            replaces = p if r["replaces"] == number else r["replaces"]
            ref, note = (None, None) if mine else (r["holder_ref"], r["note"])
            ident = _ident(card, r["event"], r["date"], r["holder_type"], r["valid_until"], replaces, ref, note)
            cur = db.execute("UPDATE OR IGNORE entry SET ident=?, card=?, replaces=?, holder_ref=?, note=?, "
                             "ref_key=CASE WHEN ? THEN NULL ELSE ref_key END WHERE seq=?",
                             (ident, card, replaces, ref, note, mine, r["seq"]))
            if cur.rowcount == 0:   # the erased form is stored already: this is a copy
                db.execute("DELETE FROM entry WHERE seq=?", (r["seq"],))
            n += 1
        return n

    def _check_fresh(self, problems: Problems) -> None:
        """The rules that need a card's history, for the entries this load
        added: a top-up keeps the holder type, a parking entitlement needs a
        card issued here, valid_until stays within what the holder type allows."""
        db = self._w
        # one card at a time, straight from a cursor: memory stays flat
        # however many cards the load touched
        for (key,) in db.execute("SELECT DISTINCT e.card FROM fresh f JOIN entry e ON e.seq=f.seq"):
            fold, rows = self._fold(db, key)
            for e in rows:
                got = db.execute("SELECT at FROM fresh WHERE seq=?", (e["seq"],)).fetchone() \
                    if e["card"] in fold.keys else None
                if got is not None:
                    where = got[0]
                    for p in self._rules_problems(fold, e):
                        problems.add(where + p)
                fold.apply(e)

    @staticmethod
    def _rules_problems(fold: Fold, e: dict) -> list[str]:
        out = []
        ev, ht = e["event"], e["holder_type"]
        if ev in ("top_up", "renewal") and ht and fold.holder and ht != fold.holder:
            hint = (f"for parking on this card use the event {PARKING}" if ht == PARKING
                    else "to change it, issue the card again (event issue)")
            out.append(f"holder_type: a {ev} does not change the holder type (the card is {fold.holder}); {hint}")
        if ev == "replacement" and ht:
            old = fold.old_state(e["replaces"], date.fromisoformat(e["date"]))
            if old.holder_type and ht != old.holder_type:
                out.append(f"holder_type: a replacement carries on the old card's holder type "
                           f"({old.holder_type}); to change it, issue the new card (event issue)")
        if ev == PARKING and fold.holder is None:
            out.append("event: parking on a card not issued here; issue it first "
                       "(holder_type parking for a parking-only card)")
        if e["valid_until"] and not out:
            allowed = fold.allowance(e)
            if allowed is not None and e["valid_until"] > allowed[3].isoformat():
                what, period, base, last = allowed
                out.append(f"valid_until: {e['valid_until']} is beyond what {what} allows "
                           f"({period} from {base.isoformat()}: to {last.isoformat()})")
        return out
