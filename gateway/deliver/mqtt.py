"""Thin adapter around paho-mqtt 2.x (CallbackAPIVersion.VERSION2).

paho keeps unacknowledged QoS 1 messages in RAM only, so durability is the
outbox's job; this module only moves bytes. Each connection gets a fresh paho
client: when a connection drops, whatever paho still held is forgotten and the
outbox hands the unacknowledged messages out again (same seq), so there is one
retransmission path, not two.

paho's socket is driven by the asyncio loop itself (its external-loop hooks:
add_reader, a write at the loop's next turn or add_writer when the socket
is full, loop_misc once a second), not by a thread of its
own: a publish is written at the loop's next turn with the rest of its
batch, with no thread to wake per message and no hop back per PUBACK, and
every callback runs on the loop. Only the blocking connect (TCP, TLS
handshake) runs in an executor thread; the socket hooks it fires from there
are handed to the loop.
"""
from __future__ import annotations

import asyncio
import logging
import random
import ssl
import threading
from collections.abc import Callable

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway.site.config import MqttCfg
from gateway.site.ticks import sleep_to_tick

log = logging.getLogger(__name__)

CONNACK_TIMEOUT_S = 15.0
MISC_S = 1.0   # keep-alive pings and the wait for PINGRESP (paho's loop_misc)
BACKOFF_MIN_S = 1.0
BACKOFF_MAX_S = 60.0


_ACKED = ReasonCode(PacketTypes.PUBACK, "Success")
_NO_PROPERTIES = Properties(PacketTypes.PUBACK)


def fast_puback(client) -> bool:
    """Read MQTT 3.1.1 PUBACKs ourselves. paho 2.2 decodes each into a new
    ReasonCode and Properties object, which 3.1.1 has neither of: at 500
    messages a second that was a fifth of the loop's CPU per message. A
    3.1.1 PUBACK is two bytes, the packet id; anything else (MQTT 5, a
    malformed packet) goes paho's own way. Installed only where paho has
    the internals this relies on (tests/integration/test_mqtt_puback.py);
    returns whether it was."""
    need = ("_handle_pubackcomp", "_do_on_publish", "_in_packet", "_out_messages", "_out_message_mutex",
            "_protocol")
    if not all(hasattr(client, n) for n in need):
        return False
    paho_way = client._handle_pubackcomp
    published = client._do_on_publish

    def handle(cmd):
        packet = client._in_packet.get("packet")
        if cmd != "PUBACK" or client._protocol != paho.MQTTv311 \
                or not isinstance(packet, (bytes, bytearray)) or len(packet) != 2:
            return paho_way(cmd)
        mid = (packet[0] << 8) | packet[1]
        with client._out_message_mutex:
            if mid in client._out_messages:   # paho informs once, as its own handler does
                return published(mid, _ACKED, _NO_PROPERTIES)
        return paho.MQTT_ERR_SUCCESS

    client._handle_pubackcomp = handle
    return True


class MqttLink:
    def __init__(self, cfg: MqttCfg, *, will: Callable[[], tuple[str, bytes]],
                 on_up: Callable[[], None], on_down: Callable[[], None],
                 on_ack: Callable[[int], None],
                 on_message: Callable[[str, bytes], None] | None = None,
                 subscriptions: tuple[str, ...] = ()) -> None:
        self.cfg = cfg
        self.will = will
        self.on_up, self.on_down, self.on_ack = on_up, on_down, on_ack
        self.on_message = on_message
        self.subscriptions = subscriptions
        self.connected = False
        self.connects = 0
        self.last_error: str | None = None
        self._client: paho.Client | None = None
        self._session = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._up = asyncio.Event()
        self._down = asyncio.Event()
        self._stopping = False

    # -- publishing (asyncio thread) ---------------------------------------

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> int | None:
        """Hand a message to paho; returns its mid, or None if not connected."""
        client = self._client
        if client is None or not self.connected:
            return None
        info = client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            return None
        return info.mid

    # -- connection management ---------------------------------------------

    def _make_client(self) -> paho.Client:
        c = self.cfg
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=c.client_id,
                             clean_session=True, protocol=paho.MQTTv311)
        # Our own window bounds what is in flight; let paho send all of it.
        client.max_inflight_messages_set(0)
        client.max_queued_messages_set(0)
        if c.username is not None:
            client.username_pw_set(c.username, c.password)
        if c.tls is not None:
            client.tls_set(ca_certs=str(c.tls.ca_file),
                           certfile=str(c.tls.cert_file) if c.tls.cert_file else None,
                           keyfile=str(c.tls.key_file) if c.tls.key_file else None,
                           cert_reqs=ssl.CERT_REQUIRED)
            client.tls_insecure_set(c.tls.insecure)
        topic, payload = self.will()
        client.will_set(topic, payload, qos=1, retain=True)
        session = self._session
        client.on_connect = lambda cl, ud, flags, rc, props: self._on_loop(
            self._connected, session, rc)
        client.on_disconnect = lambda cl, ud, flags, rc, props: self._on_loop(
            self._disconnected, session, rc)
        client.on_publish = lambda cl, ud, mid, rc, props: self._on_loop(
            self._acked, session, mid)
        if self.on_message is not None:
            client.on_message = lambda cl, ud, msg: self._on_loop(
                self._message, session, msg.topic, msg.payload)
        client.on_socket_open = lambda cl, ud, sock: self._on_loop(self._watch, cl, sock)
        client.on_socket_close = lambda cl, ud, sock: self._on_loop(self._unwatch, sock)
        client.on_socket_register_write = lambda cl, ud, sock: self._on_loop(self._want_write, cl, sock)
        client.on_socket_unregister_write = lambda cl, ud, sock: self._on_loop(self._wrote, sock)
        fast_puback(client)
        return client

    def _on_loop(self, fn, *args) -> None:
        """Run fn now when on the loop (every paho call after connect), else
        hand it to the loop (the socket hooks of a connect in the executor)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if threading.get_ident() == self._loop_thread:
            fn(*args)
            return
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            pass  # loop closing during shutdown

    # -- the socket, on the loop ---------------------------------------------

    def _watch(self, client: paho.Client, sock) -> None:
        if client.socket() is sock:   # not one already closed again
            self._loop.add_reader(sock, self._read, client, sock)

    def _unwatch(self, sock) -> None:
        for remove in (self._loop.remove_reader, self._loop.remove_writer):
            try:
                remove(sock)
            except (ValueError, OSError):
                pass   # the descriptor is already closed

    def _want_write(self, client: paho.Client, sock) -> None:
        # Write on the loop's next turn instead of waiting to hear that the
        # socket is writable, which it nearly always is: per publish that was
        # two epoll_ctl calls and a turn of the loop. What the socket does not
        # take waits for it to be writable.
        if client.socket() is sock:
            self._loop.call_soon(self._write_soon, client, sock)

    def _write_soon(self, client: paho.Client, sock) -> None:
        if client.socket() is not sock or sock.fileno() < 0:
            return      # dropped meanwhile (_drop wrote what it had to)
        client.loop_write()
        if client.want_write() and client.socket() is sock:
            self._loop.add_writer(sock, client.loop_write)

    def _wrote(self, sock) -> None:
        try:
            self._loop.remove_writer(sock)
        except (ValueError, OSError):
            pass

    @staticmethod
    def _read(client: paho.Client, sock) -> None:
        client.loop_read()
        # TLS decrypts whole records: bytes already decrypted wait in the SSL
        # object, where the selector cannot see them.
        while isinstance(sock, ssl.SSLSocket) and client.socket() is sock and sock.pending():
            client.loop_read()

    async def _misc(self, client: paho.Client) -> None:
        while client.socket() is not None:
            client.loop_misc()
            await sleep_to_tick(MISC_S)   # shares the loop-lag sampler's wake-up

    def _connected(self, session: int, rc) -> None:
        if session != self._session:
            return
        if rc.is_failure:
            self.last_error = f"broker refused the connection: {rc}"
            log.warning("mqtt: %s", self.last_error)
            self._down.set()
            return
        self.connected = True
        self.connects += 1
        self.last_error = None
        for topic in self.subscriptions:
            self._client.subscribe(topic, qos=1)
        log.info("mqtt: connected to %s:%d", self.cfg.host, self.cfg.port)
        self._up.set()
        self.on_up()

    def _disconnected(self, session: int, rc) -> None:
        if session != self._session:
            return
        was = self.connected
        self.connected = False
        if was:
            log.warning("mqtt: connection lost (%s)", rc)
            self.on_down()
        self._down.set()

    def _acked(self, session: int, mid: int) -> None:
        if session == self._session:
            self.on_ack(mid)

    def _message(self, session: int, topic: str, payload: bytes) -> None:
        if session == self._session and self.on_message is not None:
            self.on_message(topic, payload)

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        backoff = BACKOFF_MIN_S
        while not self._stopping:
            self._session += 1
            self._up.clear()
            self._down.clear()
            client = self._make_client()
            self._client = client
            misc = None
            try:
                await self._loop.run_in_executor(
                    None, client.connect, self.cfg.host, self.cfg.port, self.cfg.keepalive)
                misc = self._loop.create_task(self._misc(client), name="mqtt-misc")
                await asyncio.wait_for(self._wait_either(), CONNACK_TIMEOUT_S)
            except (OSError, ssl.SSLError, TimeoutError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("mqtt: cannot connect to %s:%d: %s", self.cfg.host, self.cfg.port,
                            self.last_error)
            if self.connected:
                backoff = BACKOFF_MIN_S
                await self._down.wait()
            if misc is not None:
                misc.cancel()
            self._drop(client)
            if self._stopping:
                break
            # Jitter so a thousand sites do not reconnect in lockstep after a
            # broker restart.
            await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _wait_either(self) -> None:
        up = asyncio.ensure_future(self._up.wait())
        down = asyncio.ensure_future(self._down.wait())
        try:
            await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            up.cancel()
            down.cancel()

    def _drop(self, client: paho.Client) -> None:
        was = self.connected
        self.connected = False
        self._session += 1  # late callbacks of this client are ignored from now on
        try:
            client.disconnect()
            client.loop_write()   # the DISCONNECT goes out now: nothing drives this client any more
        except Exception:  # noqa: BLE001 - the socket may already be gone
            pass
        sock = client.socket()
        if sock is not None:
            self._unwatch(sock)
            sock.close()
        if was:
            self.on_down()
        if self._client is client:
            self._client = None

    async def stop(self, last: tuple[str, bytes] | None = None, timeout: float = 3.0) -> None:
        """Clean shutdown: optionally publish a last retained message (the
        offline status: a clean disconnect does not fire the Last Will)."""
        self._stopping = True
        client = self._client
        if client is not None and self.connected and last is not None:
            info = client.publish(last[0], last[1], qos=1, retain=True)
            loop = asyncio.get_running_loop()
            try:
                await asyncio.wait_for(loop.run_in_executor(None, info.wait_for_publish, timeout),
                                       timeout + 0.5)
            except (TimeoutError, RuntimeError, ValueError):
                pass
        if client is not None:
            self._drop(client)
        self._down.set()
