"""Every packaged model's fault catalogue against the service manual.

Walks every model file (as zigbee-herdsman walks its device definitions) so
a new model is checked without writing a test for it, then pins the
manual's traps: ERR-1 is two different faults on two models, and each
service card clears only what the manual says it clears.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from protocols.models import CLEARED_BY, RULE_KEYS, SEVERITIES, load_models, validate_all

from gateway.faults import rules as gateway_rules

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs" / "models"

MANUAL_ROWS = (
    [f"A{i}" for i in range(1, 13)] + [f"B{i}" for i in range(1, 10)] + ["C"]
    + [f"D{i}" for i in range(1, 8)] + [f"E{i}" for i in range(1, 6)]
    + [f"F{i}" for i in range(1, 4)] + [f"G{i}" for i in range(1, 6)]
)

# Every manual row: the catalogue entries ("model:code") that cover it, or
# "doc:model" when that model's doc lists it under "Not detectable from the
# gateway" and says why. A row may be partly both.
COVERAGE: dict[str, list[str]] = {
    "A1": ["meihua-ic:NO-RESPONSE"],
    "A2": ["meihua-ic:VALVE-CLOSED", "meihua-ic:FAULT-SHUT"],
    "A3": ["doc:meihua-ic"],
    "A4": ["doc:meihua-ic"],               # counters wrong_card_count / fake_card_count
    "A5": ["meihua-ic:BALANCE-PROMPT", "meihua-ic:LOW-BALANCE"],
    "A6": ["meihua-ic:BATTERY-PROMPT"],
    "A7": ["doc:meihua-ic"],
    "A8": ["meihua-ic:ERR-1"],
    "A9": ["meihua-ic:ERR-3", "meihua-ic:ERR-4"],
    "A10": ["meihua-ic:ERR-5", "meihua-ic:FLOW-HIGH"],
    "A11": ["meihua-ic:ERR-6", "meihua-ic:ERR-7"],
    "A12": ["doc:meihua-ic"],
    "B1": ["mhcg:故障+关阀"],
    "B2": ["mhcg:低电+关阀"],
    "B3": ["mhcg:t"],
    "B4": ["doc:mhcg"],                    # counter card_fault_count
    "B5": ["doc:mhcg"],                    # counter card_not_loaded_count
    "B6": ["mhcg:COUNT-DRIFT"],
    "B7": ["mhcg:ERR-1"],
    "B8": ["mhcg:ERR-3"],
    "B9": ["mhcg:ERR-4"],
    "C": ["meihua-ic:TOTAL-RESET"],        # and every cleared_by (tests below)
    "D1": ["turbine-evc:SLEEP"],
    "D2": ["turbine-evc:NO-RESPONSE", "turbine-evc:GENERAL-FAULT", "turbine-evc:BATTERY-ALARM",
           "turbine-evc:TOTAL-RESET", "doc:turbine-evc"],
    "D3": ["turbine-evc:TEMP-SENSOR", "turbine-evc:PRESS-SENSOR", "turbine-evc:TEMP-HIGH",
           "turbine-evc:TEMP-LOW", "turbine-evc:PRESS-HIGH", "turbine-evc:PRESS-LOW"],
    "D4": ["turbine-evc:OVER-RANGE", "turbine-evc:FLOW-HIGH"],
    "D5": ["turbine-evc:FLOW-LOW", "doc:turbine-evc"],
    "D6": ["doc:turbine-evc"],
    "D7": ["turbine-evc:SELF-COUNT", "meihua-ic:SELF-COUNT"],
    "E1": ["doc:qianfeng-ic"],
    "E2": ["doc:qianfeng-ic"],             # counter card_error_count
    "E3": ["qianfeng-ic:请速购气", "qianfeng-ic:请换电池", "qianfeng-ic:安全保护",
           "qianfeng-ic:BATTERY-LOW", "qianfeng-ic:VALVE-CLOSED", "doc:qianfeng-ic"],
    "E4": ["doc:qianfeng-ic"],
    "E5": ["qianfeng-ic:SLEEP", "qianfeng-ic:NO-RESPONSE"],
    "F1": ["gas-alarm:POWER-LAMP-OFF", "gas-alarm:NO-RESPONSE"],
    "F2": ["gas-alarm:FAULT-LAMP"],
    "F3": ["gas-alarm:GAS-ALARM", "gas-alarm:VALVE-NOT-SHUT", "gas-alarm-controller:GAS-ALARM",
           "doc:gas-alarm"],
    "G1": ["gas-alarm-controller:MAINS-UNDER-VOLTAGE", "gas-alarm-controller:MAINS-LOW"],
    "G2": ["gas-alarm-controller:MAINS-OVERLOAD"],
    "G3": ["gas-alarm-controller:BACKUP-UNDER-VOLTAGE"],
    "G4": ["gas-alarm-controller:BACKUP-OPEN"],
    "G5": ["gas-alarm-controller:--F"],
}

IDENTIFY = {"meihua-ic": 1001, "qianfeng-ic": 1101, "mhcg": 2001, "turbine-evc": 3001,
            "gas-alarm": 4001, "gas-alarm-controller": 4101, "door-controller": 5001}

MODELS = load_models()
FAULTS = [(m, f) for m in sorted(MODELS) for f in MODELS[m].faults]
FAULT_IDS = [f"{m}:{f.code}" for m, f in FAULTS]

CJK = re.compile(r"[\u4e00-\u9fff]")
RULE_CODE = re.compile(r"[A-Z]+(?:-[A-Z]+)*\Z")
# Limits a site must be able to tune (meter size, local mains, battery type).
LIMIT_RULES = ("above_max", "below_min", "below_min_while_positive", "drift")


def not_detectable_section(model_id: str) -> str:
    text = (DOCS / f"{model_id}.md").read_text(encoding="utf-8")
    m = re.search(r"^## Not detectable from the gateway\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert m, f"docs/models/{model_id}.md has no 'Not detectable from the gateway' section"
    return m.group(1)


# --------------------------------------------------------------------------- the set

def test_packaged_models_have_no_problems():
    assert validate_all() == []


def test_one_model_per_device_family_of_the_manual():
    assert set(MODELS) == set(IDENTIFY)


@pytest.mark.parametrize("model_id", sorted(IDENTIFY))
def test_identify(model_id):
    m = MODELS[model_id]
    assert m.identify == {"field": "model_code", "equals": IDENTIFY[model_id]}
    assert m.field("model_code").type == "uint16"
    assert m.field("model_code").publish is False


def test_rule_vocabulary_matches_the_rules_module():
    assert set(RULE_KEYS) == set(gateway_rules.RULES)


# --------------------------------------------------------------------------- every fault

@pytest.mark.parametrize("model_id,fault", FAULTS, ids=FAULT_IDS)
class TestEveryFault:
    def test_trigger(self, model_id, fault):
        m = MODELS[model_id]
        names = {f.name for f in m.fields}
        t = fault.trigger
        if "rule" in t:
            assert t["rule"] in gateway_rules.RULES
            for key in ("field", "other", "when_field"):
                if key in t:
                    assert t[key] in names
            if t["rule"] in LIMIT_RULES:
                assert t.get("param"), "a limit the site cannot set"
            assert RULE_CODE.match(fault.code), "gateway rule codes are upper case with hyphens"
        else:
            field = m.field(t["field"])
            if "bit" in t:
                assert field.type == "uint16" and field.scale == 1 and field.offset == 0
                # the bit is described in the register's description
                described = {int(n) for n in re.findall(r"(?:\bbit |, )(\d+) ", field.description)}
                assert t["bit"] in described, f"bit {t['bit']} of {field.name} is not described"
            else:
                assert set(t) == {"field", "equals"}

    def test_texts(self, model_id, fault):
        for lang in ("en", "zh"):
            text = fault.text(lang)
            assert text.meaning.strip() and text.cleared_by.strip()
            assert text.causes and all(c.strip() for c in text.causes)
            assert text.remedy and all(r.strip() for r in text.remedy)
        for s in (fault.zh.meaning, fault.zh.cleared_by, *fault.zh.causes, *fault.zh.remedy):
            assert CJK.search(s), f"not Chinese: {s!r}"
        assert len(fault.zh.causes) == len(fault.en.causes)
        assert len(fault.zh.remedy) == len(fault.en.remedy)

    def test_ref_is_a_manual_row(self, model_id, fault):
        assert fault.ref in MANUAL_ROWS

    def test_words(self, model_id, fault):
        assert fault.severity in SEVERITIES
        assert fault.cleared_by in CLEARED_BY
        assert fault.debounce >= 1

    def test_severity_follows_the_rules(self, model_id, fault):
        # a shut valve on a customer is critical; a state is information
        if fault.valve_closed:
            assert fault.severity == "critical"
        if fault.kind == "state":
            assert fault.severity == "info" and not fault.site_visit and not fault.valve_closed
        if fault.severity == "critical" and not fault.valve_closed:
            assert fault.site_visit

    def test_in_the_coverage_table(self, model_id, fault):
        assert f"{model_id}:{fault.code}" in COVERAGE[fault.ref]

    def test_in_the_model_doc(self, model_id, fault):
        doc = (DOCS / f"{model_id}.md").read_text(encoding="utf-8")
        assert f"`{fault.code}`" in doc


@pytest.mark.parametrize("model_id", sorted(IDENTIFY))
def test_doc_lists_every_register(model_id):
    doc = (DOCS / f"{model_id}.md").read_text(encoding="utf-8")
    # the controller's channels are one row: `detector1_LEL` .. `detector8_LEL`
    missing = [f.name for f in MODELS[model_id].fields
               if f"`{f.name}`" not in doc and not re.fullmatch(r"detector[2-7]_LEL", f.name)]
    assert not missing


# --------------------------------------------------------------------------- coverage

def test_coverage_table_has_every_manual_row():
    assert set(COVERAGE) == set(MANUAL_ROWS)
    assert all(COVERAGE[row] for row in MANUAL_ROWS)


@pytest.mark.parametrize("row", MANUAL_ROWS)
def test_row_is_covered(row):
    for entry in COVERAGE[row]:
        kind, _, rest = entry.partition(":")
        if kind == "doc":
            section = not_detectable_section(rest)
            assert re.search(rf"\b{row}\b", section), f"{rest}.md does not say why {row} is not seen"
        else:
            fault = MODELS[kind].fault(rest)
            assert fault.ref == row


# --------------------------------------------------------------------------- the manual's traps

def test_err1_means_different_things_on_meihua_and_mhcg():
    home, plant = MODELS["meihua-ic"].fault("ERR-1"), MODELS["mhcg"].fault("ERR-1")
    assert "magnetic" in home.en.meaning.lower() and "磁" in home.zh.meaning
    assert "battery" in plant.en.meaning.lower() and "电池" in plant.zh.meaning
    assert "battery" not in home.en.meaning.lower()
    assert home.en.meaning != plant.en.meaning and home.zh.meaning != plant.zh.meaning
    assert home.cleared_by == "battery_reinsert" and plant.cleared_by == "manufacturer"
    assert home.ref == "A8" and plant.ref == "B7"


def test_fault_recovery_card_clears_only_err3_and_err4_on_mhcg():
    m = MODELS["mhcg"]
    by_card = {f.code for f in m.faults if f.cleared_by == "fault_recovery_card"}
    assert by_card == {"ERR-3", "ERR-4"}
    assert "fault-recovery card does not clear ERR-1" in m.fault("ERR-1").en.cleared_by
    assert "故障恢复卡不能清除ERR-1" in m.fault("ERR-1").zh.cleared_by
    for f in m.faults:
        if f.code not in by_card:
            assert f.cleared_by != "fault_card"


def test_fault_card_clears_err1_to_err7_on_meihua():
    m = MODELS["meihua-ic"]
    errs = sorted(f.code for f in m.faults if f.code.startswith("ERR-"))
    assert errs == ["ERR-1", "ERR-3", "ERR-4", "ERR-5", "ERR-6", "ERR-7"]   # the manual has no ERR-2
    for code in errs:
        f = m.fault(code)
        assert f.cleared_by == ("battery_reinsert" if code == "ERR-1" else "fault_card")
        assert "fault (repair) card" in f.en.cleared_by and "ERR-1 to ERR-7" in f.en.cleared_by
        assert "故障卡" in f.zh.cleared_by and "ERR-1至ERR-7" in f.zh.cleared_by
    assert not any(f.cleared_by == "fault_recovery_card" for f in m.faults)


def test_err1_on_meihua_says_both_ways_to_clear():
    f = MODELS["meihua-ic"].fault("ERR-1")
    assert "re-insert the battery once" in f.en.cleared_by
    assert "重新装一次电池" in f.zh.cleared_by


def test_device_codes_as_the_devices_show_them():
    codes = {m: {f.code for f in MODELS[m].faults} for m in MODELS}
    assert {"ERR-1", "ERR-3", "ERR-4", "ERR-5", "ERR-6", "ERR-7"} <= codes["meihua-ic"]
    assert {"故障+关阀", "低电+关阀", "t", "ERR-1", "ERR-3", "ERR-4"} <= codes["mhcg"]
    assert {"SLEEP"} <= codes["turbine-evc"]
    assert {"请速购气", "请换电池", "安全保护"} <= codes["qianfeng-ic"]
    assert {"--F"} <= codes["gas-alarm-controller"]


def test_sleep_is_a_state_not_an_outage():
    f = MODELS["turbine-evc"].fault("SLEEP")
    assert (f.kind, f.severity, f.valve_closed, f.site_visit) == ("state", "info", False, False)
    assert f.trigger == {"field": "status_word", "bit": 0}


def test_mhcg_low_battery_says_which_battery_by_supply():
    f = MODELS["mhcg"].fault("低电+关阀")
    assert "external_power" in f.en.meaning and "internal battery" in f.en.meaning
    assert "外接电源" in f.zh.meaning and "内部电池" in f.zh.meaning
    assert MODELS["mhcg"].field("external_power")


def test_gas_alarm_controller_remedies_start_with_safety():
    for f in MODELS["gas-alarm-controller"].faults:
        if f.ref.startswith("G"):
            assert "no explosive or toxic gas" in f.en.remedy[0]
            assert "易燃易爆或有毒气体" in f.zh.remedy[0]


def test_gas_alarm_is_critical_and_valve_failure_is_its_own_fault():
    m = MODELS["gas-alarm"]
    assert m.fault("GAS-ALARM").severity == "critical" and m.fault("GAS-ALARM").valve_closed
    v = m.fault("VALVE-NOT-SHUT")
    assert v.severity == "critical" and not v.valve_closed and v.ref == "F3"


@pytest.mark.parametrize("model_id,code,rule,field,default", [
    ("meihua-ic", "LOW-BALANCE", "below_min", "balance_m3", 5.0),
    ("qianfeng-ic", "BATTERY-LOW", "below_min", "battery_V", 4.0),
    ("gas-alarm-controller", "MAINS-LOW", "below_min", "mains_V", 180.0),
])
def test_manual_thresholds(model_id, code, rule, field, default):
    t = MODELS[model_id].fault(code).trigger
    assert (t["rule"], t["field"], t["default"]) == (rule, field, default)


def test_no_response_is_always_the_stale_rule():
    for m, f in FAULTS:
        assert (f.code == "NO-RESPONSE") == (f.trigger.get("rule") == "stale"), f"{m}:{f.code}"


def test_the_product_does_not_read_the_source_material():
    # the manual's facts live in the model files and docs, in our own words
    for path in [*(REPO / "protocols").rglob("*.py"), *(REPO / "protocols").rglob("*.toml"),
                 *DOCS.glob("*.md")]:
        assert "/work/shared" not in path.read_text(encoding="utf-8"), path
