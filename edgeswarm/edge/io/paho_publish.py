"""paho-mqtt's PUBLISH decoding without a full ``Properties`` object per message that has none.

paho (2.1, 2.2) builds a ``Properties`` object for every MQTT 5 PUBLISH it receives,
and that constructor fills a 27-name table and a 27-entry dict of lists (with a
``list.index`` per entry), then ``unpack`` clears all 27 names with ``hasattr``:
about half of paho's cost per message, and enough garbage to run a collection every
few hundred messages. Sensors send plain PUBLISH packets without properties, so
under ``mqtt_loop`` the edge spent ~35 µs of its ~90 µs per message there.

:func:`install` replaces ``paho.mqtt._packet.decode_publish`` (the one function
paho's client calls for a PUBLISH) with one that answers a PUBLISH whose property
length is zero itself, with an empty ``Properties`` that shares the schema tables
of one made once (paho only reads them), and hands every other packet — with
properties, truncated, malformed — to paho's own function. The result is the same
``PublishPacket`` paho would return (``tests/test_io_paho_publish.py`` compares
them over generated packets). Where paho's module does not look as expected (a
release that moved it), nothing is replaced.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["install", "installed"]

logger = logging.getLogger("edgeswarm.edge.io.mqtt")

_MQTT_V5 = 5
_original: Any = None


def installed() -> bool:
    """Whether paho's ``decode_publish`` is the fast one."""
    return _original is not None


def install() -> bool:
    """Replace paho's PUBLISH decoding (once; later calls do nothing). Returns whether
    the fast decoding is in place."""
    global _original
    if _original is not None:
        return True
    try:
        from paho.mqtt import _packet
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        original = _packet.decode_publish
        publish_packet = _packet.PublishPacket
        fields = publish_packet._fields
    except (ImportError, AttributeError):  # a paho that moved these: keep its own
        fields = None
    if fields != ("dup", "qos", "retain", "topic", "mid", "properties", "payload"):
        logger.info("paho-mqtt's PUBLISH decoding left as it is (its internals moved)")
        return False
    properties_class: Any = Properties  # untyped in paho
    schema = properties_class(PacketTypes.PUBLISH).__dict__
    new_properties = Properties.__new__

    def decode_publish(header: int, packet: bytes | bytearray, protocol: Any) -> Any:
        qos = (header & 0x06) >> 1
        if protocol == _MQTT_V5 and qos < 3 and len(packet) >= 2:
            topic_end = 2 + ((packet[0] << 8) | packet[1])
            props_at = topic_end + (2 if qos else 0)
            if len(packet) > props_at and packet[props_at] == 0:  # property length 0
                properties = new_properties(Properties)
                properties.__dict__.update(schema)
                return publish_packet(
                    dup=(header & 0x08) != 0,
                    qos=qos,
                    retain=(header & 0x01) != 0,
                    topic=bytes(packet[2:topic_end]),
                    mid=((packet[topic_end] << 8) | packet[topic_end + 1]) if qos else 0,
                    properties=properties,
                    payload=bytes(packet[props_at + 1 :]),
                )
        return original(header, packet, protocol)

    _packet.decode_publish = decode_publish
    _original = original
    return True
