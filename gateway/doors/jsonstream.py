"""JSON read in pieces: the items of a large array are decoded one at a time,
so a registry update or an old cards.json never sits in memory as one
Python list. The standard decoder does each value; this module only walks
the arrays and objects around them.

Errors are RegistryError with one line that gives the position and the
decoder's reason, never the text itself (it may hold card numbers)."""
from __future__ import annotations

import json
from typing import Iterator

from gateway.site.cardfile import RegistryError

_DECODER = json.JSONDecoder()
_WS = " \t\r\n"
MAX_VALUE_CHARS = 1 << 20   # one value (an entry, a meta object) larger than this is refused


class Reader:
    def __init__(self, chunks: Iterator[str], max_value: int = MAX_VALUE_CHARS) -> None:
        self.chunks = iter(chunks)
        self.buf = ""
        self.pos = 0
        self.base = 0          # characters dropped from the front of buf
        self.eof = False
        self.max_value = max_value

    def _fill(self) -> bool:
        if self.eof:
            return False
        chunk = next(self.chunks, None)
        if chunk is None:
            self.eof = True
            return False
        self.base += self.pos
        self.buf = self.buf[self.pos:] + chunk
        self.pos = 0
        return True

    def fail(self, why: str) -> RegistryError:
        return RegistryError([f"not JSON: {why} at character {self.base + self.pos + 1}"])

    def peek(self) -> str:
        """The next character that is not white space ("" at the end)."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in _WS:
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self._fill():
                return ""

    def expect(self, ch: str) -> None:
        if self.peek() != ch:
            raise self.fail(f"expected {ch!r}")
        self.pos += 1

    def value(self):
        self.peek()
        last = None
        while True:
            try:
                v, end = _DECODER.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                # More text helps only when the value ran past the end of
                # what is read so far; the same error at the same place
                # after more text is a real one.
                here = (self.base + exc.pos, exc.msg)
                cut = exc.msg.startswith("Unterminated string") or here != last
                if cut and not self.eof and len(self.buf) - self.pos > self.max_value:
                    raise self.fail(f"one value longer than {self.max_value} characters") from None
                if cut and self._fill():
                    last = (self.base + exc.pos, exc.msg)
                    continue
                self.pos = min(exc.pos, len(self.buf))
                raise self.fail(exc.msg) from None
            except RecursionError:
                raise self.fail("nested too deep") from None
            # a number or literal cut at the end of the buffer may go on
            if end == len(self.buf) and not self.eof and len(self.buf) - self.pos <= self.max_value \
                    and self._fill():
                continue
            self.pos = end
            return v

    def string(self) -> str:
        if self.peek() != '"':
            raise self.fail("expected a string")
        return self.value()

    def array(self) -> Iterator:
        """Each item of the array that starts here, decoded one at a time."""
        self.expect("[")
        if self.peek() == "]":
            self.pos += 1
            return
        while True:
            yield self.value()
            c = self.peek()
            self.pos += 1
            if c == "]":
                return
            if c != ",":
                self.pos -= 1
                raise self.fail("expected ',' or ']'")

    def members(self) -> Iterator[str]:
        """Each key of the object that starts here; the caller reads (or
        skips, with value()) the value before asking for the next key."""
        self.expect("{")
        if self.peek() == "}":
            self.pos += 1
            return
        while True:
            key = self.string()
            self.expect(":")
            yield key
            c = self.peek()
            self.pos += 1
            if c == "}":
                return
            if c != ",":
                self.pos -= 1
                raise self.fail("expected ',' or '}'")

    def end(self) -> None:
        if self.peek():
            raise self.fail("extra data after the value")


def entry_rows(chunks: Iterator[str]) -> Iterator[tuple[str, object]]:
    """(where, item) of a registry update in JSON: ``{"entries": [...]}``
    (or ``"cards"``), or a bare list of entries."""
    r = Reader(chunks)
    c = r.peek()
    if c == "[":
        for i, item in enumerate(r.array()):
            yield f"entries[{i}].", item
    elif c == "{":
        found = False
        for key in r.members():
            if key in ("entries", "cards") and not found and r.peek() == "[":
                found = True
                for i, item in enumerate(r.array()):
                    yield f"{key}[{i}].", item
            else:
                r.value()
        if not found:
            raise RegistryError(['expected {"entries": [...]} or a list of entries'])
    else:
        raise r.fail("expected '{' or '['")
    r.end()
