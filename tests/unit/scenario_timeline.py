"""The edge-by-edge timelines of docs/simulators.md, made from the shipped scenarios.

    .venv/bin/python -m tests.unit.scenario_timeline    # rewrite the tables in the doc

Each scenario is run as tests/unit/test_scenarios.py runs it (in-process,
through the gateway's decoder and interpreter, polled every 0.5 s), and
every raised or cleared edge becomes a row, beside the scenario event that
came last for that device (or its bus) before the edge. The test there
fails when the doc and the runs differ, so a catalogue or scenario change
shows in the doc too.
"""
from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from protocols.models import load_models
from simulators import scenario as scen
from tests.unit.test_scenarios import SCENARIOS, Run, run_scenario

DOC = Path(__file__).resolve().parents[2] / "docs" / "simulators.md"
BEGIN = "<!-- timelines: made from the scenarios by tests/unit/scenario_timeline.py; do not edit by hand -->"
END = "<!-- timelines: end -->"
POLL_S = 0.5


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_value(x)}" for k, x in v.items()) + " }"
    return str(v)


def _pairs(d: dict) -> str:
    return ", ".join(f"{k} = {_value(v)}" for k, v in d.items())


def describe(ev: scen.Event) -> str:
    """One scenario event in the scenario file's own words."""
    parts = []
    if ev.set:
        parts.append(f"set {_pairs(ev.set)}")
    if ev.unpin:
        parts.append("unpin " + ", ".join(ev.unpin))
    if ev.bits:
        b = ev.bits
        bits = [f"{k} {', '.join(str(x) for x in b[k])}" for k in ("on", "off") if b.get(k)]
        parts.append(f"{b.get('field')} bits " + "; ".join(bits))
    if ev.params:
        parts.append(f"params {_pairs(ev.params)}")
    if ev.silent is not None:
        parts.append("silent" if ev.silent else "answers again")
    if ev.garble_rate is not None:
        parts.append(f"garble_rate = {_value(ev.garble_rate)}")
    if ev.strict_holes is not None:
        parts.append(f"strict_holes = {_value(ev.strict_holes)}")
    if ev.exception is not None:
        parts.append(f"exception = {ev.exception}")
    if ev.unplug_s:
        parts.append(f"bus unplugged for {_value(ev.unplug_s)} s")
    for key in ("noise", "noise_script", "malicious"):
        if getattr(ev, key) is not None:
            parts.append(f"{key} = {_value(getattr(ev, key))}")
    if ev.door:
        parts.append(f"door = {_value(ev.door)}")
    return "; ".join(parts) or "-"


def _t(x: float) -> str:
    return f"{x:g}"


def _cause(sc: scen.Scenario, device: str, bus: str, t: float) -> str:
    """The events for this device or its bus at the latest time at or before t."""
    mine = [e for e in sc.events if e.t <= t and (e.device == device or (e.device is None and e.bus == bus))]
    if not mine:
        return "(from the start)"
    last = max(e.t for e in mine)
    return f"{_t(last)}: " + "; ".join(describe(e) for e in mine if e.t == last)


def _cell(s: str) -> str:
    return s.replace("|", "\\|")


def timeline(path: Path, run: Run) -> list[str]:
    bus_of = {d.name: b.name for b in run.sc.buses for d in b.devices}
    rows: list[tuple[float, str, str, list[str]]] = []
    for t, device, code, state in run.events:
        if rows and rows[-1][:3] == (t, device, state):
            rows[-1][3].append(code)
        else:
            rows.append((t, device, state, [code]))
    out = [f"`{path.stem}`:", "", "| t (s) | device | code | edge | the last event for the device before it (t: what) |",
           "|---|---|---|---|---|"]
    for t, device, state, codes in rows:
        out.append(f"| {_t(t)} | {device} | {', '.join(codes)} | {state} | "
                   f"{_cell(_cause(run.sc, device, bus_of[device], t))} |")
    return out


def summary(paths: list[Path], run_of: Callable[[Path], Run]) -> list[str]:
    models = load_models()
    out = ["| scenario | devices | catalogue entries | raised | cleared | not raised, or raised and not cleared (the scenario says why) |",
           "|---|---|---|---|---|---|"]
    for path in paths:
        run = run_of(path)
        model = models[path.stem.removesuffix("-faults")]
        codes = [f.code for f in model.faults]
        raised, cleared = run.codes("raised"), run.codes("cleared")
        excused = [f"`{c}` not raised" for c in run.doc.get("not_exercised", {})] + \
                  [f"`{c}`" for c in run.doc.get("not_cleared", {})]
        out.append(f"| `{path.stem}` | {', '.join(run.sc.devices)} | {len(codes)} | "
                   f"{len(raised & set(codes))} | {len(cleared & set(codes))} | {', '.join(excused) or '-'} |")
    return out


def excuses(paths: list[Path], run_of: Callable[[Path], Run]) -> list[str]:
    out = ["| scenario | code | raised | why not (from the scenario's `[not_exercised]` / `[not_cleared]`) |",
           "|---|---|---|---|"]
    for path in paths:
        doc = run_of(path).doc
        for table, raised in (("not_exercised", "no"), ("not_cleared", "yes, not cleared")):
            for code, why in doc.get(table, {}).items():
                out.append(f"| `{path.stem}` | `{code}` | {raised} | {_cell(why)} |")
    return out


def render(run_of: Callable[[Path], Run]) -> str:
    faults = [p for p in SCENARIOS if p.stem.endswith("-faults")]
    lines = [BEGIN, "", *summary(faults, run_of), "", *excuses(faults, run_of)]
    for path in SCENARIOS:
        run = run_of(path)
        if run.events:
            lines += ["", *timeline(path, run)]
    return "\n".join(lines + ["", END])


def current(text: str) -> str:
    start = text.index(BEGIN)
    return text[start:text.index(END, start) + len(END)]


def runner(workdir: Path) -> Callable[[Path], Run]:
    """Each scenario run once, at POLL_S, its pseudo-terminal folder under workdir."""
    cache: dict[Path, Run] = {}

    def run_of(path: Path) -> Run:
        if path not in cache:
            work = workdir / path.stem
            work.mkdir(parents=True, exist_ok=True)
            cache[path] = run_scenario(path, work, POLL_S)
        return cache[path]
    return run_of


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        text = DOC.read_text(encoding="utf-8")
        new = text.replace(current(text), render(runner(Path(tmp))))
    if new != text:
        DOC.write_text(new, encoding="utf-8")
        print(f"rewrote the timelines in {DOC}")
    else:
        print(f"{DOC} is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
