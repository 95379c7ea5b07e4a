"""Golden cases for the fault interpreter: tests/golden/<model>/<case>/.

Each case is decoded values in (input.toml) and fault events out
(expected.toml), side by side, so a reviewer checks a manual row against a
case without reading Python. A new model is one model file plus its cases.

input.toml
    description = "what the case shows"       # optional
    [params]                                  # the device's [device.params]
    poll_interval_s = 60                      # default 60
    [[poll]]                                  # one per poll, in order
    values = { status_word = 1 }              # decoded values (ok reading)
    # or: fail = "timeout"                    # no answer (ok false, no values)
    t = 120                                   # optional: seconds since the first
                                              #   poll (default: previous + interval)
    restart = true                            # optional: snapshot, restore a new
                                              #   interpreter before this poll
    unavailable = true                        # optional: call unavailable() first

expected.toml
    active = ["ERR-1"]                        # optional: codes standing at the end
    [[event]]                                 # every event, in order
    poll = 3                                  # 0-based poll index
    code = "ERR-1"
    state = "raised"
    flapping = true                           # optional: detail.flapping
    ref = "A8"                                # optional: ref, severity, valve_closed,
                                              #   site_visit, kind, cleared_by (the
                                              #   machine word), meaning (English)
    remedy_zh = ["移除磁铁或其他磁干扰源", ...]  # optional: the texts a person reads,
                                              #   compared whole: meaning_zh, causes,
                                              #   causes_zh, remedy, remedy_zh (the
                                              #   first step is what "do first" shows),
                                              #   cleared_by_en, cleared_by_zh

A case that pins a text is the review copy of what the engineer reads for
that manual row; the catalogue test checks every other text by rule.
"""
from __future__ import annotations

import json
import tomllib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from gateway.faults.interpret import Interpreter
from gateway.poll.decode import Reading
from protocols.models import load_models


GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(p.parent for p in GOLDEN.glob("*/*/input.toml"))
BASE_TS = datetime(2026, 1, 1, tzinfo=timezone.utc)
BASE_MONO = 1000.0


# Keys an expected event may add to poll/code/state; compared only where given
# (the ERR-1 trap case checks ref and cleared_by, most cases need not).
EXTRA_KEYS = ("ref", "severity", "valve_closed", "site_visit", "kind")


def _models():
    return load_models()


def run_case(case: Path, models: dict) -> tuple[list[dict], list[str]]:
    spec = tomllib.loads((case / "input.toml").read_text(encoding="utf-8"))
    model = models[case.parent.name]
    params = {"poll_interval_s": 60, **spec.get("params", {})}
    interval = params["poll_interval_s"]
    interp = Interpreter(model, case.name, params, None)
    events: list[dict] = []
    t = None
    for i, poll in enumerate(spec["poll"]):
        t = poll.get("t", 0.0 if t is None else t + interval)
        if poll.get("restart"):
            snap = json.loads(json.dumps(interp.snapshot()))
            interp = Interpreter(model, case.name, params, snap)
        if poll.get("unavailable"):
            interp.unavailable()
        ts = (BASE_TS + timedelta(seconds=t)).isoformat().replace("+00:00", "Z")
        if "fail" in poll:
            reading = Reading(device=case.name, ok=False, values={}, quality={},
                              error=poll["fail"], mono=BASE_MONO + t, ts=ts)
        else:
            values = dict(poll.get("values", {}))
            reading = Reading(device=case.name, ok=True, values=values,
                              quality={k: "good" for k in values}, error=None,
                              mono=BASE_MONO + t, ts=ts)
        for e in interp.step(reading):
            p = e.payload()
            json.dumps(p, ensure_ascii=False)
            events.append({"poll": i, "code": e.code, "state": e.state,
                           "flapping": bool(e.detail.get("flapping")),
                           **{k: p[k] for k in EXTRA_KEYS},
                           "cleared_by": p["cleared_by"]["code"], "meaning": p["meaning"]["en"],
                           "meaning_zh": p["meaning"]["zh"],
                           "causes": p["causes"]["en"], "causes_zh": p["causes"]["zh"],
                           "remedy": p["remedy"]["en"], "remedy_zh": p["remedy"]["zh"],
                           "cleared_by_en": p["cleared_by"]["en"],
                           "cleared_by_zh": p["cleared_by"]["zh"]})
    return events, sorted(interp.active())


def _project(event: dict, want: dict) -> dict:
    # flapping is always compared when true, so a case cannot miss it
    keys = {"poll", "code", "state", *want} | ({"flapping"} if event["flapping"] else set())
    return {k: event[k] for k in keys if k in event}


@pytest.fixture(scope="module")
def models():
    return _models()


def test_there_are_cases():
    assert CASES


@pytest.mark.parametrize("case", CASES, ids=[f"{c.parent.name}/{c.name}" for c in CASES])
def test_golden(case: Path, models):
    expected = tomllib.loads((case / "expected.toml").read_text(encoding="utf-8"))
    events, active = run_case(case, models)
    want = expected.get("event", [])
    got = [_project(e, w) for e, w in zip(events, want)]
    got += [_project(e, {}) for e in events[len(want):]]
    assert got == want
    if "active" in expected:
        assert active == sorted(expected["active"])


def test_every_catalogued_fault_has_a_golden_case(models):
    # The manual rows are the product: a fault nobody has seen raise and
    # clear in a case is a catalogue entry nobody checked.
    missing = []
    for model_id, model in sorted(models.items()):
        covered = set()
        for case in CASES:
            if case.parent.name != model_id:
                continue
            expected = tomllib.loads((case / "expected.toml").read_text(encoding="utf-8"))
            covered |= {e["code"] for e in expected.get("event", []) if e["state"] == "raised"}
        missing += [f"{model_id}:{f.code} ({f.ref})" for f in model.faults if f.code not in covered]
    assert not missing, "no golden case raises: " + ", ".join(missing)


def test_case_folders_name_a_model(models):
    unknown = sorted({c.parent.name for c in CASES} - set(models))
    assert not unknown
