"""The [device.params] tables of docs/configuration.md, made from the model files.

    .venv/bin/python -m tests.unit.params_doc      # rewrite the tables in the doc

tests/unit/test_model_params.py fails when the doc and the models differ, so
a param declared, renamed or given another default shows in the doc too.
"""
from __future__ import annotations

import sys
from pathlib import Path

from protocols.models import COMMON_PARAMS, Param, load_models, number_text, param_users

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
BEGIN = "<!-- params: made from the model files by tests/unit/params_doc.py; do not edit by hand -->"
END = "<!-- params: end -->"


def _row(p: Param, used_by: list[str] | None) -> str:
    default = f"`{number_text(p.default)}`" if p.default is not None else "none: off until set"
    kind = "integer" if p.type == "integer" else "number"
    cells = [f"`{p.name}`", kind, p.unit or "-", default, f"{number_text(p.min)} to {number_text(p.max)}",
             f"{p.meaning_en}<br>{p.meaning_zh}"]
    if used_by is not None:
        cells.append(", ".join(f"`{c}`" for c in used_by))
    return "| " + " | ".join(cells) + " |"


def render(models=None) -> str:
    models = models if models is not None else load_models()
    lines = [BEGIN, "", "Every device, whatever its model (flapping, [faults.md](faults.md#flapping)):", "",
             "| Key | Type | Unit | Default | Range | Meaning |", "|---|---|---|---|---|---|"]
    lines += [_row(p, None) for p in COMMON_PARAMS]
    for mid in sorted(models):
        m = models[mid]
        lines += ["", f"`{mid}` ([{mid}.md](models/{mid}.md)):", ""]
        if not m.params:
            lines.append("No params of its own.")
            continue
        users = param_users(m)
        lines += ["| Key | Type | Unit | Default | Range | Meaning | Used by |", "|---|---|---|---|---|---|---|"]
        lines += [_row(p, users[p.name]) for p in m.params]
    return "\n".join(lines + ["", END])


def current(text: str) -> str:
    start = text.index(BEGIN)
    return text[start:text.index(END, start) + len(END)]


def main() -> int:
    text = DOC.read_text(encoding="utf-8")
    DOC.write_text(text.replace(current(text), render()), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
