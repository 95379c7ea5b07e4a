"""What goes into the outbox and what comes out: the message classes, a
message encoded for storage, and the counters kept with every transaction."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import IntEnum

__all__ = ["Priority", "Message", "Pending", "Row", "Counters", "NAMES", "encode", "encode_kv", "with_seq"]


class Priority(IntEnum):
    EVENT = 0  # faults, rule findings, access events, log gaps: dropped last
    STATE = 1  # retained state: coalesced per topic
    TELEMETRY = 2  # dropped first


NAMES = {Priority.EVENT: "event", Priority.STATE: "state", Priority.TELEMETRY: "telemetry"}


@dataclass
class Message:
    topic: str
    payload: dict  # JSON-serialisable; the outbox adds "seq" at first send
    priority: Priority
    retain: bool = False
    qos: int = 1


@dataclass
class Pending:
    id: int
    topic: str
    payload: bytes
    qos: int
    retain: bool
    seq: int


@dataclass
class Row:
    """A message encoded for storage (payload is compact JSON without seq)."""

    prio: int
    topic: str
    body: bytes
    qos: int
    retain: int
    size: int
    stamp: float = 0.0
    seq: int | None = None


@dataclass
class Counters:
    seq_next: int = 1
    last_id: int = 0
    clock: float = 0.0
    bytes: int = 0
    n: list[int] = field(default_factory=lambda: [0, 0, 0])  # by Priority
    dropped: list[int] = field(default_factory=lambda: [0, 0, 0])
    coalesced: int = 0

    def copy(self) -> "Counters":
        return Counters(self.seq_next, self.last_id, self.clock, self.bytes,
                        list(self.n), list(self.dropped), self.coalesced)


# One encoder, not one per message: json.dumps with any option builds a
# new JSONEncoder per call, a third of the cost of encoding a reading.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _dumps(value) -> str:
    return _ENCODER.encode(value)


def encode(m: Message) -> Row:
    """Bad input (a non-dict payload, a value JSON cannot carry, a bad qos)
    raises here, in the caller, before anything is handed to the store."""
    if not isinstance(m.payload, dict):
        raise TypeError(f"payload of {m.topic!r} must be a dict")
    payload = m.payload
    if "seq" in payload:  # the outbox owns seq
        payload = {k: v for k, v in payload.items() if k != "seq"}
    body = _dumps(payload).encode()
    prio = int(Priority(m.priority))
    qos = int(m.qos)
    if qos not in (0, 1, 2):
        raise ValueError(f"qos {qos}")
    return Row(prio, m.topic, body, qos, int(bool(m.retain)), len(body) + len(m.topic.encode()))


def encode_kv(kv: dict | None) -> dict[str, str]:
    return {str(k): _dumps(v) for k, v in (kv or {}).items()}


def with_seq(body: bytes, seq: int) -> bytes:
    # body is compact JSON of a dict without "seq": splice instead of re-encoding.
    if body == b"{}":
        return b'{"seq":%d}' % seq
    return b'{"seq":%d,' % seq + body[1:]
