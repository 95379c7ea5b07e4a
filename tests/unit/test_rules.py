"""gateway/faults/rules.py: each rule's True / False / None, and where limits come from."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.faults import rules
from gateway.poll.decode import Reading
from protocols.models import leaves, load_models


def r(mono: float = 0.0, **values) -> Reading:
    return Reading(device="d", ok=True, values=values, mono=mono, ts="2026-01-01T00:00:00Z")


def call(name, trigger, params=None, reading=None, prev=None, last_good=None, now=0.0, state=None):
    args = ({"rule": name, **trigger}, params or {}, reading or r(), prev, last_good, now)
    if name in rules.STATEFUL:
        return rules.RULES[name](*args, {} if state is None else state)
    return rules.RULES[name](*args)


def test_registry_is_the_documented_vocabulary():
    assert set(rules.RULES) == {"above_max", "below_min", "below_min_while_positive", "drift",
                                "counting_while", "decreased", "increased", "unchanged_days", "stale"}
    assert rules.STATEFUL <= set(rules.RULES) and rules.COMPARING <= set(rules.RULES)


class TestLimit:
    def test_site_param_beats_model_default(self):
        assert rules.limit({"param": "max_flow_m3h", "default": 40}, {"max_flow_m3h": 25}) == 25

    def test_default_when_site_sets_nothing(self):
        assert rules.limit({"param": "max_flow_m3h", "default": 40}, {}) == 40

    def test_none_when_neither(self):
        assert rules.limit({"param": "max_flow_m3h"}, {}) is None

    def test_site_param_zero_is_a_value_not_unset(self):
        assert rules.limit({"param": "p", "default": 5}, {"p": 0}) == 0

    def test_site_param_not_a_number_is_no_limit(self):
        assert rules.limit({"param": "p", "default": 5}, {"p": "25"}) is None
        assert call("above_max", {"field": "x", "param": "p", "default": 5}, {"p": "25"},
                    r(x=30)) is None


class TestAboveMax:
    t = {"field": "flow_m3h", "param": "max_flow_m3h", "default": 40.0}

    def test_above(self):
        assert call("above_max", self.t, reading=r(flow_m3h=40.5)) is True

    def test_at_limit_is_not_above(self):
        assert call("above_max", self.t, reading=r(flow_m3h=40.0)) is False

    def test_site_limit(self):
        assert call("above_max", self.t, {"max_flow_m3h": 25}, r(flow_m3h=30)) is True

    def test_missing_field_cannot_tell(self):
        assert call("above_max", self.t, reading=r()) is None

    def test_no_limit_cannot_tell(self):
        assert call("above_max", {"field": "flow_m3h", "param": "x"}, reading=r(flow_m3h=99)) is None

    def test_non_number_cannot_tell(self):
        assert call("above_max", self.t, reading=r(flow_m3h="x")) is None
        assert call("above_max", self.t, reading=r(flow_m3h=True)) is None


class TestBelowMin:
    t = {"field": "balance_m3", "param": "low_balance_m3", "default": 5.0}

    def test_below(self):
        assert call("below_min", self.t, reading=r(balance_m3=4.999)) is True

    def test_at_limit(self):
        assert call("below_min", self.t, reading=r(balance_m3=5.0)) is False

    def test_negative_balance_is_below(self):
        assert call("below_min", self.t, reading=r(balance_m3=-1.0)) is True

    def test_missing(self):
        assert call("below_min", self.t) is None


class TestBelowMinWhilePositive:
    t = {"field": "flow_m3h", "param": "min_flow_m3h", "default": 2.5}

    def test_small_positive_flow(self):
        assert call("below_min_while_positive", self.t, reading=r(flow_m3h=1.0)) is True

    def test_zero_flow_is_sleep_not_this(self):
        assert call("below_min_while_positive", self.t, reading=r(flow_m3h=0.0)) is False

    def test_enough_flow(self):
        assert call("below_min_while_positive", self.t, reading=r(flow_m3h=2.5)) is False

    def test_missing(self):
        assert call("below_min_while_positive", self.t) is None


class TestDrift:
    t = {"field": "controller_m3", "other": "flowmeter_m3", "param": "max_drift_m3", "default": 1.0}

    def test_drifted(self):
        assert call("drift", self.t, reading=r(controller_m3=100.0, flowmeter_m3=102.0)) is True

    def test_drift_either_direction(self):
        assert call("drift", self.t, reading=r(controller_m3=102.0, flowmeter_m3=100.0)) is True

    def test_within(self):
        assert call("drift", self.t, reading=r(controller_m3=100.0, flowmeter_m3=100.9)) is False

    def test_other_missing(self):
        assert call("drift", self.t, reading=r(controller_m3=100.0)) is None


class TestCountingWhile:
    shut = {"field": "volume_m3", "when_field": "valve_state", "equals": 1}
    no_pressure = {"field": "volume_m3", "when_field": "pressure_kPa", "below": 1.0}

    def test_counts_while_valve_shut(self):
        assert call("counting_while", self.shut, reading=r(volume_m3=10.2, valve_state=1),
                    prev=r(volume_m3=10.0)) is True

    def test_still_while_valve_shut(self):
        assert call("counting_while", self.shut, reading=r(volume_m3=10.0, valve_state=1),
                    prev=r(volume_m3=10.0)) is False

    def test_counts_with_valve_open_is_normal(self):
        assert call("counting_while", self.shut, reading=r(volume_m3=10.2, valve_state=0),
                    prev=r(volume_m3=10.0)) is False

    def test_below_gate(self):
        assert call("counting_while", self.no_pressure, reading=r(volume_m3=5.1, pressure_kPa=0.0),
                    prev=r(volume_m3=5.0)) is True
        assert call("counting_while", self.no_pressure, reading=r(volume_m3=5.1, pressure_kPa=101.0),
                    prev=r(volume_m3=5.0)) is False

    def test_no_previous_cannot_tell(self):
        assert call("counting_while", self.shut, reading=r(volume_m3=10.2, valve_state=1)) is None

    def test_gate_missing_cannot_tell(self):
        assert call("counting_while", self.shut, reading=r(volume_m3=10.2),
                    prev=r(volume_m3=10.0)) is None


class TestDecreased:
    t = {"field": "volume_m3"}

    def test_went_down(self):
        assert call("decreased", self.t, reading=r(volume_m3=1.0), prev=r(volume_m3=99999.0)) is True

    def test_same_or_up(self):
        assert call("decreased", self.t, reading=r(volume_m3=5.0), prev=r(volume_m3=5.0)) is False
        assert call("decreased", self.t, reading=r(volume_m3=6.0), prev=r(volume_m3=5.0)) is False

    def test_no_previous(self):
        assert call("decreased", self.t, reading=r(volume_m3=5.0)) is None


class TestIncreased:
    t = {"field": "card_error_count"}

    def test_up(self):
        assert call("increased", self.t, reading=r(card_error_count=4), prev=r(card_error_count=3)) is True

    def test_same_or_down(self):
        assert call("increased", self.t, reading=r(card_error_count=3), prev=r(card_error_count=3)) is False
        assert call("increased", self.t, reading=r(card_error_count=0), prev=r(card_error_count=3)) is False

    def test_no_previous(self):
        assert call("increased", self.t, reading=r(card_error_count=3)) is None


DAY = rules.DAY_S


class TestUnchangedDays:
    t = {"field": "volume_m3", "when_field": "valve_state", "equals": 0, "param": "no_count_days"}

    def run(self, polls, params=None, trigger=None, state=None):
        state = {} if state is None else state
        return [call("unchanged_days", trigger or self.t, params if params is not None else {"no_count_days": 30},
                     r(**values), now=day * DAY, state=state) for day, values in polls]

    def test_first_sight_cannot_tell(self):
        assert self.run([(0, {"volume_m3": 1.0, "valve_state": 0})]) == [None]

    def test_more_than_the_limit(self):
        v = {"volume_m3": 1.0, "valve_state": 0}
        assert self.run([(0, v), (30, v), (30.01, v)]) == [None, False, True]

    def test_a_change_starts_again(self):
        assert self.run([(0, {"volume_m3": 1.0, "valve_state": 0}), (20, {"volume_m3": 1.1, "valve_state": 0}),
                         (45, {"volume_m3": 1.1, "valve_state": 0}),
                         (51, {"volume_m3": 1.1, "valve_state": 0})]) == [None, False, False, True]

    def test_gate_failing_starts_again(self):
        # shut for 40 days: those days are not "open and not counting"
        assert self.run([(0, {"volume_m3": 1.0, "valve_state": 1}), (40, {"volume_m3": 1.0, "valve_state": 1}),
                         (41, {"volume_m3": 1.0, "valve_state": 0}),
                         (60, {"volume_m3": 1.0, "valve_state": 0})]) == [None, False, False, False]

    def test_missing_value_or_gate_cannot_tell_and_keeps_the_stretch(self):
        v = {"volume_m3": 1.0, "valve_state": 0}
        assert self.run([(0, v), (10, {"valve_state": 0}), (20, {"volume_m3": 1.0}), (31, v)]) == \
            [None, None, None, True]

    def test_off_without_a_limit_or_with_zero(self):
        v = {"volume_m3": 1.0, "valve_state": 0}
        assert self.run([(0, v), (400, v)], params={}) == [None, None]
        assert self.run([(0, v), (400, v)], params={"no_count_days": 0}) == [None, None]

    def test_a_default_in_the_model(self):
        v = {"volume_m3": 1.0}
        assert self.run([(0, v), (8, v)], params={}, trigger={"field": "volume_m3", "param": "p", "default": 7}) \
            == [None, True]

    def test_snapshot_carries_elapsed_time_not_clock_readings(self):
        v = {"volume_m3": 1.0, "valve_state": 0}
        state: dict = {}
        self.run([(0, v), (20, v)], state=state)
        saved = rules.state_snapshot(state, 20 * DAY)
        assert saved == {"value": 1.0, "quiet_s": 20 * DAY}
        # a new process: monotonic time starts again near zero
        fresh = rules.state_restore(saved)
        assert call("unchanged_days", self.t, {"no_count_days": 30}, r(**v), now=5.0, state=fresh) is False
        assert call("unchanged_days", self.t, {"no_count_days": 30}, r(**v), now=5.0 + 10.01 * DAY,
                    state=fresh) is True
        # saved again before any poll: the carried time, unchanged
        assert rules.state_snapshot(rules.state_restore(saved), None) == saved

    @pytest.mark.parametrize("junk", [{}, {"value": 1.0}, {"value": "x", "quiet_s": 1}, {"value": 1, "quiet_s": -1},
                                      {"value": 1, "quiet_s": "nan"}, {"value": True, "quiet_s": 1}, None])
    def test_unreadable_saved_state_is_a_fresh_start(self, junk):
        assert rules.state_restore(junk) == {}


class TestStale:
    t = {"intervals": 3}

    def test_silent_longer_than_intervals(self):
        assert call("stale", self.t, {"poll_interval_s": 10}, last_good=0.0, now=30.1) is True

    def test_silent_exactly_intervals_cannot_tell_yet(self):
        assert call("stale", self.t, {"poll_interval_s": 10}, last_good=0.0, now=30.0) is None

    def test_only_an_answer_says_not_stale(self):
        assert call("stale", self.t, {"poll_interval_s": 10}, r(x=1), last_good=30.0, now=30.0) is False

    def test_no_poll_interval_cannot_tell(self):
        assert call("stale", self.t, {}, last_good=0.0, now=1e6) is None

    def test_site_param_overrides_intervals(self):
        t = {"intervals": 3, "param": "stale_intervals"}
        assert call("stale", t, {"poll_interval_s": 10, "stale_intervals": 10},
                    last_good=0.0, now=31.0) is None

    def test_works_on_a_failed_reading(self):
        failed = Reading(device="d", ok=False, values={}, error="timeout", mono=100.0)
        assert call("stale", self.t, {"poll_interval_s": 10}, failed, last_good=0.0, now=100.0) is True


def test_detail_shows_inputs_and_limit():
    d = rules.detail({"rule": "above_max", "field": "flow_m3h", "param": "max_flow_m3h",
                      "default": 40.0}, {}, r(flow_m3h=41.0), None, None, 0.0)
    assert d == {"rule": "above_max", "flow_m3h": 41.0, "limit": 40.0, "param": "max_flow_m3h"}


def test_detail_of_stale():
    d = rules.detail({"rule": "stale", "intervals": 3}, {"poll_interval_s": 10},
                     Reading(device="d", ok=False), None, 0.0, 45.0)
    assert d == {"rule": "stale", "silent_s": 45.0, "limit_s": 30}


numbers = st.floats(allow_nan=False, allow_infinity=False, width=32)


@given(numbers, numbers)
def test_above_and_below_are_disjoint(value, lim):
    above = call("above_max", {"field": "x", "default": lim}, reading=r(x=value))
    below = call("below_min", {"field": "x", "default": lim}, reading=r(x=value))
    assert not (above and below)
    assert above or below or value == lim


@given(numbers, numbers, st.floats(min_value=0, max_value=1e6))
def test_drift_is_symmetric(a, b, lim):
    t = {"field": "a", "other": "b", "default": lim}
    assert call("drift", t, reading=r(a=a, b=b)) == call("drift", t, reading=r(a=b, b=a))


# stale is left out: it is the rule that speaks on failed readings
@pytest.mark.parametrize("name", sorted(set(rules.RULES) - {"stale"}))
def test_every_rule_says_cannot_tell_on_an_empty_failed_reading(name):
    trigger = {"field": "x", "other": "y", "when_field": "z", "equals": 1, "default": 1}
    failed = Reading(device="d", ok=False, values={}, error="timeout")
    assert call(name, trigger, reading=failed, prev=r(x=1.0), last_good=0.0, now=1.0) is None


def test_docs_name_every_rule_and_every_site_param():
    # docs/faults.md is what a field engineer reads to set a limit; a param
    # the models use but the page does not name is a limit nobody will set.
    from pathlib import Path

    page = (Path(__file__).parents[2] / "docs" / "faults.md").read_text(encoding="utf-8")
    missing = [f"rule {name}" for name in rules.RULES if f"`{name}`" not in page]
    for model in load_models().values():
        for f in model.faults:
            for leaf in leaves(f.trigger):
                param = leaf.get("param")
                if param and f"`{param}`" not in page:
                    missing.append(f"{model.id} {f.code}: param {param}")
    assert not missing
