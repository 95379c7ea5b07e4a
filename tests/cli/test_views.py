"""Screens rendered from fixed inputs (stable golden text), the UI strings,
and the pieces under the commands: history file, port lock, control server."""
from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

import gateway.field.control as control
from gateway.field import demo, i18n, text, tool_views, views
from gateway.field.checks import check_broker, item
from gateway.field.client import ControlClient, DaemonError, load_cfg
from gateway.field.control import ControlServer
from gateway.field.diag import finish
from gateway.field.history import History
from gateway.field.requests import Requests
from gateway.poll.portlock import PortLock
from gateway.site.config import Checker
from gateway.site.config.checker import BAD
from protocols.models import load_models

from .conftest import GOLDEN, check_golden

STATUS = json.loads((GOLDEN / "status_input.json").read_text(encoding="utf-8"))
STOPPED = json.loads((GOLDEN / "status_stopped_input.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_status_screen(lang):
    check_golden(f"status.{lang}.txt", views.render_status_all(STATUS, lang))


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_status_screen_daemon_stopped(lang):
    check_golden(f"status_stopped.{lang}.txt", views.render_status_all(STOPPED, lang))


def test_status_problems_come_first_and_set_the_exit_code():
    pbs = views.problems(STATUS)
    assert [p["level"] for p in pbs] == sorted((p["level"] for p in pbs), key=["fail", "warn"].index)
    assert [(p["subject"], p["key"]) for p in pbs if p["level"] == "fail"] == [
        ("fm-02", "pb.unavailable"), ("fm-02", "pb.fault"), ("fm-03", "pb.fault")]
    text = views.render_status_all(STATUS, "en")
    rows = text.split("DEVICES\n", 1)[1].splitlines()[1:5]
    assert [r.split()[0] for r in rows] == ["fm-02", "fm-03", "fm-01", "fm-04"]


@pytest.mark.parametrize("render", [views.render_status, views.render_status_all])
def test_status_colour_only_when_asked(render):
    assert "\x1b[" not in render(STATUS, "en", color=False)
    coloured = render(STATUS, "en", color=True)
    assert "\x1b[1;31mFAIL\x1b[0m" in coloured
    assert re.sub(r"\x1b\[[0-9;]*m", "", coloured) == render(STATUS, "en")


def _diag_fixture() -> dict:
    items = [
        item("config", "pass", "dg.config_ok", path="/etc/edgegw/edgegw.toml"),
        item("daemon", "pass", "dg.daemon_up", pid=812, up_s=181200),
        item("port", "warn", "dg.port_plain", {"bus": "rs485-1"}, port="/dev/ttyUSB0",
             byid="/dev/serial/by-id/usb-FTDI_FT232R-if00-port0"),
        item("broker", "pass", "dg.broker_ok", where="mqtt.example.net:8883", ms=84, who_key="dg.broker_who",
             user="hz-0417"),
        item("tls", "warn", "dg.tls_soon", what_key="dg.tls_broker", until="2026-12-10", days=16),
        item("clock", "pass", "dg.clock_ok"),
        item("disk", "pass", "dg.disk", path="/var/lib/edgegw", free="5.1 GiB", total="14.6 GiB", pct=35.0),
        item("backlog", "pass", "dg.backlog", n=42, size="17.8 KiB", age_s=12.5, dropped=0),
        item("bus", "warn", "dg.bus", {"bus": "rs485-1"}, requests=96210, timeouts=221, crc=1900, mismatch=0, exc=0,
             mean=38.2, p95=61.0),
        item("device", "pass", "dg.dev_ok", {"device": "fm-01"}),
        item("device", "fail", "dg.dev_down", {"device": "fm-02"}, err="timeout", ts="2026-11-23T08:29:59.300Z"),
    ]
    r = finish("hz-0417", True, items)
    r["ts"] = "2026-11-23T08:30:00.000Z"
    return r


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_diag_screen(lang):
    r = _diag_fixture()
    check_golden(f"diag.{lang}.txt", tool_views.render_diag(r, lang))
    assert r["verdict"]["level"] == "fail" and r["verdict"]["fails"] == 1
    assert r["verdict"]["text"][lang] == tool_views.verdict_text(r["checks"], lang)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_explain_screen(lang):
    m = load_models()["turbine-evc"]
    e = views.explain_dict(m, m.fault("TEMP-SENSOR"))
    check_golden(f"explain.{lang}.txt", views.render_explain(e, lang))


def test_explain_json_and_errors(cli):
    rc, out, _ = cli("explain", "meihua-ic", "ERR-1", "--json")
    e = json.loads(out)
    assert rc == 0 and e["ref"] == "A8" and e["cleared_by"] == "fault_card"
    assert e["en"]["causes"] and e["zh"]["remedy"] and isinstance(e["site_visit"], bool)
    check_golden("explain_meihua-ic_ERR-1.json", json.dumps(e, ensure_ascii=False, indent=2) + "\n")
    # the same code on another model is another fault
    assert json.loads(cli("explain", "mhcg", "ERR-1", "--json")[1])["ref"] != "A8"
    rc, _, err = cli("explain", "nosuch", "X")
    assert rc == 2 and "turbine-evc" in err
    rc, _, err = cli("explain", "turbine-evc", "temp-sensr")
    assert rc == 2 and "did you mean TEMP-SENSOR" in err
    assert cli("explain", "turbine-evc", "temp-sensor")[0] == 0   # case does not matter


def test_config_check_renders_in_the_same_style(cli, tmp_path):
    good = tmp_path / "good.toml"
    good.write_text('[gateway]\nid = "x"\nlanguage = "zh"\n')
    rc, out, _ = cli("config", "check", good)
    assert rc == 0 and out.startswith("配置检查：") and "结论：有效" in out
    bad = tmp_path / "bad.toml"
    bad.write_text('[gateway]\nid = "x"\nlangauge = "en"\n[[bus]]\nname = "b"\nport = "ttyUSB0"\nparity = "X"\n')
    rc, out, _ = cli("config", "check", bad, "--lang", "en")
    assert rc == 1
    assert 'FAIL  gateway.langauge: unknown key (did you mean "language"?)' in out
    assert "verdict: 3 problem(s)" in out
    rc, out, _ = cli("config", "check", bad, "--json")
    assert rc == 1 and json.loads(out)["ok"] is False and len(json.loads(out)["problems"]) == 3


def test_a_group_member_who_cannot_read_the_mqtt_password_can_still_use_the_commands(tmp_path, monkeypatch):
    creds = tmp_path / "mqtt.credentials"
    creds.write_text("edgegw\nsecret\n")
    creds.chmod(0o600)
    path = tmp_path / "edgegw.toml"
    path.write_text('[gateway]\nid = "x"\nstate_dir = "state"\n[mqtt]\ncredentials_file = "mqtt.credentials"\n'
                    '[[bus]]\nname = "b"\nport = "/dev/ttyUSB7"\n')
    real = Checker.existing_file

    def as_group_member(self, kp, v):   # tests run as root, who reads everything
        if kp == "mqtt.credentials_file":
            self.add(kp, f"{self.resolve(v)} cannot be read (Permission denied)")
            return BAD
        return real(self, kp, v)
    monkeypatch.setattr(Checker, "existing_file", as_group_member)
    cfg, problems = load_cfg(str(path), load_models())
    assert problems and cfg is not None
    assert cfg.mqtt.username is None and cfg.gateway.state_dir == tmp_path / "state"
    assert [b.name for b in cfg.buses] == ["b"]
    # any other problem still makes the config unusable
    path.write_text(path.read_text() + 'parity = "X"\n')
    assert load_cfg(str(path), load_models())[0] is None


def test_every_ui_string_exists_in_both_languages_with_the_same_fields():
    fields = re.compile(r"{(\w+)")
    for key, (en, zh) in i18n.S.items():
        assert en.strip() and zh.strip(), key
        assert set(fields.findall(en)) == set(fields.findall(zh)), key


def test_tables_align_chinese_by_display_width():
    lines = text.table(["名称", "X"], [["设备一", "a"], ["fm-01", "b"]])
    assert {text.width(x[:x.index(x.strip()[-1])]) for x in lines} == {text.width(lines[0]) - 1}
    assert text.width("中文ab") == 6
    assert text.clip("\x1b[32m中文abc\x1b[0m", 5).startswith("\x1b[32m中文a")


def test_ages_and_sizes():
    assert i18n.age(59, "en") == "59 s" and i18n.age(3720, "en") == "1 h 2 min"
    assert i18n.age(90061, "zh") == "1天1小时" and i18n.age(None, "en") == "-"
    assert i18n.size(18230) == "17.8 KiB" and i18n.size(12) == "12 B"
    assert i18n.norm("zh_CN.UTF-8") == "zh" and i18n.norm("C") is None


# --------------------------------------------------------------------------- pieces

def test_history_is_bounded_and_reads_across_the_rotation(tmp_path):
    h = History(tmp_path / "history.jsonl", max_lines=10)
    for i in range(27):
        h.append([{"ts": f"t{i}", "device": "a" if i % 2 else "b", "code": "X", "state": "raised"}])
    lines = sum(1 for p in tmp_path.iterdir() for _ in p.open())
    assert lines <= 10
    got = h.read()
    assert [r["ts"] for r in got] == [f"t{i}" for i in range(27 - len(got), 27)]
    assert [r["ts"] for r in h.read(2, ["a"])] == ["t23", "t25"]
    (tmp_path / "history.jsonl").open("a").write('{"torn": \n')
    assert h.read(1)[0]["ts"] == "t26"   # a torn line is skipped, not fatal


def test_port_lock_is_exclusive_and_says_who_holds_it(tmp_path):
    a, b = PortLock(tmp_path / "rs485-1.lock"), PortLock(tmp_path / "rs485-1.lock")
    assert a.acquire() is None
    why = b.acquire()
    assert why is not None and why.startswith("in use by pid ")
    a.release()
    assert b.acquire() is None
    b.release()


def _fake_daemon(state_dir: Path):
    gw = SimpleNamespace(state_dir=state_dir, id="t", site="", language="en")
    cfg = SimpleNamespace(gateway=gw, buses=(), devices=())
    return SimpleNamespace(cfg=cfg, buses=[], runtimes={}, topics=SimpleNamespace(cmd="edgegw/t/cmd"), models={})


def test_a_client_that_stops_reading_is_dropped_not_waited_for(tmp_path, monkeypatch):
    monkeypatch.setattr(control, "WRITE_TIMEOUT_S", 0.5)
    ended = []

    class Flooding(Requests):
        async def h_flood(self, args, send):
            try:
                for _ in range(100000):
                    await send({"progress": {"pad": "x" * 4000}})
            finally:
                ended.append(time.monotonic())
        HANDLERS = {**Requests.HANDLERS, "flood": h_flood}

    async def main():
        srv = ControlServer(_fake_daemon(tmp_path), Flooding)
        await srv.start()
        deaf = socket.socket(socket.AF_UNIX)
        deaf.setblocking(False)
        deaf.connect(str(srv.path))
        deaf.send(b'{"id": 1, "cmd": "flood"}\n')
        t0 = time.monotonic()
        loop = asyncio.get_running_loop()
        # meanwhile another client is served at once
        pong = await loop.run_in_executor(None, lambda: ControlClient(srv.path, 2.0).request("ping"))
        assert pong["gateway"] == "t"
        while not ended and time.monotonic() - t0 < 5:
            await asyncio.sleep(0.05)
        deaf.close()
        await srv.stop()
        return t0

    t0 = asyncio.run(main())
    assert ended and ended[0] - t0 < 3.0


def test_control_server_leaves_another_daemons_socket_alone(tmp_path):
    async def main():
        first = ControlServer(_fake_daemon(tmp_path))
        await first.start()
        second = ControlServer(_fake_daemon(tmp_path))
        await second.start()
        assert second._server is None
        loop = asyncio.get_running_loop()
        assert (await loop.run_in_executor(None, lambda: ControlClient(first.path, 2.0).request("ping")))
        with pytest.raises(DaemonError):
            await loop.run_in_executor(None, lambda: ControlClient(first.path, 2.0).request("status", {"x": 1}))
        await first.stop()
        assert not first.path.exists()
    asyncio.run(main())


# --------------------------------------------------------------------------- TLS

@pytest.mark.integration
def test_broker_tls_certificate_days_left(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    cert, key = tmp_path / "broker.pem", tmp_path / "broker.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "10",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True, timeout=30)
    port = demo.free_port()
    conf = tmp_path / "m.conf"
    # `user root`: started as root, Mosquitto would drop to its own user, which
    # cannot read a key in pytest's private temp folder.
    conf.write_text(f"user root\nlistener {port} 127.0.0.1\nallow_anonymous true\n"
                    f"certfile {cert}\nkeyfile {key}\n")
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    broker = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        tls = SimpleNamespace(ca_file=cert, cert_file=cert, key_file=key, insecure=False)
        mqtt = SimpleNamespace(host="localhost", port=port, client_id="t", username=None, password=None, tls=tls)
        items = check_broker(mqtt)
        by = [(c["check"], c["level"], c["key"]) for c in items]
        assert by[0] == ("broker", "pass", "dg.broker_ok"), items
        tls_items = [c for c in items if c["check"] == "tls"]
        assert [c["key"] for c in tls_items] == ["dg.tls_soon", "dg.tls_soon"]    # broker's, then ours
        assert tls_items[0]["args"]["days"] in (9, 10)
        assert "days left" in tool_views.check_text(tls_items[0], "en")
        # a CA that did not sign it: the handshake fails and says why
        other = tmp_path / "other.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "10", "-subj",
                        "/CN=other", "-keyout", str(tmp_path / "o.key"), "-out", str(other)],
                       check=True, capture_output=True, timeout=30)
        mqtt.tls = SimpleNamespace(ca_file=other, cert_file=None, key_file=None, insecure=False)
        items = check_broker(mqtt)
        assert items[0]["level"] == "fail" and items[1]["key"] == "dg.tls_bad"
    finally:
        broker.terminate()
        broker.wait(5)
    assert ssl  # stdlib only


# --------------------------------------------------------------------------- broker check (paho)

@pytest.mark.integration
def test_broker_check_says_why_a_login_is_refused_and_what_is_not_a_broker(tmp_path):
    from tests.support import Broker, stop_proc, wait_until
    if shutil.which("mosquitto_passwd") is None:
        pytest.skip("mosquitto_passwd not installed")
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(tmp_path / "pw"), "gw", "right"], check=True,
                   capture_output=True)
    os.chmod(tmp_path / "pw", 0o644)
    port = demo.free_port()
    conf = tmp_path / "auth.conf"
    conf.write_text(("user root\n" if os.geteuid() == 0 else "") + f"listener {port} 127.0.0.1\npassword_file {tmp_path}/pw\nallow_anonymous false\n")
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    auth = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    open_broker = Broker(tmp_path).start()
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    try:
        wait_until(lambda: _listening(port), 10, "broker")
        mqtt = SimpleNamespace(host="127.0.0.1", port=port, client_id="t", username="gw", password="wrong", tls=None)
        items = check_broker(mqtt)
        assert (items[0]["key"], items[0]["args"]["why"]) in {("dg.broker_refused", "not authorised"),
                                                               ("dg.broker_refused", "bad user name or password")}
        mqtt.password = "right"
        items = check_broker(mqtt)
        assert items[0]["key"] == "dg.broker_ok" and items[0]["args"]["user"] == "gw"
        mqtt = SimpleNamespace(host="127.0.0.1", port=open_broker.port, client_id="t", username=None,
                               password=None, tls=None)
        assert check_broker(mqtt)[0]["key"] == "dg.broker_ok"
        # a port that accepts and never answers: a bounded wait, then a reason
        mqtt.port = silent.getsockname()[1]
        t0 = time.monotonic()
        items = check_broker(mqtt, timeout=1.0)
        assert items[0]["key"] == "dg.broker_unreachable" and "no answer" in items[0]["args"]["why"]
        assert time.monotonic() - t0 < 10
        mqtt.port = demo.free_port()   # nothing listens
        assert check_broker(mqtt)[0]["key"] == "dg.broker_unreachable"
    finally:
        silent.close()
        open_broker.stop()
        stop_proc(auth)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False
