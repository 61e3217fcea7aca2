"""What the gateway answers a peer that authenticated: its WELCOME."""

from __future__ import annotations

import uuid

from edgeswarm.wire import (
    FEATURE_HEAVY,
    FEATURE_PLACEMENT,
    FEATURE_REGISTRY,
    FEATURES,
    Hello,
    Role,
    Welcome,
)

from .config import GatewayConfig

__all__ = ["welcome_for"]


def welcome_for(hello: Hello, config: GatewayConfig, *, credit: int, resume_seq: int) -> Welcome:
    """The WELCOME for ``hello``: the features both speak (protocol, section 9.1), the
    gateway's limits, the edge's ``credit`` and ``resume_seq``, the heavy lane's
    window for an edge that asked for it and the placement lease for a placement edge.
    Feature ``registry`` is for peer gateways only."""
    features = tuple(
        f
        for f in hello.features
        if f in FEATURES and (f != FEATURE_REGISTRY or hello.role is Role.GATEWAY)
    )
    heavy_edge = FEATURE_HEAVY in features and hello.role is Role.EDGE
    placed_edge = FEATURE_PLACEMENT in features and hello.role is Role.EDGE
    lease = config.lease
    return Welcome(
        version=hello.version,
        session_id=uuid.uuid4().hex,
        gateway_id=config.gateway_id,
        max_frame_bytes=config.max_frame_bytes,
        max_batch_agents=config.max_batch_agents,
        credit=credit,
        resume_seq=resume_seq,
        features=features,
        infer_window=config.heavy.infer_window if heavy_edge else 0,
        lease_ms=lease.lease_ms if placed_edge else 0,
        lease_ticks=lease.ticks if placed_edge else 0,
    )
