"""`edgegw-sim`: simulated devices on pseudo-terminals and TCP, scripted by a scenario."""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import tempfile
from importlib import resources
from pathlib import Path

from . import scenario as scen


def packaged_scenario(name: str) -> Path:
    return Path(str(resources.files("simulators.scenarios").joinpath(f"{name}.toml")))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="edgegw-sim", description=__doc__)
    p.add_argument("--scenario", default="demo",
                   help="scenario file, or the name of a packaged one (default: demo)")
    p.add_argument("--dir", default=None, help="folder for pseudo-terminal links (default: a temp folder)")
    p.add_argument("--json", action="store_true", help="print where each bus listens as one JSON line")
    p.add_argument("--log-level", default="info")
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s sim %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    path = Path(args.scenario)
    if not path.exists():
        path = packaged_scenario(args.scenario)
    workdir = Path(args.dir or tempfile.mkdtemp(prefix="edgegw-sim-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        sc = scen.load(path, workdir)
    except (scen.ScenarioError, OSError, KeyError) as exc:
        print(f"edgegw-sim: {path}: {exc}", file=sys.stderr)
        return 2

    def ready(sc: scen.Scenario) -> None:
        where = {b.name: b.where() for b in sc.buses}
        if args.json:
            devices = {d.name: {"bus": b.name, "unit": d.unit, "model": d.model.id}
                       for b in sc.buses for d in b.devices}
            print(json.dumps({"buses": where, "devices": devices}), flush=True)
        else:
            for b in sc.buses:
                units = ", ".join(f"{d.unit}:{d.name}({d.model.id})" for d in b.devices)
                print(f"bus {b.name}: {b.where()}  [{b.kind}, {b.baudrate} baud]  units {units}", flush=True)

    async def amain() -> None:
        task = asyncio.create_task(scen.run(sc, ready))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        try:
            await task
        except asyncio.CancelledError:
            pass

    asyncio.run(amain())
    return 0


if __name__ == "__main__":
    sys.exit(main())
