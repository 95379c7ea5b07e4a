"""Service promises (reference I): `[service] respond_within_h` by severity,
in every fault event, in the state's fault summary and so in `status`."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from gateway.deliver import payloads
from gateway.faults.interpret import FaultEvent
from gateway.field.status import fault_entry
from gateway.site.config import check_config, load_config
from gateway.site.config.types import DEFAULTS
from protocols.models import load_models

from .conftest import wait_for

MODELS = load_models()
BASE = '[gateway]\nid = "g"\nstate_dir = "state"\n'


def _cfg(tmp_path: Path, text: str):
    p = tmp_path / "edgegw.toml"
    # a top-level key must come before the first table
    p.write_text(BASE + text if text.startswith("[") or not text else text + BASE)
    return p


def test_defaults_come_from_the_service_promises(tmp_path):
    # reference I: first response within 1 h, the account manager on site
    # within 24 h of a quality complaint, a repair answer within 72 h.
    assert DEFAULTS["service"]["respond_within_h"] == {"critical": 1, "major": 24, "minor": 72, "info": 0}
    cfg = load_config(_cfg(tmp_path, ""))
    assert cfg.service.respond_within_h == {"critical": 1, "major": 24, "minor": 72, "info": 0}


def test_a_site_sets_its_own_promises_and_keeps_the_defaults_it_does_not_name(tmp_path):
    cfg = load_config(_cfg(tmp_path, "[service]\nrespond_within_h = { critical = 0.5, minor = 0 }\n"))
    assert cfg.service.respond_within_h == {"critical": 0.5, "major": 24, "minor": 0, "info": 0}


@pytest.mark.parametrize("text, problem", [
    ("[service]\nrespond_within_h = { urgent = 1 }\n", "service.respond_within_h.urgent: unknown key"),
    ("[service]\nrespond_within_h = { critical = -1 }\n", "service.respond_within_h.critical: -1 is outside 0-8760"),
    ("[service]\nrespond_within_h = { major = \"24\" }\n", "service.respond_within_h.major: expected a number"),
    ("[service]\nrespond_within_h = 1\n", "service.respond_within_h: expected a table"),
    ("[service]\nrespond_in = 1\n", "service.respond_in: unknown key"),
    ("service = 3\n", "service: expected a table"),
])
def test_bad_promises_are_refused_by_key(tmp_path, text, problem):
    problems = check_config(_cfg(tmp_path, text))
    assert any(p.startswith(problem) for p in problems), problems


def _event(model_id: str, code: str, state: str = "raised") -> FaultEvent:
    m = MODELS[model_id]
    return FaultEvent(device="d1", model=m.id, code=code, state=state, fault=m.fault(code), detail={},
                      ts="2026-11-23T08:00:00.000Z", since="2026-11-23T08:00:00.000Z")


@pytest.mark.parametrize("model_id, code, hours", [
    ("meihua-ic", "ERR-1", 1), ("turbine-evc", "TEMP-SENSOR", 24), ("turbine-evc", "FLOW-LOW", 72),
    ("turbine-evc", "SLEEP", 0),
])
def test_every_fault_event_carries_the_promise_of_its_severity(model_id, code, hours):
    for state in ("raised", "cleared"):
        body = payloads.fault_event(_event(model_id, code, state))
        assert body["respond_within_h"] == hours
        assert body["code"] == code and body["state"] == state and body["v"] == 1


def test_the_site_table_decides_the_promise():
    service = SimpleNamespace(respond_within_h={"critical": 4, "major": 48, "minor": 0, "info": 0})
    assert payloads.fault_event(_event("meihua-ic", "ERR-1"), service)["respond_within_h"] == 4
    item = payloads.fault_summary("ERR-1", {"since": "2026-11-23T08:00:00.000Z"}, MODELS["meihua-ic"], service)
    assert item["respond_within_h"] == 4 and item["respond_by"] == "2026-11-23T12:00:00.000Z"
    item = payloads.fault_summary("FLOW-LOW", {"since": "2026-11-23T08:00:00.000Z"}, MODELS["turbine-evc"],
                                  service)
    assert item["respond_within_h"] == 0 and item["respond_by"] is None    # 0: no promise


def test_the_fault_summary_of_state_and_status_knows_the_deadline():
    item = fault_entry("TEMP-SENSOR", {"since": "2026-11-23T07:02:11.000Z"}, MODELS["turbine-evc"])
    assert item["respond_within_h"] == 24 and item["respond_by"] == "2026-11-24T07:02:11.000Z"
    d = SimpleNamespace(name="fm-01", model=MODELS["turbine-evc"], cfg=SimpleNamespace(unit=1), available=True,
                        last_good_ts=None, last_error=None, last_error_ts=None, last_values={}, counters={})
    body = payloads.state(d, "rs485-1", {"TEMP-SENSOR": {"since": "2026-11-23T07:02:11.000Z"}},
                          SimpleNamespace(respond_within_h={"critical": 1, "major": 8, "minor": 72, "info": 0}))
    assert body["faults"][0]["respond_within_h"] == 8
    assert body["faults"][0]["respond_by"] == "2026-11-23T15:02:11.000Z"


# --------------------------------------------------------------------------- through the daemon

@pytest.mark.integration
def test_the_daemon_publishes_the_sites_promise_in_the_event_and_the_state(rig, mqtt):
    # Subscribed before the daemon starts, so the raise of fm-03's sensor
    # fault is seen; the rig's config promises 8 h for a major fault.
    events = mqtt("edgegw/site-t/+/event")
    states = mqtt("edgegw/site-t/fm-03/state")
    rig.start()
    try:
        ev = wait_for(lambda: next((m[2] for m in events.matching(
            lambda m: m[2].get("code") == "TEMP-SENSOR" and m[2].get("state") == "raised")), None), 20,
            what="the TEMP-SENSOR event")
        assert ev["respond_within_h"] == 8 and ev["severity"] == "major" and ev["device"] == "fm-03"
        st = wait_for(lambda: next((m[2] for m in reversed(states.matching(lambda m: m[2].get("faults")))), None),
                      20, what="a state with the fault")
        f = st["faults"][0]
        assert f["respond_within_h"] == 8 and f["respond_by"] == payloads.respond_by(f["since"], 8)
    finally:
        rig.stop()
