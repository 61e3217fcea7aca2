;; boids: the flocking policy as an edgeswarm agent module, Wasm agent ABI v1,
;; hand-written in WAT (the C version is flocking.c). See ../ABI.md.
;; No imports, no configuration (es_init accepts and ignores any blob).
;;
;; Per agent (obs row: vx vy coh_x coh_y align_x align_y avoid_x avoid_y):
;;   a = WC*coh + WA*(align - v) + WO*avoid
;;   if a.a > MAX*MAX: a *= MAX / sqrt(a.a)
;;   s = 0.5*s + 0.5*a ; action = s
;; Two agents per iteration: one f32x4 holds (ax0, ay0, ax1, ay1).
;;
;; The constants must equal edgeswarm/edge/policies.py; they are exported as
;; globals so the test suite checks that they do.
(module
  (memory (export "memory") 1)

  ;; The descriptor, at offset 16; es_describe returns (16 << 32) | its length.
  (data (i32.const 16) "{\"name\": \"boids\", \"obs_dim\": 8, \"state_dim\": 2, \"act_dim\": 2}")

  ;; Bump allocator cursor. Address 0 is never handed out (0 means failure).
  (global $heap (mut i32) (i32.const 1024))

  (global (export "boids_cohesion_weight") f32 (f32.const 0.05))
  (global (export "boids_alignment_weight") f32 (f32.const 0.2))
  (global (export "boids_avoidance_weight") f32 (f32.const 4.0))
  (global (export "boids_max_accel") f32 (f32.const 1.0))
  (global (export "boids_smoothing") f32 (f32.const 0.5))

  (func (export "es_abi_version") (result i32) (i32.const 1))
  (func (export "es_describe") (result i64) (i64.const 68719476797)) ;; (16 << 32) | 61
  (func (export "es_init") (param $cfg i32) (param $len i32) (result i32) (i32.const 0))

  ;; es_alloc(bytes) -> 16-byte aligned pointer, or 0 on failure.
  ;; Grows memory when needed; blocks stay below 2 GiB so pointers are
  ;; positive i32. Nothing is ever freed.
  (func (export "es_alloc") (param $bytes i32) (result i32)
    (local $start i64) (local $end i64) (local $have i64)
    (if (i32.lt_s (local.get $bytes) (i32.const 0)) (then (return (i32.const 0))))
    (local.set $start
      (i64.and (i64.add (i64.extend_i32_u (global.get $heap)) (i64.const 15)) (i64.const -16)))
    (local.set $end (i64.add (local.get $start) (i64.extend_i32_u (local.get $bytes))))
    (if (i64.gt_u (local.get $end) (i64.const 0x80000000)) (then (return (i32.const 0))))
    (local.set $have (i64.shl (i64.extend_i32_u (memory.size)) (i64.const 16)))
    (if (i64.gt_u (local.get $end) (local.get $have))
      (then
        (if (i32.eq
              (memory.grow
                (i32.wrap_i64
                  (i64.shr_u
                    (i64.add (i64.sub (local.get $end) (local.get $have)) (i64.const 0xffff))
                    (i64.const 16))))
              (i32.const -1))
          (then (return (i32.const 0))))))
    (global.set $heap (i32.wrap_i64 (local.get $end)))
    (i32.wrap_i64 (local.get $start)))

  ;; Two agents at once. $a, $b: obs[0:4], obs[4:8] of agent 0; $c, $d: of
  ;; agent 1; $s: (sx0, sy0, sx1, sy1). Returns the new state (= actions).
  (func $boids2 (param $a v128) (param $b v128) (param $c v128) (param $d v128) (param $s v128)
    (result v128)
    (local $v v128) (local $coh v128) (local $align v128) (local $avoid v128)
    (local $acc v128) (local $sq v128) (local $mag2 v128) (local $scaled v128)
    ;; gather lanes: low halves -> (x0 y0 x1 y1) of v / align, high halves -> coh / avoid
    (local.set $v
      (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23 (local.get $a) (local.get $c)))
    (local.set $coh
      (i8x16.shuffle 8 9 10 11 12 13 14 15 24 25 26 27 28 29 30 31 (local.get $a) (local.get $c)))
    (local.set $align
      (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23 (local.get $b) (local.get $d)))
    (local.set $avoid
      (i8x16.shuffle 8 9 10 11 12 13 14 15 24 25 26 27 28 29 30 31 (local.get $b) (local.get $d)))
    ;; a = (WC*coh + WA*(align - v)) + WO*avoid
    (local.set $acc
      (f32x4.add
        (f32x4.add
          (f32x4.mul (v128.const f32x4 0.05 0.05 0.05 0.05) (local.get $coh))
          (f32x4.mul (v128.const f32x4 0.2 0.2 0.2 0.2)
                     (f32x4.sub (local.get $align) (local.get $v))))
        (f32x4.mul (v128.const f32x4 4.0 4.0 4.0 4.0) (local.get $avoid))))
    ;; mag2 = ax*ax + ay*ay in both lanes of each agent
    (local.set $sq (f32x4.mul (local.get $acc) (local.get $acc)))
    (local.set $mag2
      (f32x4.add (local.get $sq)
        (i8x16.shuffle 4 5 6 7 0 1 2 3 12 13 14 15 8 9 10 11 (local.get $sq) (local.get $sq))))
    ;; clamp: where mag2 > MAX*MAX, a *= MAX / sqrt(mag2)
    (local.set $scaled
      (f32x4.mul (local.get $acc)
        (f32x4.div (v128.const f32x4 1.0 1.0 1.0 1.0) (f32x4.sqrt (local.get $mag2)))))
    (local.set $acc
      (v128.bitselect (local.get $scaled) (local.get $acc)
        (f32x4.gt (local.get $mag2) (v128.const f32x4 1.0 1.0 1.0 1.0))))
    ;; s = 0.5*s + 0.5*a
    (f32x4.add
      (f32x4.mul (v128.const f32x4 0.5 0.5 0.5 0.5) (local.get $s))
      (f32x4.mul (v128.const f32x4 0.5 0.5 0.5 0.5) (local.get $acc))))

  ;; es_step(n, obs_ptr, state_ptr, act_ptr) -> 0 ok, 1 n < 0.
  (func (export "es_step")
    (param $n i32) (param $obs i32) (param $state i32) (param $act i32) (result i32)
    (local $pairs i32) (local $s v128)
    (if (i32.lt_s (local.get $n) (i32.const 0)) (then (return (i32.const 1))))
    (local.set $pairs (i32.shr_u (local.get $n) (i32.const 1)))
    (block $done
      (loop $next
        (br_if $done (i32.eqz (local.get $pairs)))
        (local.set $s
          (call $boids2
            (v128.load offset=0 (local.get $obs))
            (v128.load offset=16 (local.get $obs))
            (v128.load offset=32 (local.get $obs))
            (v128.load offset=48 (local.get $obs))
            (v128.load (local.get $state))))
        (v128.store (local.get $state) (local.get $s))
        (v128.store (local.get $act) (local.get $s))
        (local.set $obs (i32.add (local.get $obs) (i32.const 64)))
        (local.set $state (i32.add (local.get $state) (i32.const 16)))
        (local.set $act (i32.add (local.get $act) (i32.const 16)))
        (local.set $pairs (i32.sub (local.get $pairs) (i32.const 1)))
        (br $next)))
    ;; odd n: the last agent alone, lanes 2-3 zero and never stored
    (if (i32.and (local.get $n) (i32.const 1))
      (then
        (local.set $s
          (call $boids2
            (v128.load offset=0 (local.get $obs))
            (v128.load offset=16 (local.get $obs))
            (v128.const i32x4 0 0 0 0)
            (v128.const i32x4 0 0 0 0)
            (v128.load64_zero (local.get $state))))
        (v128.store64_lane 0 (local.get $state) (local.get $s))
        (v128.store64_lane 0 (local.get $act) (local.get $s))))
    (i32.const 0))
)
