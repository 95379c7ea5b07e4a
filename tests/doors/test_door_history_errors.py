"""The local door-event history (doors.db) when it cannot be written (a full
or read-only disk): one warning per spell, not one per window of events read,
and one line when it is written again, with how many events it missed."""
from __future__ import annotations

import logging

from gateway.doors.history import History


def _bodies(n: int, start: int = 0) -> list[dict]:
    return [{"id": f"c1-{i}", "type": "access", "card": "123"} for i in range(start, start + n)]


def test_an_unwritable_history_warns_once_and_says_when_it_is_back(tmp_path, caplog):
    h = History(tmp_path / "doors.db")
    h.db.execute("PRAGMA query_only=1")     # every write refused, by SQLite itself
    with caplog.at_level(logging.INFO, logger="gateway.doors.history"):
        for k in range(10):
            h.add("c1", _bodies(3, 3 * k), now=1000.0 + k)
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1, warnings
        h.db.execute("PRAGMA query_only=0")
        h.add("c1", _bodies(2, 100), now=2000.0)
        h.add("c1", _bodies(2, 200), now=2001.0)
    notices = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert len(notices) == 1 and "30 door events" in notices[0], notices
    assert len(h.recent("c1", ("access",), 100)) == 4
    h.close()
