"""Action streams: what an edge's policies did, tick by tick, and where two differ.

``edgeswarm edge --actions-out PATH`` writes one; ``edgeswarm replay`` compares two.
Each tick's record carries an XXH3-64 digest of its agent ids, actions and fresh mask,
so comparing is cheap and the first differing tick is then searched for its agent.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xxhash
from numpy.typing import NDArray

from edgeswarm.edge.agent_table import AgentTable
from edgeswarm.storage.recording import RecordingError, RecordingReader, RecordingWriter
from edgeswarm.wire.arrays import decode_array, encode_array

__all__ = [
    "ActionRecorder",
    "Difference",
    "array_field",
    "compare_actions",
    "tick_digest",
]

KIND = "actions"


def array_field(record: dict[str, Any], name: str, dtype: str, ndim: int) -> Any:
    """Array ``name`` of a recording's record; :class:`RecordingError` if it is not one."""
    try:
        return decode_array(record.get(name), dtype=dtype, ndim=ndim)
    except Exception as exc:
        raise RecordingError(f"recording field {name!r}: {exc}") from exc


def tick_digest(
    tick: int, ids: NDArray[np.uint32], actions: NDArray[np.float32], fresh: NDArray[np.uint8]
) -> int:
    """XXH3-64 of one tick's action stream (tick, ids, actions, fresh, as bytes)."""
    h = xxhash.xxh3_64()
    h.update(int(tick).to_bytes(8, "little", signed=True))
    for array in (ids, actions, fresh):
        h.update(np.ascontiguousarray(array).data)
    return h.intdigest()


class ActionRecorder:
    """Writes every tick's actions of an edge (after the policies, before the sink)."""

    def __init__(self, path: Path) -> None:
        self._writer = RecordingWriter(path, KIND)

    def write(self, tick: int, table: AgentTable) -> None:
        self._writer.write(
            {
                "tick": tick,
                "agent_ids": encode_array(table.ids, copy=True),
                "actions": encode_array(table.actions, copy=True),
                "fresh": encode_array(table.fresh, copy=True),
                "digest": tick_digest(tick, table.ids, table.actions, table.fresh),
            }
        )

    def close(self) -> None:
        self._writer.close()


@dataclass(frozen=True)
class Difference:
    """Where two action streams first differ."""

    index: int
    """Record number (0 = first tick recorded)."""
    tick: int | None
    agent_id: int | None
    """The first agent whose action (or fresh byte, or id) differs; None when the whole
    tick is missing from one stream."""
    what: str


@dataclass(frozen=True)
class Comparison:
    ticks: int
    """Ticks compared (identical before ``difference``)."""
    difference: Difference | None

    @property
    def identical(self) -> bool:
        return self.difference is None


def _columns(record: dict[str, Any]) -> tuple[Any, Any, Any]:
    return (
        array_field(record, "agent_ids", "<u4", 1),
        array_field(record, "actions", "<f4", 2),
        array_field(record, "fresh", "|u1", 1),
    )


def _first_difference(index: int, left: dict[str, Any], right: dict[str, Any]) -> Difference:
    tick = int(left["tick"])
    if left["tick"] != right["tick"]:
        return Difference(index, tick, None, f"tick {left['tick']} vs {right['tick']}")
    ids_a, act_a, fresh_a = _columns(left)
    ids_b, act_b, fresh_b = _columns(right)
    if ids_a.shape != ids_b.shape or act_a.shape != act_b.shape:
        return Difference(index, tick, None, f"shapes {act_a.shape} vs {act_b.shape}")
    rows = (
        (ids_a != ids_b)
        | (fresh_a != fresh_b)
        | np.any(act_a.view(np.uint32) != act_b.view(np.uint32), axis=1)
    )
    where = np.flatnonzero(rows)
    if where.size == 0:  # the digests differ and the columns do not: a damaged digest
        return Difference(index, tick, None, "digest differs, columns equal")
    row = int(where[0])
    return Difference(
        index,
        tick,
        int(ids_a[row]),
        f"actions {act_a[row].tolist()} vs {act_b[row].tolist()}, "
        f"fresh {int(fresh_a[row])} vs {int(fresh_b[row])} ({where.size} agents differ)",
    )


def compare_actions(left: Path, right: Path) -> Comparison:
    """Compare two action streams tick by tick; the first difference, if any."""
    with RecordingReader(left, KIND) as a, RecordingReader(right, KIND) as b:
        index = 0
        it_a, it_b = iter(a), iter(b)
        while True:
            ra, rb = next(it_a, None), next(it_b, None)
            if ra is None or rb is None:
                if ra is rb:
                    return Comparison(index, None)
                shorter = left if ra is None else right
                tick = (rb if ra is None else ra)["tick"]  # type: ignore[index]
                return Comparison(
                    index, Difference(index, int(tick), None, f"{shorter} ends before it")
                )
            if ra.get("digest") != rb.get("digest"):
                return Comparison(index, _first_difference(index, ra, rb))
            index += 1
