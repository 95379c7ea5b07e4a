"""docs/simulators.md's fault-scenario tables are what the scenarios do:
made by tests/unit/scenario_timeline.py from in-process runs of every
shipped scenario (the runs of tests/unit/test_scenarios.py)."""
from __future__ import annotations

from tests.unit import scenario_timeline as tl


def test_the_doc_timelines_are_the_scenario_runs(tmp_path):
    text = tl.DOC.read_text(encoding="utf-8")
    assert tl.current(text) == tl.render(tl.runner(tmp_path)), \
        "docs/simulators.md is out of date: run .venv/bin/python -m tests.unit.scenario_timeline"


def test_an_edge_names_the_event_before_it(tmp_path):
    run_of = tl.runner(tmp_path)
    demo = next(p for p in tl.SCENARIOS if p.stem == "demo")
    rows = tl.timeline(demo, run_of(demo))
    assert "| 20 | fm-02 | SLEEP | raised | 20: set flow_m3h = 0 |" in rows
    assert "| 60.5 | fm-03 | TEMP-SENSOR | cleared | 60: status_word bits off 2 |" in rows
