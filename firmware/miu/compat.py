"""What MicroPython and CPython spell differently, in one place.

`const()` lets the MicroPython compiler fold a constant into the bytecode and,
for names starting with an underscore, drop it from the module's globals. The
compiler recognises the name `const` at parse time, so importing it from here
keeps that effect. CPython has no `micropython` module: the fallback is the
identity, which gives the same values (the simulator and the tests rely on it).
"""

try:
    from micropython import const
except ImportError:
    # A lambda, not a def: mypy accepts it as the stub's generic signature.
    const = lambda expr: expr  # noqa: E731

# mypy treats any name `TYPE_CHECKING` as true; at run time there is no typing
# module on the board, so the type-only imports below it must never execute.
TYPE_CHECKING = False

__all__ = ["const", "TYPE_CHECKING"]
