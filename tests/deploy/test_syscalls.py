"""Every system call the daemon makes is one the unit's SystemCallFilter=
allows.

The daemon runs a real site under strace: a serial bus on a pseudo-terminal
and a Modbus TCP bus (both real pymodbus), a Mosquitto with TLS, a password
and the shipped ACL, a field command over the control socket, MQTT
commands (repoll, diag), and a SIGTERM shutdown. A call outside the allow
list would fail with EPERM on the box (SystemCallErrorNumber=EPERM), which
no other test here could see, since systemd does not run them.

Only this machine's architecture is traced: on 32-bit Raspberry Pi OS glibc
uses the *64 variants (clock_adjtime64 ...), which the unit lists as well."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.brokers import AuthBroker, Client, make_pki
from tests.deploy.unitfile import ROOT, UNIT, allowed_syscalls, systemd_analyze
from tests.support import gateway_config, start_sim, stop_proc, wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(systemd_analyze() is None,
                       reason="systemd-analyze not installed (Debian package `systemd`)"),
    pytest.mark.skipif(shutil.which("strace") is None, reason="strace not installed (Debian package `strace`)"),
]

SCENARIO = """
[simulator]
tick_s = 0.1
[[bus]]
name = "rs485-1"
kind = "pty"
link = "ttySYS"
[[bus]]
name = "tcp-1"
kind = "tcp"
listen = "127.0.0.1:{port}"
[[device]]
bus = "rs485-1"
unit = 1
model = "turbine-evc"
name = "fm-01"
pin = {{ flow_m3h = 20.0, temperature_C = 15.0, pressure_kPa = 300.0, battery_V = 3.6 }}
[[device]]
bus = "tcp-1"
unit = 1
model = "meihua-ic"
name = "home-01"
"""
DEVICES = [{"name": "fm-01", "bus": "rs485-1", "unit": 1, "model": "turbine-evc"},
           {"name": "home-01", "bus": "tcp-1", "unit": 1, "model": "meihua-ic"}]
CALL = re.compile(r"^\d+\s+(?:<\.\.\. )?([a-z_][a-z0-9_]*)(?:\(| resumed>)")


def traced_calls(trace: Path) -> set[str]:
    calls = set()
    for line in trace.read_text(errors="replace").splitlines():
        m = CALL.match(line)
        if m:
            calls.add(m.group(1))
    return calls


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def test_the_daemon_needs_no_call_outside_the_filter(tmp_path):
    from tests.support import free_port

    probe = subprocess.run(["strace", "-f", "-qq", "-o", os.devnull, "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"strace cannot trace here: {probe.stderr.strip()[:200]}")

    pki = make_pki(tmp_path / "pki")
    users = {"t1": "gw-pw", "central": "op-pw"}
    broker = AuthBroker(tmp_path, users, (ROOT / "deploy" / "edgegw.acl").read_text(), tls=pki)
    sim = gw = None
    central = None
    try:
        cred = tmp_path / "mqtt.credentials"
        cred.write_text("t1\ngw-pw\n")
        cred.chmod(0o600)
        sim, where = start_sim(tmp_path, SCENARIO.format(port=free_port()))
        cfg = gateway_config(tmp_path, broker.port, where["buses"], DEVICES)
        cfg.write_text(cfg.read_text().replace("keepalive = 5", f'keepalive = 5\ncredentials_file = "{cred}"')
                       + f'\n[mqtt.tls]\nca_file = "{pki / "ca.crt"}"\n')
        trace = tmp_path / "trace"
        gw = subprocess.Popen(["strace", "-f", "-qq", "-o", str(trace), sys.executable, "-m", "gateway", "run",
                               "--config", str(cfg)], cwd=ROOT, stdout=open(tmp_path / "gw.log", "w"),
                              stderr=subprocess.STDOUT)
        central = Client(broker.port, "central", "op-pw", "central", ca_file=pki / "ca.crt").wait_connected()
        central.subscribe("edgegw/#")
        wait_until(lambda: central.seen("edgegw/t1/fm-01/telemetry") and central.seen("edgegw/t1/home-01/telemetry"),
                   60, "telemetry from both buses (under strace)")
        status = subprocess.run([sys.executable, "-m", "gateway", "status", "--config", str(cfg)], cwd=ROOT,
                                capture_output=True, text=True, timeout=60)
        assert status.returncode == 0 and "running" in status.stdout, status.stdout + status.stderr
        for n, (name, body) in enumerate((("repoll", {"device": "fm-01"}), ("diag", {}))):
            central.publish(f"edgegw/t1/cmd/{name}", json.dumps({"id": f"c-{n}", **body}).encode())
            reply = f"edgegw/t1/cmd/{name}/reply"
            wait_until(lambda topic=reply: central.seen(topic), 60, f"{name} reply")
        daemon = wait_until(lambda: children(gw.pid), 5, "the traced daemon's pid")[0]
        os.kill(daemon, signal.SIGTERM)
        assert gw.wait(60) == 0, (tmp_path / "gw.log").read_text()[-2000:]
        gw = None
    finally:
        if central is not None:
            central.close()
        stop_proc(gw)
        stop_proc(sim)
        broker.stop()

    used = traced_calls(trace)
    print("calls made:", " ".join(sorted(used)))
    assert {"openat", "connect", "ioctl", "clock_adjtime"} & used, sorted(used)   # the trace is real
    outside = used - allowed_syscalls(UNIT.read_text())
    assert not outside, f"calls the unit's SystemCallFilter= refuses with EPERM: {sorted(outside)}"


def test_the_filter_check_can_fail():
    # Without the unit's extra line the clock query would be refused.
    text = UNIT.read_text().replace("SystemCallFilter=adjtimex clock_adjtime clock_adjtime64\n", "")
    assert "clock_adjtime" not in allowed_syscalls(text)
    assert "clock_adjtime" in allowed_syscalls(UNIT.read_text())
