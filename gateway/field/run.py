"""`edgegw run`: check the config, set up logging, run the daemon with the
control socket attached. Refuses to start on a config with problems."""
from __future__ import annotations

import asyncio
import sys

from gateway.daemon import Daemon
from gateway.site import logsetup
from gateway.site.config import ConfigError, load_config
from gateway.site.config.checker import one_line
from protocols.models import load_models

from .control import ControlServer


def cmd_run(args) -> int:
    models = load_models()
    try:
        cfg = load_config(args.config, known_models=models)
    except ConfigError as exc:
        # One problem, one line (the journal shows it whole); several, a list.
        if len(exc.problems) == 1:
            print(f"edgegw: refusing to start: {exc.problems[0]}", file=sys.stderr)
            return 2
        print(f"edgegw: refusing to start: {one_line(str(args.config))} has {len(exc.problems)} problems:",
              file=sys.stderr)
        for p in exc.problems:
            print(f"  {p}", file=sys.stderr)
        return 2
    logsetup.setup(args.log_level or cfg.gateway.log_level)
    return asyncio.run(Daemon(cfg, models, attach=ControlServer).run())
