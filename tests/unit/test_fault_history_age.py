"""The engineer's fault-event history (history.jsonl) is bounded by age as
well as by lines (issue 11): `[gateway] fault_history_days`, default 90."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

from gateway.field.history import HISTORY_MAX_DAYS, History
from gateway.field.requests import Requests
from gateway.site.config import check_config, load_config

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.000Z")


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t.timestamp()


def on_disk(tmp_path) -> list[dict]:
    return [json.loads(line) for p in tmp_path.glob("history.jsonl*") for line in p.open()]


def test_default_is_90_days():
    assert HISTORY_MAX_DAYS == 90


def test_history_is_bounded_by_age(tmp_path):
    clock = Clock()
    h = History(tmp_path / "history.jsonl", max_lines=5000, max_days=90, now=clock)
    for day in range(400):           # one fault event a day, far below the line bound
        clock.t = T0 + timedelta(days=day)
        h.append([{"ts": iso(clock.t), "device": "m1", "code": "X", "state": "raised"}])
        shown = h.read()
        oldest_shown = datetime.fromisoformat(shown[0]["ts"].replace("Z", "+00:00"))
        assert clock.t - oldest_shown <= timedelta(days=90)
        if day >= 90:
            assert len(shown) == 91            # today and the 90 days before: all of them
        # what is on disk is bounded too: no event older than twice the limit
        oldest_kept = min(datetime.fromisoformat(r["ts"].replace("Z", "+00:00")) for r in on_disk(tmp_path))
        assert clock.t - oldest_kept <= timedelta(days=180)
    assert len(on_disk(tmp_path)) <= 181


def test_nothing_shown_after_a_long_quiet_spell(tmp_path):
    clock = Clock()
    h = History(tmp_path / "history.jsonl", max_days=30, now=clock)
    h.append([{"ts": iso(T0), "device": "m1", "code": "X", "state": "raised"}])
    clock.t = T0 + timedelta(days=31)
    assert h.read() == []
    h.append([{"ts": iso(clock.t), "device": "m1", "code": "X", "state": "cleared"}])
    assert [r["state"] for r in h.read()] == ["cleared"]
    assert [r["state"] for r in on_disk(tmp_path)] == ["cleared"]


def test_records_without_a_readable_ts_are_kept_by_lines_only(tmp_path):
    clock = Clock()
    h = History(tmp_path / "history.jsonl", max_lines=10, max_days=1, now=clock)
    h.append([{"ts": "t0", "device": "m1"}, {"device": "m2"}])
    assert [r["device"] for r in h.read()] == ["m1", "m2"]


def config(tmp_path, extra: str = ""):
    p = tmp_path / "edgegw.toml"
    p.write_text(f'[gateway]\nid = "g1"\nstate_dir = "state"\n{extra}\n')
    return p


def test_config_key(tmp_path):
    assert load_config(config(tmp_path)).gateway.fault_history_days == 90
    cfg = load_config(config(tmp_path, "fault_history_days = 30"))
    assert cfg.gateway.fault_history_days == 30
    assert check_config(config(tmp_path, "fault_history_days = 0")) == [
        "gateway.fault_history_days: 0 is outside 1-3650"]
    # the daemon's history file takes it
    assert Requests(SimpleNamespace(cfg=cfg)).history.max_days == 30
