"""The yardstick: a bare pymodbus client loop making the gateway's reads.

No decode, no interpretation, no store, no MQTT: one pymodbus 3.16 async
client per bus, each unit read at a fixed rate with the same register
counts the gateway's request planner makes (passed in as --reads, computed
by the caller with protocols.modbus.plan). Whatever CPU the gateway spends
beyond this per device poll is its own.

    python bench/bare.py --tcp 127.0.0.1:5020,127.0.0.1:5021 --units 50 \
        --reads holding:0:28 --interval 1
    python bench/bare.py --serial /tmp/w/tty-master --baud 9600 --units 10 \
        --reads holding:0:28 --interval 0          # back to back: saturate the bus

Runs until SIGTERM (or --seconds), then prints one JSON line of counters.
Scheduling mirrors the gateway: fixed rate, and after a stall the next poll
is one interval after now (no burst of catch-up polls).
"""
from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import logging
import signal
import sys
import time

from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException


def parse_reads(text: str) -> list[tuple[str, int, int]]:
    out = []
    for part in text.split(","):
        fn, addr, count = part.split(":")
        out.append((fn, int(addr), int(count)))
    return out


async def poll_bus(client, units: list[int], reads, interval: float, stop: asyncio.Event,
                   counters: dict) -> None:
    await client.connect()
    now = time.monotonic()
    # first polls spread over the first second, as the gateway does
    heap = [(now + i * min(interval, 1.0) / max(1, len(units)), u) for i, u in enumerate(units)]
    heapq.heapify(heap)
    while not stop.is_set():
        due, unit = heap[0]
        now = time.monotonic()
        if due > now:
            try:
                await asyncio.wait_for(stop.wait(), due - now)
            except TimeoutError:
                pass
            continue
        heapq.heappop(heap)
        ok = True
        for fn, addr, count in reads:
            call = client.read_holding_registers if fn == "holding" else client.read_input_registers
            try:
                rr = await call(addr, count=count, device_id=unit)
                if rr.isError() or len(rr.registers) != count:
                    ok = False
            except ModbusException:
                ok = False
                if not client.connected:
                    await asyncio.sleep(0.2)
                    await client.connect()
                break
        counters["polls"] += 1
        counters["errors"] += 0 if ok else 1
        nxt = due + interval
        heapq.heappush(heap, (nxt if nxt > time.monotonic() else time.monotonic() + interval, unit))
    client.close()


async def amain(a) -> dict:
    reads = parse_reads(a.reads)
    units = list(range(1, a.units + 1))
    clients = []
    if a.tcp:
        for ep in a.tcp.split(","):
            host, _, port = ep.rpartition(":")
            clients.append(AsyncModbusTcpClient(host, port=int(port), framer=FramerType.SOCKET,
                                                timeout=a.timeout, retries=0, reconnect_delay=0))
    else:
        clients.append(AsyncModbusSerialClient(a.serial, framer=FramerType.RTU, baudrate=a.baud,
                                               bytesize=8, parity="N", stopbits=2,
                                               timeout=a.timeout, retries=0, reconnect_delay=0))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if a.seconds:
        loop.call_later(a.seconds, stop.set)
    counters = {"polls": 0, "errors": 0}
    t0, c0 = time.monotonic(), time.process_time()
    await asyncio.gather(*(poll_bus(c, units, reads, a.interval, stop, counters) for c in clients))
    counters.update(wall_s=time.monotonic() - t0, cpu_s=time.process_time() - c0)
    return counters


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tcp", help="comma-separated host:port endpoints")
    p.add_argument("--serial", help="serial port (pty) path")
    p.add_argument("--baud", type=int, default=9600)
    p.add_argument("--units", type=int, required=True, help="units 1..N on every endpoint")
    p.add_argument("--reads", required=True, help="function:address:count[,...] per device poll")
    p.add_argument("--interval", type=float, default=1.0, help="poll interval, s (0: back to back)")
    p.add_argument("--timeout", type=float, default=1.0)
    p.add_argument("--seconds", type=float, default=0, help="stop after this long (0: at SIGTERM)")
    a = p.parse_args()
    if bool(a.tcp) == bool(a.serial):
        p.error("give exactly one of --tcp and --serial")
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    print(json.dumps(asyncio.run(amain(a))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
