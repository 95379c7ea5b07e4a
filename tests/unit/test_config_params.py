"""[device.params] against the params each model declares, and [gateway] models_dir.

The checker gets the models themselves (a mapping), as `edgegw config
check`, `edgegw run` and every field command give it: then a param name is
checked against the device's model (and the params every device takes), its
value against the declared type and range, all by key path.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from gateway.site.config import check_config, load_config
from protocols.models import load_models

MODELS = load_models()

HEAD = """\
[gateway]
id = "gw-1"

[[bus]]
name = "rs485-1"
port = "/dev/serial/by-id/usb-x"
"""


def device(name: str, model: str, unit: int, params: str = "") -> str:
    text = f'\n[[device]]\nname = "{name}"\nbus = "rs485-1"\nunit = {unit}\nmodel = "{model}"\n'
    if params:
        text += f"[device.params]\n{params}\n"
    return text


def check(tmp_path: Path, text: str, models=MODELS) -> list[str]:
    p = tmp_path / "edgegw.toml"
    p.write_text(text, encoding="utf-8")
    return check_config(p, known_models=models)


def test_a_misspelt_param_is_refused_with_did_you_mean(tmp_path):
    text = HEAD + device("a", "meihua-ic", 1) + device("b", "meihua-ic", 2) \
        + device("c", "turbine-evc", 3, "starting_flw_m3h = 3")
    assert check(tmp_path, text) == [
        'device[2].params.starting_flw_m3h: unknown param of model "turbine-evc" '
        '(did you mean "starting_flow_m3h"?)']


def test_a_param_of_another_model_is_unknown_and_the_known_ones_are_listed(tmp_path):
    text = HEAD + device("c", "gas-alarm-controller", 3, "low_battery_V = 3.6")
    [problem] = check(tmp_path, text)
    assert problem.startswith('device[0].params.low_battery_V: unknown param of model "gas-alarm-controller"')
    assert "mains_min_V" in problem


def test_poll_interval_is_a_device_key_not_a_param(tmp_path):
    # the daemon passes the device's poll_interval_s to the rules as a param:
    # one written under params would change the stale limit, not the polling
    [problem] = check(tmp_path, HEAD + device("c", "turbine-evc", 3, "poll_interval_s = 5"))
    assert problem.startswith("device[0].params.poll_interval_s: unknown param")
    assert "key of [[device]]" in problem


@pytest.mark.parametrize("params,expected", [
    ('rated_flow_max_m3h = "160"', 'device[0].params.rated_flow_max_m3h: expected a number, got string "160"'),
    ("rated_flow_max_m3h = true", "device[0].params.rated_flow_max_m3h: expected a number, got boolean true"),
    ("rated_flow_max_m3h = 0", "device[0].params.rated_flow_max_m3h: 0 is outside 0.1 to 100000 m3/h"),
    ("temperature_min_C = -80.5", "device[0].params.temperature_min_C: -80.5 is outside -60 to 150 C"),
    ("rated_flow_max_m3h = nan", "device[0].params.rated_flow_max_m3h: nan is not a finite number"),
    ("flap_count = 2.5", "device[0].params.flap_count: expected an integer, got float 2.5"),
    ("flap_count = 0", "device[0].params.flap_count: 0 is outside 1 to 1000"),
    ("rated_flow_max_m3h = [1, 2]", "device[0].params.rated_flow_max_m3h: expected a number, got array"),
])
def test_values_are_checked_against_the_declaration(tmp_path, params, expected):
    assert check(tmp_path, HEAD + device("c", "turbine-evc", 1, params)) == [expected]


def test_good_params_pass_and_reach_the_config(tmp_path):
    params = ("rated_flow_max_m3h = 100\nrated_flow_min_m3h = 5.0\nstarting_flow_m3h = 0.5\n"
              "pressure_lost_kPa = 110.0\nflap_count = 5\nflap_window_s = 600\nflap_hold_s = 0")
    p = tmp_path / "edgegw.toml"
    p.write_text(HEAD + device("c", "turbine-evc", 1, params), encoding="utf-8")
    cfg = load_config(p, known_models=MODELS)
    assert cfg.devices[0].params["rated_flow_max_m3h"] == 100
    assert cfg.devices[0].params["flap_count"] == 5


def test_params_are_checked_whatever_the_order_of_keys(tmp_path):
    # an inline params table written before model = ...
    text = HEAD + ('\n[[device]]\nname = "c"\nbus = "rs485-1"\nunit = 1\n'
                   'params = { max_flw_m3h = 3 }\nmodel = "meihua-ic"\n')
    assert check(tmp_path, text) == [
        'device[0].params.max_flw_m3h: unknown param of model "meihua-ic" (did you mean "max_flow_m3h"?)']


def test_an_unknown_model_is_one_problem_not_one_per_param(tmp_path):
    problems = check(tmp_path, HEAD + device("c", "turbine-evx", 1, "whatever = 1"))
    assert len(problems) == 1 and problems[0].startswith('device[0].model: "turbine-evx" is not a known model')
    assert 'did you mean "turbine-evc"?' in problems[0]


def test_without_the_models_only_the_value_kinds_are_checked(tmp_path):
    # `python3 -m gateway.site.config FILE` before the package is installed
    text = HEAD + device("c", "turbine-evc", 1, "starting_flw_m3h = 3\nx = [1]")
    assert check(tmp_path, text, models=None) == [
        "device[0].params.x: expected a number, string or boolean, got array"]


# --------------------------------------------------------------------------- models_dir

def test_models_dir_defaults_to_etc_and_resolves_relative_to_the_config(tmp_path):
    p = tmp_path / "edgegw.toml"
    p.write_text(HEAD, encoding="utf-8")
    assert load_config(p).gateway.models_dir == Path("/etc/edgegw/models")
    p.write_text(HEAD.replace('id = "gw-1"', 'id = "gw-1"\nmodels_dir = "models"'), encoding="utf-8")
    assert load_config(p).gateway.models_dir == tmp_path / "models"


def test_models_dir_must_be_a_folder_if_it_exists(tmp_path):
    (tmp_path / "models").write_text("not a folder")
    text = HEAD.replace('id = "gw-1"', 'id = "gw-1"\nmodels_dir = "models"')
    assert check(tmp_path, text) == [f"gateway.models_dir: {tmp_path / 'models'} exists and is not a folder"]
    text = HEAD.replace('id = "gw-1"', 'id = "gw-1"\nmodels_dir = 3')
    assert check(tmp_path, text) == ["gateway.models_dir: expected a string, got integer 3"]
