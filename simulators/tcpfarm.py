"""Many simulated Modbus TCP units on several ports, at little CPU cost.

For load benchmarks (hundreds of devices polled every second on a 2-core
box) the simulator must not compete with the gateway for the CPU. A full
pymodbus server decodes every request into objects and runs the SimDevice
action per request; this farm answers FC3/FC4 reads from a register image
per unit with a few struct calls. The values come from the same simulated
devices and model files as `edgegw-sim` (the encoding exists once), and are
re-encoded every `refresh_s` as the behaviours move them on.

It records, per unit, when each request arrived (monotonic clock, shared by
all processes on the machine), so a benchmark can count the polls the
gateway made and how late each one was, independently of the gateway's own
telemetry. Scheduled fault flips set a status bit at given monotonic times
and record when the registers changed.

Run: `python -m simulators.tcpfarm --model turbine-evc --ports 10 --units 50
--out FILE` prints one JSON line {"ports": [...]} and serves until SIGTERM;
SIGUSR1 (and exit) writes what it recorded to FILE.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import struct
import sys
import time
from collections import deque

from protocols.models import load_models

from .device import FUNCTION_CODES, ILLEGAL_ADDRESS
from .families import make_device

MAX_PDU = 253                 # Modbus: a PDU is at most 253 bytes
MAX_TIMES_PER_UNIT = 20_000   # bounded memory: about 5 h at one poll a second
ILLEGAL_FUNCTION = 1


class Unit:
    def __init__(self, dev) -> None:
        self.dev = dev
        self.images: dict[int, tuple[int, list[int]]] = {}
        self.times: deque[float] = deque(maxlen=MAX_TIMES_PER_UNIT)
        self.encode()

    def encode(self) -> None:
        for fc, function in FUNCTION_CODES.items():
            if fc not in (3, 4) or function not in self.dev.spans:
                continue
            lo, hi = self.dev.spans[function]
            image = self.dev.registers(function)
            self.images[fc] = (lo, [image.get(a, 0) for a in range(lo, hi)])

    def answer(self, fc: int, address: int, count: int) -> bytes:
        img = self.images.get(fc)
        if img is None:
            return bytes([fc | 0x80, ILLEGAL_FUNCTION if fc not in (3, 4) else ILLEGAL_ADDRESS])
        lo, regs = img
        i = address - lo
        if count < 1 or count > 125 or i < 0 or i + count > len(regs):
            return bytes([fc | 0x80, ILLEGAL_ADDRESS])
        return bytes([fc, 2 * count]) + struct.pack(f">{count}H", *regs[i:i + count])


class Farm:
    def __init__(self, model_id: str, ports: int, units: int, seed: int = 1,
                 host: str = "127.0.0.1", refresh_s: float = 1.0) -> None:
        model = load_models()[model_id]
        rng = random.Random(seed)
        self.host = host
        self.refresh_s = refresh_s
        self.endpoints: list[dict[int, Unit]] = []
        for _ in range(ports):
            ep = {}
            for u in range(1, units + 1):
                dev = make_device(model, {"unit": u, "params": {"mean_flow_m3h": 40.0}},
                                  random.Random(rng.random()))
                ep[u] = Unit(dev)
            self.endpoints.append(ep)
        self.ports: list[int] = []
        self.flips: list[tuple[float, str, bool]] = []      # planned (t, "ep:unit", on)
        self.flipped: list[tuple[str, bool, float]] = []     # done (key, on, t)
        self.requests = 0
        self._servers: list[asyncio.base_events.Server] = []

    def unit(self, key: str) -> Unit:
        ep, u = key.split(":")
        return self.endpoints[int(ep)][int(u)]

    async def start(self, ports: list[int] | None = None) -> None:
        for i, ep in enumerate(self.endpoints):
            port = ports[i] if ports else 0
            srv = await asyncio.start_server(lambda r, w, ep=ep: self._serve(ep, r, w), self.host, port)
            self._servers.append(srv)
            self.ports.append(srv.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        for srv in self._servers:
            srv.close()
        for srv in self._servers:
            await srv.wait_closed()

    async def _serve(self, ep: dict[int, Unit], reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readexactly(7)
                tid, pid, length, uid = struct.unpack(">HHHB", head)
                if pid != 0 or not 2 <= length <= MAX_PDU + 1:
                    return          # not Modbus TCP: drop the connection
                pdu = await reader.readexactly(length - 1)
                unit = ep.get(uid)
                if unit is None:
                    continue        # nobody there: silence, as on a serial line
                unit.times.append(time.monotonic())
                self.requests += 1
                fc = pdu[0]
                if fc in (3, 4) and len(pdu) >= 5:
                    address, count = struct.unpack(">HH", pdu[1:5])
                    body = unit.answer(fc, address, count)
                else:
                    body = bytes([fc | 0x80, ILLEGAL_FUNCTION])
                writer.write(struct.pack(">HHHB", tid, 0, len(body) + 1, uid) + body)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def run_behaviour(self) -> None:
        """Move values on and re-encode every refresh_s, one endpoint at a
        time spread over the period; apply planned flips on time.

        All 1,000 units at once took about 30 ms of CPU once a second at
        SCHED_FIFO (bench/run raises the farm): a core taken from everything
        else, and when it was the core of a thread holding the GIL, the
        measured gateway's event loop waited the whole burst. Meters do not
        share one CPU; 50 units at a time is a burst of under 2 ms."""
        n = max(1, len(self.endpoints))
        step = self.refresh_s / n
        last = [time.monotonic()] * n
        due = time.monotonic() + step
        k = 0
        pending = sorted(self.flips)
        while True:
            now = time.monotonic()
            wait = due - now
            if pending:
                wait = min(wait, pending[0][0] - now)
            await asyncio.sleep(max(0.0, wait))
            now = time.monotonic()
            while pending and pending[0][0] <= now:
                _t, key, on = pending.pop(0)
                unit = self.unit(key)
                unit.dev.set_bit("status_word", 1, on)    # turbine-evc GENERAL-FAULT
                unit.encode()
                self.flipped.append((key, on, time.monotonic()))
            if now >= due and self.endpoints:
                dt, last[k] = now - last[k], now
                for unit in self.endpoints[k].values():
                    unit.dev.tick(dt)
                    unit.encode()
                k = (k + 1) % n
                due = max(due + step, now)

    def record(self) -> dict:
        return {"t": time.monotonic(), "requests": self.requests,
                "times": {f"{i}:{u}": list(unit.times) for i, ep in enumerate(self.endpoints)
                          for u, unit in ep.items()},
                "flips": self.flipped}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m simulators.tcpfarm", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="turbine-evc")
    p.add_argument("--ports", type=int, default=1)
    p.add_argument("--units", type=int, default=50, help="units per port (1-247)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--refresh-s", type=float, default=1.0)
    p.add_argument("--flips", help='JSON file: [[t_monotonic, "port_index:unit", true|false], ...]')
    p.add_argument("--out", help="where SIGUSR1 and exit write the request times (JSON)")
    a = p.parse_args(argv)
    if not 1 <= a.units <= 247 or not 1 <= a.ports <= 200:
        p.error("units must be 1..247 and ports 1..200")
    farm = Farm(a.model, a.ports, a.units, a.seed, a.host, a.refresh_s)
    if a.flips:
        with open(a.flips) as fh:
            farm.flips = [(float(t), str(k), bool(on)) for t, k, on in json.load(fh)]

    def dump() -> None:
        if a.out:
            tmp = a.out + ".tmp"
            with open(tmp, "w") as fh:
                json.dump(farm.record(), fh)
            os.replace(tmp, a.out)

    async def amain() -> None:
        await farm.start()
        print(json.dumps({"ports": farm.ports, "host": a.host}), flush=True)
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGUSR1, dump)
        beh = asyncio.create_task(farm.run_behaviour())
        await stop.wait()
        beh.cancel()
        await farm.stop()

    asyncio.run(amain())
    dump()
    return 0


if __name__ == "__main__":
    sys.exit(main())
