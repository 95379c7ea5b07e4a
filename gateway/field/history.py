"""The daemon's fault-event history for `edgegw faults`: JSON lines, bounded."""

import json
import os
from pathlib import Path

HISTORY_MAX_LINES = 5000



class History:
    """The daemon's fault-event history: JSON lines, bounded.

    The live file is rotated to `.1` at half the cap, so the two files hold
    at most HISTORY_MAX_LINES events and the SD card never fills with it.
    Appends are not fsynced: the outbox is the durable record; this is the
    engineer's view of what happened on site.
    """

    def __init__(self, path, max_lines: int = HISTORY_MAX_LINES) -> None:
        self.path = Path(path)
        self.old = self.path.with_name(self.path.name + ".1")
        self.rotate_at = max(1, max_lines // 2)
        self._lines: int | None = None

    def _count(self) -> int:
        try:
            with open(self.path, "rb") as f:
                return sum(1 for _ in f)
        except FileNotFoundError:
            return 0

    def append(self, records: list[dict]) -> None:
        if not records:
            return
        if self._lines is None:
            self._lines = self._count()
        if self._lines + len(records) > self.rotate_at:
            try:
                os.replace(self.path, self.old)
            except FileNotFoundError:
                pass
            self._lines = 0
        data = "".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in records)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(fd, data.encode())
        finally:
            os.close(fd)
        self._lines += len(records)

    def read(self, limit: int | None = None, devices: list[str] | None = None) -> list[dict]:
        """Oldest first; the last `limit` events of `devices` (all when empty)."""
        out: list[dict] = []
        for p in (self.old, self.path):
            try:
                with open(p, encoding="utf-8") as f:
                    for line in f:
                        try:
                            rec = json.loads(line)
                        except ValueError:
                            continue   # a line torn by a power cut
                        if isinstance(rec, dict) and (not devices or rec.get("device") in devices):
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
