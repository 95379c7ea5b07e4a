"""How a model value becomes a Home Assistant sensor: unit, device class,
state class, label. Tests check these tables against Home Assistant's own."""
from __future__ import annotations

from typing import Any

# model unit (or the key's unit suffix) -> (HA unit, device class, state class).
# HA rejects a device class with a unit outside its list, and gas/volume
# accept only total or total_increasing: tests check this table against HA's.
UNITS: dict[str, tuple[str | None, str | None, str | None]] = {
    "m3": ("m³", "gas", "total_increasing"),
    "m3/h": ("m³/h", "volume_flow_rate", "measurement"),
    "m3h": ("m³/h", "volume_flow_rate", "measurement"),
    "L": ("L", "volume", "total_increasing"),
    "C": ("°C", "temperature", "measurement"),
    "kPa": ("kPa", "pressure", "measurement"),
    "V": ("V", "voltage", "measurement"),
    "%LEL": ("%LEL", None, "measurement"),
    "LEL": ("%LEL", None, "measurement"),
    "s": ("s", "duration", "measurement"),
    "min": ("min", "duration", "measurement"),
    "h": ("h", "duration", "measurement"),
    "d": ("d", "duration", "measurement"),
}



# A prepaid balance goes down as gas is used: stored volume, not a meter total.
_BALANCE = ("m³", "volume_storage", "measurement")



# Unitless keys whose last word says they only ever count up (until a reset).
_COUNTER_WORDS = ("count", "gaps", "resets")



# Keys whose name misleads the rules above.
_OVERRIDES: dict[str, dict[str, Any]] = {
    # how many doors the controller serves, not a running count
    "door_count": {"state_class": None, "entity_category": "diagnostic"},
    # the controller's clock as Unix seconds: a point in time, not a duration
    "clock_s": {"device_class": None, "state_class": None, "entity_category": "diagnostic"},
}



_DIAGNOSTIC_WORDS = ("word", "code", "version", "number")



def unit_of(name: str, model_unit: str) -> str:
    if model_unit:
        return model_unit
    last = name.rsplit("_", 1)[-1] if "_" in name else ""
    return last if last in UNITS else ""



def label_of(name: str, unit: str) -> str:
    words = name.split("_")
    if len(words) > 1 and unit and words[-1] in UNITS:
        words = words[:-1]
    text = " ".join(words)
    return text[:1].upper() + text[1:]



def classify(name: str, model_unit: str, is_text: bool) -> dict[str, Any]:
    unit = unit_of(name, model_unit)
    words = name.split("_")
    out: dict[str, Any] = {"unit": None, "device_class": None, "state_class": None,
                           "entity_category": None}
    if is_text:
        out["entity_category"] = "diagnostic"
    elif unit in UNITS:
        ha_unit, dc, sc = _BALANCE if unit == "m3" and "balance" in words else UNITS[unit]
        out.update(unit=ha_unit, device_class=dc, state_class=sc)
    elif unit:
        # a unit HA has no class for: shown as given, still a measurement
        out.update(unit=unit, state_class="measurement")
    elif words[-1] in _COUNTER_WORDS:
        out["state_class"] = "total_increasing"
    # else: a code or an index (status_word, valve_state): no state class,
    # since a mean of bit patterns means nothing; HA keeps its history.
    if words[-1] in _DIAGNOSTIC_WORDS:
        out["entity_category"] = "diagnostic"
    out.update(_OVERRIDES.get(name, {}))
    return out
