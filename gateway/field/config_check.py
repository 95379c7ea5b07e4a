"""`edgegw config check PATH`: every problem of a site config, by key path.

The models are the site's (client.site_catalogue), so [device.params] keys
are checked against the device's model. A broken model file is a problem of
the config only where a device uses it; every problem of every broken model
file is listed as a warning, which does not change the exit code.
"""
from __future__ import annotations

import json
import sys

from gateway.site.config import check_config
from gateway.site.config.checker import one_line

from . import i18n
from .client import _raw_language, site_catalogue
from .model import render_config_warnings
from .text import use_color
from .tool_views import render_config_check


def cmd_config_check(args) -> int:
    """Exit 0 valid, 1 any problem with the file (its content, or a file
    that cannot be read: missing, not a regular file, too big); never a
    traceback, so the unit's ExecStartPre can tell a bad config by its code."""
    models = site_catalogue(args.path)
    problems = check_config(args.path, known_models=models)
    warnings = models.warnings()
    shown = one_line(str(args.path))   # a name that is not UTF-8 must still print
    if args.json:
        print(json.dumps({"path": shown, "ok": not problems, "problems": problems,
                          "warnings": warnings}, ensure_ascii=False, indent=2))
    else:
        lang = i18n.norm(args.lang) or _raw_language(str(args.path)) or i18n.env_lang() or "en"
        color = use_color()
        text = render_config_check(shown, problems, lang, color)
        sys.stdout.write(render_config_warnings(text, warnings, lang, color))
    return 1 if problems else 0
