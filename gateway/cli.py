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
    elif problems:
        print(f"{args.path}: {len(problems)} problem(s)")
        for p in problems:
            print(f"  {p}")
    else:
        print(f"{args.path}: ok")
    return 1 if problems else 0


def cmd_explain(args) -> int:
    from .explain import explain
    return explain(args)


def cmd_faults(args) -> int:
    from .explain import faults
    return faults(args)


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
    cc.set_defaults(fn=cmd_config_check)

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
