"""MQTT 5 source and sink (``--io mqtt://HOST:PORT/PREFIX``) on ``aiomqtt``.

One client per edge subscribes to ``PREFIX/obs/#`` and publishes actions to
``PREFIX/act/...`` (:mod:`.mqtt_codec` has the payloads, :mod:`.mqtt_address`
the options). Received messages are decoded as they arrive into an
:class:`~.inbox.ObservationInbox` (one row per agent: bounded whatever the
sensors send); each tick copies it into the agent table. A wake-up of the event
loop reads up to :data:`READ_BURST` messages already waiting, so a tick takes
what arrived, not one message. Actions of the agents that are not stale are
encoded after the step into a bounded queue (the oldest dropped, counted, when
the broker is slower than the ticks); at QoS 0 the tick writes them to the
socket itself, at QoS 1 and 2 (and for what the socket did not take) a task
publishes them. The connection is re-made with exponential backoff (0.1 s doubling
up to ``backoff_max``) for as long as the edge runs; the edge never waits for
the broker. A malformed message is counted (``edgeswarm_edge_io_malformed_messages``
by reason), logged (rate-limited: the first of each reason, then one in 1000)
and dropped. paho decodes PUBLISH packets without properties through
:mod:`.paho_publish` (a third of its cost per message was a ``Properties`` object
built for each).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import select
import ssl
import time
from typing import Any

import aiomqtt
import numpy as np
import paho.mqtt.client as mqtt
from numpy.typing import NDArray
from paho.mqtt.enums import MQTTErrorCode

from edgeswarm.edge.agent_table import AgentTable

from . import paho_publish
from .base import AgentIO, IoContext
from .inbox import ObservationInbox
from .mqtt_address import MqttOptions, parse_mqtt_address
from .mqtt_codec import (
    MalformedPayloadError,
    decode_agent_observation,
    decode_batch,
    encode_action,
    encode_action_batch,
)

__all__ = ["MqttIO", "open_mqtt"]

logger = logging.getLogger("edgeswarm.edge.io.mqtt")
client_logger = logging.getLogger("edgeswarm.edge.io.mqtt.client")
"""aiomqtt's own log."""

_BACKOFF_FIRST_S = 0.1
_LOG_EVERY = 1000
_CHUNK = 1024
"""Most action messages handed to the client in one go."""
READ_BURST = 64
"""Most messages taken from the socket in one wake-up of the event loop."""


def _read_in_bursts(client: mqtt.Client) -> None:
    """Make each of the event loop's read wake-ups take up to :data:`READ_BURST` messages.

    aiomqtt's reader callback calls paho's ``loop_read``, which parses one packet, so every
    message cost a full event-loop iteration, and a tick following the data (``--tick-hz 0``)
    ran every message or two: under load the ticks took the CPU the messages needed and a
    backlog built up in the socket (``mqtt_loop`` p99 of hundreds of ms). Reading what is
    already in the socket (bounded, so a tick still comes every ``READ_BURST`` messages)
    lets one tick take everything that arrived, and costs one ``poll`` per message."""
    read_one = client.loop_read
    poller: tuple[int, select.poll] | None = None

    def more_to_read() -> bool:
        nonlocal poller
        sock = client.socket()
        if sock is None:
            return False
        pending = getattr(sock, "pending", None)  # TLS: bytes decrypted but not read
        if pending is not None and pending() > 0:
            return True
        fd = sock.fileno()
        if poller is None or poller[0] != fd:
            poller = (fd, select.poll())
            poller[1].register(fd, select.POLLIN)
        return bool(poller[1].poll(0))

    def loop_read(max_packets: int = 1) -> MQTTErrorCode:
        rc = read_one()
        for _ in range(READ_BURST - 1):
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or not more_to_read():
                break
            rc = read_one()
        return rc

    client.loop_read = loop_read  # type: ignore[method-assign]


def _drop_writer(paho: mqtt.Client) -> None:
    sock = paho.socket()
    if sock is not None and not paho.want_write():
        asyncio.get_running_loop().remove_writer(sock.fileno())


class MqttIO:
    """Source and sink on one MQTT connection."""

    def __init__(self, options: MqttOptions, context: IoContext, *, label: str = "mqtt") -> None:
        paho_publish.install()  # no Properties object built per PUBLISH that has none
        self.options = options
        self.context = context
        self.label = label
        self.inbox = ObservationInbox(
            agents=context.agents, first_id=context.first_agent_id, obs_dim=context.obs_dim
        )
        self.connects = 0
        self.connected = asyncio.Event()
        """Set while subscribed to the observation topics."""
        self.data = asyncio.Event()
        """Set when an observation arrived since the last :meth:`sense`."""
        self._outbox: collections.deque[tuple[str, bytes]] = collections.deque()
        self._outbox_ready = asyncio.Event()
        self._client: aiomqtt.Client | None = None
        self._paho: mqtt.Client | None = None
        """The connected client's paho client (QoS 0 actions are written from :meth:`act`)."""
        self._task: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()
        self._tick = 0
        """Ticks acted on (the ``tick`` of action payloads: the edge's tick number)."""
        self._out_dropped = 0
        self._updated = np.zeros(context.agents, dtype=np.bool_)
        self._malformed_seen: collections.Counter[str] = collections.Counter()
        self.first_message_at: float | None = None
        self.last_message_at = 0.0
        """When the first and the newest message arrived (``time.monotonic()``)."""
        m = context.metrics
        self._in = m.messages_in.labels(label)
        self._obs_in = m.observations_in.labels(label)
        self._out = m.messages_out.labels(label)
        self._dropped_out = m.dropped.labels(label, "out")
        self._stale = m.stale_agents.labels(label)
        self._stale_ticks = m.stale_agent_ticks.labels(label)
        self._depth_out = m.queue_depth.labels(label, "out")
        self._reconnects = m.reconnects.labels(label)
        self._connected_gauge = m.connected.labels(label)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"io-{self.label}")

    async def close(self) -> None:
        self._closing.set()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._connected_gauge.set(0)

    async def wait_data(self, timeout: float) -> None:
        """Return when an observation arrived since the last tick, or after ``timeout``."""
        if self.data.is_set():  # a yield, without wait_for's task and timer per tick
            await asyncio.sleep(0)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.data.wait(), timeout)

    # ------------------------------------------------------------------ source

    def sense(self, table: AgentTable, fresh: NDArray[np.uint8], now: float) -> None:
        self.data.clear()
        if self.options.publish_updated:
            self._updated = self.inbox.take_updated()
        stale = self.inbox.fill(table, fresh, now, self.context.obs_max_age_s)
        self._stale.set(stale)
        if stale:
            self._stale_ticks.inc(stale)

    # ------------------------------------------------------------------ sink

    def act(self, table: AgentTable, fresh: NDArray[np.uint8]) -> None:
        tick, self._tick = self._tick, self._tick + 1
        rows = np.flatnonzero(fresh & self._updated if self.options.publish_updated else fresh)
        if rows.size == 0:
            return
        options = self.options
        if options.act_batched:
            ids = table.ids[rows]
            self._enqueue(
                options.act_topic("batch"), encode_action_batch(tick, ids, table.actions[rows])
            )
        else:
            ids = table.ids[rows].tolist()
            actions = table.actions[rows]
            for agent, action in zip(ids, actions, strict=True):
                self._enqueue(
                    options.act_topic(agent), encode_action(tick, action, as_json=options.act_json)
                )
        if self.options.qos_act == 0:
            self._send_now()
        self._depth_out.set(len(self._outbox))
        if self._outbox:  # what the tick could not send: the publisher task's
            self._outbox_ready.set()

    def _send_now(self) -> None:
        """QoS 0: hand the queued actions to the socket within this tick.

        Through the publisher task an action waited ~5 event-loop iterations (the task's
        wake-up, a task per message, aiomqtt registering the writer thread-safely, the
        writer's wake-up), each behind a read burst of sensor messages: tens of ms under
        load. paho's own buffer holds at most what the socket did not take yet; the rest
        stays in the bounded outbox for the next tick (QoS 0: nothing to acknowledge;
        QoS 1 and 2 keep the publisher task, which requeues what a lost link had not
        acknowledged)."""
        paho = self._paho
        if paho is None or paho.want_write():
            return
        sent = 0
        while self._outbox:
            topic, payload = self._outbox[0]
            if paho.publish(topic, payload, qos=0).rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                break  # the link is going: the next connection sends it
            self._outbox.popleft()
            sent += 1
        if sent:
            self._out.inc(sent)
            with contextlib.suppress(OSError):  # a broken link ends the connection's loop
                paho.loop_write()
            # paho asked aiomqtt for a writer (added thread-safely, so after this write);
            # with nothing left to write it would wake every iteration: drop it after
            asyncio.get_running_loop().call_soon(_drop_writer, paho)

    def _enqueue(self, topic: str, payload: bytes) -> None:
        if len(self._outbox) >= self.options.out_queue:
            self._outbox.popleft()
            self._dropped_out.inc()
            if self._out_dropped % _LOG_EVERY == 0:
                logger.warning(
                    "actions dropped: the broker takes them slower than the edge ticks",
                    extra={"dropped": self._out_dropped + 1, "out_queue": self.options.out_queue},
                )
            self._out_dropped += 1
        self._outbox.append((topic, payload))

    # ------------------------------------------------------------------ connection

    def _client_for(self) -> aiomqtt.Client:
        o = self.options
        receive = self.receive

        class DecodingQueue(asyncio.Queue[aiomqtt.Message]):
            """Decodes each message into the inbox as it arrives: nothing waits in a queue
            (aiomqtt's iterator would cost a task per message), so ``client.messages``
            never yields and only tells the connection's loss."""

            def put_nowait(self, item: aiomqtt.Message) -> None:
                receive(str(item.topic), item.payload, time.monotonic())

        tls: ssl.SSLContext | None = None
        if o.tls:
            tls = ssl.create_default_context(cafile=str(o.ca) if o.ca else None)
            if o.cert is not None:
                tls.load_cert_chain(o.cert, o.key)
        client = aiomqtt.Client(
            o.host,
            o.port,
            username=o.username,
            password=o.password,
            identifier=o.client_id or f"edgeswarm-{os.getpid()}-{id(self):x}",
            protocol=aiomqtt.ProtocolVersion.V5,
            queue_type=DecodingQueue,
            tls_context=tls,
            timeout=5.0,
            logger=client_logger,
        )
        _read_in_bursts(client._client)
        return client

    async def _run(self) -> None:
        backoff = _BACKOFF_FIRST_S
        while not self._closing.is_set():
            try:
                async with self._client_for() as client:
                    self._client = client
                    self._paho = client._client
                    await client.subscribe(self.options.obs_topic, qos=self.options.qos_obs)
                    self.connects += 1
                    if self.connects > 1:
                        self._reconnects.inc()
                    backoff = _BACKOFF_FIRST_S
                    self.connected.set()
                    self._connected_gauge.set(1)
                    logger.info(
                        "connected to the MQTT broker",
                        extra={"broker": f"{self.options.host}:{self.options.port}",
                               "connects": self.connects},
                    )  # fmt: skip
                    publisher = asyncio.create_task(self._publish(client))
                    try:
                        # DecodingQueue took every message: only the connection's loss ends this
                        async for _ in client.messages:
                            pass
                    finally:
                        publisher.cancel()
                        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                            await publisher
            except aiomqtt.MqttError as exc:
                logger.warning(
                    "MQTT broker unreachable or lost; reconnecting",
                    extra={"broker": f"{self.options.host}:{self.options.port}",
                           "error": str(exc), "retry_s": backoff},
                )  # fmt: skip
            finally:
                self._client = None
                self._paho = None
                self.connected.clear()
                self._connected_gauge.set(0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), backoff)
            backoff = min(backoff * 2, self.options.backoff_max_s)

    async def _publish(self, client: aiomqtt.Client) -> None:
        qos = self.options.qos_act
        while True:
            await self._outbox_ready.wait()
            self._outbox_ready.clear()
            while self._outbox:
                # a chunk handed to the client at once (awaiting each message would cost a
                # loop iteration per message); a lost link requeues it (at least once)
                chunk = [self._outbox.popleft() for _ in range(min(len(self._outbox), _CHUNK))]
                try:
                    await asyncio.gather(
                        *(client.publish(topic, payload, qos=qos) for topic, payload in chunk)
                    )
                except aiomqtt.MqttError:
                    self._outbox.extendleft(reversed(chunk))
                    raise
                self._out.inc(len(chunk))
                self._depth_out.set(len(self._outbox))

    # ------------------------------------------------------------------ decoding

    def receive(self, topic: str, payload: Any, now: float) -> None:
        """Take one message (sans-I/O: called by the connection, and by tests)."""
        self._in.inc()
        self.last_message_at = now
        if self.first_message_at is None:
            self.first_message_at = now
        root = self.options.obs_root
        try:
            if not isinstance(payload, bytes | bytearray):
                raise MalformedPayloadError("decode", "payload is not bytes")
            if not topic.startswith(root):
                raise MalformedPayloadError("topic", f"topic {topic!r} outside {root}#")
            name = topic[len(root) :]
            if name == "batch":
                ids, obs, rewards = decode_batch(bytes(payload), self.inbox.obs_dim)
                rows, unknown = self.inbox.rows_of(ids)
                if unknown:
                    raise MalformedPayloadError(
                        "agent", f"{unknown} agent ids this edge does not serve"
                    )
                self.inbox.put_rows(rows, obs, rewards, now)
                self._obs_in.inc(rows.size)
            else:
                if not name.isdigit() or len(name) > 10:
                    raise MalformedPayloadError("topic", f"topic {topic!r}: not an agent id")
                row = int(name) - self.inbox.first_id
                if not 0 <= row < self.inbox.observations.shape[0]:
                    raise MalformedPayloadError("agent", f"agent {name} is not served by this edge")
                observation, reward = decode_agent_observation(bytes(payload), self.inbox.obs_dim)
                self.inbox.put_one(row, observation, reward, now)
                self._obs_in.inc()
        except MalformedPayloadError as exc:
            self._malformed(topic, exc)
            return
        self.data.set()

    def _malformed(self, topic: str, exc: MalformedPayloadError) -> None:
        self.context.metrics.malformed.labels(self.label, exc.reason).inc()
        seen = self._malformed_seen[exc.reason]
        self._malformed_seen[exc.reason] += 1
        if seen % _LOG_EVERY == 0:
            logger.warning(
                "malformed MQTT message dropped",
                extra={"topic": topic[:200], "reason": exc.reason, "error": str(exc)[:300],
                       "count": seen + 1},
            )  # fmt: skip


def open_mqtt(argument: str, context: IoContext) -> AgentIO:
    """``mqtt://HOST:PORT/PREFIX?...`` (``mqtts://`` with TLS)."""
    options = parse_mqtt_address(argument)
    io = MqttIO(options, context)
    return AgentIO("mqtt", io, io)
