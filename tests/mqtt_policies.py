"""A WAT policy that asks for the fresh mask (obs_dim 9 = the table's 8 + the mask):
action 0 = the mask column, action 1 = observation column 0."""

from __future__ import annotations

from .wasm_fixtures import policy_wat

MASK_ECHO = policy_wat(
    """(func (export "es_step") (param $n i32) (param $obs i32) (param $state i32)
        (param $act i32) (result i32)
      (local $i i32)
      (block $done (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (f32.store (i32.add (local.get $act) (i32.mul (local.get $i) (i32.const 8)))
          (f32.load (i32.add (local.get $obs)
            (i32.add (i32.mul (local.get $i) (i32.const 36)) (i32.const 32)))))
        (f32.store (i32.add (local.get $act)
            (i32.add (i32.mul (local.get $i) (i32.const 8)) (i32.const 4)))
          (f32.load (i32.add (local.get $obs) (i32.mul (local.get $i) (i32.const 36)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
      (i32.const 0))""",
    name="mask_echo",
    descriptor={"obs_dim": 9, "state_dim": 0, "act_dim": 2},
    memory_pages=2,
)
