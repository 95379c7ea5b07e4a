"""The outbox's SQLite file: schema, opening it (a damaged file is moved aside,
never deleted, and a fresh one started without reusing a seq), the seq floor
kept outside the database, and what a failed write says about the disk."""
from __future__ import annotations

import os
import sqlite3
import struct
import time

from gateway.site.state import quarantine_path, utc_stamp

SCHEMA_VERSION = 1
# What stats()["health"] can say (docs/mqtt.md, status): ok, what a failed
# write said about the disk (health_of), or a store kept in RAM (Store.in_ram).
HEALTHS = ("ok", "disk_full", "read_only", "io_error", "corrupt", "ram_only")
PAGE_SIZE = 1024  # fewer bytes per commit: measured 2.3x less written per message than 4096 (bench/outbox.py)

_DDL = """
CREATE TABLE IF NOT EXISTS msg (
    id INTEGER PRIMARY KEY,   -- from counters.last_id: never reused, so a late ack cannot hit a newer row
    prio INTEGER NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    stamp REAL NOT NULL,
    size INTEGER NOT NULL,
    seq INTEGER
);
CREATE INDEX IF NOT EXISTS msg_prio ON msg(prio, id);
CREATE INDEX IF NOT EXISTS msg_state_unsent ON msg(topic) WHERE prio = 1 AND seq IS NULL;
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- room kept free for sending on a full disk (outbox_space.py), not a message
CREATE TABLE IF NOT EXISTS spare (id INTEGER PRIMARY KEY, pad BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS counters (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq_next INTEGER NOT NULL,
    last_id INTEGER NOT NULL,
    clock REAL NOT NULL,
    bytes INTEGER NOT NULL,
    n_event INTEGER NOT NULL, n_state INTEGER NOT NULL, n_telemetry INTEGER NOT NULL,
    dropped_event INTEGER NOT NULL, dropped_state INTEGER NOT NULL, dropped_telemetry INTEGER NOT NULL,
    coalesced INTEGER NOT NULL
);
"""


_SPARE_DDL = next(s for s in _DDL.split(";") if "TABLE IF NOT EXISTS spare" in s)


class _Corrupt(Exception):
    pass


class SeqFloor:
    """``<store>.seq``: a lower bound for the next seq, outside the database.

    Written only when a seq is handed to a memory-held event (the database
    cannot be written then), at open and at close. The file is preallocated
    and the record overwritten in place with pwrite + fdatasync, which needs
    no new blocks, so it usually still works on a full disk (not on a
    read-only one). The value is stored twice (plain and xor-ed) so a torn
    write is detected rather than trusted."""

    _MAGIC = 0x5EC0_F100_D5EC_0F10
    _SIZE = 4096

    def __init__(self, path: str):
        self.path = path
        self.fd: int | None = None
        self.valid = True  # False: the file exists but its record is damaged

    def read(self) -> int:
        try:
            with open(self.path, "rb") as f:
                raw = f.read(16)
        except FileNotFoundError:
            return 0
        except OSError:
            self.valid = False
            return 0
        if len(raw) < 16:
            self.valid = False
            return 0
        a, b = struct.unpack("<QQ", raw)
        if a ^ self._MAGIC != b:
            self.valid = False
            return 0
        return a

    def open(self, value: int) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            return
        self.fd = fd
        try:
            if os.fstat(fd).st_size < self._SIZE:
                os.pwrite(fd, bytes(self._SIZE), 0)
            self.write(value)
        except OSError:
            pass

    def write(self, value: int) -> bool:
        if self.fd is None:
            return False
        try:
            os.pwrite(self.fd, struct.pack("<QQ", value, value ^ self._MAGIC), 0)
            os.fdatasync(self.fd)
            return True
        except OSError:
            return False

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def rollback(db: sqlite3.Connection) -> None:
    """Undo the open transaction after a failed step. A rollback that fails
    too (the disk went away) leaves SQLite to undo it at the next open: the
    caller re-raises what made the step fail, which says more."""
    if db.in_transaction:
        try:
            db.execute("ROLLBACK")
        except sqlite3.Error:
            pass


def health_of(exc: sqlite3.Error, directory: str) -> str | None:
    """Map a write failure to a health word, or None for a programming error."""
    if isinstance(exc, sqlite3.OperationalError):
        msg = str(exc).lower()
        if "full" in msg:
            return "disk_full"
        if "readonly" in msg or "read-only" in msg:
            return "read_only"
        # ENOSPC and EROFS in the middle of a WAL write surface as a bare
        # "disk I/O error"; the filesystem tells which one it was.
        try:
            st = os.statvfs(directory)
            if st.f_flag & os.ST_RDONLY:
                return "read_only"
            if st.f_bavail * st.f_frsize < 256 * 1024:
                return "disk_full"
        except OSError:
            pass
        return "io_error"
    if isinstance(exc, sqlite3.DatabaseError) and not isinstance(
        exc, (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.NotSupportedError)
    ):
        return "corrupt"  # damaged while running; the next open quarantines it
    return None

def _check_existing(path: str) -> None:
    """Judge an existing file without changing a byte of it (a read-only
    connection never checkpoints the WAL into a damaged file), so what is
    quarantined is exactly what was found."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except FileNotFoundError:
        return
    if not head:
        return  # created empty just before a crash: a valid empty store
    if head != b"SQLite format 3\x00":
        raise _Corrupt("not an SQLite file")
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    try:
        check = db.execute("PRAGMA quick_check").fetchall()
        if [r[0] for r in check] != ["ok"]:
            raise _Corrupt("quick_check: " + "; ".join(str(r[0]) for r in check[:3]))
        version = db.execute("PRAGMA user_version").fetchone()[0]
        tables = db.execute("SELECT count(*) FROM sqlite_master WHERE type='table'").fetchone()[0]
        if version == 0 and tables:
            raise _Corrupt("not an outbox store (foreign tables, no schema version)")
        if version > SCHEMA_VERSION:
            raise RuntimeError(f"{path}: schema version {version} is newer than this software")
    finally:
        db.close()


def _connect(path: str, synchronous: str) -> sqlite3.Connection:
    _check_existing(path)
    if not os.path.exists(path):
        # the outbox holds access events (card numbers): owner only
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    db = sqlite3.connect(path, isolation_level=None, timeout=5.0)
    try:
        # takes effect only while the file is still empty
        db.execute(f"PRAGMA page_size={PAGE_SIZE}")
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"cannot switch to WAL (journal_mode={mode})")
        db.execute(f"PRAGMA synchronous={synchronous}")
        db.execute("PRAGMA journal_size_limit=8388608")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            db.execute("BEGIN IMMEDIATE")
            # statement by statement: executescript() would commit first
            for stmt in _DDL.split(";"):
                if stmt.strip():
                    db.execute(stmt)
            db.execute("INSERT OR IGNORE INTO counters VALUES (1, 1, 0, 0.0, 0, 0, 0, 0, 0, 0, 0, 0)")
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            db.execute("COMMIT")
        elif not db.execute("SELECT 1 FROM sqlite_master WHERE name='spare'").fetchone():
            db.execute(_SPARE_DDL)  # a store made before the spare existed
    except BaseException:
        db.close()
        raise
    return db


def open_store(path: str, synchronous: str, floor: int) -> tuple[sqlite3.Connection, list[str], str]:
    """Open (creating) the store; a damaged file is moved aside and a fresh one
    started. Returns (connection, quarantined paths, why they were)."""
    try:
        return _connect(path, synchronous), [], ""
    except sqlite3.OperationalError:
        raise  # locked, unwritable, missing folder...: not the file's fault
    except (sqlite3.DatabaseError, _Corrupt) as exc:
        reason = f"{type(exc).__name__}: {exc}"
    salvaged = _salvage_seq(path)
    # the floor file is not moved: it is a seq bound, not data
    stamp = utc_stamp()
    quarantined: list[str] = []
    for suffix in ("", "-wal", "-shm"):
        moved = quarantine_path(path + suffix, stamp)
        if moved:
            quarantined.append(moved)
    db = _connect(path, synchronous)
    # Consumers drop duplicates by seq, so a fresh store must never reuse a
    # number the lost one had sent. What salvage and the floor file say may
    # be stale, so also jump to the wall clock in ms when it is plausible.
    start = max(salvaged or 0, floor, 1)
    if time.time() > 1.7e9:
        start = max(start, int(time.time() * 1000))
    db.execute("PRAGMA synchronous=FULL")
    db.execute("UPDATE counters SET seq_next=? WHERE id=1", (start,))
    db.execute(f"PRAGMA synchronous={synchronous}")
    return db, quarantined, reason


def _salvage_seq(path: str) -> int | None:
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1.0)
        try:
            a = db.execute("SELECT seq_next FROM counters").fetchone()[0] or 0
            b = db.execute("SELECT max(seq) FROM msg").fetchone()[0] or 0
            return max(int(a), int(b) + 1)
        finally:
            db.close()
    except (sqlite3.Error, TypeError, ValueError):
        return None
