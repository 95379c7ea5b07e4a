"""[[param]] in model files: the declaration, the triggers that name one, and
the params every device takes; then the params used in deploy/, docs/ and the
shipped scenarios, which must all be declared by the model they are used with.
"""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from gateway.faults import interpret
from protocols.models import (
    COMMON_PARAMS,
    ModelError,
    Param,
    declared_params,
    leaves,
    load_model,
    load_models,
    param_users,
)
from tests.unit import params_doc
from tests.unit.test_models import GOOD, PARAMS, good, write

REPO = Path(__file__).resolve().parents[2]
MODELS = load_models()


def problems_of(tmp_path, text: str) -> list[str]:
    with pytest.raises(ModelError) as e:
        load_model(write(tmp_path, "test-meter.toml", text))
    return e.value.problems


def with_params(params: str, trigger: str = '{ rule = "above_max", field = "volume_m3", param = "max_m3" }') -> str:
    return GOOD.format(id="test-meter", params=params, trigger=trigger)


# --------------------------------------------------------------------------- the declaration

def test_a_declared_param_loads_and_its_default_reaches_the_trigger(tmp_path):
    m = load_model(write(tmp_path, "test-meter.toml", good()))
    assert m.params == (Param(name="max_m3", unit="m3", meaning_en="Largest volume", meaning_zh="最大体积",
                              min=0.0, max=100.0, default=1.0),)
    assert m.param("max_m3").meaning("zh-CN") == "最大体积"
    # the rules read the limit from the trigger: the declaration's default is copied in
    assert m.fault("FLOW-HIGH").trigger == {"rule": "above_max", "field": "volume_m3", "param": "max_m3",
                                            "default": 1.0}
    with pytest.raises(KeyError):
        m.param("nope")


def test_a_default_written_in_the_trigger_too_is_refused(tmp_path):
    # one source of truth: the old form (param and default in the trigger)
    text = good(trigger='{ rule = "above_max", field = "volume_m3", param = "max_m3", default = 2.0 }')
    assert problems_of(tmp_path, text) == [
        'test-meter.toml: fault[1].trigger.default: param "max_m3" has its default in its [[param]] table: '
        "write it there, not here"]


@pytest.mark.parametrize("param,expected", [
    ('name = "Max"\nunit = "m3"\nmin = 0\nmax = 1\nmeaning_en = "e"\nmeaning_zh = "中"',
     ['param[0].name: "Max" is not quantity[_unit]']),
    ('name = "max_m3"\nmin = 0\nmax = 1\nmeaning_en = "e"\nmeaning_zh = "中"',
     ['param[0].unit: missing ("" for a count)']),
    ('name = "max_m3"\nunit = "m3"\nmax = 1\nmeaning_en = "e"\nmeaning_zh = "中"',
     ["param[0].min: missing (every param has an allowed range)"]),
    ('name = "max_m3"\nunit = "m3"\nmin = 5\nmax = 1\nmeaning_en = "e"\nmeaning_zh = "中"',
     ["param[0].min: 5 is above max 1"]),
    ('name = "max_m3"\nunit = "m3"\ndefault = 500.0\nmin = 0\nmax = 100\nmeaning_en = "e"\nmeaning_zh = "中"',
     ["param[0].default: 500 is outside 0 to 100 m3"]),
    ('name = "max_m3"\nunit = "m3"\ntype = "integer"\ndefault = 1.5\nmin = 0\nmax = 100\n'
     'meaning_en = "e"\nmeaning_zh = "中"',
     ["param[0].default: expected an integer, got float 1.5"]),
    ('name = "max_m3"\nunit = "m3"\ntype = "text"\nmin = 0\nmax = 1\nmeaning_en = "e"\nmeaning_zh = "中"',
     ['param[0].type: "text" is not a param type (number, integer)']),
    ('name = "max_m3"\nunit = "m3"\nmin = 0\nmax = 1\nmeaning_en = "e"',
     ["param[0].meaning_zh: missing"]),
    ('name = "max_m3"\nunit = "m3"\nmin = 0\nmax = 1\nmeaning_en = "e"\nmeaning_zh = "中"\ncolour = 1',
     ["param[0].colour: unknown key"]),
])
def test_declaration_problems_by_key_path(tmp_path, param, expected):
    got = problems_of(tmp_path, with_params(f"\n[[param]]\n{param}\n"))
    for want in expected:
        assert any(p.startswith(f"test-meter.toml: {want}") for p in got), "\n".join(got)


def test_trigger_problems_with_params(tmp_path):
    flow = "\n[[param]]\nname = \"flow_m3h\"\nunit = \"m3/h\"\ndefault = 1.0\nmin = 0\nmax = 9\n" \
           "meaning_en = \"e\"\nmeaning_zh = \"中\"\n"
    nodefault = PARAMS["max_m3"].replace("default = 1.0\n", "")
    cases = [
        (with_params("", '{ rule = "above_max", field = "volume_m3", param = "max_m3" }'),
         'fault[1].trigger.param: "max_m3" is not a declared param (add a [[param]] with name = "max_m3")'),
        (with_params(flow, '{ rule = "above_max", field = "volume_m3", param = "flow_m3h" }'),
         'fault[1].trigger.param: "flow_m3h" is in "m3/h" but field "volume_m3" is in "m3"'),
        (with_params(nodefault), 'fault[1].trigger.param: "max_m3" has no default; rule above_max needs one'),
        (with_params(PARAMS["max_m3"], '{ rule = "above_max", field = "volume_m3" }'),
         "fault[1].trigger.default: missing (rule above_max needs default or param)"),
        (with_params(PARAMS["max_m3"], '{ rule = "above_max", field = "volume_m3", default = 2.0 }'),
         'param[0].name: "max_m3" is read by no trigger of this model'),
        (with_params(PARAMS["max_m3"], '{ rule = "unchanged_days", field = "volume_m3", param = "max_m3" }'),
         'fault[1].trigger.param: "max_m3" is in "m3"; rule unchanged_days counts days (unit "d")'),
        (with_params(PARAMS["max_m3"] + PARAMS["max_m3"]),
         'param[1].name: "max_m3" is already param[0]'),
        (with_params(PARAMS["max_m3"].replace('"max_m3"', '"flap_count"'),
                     '{ rule = "above_max", field = "volume_m3", param = "flap_count" }'),
         'param[0].name: "flap_count" is a param every device takes'),
    ]
    for text, want in cases:
        got = problems_of(tmp_path, text)
        assert any(p.startswith(f"test-meter.toml: {want}") for p in got), (want, got)


def test_param_problems_are_listed_between_model_and_registers(tmp_path):
    text = with_params("\n[[param]]\nname = 3\n").replace('name_en = "Test meter"', "")
    got = problems_of(tmp_path, text)
    sections = [p.split(": ")[1].split("[")[0].split(".")[0] for p in got]
    assert sections[0] == "model" and "param" in sections
    assert sections == sorted(sections, key=["model", "param", "register", "fault"].index)


# --------------------------------------------------------------------------- the packaged models

def test_every_limit_a_packaged_rule_reads_from_a_site_is_declared():
    for m in MODELS.values():
        declared = {p.name for p in m.params}
        named = {leaf["param"] for f in m.faults for leaf in leaves(f.trigger) if "param" in leaf}
        assert named == declared, m.id
        assert all(param_users(m)[name] for name in declared), m.id


def test_turbine_qmin_and_starting_flow_are_separate_params():
    m = MODELS["turbine-evc"]
    qmin, start = m.param("rated_flow_min_m3h"), m.param("starting_flow_m3h")
    assert start.default < qmin.default
    assert "Qmin" in qmin.meaning_en and "Qmin" in qmin.meaning_zh
    assert "始动流量" in start.meaning_zh and "starting flow" in start.meaning_en
    assert param_users(m) == {
        "rated_flow_max_m3h": ["FLOW-HIGH"], "rated_flow_min_m3h": ["FLOW-LOW"],
        "starting_flow_m3h": ["FLOW-LOW", "FLOW-BELOW-START"], "temperature_max_C": ["TEMP-HIGH"],
        "temperature_min_C": ["TEMP-LOW"], "pressure_max_kPa": ["PRESS-HIGH"],
        "pressure_min_kPa": ["PRESS-LOW"], "pressure_lost_kPa": ["PRESS-LOW", "PRESS-LOST"]}
    for name in ("pressure_max_kPa", "pressure_min_kPa", "pressure_lost_kPa"):
        p = m.param(name)
        assert p.unit == "kPa" and "absolute" in p.meaning_en and "绝压" in p.meaning_zh
        assert p.default > 101.325          # a limit below the atmosphere never fires


def test_defaults_are_those_the_fault_texts_promise():
    # "160 m³/h unless the site sets another": the declared default is the one the text names
    promised = {("turbine-evc", "FLOW-HIGH"): "160", ("turbine-evc", "FLOW-LOW"): "8",
                ("turbine-evc", "FLOW-BELOW-START"): "0.8", ("turbine-evc", "TEMP-HIGH"): "60",
                ("turbine-evc", "TEMP-LOW"): "25", ("turbine-evc", "PRESS-HIGH"): "520",
                ("turbine-evc", "PRESS-LOW"): "200", ("turbine-evc", "PRESS-LOST"): "110",
                ("meihua-ic", "LOW-BALANCE"): "5", ("meihua-ic", "FLOW-HIGH"): "6",
                ("mhcg", "COUNT-DRIFT"): "1", ("qianfeng-ic", "BATTERY-LOW"): "4.0",
                ("gas-alarm-controller", "MAINS-LOW"): "180"}
    for (mid, code), number in promised.items():
        f = MODELS[mid].fault(code)
        first = next(leaf for leaf in leaves(f.trigger) if "param" in leaf)
        # "零下25摄氏度": the sign is a word in Chinese
        assert f"{abs(MODELS[mid].param(first['param']).default):g}" == f"{float(number):g}", (mid, code)
        assert number in f.en.meaning and number in f.zh.meaning, (mid, code)


CJK = re.compile(r"[\u4e00-\u9fff]")


def test_param_meanings_are_for_people():
    registers = {f.name for m in MODELS.values() for f in m.fields}
    keys = {n for n in registers if "_" in n} | {p.name for m in MODELS.values() for p in m.params} \
        | {p.name for p in COMMON_PARAMS} | {"poll_interval_s"}
    for m in MODELS.values():
        for p in (*m.params, *COMMON_PARAMS):
            assert CJK.search(p.meaning_zh), (m.id, p.name)
            for text in (p.meaning_en, p.meaning_zh):
                named = [w for w in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text) if w in keys]
                assert not named, (m.id, p.name, named)


def test_common_params_are_what_the_interpreter_reads():
    by = {p.name: p for p in COMMON_PARAMS}
    assert by["flap_count"].default == interpret.FLAP_COUNT and by["flap_count"].type == "integer"
    assert by["flap_window_s"].default == interpret.FLAP_WINDOW_S
    assert by["flap_hold_s"].default == interpret.FLAP_HOLD_S
    # every params.get("...") in gateway/ reads a common param or poll_interval_s
    read = set()
    for path in (REPO / "gateway").rglob("*.py"):
        read |= set(re.findall(r"params\.get\(\s*\"([a-z_A-Z0-9]+)\"", path.read_text(encoding="utf-8")))
    assert read == set(by), read
    assert set(declared_params(MODELS["gas-alarm"])) == set(by)


# --------------------------------------------------------------------------- params used in the shipped files

def _toml_blocks(path: Path) -> list[str]:
    return re.findall(r"```toml\n(.*?)```", path.read_text(encoding="utf-8"), re.S)


def _device_params(doc: dict) -> list[tuple[str, dict]]:
    return [(d["model"], d["params"]) for d in doc.get("device", [])
            if isinstance(d, dict) and "model" in d and isinstance(d.get("params"), dict)]


def _uses() -> list[tuple[str, str, dict]]:
    """(where, model, params) for every [device.params] a person may copy."""
    out = []
    docs = sorted((REPO / "docs").rglob("*.md"))
    for path in docs:
        for i, block in enumerate(_toml_blocks(path)):
            try:
                doc = tomllib.loads(block)
            except tomllib.TOMLDecodeError:
                # a fragment (one key of a model file, ...); it must not hide params
                assert "[device.params]" not in block and "params =" not in block, (path, i)
                continue
            if "simulator" in doc or "event" in doc:
                continue        # a scenario: its params drive the simulated meter
            out += [(f"{path.relative_to(REPO)} block {i}", m, p) for m, p in _device_params(doc)]
    example = REPO / "deploy" / "edgegw.example.toml"
    out += [("deploy/edgegw.example.toml", m, p) for m, p in _device_params(tomllib.loads(example.read_text()))]
    for path in sorted((REPO / "simulators" / "scenarios").glob("*.toml")):
        text = path.read_text(encoding="utf-8")
        doc = tomllib.loads(text)
        model_of = {d["name"]: d["model"] for d in doc.get("device", [])}
        # the gateway side: [gateway_params.<device>] (the simulator's own
        # params = {...} on [[device]] drive the simulated meter, not the gateway)
        for name, params in doc.get("gateway_params", {}).items():
            out.append((f"{path.name} [gateway_params.{name}]", model_of[name], params))
        # and the header comment a person copies into the gateway's config
        header = "\n".join(ln[1:].strip() for ln in text.split("[simulator]")[0].splitlines()
                           if ln.startswith("#"))
        m = re.search(r"^model = \"([^\"]+)\"$.*?^\[device\.params\]\n((?:[a-z_A-Z0-9]+ = [^\n]*\n)+)", header + "\n",
                      re.M | re.S)
        if m:
            out.append((f"{path.name} header", m.group(1), tomllib.loads(m.group(2))))
    return out


def test_every_param_used_in_deploy_docs_and_scenarios_is_declared():
    uses = _uses()
    wheres = {w.split(" ")[0] for w, _, _ in uses}
    # the places the issue names, so this test cannot pass by finding nothing
    assert {"deploy/edgegw.example.toml", "docs/configuration.md", "docs/faults.md", "docs/simulators.md",
            "turbine-evc-faults.toml", "qianfeng-ic-faults.toml"} <= wheres, wheres
    assert any("rated_flow_min_m3h" in p for _, m, p in uses if m == "turbine-evc")
    bad = []
    for where, model_id, params in uses:
        declared = declared_params(MODELS[model_id])
        for key, value in params.items():
            p = declared.get(key)
            if p is None:
                bad.append(f"{where}: {key} is not a param of {model_id}")
            elif p.problem(value) is not None:
                bad.append(f"{where}: {key} = {value!r}: {p.problem(value)}")
    assert not bad, "\n".join(bad)


# --------------------------------------------------------------------------- the docs

def test_configuration_md_params_tables_match_the_model_files():
    text = params_doc.DOC.read_text(encoding="utf-8")
    assert params_doc.current(text) == params_doc.render(), \
        "docs/configuration.md is out of date: run .venv/bin/python -m tests.unit.params_doc"


@pytest.mark.parametrize("model_id", sorted(m for m in MODELS if MODELS[m].params))
def test_each_model_doc_lists_its_params_with_their_defaults(model_id):
    doc = (REPO / "docs" / "models" / f"{model_id}.md").read_text(encoding="utf-8")
    section = re.search(r"^## Device params\n(.*?)(?=^## |\Z)", doc, re.M | re.S).group(1)
    for p in MODELS[model_id].params:
        row = next((ln for ln in section.splitlines() if f"`{p.name}`" in ln), None)
        assert row is not None, f"{model_id}.md: {p.name} not in Device params"
        if p.default is not None:
            assert re.search(rf"(?<![\d.]){re.escape(f'{p.default:.1f}')}(?![\d])", row), (model_id, p.name, row)
