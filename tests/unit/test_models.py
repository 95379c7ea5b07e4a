"""protocols.models: the model file loader (every problem at once, caching, packaging)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from protocols.modbus.types import Field
from protocols.models import (
    Fault, Model, ModelError, Text, clear_cache, default_directory, load_model, load_models,
    validate_all,
)

REPO = Path(__file__).resolve().parents[2]

GOOD = """\
[model]
id = "{id}"
name_en = "Test meter"
name_zh = "测试表"
family = "residential_meter"
identify = {{ field = "model_code", equals = 9001 }}
{params}
[[register]]
name = "volume_m3"
address = 0
function = "input"
type = "uint32"
scale = 0.001
unit = "m3"

[[register]]
name = "status_word"
address = 2
function = "input"

[[register]]
name = "valve_closed"
address = 2
function = "input"
type = "bit"
bit = 1

[[register]]
name = "model_code"
address = 3
function = "input"
publish = false

[[fault]]
code = "ERR-1"
severity = "major"
valve_closed = false
site_visit = true
debounce = 1
trigger = {{ field = "status_word", bit = 0 }}
cleared_by = "fault_card"
ref = "A8"
[fault.en]
meaning = "Magnetic attack"
causes = ["magnet"]
remedy = ["remove it"]
cleared_by = "Fault card."
[fault.zh]
meaning = "磁干扰"
causes = ["磁铁"]
remedy = ["移除磁铁"]
cleared_by = "插故障卡。"

[[fault]]
code = "FLOW-HIGH"
severity = "minor"
valve_closed = false
site_visit = false
trigger = {trigger}
cleared_by = "self"
ref = "A10"
[fault.en]
meaning = "m"
causes = ["c"]
remedy = ["r"]
cleared_by = "s"
[fault.zh]
meaning = "含义"
causes = ["原因"]
remedy = ["步骤"]
cleared_by = "自动解除。"
"""

# One file with one mistake of every kind the checker knows, so the test
# shows they all come out together with their key paths.
BAD = """\
[model]
id = "other-name"
name_en = "Bad"
family = "Residential Meter"
max_registers_per_read = 200
colour = "red"
identify = { field = "nope", equals = "1001" }

[[register]]
name = "flow_m3h"
address = 0
type = "float33"

[[register]]
name = "Flow"
address = 70000

[[register]]
name = "serial_number"
address = 10
type = "string"

[[register]]
name = "status_word"
address = 20
bit = 3
scale = 0.5

[[register]]
name = "flag"
address = 20
type = "bit"
bit = 16

[[register]]
name = "total_m3"
address = 30
type = "uint32"
order = "ABDC"

[[register]]
name = "counter"
address = 31
function = "coil"

[[register]]
name = "total_m3"
address = 40

[[register]]
name = "temperature_C"
address = 41
type = "float32"
frac_type = "uint16"

[[register]]
name = "pressure_kPa"
address = 50
type = "float32"

[[register]]
name = "label"
address = 60
type = "string"
count = 4

[[fault]]
code = "X"
severity = "huge"
valve_closed = "no"
site_visit = true
debounce = 0
kind = "event"
trigger = { field = "status", bit = 1 }
cleared_by = "magic"
ref = "Z99"
colour = "red"
[fault.en]
meaning = ""
remedy = []
cleared_by = "s"
[fault.zh]
meaning = "含义"
causes = ["原因", 3]
remedy = ["步骤"]

[[fault]]
code = "X"
severity = "minor"
valve_closed = false
site_visit = false
trigger = { field = "pressure_kPa", bit = 2 }
cleared_by = "self"
ref = "A1"
[fault.en]
meaning = "m"
causes = ["c"]
remedy = ["r"]
cleared_by = "s"
[fault.zh]
meaning = "m"
causes = ["c"]
remedy = ["r"]
cleared_by = "s"

[[fault]]
code = "R1"
severity = "minor"
valve_closed = false
site_visit = false
trigger = { rule = "flow_above_max", field = "flow_m3h" }
cleared_by = "self"
ref = "D4"
[fault.en]
meaning = "m"
causes = ["c"]
remedy = ["r"]
cleared_by = "s"
[fault.zh]
meaning = "m"
causes = ["c"]
remedy = ["r"]
cleared_by = "s"

[[fault]]
code = "R2"
severity = "minor"
valve_closed = false
site_visit = false
trigger = { rule = "counting_while", field = "total_m3", when_field = "valve", equals = 1, below = 2.0 }
cleared_by = "self"
ref = "D7"
[fault.en]
meaning = "m"
causes = ["c"]
remedy = ["r"]
cleared_by = "s"
[fault.zh]
meaning = "m"
causes = ["c"]
remedy = ["r"]
cleared_by = "s"

[[fault]]
code = "R3"
severity = "minor"
valve_closed = false
site_visit = false
trigger = { rule = "below_min", field = "label", param = "Bad Param", default = "5", extra = 1 }
cleared_by = "self"
ref = "A5"
[fault.en]
meaning = "m"
causes = ["c"]
remedy = ["r"]
cleared_by = "s"
[fault.zh]
meaning = "m"
causes = ["c"]
remedy = ["r"]
cleared_by = "s"

[[fault]]
code = "R4"
severity = "minor"
valve_closed = false
site_visit = false
trigger = { field = "status_word", bit = 1, equals = 2 }
cleared_by = "self"
ref = "A5"
[fault.en]
meaning = "m"
causes = ["c"]
remedy = ["r"]
cleared_by = "s"
[fault.zh]
meaning = "m"
causes = ["c"]
remedy = ["r"]
cleared_by = "s"
"""


def write(directory: Path, name: str, text: str) -> Path:
    p = directory / name
    p.write_text(text, encoding="utf-8")
    return p


FLOW_HIGH = '{ rule = "above_max", field = "volume_m3", param = "max_m3" }'
# Declared params, added to a file when its triggers name them (a declared
# param no trigger reads is a problem of its own).
PARAMS = {
    "max_m3": '''
[[param]]
name = "max_m3"
unit = "m3"
default = 1.0
min = 0.0
max = 100.0
meaning_en = "Largest volume"
meaning_zh = "最大体积"
''',
    "days": '''
[[param]]
name = "days"
unit = "d"
min = 0.0
max = 3650.0
meaning_en = "Days without counting"
meaning_zh = "不走字的天数"
''',
}


def good(model_id: str = "test-meter", trigger: str = FLOW_HIGH) -> str:
    params = "".join(text for name, text in PARAMS.items() if f'"{name}"' in trigger)
    return GOOD.format(id=model_id, params=params, trigger=trigger)


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_cache()
    yield
    clear_cache()


class TestGoodFile:
    def test_loads_into_dataclasses(self, tmp_path):
        m = load_model(write(tmp_path, "test-meter.toml", good()))
        assert isinstance(m, Model)
        assert (m.id, m.name_en, m.name_zh, m.family) == ("test-meter", "Test meter", "测试表",
                                                          "residential_meter")
        assert m.max_registers_per_read == 125
        assert m.identify == {"field": "model_code", "equals": 9001}
        assert m.field("volume_m3") == Field(name="volume_m3", address=0, function="input",
                                             type="uint32", scale=0.001, unit="m3")
        assert m.field("model_code").publish is False
        assert [f.name for f in m.fields] == ["volume_m3", "status_word", "valve_closed", "model_code"]

    def test_fault_and_text(self, tmp_path):
        m = load_model(write(tmp_path, "test-meter.toml", good()))
        f = m.fault("ERR-1")
        assert isinstance(f, Fault)
        assert f.trigger == {"field": "status_word", "bit": 0}
        assert f.kind == "fault"
        assert f.en == Text("Magnetic attack", ("magnet",), ("remove it",), "Fault card.")
        assert f.text("zh").meaning == "磁干扰"
        assert f.text("zh-CN") is f.zh
        assert f.text("en") is f.en and f.text("fr") is f.en
        assert m.fault("FLOW-HIGH").debounce == 1        # default

    def test_unknown_names_raise_key_error(self, tmp_path):
        m = load_model(write(tmp_path, "test-meter.toml", good()))
        with pytest.raises(KeyError):
            m.field("nope")
        with pytest.raises(KeyError):
            m.fault("ERR-9")

    def test_a_bit_field_may_share_a_word(self, tmp_path):
        # status_word and valve_closed both sit at input 2: allowed, valve_closed is a bit
        assert load_model(write(tmp_path, "test-meter.toml", good())).field("valve_closed").bit == 1

    def test_a_model_needs_no_faults(self, tmp_path):
        text = GOOD.format(id="test-meter", params="", trigger="").split("[[fault]]")[0]
        assert load_model(write(tmp_path, "test-meter.toml", text)).faults == ()


class TestProblems:
    @pytest.fixture
    def problems(self, tmp_path) -> list[str]:
        with pytest.raises(ModelError) as e:
            load_model(write(tmp_path, "bad.toml", BAD))
        return e.value.problems

    @pytest.mark.parametrize("expected", [
        'bad.toml: model.id: "other-name" is not the file name "bad"',
        "bad.toml: model.colour: unknown key",
        "bad.toml: model.name_zh: missing",
        'bad.toml: model.family: "Residential Meter" is not a lower-case word',
        "bad.toml: model.max_registers_per_read: 200 is not a whole number 1..125",
        'bad.toml: model.identify.field: "nope" is not a register of this model',
        'bad.toml: model.identify.equals: "1001" is not a whole number',
        'bad.toml: register[0].type: "float33" is not a type (int16, ',
        'bad.toml: register[1].name: "Flow" is not quantity[_unit]',
        "bad.toml: register[1].address: 70000 is not a whole number 0..65535",
        "bad.toml: register[2].count: missing (type string needs the number of registers)",
        "bad.toml: register[3].bit: only for type bit, not uint16",
        "bad.toml: register[4].bit: 16 is not a bit number 0..15",
        'bad.toml: register[5].order: "ABDC" is not an order (ABCD, CDAB, BADC, DCBA)',
        'bad.toml: register[6].function: "coil" is not a function (holding, input)',
        'bad.toml: register[7].name: "total_m3" is already register[5]',
        "bad.toml: register[8].frac_type: only for type intfrac, not float32",
        'bad.toml: fault[0].severity: "huge" is not a severity (critical, major, minor, info)',
        'bad.toml: fault[0].valve_closed: "no" is not true or false',
        "bad.toml: fault[0].debounce: 0 is not a whole number >= 1",
        'bad.toml: fault[0].kind: "event" is not a kind (fault, state)',
        'bad.toml: fault[0].trigger.field: "status" is not a register of this model',
        'bad.toml: fault[0].cleared_by: "magic" is not a cleared_by word',
        'bad.toml: fault[0].ref: "Z99" is not a service-manual row',
        "bad.toml: fault[0].colour: unknown key",
        'bad.toml: fault[0].en.meaning: "" is not a non-empty string',
        "bad.toml: fault[0].en.causes: missing",
        "bad.toml: fault[0].en.remedy: must be a non-empty list of strings",
        "bad.toml: fault[0].zh.causes[1]: 3 is not a non-empty string",
        "bad.toml: fault[0].zh.cleared_by: missing",
        'bad.toml: fault[1].code: "X" is already fault[0]',
        'bad.toml: fault[1].trigger.field: "pressure_kPa" is not a raw uint16 word',
        'bad.toml: fault[2].trigger.rule: "flow_above_max" is not a rule (above_max, ',
        'bad.toml: fault[3].trigger.when_field: "valve" is not a register of this model',
        "bad.toml: fault[3].trigger: rule counting_while needs exactly one of equals, below",
        'bad.toml: fault[4].trigger.field: "label" is a string field; this rule needs a number',
        'bad.toml: fault[4].trigger.default: "5" is not a number',
        'bad.toml: fault[4].trigger.param: "Bad Param" is not a param name',
        "bad.toml: fault[4].trigger.extra: unknown key",
        "bad.toml: fault[5].trigger: has both bit and equals",
    ])
    def test_listed(self, problems, expected):
        assert any(p.startswith(expected) for p in problems), "\n".join(problems)

    def test_all_at_once_in_one_error(self, problems):
        assert len(problems) >= 40
        assert len(set(problems)) == len(problems)
        assert all(p.startswith("bad.toml: ") for p in problems)
        # file order: the [model] table, then registers, then faults
        sections = [p.split(": ")[1].split("[")[0].split(".")[0] for p in problems]
        assert sections == sorted(sections, key=["model", "param", "register", "fault"].index)

    def test_message_is_the_problem_list(self, tmp_path):
        with pytest.raises(ModelError) as e:
            load_model(write(tmp_path, "bad.toml", BAD))
        assert str(e.value) == "\n".join(e.value.problems)
        assert isinstance(e.value, ValueError)

    def test_overlap(self, tmp_path):
        text = good().replace('name = "model_code"\naddress = 3', 'name = "model_code"\naddress = 1')
        with pytest.raises(ModelError) as e:
            load_model(write(tmp_path, "test-meter.toml", text))
        assert e.value.problems == [
            'test-meter.toml: register[3].address: "model_code" overlaps register[0] '
            '("volume_m3") at input address 1'
        ]

    def test_same_address_other_function_is_no_overlap(self, tmp_path):
        text = good().replace('name = "model_code"\naddress = 3\nfunction = "input"',
                              'name = "model_code"\naddress = 0\nfunction = "holding"')
        assert load_model(write(tmp_path, "test-meter.toml", text)).field("model_code").address == 0

    def test_field_wider_than_a_read(self, tmp_path):
        text = good().replace('family = "residential_meter"',
                              'family = "residential_meter"\nmax_registers_per_read = 1')
        with pytest.raises(ModelError) as e:
            load_model(write(tmp_path, "test-meter.toml", text))
        assert e.value.problems == [
            "test-meter.toml: register[0]: spans 2 registers, more than max_registers_per_read (1)"
        ]

    def test_not_toml(self, tmp_path):
        with pytest.raises(ModelError) as e:
            load_model(write(tmp_path, "broken.toml", "[model\nid = 1"))
        assert e.value.problems[0].startswith("broken.toml: (file): not valid TOML: ")

    def test_missing_tables(self, tmp_path):
        with pytest.raises(ModelError) as e:
            load_model(write(tmp_path, "empty.toml", "x = 1\n"))
        assert e.value.problems == [
            "empty.toml: x: unknown key (allowed: model, param, register, fault)",
            "empty.toml: model: missing ([model] table)",
            "empty.toml: register: missing (at least one [[register]])",
        ]

    def test_counting_while_below_on_number(self, tmp_path):
        text = good(trigger='{ rule = "counting_while", field = "volume_m3", when_field = "volume_m3", below = 1.5 }')
        assert load_model(write(tmp_path, "test-meter.toml", text)).fault("FLOW-HIGH").trigger["below"] == 1.5


class TestDirectories:
    def test_every_file_every_problem(self, tmp_path):
        write(tmp_path, "test-meter.toml", good())
        write(tmp_path, "bad.toml", BAD)
        write(tmp_path, "empty.toml", "")
        write(tmp_path, "notes.txt", "not a model")
        problems = validate_all(tmp_path)
        files = {p.split(":")[0] for p in problems}
        assert files == {"bad.toml", "empty.toml"}
        with pytest.raises(ModelError) as e:
            load_models(tmp_path)
        assert e.value.problems == problems

    def test_site_directory(self, tmp_path):
        write(tmp_path, "test-meter.toml", good())
        write(tmp_path, "second.toml", good("second"))
        models = load_models(tmp_path)
        assert sorted(models) == ["second", "test-meter"]
        assert validate_all(tmp_path) == []
        # a site's models go next to the packaged ones
        merged = {**load_models(), **models}
        assert {"meihua-ic", "test-meter"} <= set(merged)

    def test_missing_directory(self, tmp_path):
        missing = tmp_path / "nope"
        assert validate_all(missing) == [f"{missing}: (directory): not found"]
        with pytest.raises(ModelError):
            load_models(missing)

    def test_cached(self, tmp_path):
        write(tmp_path, "test-meter.toml", good())
        a = load_models(tmp_path)
        b = load_models(str(tmp_path))
        assert a == b and a["test-meter"] is b["test-meter"]
        a.pop("test-meter")                       # callers get their own dict
        assert "test-meter" in load_models(tmp_path)

    def test_cache_sees_a_changed_file(self, tmp_path):
        p = write(tmp_path, "test-meter.toml", good())
        first = load_models(tmp_path)["test-meter"]
        p.write_text(good().replace('name_en = "Test meter"', 'name_en = "Test meter v2"'),
                     encoding="utf-8")
        st = p.stat()
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
        assert load_models(tmp_path)["test-meter"].name_en == "Test meter v2"
        assert first.name_en == "Test meter"

    def test_packaged_cached(self):
        assert load_models()["meihua-ic"] is load_models()["meihua-ic"]

    def test_errors_are_not_cached(self, tmp_path):
        p = write(tmp_path, "test-meter.toml", BAD)
        with pytest.raises(ModelError):
            load_models(tmp_path)
        p.write_text(good(), encoding="utf-8")
        assert "test-meter" in load_models(tmp_path)


class TestPackagedDirectory:
    def test_default_is_the_package_folder(self):
        d = default_directory()
        assert d == REPO / "protocols" / "models"
        assert (d / "meihua-ic.toml").is_file()

    def test_found_from_another_cwd(self, tmp_path, monkeypatch):
        monkeypatch.chdir(tmp_path)
        assert {"meihua-ic", "turbine-evc"} <= set(load_models())

    def test_found_from_another_cwd_in_a_fresh_interpreter(self, tmp_path):
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        out = subprocess.run(
            [sys.executable, "-c", textwrap.dedent("""
                from protocols.models import load_models, validate_all
                assert validate_all() == [], validate_all()
                print(",".join(sorted(load_models())))
            """)],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
        )
        assert out.returncode == 0, out.stderr
        assert "meihua-ic" in out.stdout.split(",")


class TestCombinedTriggers:
    """{ all }, { any }, { not } over the plain forms (docs/models/format.md)."""

    def load(self, tmp_path, trigger: str):
        text = good(trigger=trigger)
        return load_model(write(tmp_path, "test-meter.toml", text))

    def problems(self, tmp_path, trigger: str) -> list[str]:
        with pytest.raises(ModelError) as e:
            self.load(tmp_path, trigger)
        return e.value.problems

    def test_nested_forms_load(self, tmp_path):
        t = ('{ all = [{ field = "status_word", bit = 0 }, { not = { any = ['
             '{ rule = "increased", field = "volume_m3" }, { field = "model_code", equals = 0 }] } }] }')
        m = self.load(tmp_path, t)
        from protocols.models import leaves
        assert [leaf.get("rule", leaf.get("field")) for leaf in leaves(m.fault("FLOW-HIGH").trigger)] == \
            ["status_word", "increased", "model_code"]

    @pytest.mark.parametrize("trigger,expected", [
        ('{ all = [{ field = "status", bit = 0 }, { field = "status_word", bit = 16 }] }',
         ['fault[1].trigger.all[0].field: "status" is not a register of this model',
          "fault[1].trigger.all[1].bit: 16 is not a bit number 0..15"]),
        ('{ all = [{ field = "status_word", bit = 0 }] }',
         ["fault[1].trigger.all: must be a list of at least two triggers"]),
        ('{ any = "x" }', ["fault[1].trigger.any: must be a list of at least two triggers"]),
        ('{ not = { rule = "nope" } }', ['fault[1].trigger.not.rule: "nope" is not a rule']),
        ('{ not = 3 }', ["fault[1].trigger.not: must be a table"]),
        ('{ all = [{ field = "status_word", bit = 0 }, { field = "status_word", bit = 1 }], field = "x" }',
         ["fault[1].trigger: all takes no other key"]),
        ('{ not = { not = { not = { not = { not = { field = "status_word", bit = 0 } } } } } }',
         ["fault[1].trigger.not.not.not.not.not: nested deeper than 4 levels"]),
        ('{ rule = "unchanged_days", field = "volume_m3", param = "days", when_field = "status_word" }',
         ["fault[1].trigger: rule unchanged_days takes when_field with exactly one of equals, below"]),
        ('{ rule = "unchanged_days", field = "volume_m3", param = "days", when_field = "nope", equals = 0 }',
         ['fault[1].trigger.when_field: "nope" is not a register of this model']),
        ('{ rule = "unchanged_days", field = "volume_m3" }',
         ["fault[1].trigger.param: missing (rule unchanged_days needs field, param)"]),
    ])
    def test_problems_with_key_paths(self, tmp_path, trigger, expected):
        got = self.problems(tmp_path, trigger)
        for want in expected:
            assert any(p.startswith(f"test-meter.toml: {want}") for p in got), "\n".join(got)

    def test_unchanged_days_needs_no_default(self, tmp_path):
        t = '{ rule = "unchanged_days", field = "volume_m3", param = "days", when_field = "status_word", equals = 0 }'
        assert self.load(tmp_path, t).fault("FLOW-HIGH").trigger["param"] == "days"
