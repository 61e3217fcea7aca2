"""The edge: compute core (agent table, world, tick loop), uplink and spool.

The Wasm host is the wing ``edgeswarm.edge.policy``; ``runner`` is the edge
process, ``uplink`` its store-and-forward delivery over ``spool``,
``state_link`` its share of the swarm state, ``config`` its settings.
"""

from edgeswarm.edge.agent_table import AgentTable
from edgeswarm.edge.config import EdgeConfig
from edgeswarm.edge.world import FlockingWorld

__all__ = ["AgentTable", "EdgeConfig", "FlockingWorld"]
