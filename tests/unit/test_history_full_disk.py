"""The fault history (history.jsonl) on a full disk.

Seen in the disk-full integration run: one warning per fault edge (148 in a
minute), into a journal that may sit on the same full disk; and a write cut
short by ENOSPC leaves half a line that the next append is glued to, so an
event written after the disk came back was lost too."""
from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from gateway.faults.interpret import FaultEvent
from gateway.field.history import History
from gateway.field.requests import Requests
from protocols.models import load_models

MODELS = load_models()


def _event(n: int, state: str = "raised") -> FaultEvent:
    m = MODELS["meihua-ic"]
    ts = f"2026-12-01T10:00:{n % 60:02d}.000Z"
    return FaultEvent(device=f"m{n}", model=m.id, code="ERR-1", state=state, fault=m.fault("ERR-1"),
                      ts=ts, since=ts)


def _requests(state_dir: Path) -> Requests:
    gw = SimpleNamespace(state_dir=state_dir, id="t", site="", language="en")
    cfg = SimpleNamespace(gateway=gw, buses=(), devices=())
    return Requests(SimpleNamespace(cfg=cfg, buses=[], runtimes={}, models={}))


def test_a_full_disk_is_one_warning_and_its_end_one_notice(tmp_path, caplog):
    req = _requests(tmp_path)
    blocked = tmp_path / "history.jsonl"
    blocked.mkdir()                         # every append fails, as on a full disk
    with caplog.at_level(logging.INFO, logger="gateway.field.requests"):
        for n in range(50):
            req.observe(None, None, [_event(n)])
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1, warnings
        assert "history.jsonl" in warnings[0]
        blocked.rmdir()                      # writable again
        req.observe(None, None, [_event(50)])
        req.observe(None, None, [_event(51)])
    notices = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert len(notices) == 1 and "50 fault events" in notices[0], notices
    assert [r["device"] for r in req.history.read()] == ["m50", "m51"]


class _Tmpfs:
    def __init__(self, where: Path, size: str) -> None:
        where.mkdir()
        self.dir = where
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                           capture_output=True, text=True)
        self.mounted = r.returncode == 0
        self.why = r.stderr.strip()

    def umount(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.dir)], check=False)


def test_a_write_cut_short_leaves_no_half_line(tmp_path):
    fs = _Tmpfs(tmp_path / "fs", "64k")
    if not fs.mounted:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {fs.why}")
    try:
        h = History(fs.dir / "history.jsonl")
        rec = {"ts": "2026-12-01T10:00:00.000Z", "device": "m", "code": "ERR-1", "state": "raised",
               "meaning": {"en": "x" * 700}}
        h.append([rec])
        # Fill the rest of the disk but for part of a page: the next append
        # of several records fits only in part, and write() returns short.
        filler = fs.dir / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError:
            pass
        finally:
            os.close(fd)
        with pytest.raises(OSError):
            for _ in range(20):
                h.append([rec] * 8)
        os.unlink(filler)
        h.append([{**rec, "device": "after"}])
        lines = (fs.dir / "history.jsonl").read_bytes().split(b"\n")
        assert lines[-1] == b""
        assert [r["device"] for r in h.read()][-1] == "after"
        assert len(h.read()) == len(lines) - 1, "a line was torn"
    finally:
        fs.umount()
