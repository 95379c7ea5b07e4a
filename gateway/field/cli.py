"""`edgegw`: argument parsing for the daemon and the field engineer's commands;
each command lives in its own module of this folder.

Exit codes: 0 ok, 1 problems found, 2 usage error or daemon unreachable.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from gateway import __version__

from .client import DEFAULT_CONFIG
from .config_check import cmd_config_check
from .demo import main as demo_main
from .diag import cmd_diag as diag
from .doorlog import doorlog
from .explain import explain
from .faults import faults
from .model import cmd_model_check, cmd_model_list
from .run import cmd_run
from .scan import cmd_read as read
from .scan import cmd_scan as scan
from .status import cmd_status as status
from .visit import cmd_visit as visit
from .watch import cmd_watch as watch


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgegw", description="Edge gateway for gas meters and access controllers")
    p.add_argument("--version", action="version", version=f"edgegw {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("run", help="run the daemon in the foreground")
    r.add_argument("--config", default=DEFAULT_CONFIG)
    r.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    r.set_defaults(fn=cmd_run)

    c = sub.add_parser("config", help="site configuration")
    csub = c.add_subparsers(dest="config_cmd", required=True)
    cc = csub.add_parser("check", help="validate a config file and list every problem")
    cc.add_argument("path", type=Path)
    cc.add_argument("--json", action="store_true")
    cc.add_argument("--lang", choices=["zh", "en"])
    cc.set_defaults(fn=cmd_config_check)

    m = sub.add_parser("model", help="device models: which are in effect, and checking a model file")
    msub = m.add_subparsers(dest="model_cmd", required=True)
    ml = msub.add_parser("list", help="every model in effect with its file, and broken model files")
    ml.add_argument("--config", default=None, help="the site config, for [gateway] models_dir")
    ml.add_argument("--json", action="store_true")
    ml.add_argument("--lang", choices=["zh", "en"])
    ml.set_defaults(fn=cmd_model_list)
    mc = msub.add_parser("check", help="check a model file and list every problem")
    mc.add_argument("path", type=Path)
    mc.add_argument("--json", action="store_true")
    mc.add_argument("--lang", choices=["zh", "en"])
    mc.set_defaults(fn=cmd_model_check)

    def field_cmd(name: str, help_: str, fn):
        x = sub.add_parser(name, help=help_)
        x.add_argument("--config", default=DEFAULT_CONFIG)
        x.add_argument("--lang", choices=["zh", "en"])
        x.add_argument("--json", action="store_true")
        x.set_defaults(fn=fn)
        return x

    st = field_cmd("status", "one screen: problems first with the first step, the gateway, every device", status)
    st.add_argument("device", nargs="?", help="one device in full: every fault and remedy step, counters, values")
    st.add_argument("--all", action="store_true", help="the full listing: every device's counters, every fault")
    dl = field_cmd("doorlog", "a door controller's latest events, cursor, epoch and gaps", doorlog)
    dl.add_argument("controller")
    s = field_cmd("scan", "find the units that answer on a bus, and their models", scan)
    s.add_argument("bus")
    s.add_argument("--units", default="1-247", help="FIRST-LAST (default 1-247)")
    rd = field_cmd("read", "raw registers, decoded every way (for undocumented meters)", read)
    rd.add_argument("bus")
    rd.add_argument("unit", type=int)
    rd.add_argument("address", type=int)
    rd.add_argument("count", type=int, nargs="?", default=1)
    rd.add_argument("--input", action="store_true", help="input registers (FC04) instead of holding (FC03)")
    w = field_cmd("watch", "live values and states", watch)
    w.add_argument("devices", nargs="*")
    w.add_argument("--count", type=int, default=0, help="stop after N updates")
    field_cmd("diag", "self-test: config, ports, broker, TLS, clock, disk, buses, devices", diag)
    v = field_cmd("visit", "a service visit record for one device, prefilled with what the gateway knows", visit)
    v.add_argument("device")

    e = sub.add_parser("explain", help="what a fault code means on a model, and what to do")
    e.add_argument("model")
    e.add_argument("code")
    e.add_argument("--lang", choices=["zh", "en"])
    e.add_argument("--config", default=None)
    e.add_argument("--json", action="store_true")
    e.set_defaults(fn=explain)

    f = sub.add_parser("faults", help="active faults on this site, then history")
    f.add_argument("devices", nargs="*")
    f.add_argument("--lang", choices=["zh", "en"])
    f.add_argument("--config", default=DEFAULT_CONFIG)
    f.add_argument("--history", type=int, default=20, help="how many past events to show")
    f.add_argument("--json", action="store_true")
    f.set_defaults(fn=faults)

    d = sub.add_parser("demo", help="simulators + local broker + gateway + live view, no hardware")
    d.add_argument("--seconds", type=float, default=0, help="stop after this long (0: until Ctrl-C)")
    d.add_argument("--scenario", default=None)
    d.add_argument("--dir", default=None, help="working folder (default: a temp folder)")
    d.set_defaults(fn=demo_main)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.fn(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `edgegw faults | head`: the reader left, which is not an error. Point
        # stdout at /dev/null so the interpreter's final flush stays quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
