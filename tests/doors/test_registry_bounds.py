"""Issue 12 #3: the card-registry topic is bounded, parsed off the event
loop, and the registry is stored so that neither an update nor a restart
makes the gateway's memory grow with the registry's size.

Real parts: Mosquitto on 127.0.0.1, the door simulator on a pseudo-terminal
and `python -m gateway run` as a process. While a controller is polled:

- an in-limit large update (20,000 lines) is applied: its card shows up in
  access events, and the telemetry keeps coming (the gap is read from the
  telemetry timestamps the gateway published, not by timing code);
- an oversize retained update (300,000 lines, about 14 MB, as in the
  incident) is refused with a `cards_update_rejected` event, and the
  registry before it stays in force;
- the gateway's resident memory (VmRSS) and its peak (VmHWM) from
  /proc/<pid>/status stay under MEMORY_BOUND_KB, after the updates and after
  a restart that gets the oversize retained message again.

MEMORY_BOUND_KB is a promise check, deliberately generous (the unit runs with
MemoryMax=200M; the gateway idles at about 40 MB here): it catches the
incident (1,160 MB, and 1,055 MB at every restart after it), not a few MB of
drift. The figures measured are printed (pytest -s).
"""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.support import Broker, Subscriber, gateway_config, start_gateway, start_sim, stop_proc

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MEMORY_BOUND_KB = 120 * 1024
POLL_GAP_BOUND_S = 5.0       # poll every 0.3 s; the incident stopped polling for 22 s

IN_CSV, IN_BIG, IN_HUGE = 3000000101, 3000000102, 3000000103
CARDS = (IN_CSV, IN_BIG, IN_HUGE)
TOPIC = "edgegw/t1/config/cards"

SCENARIO = f"""
[simulator]
seed = 5
tick_s = 0.1

[[bus]]
name = "doors"
kind = "pty"
link = "ttyBOUNDS"
baudrate = 9600
parity = "N"

[[device]]
bus = "doors"
unit = 21
model = "door-controller"
name = "door-1"
[device.params]
serial = "DCB00001"
capacity = 2000
rate_per_min = 600
cards = [{IN_CSV}, {IN_BIG}, {IN_HUGE}]
"""


def today() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d")


def registry_csv(lines: int, card: int, holder_type: str) -> bytes:
    """A registry of `lines` entries; `card` is one of them (the middle one)."""
    out = ["card,holder_type,issued,holder_ref,event,valid_until,replaces,note"]
    for i in range(lines):
        number = card if i == lines // 2 else 1_000_000_000 + i
        out.append(f"{number},{holder_type},{today()},R-{i % 997},issue,,,")
    return ("\n".join(out) + "\n").encode()


def publish_retained(port: int, payload: bytes) -> None:
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bounds-{time.monotonic_ns()}")
    c.connect("127.0.0.1", port)
    c.loop_start()
    c.publish(TOPIC, payload, qos=1, retain=True).wait_for_publish(30)
    c.loop_stop()
    c.disconnect()


def memory_kb(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return out


def ts(body: dict) -> float:
    return datetime.fromisoformat(body["ts"].replace("Z", "+00:00")).timestamp()


def largest_gap(bodies: list[dict]) -> float:
    stamps = sorted(ts(b) for b in bodies)
    return max((b - a for a, b in zip(stamps, stamps[1:])), default=0.0)


def access_after(sub: Subscriber, seen: int) -> list[dict]:
    return [b for b in sub.select("/door-1/event")[seen:] if b.get("type") == "access" and b.get("card")]


def test_registry_updates_are_bounded_and_off_the_loop(tmp_path):
    broker = Broker(tmp_path).start()
    sub = Subscriber(broker.port)
    (tmp_path / "cards.csv").write_text(f"card,holder_type,issued\n{IN_CSV},tenant,{today()}\n")
    sim, where = start_sim(tmp_path, SCENARIO)
    cfg = gateway_config(tmp_path, broker.port, where["buses"],
                         [{"name": "door-1", "bus": "doors", "unit": 21, "model": "door-controller",
                           "poll_s": 0.3}],
                         extra='[doors]\nregistry_csv = "cards.csv"\n')
    gw = start_gateway(cfg)
    figures = {}
    try:
        sub.wait_for(lambda s: len(s.select("/door-1/telemetry")) >= 5, 30, "telemetry")
        kinds = lambda s: {b.get("holder_type") for b in access_after(s, 0)}  # noqa: E731
        sub.wait_for(lambda s: "tenant" in kinds(s), 30, "the CSV's card in an access event")

        # 1. an in-limit large update: applied, polling goes on meanwhile
        big = registry_csv(20_000, IN_BIG, "merchant")
        figures["in_limit_bytes"] = len(big)
        publish_retained(broker.port, big)
        sub.wait_for(lambda s: "merchant" in kinds(s), 90, "the large update's card in an access event")
        figures["after_large"] = memory_kb(gw.pid)

        # 2. an oversize retained update: refused with an event, old registry kept
        huge = registry_csv(300_000, IN_HUGE, "owner")
        figures["oversize_bytes"] = len(huge)
        publish_retained(broker.port, huge)

        def rejected(s):
            return [b for b in s.select("/t1/event") if b.get("code") == "cards_update_rejected"]
        sub.wait_for(rejected, 60, "cards_update_rejected for the oversize update")
        problems = rejected(sub)[0]["detail"]["problems"]
        assert len(problems) == 1 and "limit" in problems[0], problems
        seen = len(sub.select("/door-1/event"))
        sub.wait_for(lambda s: {"merchant", "tenant"} <= {b.get("holder_type") for b in access_after(s, seen)}
                     and any(b.get("card_status") == "unknown" for b in access_after(s, seen)),
                     60, "access events after the refusal")
        after = access_after(sub, seen)
        assert "owner" not in {b.get("holder_type") for b in after}     # the refused card stays unknown
        assert all(b["card_valid"] for b in after if b.get("holder_type") in ("merchant", "tenant"))
        figures["after_oversize"] = memory_kb(gw.pid)
        figures["poll_gap_s"] = largest_gap(sub.select("/door-1/telemetry"))

        # 3. a restart: the registry is loaded from the state folder, the
        #    oversize retained message comes again and is refused again
        assert stop_proc(gw) == 0
        n_rejected = len(rejected(sub))
        gw = start_gateway(cfg)
        sub.wait_for(lambda s: len(rejected(s)) > n_rejected, 60, "the oversize update refused after a restart")
        seen = len(sub.select("/door-1/event"))
        sub.wait_for(lambda s: "merchant" in {b.get("holder_type") for b in access_after(s, seen)},
                     60, "the large update's card known after a restart")
        figures["after_restart"] = memory_kb(gw.pid)
        assert stop_proc(gw) == 0
    finally:
        stop_proc(gw)
        stop_proc(sim)
        sub.close()
        broker.stop()
    print("\nregistry bounds:", json.dumps(figures))
    assert figures["poll_gap_s"] <= POLL_GAP_BOUND_S, figures
    for when in ("after_large", "after_oversize", "after_restart"):
        assert figures[when]["VmHWM"] <= MEMORY_BOUND_KB, (when, figures)
        assert figures[when]["VmRSS"] <= MEMORY_BOUND_KB, (when, figures)
    # the registry holds card numbers: they never reach the log
    log_text = (tmp_path / "gateway.log").read_text()
    for card in CARDS:
        assert str(card) not in log_text
