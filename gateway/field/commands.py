"""Commands over MQTT: a short allowlist, answered on a reply topic.

    request  <prefix>/<gw>/cmd/<name>          {"id": "c-17", ...arguments}
    reply    <prefix>/<gw>/cmd/<name>/reply    {"v", "seq", "ts", "ts_synced",
                                                "id": "c-17", "cmd": <name>, "ok": true, "result": {...}}
                                               {..., "ok": false, "error": "why"}

    repoll   {"device": "fm-01"}        poll the device as soon as the bus is free
    doorlog  {"controller": "door-1"}   fetch a door controller's log ("not configured"
                                        until door controllers are supported)
    diag     {}                         the `edgegw diag` result as JSON

Anything else is refused with a reason and logged. Whoever can publish on
the broker can send these, so none of them runs a process, writes outside
the state dir or changes the configuration: they only ask the daemon for
work it does anyway, sooner. Replies go out directly (QoS 1, not retained),
not through the outbox: an answer that arrives after a long outage answers
nobody. Their seq comes from the outbox like every other payload's.
"""
from __future__ import annotations

import asyncio
import json
import logging

from gateway.deliver import payloads

from .requests import RequestError, Requests

log = logging.getLogger(__name__)

MAX_PAYLOAD = 4096
MAX_ID = 128

# name -> the argument keys it takes (besides "id")
ALLOWED: dict[str, tuple[str, ...]] = {
    "repoll": ("device",),
    "doorlog": ("controller",),
    "diag": (),
}


class Refused(Exception):
    pass


class Commands:
    def __init__(self, requests: Requests, daemon) -> None:
        self.requests = requests
        self.daemon = daemon
        self.base = self.daemon.topics.cmd
        self.subscriptions = (f"{self.base}/+",)
        self.tasks: set[asyncio.Task] = set()

    def on_message(self, topic: str, payload: bytes) -> None:
        """From MqttLink, on the asyncio loop: hand the work to a task so the
        link's callback returns at once."""
        if not topic.startswith(self.base + "/"):
            return
        name = topic[len(self.base) + 1:]
        if "/" in name:
            return   # our own replies, or anything deeper: not a command
        task = asyncio.get_running_loop().create_task(self._handle(name, bytes(payload)))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _handle(self, name: str, payload: bytes) -> None:
        req_id = None
        try:
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
                raise Refused(f"{name} takes no {extra[0]!r} "
                              f"(takes: {', '.join(('id',) + ALLOWED[name])})")
            result = await self._run(name, body)
            log.info("mqtt command %s (id %s): ok", name, req_id)
            self._reply(name, {"id": req_id, "ok": True, "result": result})
        except Refused as exc:
            log.warning("mqtt command %r (id %s) refused: %s", name[:64], req_id, exc)
            self._reply(name, {"id": req_id, "ok": False, "error": str(exc)})
        except RequestError as exc:
            log.info("mqtt command %s (id %s): %s", name, req_id, exc.message)
            self._reply(name, {"id": req_id, "ok": False, "error": exc.message, "code": exc.code})
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a command must never take the daemon down
            log.exception("mqtt command %s (id %s) failed", name, req_id)
            self._reply(name, {"id": req_id, "ok": False, "error": f"{type(exc).__name__}: {exc}"})

    @staticmethod
    def _parse(payload: bytes) -> dict:
        if len(payload) > MAX_PAYLOAD:
            raise Refused(f"payload larger than {MAX_PAYLOAD} bytes")
        if not payload.strip():
            return {}
        try:
            body = json.loads(payload)
        except ValueError:
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
            return await c.run_diag()
        raise Refused(f"command {name!r} is not allowed")   # unreachable: ALLOWED is checked first

    def _reply(self, name: str, answer: dict) -> None:
        link, outbox = self.daemon.link, self.daemon.outbox
        topic = f"{self.base}/{name}/reply"
        if link is None or not link.connected:
            log.info("mqtt command %s: not connected, reply dropped", name[:64])
            return
        body = payloads.envelope()
        body["seq"] = outbox.reserve_seq() if outbox is not None else None
        body["cmd"] = name
        body.update(answer)
        link.publish(topic, payloads.dumps(body), qos=1, retain=False)
