# Runs unchanged on CPython and on MicroPython (WebAssembly port, see
# test_wasm.py); prints one line per observation. The test compares the two
# outputs line by line, so everything printed must be deterministic and
# formatted the same way on both interpreters (no floats, no reprs of
# objects, bytes as plain hex).
import sys

from miu import regs
from miu.crc import crc16
from miu.flash import FlashStore
from miu.rtu import RtuSlave
from miu.sim import PowerCut, SimFlash, SimHal, SimMeter


def hexs(b):
    if b is None:
        return "-"
    return "".join("%02x" % x for x in b)


def frame(h):
    b = bytes.fromhex(h)
    c = crc16(b)
    return b + bytes([c & 0xFF, c >> 8])


def show(tag, m):
    print(tag, " ".join(str(v) for v in m.read_inputs(0, 16)))


print("impl", sys.implementation.name)

# 1. Counting, flow, the valve and a fault, with the clock near its wrap.
m = SimMeter(SimHal(start_ms=(1 << 30) - 20_000))
show("blank", m)
print("credit", m.credit(20_000), "open", m.command(regs.CMD_OPEN_VALVE))
m.run_flow(6, 120_000)
show("flow6", m)
m.run_flow(9, 60_000)
show("flow9", m)
print("card", m.command(regs.CMD_FAULT_CARD))
show("after-card", m)
m.hal.magnet = True
m.advance(2_000, 100)
show("magnet", m)
print("open-refused", m.command(regs.CMD_OPEN_VALVE))
m.hal.magnet = False
m.advance(1_000)
print("card", m.command(regs.CMD_FAULT_CARD))
m.run_flow(3, 60_000, reeds=(True, False))
show("reed2-dead", m)
print("card", m.command(regs.CMD_FAULT_CARD))
m.run_flow(3, 60_000, reeds=(False, True))
show("reed1-dead", m)

# 2. Bounce: five closures inside the debounce time count once.
m = SimMeter()
m.credit(1000)
m.command(regs.CMD_OPEN_VALVE)
for _ in range(5):
    m.core.on_pulse(0)
    m.hal.advance(5)
m.tick()
m.hal.advance(200)
m.core.on_pulse(0)
m.tick()
print("bounce", m.core.read_input(regs.IR_PULSE_COUNT + 1))

# 3. Power cut while the record is being written: the torn slot is ignored.
m = SimMeter()
m.credit(10_000)
m.command(regs.CMD_OPEN_VALVE)
m.run_flow(6, 6_000 * 19 + 100)
flash = m.flash
print("before-cut", m.core.read_input(regs.IR_PULSE_COUNT + 1))
for keep in (0, 1, 7, 20, 40, 50, 63):
    f2 = SimFlash(512)
    f2.data[:] = flash.data
    m2 = SimMeter(SimHal(), f2)
    m2.run_flow(6, 6_000 * 3)       # reaches the next save at 10 unsaved pulses
    f2.tear_next_write(keep)
    try:
        m2.run_flow(6, 6_000 * 10)
        print("no-cut", keep)
    except PowerCut:
        pass
    m2.reboot()
    print("after-cut", keep, m2.core.read_input(regs.IR_PULSE_COUNT + 1),
          m2.core.read_input(regs.IR_VOLUME + 1), m2.core.read_input(regs.IR_BALANCE + 1))

# 4. Store: round robin and fallback past a corrupt newest slot.
f = SimFlash(256)
st = FlashStore(f, slots=4, slot_size=64)
for i in range(10):
    st.save(bytes([i, i, i]))
print("store", hexs(st.load()), st.seq, st.slot)
f.data[st.slot * 64 + 9] ^= 0xFF
print("store-corrupt", hexs(FlashStore(f, slots=4, slot_size=64).load()))

# 5. RTU: exact responses.
m = SimMeter()
m.credit(20_000)
m.command(regs.CMD_OPEN_VALVE)
m.run_flow(6, 60_000)
s = RtuSlave(7, m.core)
for req in ("07040000 0010", "070300650006", "070600681f40", "07100066000204000a0014",
            "0710006b000204000186a0", "072b0e0100", "072b0e0401", "070100000001",
            "070400140001", "070300000000", "070600641234", "071000660002 03000a0014",
            "072b0d0100", "000600681f41", "080400000001"):
    print("rtu", hexs(s.handle(frame(req.replace(" ", "")))))
bad = bytearray(frame("070400000010"))
bad[-1] ^= 1
print("rtu-badcrc", hexs(s.handle(bad)), "max_flow", m.core.read_holding(regs.HR_MAX_FLOW))

# 6. Deterministic junk (an LCG, same on both interpreters): never a crash,
# never an answer to a frame whose CRC is wrong.
x = 12345
answered = 0
for i in range(300):
    n = i % 40
    buf = bytearray(n)
    for j in range(n):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        buf[j] = (x >> 16) & 0xFF
    if n > 2:
        buf[0] = 7
    if s.handle(buf) is not None:
        answered += 1
print("junk-answered", answered)

# 7. The pulse interrupt path allocates nothing (MicroPython only: heap_lock).
m = SimMeter()
core = m.core
ok = "ok"
if sys.implementation.name == "micropython":
    import micropython
    micropython.heap_lock()
    try:
        for _ in range(50):
            m.hal._ticks += 100
            core.on_pulse(0)
            core.on_pulse(1)
            core.on_magnet(True)
            core.on_magnet(False)
    except MemoryError:
        ok = "allocates"
    finally:
        micropython.heap_unlock()
else:
    for _ in range(50):
        m.hal._ticks += 100
        core.on_pulse(0)
        core.on_pulse(1)
m.tick()
print("isr", ok, core.read_input(regs.IR_PULSE_COUNT + 1))
print("done")
