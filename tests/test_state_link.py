"""The edge's StateLink refuses malformed state from its gateway and keeps its session.

The gateway here is a RawGateway (the real ``Session`` on the server side, over real
QUIC): a real gateway never sends garbage, so one speaking by hand stands in for a
broken or hostile one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeswarm.client.session import GatewayClient
from edgeswarm.edge.state_link import StateLink
from edgeswarm.identity import KeyPair
from edgeswarm.state import SwarmDocument
from edgeswarm.transport import quic
from edgeswarm.transport.tls import create_certificates
from edgeswarm.wire import (
    FEATURE_STATE,
    PROTOCOL_VERSION,
    ErrorCode,
    ErrorReceived,
    Hello,
    Role,
    StateSyncRequest,
    StateSyncRequested,
    StateUpdate,
    StateUpdateReceived,
)

from .gateway_harness import wait_until
from .raw_peer import RawGateway

pytestmark = pytest.mark.integration


async def test_malformed_state_from_the_gateway_is_refused_and_the_session_goes_on(
    tmp_path: Path,
) -> None:
    certs = create_certificates(tmp_path / "certs")
    served: list[RawGateway] = []

    def factory() -> RawGateway:
        served.append(RawGateway())
        return served[-1]

    stack = quic.default_stack()
    listener = await quic.serve(
        "127.0.0.1", 0, cert=certs.cert, key=certs.key, handler_factory=factory, stack=stack
    )
    key = KeyPair.generate()
    hello = Hello(
        version=PROTOCOL_VERSION,
        role=Role.EDGE,
        peer_id="edge-s",
        public_key=key.public_key,
        features=(FEATURE_STATE,),
    )
    try:
        with StateLink(tmp_path / "state", writer_id="edge-s", interval_s=0.02) as link:
            link.document.counter_add("g/mine", 5)
            before = link.document.snapshot()
            client = GatewayClient(hello, key)
            link.attach(client)
            async with quic.connect(
                "127.0.0.1", listener.port, ca_file=certs.ca, handler=client, stack=stack
            ):
                await client.wait_welcomed()
                [gateway] = served
                await gateway.wait_for(StateSyncRequested)  # the edge's sync request
                seen = len(gateway.events)

                gateway.send(StateUpdate(update=b"\x07 not a yrs update"))
                refused = await gateway.wait_for(ErrorReceived, after=seen)
                assert refused.error.code == ErrorCode.MALFORMED_UPDATE
                assert refused.error.message.startswith("malformed_update: ")
                assert link.updates_refused == 1
                assert link.document.snapshot() == before

                seen = len(gateway.events)
                gateway.send(StateSyncRequest(state_vector=b"\xff\xff\xff"))
                refused = await gateway.wait_for(ErrorReceived, after=seen)
                assert refused.error.code == ErrorCode.MALFORMED_STATE_VECTOR
                assert link.updates_refused == 2

                # the session goes on: a good sync request is answered, a good update merged
                seen = len(gateway.events)
                gateway.send(StateSyncRequest(state_vector=SwarmDocument("x").state_vector()))
                reply = await gateway.wait_for(StateUpdateReceived, after=seen)
                mirror = SwarmDocument("mirror")
                mirror.apply_update(reply.update)
                assert mirror.snapshot() == before
                other = SwarmDocument("elsewhere")
                other.counter_add("g/theirs", 7)
                gateway.send(StateUpdate(update=other.encode_update()))
                await wait_until(lambda: link.document.counter_value("g/theirs") == 7)
                assert link.updates_received == 1
                assert client.closed_reason is None
                client.close("done")
        # what was merged was also stored: a restart of the edge still has it
        with StateLink(tmp_path / "state", writer_id="edge-s") as again:
            assert again.document.snapshot()["counters"] == {"g/mine": 5, "g/theirs": 7}
    finally:
        listener.close()
