"""Issue 12: property-based fuzzing of the MQTT command handler.

Random topics under the command prefix and beside it, and random payloads
(bytes, JSON of every shape, other encodings, sizes around the limit), in
bursts, into Commands.on_message on a running event loop, with the real
daemon objects behind it (config, outbox on disk, buses and devices, not
started). The one stand-in is the MQTT link, which records what would be
published. Properties: no exception escapes (from on_message, the tasks, or
to the loop's handler); only allowlisted commands are run or answered ok;
every reply is bounded, well formed, on its own reply topic; every command
is counted once."""
from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.daemon import Daemon
from gateway.field.commands import ALLOWED, MAX_ID, MAX_NAME, MAX_PAYLOAD, MAX_REPLY, Commands, TokenBucket
from gateway.field.requests import Requests
from gateway.site.config import load_config
from protocols.models import load_models

BASE = "edgegw/fz/cmd"
REPLY_KEYS = {"v", "seq", "ts", "ts_synced", "cmd", "id", "ok", "result", "error", "code"}


class RecordingLink:
    """What MqttLink.publish would send; always connected."""
    connected = True

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, int, bool]] = []

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> int:
        self.sent.append((topic, payload, qos, retain))
        return len(self.sent)


@pytest.fixture(scope="module")
def rig():
    with tempfile.TemporaryDirectory() as d:
        cfg_path = Path(d) / "edgegw.toml"
        cfg_path.write_text('[gateway]\nid = "fz"\nstate_dir = "state"\n'
                            '[[bus]]\nname = "rs485-1"\nport = "/dev/ttyFUZZ0"\n'
                            '[[device]]\nname = "fm-01"\nbus = "rs485-1"\nunit = 1\nmodel = "turbine-evc"\n'
                            '[[device]]\nname = "fm-02"\nbus = "rs485-1"\nunit = 2\nmodel = "turbine-evc"\n')
        models = load_models()
        loop = asyncio.new_event_loop()
        errors: list = []
        loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx))
        asyncio.set_event_loop(loop)
        daemon = Daemon(load_config(cfg_path, known_models=models.keys()), models)

        async def setup() -> None:   # the store's thread hands results to a running loop
            daemon._open_stores()
            daemon._build()
        loop.run_until_complete(setup())
        daemon.link = RecordingLink()
        requests = Requests(daemon)   # shared: diag over MQTT is once a minute per daemon
        try:
            yield loop, daemon, requests, errors
        finally:
            loop.run_until_complete(daemon.outbox.aclose())
            loop.close()
            asyncio.set_event_loop(None)


names = st.one_of(st.sampled_from(list(ALLOWED) + ["reboot", "shell", "REPOLL", "diag/reply", ""]),
                  st.text(max_size=80), st.text(min_size=MAX_NAME - 2, max_size=400))
topics = st.one_of(names.map(lambda n: f"{BASE}/{n}"), st.text(max_size=60),
                   st.sampled_from(["edgegw/other/cmd/repoll", BASE, BASE + "/", "edgegw/fz/cmd2/repoll"]))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2 ** 70), 2 ** 70) | st.floats(allow_nan=False) | st.text(max_size=200),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=20), inner, max_size=5),
    max_leaves=20)
bodies = st.fixed_dictionaries({}, optional={
    "id": json_values | st.text(min_size=100, max_size=200), "device": st.sampled_from(["fm-01", "fm-02", "nosuch"])
    | json_values, "controller": json_values, "x": json_values})
payloads = st.one_of(
    st.binary(max_size=MAX_PAYLOAD + 64),
    bodies.map(lambda b: json.dumps(b).encode()),
    st.tuples(bodies, st.sampled_from(["utf-16", "gbk", "utf-8-sig", "latin-1"])).map(
        lambda t: json.dumps(t[0], ensure_ascii=False).encode(t[1], errors="replace")),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.integers(MAX_PAYLOAD - 2, MAX_PAYLOAD + 2).map(lambda n: b'{"id": "' + b"x" * max(0, n - 10) + b'"}'),
    st.integers(1, 20_000).map(lambda n: b"[" * n + b"]" * n),
)


# Well-formed commands too, so that accepted ones (and the rate limit) are
# exercised as much as the refusals.
wellformed = st.one_of(
    st.tuples(st.just(f"{BASE}/repoll"), st.fixed_dictionaries(
        {"device": st.sampled_from(["fm-01", "fm-02", "nosuch"])}, optional={"id": st.text(max_size=20)})),
    st.tuples(st.just(f"{BASE}/doorlog"), st.fixed_dictionaries(
        {"controller": st.sampled_from(["door-1", "fm-01", ""])}, optional={"id": st.integers()})),
    st.tuples(st.just(f"{BASE}/diag"), st.fixed_dictionaries({}, optional={"id": st.text(max_size=20)})),
).map(lambda t: (t[0], json.dumps(t[1]).encode()))
messages = st.lists(st.one_of(st.tuples(topics, payloads), wellformed), min_size=1, max_size=25)


@settings(max_examples=200, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(messages)
def test_random_commands_never_escape_and_answer_only_the_allowlist(rig, messages):
    loop, daemon, requests, errors = rig
    link = daemon.link
    link.sent.clear()
    for rt in daemon.runtimes.values():
        rt.next_due = 1e12
    commands = Commands(requests, daemon)

    async def deliver():
        for topic, payload in messages:
            commands.on_message(topic, payload)   # must not raise
        tasks = list(commands.tasks)
        if tasks:
            await asyncio.wait(tasks, timeout=30)
        return tasks
    tasks = loop.run_until_complete(deliver())
    commands.close()

    assert errors == [], errors
    for t in tasks:
        assert t.done() and not t.cancelled() and t.exception() is None
    under = [t[len(BASE) + 1:] for t, _ in messages if t.startswith(BASE + "/") and "/" not in t[len(BASE) + 1:]]
    c = commands.counts
    assert c["received"] == len(under)
    assert c["received"] == c["ok"] + c["refused"] + c["rate_limited"]
    # Only repoll pokes a bus, and only for a device that exists.
    poked = [n for n, rt in daemon.runtimes.items() if rt.next_due == 0.0]
    if poked:
        assert "repoll" in under
    for topic, payload, qos, retain in link.sent:
        name = topic[len(BASE) + 1:-len("/reply")]
        assert topic == f"{BASE}/{name}/reply" and name in under and len(name) <= MAX_NAME
        assert qos == 1 and retain is False
        assert len(payload) <= MAX_REPLY
        body = json.loads(payload)
        assert set(body) <= REPLY_KEYS and body["cmd"] == name
        assert body["id"] is None or (isinstance(body["id"], (str, int)) and not isinstance(body["id"], bool)
                                      and len(str(body["id"])) <= MAX_ID)
        if body["ok"]:
            assert name in ALLOWED, body
        else:
            assert isinstance(body["error"], str) and len(body["error"]) < 1000
    assert len(link.sent) <= c["ok"] + c["refused"]


def test_token_bucket_gives_the_burst_then_the_rate():
    now = [100.0]
    b = TokenBucket(5.0, 10, clock=lambda: now[0])
    assert sum(b.take() for _ in range(50)) == 10          # a burst of 10, then nothing
    now[0] += 1.0
    assert sum(b.take() for _ in range(50)) == 5           # 5 a second after that
    now[0] += 3600.0
    assert sum(b.take() for _ in range(50)) == 10          # an hour's quiet saves no more than the burst
