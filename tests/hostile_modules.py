"""Hostile policy modules, written from ``edgeswarm/agents_wasm/ABI.md`` as an attacker would.

One group per way issue 12 found to break the sandbox; each module is valid ABI v1
where it needs to be, so that only the attack itself is what the host must refuse or
survive. The ABI skeleton (memory, bump ``es_alloc``, descriptor at offset 16, the
strings of :data:`tests.wasm_fixtures.STRINGS`) comes from
:func:`tests.wasm_fixtures.policy_wat`; the attacks are hand-written WAT, or Wasm
binaries assembled here when WAT text would itself be the problem (the compile bomb).
"""

from __future__ import annotations

import struct

from tests.wasm_fixtures import ALL_IMPORTS, STRINGS, policy_wat

S = STRINGS

# -- 1. a descriptor that crashes the JSON parser ---------------------------------------------

DESCRIPTOR_BOMB = policy_wat(raw_descriptor="[" * 1000 + "]" * 1000)
"""2 KB of nesting: ``json.loads`` raises RecursionError (not a ValueError)."""

# -- 2. non-finite and out-of-bounds actions ---------------------------------------------------


def writes_actions(bits: int, *, name: str, descriptor: dict[str, object] | None = None) -> bytes:
    """Every action is the float32 with bit pattern ``bits``; es_step returns 0 (ok)."""
    return policy_wat(
        f"""(func (export "es_step") (param $n i32) (param $obs i32) (param $state i32)
          (param $act i32) (result i32) (local $at i32) (local $end i32)
          (local.set $at (local.get $act))
          (local.set $end (i32.add (local.get $act) (i32.shl (local.get $n) (i32.const 3))))
          (block $done (loop $next
            (br_if $done (i32.ge_u (local.get $at) (local.get $end)))
            (i32.store (local.get $at) (i32.const {bits}))
            (local.set $at (i32.add (local.get $at) (i32.const 4)))
            (br $next)))
          (i32.const 0))""",
        name=name,
        descriptor=descriptor,
    )


def f32_bits(value: float) -> int:
    return int(struct.unpack("<i", struct.pack("<f", value))[0])


NAN_ACTIONS = writes_actions(0x7FC0_0000, name="nan")
POS_INF_ACTIONS = writes_actions(f32_bits(float("inf")), name="pos_inf")
NEG_INF_ACTIONS = writes_actions(f32_bits(float("-inf")), name="neg_inf")
OUT_OF_BOUNDS_ACTIONS = writes_actions(
    f32_bits(2.0), name="too_strong", descriptor={"act_bounds": [-1.0, 1.0]}
)
"""Declares actions in [-1, 1], writes 2.0."""

# -- 3. host calls that stall a tick ------------------------------------------------------------

TIME_NS_STORM = policy_wat(
    """(func (export "es_step") (param $n i32) (param $obs i32) (param $state i32) (param $act i32)
      (result i32) (local $left i32)
      (local.set $left (i32.mul (local.get $n) (i32.const 60)))
      (block $done (loop $next
        (br_if $done (i32.eqz (local.get $left)))
        (drop (call $time_ns))
        (local.set $left (i32.sub (local.get $left) (i32.const 1)))
        (br $next)))
      (i32.const 0))""",
    name="time_storm",
    imports=ALL_IMPORTS,
)
"""Calls ``time_ns`` 60 times per agent: 1 200 fuel per agent at the old price of 20."""

FLAG_STORM = policy_wat(
    f"""(func (export "es_step") (param $n i32) (param $obs i32) (param $state i32) (param $act i32)
      (result i32)
      (loop $forever
        (drop (call $flag_get (i32.const {S["evade"]}) (i32.const 5)))
        (br $forever))
      (i32.const 0))""",
    name="flag_storm",
    descriptor={"flags": ["evade"]},
    imports=ALL_IMPORTS,
)
"""Calls ``flag_get`` until something stops it."""

SPIN = policy_wat(
    '(func (export "es_step") (param i32 i32 i32 i32) (result i32) (loop (br 0)) (i32.const 0))',
    name="spin",
)

# -- 4. a compile bomb ---------------------------------------------------------------------------


def _uleb(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _sleb(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        if (value == 0 and not byte & 0x40) or (value == -1 and byte & 0x40):
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


def _section(section_id: int, payload: bytes) -> bytes:
    return bytes([section_id]) + _uleb(len(payload)) + payload


def compile_bomb(functions: int = 300_000) -> bytes:
    """A valid Wasm binary of ``functions`` tiny distinct functions (~10 bytes each).

    300 000 of them are 3 MB, well under any sane size limit, yet compiling them
    takes gigabytes and seconds.
    """
    types = _section(1, _uleb(1) + b"\x60\x00\x01\x7f")  # () -> i32
    declared = _section(3, _uleb(functions) + b"\x00" * functions)
    bodies = bytearray(_uleb(functions))
    for index in range(functions):
        body = b"\x00\x41" + _sleb((index * 7919) & 0x3FFF_FFFF) + b"\x0b"  # i32.const k
        bodies += _uleb(len(body)) + body
    return b"\0asm\x01\0\0\0" + types + declared + _section(10, bytes(bodies))


# -- 5. a length that wraps at 32 bits -----------------------------------------------------------

MODEL_INFER_WRAP = policy_wat(
    f"""(func (export "es_step") (param $n i32) (param $obs i32) (param $state i32) (param $act i32)
      (result i32)
      ;; n = 2**30 rows of 8 f32: 2**35 bytes, which is 0 modulo 2**32
      (if (i32.ne (call $model_infer (i32.const {S["anomaly"]}) (i32.const 7) (local.get $obs)
                        (i32.const 0x40000000) (local.get $act))
                  (i32.const -2))
        (then unreachable))
      (i32.const 0))""",
    name="wrap",
    descriptor={"models": ["anomaly"]},
    imports=ALL_IMPORTS,
)
"""Traps unless ``model_infer`` answers -2 (bad shape or pointers), as ABI.md promises."""

# -- 6. shared state the document refuses ---------------------------------------------------------

SHARED_STATE_ABUSE = policy_wat(
    f"""(func (export "es_step") (param $n i32) (param $obs i32) (param $state i32) (param $act i32)
      (result i32)
      ;; an empty set item must be refused (-2), not reported added
      (if (i32.ne (call $set_add (i32.const {S["seen"]}) (i32.const 4)
                                 (i32.const {S["item"]}) (i32.const 0))
                  (i32.const -2))
        (then unreachable))
      ;; "hits\\00" (5 bytes) is not a declared key
      (if (i32.ne (call $counter_add (i32.const {S["hits"]}) (i32.const 5) (i64.const 1))
                  (i32.const -1))
        (then unreachable))
      ;; the declared key works
      (if (i32.ne (call $counter_add (i32.const {S["hits"]}) (i32.const 4) (i64.const 1))
                  (i32.const 0))
        (then unreachable))
      (i32.const 0))""",
    name="state_abuse",
    descriptor={"counters": ["hits"], "sets": ["seen"]},
    imports=ALL_IMPORTS,
)
"""Traps unless refused updates come back as error codes; adds 1 to ``hits`` per step."""


def declares(kind: str, key: str) -> bytes:
    """A policy declaring shared-state ``key`` under ``kind`` (counters, sets, flags)."""
    return policy_wat(name="declares", descriptor={kind: [key]})


# -- 7. features ABI v1 does not allow -------------------------------------------------------------

_STEP_HEAD = '(func (export "es_step") (param $n i32) (param i32 i32 i32) (result i32)'

FEATURE_MODULES: dict[str, bytes] = {
    "relaxed SIMD": policy_wat(
        f"""{_STEP_HEAD}
          (drop (f32x4.relaxed_madd (v128.const f32x4 1 2 3 4) (v128.const f32x4 1 1 1 1)
                                    (v128.const f32x4 0 0 0 0)))
          (i32.const 0))""",
        name="relaxed",
    ),
    "threads (shared memory, atomics)": policy_wat(
        f"""{_STEP_HEAD} (drop (i32.atomic.rmw.add (i32.const 0) (i32.const 1))) (i32.const 0))""",
        name="threads",
        memory="1 256 shared",
    ),
    "memory64": b'(module (memory (export "memory") i64 1))',
    "multiple memories": policy_wat(name="two_memories", extra="(memory $second 1)"),
    "tail calls": policy_wat(
        f"{_STEP_HEAD} (return_call $zero))",
        name="tail",
        extra="(func $zero (result i32) (i32.const 0))",
    ),
    "exception handling": policy_wat(
        name="throws", extra="(tag $oops) (func $raise (throw $oops))"
    ),
    "garbage collection (GC)": policy_wat(
        name="gc",
        extra="(type $box (struct (field i32))) "
        "(func $make (result (ref $box)) (struct.new $box (i32.const 1)))",
    ),
    "typed function references": policy_wat(
        name="funcref",
        extra="(type $t (func)) (func $target) (elem declare func $target) "
        "(func $via_ref (call_ref $t (ref.func $target)))",
    ),
    "custom page sizes": b'(module (memory (export "memory") 1 (pagesize 1)))',
    "stack switching": policy_wat(
        name="continuations",
        extra="(type $f (func)) (type $c (cont $f)) (func $g) (elem declare func $g) "
        "(func $start (drop (cont.new $c (ref.func $g))))",
    ),
    "wide arithmetic": policy_wat(
        name="wide",
        extra="(func $add (param i64 i64 i64 i64) (result i64 i64) "
        "(i64.add128 (local.get 0) (local.get 1) (local.get 2) (local.get 3)))",
    ),
}
"""Feature name (as the host names it) -> a module that needs exactly that feature."""

NAN_PROBE = policy_wat(
    name="nan_probe",
    extra="""
  (func (export "sqrt_of_minus_one") (result i32)
    (i32.reinterpret_f32 (f32.sqrt (f32.const -1))))
  (func (export "nan_payload_plus_one") (result i32)
    (i32.reinterpret_f32 (f32.add (f32.reinterpret_i32 (i32.const 0x7fa00001)) (f32.const 1))))
  (func (export "f64_zero_div_zero_high") (result i32)
    (i32.wrap_i64 (i64.shr_u (i64.reinterpret_f64 (f64.div (f64.const 0) (f64.const 0)))
                             (i64.const 32))))""",
)
"""Exports NaN-producing float operations, returning the NaN's bits."""
