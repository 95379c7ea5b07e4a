# Runs firmware/main.py under the WebAssembly port with fake_machine as
# `machine`: the real MachineHal, hard-IRQ handlers, RTU port and watchdog
# wiring, on the real interpreter. Prints what the test checks.
import time

import machine
import micropython

import main
from miu.crc import crc16


def frame(h):
    b = bytes.fromhex(h)
    c = crc16(b)
    return b + bytes([c & 0xFF, c >> 8])


state = {"pulses": 0, "isr": "ok", "t": 0}


def on_pass(n):
    if n == 1:
        state["t"] = time.ticks_ms()
    # Every 60 ms of real time one revolution: reed 1 then reed 2, each a
    # hard-IRQ handler call made with the heap locked, as on the board.
    if state["pulses"] < 6 and time.ticks_diff(time.ticks_ms(), state["t"]) >= 60:
        state["t"] = time.ticks_ms()
        try:
            micropython.heap_lock()
            machine.pins[6].handler(machine.pins[6])
            machine.pins[7].handler(machine.pins[7])
        except MemoryError:
            state["isr"] = "allocates"
        finally:
            micropython.heap_unlock()
        state["pulses"] += 1
    if n == 5:
        # Read input 12..15 (pulse count, model, firmware version).
        machine.uarts[0].rx.extend(frame("0104000c0004"))
    if state["pulses"] >= 6 and n > 5 and not machine.uarts[0].rx and state.get("asked") is None:
        state["asked"] = n
        machine.uarts[0].rx.extend(frame("0104000c0004"))


machine.on_pass = on_pass
t0 = time.ticks_ms()
main.main(passes=1500)
uart = machine.uarts[0]
print("isr", state["isr"], "hard", machine.pins[6].hard, machine.pins[7].hard)
print("replies", len(uart.sent))
print("first", "".join("%02x" % x for x in uart.sent[0]))
print("last", "".join("%02x" % x for x in uart.sent[-1]))
print("de-high-while-sending", all(v == 1 for v in uart.de_when_sent))
print("de-history", machine.pins[2].history[:3], machine.pins[2].level)
# Power-up re-asserts the shut valve: IN2 (pin 11) driven high after both legs low.
print("valve-drive", machine.pins[11].history[:3], machine.pins[10].history[:2])
print("wdt", machine.wdts[0].timeout, machine.wdts[0].feeds)
print("done")
