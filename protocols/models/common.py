"""Params every device takes, whatever its model.

The fault interpreter reads these from [device.params] for every device
(gateway/faults/interpret.py: flapping, docs/faults.md "Flapping"). They are
declared here, in the same form as a model's [[param]] tables, so the site
config's checker knows them and a model cannot declare a param of the same
name. tests/unit/test_model_params.py keeps the defaults equal to the
interpreter's.

`poll_interval_s` is not one: it is a key of [[device]] itself, which the
daemon hands to the rules.
"""
from __future__ import annotations

from .types import Model, Param, leaves

COMMON_PARAMS: tuple[Param, ...] = (
    Param(name="flap_count", unit="", type="integer", default=3, min=1, max=1000,
          meaning_en="Raise/clear cycles of one fault within the flapping window beyond which it is "
                     "flapping: it is held raised and sends no more events until it stays clear",
          meaning_zh="同一故障在判定时间窗内发生又恢复超过此次数，即为频繁跳变：保持报警，"
                     "不再发送事件，直至稳定恢复"),
    Param(name="flap_window_s", unit="s", default=3600.0, min=1, max=604800,
          meaning_en="The flapping window: how far back the raise/clear cycles are counted",
          meaning_zh="频繁跳变的判定时间窗：往前统计多长时间内的发生与恢复次数"),
    Param(name="flap_hold_s", unit="s", default=900.0, min=0, max=86400,
          meaning_en="How long a flapping fault must stay clear without a break before it is cleared",
          meaning_zh="频繁跳变的故障须连续稳定恢复多长时间才解除"),
)
COMMON_NAMES = frozenset(p.name for p in COMMON_PARAMS)
# Keys people put under [device.params] that belong elsewhere: a pointer, not a guess.
PARAM_HINTS = {
    "poll_interval_s": "poll_interval_s is a key of [[device]] itself, not a param",
}


def declared_params(model: Model) -> dict[str, Param]:
    """Every param a device of `model` takes: the model's own, then the common ones."""
    return {p.name: p for p in (*model.params, *COMMON_PARAMS)}


def param_users(model: Model) -> dict[str, list[str]]:
    """Param name -> the codes of the faults whose trigger reads it, in file order."""
    out: dict[str, list[str]] = {p.name: [] for p in model.params}
    for f in model.faults:
        for leaf in leaves(f.trigger):
            name = leaf.get("param")
            if name in out and f.code not in out[name]:
                out[name].append(f.code)
    return out
