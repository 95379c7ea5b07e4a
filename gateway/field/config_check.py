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

from . import i18n
from .client import _raw_language, site_catalogue
from .model import render_config_warnings
from .text import use_color
from .tool_views import render_config_check


def cmd_config_check(args) -> int:
    models = site_catalogue(args.path)
    problems = check_config(args.path, known_models=models)
    warnings = models.warnings()
    if args.json:
        print(json.dumps({"path": str(args.path), "ok": not problems, "problems": problems,
                          "warnings": warnings}, ensure_ascii=False, indent=2))
    else:
        lang = i18n.norm(args.lang) or _raw_language(str(args.path)) or i18n.env_lang() or "en"
        color = use_color()
        text = render_config_check(str(args.path), problems, lang, color)
        sys.stdout.write(render_config_warnings(text, warnings, lang, color))
    return 1 if problems else 0
