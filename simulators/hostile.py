"""Hostile answers that pass a CRC check: what a lying or broken slave sends.

Each forger takes the master's request and the slave's genuine answer and
returns a frame with a valid CRC that does not answer the request: another
function code, another unit id, a byte count that disagrees with the
registers asked for, or a second answer to the same request. A master that
checks only the CRC publishes such a frame as a value.

Forged register data is the genuine data with every register XOR 0x0101:
it still decodes (a float stays a plausible float, a total a plausible
total), so a master that accepts it publishes a wrong value, not an error.
"""
from __future__ import annotations

from .rtu import Request, frame

POISON = 0x01  # XOR on every data byte: 0x0101 on every register

# Variants of a lying byte count, in the order a malicious slave cycles
# through them: one register short, one too many, one stray byte (the
# registers asked for plus a byte: a CRC-only master takes the registers),
# one byte short.
LIES = ("short", "long", "odd_long", "odd_short")


def poison(data: bytes) -> bytes:
    return bytes(b ^ POISON for b in data)


def _read_reply(reply: bytes) -> bool:
    return len(reply) >= 5 and reply[1] in (3, 4) and reply[2] == len(reply) - 5


def _exception_reply(reply: bytes) -> bool:
    return len(reply) == 5 and bool(reply[1] & 0x80)


def applicable(kind: str, req: Request, reply: bytes) -> bool:
    """Whether a forger has something to forge from this answer."""
    if not req.is_read:
        return False
    if kind == "lying_count":
        return _read_reply(reply)
    return _read_reply(reply) or _exception_reply(reply)


def wrong_function(req: Request, reply: bytes) -> bytes:
    """The other read function (FC04 answering FC03 and back), same byte
    count; an exception answer keeps its code under the other function."""
    other = 4 if req.function == 3 else 3
    if _exception_reply(reply):
        return frame(bytes([reply[0], 0x80 | other, reply[2]]))
    return frame(bytes([reply[0], other, reply[2]]) + poison(reply[3:-2]))


def wrong_unit(req: Request, reply: bytes) -> bytes:
    """Another unit id (the next one up, 1..247), as a second device set to
    the wrong address, or a slave that answers for a neighbour, would send."""
    unit = reply[0] % 247 + 1
    if _exception_reply(reply):
        return frame(bytes([unit]) + reply[1:3])
    return frame(bytes([unit]) + reply[1:3] + poison(reply[3:-2]))


def lying_count(req: Request, reply: bytes, lie: str) -> bytes:
    """A byte count (and as many data bytes) that disagrees with the
    registers asked for; the frame itself is consistent, CRC included."""
    data = poison(reply[3:-2])
    if lie == "short":
        data = data[:-2]
    elif lie == "long":
        data = data + data[-2:] if data else b"\x01\x01"
    elif lie == "odd_long":
        data = data + b"\x01"
    else:  # odd_short
        data = data[:-1]
    return frame(bytes([reply[0], reply[1], len(data)]) + data)


def second_answer(req: Request, reply: bytes) -> bytes:
    """The second of a double answer: same shape, other data (two slaves on
    one address, or a slave that repeats itself with a stale buffer)."""
    if _exception_reply(reply):
        return frame(bytes([reply[0], reply[1], reply[2] ^ 0x06]))
    return frame(reply[:3] + poison(reply[3:-2]))


def forge(kind: str, req: Request, reply: bytes, *, double_gap_s: float,
          lie_index: int = 0) -> list[tuple[float, bytes]]:
    """The bytes to send, with the delay before each, for one hostile kind."""
    if kind == "wrong_function":
        return [(0.0, wrong_function(req, reply))]
    if kind == "wrong_unit":
        return [(0.0, wrong_unit(req, reply))]
    if kind == "lying_count":
        return [(0.0, lying_count(req, reply, LIES[lie_index % len(LIES)]))]
    if kind == "double":
        return [(0.0, reply), (double_gap_s, second_answer(req, reply))]
    raise ValueError(f"not a hostile kind: {kind!r}")
