"""deliver/report.py and [device.report]: report by exception."""
from __future__ import annotations

from pathlib import Path

from gateway.deliver.report import Reporter
from gateway.site.config import ReportCfg, check_config, load_config
from protocols.models import load_models


def test_deadband_is_measured_from_the_last_published_value():
    r = Reporter(ReportCfg(heartbeat_s=300, deadband={"flow_m3h": 0.5}))
    assert r.due({"flow_m3h": 10.0}, {}, 0.0)            # nothing sent yet
    r.sent({"flow_m3h": 10.0}, {}, 0.0)
    assert not r.due({"flow_m3h": 10.4}, {}, 1.0)
    assert not r.due({"flow_m3h": 9.6}, {}, 2.0)
    assert r.due({"flow_m3h": 10.6}, {}, 3.0)
    # a slow drift adds up against the published value, not the previous reading
    steps = [10.2, 10.4, 10.6]
    assert [r.due({"flow_m3h": v}, {}, 4.0 + i) for i, v in enumerate(steps)] == [False, False, True]


def test_no_deadband_means_any_change_and_text_and_quality_changes_go_out():
    r = Reporter(ReportCfg(heartbeat_s=300, deadband={}))
    r.sent({"volume_std_m3": 5.0, "serial_number": "A"}, {}, 0.0)
    assert not r.due({"volume_std_m3": 5.0, "serial_number": "A"}, {}, 1.0)
    assert r.due({"volume_std_m3": 5.001, "serial_number": "A"}, {}, 1.0)
    assert r.due({"volume_std_m3": 5.0, "serial_number": "B"}, {}, 1.0)
    assert r.due({"volume_std_m3": 5.0}, {"serial_number": "timeout"}, 1.0)     # a field failed
    assert r.due({"volume_std_m3": 5.0, "serial_number": "A", "battery_V": 3.6}, {}, 1.0)  # a new value


def test_heartbeat_sends_even_when_nothing_changed():
    r = Reporter(ReportCfg(heartbeat_s=60, deadband={}))
    r.sent({"x_m3": 1.0}, {}, 100.0)
    assert not r.due({"x_m3": 1.0}, {}, 159.9)
    assert r.due({"x_m3": 1.0}, {}, 160.0)


def _cfg(tmp_path: Path, report: str) -> Path:
    p = tmp_path / "edgegw.toml"
    p.write_text('[gateway]\nid = "g"\nstate_dir = "s"\n[[bus]]\nname = "b"\nport = "tcp://127.0.0.1:1502"\n'
                 '[[device]]\nname = "fm"\nbus = "b"\nunit = 1\nmodel = "turbine-evc"\n' + report)
    return p


def test_config_checks_the_report_table_against_the_model(tmp_path):
    models = load_models()
    good = _cfg(tmp_path, "[device.report]\nheartbeat_s = 300\ndeadband = { flow_m3h = 0.5, pressure_kPa = 2 }\n")
    cfg = load_config(good, known_models=models)
    assert cfg.devices[0].report == ReportCfg(heartbeat_s=300.0, deadband={"flow_m3h": 0.5, "pressure_kPa": 2.0})
    bad = _cfg(tmp_path, "[device.report]\ndeadband = { flow_m3 = -1, status_word = 1 }\n")
    problems = check_config(bad, known_models=models)
    assert problems == [
        "device[0].report.deadband.flow_m3: -1 is outside 0-1000000000000",
        "device[0].report.heartbeat_s: required key is missing",
    ]
    typo = _cfg(tmp_path, "[device.report]\nheartbeat_s = 300\ndeadband = { flow_m3hh = 1, model_code = 1 }\n")
    problems = check_config(typo, known_models=models)
    assert problems[0] == ('device[0].report.deadband.flow_m3hh: "flow_m3hh" is not a value of model '
                           '"turbine-evc" (did you mean "flow_m3h"?)')
    # a raw word the model keeps for its fault triggers is never published, so it has no deadband
    assert problems[1].startswith('device[0].report.deadband.model_code: "model_code" is not a value')
    assert len(problems) == 2
    assert load_config(_cfg(tmp_path, ""), known_models=models).devices[0].report is None


def test_device_meta_and_homeassistant_tables(tmp_path):
    models = load_models()
    p = _cfg(tmp_path, '[device.meta]\naddress = "Block 3, boiler room"\narea = "Boiler room"\ncontact = ""\n')
    p.write_text(p.read_text() + '[homeassistant]\nenabled = true\n')
    cfg = load_config(p, known_models=models)
    assert cfg.devices[0].meta == {"address": "Block 3, boiler room", "area": "Boiler room", "contact": ""}
    assert (cfg.homeassistant.enabled, cfg.homeassistant.discovery_prefix) == (True, "homeassistant")
    bad = _cfg(tmp_path, '[device.meta]\nadress = "x"\nnote = "' + "x" * 201 + '"\n')
    bad.write_text(bad.read_text() + '[homeassistant]\ndiscovery_prefix = "ha/#"\n')
    assert check_config(bad, known_models=models) == [
        'device[0].meta.adress: unknown key (did you mean "address"?)',
        "device[0].meta.note: 201 characters: at most 200",
        'homeassistant.discovery_prefix: "ha/#" must not contain the MQTT wildcards + or #',
    ]
