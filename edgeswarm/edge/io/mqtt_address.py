"""``--io mqtt://[USER@]HOST:PORT/PREFIX?OPTIONS`` parsed into :class:`MqttOptions` (sans-I/O).

Options (query string; docs/io.md lists them with examples):

=================  =======================================================  =========
option             meaning                                                  default
=================  =======================================================  =========
``qos_obs``        QoS of the observation subscription (0, 1, 2)            0
``qos_act``        QoS of the published actions (0, 1, 2)                   0
``act``            ``agent`` (PREFIX/act/<id>) or ``batch`` (PREFIX/act/batch) ``agent``
``format``         per-agent action payloads: ``json`` or ``msgpack``       ``json``
``client_id``      MQTT client identifier                                   edgeswarm-<pid>
``out_queue``      bound of action messages waiting to be published         10000
``ca``             CA file to verify the broker (``mqtts://`` only)         system CAs
``cert``, ``key``  client certificate and key for TLS                       none
``backoff_max``    longest wait between reconnect attempts, seconds         5
``publish``        act for every ``fresh`` agent each tick, or only those   ``fresh``
                   ``updated`` (a new observation) since the last tick
=================  =======================================================  =========

The password is never put in the address: it is read from the environment
variable ``EDGESWARM_MQTT_PASSWORD`` (the user name is the URL's ``USER@``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from .base import IoError

__all__ = ["PASSWORD_ENV", "MqttOptions", "parse_mqtt_address"]

PASSWORD_ENV = "EDGESWARM_MQTT_PASSWORD"
_KNOWN = frozenset(
    {"qos_obs", "qos_act", "act", "format", "client_id", "out_queue", "ca", "cert",
     "key", "backoff_max", "publish"}
)  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class MqttOptions:
    host: str
    port: int
    prefix: str
    tls: bool = False
    username: str | None = None
    password: str | None = None
    client_id: str | None = None
    qos_obs: int = 0
    qos_act: int = 0
    act_batched: bool = False
    act_json: bool = True
    out_queue: int = 10_000
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    backoff_max_s: float = 5.0
    publish_updated: bool = False
    """Act only for agents with a new observation since the last tick (``publish=updated``)."""

    @property
    def obs_topic(self) -> str:
        return f"{self.prefix}/obs/#"

    @property
    def obs_root(self) -> str:
        return f"{self.prefix}/obs/"

    def act_topic(self, agent: int | str) -> str:
        return f"{self.prefix}/act/{agent}"


def _int(name: str, text: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise IoError(f"--io mqtt: {name}={text!r} must be an integer {low}..{high}")
    return value


def parse_mqtt_address(address: str, env: dict[str, str] | None = None) -> MqttOptions:
    """Parse an ``mqtt://`` or ``mqtts://`` address; :class:`IoError` names what is wrong."""
    env = dict(os.environ) if env is None else env
    url = urlsplit(address)
    if url.scheme not in ("mqtt", "mqtts"):
        raise IoError(f"--io {address!r}: expected mqtt://HOST:PORT/PREFIX or mqtts://...")
    if url.password is not None:
        raise IoError(f"--io mqtt: put the password in ${PASSWORD_ENV}, not in the address")
    try:
        port = url.port or (8883 if url.scheme == "mqtts" else 1883)
    except ValueError as exc:
        raise IoError(f"--io {address!r}: bad port ({exc})") from exc
    if not url.hostname:
        raise IoError(f"--io {address!r}: no broker host (mqtt://HOST:PORT/PREFIX)")
    prefix = url.path.strip("/")
    if not prefix or "+" in prefix or "#" in address:
        raise IoError(f"--io {address!r}: the topic PREFIX must be non-empty, without + or #")
    query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
    unknown = sorted(set(query) - _KNOWN)
    if unknown:
        known = ", ".join(sorted(_KNOWN))
        raise IoError(f"--io mqtt: unknown option(s) {', '.join(unknown)} (known: {known})")
    act = query.get("act", "agent")
    fmt = query.get("format", "json")
    publish = query.get("publish", "fresh")
    if act not in ("agent", "batch") or fmt not in ("json", "msgpack"):
        raise IoError("--io mqtt: act must be agent or batch, format json or msgpack")
    if publish not in ("fresh", "updated"):
        raise IoError("--io mqtt: publish must be fresh or updated")
    tls = url.scheme == "mqtts"
    paths = {name: Path(query[name]) for name in ("ca", "cert", "key") if name in query}
    if paths and not tls:
        raise IoError("--io mqtt: ca, cert and key need mqtts://")
    try:
        backoff_max = float(query.get("backoff_max", "5"))
    except ValueError:
        backoff_max = -1.0
    if not 0.01 <= backoff_max <= 600:
        raise IoError("--io mqtt: backoff_max must be 0.01..600 seconds")
    return MqttOptions(
        host=url.hostname,
        port=port,
        prefix=prefix,
        tls=tls,
        username=url.username,
        password=env.get(PASSWORD_ENV) or None,
        client_id=query.get("client_id") or None,
        qos_obs=_int("qos_obs", query.get("qos_obs", "0"), 0, 2),
        qos_act=_int("qos_act", query.get("qos_act", "0"), 0, 2),
        act_batched=act == "batch",
        act_json=fmt == "json",
        out_queue=_int("out_queue", query.get("out_queue", "10000"), 1, 10_000_000),
        ca=paths.get("ca"),
        cert=paths.get("cert"),
        key=paths.get("key"),
        backoff_max_s=backoff_max,
        publish_updated=publish == "updated",
    )
