"""Decoded readings of one device -> fault events, as the service manual means them (pure).

    Reading --step()--> per fault: trigger -> True / False / None
                          -> debounce (N consecutive polls to raise, N to clear)
                          -> flap suppression (too many cycles: hold it raised)
                          -> FaultEvent "raised" / "cleared" on the edges only

No I/O, no clock: time is ``reading.mono`` (for debounce-free timing: flap
window, hold, stale) and ``reading.ts`` (stamped on events). The daemon
persists ``snapshot()`` in the state store and passes it back as
``restored`` after a restart, so a standing fault is not announced twice.
docs/faults.md is the user-facing account of these rules.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

from gateway.faults import rules as _rules
from gateway.poll.decode import Reading
from protocols.models import Fault, Text, leaves

from .shared import NO_STATES, device_tests, model_info
from .triggers import trigger_detail

if TYPE_CHECKING:
    from protocols.models import Fault, Model

SNAPSHOT_VERSION = 1

FLAP_COUNT = 3
FLAP_WINDOW_S = 3600.0
FLAP_HOLD_S = 900.0
_NO_DETAIL: dict = MappingProxyType({})    # type: ignore[assignment]  # shared, read-only
_NO_CLEARS: tuple = ()
_IDLE: dict[int, tuple] = {}        # n -> (None,) * n: the slots of a device none of whose faults moved


def _idle_slots(n: int) -> tuple:
    return _IDLE.setdefault(n, (None,) * n)


@dataclass
class FaultEvent:
    device: str
    model: str
    code: str
    state: str                      # "raised" | "cleared"
    fault: Fault
    ts: str                         # the reading's ts: when the edge was seen
    detail: dict = field(default_factory=dict)
    since: str | None = None        # when the fault was raised (== ts on "raised")

    def payload(self) -> dict:
        """The MQTT event body; the outbox/publisher adds v, seq, ts, ts_synced."""
        f = self.fault
        return {
            "type": "fault",
            "device": self.device,
            "model": self.model,
            "code": self.code,
            "state": self.state,
            "severity": f.severity,
            "valve_closed": f.valve_closed,
            "site_visit": f.site_visit,
            "kind": f.kind,
            "ref": f.ref,
            "meaning": {"zh": f.zh.meaning, "en": f.en.meaning},
            "causes": {"zh": list(f.zh.causes), "en": list(f.en.causes)},
            "remedy": {"zh": list(f.zh.remedy), "en": list(f.en.remedy)},
            "cleared_by": {"code": f.cleared_by, "zh": f.zh.cleared_by, "en": f.en.cleared_by},
            "detail": dict(self.detail),
            "since": self.since if self.since is not None else self.ts,
        }


class _Slot:
    """Where one catalogued fault stands on one device, from the first poll
    that disagreed with "not raised" (or a restored snapshot) on: an idle
    fault has none (17 x 500 idle slots, each with its own empty detail
    and clears, were 2 MB)."""

    __slots__ = ("active", "count", "since", "detail", "flapping", "clears", "false_since")

    def __init__(self) -> None:
        self.active = False
        self.count = 0                  # consecutive polls disagreeing with `active`
        self.since: str | None = None
        self.detail: dict = _NO_DETAIL
        self.flapping = False
        # Monos of recent clears, for flap detection: a list from the first
        # clear on (a deque takes 600 bytes empty; it holds a few).
        self.clears: list[float] | tuple = _NO_CLEARS
        self.false_since: float | None = None  # while flapping: start of the False stretch


class Interpreter:
    """One per device. ``params`` is the device's [device.params] plus
    ``poll_interval_s`` (for the stale rule) and optionally ``flap_count``,
    ``flap_window_s``, ``flap_hold_s``."""

    __slots__ = ("model", "device", "params", "flap_count", "flap_window_s", "flap_hold_s", "_info",
                 "_tests", "_states", "_slots", "_prev", "_last_good", "_now", "counts_moved",
                 "_retired")

    def __init__(self, model: Model, device: str, params: dict | None = None,
                 restored: dict | None = None):
        self.model = model
        self.device = device
        self.params, self._tests, self._states = device_tests(model, params)
        self.flap_count = int(self.params.get("flap_count", FLAP_COUNT))
        self.flap_window_s = float(self.params.get("flap_window_s", FLAP_WINDOW_S))
        self.flap_hold_s = float(self.params.get("flap_hold_s", FLAP_HOLD_S))
        self._info = model_info(model)
        # Shared until a fault first moves (copied on write, in _slot_for).
        self._slots: list[_Slot | None] | tuple = _idle_slots(len(self._tests))
        self._prev: Reading | None = None
        self._last_good: float | None = None
        self._now: float | None = None          # mono of the latest poll, for snapshots
        # Whether the last step() changed a debounce count: the daemon then
        # commits the snapshot with that poll's messages, so a count half-way
        # to its debounce survives a kill (docs/faults.md, "Restarts").
        self.counts_moved = False
        # Snapshot faults the model no longer has: cleared on the first poll,
        # when there is a ts to stamp the event with.
        self._retired: dict[str, dict] = _NO_DETAIL
        if restored:
            self._restore(restored)

    def _states_of(self, i: int) -> dict:
        return NO_STATES if self._states is None else self._states[i]

    def _slot(self, i: int) -> _Slot:
        s = self._slots[i]
        return s if s is not None else self._slot_for(i)

    def _slot_for(self, i: int) -> _Slot:
        if isinstance(self._slots, tuple):
            self._slots = list(self._slots)
        s = self._slots[i] = _Slot()
        return s

    # -- restart -------------------------------------------------------------

    def snapshot(self) -> dict:
        """Everything a restart needs, JSON-serialisable.

        Monotonic times are left out on purpose: after a reboot the clock
        starts again from zero, so flap history and the stale timer restart
        with the process; a flapping fault keeps its flag and waits a full
        hold period again.
        """
        active = {}
        for code, info in self._retired.items():
            active[code] = dict(info)
        faults = self._info.faults
        for i, s in enumerate(self._slots):
            if s is not None and s.active:
                f = faults[i]
                active[f.code] = {
                    "since": s.since, "flapping": s.flapping, "detail": s.detail,
                    "severity": f.severity, "kind": f.kind, "ref": f.ref,
                }
        rule_state = {}
        if self._states is not None:
            for f, states in zip(faults, self._states):
                saved = [_rules.state_snapshot(states[id(leaf)], self._now)
                         for leaf in leaves(f.trigger) if id(leaf) in states]
                if any(saved):
                    rule_state[f.code] = saved
        return {
            "v": SNAPSHOT_VERSION,
            "model": self.model.id,
            "active": active,
            "counters": {faults[i].code: s.count for i, s in enumerate(self._slots)
                         if s is not None and s.count},
            "prev": dict(self._prev.values) if self._prev is not None else {},
            # stateful rules (unchanged_days): elapsed seconds, not clock readings
            "rule_state": rule_state,
        }

    def _restore(self, snap: dict) -> None:
        try:
            active, counters, prev = _read_snapshot(snap)
        except (AttributeError, TypeError, ValueError):
            # Unreadable state must not stop the daemon; starting fresh
            # costs at most one repeated "raised" per standing fault.
            return
        same_model = snap.get("model") == self.model.id
        index = self._info.index
        for code, info in active.items():
            i = index.get(code) if same_model else None
            if i is None:
                # A code that left the catalogue, or any code of another model
                # (ERR-1 on one model is not ERR-1 on the next): close it.
                if not self._retired:
                    self._retired = {}
                self._retired[code] = info
                continue
            slot = self._slot(i)
            slot.active = True
            slot.since = info.get("since")
            slot.detail = dict(info.get("detail") or {})
            slot.flapping = bool(info.get("flapping", False))
        if not same_model:
            return
        for code, count in counters.items():
            i = index.get(code)
            if i is not None:
                count = max(0, min(count, self._info.debounce[i] - 1))
                if count or self._slots[i] is not None:
                    self._slot(i).count = count
        prev = {k: v for k, v in prev.items() if k in self._info.prev_fields}
        if prev:
            self._prev = Reading(device=self.device, ok=True, values=prev)
        rule_state = snap.get("rule_state")
        if isinstance(rule_state, dict):
            for code, saved in rule_state.items():
                i = index.get(code)
                if i is None or not isinstance(saved, list):
                    continue
                states = self._states_of(i)
                stateful = [leaf for leaf in leaves(self._info.faults[i].trigger) if id(leaf) in states]
                for leaf, one in zip(stateful, saved):
                    if isinstance(one, dict):
                        states[id(leaf)].update(_rules.state_restore(one))

    # -- per poll ------------------------------------------------------------

    def step(self, reading: Reading) -> list[FaultEvent]:
        """Feed one poll (answered or not); returns the edges it caused."""
        now = reading.mono
        self._now = now
        self.counts_moved = False
        events: list[FaultEvent] = []
        if self._retired:
            for code, info in self._retired.items():
                events.append(self._event(
                    _retired_fault(code, info), "cleared", reading.ts,
                    {"reason": "not_in_model"}, info.get("since")))
            self._retired = _NO_DETAIL
        # The stale rule measures silence from the first poll this process
        # saw when the device has never answered since.
        if reading.values or self._last_good is None:
            self._last_good = now
        prev, last_good = self._prev, self._last_good
        slots = self._slots
        for i, test in enumerate(self._tests):
            cond = test(reading, prev, last_good, now)
            if cond is None:
                continue
            s = slots[i]
            if s is None:
                if not cond:
                    continue            # idle, and it agrees
                s = self._slot_for(i)
                slots = self._slots
            if s.flapping:
                if cond:
                    s.false_since = None
                    continue
                if s.false_since is None:
                    s.false_since = now
                if now - s.false_since >= self.flap_hold_s:
                    fault = self._info.faults[i]
                    detail = trigger_detail(fault.trigger, self.params, reading, prev, last_good,
                                             now, self._states_of(i))
                    detail["flapping"] = True
                    events.append(self._clear(s, fault, reading.ts, detail))
                continue
            if cond == s.active:
                if s.count:
                    s.count, self.counts_moved = 0, True
                continue
            s.count += 1
            self.counts_moved = True
            if s.count < self._info.debounce[i]:
                continue
            s.count = 0
            fault = self._info.faults[i]
            detail = trigger_detail(fault.trigger, self.params, reading, prev, last_good, now,
                                     self._states_of(i))
            if cond:
                s.active, s.since, s.detail = True, reading.ts, detail
                events.append(self._event(fault, "raised", reading.ts, detail, reading.ts))
                continue
            if s.clears:
                s.clears.append(now)
            else:
                s.clears = [now]
            horizon = now - self.flap_window_s
            if s.clears[0] < horizon:
                s.clears = [t for t in s.clears if t >= horizon]
            if len(s.clears) > self.flap_count:
                # Silence it: one raised is already out; the next event is
                # the one clear after a quiet hold period.
                s.flapping, s.false_since = True, now
                s.detail = {**s.detail, "flapping": True}
                continue
            events.append(self._clear(s, fault, reading.ts, detail))
        prev_fields = self._info.prev_fields
        if prev_fields and reading.values:
            fresh = {k: reading.values[k] for k in prev_fields if k in reading.values}
            if fresh:
                if self._prev is None:
                    self._prev = Reading(device=self.device, ok=True, values=fresh,
                                         mono=now, ts=reading.ts)
                else:
                    self._prev.values.update(fresh)
        return events

    def unavailable(self) -> None:
        """The device stopped answering. Deliberately changes nothing: a
        silent device has not repaired itself, so its faults stand until a
        reading shows them gone; the stale rule (fed by step() on failed
        polls) is what reports the silence."""

    def active(self) -> dict[str, dict]:
        """code -> {since, flapping, detail} for every fault standing now."""
        out = {code: {"since": info.get("since"), "flapping": bool(info.get("flapping")),
                      "detail": dict(info.get("detail") or {})}
               for code, info in self._retired.items()}
        for i, s in enumerate(self._slots):
            if s is not None and s.active:
                out[self._info.faults[i].code] = {"since": s.since, "flapping": s.flapping,
                                                  "detail": dict(s.detail)}
        return out

    # -- helpers -------------------------------------------------------------

    def _clear(self, s: _Slot, fault: Fault, ts: str, detail: dict) -> FaultEvent:
        since = s.since
        s.active, s.since, s.detail = False, None, _NO_DETAIL
        s.flapping, s.false_since, s.count = False, None, 0
        if detail.get("flapping"):
            s.clears = _NO_CLEARS
        return self._event(fault, "cleared", ts, detail, since)

    def _event(self, fault: Fault, state: str, ts: str, detail: dict, since: str | None) -> FaultEvent:
        return FaultEvent(device=self.device, model=self.model.id, code=fault.code, state=state,
                          fault=fault, ts=ts, detail=detail, since=since)


def _read_snapshot(snap: dict) -> tuple[dict[str, dict], dict[str, int], dict]:
    active = {str(code): dict(info) for code, info in (snap.get("active") or {}).items()}
    counters = {str(code): int(n) for code, n in (snap.get("counters") or {}).items()}
    prev = dict(snap.get("prev") or {})
    return active, counters, prev


def _retired_fault(code: str, info: dict) -> Fault:
    # The catalogue entry is gone; describe the fault with what the snapshot
    # kept so the cleared event still says what is being closed.
    en = Text(meaning=f"{code}: no longer in this device's model; closed by the gateway",
              causes=("the device model or its fault catalogue changed",), remedy=(),
              cleared_by="The gateway closes it after a model change.")
    zh = Text(meaning=f"{code}：设备型号的故障目录中已无此代码，由网关关闭",
              causes=("设备型号或故障目录已更改",), remedy=(),
              cleared_by="型号更改后由网关关闭。")
    return Fault(code=code, severity=info.get("severity", "info"), valve_closed=False,
                 site_visit=False, debounce=1, kind=info.get("kind", "fault"), trigger={},
                 cleared_by="none", ref=info.get("ref", ""), en=en, zh=zh)
