"""Fault interpretation: a reading plus the model's catalogue and the gateway
rules become edge-triggered fault events. Pure: no I/O, no clock of its own."""
