"""The daemon's fault-event history for `edgegw faults`: JSON lines, bounded
by lines and by age."""

import errno
import json
import os
import time
from datetime import datetime
from pathlib import Path

HISTORY_MAX_LINES = 5000
HISTORY_MAX_DAYS = 90          # [gateway] fault_history_days
TAIL_BYTES = 64 * 1024


def _stamp(rec: dict) -> float | None:
    """The record's ts as a POSIX time; None when it has none readable."""
    ts = rec.get("ts") if isinstance(rec, dict) else None
    if not isinstance(ts, str):
        return None
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _line_stamp(line: bytes) -> float | None:
    try:
        return _stamp(json.loads(line))
    except ValueError:
        return None


class History:
    """The daemon's fault-event history: JSON lines, bounded.

    By lines: the live file is rotated to `.1` at half the cap, so the two
    files hold at most `max_lines` events and the SD card never fills with it.
    By age (`max_days`): events older than that are never shown, and every
    younger one is (within the line bound). On disk the live file is rotated
    once its oldest event is older than the limit, and `.1` is deleted once
    its newest is, so no event stays on disk longer than twice `max_days`
    (checked at each write: files are rotated, never rewritten). Appends are not fsynced: the outbox is the
    durable record; this is the engineer's view of what happened on site.
    """

    def __init__(self, path, max_lines: int = HISTORY_MAX_LINES, max_days: float = HISTORY_MAX_DAYS,
                 now=time.time) -> None:
        self.path = Path(path)
        self.old = self.path.with_name(self.path.name + ".1")
        self.rotate_at = max(1, max_lines // 2)
        self.max_days = float(max_days)
        self.now = now
        self._lines: int | None = None
        self._first: float | None = None        # oldest event in the live file
        self._last: float | None = None         # newest event in the live file
        self._old_last: float | None = None     # newest event in .1

    def _scan(self) -> None:
        # once, at the first write: what the files already hold
        self._lines, self._first, self._last = 0, None, None
        try:
            with open(self.path, "rb") as f:
                for line in f:
                    self._lines += 1
                    s = _line_stamp(line)
                    if s is not None:
                        self._first = s if self._first is None else self._first
                        self._last = s
        except FileNotFoundError:
            pass
        self._old_last = self._tail_stamp(self.old)

    @staticmethod
    def _tail_stamp(path: Path) -> float | None:
        try:
            with open(path, "rb") as f:
                f.seek(max(0, os.fstat(f.fileno()).st_size - TAIL_BYTES))
                lines = f.read().splitlines()
        except FileNotFoundError:
            return None
        for line in reversed(lines):
            s = _line_stamp(line)
            if s is not None:
                return s
        return None

    def append(self, records: list[dict]) -> None:
        if not records:
            return
        if self._lines is None:
            self._scan()
        now = self.now()
        limit = self.max_days * 86400.0
        if self._old_last is not None and now - self._old_last > limit:
            try:
                os.unlink(self.old)
            except FileNotFoundError:
                pass
            self._old_last = None
        too_old = self._first is not None and now - self._first > limit
        if self._lines + len(records) > self.rotate_at or too_old:
            try:
                os.replace(self.path, self.old)
                self._old_last = self._last
            except FileNotFoundError:
                pass
            self._lines, self._first, self._last = 0, None, None
            if self._old_last is not None and now - self._old_last > limit:
                os.unlink(self.old)   # all of it too old already (a long quiet spell)
                self._old_last = None
        data = "".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in records)
        raw = data.encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            end = os.fstat(fd).st_size
            try:
                if os.write(fd, raw) != len(raw):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            except OSError:
                # A write cut short (a full disk) leaves half a line, and the
                # next append would be glued to it and lost with it.
                os.ftruncate(fd, end)
                raise
        finally:
            os.close(fd)
        self._lines += len(records)
        for r in records:
            s = _stamp(r)
            if s is not None:
                self._first = s if self._first is None else self._first
                self._last = s

    def read(self, limit: int | None = None, devices: list[str] | None = None) -> list[dict]:
        """Oldest first; the last `limit` events of `devices` (all when empty),
        none older than `max_days`."""
        horizon = self.now() - self.max_days * 86400.0
        out: list[dict] = []
        for p in (self.old, self.path):
            try:
                with open(p, encoding="utf-8") as f:
                    for line in f:
                        try:
                            rec = json.loads(line)
                        except ValueError:
                            continue   # a line torn by a power cut
                        if not isinstance(rec, dict) or (devices and rec.get("device") not in devices):
                            continue
                        s = _stamp(rec)
                        if s is None or s >= horizon:
                            out.append(rec)
            except FileNotFoundError:
                continue
        return out[-limit:] if limit else out


def history_record(ev) -> dict:
    f = ev.fault
    return {"ts": ev.ts, "device": ev.device, "model": ev.model, "code": ev.code, "state": ev.state,
            "severity": f.severity, "kind": f.kind, "ref": f.ref, "valve_closed": f.valve_closed,
            "site_visit": f.site_visit, "since": ev.since,
            "meaning": {"en": f.en.meaning, "zh": f.zh.meaning}}


HISTORY_NAME = "history.jsonl"
