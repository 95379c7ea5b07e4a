"""The door events this gateway published, kept locally for `edgegw doorlog`."""
from __future__ import annotations

import json
import logging
import os
import sqlite3
from pathlib import Path

log = logging.getLogger(__name__)

HISTORY_FILE = "doors.db"
HISTORY_PRUNE_S = 3600.0


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
        self._missed = 0      # events not written since the last success

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
            # Once per spell: on a full disk the journal may be on it too.
            if not self._missed:
                log.warning("door history not written (%s); the events themselves are in the outbox "
                            "(one line when it is written again)", exc)
            self._missed += len(rows)
            return
        if self._missed:
            log.info("door history written again; %d door events of the time before are not in it "
                     "(they went to the outbox and MQTT as usual)", self._missed)
            self._missed = 0

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
