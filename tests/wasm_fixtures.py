"""ABI v1 policy modules written in WAT for the host tests (hostile and probing ones).

:func:`policy_wat` wraps a few lines of WAT in a complete v1 module: memory,
a bump ``es_alloc`` that grows memory, ``es_abi_version``, ``es_describe``
over a JSON descriptor placed at offset 16, and ``es_init``. Strings that
probes pass to host imports live at fixed offsets (:data:`STRINGS`).
"""

from __future__ import annotations

import json
from typing import Any

BOIDS_DIMS = {"obs_dim": 8, "state_dim": 2, "act_dim": 2}

STRINGS = {
    "hits": 2048,
    "seen": 2064,
    "evade": 2080,
    "anomaly": 2096,
    "nope": 2112,
    "item": 2128,
    "hello": 2144,
    "bad_utf8": 2160,
}
"""Offset of each string the probe modules' data segment holds (bad_utf8 is b"\\xff\\xfe")."""

_DATA = (
    "".join(
        f'(data (i32.const {offset}) "{text}")'
        for text, offset in STRINGS.items()
        if text != "bad_utf8"
    )
    + f'(data (i32.const {STRINGS["bad_utf8"]}) "\\ff\\fe")'
)

ALLOC = """
  (global $heap (mut i32) (i32.const 4096))
  (func (export "es_alloc") (param $bytes i32) (result i32)
    (local $start i32) (local $end i32) (local $have i32)
    (if (i32.lt_s (local.get $bytes) (i32.const 0)) (then (return (i32.const 0))))
    (local.set $start
      (i32.and (i32.add (global.get $heap) (i32.const 15)) (i32.const -16)))
    (local.set $end (i32.add (local.get $start) (local.get $bytes)))
    (local.set $have (i32.shl (memory.size) (i32.const 16)))
    (if (i32.gt_u (local.get $end) (local.get $have))
      (then
        (if (i32.eq (memory.grow
              (i32.shr_u (i32.add (i32.sub (local.get $end) (local.get $have))
                                  (i32.const 0xffff)) (i32.const 16)))
              (i32.const -1))
          (then (return (i32.const 0))))))
    (global.set $heap (local.get $end))
    (local.get $start))
"""

OK_STEP = '(func (export "es_step") (param i32 i32 i32 i32) (result i32) (i32.const 0))'
OK_INIT = '(func (export "es_init") (param i32 i32) (result i32) (i32.const 0))'


def _wat_string(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def policy_wat(
    step: str = OK_STEP,
    *,
    name: str = "fixture",
    descriptor: dict[str, Any] | None = None,
    raw_descriptor: str | None = None,
    imports: str = "",
    init: str = OK_INIT,
    version: int = 1,
    extra: str = "",
    memory_pages: int = 1,
    memory: str | None = None,
) -> bytes:
    """A complete ABI v1 module around ``step`` (an ``es_step`` export) as WAT bytes.

    ``memory`` replaces the memory's declaration after its export (default: the pages).
    """
    if raw_descriptor is None:
        raw_descriptor = json.dumps({"name": name, **BOIDS_DIMS, **(descriptor or {})})
    length = len(raw_descriptor.encode())
    return f"""(module
  {imports}
  (memory (export "memory") {memory if memory is not None else memory_pages})
  (data (i32.const 16) "{_wat_string(raw_descriptor)}")
  {_DATA}
  {ALLOC}
  (func (export "es_abi_version") (result i32) (i32.const {version}))
  (func (export "es_describe") (result i64) (i64.const {(16 << 32) | length}))
  {init}
  {step}
  {extra}
)""".encode()


TRAPPING = policy_wat(
    '(func (export "es_step") (param i32 i32 i32 i32) (result i32) unreachable)', name="trapper"
)
SPINNING = policy_wat(
    '(func (export "es_step") (param i32 i32 i32 i32) (result i32) (loop (br 0)) (i32.const 0))',
    name="spinner",
)
MEMORY_BOMB = policy_wat(
    """(func (export "es_step") (param i32 i32 i32 i32) (result i32)
      (block $full (loop $more
        (br_if $full (i32.eq (memory.grow (i32.const 16)) (i32.const -1)))
        (br $more)))
      (i32.store (i32.sub (i32.shl (memory.size) (i32.const 16)) (i32.const 2)) (i32.const 1))
      (i32.const 0))""",
    name="membomb",
)
WRONG_ABI = policy_wat(name="wrong_abi", version=3)
FORBIDDEN_IMPORT = policy_wat(
    name="wasi_user",
    imports='(import "wasi_snapshot_preview1" "fd_write" '
    "(func $fd_write (param i32 i32 i32 i32) (result i32)))",
)
MISTYPED_IMPORT = policy_wat(
    name="mistyped", imports='(import "es" "log" (func $log (param i32 i32)))'
)
MALFORMED = b"\0asm\x01\0\0\0\x01\x05garbage"
BAD_DESCRIPTOR = policy_wat(name="bad_desc", descriptor={"obs_dim": 0})
NOT_JSON_DESCRIPTOR = policy_wat(raw_descriptor="{name: nope")
STEP_FAILS = policy_wat(
    '(func (export "es_step") (param i32 i32 i32 i32) (result i32) (i32.const 7))',
    name="step_fails",
)
INIT_REFUSES = policy_wat(
    name="picky",
    init="""(func (export "es_init") (param $ptr i32) (param $len i32) (result i32)
      ;; accepts only the config "ok"
      (if (i32.ne (local.get $len) (i32.const 2)) (then (return (i32.const 5))))
      (if (i32.ne (i32.load16_u (local.get $ptr)) (i32.const 0x6b6f)) (then (return (i32.const 6))))
      (i32.const 0))""",
)

RANDOM_WALKER = policy_wat(
    """(func (export "es_step") (param $n i32) (param $obs i32) (param $state i32) (param $act i32)
      (result i32) (local $at i32) (local $end i32)
      (call $random_fill (local.get $act) (i32.shl (local.get $n) (i32.const 3)))
      ;; clear each float's top exponent bit: random, but always finite
      (local.set $at (local.get $act))
      (local.set $end (i32.add (local.get $act) (i32.shl (local.get $n) (i32.const 3))))
      (block $done (loop $next
        (br_if $done (i32.ge_u (local.get $at) (local.get $end)))
        (i32.store (local.get $at) (i32.and (i32.load (local.get $at)) (i32.const 0xBFFFFFFF)))
        (local.set $at (i32.add (local.get $at) (i32.const 4)))
        (br $next)))
      (i32.const 0))""",
    name="walker",
    imports='(import "es" "random_fill" (func $random_fill (param i32 i32)))',
)
"""Actions are random finite floats (2 per agent) from the policy's seeded generator."""

ALL_IMPORTS = """
  (import "es" "log" (func $log (param i32 i32 i32)))
  (import "es" "time_ns" (func $time_ns (result i64)))
  (import "es" "random_fill" (func $random_fill (param i32 i32)))
  (import "es" "counter_add" (func $counter_add (param i32 i32 i64) (result i32)))
  (import "es" "set_add" (func $set_add (param i32 i32 i32 i32) (result i32)))
  (import "es" "flag_get" (func $flag_get (param i32 i32) (result i32)))
  (import "es" "model_infer" (func $model_infer (param i32 i32 i32 i32 i32) (result i32)))
  (import "es" "model_dims" (func $model_dims (param i32 i32) (result i64)))
"""

PROBE_EXPORTS = """
  (func (export "probe_log") (param i32 i32 i32) (result i32)
    (call $log (local.get 0) (local.get 1) (local.get 2)) (i32.const 0))
  (func (export "probe_time_ns") (result i64) (call $time_ns))
  (func (export "probe_random_fill") (param i32 i32) (result i32)
    (call $random_fill (local.get 0) (local.get 1)) (i32.const 0))
  (func (export "probe_counter_add") (param i32 i32 i64) (result i32)
    (call $counter_add (local.get 0) (local.get 1) (local.get 2)))
  (func (export "probe_set_add") (param i32 i32 i32 i32) (result i32)
    (call $set_add (local.get 0) (local.get 1) (local.get 2) (local.get 3)))
  (func (export "probe_flag_get") (param i32 i32) (result i32)
    (call $flag_get (local.get 0) (local.get 1)))
  (func (export "probe_model_infer") (param i32 i32 i32 i32 i32) (result i32)
    (call $model_infer (local.get 0) (local.get 1) (local.get 2) (local.get 3) (local.get 4)))
  (func (export "probe_model_dims") (param i32 i32) (result i64)
    (call $model_dims (local.get 0) (local.get 1)))
"""

HEAVY_IMPORTS = """
  (import "es" "heavy_request" (func $heavy_request (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "es" "heavy_results"
    (func $heavy_results (param i32 i32 i32 i32 i32 i32 i32) (result i32)))
"""

HEAVY_PROBE_EXPORTS = """
  (func (export "probe_heavy_request") (param i32 i32 i32 i32 i32 i32) (result i32)
    (call $heavy_request (local.get 0) (local.get 1) (local.get 2) (local.get 3) (local.get 4)
                         (local.get 5)))
  (func (export "probe_heavy_results") (param i32 i32 i32 i32 i32 i32 i32) (result i32)
    (call $heavy_results (local.get 0) (local.get 1) (local.get 2) (local.get 3) (local.get 4)
                         (local.get 5) (local.get 6)))
"""

PROBE = policy_wat(
    name="probe",
    descriptor={"counters": ["hits"], "sets": ["seen"], "flags": ["evade"], "models": ["anomaly"]},
    imports=ALL_IMPORTS,
    extra=PROBE_EXPORTS,
)
"""Exports ``probe_<import>`` functions forwarding their arguments to each host import."""

EVERY_IMPORT_PROBE = policy_wat(
    name="every_import_probe",
    descriptor={
        "counters": ["hits"],
        "sets": ["seen"],
        "flags": ["evade"],
        "models": ["anomaly"],
        "heavy": ["anomaly"],
    },
    imports=ALL_IMPORTS + HEAVY_IMPORTS,
    extra=PROBE_EXPORTS + HEAVY_PROBE_EXPORTS,
)
"""The probe with the heavy lane's imports too: every "es" import, one export each."""

MODEL_USER = policy_wat(
    """(func (export "es_step") (param $n i32) (param $obs i32) (param $state i32) (param $act i32)
      (result i32)
      (i32.sub (i32.const 0)
        (call $model_infer (i32.const 2096) (i32.const 7) (local.get $obs) (local.get $n)
                           (local.get $act))))""",
    name="model_user",
    descriptor={"state_dim": 0, "act_dim": 1, "models": ["anomaly"]},
    imports=ALL_IMPORTS,
)
"""Actions are the anomaly model's scores of the observations (status -> es_step status)."""
