"""Scenario keys of the noisy line: every mistake reported by key path, all
at once; good keys build the device's Noise; events change it."""
from __future__ import annotations

import random

import pytest

from simulators import noise
from simulators import scenario as scen
from simulators.rtu import Request, crc_ok, frame

HEAD = """
[[bus]]
name = "b"
kind = "pty"

[[bus]]
name = "net"
kind = "tcp"

[[device]]
bus = "b"
unit = 1
model = "gas-alarm"
name = "ga-1"
"""


def load(tmp_path, text):
    p = tmp_path / "s.toml"
    p.write_text(text)
    return scen.load(p, tmp_path)


def test_every_mistake_by_key_path(tmp_path):
    text = HEAD + """noise = { bit_flp = 0.1, late = 1.5, late_s = 99, truncate = 0.7, garbage = 0.6 }
noise_script = ["ok", "wrong_fc"]

[[device]]
bus = "net"
unit = 2
model = "gas-alarm"
malicious = "crc"

[[event]]
t = 1
malicious = true

[[event]]
t = 2
device = "ga-1"
noise = "loud"
"""
    with pytest.raises(scen.ScenarioError) as e:
        load(tmp_path, text)
    lines = str(e.value).splitlines()
    assert "device[0].noise.bit_flp: not a fault; one of bit_flip, drop_byte, garbage, truncate, late, " \
           "silence, wrong_function, wrong_unit, lying_count, double" in lines
    assert "device[0].noise.late: must be a probability in 0..1" in lines
    assert "device[0].noise.late_s: must be a number of seconds in 0.0..30.0" in lines
    assert "device[0].noise: probabilities add up to 1.3, more than 1" in lines
    assert any(x.startswith("device[0].noise_script[1]: 'wrong_fc' not a fault") for x in lines)
    assert any(x.startswith("device[1].malicious: true, false, or hostile faults") for x in lines)
    assert "event[0].malicious: needs a device" in lines
    assert "event[1].noise: must be a table of fault = probability" in lines
    assert "bus 'net': a noisy line (noise, noise_script, malicious) needs kind = \"pty\", not 'tcp'" in lines


def test_keys_build_the_noise_and_events_change_it(tmp_path):
    text = HEAD + """noise = { bit_flip = 0.25, double = 0.25, late_s = 2.5 }

[[device]]
bus = "b"
unit = 2
model = "gas-alarm"
name = "ga-2"

[[event]]
t = 1
device = "ga-1"
malicious = ["wrong_unit"]
noise_script = ["silence"]

[[event]]
t = 2
device = "ga-1"
malicious = false
noise = {}
"""
    sc = load(tmp_path, text)
    ga1, ga2 = sc.devices["ga-1"], sc.devices["ga-2"]
    assert sc.buses[0].noisy and ga2.line.noise is None
    n = ga1.line.noise
    assert n.rates == {"bit_flip": 0.25, "double": 0.25} and n.late_s == 2.5
    req = Request(frame(bytes([1, 4, 0, 0, 0, 1])))
    reply = frame(bytes([1, 4, 2, 0, 5]))
    rng = random.Random(3)
    kinds = [n.pick(req, reply, rng) for _ in range(2000)]
    assert 400 < kinds.count("bit_flip") < 600 and 400 < kinds.count("double") < 600
    assert set(kinds) == {"ok", "bit_flip", "double"}

    scen.apply(sc.events[0], sc)
    assert n.shape(req, reply, rng) == []                                   # the script first
    assert n.shape(req, reply, rng) == [(0.0, frame(bytes([2, 4, 2, 1, 4])))]  # then intent
    scen.apply(sc.events[1], sc)
    assert n.rates == {} and n.malicious == ()
    assert n.shape(req, reply, rng) == [(0.0, reply)]


def test_a_write_is_never_forged():
    n = noise.update(None, "malicious", True)
    req = Request(frame(bytes([1, 6, 0, 100, 0, 1])))
    reply = frame(bytes([1, 6, 0, 100, 0, 1]))
    assert n.shape(req, reply, random.Random(1)) == [(0.0, reply)]


@pytest.mark.parametrize("kind", noise.HOSTILE_KINDS)
def test_hostile_frames_pass_a_crc_check(kind):
    n = noise.update(None, "malicious", kind)
    req = Request(frame(bytes([3, 3, 0, 0, 0, 4])))
    reply = frame(bytes([3, 3, 8]) + bytes(range(8)))
    for _ in range(4):
        out = n.shape(req, reply, random.Random(1))
        assert out and all(crc_ok(data) for _, data in out)
        assert all(data != reply for _, data in out[-1:])
