"""The checks of `edgegw diag` that need no daemon: the config, the serial
ports, the broker (TCP, TLS and an MQTT login with the site's credentials,
through the same paho client the daemon uses), certificates, the clock and
the disk. Blocking: the daemon runs them in a thread."""
from __future__ import annotations

import os
import shutil
import ssl
import time
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from gateway.site import clock
from gateway.site.config import check_config as _check
from gateway.site.config.checker import one_line
from protocols.models import load_catalogue

from . import i18n
from .client import site_catalogue
from .model import diag_items as model_items

BY_ID = "/dev/serial/by-id"



BROKER_TIMEOUT_S = 3.0



CERT_WARN_DAYS = 30



def item(check: str, level: str, key: str, label_args: dict | None = None, **args) -> dict:
    return {"check": check, "label_args": label_args or {}, "level": level, "key": key, "args": args}



def check_config(path, started_epoch: float | None = None) -> dict:
    problems = _check(path, known_models=site_catalogue(path))
    if problems:
        return item("config", "fail", "dg.config_bad", path=one_line(str(path)), n=len(problems), first=problems[0])
    if started_epoch is not None:
        try:
            if os.stat(path).st_mtime > started_epoch:
                return item("config", "warn", "dg.config_changed", path=one_line(str(path)))
        except OSError:
            pass
    return item("config", "pass", "dg.config_ok", path=one_line(str(path)))



def _by_id_names(real: str) -> list[str]:
    try:
        names = sorted(os.listdir(BY_ID))
    except OSError:
        return []
    return [os.path.join(BY_ID, n) for n in names if os.path.realpath(os.path.join(BY_ID, n)) == real]



def check_port(bus_cfg) -> dict:
    lab = {"bus": bus_cfg.name}
    if bus_cfg.kind == "tcp":
        return item("port", "pass", "dg.port_tcp", lab, where=f"{bus_cfg.port}:{bus_cfg.tcp_port}")
    p = bus_cfg.port
    if not os.path.exists(p):
        return item("port", "fail", "dg.port_missing", lab, port=p)
    real = os.path.realpath(p)
    if p.startswith(BY_ID + "/"):
        return item("port", "pass", "dg.port_byid", lab, port=p, real=real)
    names = _by_id_names(real)
    if names:
        return item("port", "warn", "dg.port_plain", lab, port=p, byid=names[0])
    return item("port", "pass", "dg.port_nobyid", lab, port=p)



# The v3.1.1 CONNACK codes in the words `edgegw diag` has always used; paho
# reports them as the MQTT 5 reason codes they map to.
CONNACK_CODES = {1: "unacceptable protocol version", 2: "client id rejected", 3: "server unavailable",
                 4: "bad user name or password", 5: "not authorised"}



_REFUSED = {int(paho.convert_connack_rc_to_reason_code(paho.ConnackCode(rc)).value): why
            for rc, why in CONNACK_CODES.items()}



def _cert_expiry(not_after: str) -> dict:
    exp = ssl.cert_time_to_seconds(not_after)
    return {"until": time.strftime("%Y-%m-%d", time.gmtime(exp)), "days": int((exp - time.time()) // 86400)}



def _cert_item(what: str, not_after: str | None, why: str | None = None) -> dict:
    label = "dg.tls_broker" if what == "broker" else "dg.tls_client"
    if why is not None or not not_after:
        return item("tls", "fail", "dg.tls_bad", what_key=label, why=why or "no expiry date")
    e = _cert_expiry(not_after)
    if e["days"] < 0:
        return item("tls", "fail", "dg.tls_expired", what_key=label, until=e["until"])
    level = "warn" if e["days"] < CERT_WARN_DAYS else "pass"
    return item("tls", level, "dg.tls_soon" if level == "warn" else "dg.tls_ok", what_key=label, **e)



def decode_cert_file(path) -> dict:
    # Stdlib only, as the gateway must install without a compiler: the ssl
    # module's own PEM decoder (private, so guarded by the caller).
    return ssl._ssl._test_decode_cert(str(path))  # type: ignore[attr-defined]



def check_broker(mqtt, timeout: float = BROKER_TIMEOUT_S) -> list[dict]:
    """TCP connect, TLS handshake when configured, MQTT CONNECT with the
    site's credentials under a client id of its own (the daemon's session
    is not disturbed), then DISCONNECT: the same paho client the daemon uses."""
    where = f"{mqtt.host}:{mqtt.port}"
    out: list[dict] = []
    t0 = time.monotonic()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"{mqtt.client_id}-diag",
                         protocol=paho.MQTTv311, clean_session=True)
    client.connect_timeout = timeout
    if mqtt.username is not None:
        client.username_pw_set(mqtt.username, mqtt.password)
    answer: list = []
    client.on_connect = lambda _c, _u, _flags, reason, _props: answer.append(reason)
    try:
        if mqtt.tls is not None:
            ctx = ssl.create_default_context(cafile=str(mqtt.tls.ca_file))
            if mqtt.tls.cert_file:
                ctx.load_cert_chain(str(mqtt.tls.cert_file), str(mqtt.tls.key_file))
            if mqtt.tls.insecure:
                ctx.check_hostname = False
            client.tls_set_context(ctx)
        try:
            client.connect(mqtt.host, mqtt.port, keepalive=10)
        except ssl.SSLCertVerificationError as exc:
            out.append(_cert_item("broker", None, exc.verify_message or str(exc)))
            raise
        if mqtt.tls is not None:
            sock = client.socket()
            not_after = (sock.getpeercert() if isinstance(sock, ssl.SSLSocket) else {}).get("notAfter")
            out.append(_cert_item("broker", not_after if isinstance(not_after, str) else None))
        deadline = t0 + timeout
        while not answer:
            if time.monotonic() > deadline:
                raise TimeoutError
            rc = client.loop(timeout=0.05)
            if rc != paho.MQTT_ERR_SUCCESS and not answer:
                raise ConnectionError("the broker closed the connection before CONNACK"
                                      if rc == paho.MQTT_ERR_CONN_LOST else f"not an MQTT broker ({paho.error_string(rc)})")
        reason = answer[0]
        ms = round((time.monotonic() - t0) * 1000)
        if reason.is_failure:
            why = _REFUSED.get(int(reason.value), f"code {int(reason.value)}")
            out.insert(0, item("broker", "fail", "dg.broker_refused", where=where, why=why))
        else:
            client.disconnect()
            who = mqtt.username
            out.insert(0, item("broker", "pass", "dg.broker_ok", where=where, ms=ms,
                               who_key="dg.broker_who" if who else None, user=who or ""))
    except (OSError, ssl.SSLError) as exc:
        why = getattr(exc, "verify_message", None) or getattr(exc, "strerror", None) or str(exc) \
            or type(exc).__name__
        if isinstance(exc, TimeoutError):
            why = f"no answer within {timeout:.0f} s"
        out.insert(0, item("broker", "fail", "dg.broker_unreachable", where=where, why=why))
    finally:
        sock = client.socket()
        if sock is not None:
            sock.close()
    if mqtt.tls is not None and mqtt.tls.cert_file:
        out.append(check_client_cert(mqtt.tls.cert_file))
    return out



def check_client_cert(cert_file) -> dict:
    try:
        return _cert_item("client", decode_cert_file(cert_file).get("notAfter"))
    except Exception as exc:  # noqa: BLE001 - ssl's decoder raises various things
        return _cert_item("client", None, f"cannot decode {cert_file}: {exc}")



def check_clock() -> dict:
    synced = clock.clock_synced()
    return item("clock", "pass" if synced else "warn", "dg.clock_ok" if synced else "dg.clock_bad")



def check_disk(state_dir) -> dict:
    p = Path(state_dir)
    while not p.exists() and p != p.parent:
        p = p.parent
    du = shutil.disk_usage(p)
    pct = round(du.free * 100 / du.total, 1) if du.total else 0.0
    mib = 1 << 20
    level = "fail" if du.free < 50 * mib or pct < 2 else "warn" if du.free < 500 * mib or pct < 10 else "pass"
    return item("disk", level, "dg.disk", path=str(state_dir), free=i18n.size(du.free),
                total=i18n.size(du.total), pct=pct)



def static_checks(cfg, started_epoch: float | None = None) -> list[dict]:
    """The checks that need no daemon; blocking (the daemon runs them in a thread)."""
    items = [check_config(cfg.path, started_epoch)]
    items += model_items(load_catalogue(cfg.gateway.models_dir), item)
    items += [check_port(b) for b in cfg.buses]
    items += check_broker(cfg.mqtt)
    items.append(check_clock())
    items.append(check_disk(cfg.gateway.state_dir))
    return items
