"""`edgegw config check PATH`: every problem of a site config, by key path."""
from __future__ import annotations

import json
import sys

from gateway.site.config import check_config
from protocols.models import load_models

from . import i18n
from .client import _raw_language
from .text import use_color
from .tool_views import render_config_check


def cmd_config_check(args) -> int:
    problems = check_config(args.path, known_models=load_models())
    if args.json:
        print(json.dumps({"path": str(args.path), "ok": not problems, "problems": problems},
                         ensure_ascii=False, indent=2))
    else:
        lang = i18n.norm(args.lang) or _raw_language(str(args.path)) or i18n.env_lang() or "en"
        sys.stdout.write(render_config_check(str(args.path), problems, lang, use_color()))
    return 1 if problems else 0
