"""One model file's data -> a Model, or every problem of it in file order."""
from __future__ import annotations

from typing import Any

from protocols.modbus.types import Field

from .check_faults import FaultChecks
from .check_params import ParamChecks
from .check_registers import RegisterChecks
from .types import Model

SECTIONS = ("model", "param", "register", "fault")


class ModelChecker(RegisterChecks, ParamChecks, FaultChecks):
    def __init__(self, stem: str):
        super().__init__()
        self.stem = stem              # the file name without .toml: the id the model must have
        # every register name the file declares, and the registers that
        # checked out: a trigger naming a register with problems of its own
        # is not reported again as naming no register
        self.names: set[str] = set()
        self.fields: dict[str, Field] = {}

    def _take(self, since: int) -> list[str]:
        out = self.problems[since:]
        del self.problems[since:]
        return out

    def check(self, data: dict[str, Any]) -> Model | None:
        # Checked in the order one check needs another (params and registers
        # before the triggers that name them, registers before identify), but
        # listed in the order of the sections: [model], [[param]],
        # [[register]], [[fault]], as a person reads the file.
        self.unknown("", data, SECTIONS)
        head = self.model_table(data.get("model"))
        start = len(self.problems)
        params = self.params(data.get("param"))
        param_problems = self._take(start)
        fields = self.registers(data.get("register"), head)
        rest = self._take(start)
        if head is not None:
            self.identify(head)       # names a register, so after them
        model_problems = self._take(0)
        faults = self.faults(data.get("fault"))
        fault_problems = self._take(0)
        unused = self.unused_params() if params is not None and faults is not None else []
        self.problems = model_problems + param_problems + unused + rest + fault_problems
        if self.problems or head is None or params is None or fields is None or faults is None:
            return None
        return Model(id=head["id"], name_en=head["name_en"], name_zh=head["name_zh"],
                     family=head["family"], fields=tuple(fields.values()), faults=tuple(faults),
                     max_registers_per_read=head["max_registers_per_read"],
                     identify=head.get("identify"), params=params)
