"""`edgegw visit DEVICE`: the service visit record of reference I, prefilled
with what the gateway knows. The live and stopped cases, through the socket
and from the state folder, are in test_site.py (they need the rig)."""
from __future__ import annotations

import json

import pytest

from gateway.field.client import Site
from gateway.field.visit import BLANK, build_visit, render_visit
from gateway.site.config import load_config
from protocols.models import load_models

from .conftest import check_golden
from .sites import CONFIG, NOW, seven_devices

LANGS = ["en", "zh"]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Site:
    d = tmp_path_factory.mktemp("visit")
    (d / "edgegw.toml").write_text(CONFIG, encoding="utf-8")
    models = load_models()
    cfg = load_config(d / "edgegw.toml", known_models=models)
    return Site(path=str(d / "edgegw.toml"), cfg=cfg, models=models, lang="en", color=False, state_dir=d / "state")


def _visit(site, name: str) -> dict:
    dev = next(d for d in seven_devices()["devices"] if d["name"] == name)
    return build_visit(site, dev, NOW, live=True)


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("name", ["m-01", "c-01", "q-01"])
def test_visit_record_golden(site, name, lang):
    check_golden(f"visit_{name}.{lang}.txt", render_visit(_visit(site, name), lang))


def test_visit_json_holds_the_prefilled_and_the_blank_fields(site):
    v = _visit(site, "m-01")
    check_golden("visit_m-01.json", json.dumps(v, ensure_ascii=False, indent=2, sort_keys=True) + "\n")
    assert v["site"] == {"gateway": "hz-0417", "site": "Hangzhou Xixi boiler house"}
    dev = v["device"]
    assert (dev["model"], dev["serial"], dev["serial_source"]) == ("meihua-ic", "MH2025-004417", "config")
    assert dev["address"].startswith("Xixi Garden") and dev["contact"].startswith("Ms Chen")
    (f,) = v["problems"]
    assert (f["code"], f["ref"], f["since"], f["respond_within_h"]) == ("ERR-1", "A8", "2026-11-23T06:20:00.000Z", 1)
    assert f["remedy_steps"]["zh"] and f["cleared_by"]["code"] == "fault_card"
    assert [(b["key"], b["for"]) for b in v["bring"]] == [("vz.bring.fault_card", ["ERR-1"])]
    assert set(v["blank"]) == set(BLANK) and v["blank"]["parts_replaced"] == []
    assert all(v["blank"][k] is None for k in BLANK if k != "parts_replaced")


def test_the_serial_the_device_reports_wins_over_the_config(site):
    dev = _visit(site, "fm-01")["device"]
    assert (dev["serial"], dev["serial_source"]) == ("EVC0001", "reported")
    dev = _visit(site, "a-01")["device"]
    assert (dev["serial"], dev["serial_source"]) == (None, None)
    assert "出厂编号  ______" in render_visit(_visit(site, "a-01"), "zh")


def test_a_controller_record_names_the_controller_cards_and_warns_off_the_maintenance_card(site):
    v = _visit(site, "c-01")
    assert [(b["key"], b["for"]) for b in v["bring"]] == [("vz.bring.fault_recovery_card", ["ERR-3"])]
    zh, en = render_visit(v, "zh"), render_visit(v, "en")
    assert "故障恢复卡，只能清除ERR-3和ERR-4：用于 ERR-3" in zh
    assert "故障卡（维修卡）" not in zh     # the residential card's name never reaches a controller
    assert "切勿用维修卡（初始化卡）清除故障" in zh and "Never use the 维修卡" in en
    # the residential record names the residential card and has no controller warning
    zh = render_visit(_visit(site, "m-01"), "zh")
    assert "故障卡（维修卡），可清除ERR-1至ERR-7：用于 ERR-1" in zh and "切勿" not in zh


@pytest.mark.parametrize("lang", LANGS)
def test_every_reference_i_field_is_on_the_paper(site, lang):
    out = render_visit(_visit(site, "m-01"), lang)
    words = {"en": ["customer", "address", "contact", "service type", "inspection", "repair", "other",
                    "arrival", "departure", "warranty", "PROBLEM FOUND", "work done", "engineer",
                    "parts replaced", "NAME", "QUANTITY", "PART/REPAIR/UNIT", "OLD SERIAL", "NEW SERIAL",
                    "preventive checks", "works afterwards", "customer satisfaction", "customer signature"],
             "zh": ["客户", "地址", "联系人", "服务类型", "巡检", "维修", "其他", "到达时间", "离开时间", "保修",
                    "发现问题", "处理情况", "服务工程师", "更换配件", "名称", "数量", "换件/维修/整机", "旧件编号",
                    "新件编号", "预防性检查", "修后设备正常", "客户满意度", "客户签字"]}[lang]
    for w in words:
        assert w in out, w
    assert "Ms Chen, 138 0000 1234" in out and "MH2025-004417" in out
