"""The log reader against the simulated controller: wrap-around, overrun,
clears, replacement, a ring moving under the read, unreadable records, clock
skew, crashes between reading and storing, bounded polls, and the view."""
from __future__ import annotations

import json
import logging
import sqlite3

import pytest

from gateway.doors.poller import iso as _iso
from gateway.doors.poller import MAX_WINDOWS_PER_POLL
from gateway.doors.view import doorlog_view
from gateway.field.doorlog import render_doorlog
from protocols import doorlog

from .rig import T0, Rig


def ids(serial, epoch, indexes):
    return [f"{serial}/{epoch}/{i}" for i in indexes]


def resets(rig):
    return [(e["reason"], e["epoch"], e["first_index"]) for e in rig.events("log_reset")]


def gaps(rig):
    return [(e["epoch"], e["first_index"], e["last_index"], e["missing"], e["reason"])
            for e in rig.events("log_gap")]


def test_first_contact_reads_the_whole_retained_log(tmp_path):
    rig = Rig(tmp_path, capacity=50, prefill=80)          # wrapped before we ever looked
    rig.poll_until_caught_up()
    assert resets(rig) == [("first_contact", 1, 31)]
    assert gaps(rig) == []                                 # nothing was ours to lose yet
    assert rig.access_ids() == ids("DC000001", 1, range(31, 81))
    first = rig.events()[0]
    assert first["type"] == "log_reset" and first["previous"] is None and first["severity"] == "info"


def test_wraparound_with_the_gateway_keeping_up(tmp_path):
    rig = Rig(tmp_path, capacity=20)
    for _ in range(40):
        for _ in range(7):
            rig.dev.random_event()
        rig.poll()
        assert rig.poller.caught_up
    assert rig.dev.ring.newest == 280 and rig.dev.ring.oldest == 261   # wrapped 13 times
    assert rig.access_ids() == ids("DC000001", 1, range(1, 281))
    assert gaps(rig) == [] and resets(rig) == [("first_contact", 1, 1)]
    assert rig.cursor()["last_index"] == 280


def test_overrun_while_the_gateway_was_down(tmp_path):
    rig = Rig(tmp_path, capacity=50, prefill=10)
    rig.poll_until_caught_up()
    rig.drain()
    rig.outbox.close()                                     # gateway down
    for _ in range(120):
        rig.dev.random_event()                             # newest 130, oldest 81
    rig.start()
    rig.poll_until_caught_up()
    assert gaps(rig) == [(1, 11, 80, 70, "overrun")]
    gap = rig.events("log_gap")[0]
    assert gap["id"] == "DC000001/1/gap/11-80" and gap["severity"] == "major"
    assert rig.access_ids() == ids("DC000001", 1, [*range(1, 11), *range(81, 131)])
    # the gap is published before the first record after it
    order = [e.get("index", e.get("first_index")) for e in rig.events() if e["type"] != "log_reset"]
    assert order.index(11) == order.index(81) - 1
    assert rig.cursor()["gaps"] == 1


def test_overrun_by_exactly_the_cursor_record_is_no_gap(tmp_path):
    rig = Rig(tmp_path, capacity=10, prefill=10)
    rig.poll_until_caught_up()
    for _ in range(10):
        rig.dev.random_event()                             # holds 11..20: the next wanted is 11
    rig.poll_until_caught_up()
    assert gaps(rig) == []
    assert rig.access_ids() == ids("DC000001", 1, range(1, 21))


def test_log_cleared_index_went_backwards(tmp_path):
    rig = Rig(tmp_path, capacity=100, prefill=30)
    rig.poll_until_caught_up()
    rig.dev.clear_log()                                    # record 1 is the clear itself
    for _ in range(5):
        rig.dev.random_event()
    rig.poll_until_caught_up()
    assert resets(rig) == [("first_contact", 1, 1), ("index_backwards", 2, 1)]
    reset = rig.events("log_reset")[1]
    assert reset["previous"] == {"serial": "DC000001", "epoch": 1, "last_index": 30}
    assert reset["severity"] == "minor"
    assert rig.access_ids() == ids("DC000001", 1, range(1, 31)) + ids("DC000001", 2, range(1, 7))
    assert [e["event"] for e in rig.events("access")][30] == "log_cleared"


def test_log_cleared_and_refilled_past_the_cursor(tmp_path):
    rig = Rig(tmp_path, capacity=100, prefill=30)
    rig.poll_until_caught_up()
    rig.dev.clear_log()
    for _ in range(40):
        rig.dev.random_event()                             # newest 41 > 30: only the content tells
    rig.poll_until_caught_up()
    assert resets(rig)[-1] == ("fingerprint_mismatch", 2, 1)
    assert rig.access_ids() == ids("DC000001", 1, range(1, 31)) + ids("DC000001", 2, range(1, 42))
    assert len(set(rig.access_ids())) == len(rig.access_ids())


def test_cleared_and_refilled_beyond_the_cursor_record_is_reported_as_a_gap(tmp_path):
    # The cursor record is gone and the serial is the same: the reader cannot
    # tell a clear from an overrun, and says what it knows (docs/doors.md).
    rig = Rig(tmp_path, capacity=50, prefill=30)
    rig.poll_until_caught_up()
    rig.dev.clear_log()
    for _ in range(99):
        rig.dev.random_event()                             # holds 51..100
    rig.poll_until_caught_up()
    assert gaps(rig) == [(1, 31, 50, 20, "overrun")]
    assert rig.access_ids()[-1] == "DC000001/1/100"


def test_controller_replaced(tmp_path):
    rig = Rig(tmp_path, capacity=100, prefill=20)
    rig.poll_until_caught_up()
    rig.dev.replace_controller("DC000777")
    for _ in range(25):
        rig.dev.random_event()                             # numbering restarts at 1, past nothing
    rig.poll_until_caught_up()
    reset = rig.events("log_reset")[-1]
    assert (reset["reason"], reset["serial"], reset["epoch"]) == ("controller_replaced", "DC000777", 2)
    assert reset["previous"]["serial"] == "DC000001"
    assert rig.access_ids() == ids("DC000001", 1, range(1, 21)) + ids("DC000777", 2, range(1, 26))
    assert rig.cursor()["serial"] == "DC000777"


def test_replaced_by_a_controller_with_more_records_than_the_cursor(tmp_path):
    rig = Rig(tmp_path, capacity=100, prefill=5)
    rig.poll_until_caught_up()
    rig.dev.replace_controller("DC000778")
    for _ in range(60):
        rig.dev.random_event()
    rig.poll_until_caught_up()
    assert resets(rig)[-1] == ("controller_replaced", 2, 1)
    assert rig.access_ids()[5:] == ids("DC000778", 2, range(1, 61))


def test_ring_moves_under_the_read(tmp_path):
    rig = Rig(tmp_path, capacity=30, prefill=30)
    rig.poll_until_caught_up()
    burst = {"n": 0}

    def overrun_once(dev):
        if burst["n"] == 0:
            burst["n"] = 1
            for _ in range(45):
                dev.random_event()                         # the window asked for is gone meanwhile
    for _ in range(3):
        rig.dev.random_event()
    rig.bus.before_window = overrun_once
    rig.poll_until_caught_up()
    got = rig.access_ids()
    assert len(got) == len(set(got))
    assert gaps(rig) == [(1, 31, 48, 18, "overrun")]
    assert got == ids("DC000001", 1, [*range(1, 31), *range(49, 79)])


def test_clear_between_status_and_window(tmp_path):
    rig = Rig(tmp_path, capacity=100, prefill=20)
    rig.poll_until_caught_up()
    for _ in range(5):
        rig.dev.random_event()
    done = {}

    def clear_once(dev):
        if not done:
            done[1] = True
            dev.clear_log()
            for _ in range(2):
                dev.random_event()
    rig.bus.before_window = clear_once
    rig.poll_until_caught_up()
    assert resets(rig)[-1] == ("index_backwards", 2, 1)
    assert rig.access_ids() == ids("DC000001", 1, range(1, 21)) + ids("DC000001", 2, range(1, 4))


def test_unreadable_record_is_retried_then_given_up_as_a_one_record_gap(tmp_path, caplog):
    rig = Rig(tmp_path, capacity=100, prefill=10)
    lay = rig.dev.layout
    real = rig.dev.read

    def torn(function, address, count):
        regs = real(function, address, count)
        if isinstance(regs, list) and address == lay.slot_address:
            first, n = rig.dev.select
            if first <= 7 < first + n:
                k = (7 - first) * lay.slot_registers
                regs[k + 4] ^= 0x0100                     # card word flipped: the check fails
        return regs
    rig.dev.read = torn
    for attempt in range(2):
        rig.poll()
        assert rig.bus.finished[-1][1] == "record_check"
        assert rig.cursor()["last_index"] == 6             # 1..6 are stored; 7 is retried
    rig.poll_until_caught_up()
    assert gaps(rig) == [(1, 7, 7, 1, "unreadable_record")]
    assert rig.access_ids() == ids("DC000001", 1, [*range(1, 7), *range(8, 11)])


def test_torn_cursor_record_is_not_reported_as_lost(tmp_path):
    rig = Rig(tmp_path, capacity=100, prefill=10)
    rig.poll_until_caught_up()
    for _ in range(3):
        rig.dev.random_event()
    lay = rig.dev.layout
    real = rig.dev.read

    def torn(function, address, count):
        regs = real(function, address, count)
        if isinstance(regs, list) and address == lay.slot_address and rig.dev.select[0] == 10:
            regs[4] ^= 0x0100                              # the cursor record (10) fails its check
        return regs
    rig.dev.read = torn
    for _ in range(4):
        rig.poll()
    assert gaps(rig) == [] and resets(rig) == [("first_contact", 1, 1)]
    assert rig.access_ids() == ids("DC000001", 1, range(1, 14))


def test_clock_skew_is_flagged_and_kept_for_diag(tmp_path, caplog):
    rig = Rig(tmp_path, capacity=100, doors={"clock_skew_warn_s": 300})
    rig.dev.clock_offset_s = 120
    rig.dev.random_event()
    rig.poll()
    assert rig.poller.clock_skew_s == 120
    assert "clock_skew_s" not in rig.events("access")[-1]
    rig.dev.clock_offset_s = -900
    rig.dev.add("access_granted", 1, 3000000017)
    with caplog.at_level(logging.WARNING, "gateway.doors"):
        rig.poll()
    assert rig.poller.clock_skew_s == -900
    ev = rig.events("access")[-1]
    assert ev["clock_skew_s"] == -900
    # the controller's clock is 900 s behind: its time plus 900 s is the gateway's
    assert ev["device_ts"] == _iso(T0 - 900) and ev["device_ts_corrected"] == _iso(T0)
    assert "-900 s" in caplog.text
    assert rig.rt.last_values["clock_skew_s"] == -900


@pytest.mark.parametrize("crash_at", [1, 2, 3, 5])
def test_crash_between_reading_and_storing_neither_skips_nor_repeats(tmp_path, crash_at):
    rig = Rig(tmp_path, capacity=200, prefill=60)
    real_put = rig.outbox.put
    calls = {"n": 0}

    def dying_put(msgs, kv=None):
        calls["n"] += 1
        if calls["n"] == crash_at:
            raise KeyboardInterrupt("power cut")           # not caught by the reader
        return real_put(msgs, kv)
    rig.outbox.put = dying_put
    with pytest.raises(KeyboardInterrupt):
        rig.poll_until_caught_up()
    rig.outbox.put = real_put
    rig.drain()
    rig.restart()
    for _ in range(5):
        rig.dev.random_event()
    rig.poll_until_caught_up()
    got = rig.access_ids()
    assert got == ids("DC000001", 1, range(1, 66))
    assert [r[0] for r in resets(rig)] == ["first_contact"]


def test_a_poll_reads_a_bounded_number_of_windows(tmp_path):
    rig = Rig(tmp_path, capacity=1000, prefill=400)
    rig.poll()
    slots = rig.dev.layout.slots_per_read
    assert rig.bus.windows == MAX_WINDOWS_PER_POLL
    assert rig.cursor()["last_index"] == MAX_WINDOWS_PER_POLL * slots
    assert not rig.poller.caught_up
    rig.poll_until_caught_up()
    assert rig.access_ids() == ids("DC000001", 1, range(1, 401))


def test_nothing_new_costs_one_read(tmp_path):
    rig = Rig(tmp_path, capacity=100, prefill=3)
    rig.poll_until_caught_up()
    before = (rig.dev.requests, rig.dev.selects)
    rig.poll()
    assert (rig.dev.requests - before[0], rig.dev.selects - before[1]) == (1, 0)


def test_a_failed_read_commits_nothing_and_loses_nothing(tmp_path):
    rig = Rig(tmp_path, capacity=100, prefill=20)
    rig.poll()
    rig.bus.fail_next = "timeout"
    rig.poll()
    assert rig.bus.finished[-1][1] == "timeout"
    for _ in range(4):
        rig.dev.random_event()
    rig.poll_until_caught_up()
    assert rig.access_ids() == ids("DC000001", 1, range(1, 25))


def test_retained_state_values_and_finish(tmp_path):
    rig = Rig(tmp_path, capacity=100, prefill=4)
    rig.poll()
    results, reason = rig.bus.finished[-1]
    assert reason is None and results[0][0].count == rig.dev.layout.status_count
    v = rig.rt.last_values
    assert (v["log_epoch"], v["log_cursor_index"], v["log_caught_up"]) == (1, 4, True)
    assert v["last_event"]["id"] == "DC000001/1/4"
    assert set(v["last_event"]) >= {"event", "door", "card", "device_ts"}


def test_history_is_bounded_by_history_days(tmp_path):
    rig = Rig(tmp_path, capacity=100, prefill=5, doors={"history_days": 1})
    rig.poll()
    db = sqlite3.connect(tmp_path / "doors.db")
    assert db.execute("SELECT count(*) FROM event").fetchone()[0] == 6   # reset + 5
    rig.clock.t += 2 * 86400
    rig.dev.random_event()
    rig.site.history._pruned = 0.0
    rig.poll()
    assert db.execute("SELECT count(*) FROM event").fetchone()[0] == 1


def test_doorlog_view_live_and_from_the_state_folder(tmp_path):
    rig = Rig(tmp_path, capacity=30, prefill=10)
    rig.poll_until_caught_up()
    rig.outbox.close()
    for _ in range(40):
        rig.dev.random_event()
    rig.start()
    rig.poll_until_caught_up()
    live = rig.site.view("door-1")
    json.dumps(live)                                       # the control socket sends it as is
    assert live["source"] == "daemon" and live["epoch"] == 1 and live["serial"] == "DC000001"
    assert live["cursor"]["last_index"] == 50
    assert live["controller_status"]["unread"] == 0
    assert live["gaps"][0]["first_index"] == 11 and live["gaps"][0]["last_index"] == 20
    assert [e["index"] for e in live["events"]][:3] == [50, 49, 48]
    daemon_like = type("D", (), {"doors": rig.site, "runtimes": {}})()
    assert doorlog_view(daemon_like, "door-1")["cursor"] == live["cursor"]
    text = render_doorlog(live)
    assert "records 11..20 (10 lost, overrun)" in text and "epoch 1" in text
    offline = doorlog_view(tmp_path, "door-1")
    assert offline["source"] == "state"
    assert offline["cursor"] == live["cursor"] and offline["gaps"] == live["gaps"]
    assert offline["events"] == live["events"]
    assert "from the state folder" in render_doorlog(offline)
    with pytest.raises(KeyError):
        doorlog_view(tmp_path, "fm-01")
    with pytest.raises(KeyError):
        rig.site.view("fm-01")


def test_no_raw_card_number_in_outbox_history_or_log(tmp_path, caplog):
    card = 3123456789
    rig = Rig(tmp_path, capacity=100)
    with caplog.at_level(logging.DEBUG):
        rig.dev.add("access_granted", 1, card)
        rig.dev.add("refused_expired_card", 2, card)
        rig.poll()
        rig.outbox.close()
        rig.site.history.close()
    for f in tmp_path.iterdir():
        if f.name.startswith(("outbox.db", "doors.db")):
            assert str(card).encode() not in f.read_bytes(), f
    assert str(card) not in caplog.text
    rig.start()
    assert all(str(card) not in str(e) for e in rig.events())


def test_raw_card_numbers_when_the_site_turns_them_on(tmp_path):
    rig = Rig(tmp_path, capacity=100, doors={"publish_raw_card_numbers": True})
    rig.dev.add("access_granted", 1, 3123456789)
    rig.poll()
    ev = rig.events("access")[-1]
    assert ev["card_number"] == "3123456789" and len(ev["card"]) == 16


def test_cursor_rules_table():
    st = lambda oldest, newest, serial="S": doorlog.Status(serial, "1", 5001, 1, 100, oldest, newest, 0)  # noqa: E731
    C = doorlog.Cursor
    assert doorlog.begin(None, st(0, 0)).reset == "first_contact"
    assert doorlog.begin(None, st(0, 0)).cursor.last_index == 0
    assert doorlog.begin(C("S", 1, 5, "f"), st(1, 5)) == doorlog.Start(C("S", 1, 5, "f"), verify=True)
    assert doorlog.begin(C("S", 1, 5, None), st(1, 9)).verify is False
    assert doorlog.begin(C("S", 1, 5, "f"), st(0, 0)).reset == "index_backwards"
    assert doorlog.begin(C("S", 1, 0, None), st(0, 0)) == doorlog.Start(C("S", 1, 0, None))
    assert doorlog.begin(C("S", 1, 5, "f"), st(1, 4)).reset == "index_backwards"
    assert doorlog.begin(C("S", 1, 5, "f"), st(1, 9, "T")).reset == "controller_replaced"
    s = doorlog.begin(C("S", 3, 5, "f"), st(20, 40))
    assert (s.gap, s.cursor, s.reset) == ((6, 19), C("S", 3, 19, None), None)
    s = doorlog.new_epoch(C("S", 3, 5, "f"), st(20, 40), "fingerprint_mismatch")
    assert s.cursor == C("S", 4, 19, None) and s.previous.epoch == 3
    assert doorlog.window(C("S", 1, 5, "f"), st(1, 5), True, 13) == (6, 0)
    assert doorlog.window(C("S", 1, 5, "f"), st(1, 30), True, 13) == (5, 13)
    assert doorlog.window(C("S", 1, 5, "f"), st(1, 8), False, 13) == (6, 3)
