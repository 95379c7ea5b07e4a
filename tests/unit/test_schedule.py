"""poll/schedule.py: the earliest deadline first, changes honoured, stale entries skipped; site/looplag.py."""
from __future__ import annotations

import random

from gateway.poll.runtime import DeviceRuntime
from gateway.poll.schedule import Schedule
from gateway.site.config import DeviceCfg


def _dev(name: str, due: float = 0.0) -> DeviceRuntime:
    cfg = DeviceCfg(name=name, bus="b", unit=1, model="m", poll_interval_s=1.0, enabled=True, params={})
    return DeviceRuntime(cfg=cfg, model=None, reads=[], next_due=due)  # type: ignore[arg-type]


def test_earliest_first_and_nothing_before_its_time():
    a, b, c = _dev("a", 3.0), _dev("b", 1.0), _dev("c", 2.0)
    s = Schedule([a, b, c])
    assert s.peek() is b
    assert s.pop_due(0.5) is None
    assert [s.pop_due(10.0) for _ in range(3)] == [b, c, a]
    assert s.pop_due(10.0) is None and s.peek() is None and len(s) == 0


def test_a_changed_deadline_replaces_the_old_one():
    a, b = _dev("a", 5.0), _dev("b", 6.0)
    s = Schedule([a, b])
    s.set(b, 0.0)              # repoll: due now
    assert s.pop_due(1.0) is b
    assert s.pop_due(1.0) is None
    s.set(a, 9.0)              # pushed back: the old entry at 5.0 must not fire
    assert s.pop_due(6.0) is None
    assert s.pop_due(9.0) is a


def test_matches_a_full_scan_under_random_changes():
    rng = random.Random(7)
    devs = [_dev(f"d{i}", rng.uniform(0, 10)) for i in range(50)]
    s = Schedule(devs)
    out = {d.name: d for d in devs}   # on the schedule
    now = 0.0
    for _ in range(5000):
        now += rng.uniform(0, 0.5)
        if rng.random() < 0.3:
            d = rng.choice(devs)
            s.set(d, now + rng.uniform(-1, 10))
            out[d.name] = d
        d = s.pop_due(now)
        due = [x for x in out.values() if x.next_due <= now]
        if d is None:
            assert due == []
        else:
            assert d.next_due == min(x.next_due for x in out.values())
            del out[d.name]
            s.set(d, now + rng.uniform(0.1, 5))
            out[d.name] = d
    assert len(s._heap) <= 4 * len(devs) + 64


# --------------------------------------------------------------------------- loop lag

def test_loop_lag_percentiles_and_the_diag_check():
    from gateway.field.diag import loop_item
    from gateway.field.tool_views import check_text
    from gateway.site.looplag import LoopLag
    lag = LoopLag(period_s=0.1, window_s=100.0)
    assert lag.summary()["p50"] is None and loop_item(lag.summary())["level"] == "pass"
    for i in range(1000):
        lag.add(0.0005)
    lag.add(0.250)                      # one stall of 250 ms
    s = lag.summary()
    assert s["p50"] == 0.5 and s["max"] == 250.0 and s["samples"] == 1000 and s["window_s"] == 100.0
    assert s["p999"] == 250.0 or s["p999"] == 0.5
    it = loop_item(s)
    assert it["check"] == "loop"
    assert it["level"] == ("warn" if s["p999"] > 10 else "pass")
    for _ in range(10):
        lag.add(2.0)
    assert loop_item(lag.summary())["level"] == "fail"
    assert "p99.9" in check_text(loop_item(lag.summary()), "en")
    assert "事件循环" in check_text(loop_item(lag.summary()), "zh")


def test_after_a_stall_devices_keep_their_phase_instead_of_bunching():
    from gateway.poll.schedule import next_due
    devs = [_dev(f"d{i}", 100.0 + i / 10) for i in range(10)]   # spread over one second
    stall_end = 107.35                                           # the loop was held for 7 s
    due = [next_due(d, stall_end, 60.0) for d in devs]
    assert all(t > stall_end for t in due)
    assert len({round(t % 1.0, 6) for t in due}) == 10          # still ten different phases
    assert max(due) - min(due) <= 1.0 and max(due) - stall_end <= 1.0
    on_time = _dev("x", 50.0)
    assert next_due(on_time, 50.2, 60.0) == 51.0                  # no stall: fixed rate
