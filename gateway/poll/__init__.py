"""Polling: one asyncio task per bus (serial port or Modbus TCP endpoint), the
port lock it shares with the field commands, and the decoding of raw
registers into a reading with per-field quality. Hot path."""
