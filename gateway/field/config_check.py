"""`edgegw config check PATH`: every problem of a site config, by key path."""
from __future__ import annotations

import json
import sys

from gateway.site.config import check_config
from gateway.site.config.checker import one_line
from protocols.models import load_models

from . import i18n
from .client import _raw_language
from .text import use_color
from .tool_views import render_config_check


def cmd_config_check(args) -> int:
    """Exit 0 valid, 1 any problem with the file (its content, or a file
    that cannot be read: missing, not a regular file, too big); never a
    traceback, so the unit's ExecStartPre can tell a bad config by its code."""
    problems = check_config(args.path, known_models=load_models())
    shown = one_line(str(args.path))   # a name that is not UTF-8 must still print
    if args.json:
        print(json.dumps({"path": shown, "ok": not problems, "problems": problems},
                         ensure_ascii=False, indent=2))
    else:
        lang = i18n.norm(args.lang) or _raw_language(str(args.path)) or i18n.env_lang() or "en"
        sys.stdout.write(render_config_check(shown, problems, lang, use_color()))
    return 1 if problems else 0
