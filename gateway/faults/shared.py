"""What the fault interpreters of many devices share (memory: 500 devices of
one model): a model's faults as the interpreter walks them, the compiled
test of a stateless fault, and the params and tests of devices with equal
params. Each cache is keyed by id() and its entry keeps the keyed object
alive, so an id is never reused while it is in the cache."""
from __future__ import annotations

from types import MappingProxyType
from typing import TYPE_CHECKING

from gateway.faults import rules as _rules
from protocols.models import leaves

from .triggers import Test, compile_trigger

if TYPE_CHECKING:
    from protocols.models import Fault, Model

NO_STATES: dict = MappingProxyType({})    # type: ignore[assignment]  # shared, read-only

# A fault's compiled test holds no state unless a rule in it is stateful, and
# then depends only on the trigger and the params: devices of one model with
# the same params share it (the closures of 17 faults x 500 devices were
# 3 MB). Keyed by id() of the trigger, which the entry keeps alive.
_SHARED: dict[tuple, tuple[dict, Test]] = {}
# What every device of a model shares, and the tests of devices with the
# same params when none is stateful; keyed by id(), the entry keeps the
# model alive. Per device (x 500), these were 0.5 MB.
_MODELS: dict[int, tuple[Model, "_ModelInfo"]] = {}
_TESTS: dict[tuple, tuple[Model, tuple[Test, ...]]] = {}
_PARAMS: dict[tuple, dict] = {}


def _params_key(params: dict) -> tuple | None:
    # the type too: 1 == 1.0 == True, but a detail shows them differently
    key = tuple(sorted((k, type(v).__name__, v) for k, v in params.items()))
    try:
        hash(key)
    except TypeError:               # a list or table value: compile per device
        return None
    return key


def _shared_test(trigger: dict, params_key: tuple | None) -> Test | None:
    if params_key is None:
        return None
    hit = _SHARED.get((id(trigger), params_key))
    return hit[1] if hit is not None and hit[0] is trigger else None


def _compile(fault: Fault, params: dict, params_key: tuple | None) -> tuple[Test, dict]:
    """The fault's test, and its stateful rules' state by id() of their table
    (the shared, empty NO_STATES when it has none)."""
    test = _shared_test(fault.trigger, params_key)
    if test is not None:
        return test, NO_STATES
    states: dict[int, dict] = {}
    test = compile_trigger(fault.trigger, params, states)
    if states:
        return test, states
    if params_key is not None:
        _SHARED[(id(fault.trigger), params_key)] = (fault.trigger, test)
    return test, NO_STATES


class _ModelInfo:
    """A model's faults as the interpreter walks them, the same for every device."""

    __slots__ = ("faults", "debounce", "index", "prev_fields")

    def __init__(self, model: Model):
        self.faults = tuple(model.faults)
        self.debounce = tuple(max(1, int(f.debounce or 1)) for f in self.faults)
        self.index = {f.code: i for i, f in enumerate(self.faults)}
        # Only the fields a comparing rule looks at are remembered between polls.
        self.prev_fields = frozenset(
            leaf["field"] for f in self.faults for leaf in leaves(f.trigger)
            if leaf.get("rule") in _rules.COMPARING and "field" in leaf)


def model_info(model: Model) -> _ModelInfo:
    hit = _MODELS.get(id(model))
    if hit is not None and hit[0] is model:
        return hit[1]
    info = _ModelInfo(model)
    _MODELS[id(model)] = (model, info)
    return info


def device_tests(model: Model, params: dict | None) -> tuple[dict, tuple[Test, ...], tuple[dict, ...] | None]:
    """(params, a test per fault of the model, the stateful rules' states per
    fault or None when no rule is stateful) for one device. Without a
    stateful rule nothing of it is the device's own: devices with equal
    params get the same params dict and the same tuple of tests."""
    params = dict(params or {})
    key = _params_key(params)
    if key is not None:
        params = _PARAMS.setdefault(key, params)     # read only from here on
        hit = _TESTS.get((id(model), key))
        if hit is not None and hit[0] is model:
            return params, hit[1], None
    compiled = [_compile(f, params, key) for f in model_info(model).faults]
    tests = tuple(t for t, _ in compiled)
    if any(st is not NO_STATES for _, st in compiled):
        return params, tests, tuple(st for _, st in compiled)
    if key is not None:
        _TESTS[(id(model), key)] = (model, tests)
    return params, tests, None
