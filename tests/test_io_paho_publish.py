"""paho's PUBLISH decoding, fast for packets without properties, equal to paho's own."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt import _packet
from paho.mqtt import properties as paho_properties
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.exception import MalformedPacket
from paho.mqtt.packettypes import PacketTypes

from edgeswarm.edge.io import paho_publish

MQTT_V5, MQTT_V311 = MQTTProtocolVersion.MQTTv5, MQTTProtocolVersion.MQTTv311
Properties: Any = paho_properties.Properties  # untyped in paho

paho_publish.install()
FAST: Any = _packet.decode_publish
PAHO: Any = paho_publish._original


def _packet_bytes(topic: bytes, mid: int | None, properties: bytes, payload: bytes) -> bytearray:
    head = len(topic).to_bytes(2, "big") + topic
    if mid is not None:
        head += mid.to_bytes(2, "big")
    return bytearray(head + properties + payload)


def _same(a: Any, b: Any) -> None:
    assert (a.dup, a.qos, a.retain, a.topic, a.mid, a.payload) == (
        b.dup,
        b.qos,
        b.retain,
        b.topic,
        b.mid,
        b.payload,
    )
    assert type(a.payload) is type(b.payload)
    assert (a.properties is None) == (b.properties is None)
    if a.properties is not None and b.properties is not None:
        assert a.properties.packetType == b.properties.packetType
        assert a.properties.json() == b.properties.json()
        assert a.properties.pack() == b.properties.pack()


def test_the_fast_decoding_is_the_one_paho_calls() -> None:
    assert paho_publish.installed()
    assert paho_publish.install()  # again: nothing changes
    assert _packet.decode_publish is FAST is not PAHO


@given(
    qos=st.integers(0, 2),
    flags=st.integers(0, 15),
    topic=st.binary(max_size=40),
    mid=st.integers(0, 65535),
    payload=st.binary(max_size=200),
    protocol=st.sampled_from([MQTT_V5, MQTT_V311]),
)
def test_a_publish_without_properties_decodes_as_paho_decodes_it(
    qos: int, flags: int, topic: bytes, mid: int, payload: bytes, protocol: MQTTProtocolVersion
) -> None:
    header = 0x30 | (flags & 0x09) | (qos << 1)
    props = b"\x00" if protocol == MQTT_V5 else b""
    packet = _packet_bytes(topic, mid if qos else None, props, payload)
    try:
        expected = PAHO(header, bytearray(packet), protocol)
    except MalformedPacket:
        with pytest.raises(MalformedPacket):
            FAST(header, bytearray(packet), protocol)
        return
    _same(FAST(header, packet, protocol), expected)


@given(
    qos=st.integers(0, 2),
    expiry=st.integers(0, 2**32 - 1),
    content_type=st.text(st.characters(min_codepoint=0x20, max_codepoint=0xD7FF), max_size=20),
    payload=st.binary(max_size=100),
)
def test_a_publish_with_properties_is_paho_s_own(
    qos: int, expiry: int, content_type: str, payload: bytes
) -> None:
    properties = Properties(PacketTypes.PUBLISH)
    properties.MessageExpiryInterval = expiry
    properties.ContentType = content_type
    packet = _packet_bytes(b"plant/obs/7", 9 if qos else None, properties.pack(), payload)
    decoded = FAST(0x30 | (qos << 1), packet, MQTT_V5)
    _same(decoded, PAHO(0x30 | (qos << 1), bytearray(packet), MQTT_V5))
    assert decoded.properties is not None
    assert decoded.properties.MessageExpiryInterval == expiry


@pytest.mark.parametrize(
    "packet",
    [b"", b"\x00", b"\x00\x09plant", b"\xff\xff\x00", b"\x00\x01a"],
    ids=["empty", "half a length", "topic cut short", "length past the end", "no properties"],
)
def test_a_damaged_publish_is_refused_as_paho_refuses_it(packet: bytes) -> None:
    with pytest.raises(MalformedPacket):
        PAHO(0x30, bytearray(packet), MQTT_V5)
    with pytest.raises(MalformedPacket):
        FAST(0x30, bytearray(packet), MQTT_V5)


def test_each_message_gets_its_own_properties() -> None:
    packet = _packet_bytes(b"plant/obs/1", None, b"\x00", b"[1]")
    first, second = FAST(0x30, packet, MQTT_V5), FAST(0x30, packet, MQTT_V5)
    assert first.properties is not second.properties
    first.properties.ContentType = "application/json"  # a consumer writing to one
    assert not hasattr(second.properties, "ContentType")
    assert second.properties.json() == {}
