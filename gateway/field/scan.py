"""`edgegw scan` and `edgegw read`: find the units that answer on a bus, and
read raw registers decoded every way.

The same functions run inside the daemon (through Bus.call, between polls)
and in the CLI when no daemon runs (on a port the CLI opened itself, under
the same port lock), so the two paths cannot drift apart.
"""

import asyncio
import logging
import shutil
import sys
import time

from gateway.poll.bus import Bus
from gateway.poll.portlock import lock_path
from protocols.modbus.types import (
    DecodeError,
    Field,
    decode,
    decode_all,
    register_count,
)

from . import i18n
from .client import (
    DaemonDenied,
    DaemonDown,
    DaemonError,
    daemon_error,
    err,
    load_site,
    print_json,
)
from .tool_views import progress_line, render_read, render_scan


def ident_plan(models: dict) -> list[dict]:
    """The reads that identify a model, grouped by register: most models first,
    so a typical unit is recognised with the fewest requests."""
    groups: dict[tuple, dict] = {}
    for m in models.values():
        ident = m.identify
        if not ident:
            continue
        try:
            f = m.field(ident["field"])
        except KeyError:
            continue
        key = (f.function, f.address, register_count(f), f.type, f.order)
        g = groups.setdefault(key, {"function": f.function, "address": f.address,
                                    "count": register_count(f), "field": f, "candidates": []})
        g["candidates"].append((m.id, ident["equals"]))
    plan = sorted(groups.values(), key=lambda g: (-len(g["candidates"]), g["function"], g["address"]))
    if not plan:
        plan = [{"function": "holding", "address": 0, "count": 1, "field": Field("r", 0), "candidates": []}]
    return plan


async def probe_unit(bus, unit: int, plan: list[dict]) -> dict:
    """Does `unit` answer, and which model is it? A silent unit costs one
    timeout (the first identify read); an answering one up to one read per
    identify register until a model code matches."""
    res: dict = {"unit": unit, "responds": False, "model": None, "ident": None, "answers": [],
                 "response_ms": None}
    for g in plan:
        t0 = time.monotonic()
        out = await bus.probe(unit, g["function"], g["address"], g["count"])
        ms = round((time.monotonic() - t0) * 1000, 1)
        if out == "bus_down":
            raise ConnectionError(f"bus {bus.cfg.name} is down: {bus.stats.last_connect_error or 'connection lost'}")
        if out == "timeout":
            if not res["responds"]:
                return res
            res["answers"].append({"function": g["function"], "address": g["address"], "failure": out})
            continue
        res["responds"] = True
        if res["response_ms"] is None:
            res["response_ms"] = ms
        if not isinstance(out, list):
            res["answers"].append({"function": g["function"], "address": g["address"], "failure": out})
            continue
        try:
            value = decode(g["field"], out)
        except DecodeError:
            value = None
        res["answers"].append({"function": g["function"], "address": g["address"], "value": value})
        for model_id, equals in g["candidates"]:
            if value == equals:
                res["model"] = model_id
                res["ident"] = {"function": g["function"], "address": g["address"], "value": value}
                return res
    return res


async def scan_units(run_unit, first: int, last: int, configured: dict[int, str], progress) -> dict:
    """Probe units first..last one at a time; `progress` (async) after each."""
    found: list[dict] = []
    t0 = time.monotonic()
    total = last - first + 1
    for i, unit in enumerate(range(first, last + 1)):
        res = await run_unit(unit)
        if res["responds"]:
            res["configured_as"] = configured.get(unit)
            found.append(res)
        elapsed = time.monotonic() - t0
        done = i + 1
        await progress({"unit": unit, "done": done, "total": total, "found": len(found),
                        "elapsed_s": round(elapsed, 2), "eta_s": round(elapsed / done * (total - done), 1)})
    return {"first": first, "last": last, "found": found, "elapsed_s": round(time.monotonic() - t0, 2)}


async def read_registers(bus, unit: int, function: str, address: int, count: int) -> dict:
    t0 = time.monotonic()
    out = await bus.read(unit, function, address, count)
    ms = round((time.monotonic() - t0) * 1000, 1)
    if out == "bus_down":
        raise ConnectionError(f"bus {bus.cfg.name} is down: {bus.stats.last_connect_error or 'connection lost'}")
    if isinstance(out, list):
        return {"registers": out, "failure": None, "response_ms": ms}
    return {"registers": None, "failure": out, "response_ms": ms}


class PortError(Exception):
    pass


def _no_sink(d, reading) -> None:
    pass


async def with_port(state_dir, bus_cfg, fn):
    """Open a bus the way the daemon does, under the same lock, and run fn(bus)."""

    # The CLI explains a failure itself; the bus's reconnect warnings are for the daemon's log.
    logging.getLogger("gateway.poll.bus").setLevel(logging.CRITICAL)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    bus = Bus(bus_cfg, [], _no_sink)
    if bus_cfg.kind == "serial":
        bus.lock_path = str(lock_path(state_dir, bus_cfg.name))
    if not await bus.open():
        bus.close()
        why = bus.stats.last_connect_error or "connect failed"
        # the bus words it for the daemon's log ("<port>: why"); the CLI names the port itself
        raise PortError(why[len(bus_cfg.port) + 2:] if why.startswith(f"{bus_cfg.port}: ") else why)
    try:
        return await fn(bus)
    finally:
        bus.close()


def _units(spec: str) -> tuple[int, int] | None:
    try:
        if "-" in spec:
            a, b = spec.split("-", 1)
            first, last = int(a), int(b)
        else:
            first = last = int(spec)
    except ValueError:
        return None
    if not 1 <= first <= last <= 247:
        return None
    return first, last


def _bus_cfg(site, name: str):
    for b in site.cfg.buses:
        if b.name == name:
            return b
    return None


def _site_and_bus(args):
    """The site and the configured bus a scan/read names; (exit code, None) if not."""
    site = load_site(args)
    if isinstance(site, int):
        return site, None
    bc = _bus_cfg(site, args.bus)
    if bc is None:
        err(i18n.t(site.lang, "er.no_bus", bus=args.bus,
                   known=", ".join(b.name for b in site.cfg.buses) or "-"))
        return 2, None
    return site, bc


def _through_daemon(site, cmd: str, req: dict, timeout: float, on_progress=None, clear=lambda: None):
    """Ask the running daemon, which owns the port: (its answer, None, None).
    (None, via, None) when the port is to be opened here: "direct" (no
    daemon) or "direct_idle" (the daemon has no task on this bus).
    (None, None, exit code) when the daemon refused."""
    try:
        with site.client(timeout=timeout) as c:
            return c.request(cmd, req, on_progress=on_progress), None, None
    except DaemonDenied as exc:
        return None, None, daemon_error(site, exc)
    except DaemonDown:
        return None, "direct", None
    except DaemonError as exc:
        if exc.code == "no_bus_task":
            return None, "direct_idle", None
        clear()
        return None, None, daemon_error(site, exc)


def _on_port(site, bc, run, clear=lambda: None):
    """run(bus) with the port opened and locked here: (its result, None),
    or (None, 2) after saying why the port could not be had."""
    try:
        return asyncio.run(with_port(site.state_dir, bc, run)), None
    except (PortError, ConnectionError) as exc:
        clear()
        err(i18n.t(site.lang, "er.port", port=bc.port, why=str(exc)))
        return None, 2


def cmd_scan(args) -> int:
    site, bc = _site_and_bus(args)
    if isinstance(site, int):
        return site
    lang = site.lang
    units = _units(args.units)
    if units is None:
        err(i18n.t(lang, "er.units", units=args.units))
        return 2
    first, last = units
    show = not args.json and _isatty(sys.stderr)
    cols = shutil.get_terminal_size((80, 24)).columns

    def on_progress(p: dict) -> None:
        if show:
            sys.stderr.write("\r\x1b[K" + progress_line(p, lang, cols))
            sys.stderr.flush()

    def clear() -> None:
        if show:
            sys.stderr.write("\r\x1b[K")

    plan = ident_plan(site.models)
    result, via, rc = _through_daemon(
        site, "scan", {"bus": bc.name, "first": first, "last": last},
        15.0 + bc.timeout_s * (1 + bc.retries) * (len(plan) + 1), on_progress, clear)
    if rc is not None:
        return rc
    if result is None:
        configured = {d.unit: d.name for d in site.cfg.devices if d.bus == bc.name}

        async def progress(p: dict) -> None:
            on_progress(p)

        async def run(bus):
            return await scan_units(lambda u: probe_unit(bus, u, plan), first, last, configured, progress)
        result, rc = _on_port(site, bc, run, clear)
        if rc is not None:
            return rc
        result.update({"bus": bc.name, "port": bc.port, "via": via})
    if show:
        sys.stderr.write("\r\x1b[K")
        sys.stderr.flush()
    if args.json:
        print_json(result)
    else:
        sys.stdout.write(render_scan(result, lang, site.color))
    return 0 if result.get("found") else 1


def cmd_read(args) -> int:

    site, bc = _site_and_bus(args)
    if isinstance(site, int):
        return site
    lang = site.lang
    if not (0 <= args.unit <= 247 and 0 <= args.address <= 65535 and 1 <= args.count <= 125
            and args.address + args.count <= 65536):
        err("unit 0-247, address 0-65535, count 1-125")
        return 2
    function = "input" if args.input else "holding"
    req = {"bus": bc.name, "unit": args.unit, "address": args.address, "count": args.count, "function": function}
    result, via, rc = _through_daemon(site, "read", req, 15.0 + bc.timeout_s * (1 + bc.retries))
    if rc is not None:
        return rc
    if result is None:
        async def run(bus):
            return await read_registers(bus, args.unit, function, args.address, args.count)
        out, rc = _on_port(site, bc, run)
        if rc is not None:
            return rc
        result = {**req, "port": bc.port, "via": via, **out}
    result["decoded"] = decode_all(result["registers"]) if result.get("registers") else []
    if args.json:
        print_json(result)
    else:
        sys.stdout.write(render_read(result, lang, site.color))
    return 0 if result.get("registers") is not None else 1


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
