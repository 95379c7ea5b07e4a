"""Raw register blocks + a model's register map -> a reading with quality (pure)."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Reading:
    device: str
    ok: bool
    values: dict[str, int | float | str | bool] = field(default_factory=dict)
    quality: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    mono: float = 0.0
    ts: str = ""
