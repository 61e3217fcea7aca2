"""Actions the gateway imposes (ACTIONS frames or datagrams), written into the agent table."""

from __future__ import annotations

import logging
from collections import deque

import numpy as np

from edgeswarm.wire import Actions

from .agent_table import AgentTable

__all__ = ["apply_gateway_actions"]

logger = logging.getLogger("edgeswarm.edge")


def apply_gateway_actions(table: AgentTable, queue: deque[Actions], *, ids_in_order: bool) -> int:
    """Take every queued ACTIONS and override the named agents' actions; the rows changed.

    ``ids_in_order``: the table's ids are ``first, first + 1, ...`` (a fixed ``--agents``
    range), so an id's row is ``id - first``; otherwise (``--placement``) ids are looked
    up. Ids the table does not hold and frames of the wrong width are ignored.
    """
    first = int(table.ids[0]) if len(table) else 0
    applied = 0
    while queue:
        actions = queue.popleft()
        if actions.actions.shape[1] != table.actions.shape[1]:
            logger.warning(
                "actions with the wrong width ignored",
                extra={"width": actions.actions.shape[1]},
            )
            continue
        rows = (
            actions.agent_ids.astype(np.int64) - first
            if ids_in_order
            else table.rows_of(actions.agent_ids)
        )
        valid = (rows >= 0) & (rows < len(table))
        table.actions[rows[valid]] = actions.actions[valid]
        applied += int(valid.sum())
    return applied
