"""`edgegw explain MODEL CODE`: what a code means on a model, and what to do.

It reads the model catalogue, the packaged models with the site's model
folder over them (from --config, or the default folder when there is no
config): it works on a laptop in the van, with no daemon. A broken model
file stops only the explain of that model. (`edgegw faults` is faults.py.)
"""
from __future__ import annotations

import difflib
import sys

from . import i18n
from .client import DEFAULT_CONFIG, _raw_language, err, print_json, site_catalogue
from .model import broken_text, explain_extra, render_explain_extra
from .text import use_color
from .views import explain_dict, render_explain


def _lang_for_explain(args) -> str:
    return (i18n.norm(args.lang) or _raw_language(args.config or DEFAULT_CONFIG)
            or i18n.env_lang() or "en")


def explain(args) -> int:

    lang = _lang_for_explain(args)
    models = site_catalogue(args.config or DEFAULT_CONFIG)
    model = models.get(args.model) or next((m for k, m in models.items() if k.lower() == args.model.lower()),
                                           None)
    if model is None:
        broken = broken_text(models, args.model, lang)
        err(broken or i18n.t(lang, "ex.no_model", model=args.model, known=", ".join(sorted(models))))
        return 2
    codes = [f.code for f in model.faults]
    fault = next((f for f in model.faults if f.code == args.code), None) or \
        next((f for f in model.faults if f.code.lower() == args.code.lower()), None)
    if fault is None:
        close = difflib.get_close_matches(args.code.upper(), codes, n=1, cutoff=0.5)
        hint = i18n.t(lang, "ex.did_you_mean", m=close[0]) if close else ""
        err(i18n.t(lang, "ex.no_code", model=model.id, code=args.code, hint=hint, codes=", ".join(codes)))
        return 2
    e = {**explain_dict(model, fault), **explain_extra(models, model, fault)}
    if args.json:
        print_json(e)
    else:
        color = use_color()
        sys.stdout.write(render_explain(e, lang, color) + render_explain_extra(e, lang, color))
    return 0


