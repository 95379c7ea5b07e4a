"""A fault's trigger compiled to a test of one reading: True (the condition
holds), False (it does not) or None (this reading cannot tell: a field it
needs failed). Combined triggers (all / any / not) keep the three answers.
The trigger forms are in docs/models/format.md."""
from __future__ import annotations

from typing import Any, Callable

from gateway.faults import rules as _rules
from gateway.poll.decode import Reading

Test = Callable[[Reading, "Reading | None", "float | None", float], "bool | None"]



def _int_of(value: Any) -> int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None



def _all(results: list) -> bool | None:
    # Three answers: one "no" settles it; otherwise one "cannot tell" does.
    if any(r is False for r in results):
        return False
    return None if any(r is None for r in results) else True



def _any(results: list) -> bool | None:
    if any(r is True for r in results):
        return True
    return None if any(r is None for r in results) else False



def _combined(combine: Callable[[list], "bool | None"], parts: list[Test]) -> Test:
    def test(reading, prev, last_good, now):
        # every part runs on every poll: a stateful part must see them all
        return combine([p(reading, prev, last_good, now) for p in parts])
    return test



def compile_trigger(trigger: dict, params: dict, states: dict | None = None) -> Test:
    """One closure per fault, built once, so a poll costs a dict lookup and a compare.

    ``states`` collects the state dict of every stateful rule inside the
    trigger, keyed by id() of its trigger table (the interpreter snapshots
    them); without it the states are private to the closure.
    """
    for combiner, combine in (("all", _all), ("any", _any)):
        if combiner in trigger:
            return _combined(combine, [compile_trigger(t, params, states) for t in trigger[combiner]])
    if "not" in trigger:
        inner = compile_trigger(trigger["not"], params, states)

        def not_test(reading, prev, last_good, now):
            cond = inner(reading, prev, last_good, now)
            return None if cond is None else not cond
        return not_test
    if "rule" in trigger:
        try:
            rule = _rules.RULES[trigger["rule"]]
        except KeyError:
            raise ValueError(f"unknown rule {trigger['rule']!r}") from None
        if trigger["rule"] in _rules.STATEFUL:
            state: dict = {}
            if states is not None:
                states[id(trigger)] = state
            return lambda reading, prev, last_good, now: rule(
                trigger, params, reading, prev, last_good, now, state)
        return lambda reading, prev, last_good, now: rule(trigger, params, reading, prev, last_good, now)
    name = trigger.get("field")
    if name is None:
        raise ValueError(f"trigger needs 'field', 'rule', 'all', 'any' or 'not': {trigger!r}")
    if "bit" in trigger:
        mask = 1 << int(trigger["bit"])

        def bit_test(reading, prev, last_good, now):
            word = _int_of(reading.values.get(name))
            return None if word is None else bool(word & mask)
        return bit_test
    if "equals" in trigger:
        wanted = trigger["equals"]

        def equals_test(reading, prev, last_good, now):
            value = reading.values.get(name)
            return None if value is None else value == wanted
        return equals_test
    raise ValueError(f"trigger needs 'bit' or 'equals' with 'field': {trigger!r}")



def trigger_detail(trigger: dict, params: dict, reading, prev, last_good, now,
                    states: dict | None = None) -> dict:
    for name in ("all", "any"):
        if name in trigger:
            return {name: [trigger_detail(t, params, reading, prev, last_good, now, states)
                           for t in trigger[name]]}
    if "not" in trigger:
        return {"not": trigger_detail(trigger["not"], params, reading, prev, last_good, now, states)}
    if "rule" in trigger:
        state = (states or {}).get(id(trigger))
        return _rules.detail(trigger, params, reading, prev, last_good, now, state)
    name = trigger["field"]
    out: dict = {"field": name}
    if name in reading.values:
        out["value"] = reading.values[name]
    for key in ("bit", "equals"):
        if key in trigger:
            out[key] = trigger[key]
    return out
