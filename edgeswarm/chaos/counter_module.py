"""The module the rollout scenario publishes: an ABI v1 policy in WAT that counts its
own steps, so that a recorded action stream shows whether an agent kept its state.

``es_step`` adds 1 to ``state[0]`` and writes the count and its version marker as the
agent's two actions; the trapping version's ``es_step`` adds 1000 to every count, then
traps: the host must discard a faulting step's state writes, or the counts jump. Every
version has the same descriptor (the same state layout): it exports no ``es_migrate``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import wasmtime
from numpy.typing import NDArray

from edgeswarm.edge.io.actions_file import KIND, array_field
from edgeswarm.storage.recording import RecordingReader

DESCRIPTOR = json.dumps({"name": "counter", "obs_dim": 8, "state_dim": 2, "act_dim": 2})

_COUNTING_STEP = """(func (export "es_step") (param $n i32) (param $obs i32) (param $state i32)
    (param $act i32) (result i32)
    (local $i i32) (local $p i32) (local $c f32)
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $p (i32.add (local.get $state) (i32.shl (local.get $i) (i32.const 3))))
      (local.set $c (f32.add (f32.load (local.get $p)) (f32.const 1)))
      (f32.store (local.get $p) (local.get $c))
      (f32.store (i32.add (local.get $act) (i32.shl (local.get $i) (i32.const 3)))
        (local.get $c))
      (f32.store (i32.add (local.get $act) (i32.add (i32.shl (local.get $i) (i32.const 3))
        (i32.const 4))) (f32.const MARKER))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (i32.const 0))"""

_TRAPPING_STEP = """(func (export "es_step") (param $n i32) (param $obs i32) (param $state i32)
    (param $act i32) (result i32)
    (local $i i32) (local $p i32)
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $p (i32.add (local.get $state) (i32.shl (local.get $i) (i32.const 3))))
      (f32.store (local.get $p) (f32.add (f32.load (local.get $p)) (f32.const 1000)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    unreachable)"""

_MODULE = """(module
  (memory (export "memory") 1)
  (data (i32.const 16) "DESCRIPTOR")
  (global $heap (mut i32) (i32.const 4096))
  (func (export "es_alloc") (param $bytes i32) (result i32)
    (local $start i32) (local $end i32) (local $have i32)
    (if (i32.lt_s (local.get $bytes) (i32.const 0)) (then (return (i32.const 0))))
    (local.set $start (i32.and (i32.add (global.get $heap) (i32.const 15)) (i32.const -16)))
    (local.set $end (i32.add (local.get $start) (local.get $bytes)))
    (local.set $have (i32.shl (memory.size) (i32.const 16)))
    (if (i32.gt_u (local.get $end) (local.get $have))
      (then (if (i32.eq (memory.grow (i32.shr_u (i32.add (i32.sub (local.get $end)
                  (local.get $have)) (i32.const 0xffff)) (i32.const 16))) (i32.const -1))
              (then (return (i32.const 0))))))
    (global.set $heap (local.get $end))
    (local.get $start))
  (func (export "es_abi_version") (result i32) (i32.const 1))
  (func (export "es_describe") (result i64) (i64.const DESCRIBE))
  (func (export "es_init") (param i32 i32) (result i32) (i32.const 0))
  STEP
)"""


def counter_wasm(marker: float | None) -> bytes:
    """The counting module whose second action is ``marker``; None: the trapping one."""
    step = _TRAPPING_STEP if marker is None else _COUNTING_STEP.replace("MARKER", str(marker))
    text = (
        _MODULE.replace("DESCRIPTOR", DESCRIPTOR.replace('"', '\\"'))
        .replace("DESCRIBE", str((16 << 32) | len(DESCRIPTOR.encode())))
        .replace("STEP", step)
    )
    return bytes(wasmtime.wat2wasm(text))


def recorded_counts(
    actions_file: Path,
) -> tuple[NDArray[np.int64], NDArray[np.float32], NDArray[np.float32]]:
    """What an edge running the counter recorded (``--actions-out``): the ticks, the
    counts (ticks x agents) and the version markers (ticks x agents; 0 where the agent
    did not step: its slot was quarantined)."""
    ticks, count, marker = [], [], []
    with RecordingReader(actions_file, KIND) as reader:
        for record in reader:
            actions = array_field(record, "actions", "<f4", 2)
            ticks.append(int(record["tick"]))
            count.append(actions[:, 0].copy())
            marker.append(actions[:, 1].copy())
    return np.array(ticks, dtype=np.int64), np.array(count), np.array(marker)
