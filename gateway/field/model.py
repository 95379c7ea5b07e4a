"""`edgegw model list` and `edgegw model check FILE`, and what the other
commands say about models: where a model came from (explain, diag), the
params a fault reads (explain), broken model files (config check, diag).

The models in effect are the packaged ones with the site folder over them
([gateway] models_dir), loaded by protocols.models.load_catalogue exactly as
the daemon loads them (client.site_catalogue).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from protocols.models import (
    Catalogue,
    Model,
    check_file,
    default_directory,
    number_text,
    param_users,
)

from . import i18n, model_text  # noqa: F401 - model_text adds the strings to i18n
from .client import DEFAULT_CONFIG, _raw_language, print_json, site_catalogue
from .text import Style, table, use_color
from .tool_views import render_config_check

t = i18n.t


def _lang(args, config: str | None) -> str:
    return i18n.norm(getattr(args, "lang", None)) or (_raw_language(config) if config else None) \
        or i18n.env_lang() or "en"


# --------------------------------------------------------------------------- model list

def list_dict(cat: Catalogue) -> dict:
    models = []
    for mid in sorted(cat):
        m = cat[mid]
        models.append({"id": mid, "name": {"en": m.name_en, "zh": m.name_zh}, "family": m.family,
                       "params": [p.name for p in m.params], "source": cat.source(mid).as_dict()})
    broken = [{"id": b.id, "path": str(b.path), "site": b.source.site,
               "replaces_packaged": b.source.replaces_packaged, "problems": list(b.problems)}
              for b in sorted(cat.broken.values(), key=lambda b: b.id)]
    return {"models_dir": str(cat.site_dir) if cat.site_dir else None,
            "models_dir_exists": bool(cat.site_dir and cat.site_dir.is_dir()),
            "models_dir_problem": cat.site_problem, "packaged_dir": str(default_directory()),
            "models": models, "broken": broken}


def source_text(src: dict, lang: str) -> str:
    if not src["site"]:
        return t(lang, "md.packaged")
    return t(lang, "md.site_repl" if src["replaces_packaged"] else "md.site", path=src["path"])


def render_list(d: dict, lang: str, color: bool = False) -> str:
    s = Style(color)
    where = d["models_dir"] + ("" if d["models_dir_exists"] else " " + t(lang, "md.dir_absent"))
    lines = [s.bold(t(lang, "md.title", n=len(d["models"]), dir=where)), ""]
    if d["models_dir_problem"]:
        lines += [s.yellow(t(lang, "md.dir_bad", why=d["models_dir_problem"])), ""]
    rows = [[m["id"], m["name"][lang], m["family"], str(len(m["params"])),
             (source_text(m["source"], lang), s.yellow if m["source"]["site"] else None)]
            for m in d["models"]]
    lines += table([t(lang, k) for k in ("md.col.id", "md.col.name", "md.col.family", "md.col.params",
                                         "md.col.source")], rows, right={3}, style=s)
    if d["broken"]:
        lines += ["", s.red(t(lang, "md.broken_title", n=len(d["broken"])))]
        lines += table(None, [[(t(lang, "fail"), s.red), t(lang, "md.broken", id=b["id"], path=b["path"],
                                                          n=len(b["problems"]), first=b["problems"][0])]
                              for b in d["broken"]], style=s)
        lines += ["", s.dim(t(lang, "md.broken_hint"))]
    return "\n".join(lines) + "\n"


def cmd_model_list(args) -> int:
    config = args.config or DEFAULT_CONFIG
    d = list_dict(site_catalogue(config))
    if args.json:
        print_json(d)
    else:
        sys.stdout.write(render_list(d, _lang(args, config), use_color()))
    return 1 if d["broken"] or d["models_dir_problem"] else 0


# --------------------------------------------------------------------------- model check

def cmd_model_check(args) -> int:
    path = Path(args.path)
    model, problems = check_file(path)
    # a file named like a packaged model replaces it in the site folder (the
    # packaged file itself, checked where it lies, replaces nothing)
    packaged = (default_directory() / path.name).is_file() \
        and path.resolve().parent != default_directory().resolve()
    if args.json:
        print(json.dumps({"path": str(path), "ok": not problems, "problems": problems, "id": path.stem,
                          "replaces_packaged": packaged}, ensure_ascii=False, indent=2))
        return 1 if problems else 0
    lang = _lang(args, None)
    s = Style(use_color())
    # the same screen as config check; only the title and the verdict differ
    lines = render_config_check(str(path), problems, lang, s.color).splitlines()
    lines[0] = s.bold(t(lang, "mc.title", path=str(path)))
    if problems:
        lines[-1] = s.red(t(lang, "mc.bad", n=len(problems)))
    else:
        lines[-1] = s.green(t(lang, "mc.ok_repl" if packaged else "mc.ok", id=path.stem))
    sys.stdout.write("\n".join(lines) + "\n")
    return 1 if problems or model is None else 0


# --------------------------------------------------------------------------- config check

def render_config_warnings(text: str, warnings: list[str], lang: str, color: bool) -> str:
    """config check's screen with the broken model files as WARN lines after
    its problems (the verdict line stays last)."""
    if not warnings:
        return text
    s = Style(color)
    lines = text.rstrip("\n").split("\n")
    verdict = lines.pop()
    if lines and lines[-1] == "":
        lines.pop()
    lines += table(None, [[(t(lang, "warn"), s.yellow), w] for w in warnings], style=s)
    lines += ["", s.yellow(t(lang, "cc.warnings", n=len(warnings))), verdict]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- explain

def explain_extra(cat: Catalogue, model: Model, fault) -> dict:
    """What explain adds to the catalogue entry: the file of a site model, and
    the declared params the fault's trigger reads."""
    out: dict = {}
    src = cat.source(model.id) if model.id in cat.sources else None
    if src is not None and src.site:
        out["source"] = src.as_dict()
    users = param_users(model)
    params = [p for p in model.params if fault.code in users.get(p.name, ())]
    if params:
        out["params"] = [{"name": p.name, "unit": p.unit, "type": p.type, "default": p.default,
                          "min": p.min, "max": p.max, "meaning": {"en": p.meaning_en, "zh": p.meaning_zh}}
                         for p in params]
    return out


def render_explain_extra(e: dict, lang: str, color: bool = False) -> str:
    s = Style(color)
    lines: list[str] = []
    for p in e.get("params") or ():
        unit = f" {p['unit']}" if p["unit"] else ""
        rng = t(lang, "ex.range", lo=number_text(p["min"]), hi=number_text(p["max"]), unit=unit)
        key = "ex.param" if p["default"] is not None else "ex.param_off"
        default = f"{number_text(p['default'])}{unit}" if p["default"] is not None else ""
        lines.append("  " + t(lang, key, name=p["name"], default=default, range=rng, meaning=p["meaning"][lang]))
    if lines:
        lines = ["", s.bold(t(lang, "ex.params"))] + lines
    src = e.get("source")
    if src:
        lines += ["", s.yellow(t(lang, "ex.source_repl" if src["replaces_packaged"] else "ex.source",
                                 path=src["path"]))]
    return "\n".join(lines) + "\n" if lines else ""


def broken_text(cat: Catalogue, model_id: str, lang: str) -> str | None:
    b = cat.broken.get(model_id)
    if b is None:
        return None
    return t(lang, "ex.broken_model", model=model_id, path=str(b.path), n=len(b.problems), first=b.problems[0])


# --------------------------------------------------------------------------- diag

def diag_items(cat: Catalogue, item) -> list[dict]:
    """diag's lines about models: only when there is something to say (a site
    model in effect, a broken file), so a box with none shows no line."""
    out = []
    if cat.site_problem:
        out.append(item("models", "warn", "dg.models_dir_bad", why=cat.site_problem))
    for b in sorted(cat.broken.values(), key=lambda b: str(b.path)):
        out.append(item("models", "warn", "dg.models_broken", path=str(b.path), n=len(b.problems),
                        first=b.problems[0]))
    site = cat.site_models()
    if site:
        files = ", ".join(f"{m} ({cat.source(m).path})" for m in site)
        replaced = [m for m in site if cat.source(m).replaces_packaged]
        if replaced:
            out.append(item("models", "pass", "dg.models_site_repl", n=len(cat), files=files,
                            replaced=", ".join(replaced)))
        else:
            out.append(item("models", "pass", "dg.models_site", n=len(cat), files=files))
    return out
