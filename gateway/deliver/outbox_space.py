"""Room to drain on a full disk (issue 12 #1).

On a full disk the outbox must still be able to send what it holds: assign
seqs (a write), delete acknowledged rows (a write), and let SQLite copy its
WAL into the database file (a checkpoint, which grows the file by every new
page the WAL holds). Each of those needs space at the very moment there is
none. Three things keep it:

* The spare: a row of SPARE_PAGES empty pages inside the database. Deleting
  it frees those pages without allocating anything, so a seq assignment or an
  ack delete that failed for want of a page can be retried. New messages are
  stored only while the spare is in place (they may never eat the drain's
  room); it is put back from freed pages once acknowledged rows are deleted.
* Tight mode: when the filesystem runs low (under `low` bytes free), the
  database is checkpointed and capped at its current size (`max_page_count`):
  it lives within its own pages, new messages go into pages freed by acks,
  and a checkpoint never needs a new block again. Checkpoints are made more
  often as free space shrinks, so what a checkpoint must still write out is
  at most an eighth of what was free.
* The ballast: `<store>.reserve`, a file of real blocks (`ballast` bytes, at
  most 1 MiB) released when even that is not enough (another program filled
  the disk at once), so the pending checkpoint and the spare's delete can go
  through. It is taken back once the disk has room again.

Everything here runs on the outbox's own thread, with its connection.
"""
from __future__ import annotations

import os
import sqlite3
import time

from .outbox_file import rollback

SPARE_PAGES = 64
BALLAST_MAX = 1024 * 1024
BALLAST_MIN = 64 * 1024
CHECK_EVERY_S = 0.5
CKPT_MAX_PAGES = 1000  # SQLite's default wal_autocheckpoint
CKPT_MIN_PAGES = 32


def is_full(exc: BaseException) -> bool:
    msg = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and ("full" in msg or "disk i/o" in msg)


class Space:
    def __init__(self, db_path: str, page_size: int) -> None:
        self.path = db_path + ".reserve"
        self.directory = os.path.dirname(db_path)
        self.page = page_size
        total = self._statvfs(total=True)
        self.ballast = min(BALLAST_MAX, max(BALLAST_MIN, (total or 0) // 8 // 4096 * 4096))
        self.low = max(BALLAST_MIN, self.ballast // 2)
        self.tight = False
        self.spare = False
        self._ceiling: int | None = None
        self._ckpt = CKPT_MAX_PAGES
        self._checked = float("-inf")
        self._unchecked = 0  # bytes that may still be written before the next look

    # -- the filesystem

    def _statvfs(self, total: bool = False) -> int | None:
        try:
            st = os.statvfs(self.directory)
        except OSError:
            return None
        return (st.f_blocks if total else st.f_bavail) * st.f_frsize

    def armed(self) -> bool:
        try:
            return os.path.getsize(self.path) >= self.ballast
        except OSError:
            return False

    def arm(self) -> bool:
        """Take the ballast's blocks (real ones: fallocate, not a sparse file)."""
        if self.armed():
            return True
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            return False
        try:
            os.posix_fallocate(fd, 0, self.ballast)
            os.fsync(fd)
            return True
        except OSError:
            try:
                os.ftruncate(fd, 0)  # a half-made ballast would only mislead armed()
            except OSError:
                pass
            return False
        finally:
            os.close(fd)

    def release(self) -> bool:
        """Give the ballast's blocks back to the filesystem; True if there was one."""
        try:
            if os.path.getsize(self.path) == 0:
                return False
            os.truncate(self.path, 0)
            return True
        except OSError:
            return False

    # -- the database

    def open(self, db: sqlite3.Connection) -> None:
        self.spare = db.execute("SELECT count(*) FROM spare").fetchone()[0] > 0
        self.check(db, force=True)
        if not self.tight:
            self.arm()
        self.ensure_spare(db)

    def _write(self, db: sqlite3.Connection, sql: str, *args) -> None:
        try:
            db.execute("BEGIN IMMEDIATE")
            db.execute(sql, args)
            db.execute("COMMIT")
        except BaseException:
            rollback(db)
            raise

    def ensure_spare(self, db: sqlite3.Connection) -> bool:
        """Put the spare back if it is not there (from free pages when tight)."""
        if self.spare:
            return True
        try:
            self._write(db, "INSERT INTO spare (id, pad) VALUES (1, zeroblob(?))", SPARE_PAGES * self.page)
        except sqlite3.Error as exc:
            if not is_full(exc):
                raise
            return False
        self.spare = True
        return True

    def give_spare(self, db: sqlite3.Connection) -> bool:
        """A drain step failed for want of space: free the spare's pages (and
        the ballast if even that delete cannot be written). True if anything
        was freed, so the step is worth one more try."""
        freed = False
        if self.spare:
            for _ in range(2):
                try:
                    self._write(db, "DELETE FROM spare")
                    self.spare, freed = False, True
                    break
                except sqlite3.Error as exc:
                    if not is_full(exc) or not self.release():
                        break
        if not freed:
            freed = self.release()
        if freed:
            self.checkpoint(db)
        return freed

    def checkpoint(self, db: sqlite3.Connection) -> bool:
        try:
            busy = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[0]
            return not busy
        except sqlite3.Error as exc:
            if not is_full(exc):
                raise
            return False

    def go_tight(self, db: sqlite3.Connection) -> None:
        """Stop growing: write the WAL out (with the ballast's blocks if need be)
        and cap the database at its size."""
        if not self.checkpoint(db) and self.release():
            self.checkpoint(db)
        if not self.tight:
            self._ceiling = db.execute("PRAGMA max_page_count").fetchone()[0]
            self.tight = True
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        db.execute(f"PRAGMA max_page_count={pages}")

    def check(self, db: sqlite3.Connection, force: bool = False, writing: int = 0) -> None:
        """Before storing `writing` bytes: look at the free space (every
        CHECK_EVERY_S, or sooner when that much was written since that half of
        what was above the floor is gone); go tight when it is low, leave
        tight mode when there is room again."""
        now = time.monotonic()
        self._unchecked -= writing * 2  # pages, indexes and the WAL: about twice the payload
        if not force and now - self._checked < CHECK_EVERY_S and self._unchecked > 0:
            return
        self._checked = now
        free = self._statvfs()
        if free is None:
            return
        self._unchecked = (free - self.low) // 2
        ckpt = max(CKPT_MIN_PAGES, min(CKPT_MAX_PAGES, free // 8 // self.page))
        if ckpt != self._ckpt:
            db.execute(f"PRAGMA wal_autocheckpoint={ckpt}")
            self._ckpt = ckpt
        if not self.tight:
            if free < self.low:
                self.go_tight(db)
            return
        if free >= 2 * self.low + (0 if self.armed() else self.ballast) and self.arm():
            current = db.execute("PRAGMA max_page_count").fetchone()[0]
            db.execute(f"PRAGMA max_page_count={max(current, self._ceiling or 0)}")
            self.tight = False

    def state(self) -> str:
        """For stats(): 'ok', or what of the reserve is spent."""
        if not self.tight and self.spare:
            return "ok"
        parts = ["tight"] if self.tight else []
        if not self.spare:
            parts.append("spare spent")
        if not self.armed():
            parts.append("ballast released")
        return ", ".join(parts)
