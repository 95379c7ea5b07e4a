"""Gateway rules: faults no device reports, inferred from readings (pure).

A model's fault names a rule in its trigger, ``{ rule = "above_max", field =
"flow_m3h", param = "max_flow_m3h", default = 40.0 }``; docs/dev/interfaces.md
holds the vocabulary and docs/faults.md says which device param sets each
limit. Every rule has the same signature so the interpreter can compile a
trigger into one call:

    rule(trigger, params, reading, prev, last_good_mono, now_mono) -> bool | None

True: the condition is present. False: it is not. None: cannot tell (an
input is missing from the reading because it failed to decode or the device
did not answer, or the site set no limit and the model gave no default); the
interpreter then leaves the fault as it is, so a timeout never clears a
fault nor raises one by accident.

``prev`` holds the last good value of each field a comparing rule uses
(kept per field, so one failed read does not make a comparison impossible,
and kept across restarts). ``last_good_mono`` is the monotonic time of the last
poll the device answered.

One rule measures days and so keeps a little state of its own:
``unchanged_days`` (in STATEFUL) takes a seventh argument, a dict the
interpreter keeps per trigger and carries across restarts as elapsed seconds
(``state_snapshot`` / ``state_restore``), never as clock readings.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.poll.decode import Reading

Rule = Callable[[dict, dict, "Reading", "Reading | None", "float | None", float], "bool | None"]


def limit(trigger: dict, params: dict, key: str = "default") -> float | None:
    """The site's value for the trigger's ``param``, else the model's default.

    A site param set to None (TOML has no null, but a caller may pass one)
    counts as unset so the model's default still applies. A site param that
    is not a number (a quoted "25") gives None: guessing a limit for a
    safety rule is worse than not judging.
    """
    name = trigger.get("param")
    value = params.get(name) if name is not None else None
    if value is None:
        value = trigger.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value


def _number(values: dict, name: str | None) -> float | None:
    # bool is an int in Python; a bit field compared with a flow limit is a
    # model mistake, not a reading, so it counts as "cannot tell".
    if name is None:
        return None
    value = values.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value


def above_max(trigger, params, reading, prev, last_good_mono, now_mono):
    value = _number(reading.values, trigger.get("field"))
    lim = limit(trigger, params)
    if value is None or lim is None:
        return None
    return value > lim


def below_min(trigger, params, reading, prev, last_good_mono, now_mono):
    value = _number(reading.values, trigger.get("field"))
    lim = limit(trigger, params)
    if value is None or lim is None:
        return None
    return value < lim


def below_min_while_positive(trigger, params, reading, prev, last_good_mono, now_mono):
    # Zero flow is "no flow" (SLEEP), not "flow below the starting flow".
    value = _number(reading.values, trigger.get("field"))
    lim = limit(trigger, params)
    if value is None or lim is None:
        return None
    return 0 < value < lim


def drift(trigger, params, reading, prev, last_good_mono, now_mono):
    value = _number(reading.values, trigger.get("field"))
    other = _number(reading.values, trigger.get("other"))
    lim = limit(trigger, params)
    if value is None or other is None or lim is None:
        return None
    return abs(value - other) > lim


def _when(trigger: dict, values: dict) -> bool | None:
    name = trigger.get("when_field")
    if name not in values:
        return None
    current = values[name]
    if "equals" in trigger:
        return current == trigger["equals"]
    if "below" in trigger:
        number = _number(values, name)
        return None if number is None else number < trigger["below"]
    return None


def _moved(trigger, reading, prev) -> tuple[float, float] | None:
    """The field now and at the previous good reading; None when either is
    unknown (a first reading, a failed or bad-quality value)."""
    if prev is None:
        return None
    name = trigger.get("field")
    value = _number(reading.values, name)
    before = _number(prev.values, name)
    if value is None or before is None:
        return None
    return value, before


def counting_while(trigger, params, reading, prev, last_good_mono, now_mono):
    # The counter must have moved between two good readings, and the gate
    # (valve shut, pressure zero) must hold now: a valve that shut during
    # the interval while gas still flowed is normal, so only the present
    # gate counts and the next poll confirms with debounce.
    pair = _moved(trigger, reading, prev)
    gate = _when(trigger, reading.values)
    if pair is None or gate is None:
        return None
    value, before = pair
    return gate and value > before


def decreased(trigger, params, reading, prev, last_good_mono, now_mono):
    pair = _moved(trigger, reading, prev)
    return None if pair is None else pair[0] < pair[1]


def increased(trigger, params, reading, prev, last_good_mono, now_mono):
    # A counter of refused cards that moves is an event at the card slot
    # (A4, B4, B5, E2): present for the one reading that shows the rise.
    pair = _moved(trigger, reading, prev)
    return None if pair is None else pair[0] > pair[1]


DAY_S = 86400.0


def unchanged_days(trigger, params, reading, prev, last_good_mono, now_mono, state):
    # The field has not moved for more than `limit` days while the gate held
    # (valve open). The stretch starts again whenever the value changes or
    # the gate fails, so a meter that was shut for a month and has just been
    # reopened is not "a month without counting". A failed poll neither
    # starts nor ends a stretch: the time keeps running, as it does on site.
    lim = limit(trigger, params)
    value = _number(reading.values, trigger.get("field"))
    gate = _when(trigger, reading.values) if "when_field" in trigger else True
    if value is None or gate is None:
        return None
    if "carry_s" in state:        # restored: the stretch so far, without the downtime
        state["since"] = now_mono - float(state.pop("carry_s"))
    off = lim is None or lim <= 0   # no limit: the site has not switched it on
    if "since" not in state:      # first sight: a stretch starts, nothing known yet
        state["value"], state["since"] = value, now_mono
        return None
    if not gate or state["value"] != value:
        state["value"], state["since"] = value, now_mono
        return None if off else False
    return None if off else now_mono - state["since"] > lim * DAY_S


def state_snapshot(state: dict, now_mono: float | None) -> dict:
    """A stateful rule's state as JSON: elapsed seconds, no clock readings."""
    if "value" not in state:
        return {}
    if "carry_s" in state:
        elapsed = float(state["carry_s"])
    elif now_mono is None or "since" not in state:
        return {}
    else:
        elapsed = max(0.0, now_mono - state["since"])
    return {"value": state["value"], "quiet_s": round(elapsed, 3)}


def state_restore(saved: dict) -> dict:
    """Inverse of state_snapshot; anything unreadable gives a fresh state."""
    try:
        value, quiet = saved["value"], float(saved["quiet_s"])
    except (KeyError, TypeError, ValueError):
        return {}
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(quiet) or quiet < 0:
        return {}
    return {"value": value, "carry_s": quiet}


def _stale_limit_s(trigger: dict, params: dict) -> float | None:
    intervals = limit(trigger, params, "intervals")
    poll = _number(params, "poll_interval_s")
    return None if intervals is None or poll is None else intervals * poll


def stale(trigger, params, reading, prev, last_good_mono, now_mono):
    # Evaluated on failed polls too: this is the one rule that speaks when
    # the device does not. Only an answer says "not stale": a failed poll
    # inside the limit is "cannot tell", so a NO-RESPONSE that stood before
    # a gateway restart is not cleared by the first failed poll after it.
    if reading.values:
        return False
    lim = _stale_limit_s(trigger, params)
    if last_good_mono is None or lim is None:
        return None
    return True if now_mono - last_good_mono > lim else None


# Rule, or for the STATEFUL ones Rule with the state dict as a seventh argument.
RULES: dict[str, Callable[..., "bool | None"]] = {
    "above_max": above_max,
    "below_min": below_min,
    "below_min_while_positive": below_min_while_positive,
    "drift": drift,
    "counting_while": counting_while,
    "decreased": decreased,
    "increased": increased,
    "unchanged_days": unchanged_days,
    "stale": stale,
}
# Rules called with a seventh argument, their state dict.
STATEFUL = frozenset({"unchanged_days"})
# Rules that compare with the previous good value of their field.
COMPARING = frozenset({"counting_while", "decreased", "increased"})


def detail(trigger: dict, params: dict, reading, prev, last_good_mono, now_mono,
           state: dict | None = None) -> dict:
    """What a person needs to see why the rule fired: its inputs and limit.

    Kept apart from the rules so the per-poll path returns bare booleans;
    this runs only when an event is made.
    """
    out: dict = {"rule": trigger.get("rule")}
    for key in ("field", "other", "when_field"):
        name = trigger.get(key)
        if name is not None and name in reading.values:
            out[name] = reading.values[name]
    name = trigger.get("field")
    if trigger.get("rule") in COMPARING and prev is not None and name in prev.values:
        out["previous"] = prev.values[name]
    if trigger.get("rule") in STATEFUL and state and "since" in state:
        out["unchanged_days"] = round((now_mono - state["since"]) / DAY_S, 3)
    if trigger.get("rule") == "stale":
        lim = _stale_limit_s(trigger, params)
        if last_good_mono is not None:
            out["silent_s"] = round(now_mono - last_good_mono, 3)
        if lim is not None:
            out["limit_s"] = lim
    else:
        lim = limit(trigger, params)
        if lim is not None:
            out["limit"] = lim
    if trigger.get("param") is not None:
        out["param"] = trigger["param"]
    return out
