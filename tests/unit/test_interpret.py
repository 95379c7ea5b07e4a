"""gateway/faults/interpret.py: triggers, debounce, edges, flapping, restarts, payload."""
from __future__ import annotations

import json

import pytest

from gateway.faults.interpret import FaultEvent, Interpreter
from gateway.faults.triggers import compile_trigger
from gateway.poll.decode import Reading
from protocols.models import Fault, Model, Text, load_models


def model(id: str, *faults: Fault) -> Model:
    return Model(id=id, name_en=id, name_zh=id, family="test", fields=(), faults=faults)


def fault(code, trigger, debounce=1, **kw) -> Fault:
    base = dict(severity="major", valve_closed=False, site_visit=True, kind="fault",
                cleared_by="fault_card", ref="X1",
                en=Text(f"{code} meaning", ("cause 1", "cause 2"), ("step 1",), "Fault card"),
                zh=Text(f"{code} 含义", ("原因1", "原因2"), ("步骤1",), "故障卡"))
    base.update(kw)
    return Fault(code=code, debounce=debounce, trigger=trigger, **base)


ERR1 = fault("ERR-1", {"field": "status_word", "bit": 0})
ERR3 = fault("ERR-3", {"field": "error_code", "equals": 3})
SLOW = fault("SLOW", {"field": "status_word", "bit": 1}, debounce=3)
FLOW = fault("FLOW-HIGH", {"rule": "above_max", "field": "flow_m3h", "param": "max_flow_m3h",
                           "default": 40.0})
STALE = fault("NO-RESPONSE", {"rule": "stale", "intervals": 3})
SELF = fault("SELF-COUNT", {"rule": "counting_while", "field": "volume_m3",
                            "when_field": "valve_state", "equals": 1})
MODEL = model("m", ERR1, ERR3, SLOW, FLOW, STALE, SELF)


class Feed:
    """Polls at 10 s intervals, like a daemon would."""

    def __init__(self, interp: Interpreter, step_s: float = 10.0):
        self.interp, self.t, self.step_s, self.n = interp, 0.0, step_s, 0

    def ok(self, **values) -> list[tuple[str, str]]:
        return self._feed(Reading(device="dev", ok=True, values=values,
                                  quality={k: "good" for k in values}, mono=self.t, ts=self._ts()))

    def fail(self) -> list[tuple[str, str]]:
        return self._feed(Reading(device="dev", ok=False, values={}, error="timeout",
                                  mono=self.t, ts=self._ts()))

    def _ts(self) -> str:
        return f"2026-01-01T00:00:{self.n:02d}Z"

    def _feed(self, reading):
        self.last = self.interp.step(reading)
        self.t += self.step_s
        self.n += 1
        return [(e.code, e.state) for e in self.last]


def make(m=MODEL, restored=None, **params) -> Interpreter:
    return Interpreter(m, "dev", {"poll_interval_s": 10, **params}, restored)


class TestTriggers:
    def test_bit(self):
        t = compile_trigger({"field": "s", "bit": 3}, {})
        assert t(Reading("d", True, {"s": 0b1000}), None, None, 0) is True
        assert t(Reading("d", True, {"s": 0b0111}), None, None, 0) is False

    def test_bit_of_a_bit_field(self):
        t = compile_trigger({"field": "s", "bit": 0}, {})
        assert t(Reading("d", True, {"s": True}), None, None, 0) is True

    def test_equals(self):
        t = compile_trigger({"field": "e", "equals": 3}, {})
        assert t(Reading("d", True, {"e": 3}), None, None, 0) is True
        assert t(Reading("d", True, {"e": 4}), None, None, 0) is False

    def test_missing_field_is_cannot_tell(self):
        for trig in ({"field": "s", "bit": 0}, {"field": "s", "equals": 1}):
            assert compile_trigger(trig, {})(Reading("d", False, {}), None, None, 0) is None

    def test_unknown_rule_refused_at_construction(self):
        with pytest.raises(ValueError):
            Interpreter(model("m", fault("X", {"rule": "nope"})), "d", {})

    def test_trigger_without_field_refused(self):
        with pytest.raises(ValueError):
            compile_trigger({"bit": 1}, {})


class TestEdges:
    def test_one_event_per_edge(self):
        f = Feed(make())
        assert f.ok(status_word=0) == []
        assert f.ok(status_word=1) == [("ERR-1", "raised")]
        assert f.ok(status_word=1) == []
        assert f.ok(status_word=1) == []
        assert f.ok(status_word=0) == [("ERR-1", "cleared")]
        assert f.ok(status_word=0) == []

    def test_event_fields(self):
        f = Feed(make())
        f.ok(status_word=0)
        f.ok(status_word=1)
        (e,) = f.last
        assert (e.device, e.model, e.code, e.state, e.fault) == ("dev", "m", "ERR-1", "raised", ERR1)
        assert e.ts == "2026-01-01T00:00:01Z" and e.since == e.ts
        assert e.detail == {"field": "status_word", "value": 1, "bit": 0}
        f.ok(status_word=0)
        (c,) = f.last
        assert c.since == "2026-01-01T00:00:01Z" and c.ts == "2026-01-01T00:00:02Z"

    def test_active(self):
        f = Feed(make())
        f.ok(status_word=1, error_code=3)
        act = f.interp.active()
        assert set(act) == {"ERR-1", "ERR-3"}
        assert act["ERR-3"]["since"] == "2026-01-01T00:00:00Z"
        assert act["ERR-3"]["flapping"] is False

    def test_rule_detail_carries_value_and_limit(self):
        f = Feed(make(max_flow_m3h=25.0))
        assert f.ok(flow_m3h=30.0) == [("FLOW-HIGH", "raised")]
        assert f.last[0].detail["limit"] == 25.0
        assert f.last[0].detail["flow_m3h"] == 30.0

    def test_bad_quality_field_changes_nothing(self):
        f = Feed(make())
        f.ok(status_word=1)
        assert f.ok(error_code=0) == []      # status_word failed to decode
        assert "ERR-1" in f.interp.active()
        assert f.ok(status_word=0) == [("ERR-1", "cleared")]


class TestDebounce:
    def test_raise_after_n_consecutive(self):
        f = Feed(make())
        assert f.ok(status_word=2) == []
        assert f.ok(status_word=2) == []
        assert f.ok(status_word=2) == [("SLOW", "raised")]

    def test_interrupted_run_starts_over(self):
        f = Feed(make())
        f.ok(status_word=2)
        f.ok(status_word=2)
        f.ok(status_word=0)
        assert f.ok(status_word=2) == []
        assert f.ok(status_word=2) == []
        assert f.ok(status_word=2) == [("SLOW", "raised")]

    def test_clear_after_n_consecutive(self):
        f = Feed(make())
        for _ in range(3):
            f.ok(status_word=2)
        assert f.ok(status_word=0) == []
        assert f.ok(status_word=0) == []
        assert f.ok(status_word=0) == [("SLOW", "cleared")]

    def test_cannot_tell_neither_advances_nor_resets(self):
        f = Feed(make())
        f.ok(status_word=2)
        f.ok(status_word=2)
        assert f.fail() == []
        assert f.ok(error_code=0) == []
        assert f.ok(status_word=2) == [("SLOW", "raised")]


class TestStaleAndUnavailable:
    def test_failed_polls_raise_stale_and_keep_faults(self):
        f = Feed(make())
        f.ok(status_word=1, error_code=3)
        f.interp.unavailable()
        out = []
        for _ in range(5):
            out += f.fail()
        assert out == [("NO-RESPONSE", "raised")]
        assert set(f.interp.active()) == {"ERR-1", "ERR-3", "NO-RESPONSE"}
        assert f.ok(status_word=1, error_code=3) == [("NO-RESPONSE", "cleared")]

    def test_stale_timing(self):
        # last good at t=0, 3 intervals of 10 s: silent for 30 s is fine, 40 s is not
        f = Feed(make())
        f.ok(status_word=0)
        assert f.fail() == [] and f.fail() == [] and f.fail() == []
        assert f.fail() == [("NO-RESPONSE", "raised")]
        assert f.last[0].detail["silent_s"] == 40.0

    def test_never_answered_goes_stale_from_first_poll(self):
        f = Feed(make())
        out = []
        for _ in range(5):
            out += f.fail()
        assert out == [("NO-RESPONSE", "raised")]

    def test_unavailable_changes_nothing(self):
        i = make()
        Feed(i).ok(status_word=1)
        before = i.snapshot()
        i.unavailable()
        assert i.snapshot() == before


class TestCountingWhile:
    def test_previous_good_value_survives_a_failed_poll(self):
        f = Feed(make())
        f.ok(volume_m3=10.0, valve_state=1)
        f.fail()
        assert f.ok(volume_m3=10.5, valve_state=1) == [("SELF-COUNT", "raised")]
        assert f.last[0].detail["previous"] == 10.0
        assert f.ok(volume_m3=10.5, valve_state=1) == [("SELF-COUNT", "cleared")]


def flap_interp(**kw):
    return make(flap_count=3, flap_window_s=100, flap_hold_s=50, **kw)


class TestFlapping:
    def test_silenced_after_k_cycles(self):
        f = Feed(flap_interp())
        events = []
        for _ in range(6):
            events += f.ok(status_word=1)
            events += f.ok(status_word=0)
        # three full cycles, the fourth raise, then silence
        assert events == [("ERR-1", "raised"), ("ERR-1", "cleared")] * 3 + [("ERR-1", "raised")]
        assert f.interp.active()["ERR-1"]["flapping"] is True

    def test_clears_once_after_a_stable_hold(self):
        f = Feed(flap_interp())
        for _ in range(4):
            f.ok(status_word=1)
            f.ok(status_word=0)      # 4th clear suppressed at t=70
        out = []
        for _ in range(4):           # t=80..110: False for 40 s < hold
            out += f.ok(status_word=0)
        assert out == []
        assert f.ok(status_word=0) == [("ERR-1", "cleared")]   # t=120: 50 s
        assert f.last[0].detail["flapping"] is True
        assert "ERR-1" not in f.interp.active()
        # back to normal behaviour
        assert f.ok(status_word=1) == [("ERR-1", "raised")]

    def test_true_during_hold_restarts_it(self):
        f = Feed(flap_interp())
        for _ in range(4):
            f.ok(status_word=1)
            f.ok(status_word=0)
        out = []
        for _ in range(3):
            out += f.ok(status_word=0)
        out += f.ok(status_word=1)
        for _ in range(5):
            out += f.ok(status_word=0)
        assert out == []
        assert f.ok(status_word=0) == [("ERR-1", "cleared")]

    def test_slow_cycles_outside_the_window_are_not_flapping(self):
        f = Feed(flap_interp(), step_s=30.0)
        events = []
        for _ in range(6):
            events += f.ok(status_word=1)
            events += f.ok(status_word=0)
        assert events == [("ERR-1", "raised"), ("ERR-1", "cleared")] * 6


B1 = fault("B1", {"all": [{"field": "status_word", "bit": 0}, {"field": "error_code", "equals": 0}]})
EITHER = fault("EITHER", {"any": [{"rule": "increased", "field": "a"}, {"rule": "increased", "field": "b"}]})
NOT_UP = fault("NOT-UP", {"all": [{"rule": "increased", "field": "c"},
                                  {"not": {"rule": "increased", "field": "d"}}]})
QUIET = fault("QUIET", {"all": [{"rule": "unchanged_days", "field": "volume_m3", "when_field": "valve_state",
                                 "equals": 0, "param": "no_count_days"},
                                {"rule": "above_max", "field": "balance_m3", "default": 0.0}]})
COMBINED = model("c", B1, EITHER, NOT_UP, QUIET)
DAY = 86400.0


class TestCombinedTriggers:
    def test_all_is_no_as_soon_as_one_part_is_no(self):
        t = compile_trigger(B1.trigger, {})
        read = lambda **v: t(Reading("d", True, v), None, None, 0)
        assert read(status_word=1, error_code=0) is True
        assert read(status_word=1, error_code=3) is False
        assert read(status_word=0) is False                 # error code unknown, but bit 0 says no
        assert read(status_word=1) is None                  # cannot tell whether an ERR code is shown

    def test_any_is_yes_as_soon_as_one_part_is_yes(self):
        t = compile_trigger({"any": [{"field": "x", "equals": 1}, {"field": "y", "equals": 1}]}, {})
        read = lambda **v: t(Reading("d", True, v), None, None, 0)
        assert read(x=1) is True and read(x=0, y=0) is False and read(x=0) is None

    def test_not_of_cannot_tell_is_cannot_tell(self):
        t = compile_trigger({"not": {"field": "x", "bit": 0}}, {})
        assert t(Reading("d", True, {"x": 0}), None, None, 0) is True
        assert t(Reading("d", True, {}), None, None, 0) is None

    def test_err_code_keeps_b1_down_and_detail_has_the_parts(self):
        f = Feed(make(COMBINED))
        assert f.ok(status_word=1, error_code=3) == []
        assert f.ok(status_word=1, error_code=0) == [("B1", "raised")]
        assert f.last[0].detail == {"all": [{"field": "status_word", "value": 1, "bit": 0},
                                            {"field": "error_code", "value": 0, "equals": 0}]}

    def test_nested_comparing_rules_remember_their_fields(self):
        f = Feed(make(COMBINED))
        f.ok(a=0, b=0, c=5, d=7)
        assert f.ok(a=0, b=1, c=6, d=7) == [("EITHER", "raised"), ("NOT-UP", "raised")]
        assert f.ok(a=0, b=1, c=7, d=8) == [("EITHER", "cleared"), ("NOT-UP", "cleared")]
        assert f.last[1].detail["all"][1] == {"not": {"rule": "increased", "d": 8, "previous": 7}}

    def test_a_stateful_part_sees_every_poll(self):
        # the counter must track the volume even while another part says no
        f = Feed(make(COMBINED, no_count_days=30), step_s=DAY)
        f.ok(volume_m3=1.0, valve_state=0, balance_m3=0.0)
        for _ in range(30):
            assert f.ok(volume_m3=1.0, valve_state=0, balance_m3=0.0) == []
        assert f.ok(volume_m3=1.0, valve_state=0, balance_m3=5.0) == [("QUIET", "raised")]
        assert f.last[0].detail["all"][0]["unchanged_days"] == 31.0


class TestRestart:
    def roundtrip(self, interp, m=MODEL, **params):
        snap = json.loads(json.dumps(interp.snapshot()))
        return make(m, snap, **params)

    def test_standing_fault_not_raised_again(self):
        f = Feed(make())
        f.ok(status_word=1)
        g = Feed(self.roundtrip(f.interp))
        assert g.ok(status_word=1) == []
        assert g.interp.active()["ERR-1"]["since"] == "2026-01-01T00:00:00Z"

    def test_fault_that_went_while_down_clears(self):
        f = Feed(make())
        f.ok(status_word=1)
        g = Feed(self.roundtrip(f.interp))
        assert g.ok(status_word=0) == [("ERR-1", "cleared")]
        assert g.last[0].since == "2026-01-01T00:00:00Z"

    def test_silent_device_stays_no_response_across_restart(self):
        f = Feed(make())
        f.ok(status_word=0)
        for _ in range(5):
            f.fail()
        assert "NO-RESPONSE" in f.interp.active()
        g = Feed(self.roundtrip(f.interp))
        out = []
        for _ in range(6):
            out += g.fail()
        assert out == []
        assert g.ok(status_word=0) == [("NO-RESPONSE", "cleared")]

    def test_debounce_counter_survives(self):
        f = Feed(make())
        f.ok(status_word=2)
        f.ok(status_word=2)
        g = Feed(self.roundtrip(f.interp))
        assert g.ok(status_word=2) == [("SLOW", "raised")]

    def test_previous_values_survive(self):
        f = Feed(make())
        f.ok(volume_m3=10.0, valve_state=1)
        g = Feed(self.roundtrip(f.interp))
        assert g.ok(volume_m3=10.2, valve_state=1) == [("SELF-COUNT", "raised")]

    def test_flapping_flag_survives(self):
        f = Feed(flap_interp())
        for _ in range(4):
            f.ok(status_word=1)
            f.ok(status_word=0)
        g = Feed(self.roundtrip(f.interp, flap_count=3, flap_window_s=100, flap_hold_s=50))
        assert g.interp.active()["ERR-1"]["flapping"] is True
        out = []
        for _ in range(6):
            out += g.ok(status_word=0)
        assert out == [("ERR-1", "cleared")]

    def test_code_gone_from_model_is_cleared(self):
        f = Feed(make())
        f.ok(status_word=1, error_code=3)
        smaller = model("m", ERR1)
        g = Feed(self.roundtrip(f.interp, smaller))
        assert g.ok(status_word=1, error_code=3) == [("ERR-3", "cleared")]
        e = g.last[0]
        assert e.detail == {"reason": "not_in_model"} and e.fault.ref == "X1"
        assert e.payload()["severity"] == "major"
        assert set(g.interp.active()) == {"ERR-1"}

    def test_other_model_clears_everything(self):
        # ERR-1 of one model is not ERR-1 of another (the service manual's trap)
        f = Feed(make())
        f.ok(status_word=1)
        other = model("other", ERR1)
        g = Feed(self.roundtrip(f.interp, other))
        assert g.ok(status_word=1) == [("ERR-1", "cleared"), ("ERR-1", "raised")]

    def test_a_stateful_rule_keeps_its_stretch_as_elapsed_time(self):
        f = Feed(make(COMBINED, no_count_days=30), step_s=DAY)
        for _ in range(21):                       # days 0..20 without counting
            f.ok(volume_m3=1.0, valve_state=0, balance_m3=5.0)
        snap = json.loads(json.dumps(f.interp.snapshot()))
        assert snap["rule_state"] == {"QUIET": [{"value": 1.0, "quiet_s": 20 * DAY}]}
        # a new process whose monotonic clock starts again at 0
        g = Feed(make(COMBINED, snap, no_count_days=30), step_s=DAY)
        out = []
        for _ in range(11):                       # 10 more days: 30 in all, not more
            out += g.ok(volume_m3=1.0, valve_state=0, balance_m3=5.0)
        assert out == []
        assert g.ok(volume_m3=1.0, valve_state=0, balance_m3=5.0) == [("QUIET", "raised")]

    def test_unreadable_rule_state_starts_the_stretch_again(self):
        snap = {"v": 1, "model": "c", "active": {}, "rule_state": {"QUIET": ["x", {"value": "y"}], "B1": 3}}
        f = Feed(make(COMBINED, snap, no_count_days=30), step_s=DAY)
        out = []
        for _ in range(31):
            out += f.ok(volume_m3=1.0, valve_state=0, balance_m3=5.0)
        assert out == []
        assert f.ok(volume_m3=1.0, valve_state=0, balance_m3=5.0) == [("QUIET", "raised")]

    @pytest.mark.parametrize("junk", [{"active": 5}, {"active": {"ERR-1": 3}},
                                      {"counters": {"SLOW": "x"}}, {"prev": [1, 2]}, {"model": []}])
    def test_unreadable_snapshot_starts_fresh(self, junk):
        f = Feed(make(restored={"model": "m", **junk}))
        assert f.ok(status_word=1) == [("ERR-1", "raised")]

    def test_snapshot_is_json(self):
        f = Feed(make())
        f.ok(status_word=3, volume_m3=1.0, valve_state=0)
        snap = f.interp.snapshot()
        assert json.loads(json.dumps(snap)) == snap


def test_payload():
    f = Feed(make())
    f.ok(error_code=3)
    p = f.last[0].payload()
    assert p == {
        "type": "fault", "device": "dev", "model": "m", "code": "ERR-3", "state": "raised",
        "severity": "major", "valve_closed": False, "site_visit": True, "kind": "fault",
        "ref": "X1",
        "meaning": {"zh": "ERR-3 含义", "en": "ERR-3 meaning"},
        "causes": {"zh": ["原因1", "原因2"], "en": ["cause 1", "cause 2"]},
        "remedy": {"zh": ["步骤1"], "en": ["step 1"]},
        "cleared_by": {"code": "fault_card", "zh": "故障卡", "en": "Fault card"},
        "detail": {"field": "error_code", "value": 3, "equals": 3},
        "since": "2026-01-01T00:00:00Z",
    }
    json.dumps(p)
    assert isinstance(f.last[0], FaultEvent)


@pytest.mark.parametrize("model_id", sorted(load_models()))
def test_every_packaged_model_compiles_and_survives_silence(model_id):
    m = load_models()[model_id]
    f = Feed(Interpreter(m, "dev", {"poll_interval_s": 10}, None))
    for _ in range(10):
        f.fail()
    codes = {f.code for f in m.faults}
    assert set(f.interp.active()) <= codes


def compiled_test(interp: Interpreter, code: str):
    return interp._tests[interp._info.index[code]]


class TestSharedTests:
    """Devices of one model with the same params share the compiled test of a
    stateless fault (memory: 17 faults x 500 devices of closures); a stateful
    rule keeps its own state per device whatever the params."""

    NO_COUNT = fault("NO-COUNT", {"rule": "unchanged_days", "field": "volume_m3", "when_field": "valve_state",
                                  "equals": 0, "param": "no_count_days"})

    def test_same_params_share_a_stateless_test_other_params_do_not(self):
        a, b, c = make(max_flow_m3h=50.0), make(max_flow_m3h=50.0), make(max_flow_m3h=60.0)
        assert compiled_test(a, "FLOW-HIGH") is compiled_test(b, "FLOW-HIGH")
        assert compiled_test(a, "FLOW-HIGH") is not compiled_test(c, "FLOW-HIGH")
        fa, fc = Feed(a), Feed(c)
        assert ("FLOW-HIGH", "raised") in fa.ok(flow_m3h=55.0)
        assert ("FLOW-HIGH", "raised") not in fc.ok(flow_m3h=55.0)

    def test_a_stateful_rule_is_never_shared(self):
        m = model("nc", self.NO_COUNT)
        still, moving = make(m, no_count_days=1), make(m, no_count_days=1)
        assert compiled_test(still, "NO-COUNT") is not compiled_test(moving, "NO-COUNT")
        fs, fm = Feed(still, step_s=3600.0), Feed(moving, step_s=3600.0)
        raised = {"still": False, "moving": False}
        for hour in range(30):
            raised["still"] |= ("NO-COUNT", "raised") in fs.ok(volume_m3=100.0, valve_state=0)
            raised["moving"] |= ("NO-COUNT", "raised") in fm.ok(volume_m3=100.0 + hour, valve_state=0)
        assert raised == {"still": True, "moving": False}

    def test_unhashable_params_compile_per_device(self):
        a, b = make(tags=["x"]), make(tags=["x"])
        assert compiled_test(a, "FLOW-HIGH") is not compiled_test(b, "FLOW-HIGH")
        assert ("FLOW-HIGH", "raised") in Feed(a).ok(flow_m3h=45.0)
