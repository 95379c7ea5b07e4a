"""Meter interface unit firmware (MicroPython); runs on CPython in tests and in the simulator."""
