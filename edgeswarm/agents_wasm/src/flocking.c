/*
 * flocking: the boids policy in C (Wasm agent ABI v1), two agents per f32x4.
 *
 * Identical, operation for operation, to edgeswarm.edge.policy.boids.boids_numpy
 * (and to boids.wat), so actions and state match the numpy reference bit for
 * bit. Per agent (obs row: vx vy coh_x coh_y align_x align_y avoid_x avoid_y):
 *
 *     a = (WC*coh + WA*(align - v)) + WO*avoid
 *     if a.a > MAX*MAX:  a *= MAX / sqrt(a.a)
 *     s = 0.5*s + 0.5*a;  action = s
 *
 * Built with -ffp-contract=off and no fast-math: no FMA, no reassociation.
 */
#include "edgeswarm.h"

#include <wasm_simd128.h>

/* Must equal edgeswarm/edge/policies.py (tests check the behaviour). */
#define WC 0.05f  /* COHESION_WEIGHT */
#define WA 0.2f   /* ALIGNMENT_WEIGHT */
#define WO 4.0f   /* AVOIDANCE_WEIGHT */
#define MAX 1.0f  /* MAX_ACCEL */
#define HALF 0.5f /* SMOOTHING */

ES_DESCRIBE("{\"name\": \"flocking\", \"obs_dim\": 8, \"state_dim\": 2, \"act_dim\": 2}")

ES_EXPORT(es_init) int32_t es_init(const uint8_t *cfg, int32_t cfg_len) {
    (void)cfg;
    (void)cfg_len; /* no configuration; any blob is accepted and ignored */
    return 0;
}

/* Two agents: a, b = obs[0:4], obs[4:8] of agent 0; c, d = of agent 1;
 * s = (sx0, sy0, sx1, sy1). Returns the new state (= the actions). */
static inline v128_t boids2(v128_t a, v128_t b, v128_t c, v128_t d, v128_t s) {
    const v128_t v = wasm_i32x4_shuffle(a, c, 0, 1, 4, 5);
    const v128_t coh = wasm_i32x4_shuffle(a, c, 2, 3, 6, 7);
    const v128_t align = wasm_i32x4_shuffle(b, d, 0, 1, 4, 5);
    const v128_t avoid = wasm_i32x4_shuffle(b, d, 2, 3, 6, 7);
    v128_t acc = wasm_f32x4_add(
        wasm_f32x4_add(wasm_f32x4_mul(wasm_f32x4_splat(WC), coh),
                       wasm_f32x4_mul(wasm_f32x4_splat(WA), wasm_f32x4_sub(align, v))),
        wasm_f32x4_mul(wasm_f32x4_splat(WO), avoid));
    /* mag2 = ax*ax + ay*ay, in both lanes of each agent (+ is commutative, so
     * the y lane's ay*ay + ax*ax is the same float) */
    const v128_t sq = wasm_f32x4_mul(acc, acc);
    const v128_t mag2 = wasm_f32x4_add(sq, wasm_i32x4_shuffle(sq, sq, 1, 0, 3, 2));
    const v128_t over = wasm_f32x4_gt(mag2, wasm_f32x4_splat(MAX * MAX));
    if (wasm_v128_any_true(over)) { /* rare: skip the sqrt and the division otherwise */
        const v128_t scale = wasm_f32x4_div(wasm_f32x4_splat(MAX), wasm_f32x4_sqrt(mag2));
        acc = wasm_v128_bitselect(wasm_f32x4_mul(acc, scale), acc, over);
    }
    return wasm_f32x4_add(wasm_f32x4_mul(s, wasm_f32x4_splat(HALF)),
                          wasm_f32x4_mul(wasm_f32x4_splat(HALF), acc));
}

ES_EXPORT(es_step) int32_t es_step(int32_t n, const float *obs, float *state, float *act) {
    if (n < 0) return 1;
    int32_t i = 0;
    for (; i + 2 <= n; i += 2) {
        const float *o = obs + 8 * i;
        const v128_t s = boids2(wasm_v128_load(o), wasm_v128_load(o + 4), wasm_v128_load(o + 8),
                                wasm_v128_load(o + 12), wasm_v128_load(state + 2 * i));
        wasm_v128_store(state + 2 * i, s);
        wasm_v128_store(act + 2 * i, s);
    }
    if (i < n) { /* odd n: the last agent alone; lanes 2-3 are zero and never stored */
        const float *o = obs + 8 * i;
        const v128_t zero = wasm_f32x4_splat(0.0f);
        const v128_t s = boids2(wasm_v128_load(o), wasm_v128_load(o + 4), zero, zero,
                                wasm_v128_load64_zero(state + 2 * i));
        wasm_v128_store64_lane(state + 2 * i, s, 0);
        wasm_v128_store64_lane(act + 2 * i, s, 0);
    }
    return 0;
}
