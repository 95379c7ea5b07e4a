"""Register access helpers shared by the firmware tests."""

from miu.sim import SimMeter


def u32(m: SimMeter, addr: int) -> int:
    hi = m.core.read_input(addr)
    lo = m.core.read_input(addr + 1)
    assert hi is not None and lo is not None
    return (hi << 16) | lo


def i32(m: SimMeter, addr: int) -> int:
    v = u32(m, addr)
    return v - (1 << 32) if v & 0x80000000 else v


def reg(m: SimMeter, addr: int) -> int:
    v = m.core.read_input(addr)
    assert v is not None
    return v
