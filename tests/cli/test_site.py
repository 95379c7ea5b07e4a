"""Every field command against a simulated site, with the daemon running and stopped.

The daemon-running tests come first and the stopped ones last, so the rig
starts the daemon once and stops it once; the `live`/`down` fixtures make
any single test work on its own too.
"""
from __future__ import annotations

import asyncio
import grp
import json
import os
import re
import socket
import stat
import time

import pytest


from .conftest import GW_ID, PREFIX, golden_json, run_subprocess, wait_for

from gateway.field.client import DaemonError
from gateway.field.scan import PortError, with_port
from gateway.poll.portlock import PortLock, lock_path
from gateway.site.config import load_config

pytestmark = pytest.mark.integration


def _status(rig) -> dict:
    return rig.request("status")


def _devices(st: dict) -> dict:
    return {d["name"]: d for d in st["devices"]}


# =========================================================================== daemon running

def test_socket_and_state_dir_permissions(live):
    sock = live.state_dir / "control.sock"
    st = os.stat(sock)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660
    try:
        want_gid = grp.getgrnam("edgegw").gr_gid
    except KeyError:
        want_gid = os.getgid()   # the daemon runs as this user here
    assert st.st_gid == want_gid
    assert stat.S_IMODE(os.stat(live.state_dir).st_mode) == 0o750
    assert os.stat(live.state_dir).st_gid == want_gid


def test_the_daemon_holds_the_port_lock(live):
    # Another process (this one) cannot take the lock while the daemon polls.
    lock = PortLock(lock_path(live.state_dir, "rs485-1"))
    why = lock.acquire()
    try:
        assert why is not None and f"pid {live.gw.pid}" in why and "edgegw run" in why
    finally:
        lock.release()
    cfg = load_config(live.config)
    bus = next(b for b in cfg.buses if b.name == "rs485-1")

    async def nothing(_bus):
        return None
    with pytest.raises(PortError, match=f"in use by pid {live.gw.pid}"):
        asyncio.run(with_port(live.state_dir, bus, nothing))


def test_status_live(live, cli):
    rc, out, err = cli("status", "--config", live.config, "--json")
    st = json.loads(out)
    assert st["daemon"]["running"] is True
    devs = _devices(st)
    assert set(devs) == {"fm-01", "fm-02", "fm-03"}
    assert [f["code"] for f in devs["fm-03"]["faults"]] == ["TEMP-SENSOR"]
    assert rc == 1   # TEMP-SENSOR is a major fault: a problem
    golden_json("status_live.json", st, str(live.dir))

    rc, out, _ = cli("status", "--config", live.config)
    assert rc == 1
    lines = out.splitlines()
    assert lines[0].startswith(f"edgegw status: gateway {GW_ID} (CLI test site)")
    # problems first: the faulty meter heads both the problem list and the device table
    assert lines[2].startswith("PROBLEMS")
    assert "FAIL  fm-03" in lines[3] and "TEMP-SENSOR" in lines[3]
    table = lines[lines.index("DEVICES") + 2]
    assert table.split()[0] == "fm-03"
    # one screen: each problem on one line with the first step
    assert len(lines) <= 29 and lines[3].rstrip().endswith("-> Check the sensor wiring")
    # the site's promise for a major fault ([service] in the rig's config: 8 h, not the default 24 h)
    f = devs["fm-03"]["faults"][0]
    assert f["respond_within_h"] == 8 and f["respond_by"] > f["since"]

    rc, out, _ = cli("status", "fm-03", "--config", live.config)
    assert rc == 1
    assert "manual D3" in out and "respond by" in out and "(within 8 h)" in out and "EVC0003" in out
    assert "1. Check the sensor wiring" in out and "2. Check the temperature sensor" in out
    rc, out, _ = cli("status", "--all", "--config", live.config)
    assert "do first" in out and "cleared by" in out and "POLLS" in out
    rc, out, _ = cli("status", "fm-03", "--config", live.config, "--json")
    assert [d["name"] for d in json.loads(out)["devices"]] == ["fm-03"]
    assert cli("status", "nosuch", "--config", live.config)[0] == 2


def test_status_subprocess_in_chinese(live):
    p = run_subprocess("status", "--config", live.config, "--lang", "zh")
    assert p.returncode == 1, p.stderr
    assert "问题" in p.stdout and "守护进程" in p.stdout and "首先" in p.stdout
    assert "\x1b[" not in p.stdout   # not a terminal: no colour


def test_scan_through_the_daemon(live, cli):
    rc, out, _ = cli("scan", "rs485-1", "--units", "1-5", "--config", live.config, "--json")
    assert rc == 0
    r = json.loads(out)
    assert r["via"] == "daemon"
    assert [(u["unit"], u["model"], u["configured_as"]) for u in r["found"]] == [
        (1, "turbine-evc", "fm-01"), (2, "turbine-evc", "fm-02"), (3, "turbine-evc", "fm-03")]
    golden_json("scan_live.json", r, str(live.dir))
    rc, out, _ = cli("scan", "rs485-1", "--units", "4-4", "--config", live.config)
    assert rc == 1 and "no unit answered" in out


def test_scan_during_polling_loses_no_poll_and_corrupts_no_frame(live, cli, mqtt):
    probe = mqtt(f"{PREFIX}/{GW_ID}/+/telemetry")
    time.sleep(0.5)
    before = _status(live)
    t0 = time.monotonic()
    # 1-25: three meters and 22 silent units, each costing a 0.2 s timeout on the line
    rc, out, _ = cli("scan", "rs485-1", "--units", "1-25", "--config", live.config, "--json")
    t1 = time.monotonic()
    after = _status(live)
    assert rc == 0 and len(json.loads(out)["found"]) == 3
    assert t1 - t0 >= 4.4   # the scan really held the line for several poll intervals
    b0, b1 = before["buses"]["rs485-1"], after["buses"]["rs485-1"]
    assert b1["crc_errors"] == b0["crc_errors"], "a frame was garbled during the scan"
    for name, d0 in _devices(before).items():
        d1 = _devices(after)[name]
        c0, c1 = d0["counters"], d1["counters"]
        polls = c1["polls"] - c0["polls"]
        # every poll in the window answered, and the 1 s rate held (less the edges)
        assert polls >= int(t1 - t0) - 1, (name, polls, t1 - t0)
        assert c1.get("ok", 0) - c0.get("ok", 0) == polls, (name, c0, c1)
        for bad in ("timeout", "crc", "short_response", "bus_down"):
            assert c1.get(bad, 0) == c0.get(bad, 0), (name, bad)
        assert d1["availability"] == "online"
    seen = probe.matching(lambda m: t0 <= m[0] <= t1 + 0.3)
    for name in ("fm-01", "fm-02", "fm-03"):
        n = sum(1 for m in seen if m[1].endswith(f"/{name}/telemetry"))
        assert n >= int(t1 - t0) - 1, (name, n, t1 - t0)


def test_read_through_the_daemon(live, cli):
    rc, out, _ = cli("read", "rs485-1", 1, 16, "--config", live.config, "--json")
    assert rc == 0
    r = json.loads(out)
    assert r["registers"] == [3001] and r["via"] == "daemon"
    rc, out, _ = cli("read", "rs485-1", 1, 20, 8, "--config", live.config, "--json")
    r = json.loads(out)
    strings = {(d["type"], d["order"]): d.get("value") for d in r["decoded"]}
    assert strings[("string", "ABCD")] == "EVC0001"
    golden_json("read_live.json", r, str(live.dir))
    rc, out, _ = cli("read", "rs485-1", 1, 20, 8, "--config", live.config)
    assert "0x4556" in out and "'EVC0001'" in out and "CDAB" in out
    # nobody at unit 9; turbine meters have no input registers
    rc, out, _ = cli("read", "rs485-1", 9, 0, "--config", live.config, "--json")
    assert rc == 1 and json.loads(out)["failure"] == "timeout"
    rc, out, _ = cli("read", "rs485-1", 1, 0, "--input", "--config", live.config, "--json")
    assert rc == 1 and json.loads(out)["failure"].startswith("exception_")


def test_a_bus_the_daemon_does_not_poll_is_opened_directly(live, cli):
    rc, out, _ = cli("scan", "rs485-2", "--units", "4-6", "--config", live.config)
    assert rc == 0
    assert "the daemon does not poll bus rs485-2: opened" in out
    assert "spare" not in out and "(not configured)" in out
    assert "turbine-evc" in out


def test_watch(live, cli):
    rc, out, _ = cli("watch", "--count", 3, "--config", live.config)
    assert rc == 0
    lines = out.splitlines()
    assert len(lines) == 3 + 3    # the current state of each meter, then 3 updates
    assert all(" online " in x for x in lines)
    assert any("fm-03" in x and "TEMP-SENSOR" in x for x in lines)
    # piped through a real pipe: words and key=value pairs, never a Python repr
    p = run_subprocess("watch", "--count", 2, "--config", live.config)
    assert p.returncode == 0, p.stderr
    for x in p.stdout.splitlines():
        assert not re.search(r"\{'|\['|': |\bNone\b|\bTrue\b|\bFalse\b", x), x
        assert re.match(r"\d{4}-\d\d-\d\dT\S+ fm-0\d online ok faults=\S+ volume_std_m3=", x), x
    rc, out, _ = cli("watch", "fm-01", "--count", 2, "--json", "--config", live.config)
    events = [json.loads(x) for x in out.splitlines()]
    assert rc == 0 and len(events) == 3 and {e["device"] for e in events} == {"fm-01"}
    assert "volume_std_m3" in events[-1]["values"] and events[-1]["ok"] is True
    assert cli("watch", "nosuch", "--count", 1, "--config", live.config)[0] == 2


def test_faults_and_history(live, cli):
    rc, out, _ = cli("faults", "--config", live.config, "--json")
    assert rc == 1
    data = json.loads(out)
    fm3 = next(d for d in data["active"] if d["name"] == "fm-03")
    f = fm3["faults"][0]
    assert f["code"] == "TEMP-SENSOR" and f["remedy_steps"]["en"] and f["cleared_by"]["code"] == "self"
    assert any(h["device"] == "fm-03" and h["code"] == "TEMP-SENSOR" and h["state"] == "raised"
               for h in data["history"])
    rc, out, _ = cli("faults", "fm-03", "--config", live.config, "--lang", "zh")
    assert rc == 1 and "处理步骤" in out and "历史记录" in out
    rc, out, _ = cli("faults", "fm-01", "--config", live.config)
    assert rc == 0 and "ACTIVE FAULTS: none" in out
    assert cli("faults", "nosuch", "--config", live.config)[0] == 2
    # the daemon keeps the history file, as JSON lines
    recs = [json.loads(x) for x in (live.state_dir / "history.jsonl").read_text().splitlines()]
    assert any(r["code"] == "TEMP-SENSOR" and r["device"] == "fm-03" for r in recs)


def test_visit_live(live, cli):
    rc, out, _ = cli("visit", "fm-03", "--config", live.config, "--json")
    assert rc == 0
    v = json.loads(out)
    assert v["live"] is True and v["site"] == {"gateway": GW_ID, "site": "CLI test site"}
    dev = v["device"]
    assert (dev["serial"], dev["serial_source"]) == ("EVC0003", "reported")   # the meter's own, not PLATE-0003
    assert (dev["address"], dev["contact"]) == ("Boiler house, line 3", "Mr Li, ext. 8030")
    assert [(f["code"], f["ref"], f["respond_within_h"]) for f in v["problems"]] == [("TEMP-SENSOR", "D3", 8)]
    assert v["blank"]["arrival"] is None and v["blank"]["parts_replaced"] == []
    rc, out, _ = cli("visit", "fm-03", "--config", live.config, "--lang", "zh")
    assert rc == 0 and out.startswith("上门服务记录单") and "TEMP-SENSOR" in out and "手册 D3" in out
    assert "Mr Li, ext. 8030" in out and "客户签字" in out
    assert cli("visit", "nosuch", "--config", live.config)[0] == 2


def _diag_shape(r: dict) -> dict:
    # Levels that depend on the machine (NTP, disk, how busy it is) are not part of the golden file.
    env = {"clock", "disk", "loop"}
    return {"daemon": r["daemon"],
            "checks": [{"check": c["check"], "label_args": c["label_args"],
                        "key": c["key"] if c["check"] not in env else "<env>",
                        "level": c["level"] if c["check"] not in env else "<env>"} for c in r["checks"]]}


def test_diag_live(live, cli):
    rc, out, _ = cli("diag", "--config", live.config, "--json")
    r = json.loads(out)
    assert rc == (1 if r["verdict"]["fails"] else 0)
    by = {(c["check"], c["label_args"].get("bus") or c["label_args"].get("device")): c for c in r["checks"]}
    assert by[("config", None)]["level"] == "pass"
    assert by[("daemon", None)]["level"] == "pass"
    assert by[("broker", None)]["level"] == "pass"
    assert by[("port", "rs485-1")]["level"] == "pass"
    assert by[("bus", "rs485-1")]["key"] == "dg.bus" and by[("bus", "rs485-2")]["key"] == "dg.bus_idle"
    assert {by[("device", n)]["level"] for n in ("fm-01", "fm-02", "fm-03")} == {"pass"}
    assert r["checks"][0]["text"]["zh"] and r["verdict"]["text"]["en"].startswith("verdict:")
    golden_json("diag_live.json", _diag_shape(r))
    rc, out, _ = cli("diag", "--config", live.config, "--lang", "zh")
    assert "结论" in out and "通过" in out


def test_repoll_and_doorlog_on_the_socket(live):
    assert live.request("repoll", {"device": "fm-01"}) == {"device": "fm-01", "bus": "rs485-1", "queued": True}
    with pytest.raises(DaemonError) as e:
        live.request("repoll", {"device": "nosuch"})
    assert e.value.code == "unknown_device"
    with pytest.raises(DaemonError) as e:
        live.request("doorlog", {"controller": "door-1"})
    assert e.value.code == "not_configured" and e.value.message == "not configured"
    assert len(live.request("history", {"limit": 1})) == 1


def _raw(path, data: bytes, timeout: float = 5.0) -> list[dict]:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    s.connect(str(path))
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    buf = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    s.close()
    return [json.loads(x) for x in buf.splitlines()]


def test_malformed_requests_get_an_error_reply_and_the_daemon_carries_on(live):
    sock = live.state_dir / "control.sock"
    replies = _raw(sock, b"not json\n[1, 2]\n{\"cmd\": 5}\n{\"id\": 3, \"cmd\": \"nope\"}\n"
                         b"{\"id\": 4, \"cmd\": \"scan\", \"args\": {\"bus\": \"nosuch\"}}\n"
                         b"{\"id\": 5, \"cmd\": \"read\", \"args\": {\"bus\": \"rs485-1\", \"unit\": \"x\"}}\n"
                         b"{\"id\": {\"a\": 1}, \"cmd\": \"ping\"}\n"
                         b"\xff\xfe\n"
                         b"{\"id\": 6, \"cmd\": \"ping\", \"args\": []}\n"
                         b"{\"id\": 7, \"cmd\": \"ping\"}\n")
    codes = [(r["id"], r["ok"], r.get("code")) for r in replies]
    assert codes == [(None, False, "bad_request"), (None, False, "bad_request"), (None, False, "bad_request"),
                     (3, False, "unknown_cmd"), (4, False, "unknown_bus"), (5, False, "bad_args"),
                     (None, False, "bad_request"), (None, False, "bad_request"), (6, False, "bad_request"),
                     (7, True, None)]
    # a line beyond the limit: an error reply, then the connection is closed
    replies = _raw(sock, b"{\"cmd\": \"" + b"x" * 70000 + b"\"}\n{\"id\": 1, \"cmd\": \"ping\"}\n")
    assert replies[0]["ok"] is False and "longer than" in replies[0]["error"]
    assert live.request("ping")["gateway"] == GW_ID
    assert live.running()


def test_slow_and_silent_clients_do_not_hold_up_the_daemon(live):
    sock = str(live.state_dir / "control.sock")
    idle = socket.socket(socket.AF_UNIX)
    idle.connect(sock)                         # connects, says nothing
    partial = socket.socket(socket.AF_UNIX)
    partial.connect(sock)
    partial.sendall(b'{"id": 1, "cmd": "sta')  # half a line, never finished
    deaf = socket.socket(socket.AF_UNIX)
    deaf.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    deaf.connect(sock)
    deaf.sendall(b'{"id": 1, "cmd": "watch"}\n')   # a stream it never reads
    try:
        polls0 = _devices(_status(live))["fm-01"]["counters"]["polls"]
        t0 = time.monotonic()
        for _ in range(5):
            live.request("ping", timeout=2.0)
        assert time.monotonic() - t0 < 2.0
        wait_for(lambda: _devices(_status(live))["fm-01"]["counters"]["polls"] >= polls0 + 2, 5,
                 what="polls to go on")
    finally:
        for s in (idle, partial, deaf):
            s.close()
    assert live.running()


def test_mqtt_commands(live, mqtt):
    probe = mqtt(f"{PREFIX}/{GW_ID}/cmd/+/reply")
    base = f"{PREFIX}/{GW_ID}/cmd"

    def ask(name, payload, rid):
        probe.publish(f"{base}/{name}", payload)
        return wait_for(lambda: next((m for m in probe.matching(
            lambda m: m[1] == f"{base}/{name}/reply" and m[2].get("id") == rid)), None), 10,
            what=f"the reply to {name} {rid}")

    _, topic, body, retained = ask("repoll", {"id": "r1", "device": "fm-02"}, "r1")
    assert body["ok"] is True and body["result"]["queued"] is True and body["cmd"] == "repoll"
    assert not retained
    for key in ("v", "seq", "ts", "ts_synced"):
        assert key in body
    assert isinstance(body["seq"], int)

    _, _, body, _ = ask("doorlog", {"id": "d1", "controller": "door-1"}, "d1")
    assert body == {**body, "ok": False, "error": "not configured"}

    _, _, body, _ = ask("diag", {"id": 42}, 42)
    assert body["ok"] is True and body["result"]["checks"] and body["result"]["verdict"]["level"] in (
        "pass", "warn", "fail")

    # refused: not on the allowlist, unknown argument, not JSON, unknown device
    _, _, body, _ = ask("reboot", {"id": "x1"}, "x1")
    assert body["ok"] is False and "not allowed" in body["error"] and "repoll" in body["error"]
    _, _, body, _ = ask("repoll", {"id": "x2", "device": "fm-01", "shell": "rm -rf /"}, "x2")
    assert body["ok"] is False and "'shell'" in body["error"]
    probe.publish(f"{base}/repoll", b"{oops")
    wait_for(lambda: probe.matching(lambda m: m[1] == f"{base}/repoll/reply" and m[2].get("id") is None
                                    and "not JSON" in m[2].get("error", "")), 10, what="the non-JSON reply")
    _, _, body, _ = ask("repoll", {"id": "x3", "device": "nosuch"}, "x3")
    assert body["ok"] is False and "nosuch" in body["error"]
    log = live.gw_log.read_text()
    assert "mqtt command 'reboot' (id x1) refused" in log
    assert live.running()


# =========================================================================== daemon stopped

def test_status_stopped_shows_the_last_record(down, cli):
    rc, out, err = cli("status", "--config", down.config)
    assert rc == 2
    assert "DAEMON NOT RUNNING" in out and "state.json" in out
    assert "TEMP-SENSOR" in out      # as the daemon last recorded it
    rc, out, _ = cli("status", "--config", down.config, "--json")
    st = json.loads(out)
    assert rc == 2 and st["daemon"]["running"] is False
    golden_json("status_stopped.json", st, str(down.dir))


def test_scan_and_read_open_the_port_directly(down, cli):
    rc, out, _ = cli("scan", "rs485-1", "--units", "1-4", "--config", down.config)
    assert rc == 0
    assert f"daemon not running: opened {down.where['buses']['rs485-1']} directly" in out
    assert out.count("turbine-evc") == 3
    rc, out, _ = cli("scan", "rs485-1", "--units", "1-4", "--config", down.config, "--json")
    r = json.loads(out)
    assert r["via"] == "direct"
    golden_json("scan_direct.json", r, str(down.dir))
    rc, out, _ = cli("read", "rs485-1", 2, 16, "--config", down.config, "--json")
    assert rc == 0 and json.loads(out)["registers"] == [3001] and json.loads(out)["via"] == "direct"
    # the lock is released again: the daemon could start now
    lock = PortLock(lock_path(down.state_dir, "rs485-1"))
    assert lock.acquire() is None
    lock.release()


def test_direct_access_waits_for_nobody_holding_the_lock(down, cli):
    lock = PortLock(lock_path(down.state_dir, "rs485-1"))
    assert lock.acquire() is None
    try:
        rc, out, err = cli("read", "rs485-1", 1, 16, "--config", down.config)
        assert rc == 2 and f"in use by pid {os.getpid()}" in err
    finally:
        lock.release()


def test_watch_faults_diag_stopped(down, cli):
    rc, _, err = cli("watch", "--count", 1, "--config", down.config)
    assert rc == 2 and "needs the running daemon" in err
    rc, out, _ = cli("faults", "--config", down.config)
    assert rc == 2 and "daemon is not running" in out and "TEMP-SENSOR" in out and "HISTORY" in out
    rc, out, _ = cli("diag", "--config", down.config, "--json")
    r = json.loads(out)
    assert rc == 1 and r["daemon"] is False
    levels = {c["check"]: c["level"] for c in r["checks"]}
    assert levels["daemon"] == "fail" and levels["broker"] == "pass" and levels["config"] == "pass"
    golden_json("diag_stopped.json", _diag_shape(r))


def test_visit_stopped_reads_the_state_folder(down, cli):
    rc, out, err = cli("visit", "fm-03", "--config", down.config, "--json")
    assert rc == 2 and "daemon is not running" in err
    v = json.loads(out)
    assert v["live"] is False and v["recorded"]["path"].endswith("state.json")
    assert v["device"]["serial"] == "EVC0003"    # the values the daemon last recorded
    assert [(f["code"], f["ref"]) for f in v["problems"]] == [("TEMP-SENSOR", "D3")]
    rc, out, _ = cli("visit", "fm-03", "--config", down.config)
    assert rc == 2 and "the daemon is not running" in out and "TEMP-SENSOR" in out


def test_usage_errors(down, cli, tmp_path):
    assert cli("status", "--config", tmp_path / "missing.toml")[0] == 2
    assert cli("scan", "nosuch", "--config", down.config)[0] == 2
    assert cli("scan", "rs485-1", "--units", "0-300", "--config", down.config)[0] == 2
    assert cli("read", "rs485-1", 1, 70000, "--config", down.config)[0] == 2
    with pytest.raises(SystemExit) as e:
        cli("status", "--lang", "fr")
    assert e.value.code == 2
