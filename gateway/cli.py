"""`edgegw`: the daemon and the field engineer's commands.

Exit codes: 0 ok, 1 problems found, 2 usage error or daemon unreachable.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

DEFAULT_CONFIG = "/etc/edgegw/edgegw.toml"


def _known_models():
    from protocols.models import load_models
    return load_models()


def cmd_run(args) -> int:
    from . import logsetup
    from .config import ConfigError, load_config
    from .daemon import Daemon

    models = _known_models()
    try:
        cfg = load_config(args.config, known_models=models.keys())
    except ConfigError as exc:
        print(f"edgegw: refusing to start: {args.config} has {len(exc.problems)} problem(s):",
              file=sys.stderr)
        for p in exc.problems:
            print(f"  {p}", file=sys.stderr)
        return 2
    logsetup.setup(args.log_level or cfg.gateway.log_level)
    return asyncio.run(Daemon(cfg, models).run())


def cmd_config_check(args) -> int:
    from .config import check_config

    problems = check_config(args.path, known_models=_known_models().keys())
    if args.json:
        print(json.dumps({"path": str(args.path), "ok": not problems, "problems": problems},
                         ensure_ascii=False, indent=2))
    else:
        from . import i18n
        from .control import _raw_language
        from .views import render_config_check, use_color
        lang = i18n.norm(args.lang) or _raw_language(str(args.path)) or i18n.env_lang() or "en"
        sys.stdout.write(render_config_check(str(args.path), problems, lang, use_color()))
    return 1 if problems else 0


def cmd_explain(args) -> int:
    from .explain import explain
    return explain(args)


def cmd_faults(args) -> int:
    from .explain import faults
    return faults(args)


def cmd_status(args) -> int:
    from .control import cmd_status as status
    return status(args)


def cmd_watch(args) -> int:
    from .control import cmd_watch as watch
    return watch(args)


def cmd_scan(args) -> int:
    from .diag import cmd_scan as scan
    return scan(args)


def cmd_read(args) -> int:
    from .diag import cmd_read as read
    return read(args)


def cmd_diag(args) -> int:
    from .diag import cmd_diag as diag
    return diag(args)


def cmd_doorlog(args) -> int:
    from .explain import doorlog
    return doorlog(args)


def cmd_demo(args) -> int:
    from .demo import main as demo_main
    return demo_main(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgegw", description="Edge gateway for gas meters and access controllers")
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

    def field_cmd(name: str, help_: str, fn):
        x = sub.add_parser(name, help=help_)
        x.add_argument("--config", default=DEFAULT_CONFIG)
        x.add_argument("--lang", choices=["zh", "en"])
        x.add_argument("--json", action="store_true")
        x.set_defaults(fn=fn)
        return x

    field_cmd("status", "one screen: gateway, devices, problems first", cmd_status)
    dl = field_cmd("doorlog", "a door controller's latest events, cursor, epoch and gaps", cmd_doorlog)
    dl.add_argument("controller")
    s = field_cmd("scan", "find the units that answer on a bus, and their models", cmd_scan)
    s.add_argument("bus")
    s.add_argument("--units", default="1-247", help="FIRST-LAST (default 1-247)")
    rd = field_cmd("read", "raw registers, decoded every way (for undocumented meters)", cmd_read)
    rd.add_argument("bus")
    rd.add_argument("unit", type=int)
    rd.add_argument("address", type=int)
    rd.add_argument("count", type=int, nargs="?", default=1)
    rd.add_argument("--input", action="store_true", help="input registers (FC04) instead of holding (FC03)")
    w = field_cmd("watch", "live values and states", cmd_watch)
    w.add_argument("devices", nargs="*")
    w.add_argument("--count", type=int, default=0, help="stop after N updates")
    field_cmd("diag", "self-test: config, ports, broker, TLS, clock, disk, buses, devices", cmd_diag)

    e = sub.add_parser("explain", help="what a fault code means on a model, and what to do")
    e.add_argument("model")
    e.add_argument("code")
    e.add_argument("--lang", choices=["zh", "en"])
    e.add_argument("--config", default=None)
    e.add_argument("--json", action="store_true")
    e.set_defaults(fn=cmd_explain)

    f = sub.add_parser("faults", help="active faults on this site, then history")
    f.add_argument("devices", nargs="*")
    f.add_argument("--lang", choices=["zh", "en"])
    f.add_argument("--config", default=DEFAULT_CONFIG)
    f.add_argument("--history", type=int, default=20, help="how many past events to show")
    f.add_argument("--json", action="store_true")
    f.set_defaults(fn=cmd_faults)

    d = sub.add_parser("demo", help="simulators + local broker + gateway + live view, no hardware")
    d.add_argument("--seconds", type=float, default=0, help="stop after this long (0: until Ctrl-C)")
    d.add_argument("--scenario", default=None)
    d.add_argument("--dir", default=None, help="working folder (default: a temp folder)")
    d.set_defaults(fn=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.fn(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
