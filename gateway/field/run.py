"""`edgegw run`: check the config, set up logging, run the daemon with the
control socket attached. Refuses to start on a config with problems, among
them a device whose model file is broken (one line, naming the file); a
broken model file no device uses is logged as a warning and set aside."""
from __future__ import annotations

import asyncio
import logging
import sys

from gateway.daemon import Daemon
from gateway.site import logsetup
from gateway.site.config import ConfigError, load_config
from gateway.site.config.checker import one_line

from .client import site_catalogue
from .control import ControlServer

log = logging.getLogger(__name__)


def cmd_run(args) -> int:
    models = site_catalogue(args.config)
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
    if models.site_problem:
        log.warning("%s", models.site_problem)
    for b in models.broken.values():
        log.warning("model file not used: %s; no configured device uses model %r "
                    "(edgegw model check %s)", b.summary(), b.id, b.path)
    for m in models.site_models():
        log.info("model %s from the site folder: %s", m, models.source(m).path)
    return asyncio.run(Daemon(cfg, models, attach=ControlServer).run())
