"""Defect 7 at the interpreter's edge: a poll that moves a debounce count says
so (`counts_moved`), so the daemon commits the snapshot with that poll; a
snapshot taken then carries the count into the next process. The restart
storm against the real gateway is test_kill_loop.py."""
from __future__ import annotations

import json

import pytest

from gateway.faults.interpret import Interpreter
from gateway.poll.decode import Reading
from protocols.models import load_models

pytestmark = pytest.mark.edges

MODEL = load_models()["turbine-evc"]


class Meter:
    def __init__(self, snap=None) -> None:
        self.interp = Interpreter(MODEL, "fm-1", {"poll_interval_s": 1.0}, snap)
        self.t = 0.0

    def poll(self, word: int | None):
        self.t += 1.0
        values = {} if word is None else {"status_word": word}
        r = Reading(device="fm-1", ok=word is not None, values=values,
                    quality={k: "good" for k in values}, error=None if values else "timeout",
                    mono=1000.0 + self.t, ts=f"2026-01-01T00:00:{int(self.t):02d}.000Z")
        events = [(e.code, e.state) for e in self.interp.step(r)]
        return events, self.interp.counts_moved

    def restart(self) -> "Meter":
        # through JSON, as the outbox's kv stores it
        return Meter(json.loads(json.dumps(self.interp.snapshot())))


def test_a_count_that_moves_is_reported_and_survives_a_restart():
    m = Meter()
    assert m.poll(0) == ([], False)                       # nothing counting
    assert m.poll(4) == ([], True)                        # TEMP-SENSOR: 1 of 2
    m = m.restart()                                       # kill -9 after that commit
    assert m.poll(4) == ([("TEMP-SENSOR", "raised")], True)
    assert m.poll(4) == ([], False)                       # standing: nothing moves
    assert m.poll(0) == ([], True)                        # 1 of 2 towards the clear
    assert m.poll(None) == ([], False)                    # cannot tell: the count stays
    m = m.restart()
    assert m.poll(4) == ([], True)                        # the other answer: count back to 0
    m = m.restart()
    assert m.poll(0) == ([], True)                        # so this is 1 of 2 again, not 2
    assert m.poll(0) == ([("TEMP-SENSOR", "cleared")], True)


def test_a_restart_is_not_a_poll():
    m = Meter()
    m.poll(4)
    for _ in range(3):
        m = m.restart()                                   # lives that never reached the meter
    assert m.poll(0) == ([], True)                        # the other answer resets, raises nothing
    m = m.restart()
    assert m.poll(4) == ([], True)
    assert m.poll(4) == ([("TEMP-SENSOR", "raised")], True)
