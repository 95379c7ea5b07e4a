"""What the engineer sees first: `edgegw status` on one screen, each code
said once, faults past their response deadline first.

The site is tests/cli/sites.py: seven devices with real catalogue texts."""
from __future__ import annotations

import json
import re

import pytest

from gateway.field import views
from gateway.field.text import width
from protocols.models import load_models

from .conftest import GOLDEN, check_golden
from .sites import seven_devices, seven_devices_stopped

LANGS = ["en", "zh"]


def _lines(text: str) -> list[str]:
    return text.rstrip("\n").split("\n")


# --------------------------------------------------------------------------- one screen

@pytest.mark.parametrize("lang", LANGS)
def test_status_of_seven_devices_fits_a_100x30_terminal(lang):
    out = _lines(views.render_status(seven_devices(), lang, width=100, height=30))
    assert len(out) <= 30, f"{len(out)} lines"
    assert max(width(x) for x in out) <= 100, max(out, key=width)
    # problems first: right under the title, before the gateway and the devices
    heads = [i for i, x in enumerate(out) if x and not x.startswith(" ")]
    assert out[heads[1]].startswith(("PROBLEMS", "问题"))
    # every problem on the list, one line each, each fault with its first step
    pbs = views.problems(seven_devices())
    body = out[heads[1] + 1: heads[2]]
    rows = [x for x in body if x.strip()]
    assert len(rows) == len(pbs)
    st = seven_devices()
    for dev in st["devices"]:
        for f in dev["faults"]:
            row = next(r for r in rows if f" {dev['name']} " in r and f" {f['code']} " in r)
            step = f["remedy"][lang]
            assert step[:12] in row, (row, step)


@pytest.mark.parametrize("lang", LANGS)
def test_status_at_80_columns_is_clipped_not_wrapped(lang):
    wide = _lines(views.render_status(seven_devices(), lang, width=100, height=30))
    narrow = _lines(views.render_status(seven_devices(), lang, width=80, height=30))
    assert max(width(x) for x in narrow) <= 80 and len(narrow) <= 30
    # the problems are all there, one line each, in the same order
    def problem_rows(lines):
        i = next(i for i, x in enumerate(lines) if x.startswith(("PROBLEMS", "问题")))
        return [x.split()[:2] for x in lines[i + 1: lines.index("", i)]]
    assert problem_rows(narrow) == problem_rows(wide)
    # the cut is marked, so nobody takes a clipped step for the whole one
    assert any(x.endswith("...") for x in narrow)


@pytest.mark.parametrize("lang", LANGS)
def test_status_screen_golden(lang):
    check_golden(f"status_screen.{lang}.txt", views.render_status(seven_devices(), lang, width=100, height=30))


@pytest.mark.parametrize("lang", LANGS)
def test_status_screen_daemon_stopped_golden(lang):
    out = views.render_status(seven_devices_stopped(), lang, width=100, height=30)
    assert len(_lines(out)) <= 30 and max(width(x) for x in _lines(out)) <= 100
    check_golden(f"status_screen_stopped.{lang}.txt", out)


def test_a_long_problem_list_still_fits_and_says_how_many_are_not_shown():
    st = seven_devices()
    extra = []
    for i in range(30):
        d = json.loads(json.dumps(st["devices"][0]))
        d["name"] = f"x-{i:02d}"
        extra.append(d)
    st["devices"] += extra
    out = _lines(views.render_status(st, "en", width=100, height=30))
    assert len(out) <= 30
    assert any("more: edgegw status --all" in x for x in out)
    assert any("edgegw status --all" in x for x in out[-2:])


@pytest.mark.parametrize("lang", LANGS)
def test_status_of_one_device_has_everything(lang):
    out = views.render_device(seven_devices(), "fm-01", lang)
    check_golden(f"status_device.{lang}.txt", out)
    m = load_models()["turbine-evc"]
    for step in m.fault("TEMP-SENSOR").text(lang).remedy:   # every step, not only the first
        assert step in out
    assert "18120" in out and "EVC0001" in out


@pytest.mark.parametrize("lang", LANGS)
def test_status_all_is_the_full_listing(lang):
    check_golden(f"status_all.{lang}.txt", views.render_status_all(seven_devices(), lang))


# --------------------------------------------------------------------------- the code once

def _twice(text: str, codes: list[str]) -> list[str]:
    """Lines where a code is followed by its meaning that names it again:
    "ERR-1: ERR-1: magnetic attack", "ERR-3: ERR-3 with 关阀+故障: ..."."""
    bad = []
    for line in text.splitlines():
        for code in codes:
            pat = rf"(?<![A-Za-z0-9_-]){re.escape(code)}(?![A-Za-z0-9_-])"
            for m in re.finditer(pat, line):
                rest = line[m.end():].lstrip(" :：")
                colon = re.search(r"[:：]", rest[:82])
                head = rest[:colon.start()] if colon else ""
                if rest.startswith(code) or re.search(pat, head):
                    bad.append(line)
    return bad


@pytest.mark.parametrize("lang", LANGS)
def test_a_code_is_said_once_on_every_line(lang):
    st = seven_devices()
    codes = ["ERR-1", "ERR-3", "NO-RESPONSE", "TEMP-SENSOR", "SLEEP"]
    screens = {
        "status": views.render_status(st, lang, width=200, height=60),
        "status --all": views.render_status_all(st, lang),
        "status m-01": views.render_device(st, "m-01", lang),
        "faults": views.render_faults({"ts": st["ts"], "active": st["devices"], "history": [
            {"ts": "2026-11-23T06:20:00.000Z", "device": "m-01", "code": "ERR-1", "state": "raised",
             "severity": "critical", "meaning": st["devices"][0]["faults"][0]["meaning"]}]}, lang),
    }
    for name, text in screens.items():
        assert "ERR-1: ERR-1" not in text and "ERR-1：ERR-1" not in text, name
        assert _twice(text, codes) == [], name


@pytest.mark.parametrize("lang", LANGS)
def test_explain_says_the_code_once(lang):
    m = load_models()["meihua-ic"]
    out = views.render_explain(views.explain_dict(m, m.fault("ERR-1")), lang)
    assert out.split("\n")[1].startswith("ERR-1")     # the head names it
    meaning = out.split("\n")[4]
    assert not meaning.strip().startswith("ERR-1"), meaning
    check_golden(f"explain_meihua-ic_ERR-1.{lang}.txt", out)


def test_headline_drops_a_head_that_names_the_code():
    m = load_models()
    h = views.headline
    assert h("ERR-1", m["meihua-ic"].fault("ERR-1").en.meaning) == "Magnetic attack"
    assert h("ERR-1", m["meihua-ic"].fault("ERR-1").zh.meaning) == "磁干扰"
    assert h("请速购气", m["qianfeng-ic"].fault("请速购气").zh.meaning) == "表内余量已用完，无法供气"
    assert h("t", m["mhcg"].fault("t").zh.meaning) == "控制器内部电池电量低，已关阀"
    # a meaning that does not start with its code keeps its words
    assert h("TEMP-SENSOR", m["turbine-evc"].fault("TEMP-SENSOR").en.meaning) == \
        "The corrector reports a temperature sensor fault"


# --------------------------------------------------------------------------- deadlines

def test_faults_past_their_deadline_come_first():
    pbs = views.problems(seven_devices())
    faults = [(p["subject"], p["args"]["code"]) for p in pbs if p["key"] == "pb.fault"]
    # m-01 ERR-1: 2 h 10 min old, promise 1 h; m-02 BATTERY-PROMPT: 73 h 30 min old, promise 72 h
    assert faults[:2] == [("m-01", "ERR-1"), ("m-02", "BATTERY-PROMPT")]
    assert [p["level"] for p in pbs[:2]] == ["fail", "fail"]
    # then by severity: critical before major before minor
    sev = [p["args"]["sev"] for p in pbs if p["key"] == "pb.fault"][2:]
    order = ["critical", "major", "minor", "info"]
    assert sev == sorted(sev, key=order.index)
    out = views.render_status(seven_devices(), "en", width=100, height=30)
    assert "overdue 1 h 10 min" in out and "overdue 1 h 30 min" in out
    out = views.render_status(seven_devices(), "zh", width=100, height=30)
    assert "已超时1小时10分" in out


@pytest.mark.parametrize("lang", LANGS)
def test_faults_screen_puts_overdue_first_and_says_by_how_long(lang):
    st = seven_devices()
    data = {"ts": st["ts"], "active": st["devices"], "history": []}
    out = views.render_faults(data, lang)
    check_golden(f"faults_overdue.{lang}.txt", out)
    heads = [x.split()[0] for x in out.splitlines() if re.match(r"\S+ \(", x)]
    assert heads[:2] == ["m-01", "m-02"]


# --------------------------------------------------------------------------- the docs print the screens

@pytest.mark.parametrize("name", [
    "status_screen.en.txt", "status_screen.zh.txt", "status_screen_stopped.en.txt",
    "status_screen_stopped.zh.txt", "status_device.en.txt", "status_device.zh.txt", "status_all.en.txt",
    "visit_m-01.en.txt", "visit_c-01.zh.txt", "diag.en.txt", "diag.zh.txt", "explain.en.txt", "explain.zh.txt",
])
def test_docs_cli_prints_the_screens_as_they_are(name):
    doc = (GOLDEN.parents[2] / "docs" / "cli.md").read_text(encoding="utf-8")
    assert "```\n" + (GOLDEN / name).read_text(encoding="utf-8") + "```\n" in doc, \
        f"docs/cli.md does not show {name} as it is now"
