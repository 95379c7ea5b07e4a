"""A noisy line: what happens to a slave's answers on their way to the master.

Per device, by probability, by script, or on purpose (a malicious slave),
one thing happens to each answer:

    line faults (the CRC or the timing catches them):
        bit_flip   one bit of the frame inverted
        drop_byte  one byte lost
        garbage    1-8 random bytes before or after the frame
        truncate   the frame cut short
        late       the frame, after `late_s` (longer than the master's timeout)
        silence    nothing
    hostile frames (a valid CRC; only checking the answer against the
    request catches them, see hostile.py):
        wrong_function, wrong_unit, lying_count, double

The scenario keys are `noise`, `noise_script` and `malicious` on a
`[[device]]` or an `[[event]]` (docs/simulators.md, "Noisy line"); relay.py
puts the line between the gateway's pseudo-terminal and the server.
"""
from __future__ import annotations

import random
from collections import Counter, deque
from dataclasses import dataclass, field

from . import hostile
from .rtu import Request

LINE_KINDS = ("bit_flip", "drop_byte", "garbage", "truncate", "late", "silence")
HOSTILE_KINDS = ("wrong_function", "wrong_unit", "lying_count", "double")
KINDS = LINE_KINDS + HOSTILE_KINDS
OK = "ok"
KEYS = ("noise", "noise_script", "malicious")
# Bounds of the timing options, s: a late answer must stay within a test's
# patience, and a double answer's gap is a gap between two frames.
OPTIONS = {"late_s": (0.0, 30.0), "double_gap_s": (0.0, 2.0)}
SCRIPT_MAX = 10_000


@dataclass
class Noise:
    rates: dict[str, float] = field(default_factory=dict)
    script: deque = field(default_factory=deque)
    malicious: tuple[str, ...] = ()
    late_s: float = 1.0
    double_gap_s: float = 0.001
    injected: Counter = field(default_factory=Counter)  # what each answer got, "ok" included
    _turn: int = 0
    _lies: int = 0

    def pick(self, req: Request, reply: bytes, rng: random.Random) -> str:
        """Script first, then malicious intent, then chance."""
        if self.script:
            kind = self.script.popleft()
        elif self.malicious and req.is_read:
            kinds = [k for k in self.malicious if hostile.applicable(k, req, reply)]
            kind = kinds[self._turn % len(kinds)] if kinds else OK
            self._turn += 1
        else:
            kind, x = OK, rng.random()
            for k in KINDS:  # a fixed order: the same seed gives the same faults
                r = self.rates.get(k, 0.0)
                if x < r:
                    kind = k
                    break
                x -= r
        if kind in HOSTILE_KINDS and not hostile.applicable(kind, req, reply):
            return OK
        return kind

    def shape(self, req: Request, reply: bytes, rng: random.Random) -> list[tuple[float, bytes]]:
        """What goes on the line for this answer: (delay s, bytes) pairs."""
        kind = self.pick(req, reply, rng)
        self.injected[kind] += 1
        if kind in HOSTILE_KINDS:
            if kind == "lying_count":
                self._lies += 1
            return hostile.forge(kind, req, reply, double_gap_s=self.double_gap_s,
                                 lie_index=self._lies - 1)
        return _line_fault(kind, reply, rng, self.late_s)


def _line_fault(kind: str, reply: bytes, rng: random.Random, late_s: float) -> list[tuple[float, bytes]]:
    if kind == OK:
        return [(0.0, reply)]
    if kind == "silence":
        return []
    if kind == "late":
        return [(late_s, reply)]
    b = bytearray(reply)
    if kind == "bit_flip":
        i = rng.randrange(len(b))
        b[i] ^= 1 << rng.randrange(8)
    elif kind == "drop_byte":
        del b[rng.randrange(len(b))]
    elif kind == "garbage":
        junk = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        b = bytearray(junk + reply if rng.random() < 0.5 else reply + junk)
    elif kind == "truncate":
        b = b[:rng.randint(1, len(b) - 1)] if len(b) > 1 else bytearray()
    return [(0.0, bytes(b))]


# -- scenario keys -----------------------------------------------------------

def problems(key: str, value: object, where: str) -> list[str]:
    """What is wrong with a scenario's `noise`, `noise_script` or
    `malicious` value; `where` is its key path (device[2], event[5])."""
    out: list[str] = []
    if key == "noise":
        if not isinstance(value, dict):
            return [f"{where}.noise: must be a table of fault = probability"]
        total = 0.0
        for k, v in value.items():
            if k in OPTIONS:
                lo, hi = OPTIONS[k]
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
                    out.append(f"{where}.noise.{k}: must be a number of seconds in {lo}..{hi}")
            elif k not in KINDS:
                out.append(f"{where}.noise.{k}: not a fault; one of {', '.join(KINDS)}")
            elif isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                out.append(f"{where}.noise.{k}: must be a probability in 0..1")
            else:
                total += v
        if total > 1 + 1e-9:
            out.append(f"{where}.noise: probabilities add up to {total:g}, more than 1")
    elif key == "noise_script":
        if not isinstance(value, list) or len(value) > SCRIPT_MAX:
            return [f"{where}.noise_script: must be a list of at most {SCRIPT_MAX} faults"]
        for i, k in enumerate(value):
            if k != OK and k not in KINDS:
                out.append(f"{where}.noise_script[{i}]: {k!r} not a fault; one of ok, {', '.join(KINDS)}")
    elif key == "malicious":
        kinds = [value] if isinstance(value, str) else value
        if isinstance(value, bool):
            kinds = []
        if not isinstance(kinds, list) or any(k not in HOSTILE_KINDS for k in kinds):
            out.append(f"{where}.malicious: true, false, or hostile faults among "
                       f"{', '.join(HOSTILE_KINDS)}")
    return out


def update(noise: Noise | None, key: str, value: object) -> Noise:
    """Apply one checked scenario key: `noise` replaces the probabilities
    (and timing options), `noise_script` the faults still to come,
    `malicious` the intent (false: none)."""
    n = noise or Noise()
    if key == "noise":
        n.rates = {k: float(v) for k, v in value.items() if k in KINDS}
        n.late_s = float(value.get("late_s", n.late_s))
        n.double_gap_s = float(value.get("double_gap_s", n.double_gap_s))
    elif key == "noise_script":
        n.script = deque(value)
    elif key == "malicious":
        if value is True:
            n.malicious = HOSTILE_KINDS
        elif value is False:
            n.malicious = ()
        else:
            n.malicious = (value,) if isinstance(value, str) else tuple(value)
        n._turn = 0
    return n
