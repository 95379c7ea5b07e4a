"""The firmware's register constants equal the gateway's residential meter model."""

import re
import tomllib
from pathlib import Path

from miu import regs

MODEL = Path(__file__).resolve().parents[2] / "protocols" / "models" / "meihua-ic.toml"

WIDTH = {"uint16": 1, "int16": 1, "uint32": 2, "int32": 2}

# model field -> (firmware constant, function, the scale the firmware's raw values assume)
EXPECTED = {
    "volume_m3": (regs.IR_VOLUME, "input", 0.001),          # litres
    "balance_m3": (regs.IR_BALANCE, "input", 0.001),        # litres
    "battery_V": (regs.IR_BATTERY, "input", 0.001),         # mV
    "valve_state": (regs.IR_VALVE, "input", 1.0),
    "status_word": (regs.IR_STATUS, "input", 1.0),
    "error_code": (regs.IR_ERROR, "input", 1.0),
    "wrong_card_count": (regs.IR_WRONG_CARD, "input", 1.0),
    "fake_card_count": (regs.IR_FAKE_CARD, "input", 1.0),
    "flow_m3h": (regs.IR_FLOW, "input", 0.001),
    "days_without_pulse": (regs.IR_DAYS_NO_PULSE, "input", 1.0),
    "pulse_count": (regs.IR_PULSE_COUNT, "input", 1.0),
    "model_code": (regs.IR_MODEL, "input", 1.0),
    "firmware_version": (regs.IR_FW_VERSION, "input", 1.0),
    "pulse_litres": (regs.HR_PULSE_LITRES, "holding", 0.01),   # centilitres
    "no_signal_days": (regs.HR_NO_SIGNAL_DAYS, "holding", 1.0),
    "dead_meter_days": (regs.HR_DEAD_METER_DAYS, "holding", 1.0),
    "max_flow_m3h": (regs.HR_MAX_FLOW, "holding", 0.001),
    "low_balance_m3": (regs.HR_LOW_BALANCE, "holding", 0.001),  # litres
    "low_battery_V": (regs.HR_LOW_BATTERY, "holding", 0.001),   # mV
}

# Firmware registers the model does not list as fields (write-only registers,
# documented in the model's comments).
NOT_FIELDS = {"HR_COMMAND": 100, "HR_CREDIT": 107}


def load():
    with MODEL.open("rb") as f:
        return tomllib.load(f)


def test_every_model_register_matches_by_name():
    model = load()
    names = {r["name"] for r in model["register"]}
    assert names == set(EXPECTED)
    for r in model["register"]:
        const, function, scale = EXPECTED[r["name"]]
        assert r["address"] == const, r["name"]
        assert r.get("function", "holding") == function, r["name"]
        assert r.get("scale", 1.0) == scale, r["name"]
        assert r.get("order", "ABCD") == "ABCD", r["name"]   # high word first, as the core answers


def test_registers_do_not_overlap_and_fit_the_map():
    model = load()
    used = {}
    for r in model["register"]:
        for i in range(WIDTH[r.get("type", "uint16")]):
            key = (r.get("function", "holding"), r["address"] + i)
            assert key not in used, (r["name"], used.get(key))
            used[key] = r["name"]
    for (function, addr), name in used.items():
        if function == "input":
            assert addr < regs.IR_COUNT, name
        else:
            assert regs.HR_FIRST < addr <= regs.HR_LAST, name


def test_write_only_registers_are_in_the_model_comments():
    text = MODEL.read_text()
    assert regs.HR_COMMAND == NOT_FIELDS["HR_COMMAND"]
    assert regs.HR_CREDIT == NOT_FIELDS["HR_CREDIT"]
    assert "Address 100 is the command register" in text
    for value in (regs.CMD_FAULT_CARD, regs.CMD_OPEN_VALVE, regs.CMD_CLOSE_VALVE):
        assert f"0x{value:04X}" in text
    assert "107-108" in text


def test_identity_and_status_bits():
    model = load()
    assert model["model"]["identify"] == {"field": "model_code", "equals": regs.MODEL_CODE}
    status = next(r for r in model["register"] if r["name"] == "status_word")
    # "bit 0 ERR-1, 1 ERR-3, 2 ERR-4, ..., 8 valve shut by a fault"
    bits = dict((int(n), what.strip()) for n, what in
                re.findall(r"(\d+) ([^,]+)", status["description"].replace("bit 0", "0")))
    assert bits == {
        0: "ERR-1", 1: "ERR-3", 2: "ERR-4", 3: "ERR-5", 4: "ERR-6", 5: "ERR-7",
        6: "low balance", 7: "low battery", 8: "valve shut by a fault",
    }
    firmware = {
        0: regs.ST_ERR1, 1: regs.ST_ERR3, 2: regs.ST_ERR4, 3: regs.ST_ERR5, 4: regs.ST_ERR6,
        5: regs.ST_ERR7, 6: regs.ST_LOW_BALANCE, 7: regs.ST_LOW_BATTERY, 8: regs.ST_FAULT_SHUT,
    }
    for bit, mask in firmware.items():
        assert mask == 1 << bit
    valve = next(r for r in model["register"] if r["name"] == "valve_state")
    assert valve["description"] == f"{regs.VALVE_OPEN} open, {regs.VALVE_CLOSED} closed"


def test_defaults_inside_model_ranges():
    model = load()
    battery = next(r for r in model["register"] if r["name"] == "battery_V")
    assert regs.MAX_LOW_BATTERY * 0.001 == battery["max"]
    assert regs.DEFAULT_LOW_BALANCE * 0.001 == 5.0        # service manual A5: below 5 m3


def _fault(model, code):
    return next(f for f in model["fault"] if f["code"] == code)


def test_err1_clearing_agrees_with_the_catalogue(meter):
    # The catalogue tells the engineer how ERR-1 is cleared on this meter. The
    # manual (A8) says a battery re-insert; this firmware keeps ERR-1 through
    # a battery pull and clears it with the fault card only, so the catalogue
    # must say the fault card, and say where the manual differs.
    err1 = _fault(load(), "ERR-1")
    meter.hal.magnet = True
    meter.advance(2_000, step_ms=100)
    meter.hal.magnet = False
    meter.advance(1_000)
    assert meter.core.status & regs.ST_ERR1
    meter.reboot()                                  # the battery pulled and put back
    meter.advance(1_000)
    assert meter.core.status & regs.ST_ERR1
    assert err1["cleared_by"] != "battery_reinsert"
    assert meter.command(regs.CMD_FAULT_CARD) == 0
    assert not meter.core.status & regs.ST_ERR1
    assert err1["cleared_by"] == "fault_card"
    assert "A8" in err1["en"]["cleared_by"] and "A8" in err1["zh"]["cleared_by"]


def test_every_err_code_shuts_the_valve_as_the_catalogue_says(meter):
    # The catalogue reports a valve shut by an ERR code on the ERR entry
    # itself (valve_closed), not on a separate consequence entry.
    meter.hal.magnet = True
    meter.advance(2_000, step_ms=100)
    assert meter.core.read_input(regs.IR_VALVE) == regs.VALVE_CLOSED
    assert meter.core.error_code == 1
    model = load()
    for code in ("ERR-1", "ERR-3", "ERR-4", "ERR-5", "ERR-6", "ERR-7"):
        assert _fault(model, code)["valve_closed"] is True, code
    # VALVE-CLOSED and BALANCE-ZERO are raised only when no ERR code is shown
    for code in ("VALVE-CLOSED", "BALANCE-ZERO"):
        assert {"field": "error_code", "equals": 0} in _fault(model, code)["trigger"]["all"], code
