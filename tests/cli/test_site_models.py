"""A site's own model folder ([gateway] models_dir) through every command.

Real files in a temporary folder: a packaged model copied to a new id, the
same with one key misspelt, and a packaged model replaced by id. A broken
file breaks only what needs it: `config check` fails only for a device that
uses it (otherwise a warning), `explain` of another model works, the daemon
refuses to start with one line only when a configured device uses it, and
`diag` warns. `model list` and `model check` say which file is in effect.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.field import demo, i18n, model_text
from protocols.models import default_directory

from .conftest import ROOT, run_subprocess, wait_for

PACKAGED = default_directory()


def _copy(models_dir: Path, src: str, new_id: str, edit=lambda s: s) -> Path:
    text = (PACKAGED / f"{src}.toml").read_text(encoding="utf-8")
    text = text.replace(f'id = "{src}"', f'id = "{new_id}"', 1)
    p = models_dir / f"{new_id}.toml"
    p.write_text(edit(text), encoding="utf-8")
    return p


def _misspell(text: str) -> str:
    # the FLOW-HIGH trigger's "field" becomes "feild": one key, one mistake
    old = 'trigger = { rule = "above_max", field = "flow_m3h"'
    assert old in text
    return text.replace(old, 'trigger = { rule = "above_max", feild = "flow_m3h"', 1)


def _config(tmp_path: Path, devices: list[tuple[str, str]], port: int = 1) -> Path:
    text = f"""[gateway]
id = "gw-site"
state_dir = "state"
models_dir = "models"
language = "en"

[mqtt]
host = "127.0.0.1"
port = {port}

[[bus]]
name = "tcp-1"
port = "tcp://127.0.0.1:1"
timeout_s = 0.2
"""
    for i, (name, model) in enumerate(devices, 1):
        text += f'\n[[device]]\nname = "{name}"\nbus = "tcp-1"\nunit = {i}\nmodel = "{model}"\n'
    p = tmp_path / "edgegw.toml"
    p.write_text(text, encoding="utf-8")
    return p


@pytest.fixture
def site(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    broken = _copy(models, "turbine-evc", "evc-copy", _misspell)
    good = _copy(models, "turbine-evc", "evc-site")
    replaced = _copy(models, "meihua-ic", "meihua-ic",
                     lambda s: s.replace('name_en = "', 'name_en = "Site build of: ', 1))
    return {"dir": tmp_path, "models": models, "broken": broken, "good": good, "replaced": replaced}


# --------------------------------------------------------------------------- config check

def test_config_check_warns_about_a_broken_file_no_device_uses(site, cli):
    cfg = _config(site["dir"], [("fm-01", "turbine-evc"), ("fm-02", "evc-site")])
    rc, out, err = cli("config", "check", cfg, "--json")
    assert err == "" and rc == 0
    r = json.loads(out)
    assert r["ok"] is True and r["problems"] == []
    assert r["warnings"] == [f"{site['broken']}: fault[7].trigger.feild: unknown key "
                             "(allowed: rule, field, param, default)",
                             f"{site['broken']}: fault[7].trigger.field: missing "
                             "(rule above_max needs field)"]
    rc, out, _ = cli("config", "check", cfg)
    assert rc == 0 and "WARN" in out and "evc-copy.toml: fault[7].trigger.feild: unknown key" in out


def test_config_check_fails_a_device_that_uses_a_broken_file(site, cli):
    cfg = _config(site["dir"], [("fm-01", "turbine-evc"), ("fm-02", "evc-copy")])
    rc, out, _ = cli("config", "check", cfg, "--json")
    r = json.loads(out)
    assert rc == 1 and r["ok"] is False
    assert r["problems"] == [
        f'device[1].model: model "evc-copy" cannot be used: {site["broken"]} has 2 problems, the first: '
        "fault[7].trigger.feild: unknown key (allowed: rule, field, param, default) "
        f"(edgegw model check {site['broken']})"]


def test_a_broken_replacement_hides_the_packaged_model(site, cli):
    # the site meant its own meihua-ic: silently running the packaged one
    # would not be what it configured
    site["replaced"].write_text("[model\n", encoding="utf-8")
    cfg = _config(site["dir"], [("home-1", "meihua-ic")])
    rc, out, _ = cli("config", "check", cfg, "--json")
    assert rc == 1
    assert json.loads(out)["problems"][0].startswith(
        f'device[0].model: model "meihua-ic" cannot be used: {site["replaced"]} has 1 problem')


# --------------------------------------------------------------------------- explain, model list, model check

def test_explain_another_model_works_and_a_site_model_names_its_file(site, cli):
    cfg = _config(site["dir"], [])
    rc, out, err = cli("explain", "turbine-evc", "FLOW-HIGH", "--config", cfg)
    assert rc == 0, err
    assert "Site params" in out and "rated_flow_max_m3h" in out and "160" in out
    rc, out, _ = cli("explain", "evc-site", "FLOW-HIGH", "--config", cfg)
    assert rc == 0 and f"model file: {site['good']}" in out
    rc, out, _ = cli("explain", "meihua-ic", "ERR-1", "--config", cfg, "--json")
    e = json.loads(out)
    assert e["source"] == {"path": str(site["replaced"]), "site": True, "replaces_packaged": True}
    rc, _, err = cli("explain", "evc-copy", "FLOW-HIGH", "--config", cfg)
    assert rc == 2 and str(site["broken"]) in err and "fault[7].trigger.feild" in err


def test_model_list_names_every_source(site, cli):
    cfg = _config(site["dir"], [])
    rc, out, _ = cli("model", "list", "--config", cfg, "--json")
    r = json.loads(out)
    by = {m["id"]: m for m in r["models"]}
    assert by["turbine-evc"]["source"] == {"path": str(PACKAGED / "turbine-evc.toml"), "site": False,
                                           "replaces_packaged": False}
    assert by["meihua-ic"]["source"] == {"path": str(site["replaced"]), "site": True, "replaces_packaged": True}
    assert by["evc-site"]["source"]["site"] is True and "evc-copy" not in by
    assert [(b["id"], b["path"], len(b["problems"])) for b in r["broken"]] == [
        ("evc-copy", str(site["broken"]), 2)]
    assert r["models_dir"] == str(site["models"])
    assert rc == 1                      # a broken file is a problem found
    rc, out, _ = cli("model", "list", "--config", cfg)
    assert "meihua-ic" in out and str(site["replaced"]) in out and "evc-copy" in out


def test_model_check_lists_every_problem_by_key_path(site, cli, tmp_path):
    rc, out, _ = cli("model", "check", site["broken"], "--json")
    r = json.loads(out)
    assert rc == 1 and r["ok"] is False and r["id"] == "evc-copy"
    assert r["problems"] == ["fault[7].trigger.feild: unknown key (allowed: rule, field, param, default)",
                             "fault[7].trigger.field: missing (rule above_max needs field)"]
    rc, out, _ = cli("model", "check", site["broken"])
    assert rc == 1 and "FAIL  fault[7].trigger.feild: unknown key" in out
    rc, out, _ = cli("model", "check", site["replaced"], "--json")
    r = json.loads(out)
    assert rc == 0 and r == {"path": str(site["replaced"]), "ok": True, "problems": [], "id": "meihua-ic",
                             "replaces_packaged": True}
    rc, _, err = cli("model", "check", tmp_path / "nope.toml")
    assert rc == 1


# --------------------------------------------------------------------------- the daemon and diag

def test_run_refuses_with_one_line_when_a_device_uses_a_broken_model(site):
    cfg = _config(site["dir"], [("fm-02", "evc-copy")])
    r = run_subprocess("run", "--config", cfg, timeout=60)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if "evc-copy" in ln]
    assert len(lines) == 1 and 'model "evc-copy" cannot be used' in lines[0], r.stderr


def test_the_daemon_starts_beside_a_broken_file_no_device_uses(site):
    port = demo.free_port()
    broker = demo.start_broker(site["dir"], port)
    cfg = _config(site["dir"], [("fm-01", "evc-site")], port=port)
    log = site["dir"] / "gateway.log"
    gw = subprocess.Popen([sys.executable, "-m", "gateway", "run", "--config", str(cfg)],
                          stderr=open(log, "w"), cwd=ROOT, env={**os.environ, "NO_COLOR": "1"})
    try:
        sock = site["dir"] / "state" / "control.sock"
        wait_for(lambda: gw.poll() is not None or sock.exists(), 20, what="the daemon's socket")
        assert gw.poll() is None, log.read_text()
        r = run_subprocess("diag", "--config", cfg, "--json", timeout=60)
        checks = json.loads(r.stdout)["checks"]
        models = [c for c in checks if c["check"] == "models"]
        assert [c["level"] for c in models] == ["warn", "pass"], models
        assert str(site["broken"]) in models[0]["text"]["en"]
        assert str(site["good"]) in models[1]["text"]["en"] and "meihua-ic" in models[1]["text"]["en"]
        assert "evc-copy" in log.read_text()          # said once at start, as a warning
    finally:
        gw.send_signal(signal.SIGTERM)
        try:
            gw.wait(15)
        except subprocess.TimeoutExpired:
            gw.kill()
            gw.wait(5)
        broker.send_signal(signal.SIGTERM)
        broker.wait(10)
    assert "Traceback" not in log.read_text()


def test_diag_without_a_daemon_warns_about_the_broken_file(site, cli):
    cfg = _config(site["dir"], [])
    rc, out, _ = cli("diag", "--config", cfg, "--json")
    checks = json.loads(out)["checks"]
    warn = [c for c in checks if c["check"] == "models" and c["level"] == "warn"]
    assert len(warn) == 1 and "evc-copy" in warn[0]["text"]["en"] and "model check" in warn[0]["text"]["zh"]
    assert rc in (0, 1)


def test_the_model_strings_are_in_the_ui_table_as_written():
    # model_text adds its strings to i18n's table; a key i18n defines itself
    # would win, so a clash would silently change what these commands say
    assert all(i18n.S[k] == v for k, v in model_text.S.items())
