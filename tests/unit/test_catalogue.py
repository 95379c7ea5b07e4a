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

from gateway.faults import rules as gateway_rules
from protocols.models import (
    CLEARED_BY,
    RULE_KEYS,
    SEVERITIES,
    leaves,
    load_models,
    validate_all,
)

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
    "A2": ["meihua-ic:VALVE-CLOSED", "meihua-ic:BALANCE-ZERO"],
    "A3": ["doc:meihua-ic"],
    "A4": ["meihua-ic:CARD-REFUSED"],      # counters wrong_card_count / fake_card_count
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
    "B4": ["mhcg:CARD-FAULT"],             # counter card_fault_count
    "B5": ["mhcg:CARD-NOT-LOADED"],        # card_not_loaded_count up, purchase_count not
    "B6": ["mhcg:COUNT-DRIFT"],
    "B7": ["mhcg:ERR-1"],
    "B8": ["mhcg:ERR-3"],
    "B9": ["mhcg:ERR-4"],
    "C": ["meihua-ic:TOTAL-RESET", "mhcg:TOTAL-RESET", "mhcg:WIPED"],  # and every cleared_by
    "D1": ["turbine-evc:SLEEP", "turbine-evc:FLOW-BELOW-START", "turbine-evc:PRESS-LOST"],
    "D2": ["turbine-evc:NO-RESPONSE", "turbine-evc:GENERAL-FAULT", "turbine-evc:BATTERY-ALARM",
           "turbine-evc:TOTAL-RESET", "doc:turbine-evc"],
    "D3": ["turbine-evc:TEMP-SENSOR", "turbine-evc:PRESS-SENSOR", "turbine-evc:TEMP-HIGH",
           "turbine-evc:TEMP-LOW", "turbine-evc:PRESS-HIGH", "turbine-evc:PRESS-LOW"],
    "D4": ["turbine-evc:OVER-RANGE", "turbine-evc:FLOW-HIGH"],
    "D5": ["turbine-evc:FLOW-LOW", "doc:turbine-evc"],
    "D6": ["doc:turbine-evc"],
    "D7": ["turbine-evc:SELF-COUNT", "meihua-ic:SELF-COUNT"],
    "E1": ["qianfeng-ic:NO-COUNT"],        # off until a site sets no_count_days
    "E2": ["qianfeng-ic:CARD-ERROR"],      # counter card_error_count
    "E3": ["qianfeng-ic:请速购气", "qianfeng-ic:请换电池", "qianfeng-ic:安全保护",
           "qianfeng-ic:BATTERY-LOW", "qianfeng-ic:VALVE-CLOSED", "doc:qianfeng-ic"],
    "E4": ["qianfeng-ic:BATTERY-PROMPT-STUCK"],
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
        if "rule" in fault.trigger:
            assert RULE_CODE.match(fault.code), "gateway rule codes are upper case with hyphens"
        for t in leaves(fault.trigger):
            if "rule" in t:
                assert t["rule"] in gateway_rules.RULES
                for key in ("field", "other", "when_field"):
                    if key in t:
                        assert t[key] in names
                # a sign test (balance above zero: "gas left") is no site limit
                if t["rule"] in LIMIT_RULES and t.get("default") != 0:
                    assert t.get("param"), "a limit the site cannot set"
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
    # the meter interface unit keeps ERR-1 through a battery pull (firmware/miu)
    assert home.cleared_by == "fault_card" and plant.cleared_by == "manufacturer"
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
        assert f.cleared_by == "fault_card"
        assert "fault (repair) card" in f.en.cleared_by and "ERR-1 to ERR-7" in f.en.cleared_by
        assert "故障卡" in f.zh.cleared_by and "ERR-1至ERR-7" in f.zh.cleared_by
        # the meter interface unit shuts the valve on every ERR code
        assert f.valve_closed and f.severity == "critical"
    assert not any(f.cleared_by == "fault_recovery_card" for f in m.faults)


def test_err1_on_meihua_agrees_with_the_firmware_and_says_where_the_manual_differs():
    # firmware/miu keeps ERR-1 in flash: a battery pull does not clear it
    # (tests/firmware/test_core.py), while the manual's A8 says it does. The
    # engineer reads the remedy and the cleared-by sentence; both say so.
    f = MODELS["meihua-ic"].fault("ERR-1")
    assert "A8" in f.en.cleared_by and "battery pull" in f.en.cleared_by
    assert "A8" in f.zh.cleared_by and "只有故障卡能清除" in f.zh.cleared_by
    assert any("A8" in r and "does not clear ERR-1" in r for r in f.en.remedy)
    assert any("A8" in r and "不能清除ERR-1" in r for r in f.zh.remedy)


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
    # by what the engineer looks at on site, not by the register that says it
    f = MODELS["mhcg"].fault("低电+关阀")
    assert "external power supply" in f.en.meaning and "internal battery" in f.en.meaning
    assert "外接电源" in f.zh.meaning and "内部电池" in f.zh.meaning
    assert "external power supply is connected" in f.en.remedy[0] and "外接电源" in f.zh.remedy[0]
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


# --------------------------------------------------------------------------- what a person reads

def _texts(fault):
    for lang in ("en", "zh"):
        t = fault.text(lang)
        yield lang, t.meaning
        yield lang, t.cleared_by
        yield from ((lang, c) for c in t.causes)
        yield from ((lang, r) for r in t.remedy)


# Device config keys the gateway itself reads (docs/faults.md, docs/configuration.md).
CONFIG_KEYS = {"poll_interval_s", "flap_count", "flap_window_s", "flap_hold_s"}
IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def test_no_human_text_names_a_register_or_a_config_key():
    # The engineer reads these at a meter: "see whether an external supply is
    # connected", not "read external_power". Checked against every model's
    # registers and every param any model's triggers name.
    registers = {f.name for m in MODELS.values() for f in m.fields}
    params = {leaf["param"] for m in MODELS.values() for f in m.faults
              for leaf in leaves(f.trigger) if "param" in leaf}
    # register names that are plain English words can only be matched as such
    words = {n for n in registers if "_" not in n}
    assert words == {"buzzer"}, "a new one-word register name: add it here if it is an English word"
    keys = (registers - words) | params | CONFIG_KEYS
    found = []
    for mid, m in MODELS.items():
        for name in (m.name_en, m.name_zh):
            found += [f"{mid} name: {w}" for w in IDENT.findall(name) if w in keys]
        for f in m.faults:
            for lang, text in _texts(f):
                found += [f"{mid}:{f.code} {lang}: {w}" for w in IDENT.findall(text) if w in keys]
    assert not found


def _repo_text_files():
    for top in ("protocols", "docs", "simulators", "deploy", "firmware", "gateway", "tests/cli/golden"):
        for path in (REPO / top).rglob("*"):
            if path.is_file() and path.suffix in (".toml", ".md", ".py", ".json", ".txt") \
                    and "node_modules" not in path.parts:
                yield path
    yield REPO / "README.md"


def test_brand_names():
    # 美华 (Meihua) and 前锋 (Qianfeng), as the manual writes them.
    assert "美华" in MODELS["meihua-ic"].name_zh and "Meihua" in MODELS["meihua-ic"].name_en
    assert "前锋" in MODELS["qianfeng-ic"].name_zh and "Qianfeng" in MODELS["qianfeng-ic"].name_en
    wrong = [str(p.relative_to(REPO)) for p in _repo_text_files()
             if any(w in p.read_text(encoding="utf-8", errors="replace") for w in ("梅花", "千峰"))]
    assert not wrong


def test_controller_text_names_the_controller_cards():
    # On MHCG the 维修卡 is the initialise card (section C); the residential
    # 故障卡（维修卡） must not leak into controller text, and every entry that
    # mentions a card warns never to use the 维修卡 to clear a fault.
    for f in MODELS["mhcg"].faults:
        for lang, text in _texts(f):
            assert "故障卡" not in text.replace("故障恢复卡", ""), (f.code, text)
            assert "fault card" not in text and "repair) card" not in text, (f.code, text)
        mentions = any("卡" in t for _, t in _texts(f) if _ == "zh") or \
            any("card" in t for lang, t in _texts(f) if lang == "en")
        if mentions:
            assert any("维修卡" in r and "切勿" in r and "初始化卡" in r for r in f.zh.remedy), f.code
            assert any("维修卡" in r and "Never" in r and "initialise card" in r for r in f.en.remedy), f.code
    b1 = MODELS["mhcg"].fault("故障+关阀")
    assert sum("插卡恢复" in r for r in b1.zh.remedy) == 2 and "插卡恢复" in b1.zh.cleared_by
    assert any("更换芯片" in r for r in b1.zh.remedy) and any("更换芯片" in r for r in b1.en.remedy)
    assert not any(re.search(r"replace\b[^:;,]*\bboard", r.lower()) for r in b1.en.remedy)
    assert not any(re.search(r"更换[^：；，]*电路板", r) for r in b1.zh.remedy)


def test_the_err_row_is_reported_not_b1_and_t_not_b2():
    m = MODELS["mhcg"]
    assert {"field": "error_code", "equals": 0} in list(leaves(m.fault("故障+关阀").trigger))
    assert {"not": {"field": "status_word", "bit": 3}} in m.fault("低电+关阀").trigger["all"]


def test_manual_words_not_back_translations():
    for mid, f in FAULTS:
        for lang, text in _texts(f):
            if lang == "zh":
                for bad in ("陈旧库存", "余额不足", "节电"):
                    assert bad not in text, (mid, f.code, bad)
    assert "欠量" in MODELS["meihua-ic"].fault("BALANCE-PROMPT").zh.meaning
    assert "省电" in MODELS["qianfeng-ic"].fault("SLEEP").zh.meaning
    stuck = MODELS["qianfeng-ic"].fault("BATTERY-PROMPT-STUCK")
    assert "过期" in stuck.zh.causes[0] and "劣质" in stuck.zh.causes[0]
    assert "检测卡" in " ".join(MODELS["mhcg"].fault("CARD-NOT-LOADED").zh.remedy)


def test_d7_is_any_interference():
    for mid in ("turbine-evc", "meihua-ic"):
        f = MODELS[mid].fault("SELF-COUNT")
        assert "受干扰" in f.zh.causes[0] and "不只是电气干扰" in f.zh.causes[0], mid
        assert "排除干扰" in f.zh.remedy[0] or "排除干扰" in f.en.remedy[0], mid
        assert "not only electrical" in f.en.causes[0], mid


def test_qianfeng_last_resort_is_the_recovery_transfer_swap():
    m = MODELS["qianfeng-ic"]
    for code in ("NO-COUNT", "CARD-ERROR", "NO-RESPONSE"):     # E1, E2, E5
        zh = " ".join(m.fault(code).zh.remedy)
        en = " ".join(m.fault(code).en.remedy)
        for word in ("回收转移卡", "表号", "铅封号", "剩余气量"):
            assert word in zh, (code, word)
        assert "seal number" in en and "meter number" in en, code
    safety = m.fault("安全保护")
    assert safety.zh.remedy[0].startswith("检查操作") and len(safety.zh.remedy) == 1
    assert "does not say" in safety.en.cleared_by and "没有说明" in safety.zh.cleared_by


def test_qianfeng_battery_low_does_not_claim_the_valve():
    m = MODELS["qianfeng-ic"]
    low = m.fault("BATTERY-LOW")
    assert not low.valve_closed and low.severity != "critical"
    assert "blank display" in low.en.meaning and "显示屏不亮" in low.zh.meaning
    # the 4.0 V check reads one param, for E3 and E4 alike
    stuck = [leaf for leaf in leaves(m.fault("BATTERY-PROMPT-STUCK").trigger) if "rule" in leaf]
    assert stuck == [low.trigger]


def test_turbine_starting_flow_is_not_qmin():
    m = MODELS["turbine-evc"]
    start = m.fault("FLOW-BELOW-START").trigger
    qmin = next(leaf for leaf in leaves(m.fault("FLOW-LOW").trigger)
                if leaf.get("rule") == "below_min_while_positive")
    assert start["param"] == "starting_flow_m3h" and qmin["param"] == "rated_flow_min_m3h"
    assert 0 < start["default"] < qmin["default"]
    assert "始动流量" in m.fault("SLEEP").zh.meaning and "starting flow" in m.fault("SLEEP").en.meaning


def test_turbine_pressures_are_absolute_and_can_trigger():
    m = MODELS["turbine-evc"]
    assert "absolute" in m.field("pressure_kPa").description
    atmosphere = 101.325
    for code in ("PRESS-LOW", "PRESS-LOST", "PRESS-HIGH"):
        f = m.fault(code)
        for leaf in leaves(f.trigger):
            if leaf.get("field") == "pressure_kPa" and "default" in leaf:
                assert leaf["default"] > atmosphere, (code, leaf)
        assert "absolute" in f.en.meaning and "绝压" in f.zh.meaning, code
    assert m.fault("PRESS-LOST").trigger["default"] < m.fault("PRESS-LOW").trigger["all"][0]["default"]


def test_central_monitoring_can_catch_a7_and_a12():
    section = not_detectable_section("meihua-ic")
    for row in ("A7", "A12"):
        line = next(ln for ln in section.splitlines() if ln.startswith(f"| {row} "))
        assert "sales record" in line and "published balance" in line, row
