"""A hostile MQTT client: `python -m tests.edges.flooder PORT BASE N SECONDS`
publishes N commands on BASE/<name> at an even pace over SECONDS, a mix of
accepted, refused and malformed ones, then prints how many it sent as JSON.

A process of its own, so the test that measures the gateway is not slowed
by the flood's own work."""
from __future__ import annotations

import json
import sys
import time

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

MIX = (
    ("repoll", b'{"id": "f%d", "device": "fm-02"}'),
    ("repoll", b'{"id": "f%d", "device": "nosuch"}'),
    ("reboot", b'{"id": "f%d"}'),
    ("diag", b'{"id": "f%d"}'),
    ("repoll", b'{oops %d'),
    ("doorlog", b'{"id": "f%d", "controller": "door-1"}'),
)


def main(argv: list[str]) -> int:
    port, base, n, seconds = int(argv[0]), argv[1], int(argv[2]), float(argv[3])
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"flooder-{time.monotonic_ns()}")
    c.max_inflight_messages_set(0)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port)
    c.loop_start()
    t0 = time.monotonic()
    infos = []
    for i in range(n):
        name, body = MIX[i % len(MIX)]
        infos.append(c.publish(f"{base}/{name}", body % i, qos=1))
        lag = t0 + (i + 1) * seconds / n - time.monotonic()
        if lag > 0:
            time.sleep(lag)
    deadline = time.monotonic() + 30
    for info in infos:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            info.wait_for_publish(left)
        except (RuntimeError, ValueError):
            break
    acked = sum(1 for info in infos if info.is_published())
    c.loop_stop()
    c.disconnect()
    print(json.dumps({"sent": n, "acked": acked, "seconds": round(time.monotonic() - t0, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
