"""A real Mosquitto on 127.0.0.1 with a password file, an ACL and optionally
TLS, as a site broker would run; and MQTT clients that log in to it."""
from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from tests.support import _can_connect, free_port, mosquitto_exe, stop_proc, wait_until

# Run as root, Mosquitto drops to its own user and could not read the test's
# private temporary folder.
AS_ME = "user root\n" if os.geteuid() == 0 else ""


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_pki(d: Path) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client one (CN t1)."""
    d.mkdir(parents=True, exist_ok=True)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
            "-days", "30", "-subj", "/CN=edgegw test CA", cwd=d)
    for name, cn in (("server", "127.0.0.1"), ("client", "t1")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN={cn}", cwd=d)
        (d / f"{name}.ext").write_text("subjectAltName=IP:127.0.0.1\n" if name == "server" else "")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.crt", "-days", "30", "-extfile", f"{name}.ext", cwd=d)
    return d


def password_file(path: Path, users: dict[str, str]) -> Path:
    first = True
    for user, password in users.items():
        subprocess.run(["mosquitto_passwd", "-b", *(["-c"] if first else []), str(path), user, password],
                       check=True, capture_output=True, timeout=30)
        first = False
    return path


class AuthBroker:
    """Mosquitto with `password_file`, `acl_file` and no anonymous access."""

    def __init__(self, workdir: Path, users: dict[str, str], acl: str, tls: Path | None = None) -> None:
        self.workdir = workdir
        self.port = free_port()
        pw = password_file(workdir / "passwd", users)
        (workdir / "acl").write_text(acl)
        lines = [f"listener {self.port} 127.0.0.1", f"password_file {pw}", f"acl_file {workdir / 'acl'}",
                 "allow_anonymous false", "persistence false"]
        if tls is not None:
            lines += [f"cafile {tls / 'ca.crt'}", f"certfile {tls / 'server.crt'}",
                      f"keyfile {tls / 'server.key'}"]
        conf = workdir / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n" + AS_ME)
        self.log = workdir / "mosquitto.log"
        self.proc = subprocess.Popen([mosquitto_exe(), "-c", str(conf), "-v"], stdout=subprocess.DEVNULL,
                                     stderr=open(self.log, "w"))
        wait_until(lambda: _can_connect(self.port), 10, "broker listening")

    def stop(self) -> None:
        stop_proc(self.proc)


class Client:
    """A logged-in paho client that records what it receives."""

    def __init__(self, port: int, user: str, password: str, name: str, ca_file: Path | None = None) -> None:
        self.got: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self.refused: list[str] = []
        self.c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"acl-{name}-{os.getpid()}")
        self.c.username_pw_set(user, password)
        if ca_file is not None:
            self.c.tls_set(ca_certs=str(ca_file))
        self.c.on_connect = self._on_connect
        self.c.on_message = self._on_message
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()

    def _on_connect(self, client, userdata, flags, rc, props) -> None:
        if rc.is_failure:
            self.refused.append(str(rc))
        else:
            self.connected.set()

    def _on_message(self, client, userdata, msg) -> None:
        with self.lock:
            self.got.append((msg.topic, msg.payload, bool(msg.retain)))

    def wait_connected(self) -> Client:
        assert self.connected.wait(10), f"not connected: {self.refused}"
        return self

    def subscribe(self, topic: str) -> list[int]:
        """Subscribe and wait for the SUBACK; returns the granted codes."""
        done = threading.Event()
        granted: list[int] = []

        def on_subscribe(client, userdata, mid, codes, props):
            granted.extend(int(getattr(c, "value", c)) for c in codes)
            done.set()

        self.c.on_subscribe = on_subscribe
        self.c.subscribe(topic, qos=1)
        assert done.wait(10), "no SUBACK"
        return granted

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        """QoS 1 publish that waits for the PUBACK. Mosquitto acknowledges a
        publish the ACL refuses as well (MQTT 3.1.1 has no way to say no),
        so only what subscribers see tells allowed from refused."""
        info = self.c.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(10)
        assert info.is_published()

    def seen(self, topic: str) -> list[bytes]:
        with self.lock:
            return [p for t, p, _r in self.got if t == topic]

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()
