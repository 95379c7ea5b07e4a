"""Commands over MQTT: a short allowlist, answered on a reply topic.

    request  <prefix>/<gw>/cmd/<name>          {"id": "c-17", ...arguments}
    reply    <prefix>/<gw>/cmd/<name>/reply    {"v", "seq", "ts", "ts_synced",
                                                "id": "c-17", "cmd": <name>, "ok": true, "result": {...}}
                                               {..., "ok": false, "error": "why"}

    repoll   {"device": "fm-01"}        poll the device as soon as the bus is free
    doorlog  {"controller": "door-1"}   fetch a door controller's log ("not configured"
                                        on a site without door controllers)
    diag     {}                         a short self-test: verdict, each check's level
                                        and key (no paths, pids, user names, endpoints)

Anything else is refused with a reason and logged. Whoever can publish on
the broker can send these, so none of them runs a process, writes outside
the state dir or changes the configuration: they only ask the daemon for
work it does anyway, sooner. Replies go out directly (QoS 1, not retained),
not through the outbox: an answer that arrives after a long outage answers
nobody. Their seq comes from the outbox like every other payload's.

Bounds (docs/cli.md "Commands over MQTT"): a token bucket per gateway,
RATE_PER_S sustained and RATE_BURST at once, and at most RATE_BURST commands
running. A command beyond it is dropped before it is even parsed: counted,
logged at most once per REFUSAL_LOG_S, and not answered, since every reply
costs a seq (a synced write on the store's thread) and a publish, which is what a flood
would turn against the site.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time

from gateway.deliver import payloads

from .requests import RequestError, Requests

log = logging.getLogger(__name__)

MAX_PAYLOAD = 4096
MAX_ID = 128
MAX_NAME = 64          # longer names (and wildcards) are not echoed into a reply topic
MAX_REPLY = 32 * 1024  # bytes of a reply payload
RATE_PER_S = 5.0
RATE_BURST = 10
REFUSAL_LOG_S = 10.0

# name -> the argument keys it takes (besides "id")
ALLOWED: dict[str, tuple[str, ...]] = {
    "repoll": ("device",),
    "doorlog": ("controller",),
    "diag": (),
}


class Refused(Exception):
    pass


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up."""

    def __init__(self, rate: float, burst: int, clock=time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self.tokens = float(burst)
        self.at = clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


def _short(s: str) -> str:
    return s if len(s) <= MAX_NAME else s[:MAX_NAME] + "..."


class Commands:
    def __init__(self, requests: Requests, daemon) -> None:
        self.requests = requests
        self.daemon = daemon
        self.base = self.daemon.topics.cmd
        self.subscriptions = (f"{self.base}/+",)
        self.tasks: set[asyncio.Task] = set()
        self.bucket = TokenBucket(RATE_PER_S, RATE_BURST)
        # received = ok + refused + rate_limited + running
        self.counts = {"received": 0, "ok": 0, "refused": 0, "rate_limited": 0}
        self._unlogged = 0
        self._log_timer: asyncio.TimerHandle | None = None

    def on_message(self, topic: str, payload: bytes) -> None:
        """From MqttLink, on the asyncio loop: hand the work to a task so the
        link's callback returns at once. Over the rate limit nothing else
        happens: no parse, no task, no reply, no disk."""
        if not topic.startswith(self.base + "/"):
            return
        name = topic[len(self.base) + 1:]
        if "/" in name:
            return   # our own replies, or anything deeper: not a command
        self.counts["received"] += 1
        if len(self.tasks) >= RATE_BURST or not self.bucket.take():
            self.counts["rate_limited"] += 1
            self._note_limited()
            return
        task = asyncio.get_running_loop().create_task(self._handle(name, bytes(payload)))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _note_limited(self) -> None:
        # The first refusal is logged at once, then one summary per
        # REFUSAL_LOG_S while the flood lasts: a flood must not fill the journal.
        self._unlogged += 1
        if self._log_timer is None:
            log.warning("mqtt commands over the rate limit (%g a second, %d at once): "
                        "refused without a reply", RATE_PER_S, RATE_BURST)
            self._unlogged = 0
            self._log_timer = asyncio.get_running_loop().call_later(REFUSAL_LOG_S, self._log_limited)

    def _log_limited(self) -> None:
        self._log_timer = None
        if self._unlogged:
            log.warning("mqtt commands: %d more refused over the rate limit in %g s (%d since start)",
                        self._unlogged, REFUSAL_LOG_S, self.counts["rate_limited"])
            self._unlogged = 0
            self._log_timer = asyncio.get_running_loop().call_later(REFUSAL_LOG_S, self._log_limited)

    def close(self) -> None:
        if self._log_timer is not None:
            self._log_timer.cancel()
            self._log_timer = None

    async def _handle(self, name: str, payload: bytes) -> None:
        req_id = None
        try:
            if len(name) > MAX_NAME or not name.isprintable() or "+" in name or "#" in name:
                # Answering would echo it into a topic: refuse quietly.
                self.counts["refused"] += 1
                log.warning("mqtt command %r refused: not a command name", _short(name))
                return
            body = self._parse(payload)
            req_id = body.get("id")
            if req_id is not None and (isinstance(req_id, bool) or not isinstance(req_id, (str, int))
                                       or len(str(req_id)) > MAX_ID):
                req_id = None
                raise Refused(f"id must be a string or number of at most {MAX_ID} characters")
            if name not in ALLOWED:
                raise Refused(f"command {name!r} is not allowed (allowed: {', '.join(ALLOWED)})")
            extra = [k for k in body if k != "id" and k not in ALLOWED[name]]
            if extra:
                raise Refused(f"{name} takes no {_short(extra[0])!r} "
                              f"(takes: {', '.join(('id',) + ALLOWED[name])})")
            result = await self._run(name, body)
            self.counts["ok"] += 1
            log.info("mqtt command %s (id %s): ok", name, req_id)
            await self._reply(name, {"id": req_id, "ok": True, "result": result})
        except Refused as exc:
            self.counts["refused"] += 1
            log.warning("mqtt command %r (id %s) refused: %s", name, req_id, exc)
            await self._reply(name, {"id": req_id, "ok": False, "error": str(exc)})
        except RequestError as exc:
            self.counts["refused"] += 1
            log.info("mqtt command %s (id %s): %s", name, req_id, exc.message)
            await self._reply(name, {"id": req_id, "ok": False, "error": exc.message, "code": exc.code})
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a command must never take the daemon down
            self.counts["refused"] += 1
            log.exception("mqtt command %s (id %s) failed", name, req_id)
            await self._reply(name, {"id": req_id, "ok": False, "error": f"{type(exc).__name__}: {exc}"[:200]})

    @staticmethod
    def _parse(payload: bytes) -> dict:
        if len(payload) > MAX_PAYLOAD:
            raise Refused(f"payload larger than {MAX_PAYLOAD} bytes")
        if not payload.strip():
            return {}
        try:
            body = json.loads(payload)
        except (ValueError, RecursionError):
            raise Refused("payload is not JSON") from None
        if not isinstance(body, dict):
            raise Refused("payload must be a JSON object")
        return body

    async def _run(self, name: str, body: dict) -> dict:
        c = self.requests
        if name == "repoll":
            return await c.h_repoll({"device": body.get("device")}, None)
        if name == "doorlog":
            return await c.h_doorlog({"controller": body.get("controller")}, None)
        if name == "diag":
            return await c.run_mqtt_diag()
        raise Refused(f"command {name!r} is not allowed")   # unreachable: ALLOWED is checked first

    async def _reply(self, name: str, answer: dict) -> None:
        link = self.daemon.link
        topic = f"{self.base}/{name}/reply"
        if link is None or not link.connected:
            log.info("mqtt command %s: not connected, reply dropped", name)
            return
        body = payloads.envelope()
        body["seq"] = await self._reply_seq()
        body["cmd"] = name
        body.update(answer)
        data = payloads.dumps(body)
        if len(data) > MAX_REPLY:
            body.pop("result", None)
            body.update(ok=False, error=f"the reply would be {len(data)} bytes, over the {MAX_REPLY} limit",
                        code="too_large")
            data = payloads.dumps(body)
        link.publish(topic, data, qos=1, retain=False)

    async def _reply_seq(self) -> int | None:
        """The one place a reply takes its seq: recorded by the store's thread
        before the reply goes out (awaited, never a disk wait on the loop)."""
        outbox = self.daemon.outbox
        return await outbox.reserve_seq_async() if outbox is not None else None
