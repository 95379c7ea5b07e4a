"""`edgegw visit DEVICE`: a service visit record, prefilled with what the
gateway knows (reference I), the rest left blank for the engineer.

Prefilled: the site, the device (model, serial, bus and unit), where it is
and whom to call (`[device.meta]` of the local config: contact details stay
on the box and never go out by MQTT), the problems found with their manual
rows and since when, the response deadline, and the cards and parts to
bring, each with the catalogue's words for how it clears the fault. Blank:
what only the visit can tell (arrival and departure, service type, warranty,
work done, parts replaced, preventive checks, whether the device works
afterwards, customer satisfaction, engineer, signature).

With the daemon running the faults come through the control socket; stopped,
from what the daemon last recorded in the state folder (exit 2, like
`edgegw faults`, so a script knows it is not live).
"""
from __future__ import annotations

import sys

from . import i18n
from .client import (
    ask_daemon,
    err,
    load_site,
    print_json,
)
from .i18n import age, t
from .screen import due_value, fault_sort_key
from .status import recorded_status
from .text import _sev, _text, fmt_ts, seconds_between, without_code
from .text import width as cells

# What to take along for a fault, from how the catalogue says it is cleared.
# Card names are the manual's (reference C); a card belongs to a family of
# devices, and the residential 故障卡（维修卡） is never named for a controller,
# where the 维修卡 is the initialise card.
_BRING = {
    "fault_card": "vz.bring.fault_card",
    "fault_recovery_card": "vz.bring.fault_recovery_card",
    "parameter_card": "vz.bring.parameter_card",
    "purchase_card": "vz.bring.purchase_card",
    "battery_replacement": "vz.bring.battery",
    "part_replacement": "vz.bring.part",
    "manufacturer": "vz.bring.manufacturer",
}
_CONTROLLER_FAMILIES = ("flow_controller",)
# Tool cards a remedy step may call for (the manual's names, reference C),
# looked up in the Chinese steps, where the catalogue uses the manual's own
# words. A step that forbids a card (切勿插维修卡) names nothing to bring.
_CARDS_IN_STEPS = (("故障恢复卡", "vz.bring.fault_recovery_card"), ("故障卡", "vz.bring.fault_card"),
                   ("参数卡", "vz.bring.parameter_card"), ("检测卡", "vz.bring.inspection_card"),
                   ("回收转移卡", "vz.bring.transfer_card"), ("总初始化卡", "vz.bring.master_init_card"),
                   ("购气卡", "vz.bring.purchase_card"))
_FORBIDS = ("切勿", "不要", "不能", "勿")
# reference I: the fields of a visit record the engineer fills in on site
BLANK = ("customer", "service_type", "arrival", "departure", "warranty", "work_done", "parts_replaced",
         "preventive_checks", "works_afterwards", "customer_satisfaction", "engineer", "signature")
PART_COLUMNS = ("name", "quantity", "action", "old_serial", "new_serial")
PART_ROWS = 3


def build_visit(site, dev: dict, ts: str, live: bool, recorded: dict | None = None) -> dict:
    """The record as data (the --json output): prefilled fields, and the
    blank ones as null."""
    dc = next(d for d in site.cfg.devices if d.name == dev["name"])
    model = site.models.get(dc.model)
    meta = dict(dc.meta or {})
    reported = (dev.get("values") or {}).get("serial_number")
    serial, source = (str(reported), "reported") if reported not in (None, "") else \
        (meta.get("serial"), "config" if meta.get("serial") else None)
    faults = sorted(dev.get("faults") or [], key=lambda f: fault_sort_key(f, ts))
    controller = model is not None and model.family in _CONTROLLER_FAMILIES
    bring: list[dict] = []
    for f in faults:
        for key in _bring_keys(f):
            if key == "vz.bring.fault_card" and controller:
                key = "vz.bring.fault_recovery_card"
            item = next((b for b in bring if b["key"] == key), None)
            if item is None:
                bring.append({"key": key, "what": {lang: t(lang, key) for lang in i18n.LANGS},
                              "for": [f["code"]]})
            elif f["code"] not in item["for"]:
                item["for"].append(f["code"])
    gw = site.cfg.gateway
    return {
        "ts": ts, "live": live, "recorded": recorded,
        "site": {"gateway": gw.id, "site": gw.site},
        "device": {"name": dev["name"], "model": dev.get("model"), "model_name": dev.get("model_name") or {},
                   "family": model.family if model is not None else None,
                   "bus": dev.get("bus"), "unit": dev.get("unit"), "serial": serial, "serial_source": source,
                   "address": meta.get("address"), "contact": meta.get("contact"), "area": meta.get("area"),
                   "manufacturer": meta.get("manufacturer"), "note": meta.get("note"),
                   "availability": dev.get("availability"), "last_good_ts": dev.get("last_good_ts"),
                   "last_error": dev.get("last_error")},
        "problems": [{k: f.get(k) for k in ("code", "severity", "ref", "since", "respond_within_h", "respond_by",
                                            "valve_closed", "meaning", "remedy_steps", "cleared_by")}
                     for f in faults],
        "states": [{"code": f["code"], "since": f.get("since"), "meaning": f.get("meaning")}
                   for f in dev.get("states") or []],
        "bring": bring,
        "never_use": {lang: t(lang, "vz.never_maintenance_card") for lang in i18n.LANGS} if controller else None,
        "blank": {k: ([] if k == "parts_replaced" else None) for k in BLANK},
    }


def _bring_keys(f: dict) -> list[str]:
    """What a fault asks the engineer to take along: from how it is cleared,
    then the cards its remedy steps call for."""
    keys = []
    key = _BRING.get((f.get("cleared_by") or {}).get("code"))
    if key:
        keys.append(key)
    for step in (f.get("remedy_steps") or {}).get("zh") or []:
        if any(w in step for w in _FORBIDS):
            continue
        keys += [k for name, k in _CARDS_IN_STEPS if name in step and k not in keys]
    return keys


def _label_rows(rows: list[tuple[str, str]], indent: int = 2) -> list[str]:
    w = max(cells(label) for label, _ in rows)
    return [(" " * indent + label + " " * (w - cells(label) + 2) + value).rstrip() for label, value in rows]


def render_visit(v: dict, lang: str) -> str:
    """The record for paper or a ticket: plain text, no colour, 80 columns
    except where a catalogue sentence is longer."""
    dev = v["device"]
    gw = v["site"]
    blank = "_" * 30
    where = f"{gw['gateway']}" + (f" ({gw['site']})" if gw.get("site") else "")
    rec = v.get("recorded") or {}
    source = t(lang, "vz.live") if v["live"] else t(lang, "vz.recorded", path=rec.get("path"),
                                                     when=fmt_ts(rec.get("when")))
    lines = [t(lang, "vz.title"), t(lang, "vz.prepared", ts=fmt_ts(v["ts"]), source=source), ""]
    serial = dev.get("serial")
    serial = t(lang, f"vz.serial_{dev['serial_source']}", serial=serial) if serial else blank
    rows = [(t(lang, "vz.customer"), blank),
            (t(lang, "vz.address"), dev.get("address") or blank),
            (t(lang, "vz.contact"), dev.get("contact") or blank),
            (t(lang, "vz.site"), where),
            (t(lang, "vz.device"), t(lang, "vz.device_v", name=dev["name"], model=dev["model"],
                                     model_name=(dev.get("model_name") or {}).get(lang) or "-", bus=dev["bus"],
                                     unit=dev["unit"])),
            (t(lang, "vz.serial"), serial)]
    if dev.get("area"):
        rows.append((t(lang, "vz.area"), dev["area"]))
    if dev.get("note"):
        rows.append((t(lang, "vz.note"), dev["note"]))
    lines += _label_rows(rows)

    lines += ["", t(lang, "vz.problems", n=len(v["problems"]))]
    if dev.get("availability") == "unavailable":
        since = fmt_ts(dev.get("last_good_ts")) if dev.get("last_good_ts") else t(lang, "never")
        lines.append("  " + t(lang, "vz.unavailable", since=since, err=dev.get("last_error") or "-"))
    for f in v["problems"]:
        lines.append("  " + t(lang, "vz.fault_head", code=f["code"], sev=_sev(lang, f.get("severity")),
                               ref=f.get("ref") or "-", since=fmt_ts(f.get("since")),
                               age=age(seconds_between(v["ts"], f.get("since")), lang)))
        due = due_value(f, v["ts"], lang)
        sub = [(t(lang, "st.meaning"), without_code(f["code"], _text(f, "meaning", lang)))]
        if due:
            sub.insert(0, (t(lang, "st.respond_by"), due))
        steps = (f.get("remedy_steps") or {}).get(lang) or []
        sub += [(t(lang, "fl.remedy") if i == 1 else "", f"{i}. {r}") for i, r in enumerate(steps, 1)]
        cleared = f.get("cleared_by") or {}
        sub.append((t(lang, "st.cleared_by"), cleared.get(lang) or cleared.get("en") or ""))
        lines += _label_rows(sub, indent=4)
    if not v["problems"] and dev.get("availability") != "unavailable":
        lines.append("  " + t(lang, "vz.no_problems"))
    for f in v["states"]:
        lines.append("  " + t(lang, "vz.state", code=f["code"]))

    lines += ["", t(lang, "vz.bring")]
    sep = "、" if lang == "zh" else ", "
    for b in v["bring"]:
        lines.append("  [ ] " + t(lang, "vz.bring_for", what=b["what"][lang], codes=sep.join(b["for"])))
    if not v["bring"]:
        lines.append("  " + t(lang, "vz.bring_none"))
    if v.get("never_use"):
        lines.append("  " + v["never_use"][lang])

    line = "_" * 40
    lines += ["", t(lang, "vz.fill_in")]
    before = [(t(lang, "vz.service_type"), t(lang, "vz.service_types")),
              (t(lang, "vz.arrival"), "____-__-__ __:__"),
              (t(lang, "vz.departure"), "____-__-__ __:__"),
              (t(lang, "vz.warranty"), t(lang, "vz.warranties")),
              (t(lang, "vz.work_done"), line), ("", line),
              (t(lang, "vz.parts"), "")]
    after = [(t(lang, "vz.preventive"), line),
             (t(lang, "vz.works_after"), t(lang, "vz.yes_no")),
             (t(lang, "vz.satisfaction"), t(lang, "vz.satisfactions")),
             (t(lang, "vz.engineer"), blank),
             (t(lang, "vz.signature"), blank)]
    rows = _label_rows(before + after)        # one alignment for the whole form
    lines += rows[:len(before)]
    heads = [t(lang, f"vz.part.{c}") for c in PART_COLUMNS]
    widths = [max(12, cells(h)) for h in heads]
    lines.append("    " + "  ".join(h + " " * (w - cells(h)) for h, w in zip(heads, widths)).rstrip())
    lines += ["    " + "  ".join("_" * w for w in widths)] * PART_ROWS
    lines += rows[len(before):]
    return "\n".join(lines) + "\n"


def cmd_visit(args) -> int:
    site = load_site(args)
    if isinstance(site, int):
        return site
    names = [d.name for d in site.cfg.devices if d.enabled]
    if args.device not in names:
        err(i18n.t(site.lang, "fl.unknown_device", name=args.device, known=", ".join(names) or "-"))
        return 2
    data, rc = ask_daemon(site, "faults", {"devices": [args.device], "history": 0})
    if rc is not None:
        return rc
    if data is not None:
        ts, live, recorded, rc = data["ts"], True, None, 0
        dev = next(d for d in data["active"] if d["name"] == args.device)
    else:
        st = recorded_status(site.cfg, site.models, f"no answer on {site.socket}")
        ts, live, recorded = st["ts"], False, st["recorded"]
        dev = next(d for d in st["devices"] if d["name"] == args.device)
        err(i18n.t(site.lang, "er.daemon_down", sock=site.socket))
        rc = 2
    v = build_visit(site, dev, ts, live, recorded)
    if args.json:
        print_json(v)
    else:
        sys.stdout.write(render_visit(v, site.lang))
    return rc
