"""Where an agent falls in a rollout's share: a stable point in [0, 1) per agent id.

xxHash64 of the agent id (8 bytes, little-endian, seed 0), divided by 2**64:
the same on every gateway and every run, uniform, and monotone in the share
(raising a stage from 10 % to 50 % only adds agents). Placement
(``edgeswarm/placement/``) hashes agent ids the same way; when it lands,
:func:`share_point` becomes a call to it, so that a rollout's share and the
ring agree on what an agent's hash is.
"""

from __future__ import annotations

import xxhash

_SPAN = float(1 << 64)


def share_point(agent_id: int) -> float:
    """The agent's place in [0, 1): it runs the new version while this is below the share."""
    digest = xxhash.xxh64_intdigest(int(agent_id).to_bytes(8, "little", signed=False))
    return digest / _SPAN
