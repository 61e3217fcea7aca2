/*
 * mlp_controller: a small MLP controller (Wasm agent ABI v1).
 *
 *     h = relu(b1 + x W1)     x: 8 observations, W1: 8 x 16
 *     a = b2 + h W2           W2: 16 x 2, a: 2 actions
 *
 * relu(z) = z if z > 0 else 0 (so -0.0 and NaN give +0.0). Sums run in a
 * fixed order, bias first: acc = b[j]; acc += x[0]*W[0][j]; acc += x[1]*W[1][j]; ...
 * which edgeswarm.edge.policy.reference.mlp_controller_numpy repeats, so
 * both give the same float32 bits.
 *
 * Configuration (es_init), 712 bytes of little-endian float32, row-major:
 *     W1 (8 x 16), b1 (16), W2 (16 x 2), b2 (2)        = 178 floats
 * Any other length is refused (es_init returns 1); es_step fails (returns 2)
 * until a configuration has been accepted. No state.
 *
 * SIMD: four agents per f32x4 (one lane per agent, observations transposed),
 * weights pre-splatted at es_init; every lane still sums in the order above.
 */
#include "edgeswarm.h"

#include <wasm_simd128.h>

#define OBS 8
#define HID 16
#define ACT 2
#define CONFIG_FLOATS (OBS * HID + HID + HID * ACT + ACT)

ES_DESCRIBE("{\"name\": \"mlp_controller\", \"obs_dim\": 8, \"state_dim\": 0, \"act_dim\": 2}")

/* Every weight splatted to all four lanes (one lane per agent). */
static v128_t w1s[OBS][HID];
static v128_t b1s[HID];
static v128_t w2s[HID][ACT];
static v128_t b2s[ACT];
static int configured;

static float load_f32(const uint8_t *p) {
    float f;
    __builtin_memcpy(&f, p, sizeof f); /* wasm is little-endian, like the blob */
    return f;
}

ES_EXPORT(es_init) int32_t es_init(const uint8_t *cfg, int32_t cfg_len) {
    if (cfg_len != (int32_t)(CONFIG_FLOATS * sizeof(float))) return 1;
    for (int i = 0; i < OBS; i++)
        for (int j = 0; j < HID; j++, cfg += 4) w1s[i][j] = wasm_f32x4_splat(load_f32(cfg));
    for (int j = 0; j < HID; j++, cfg += 4) b1s[j] = wasm_f32x4_splat(load_f32(cfg));
    for (int j = 0; j < HID; j++)
        for (int k = 0; k < ACT; k++, cfg += 4) w2s[j][k] = wasm_f32x4_splat(load_f32(cfg));
    for (int k = 0; k < ACT; k++, cfg += 4) b2s[k] = wasm_f32x4_splat(load_f32(cfg));
    configured = 1;
    return 0;
}

/* Four agents: rows = 4 x 8 observations, out = 4 x 2 actions. */
static void mlp4(const float *rows, float *out) {
    /* transpose: x[i] = observation i of agents 0..3 */
    v128_t x[OBS];
    for (int half = 0; half < 2; half++) {
        const v128_t r0 = wasm_v128_load(rows + 4 * half);
        const v128_t r1 = wasm_v128_load(rows + 8 + 4 * half);
        const v128_t r2 = wasm_v128_load(rows + 16 + 4 * half);
        const v128_t r3 = wasm_v128_load(rows + 24 + 4 * half);
        const v128_t t0 = wasm_i32x4_shuffle(r0, r1, 0, 4, 1, 5);
        const v128_t t1 = wasm_i32x4_shuffle(r2, r3, 0, 4, 1, 5);
        const v128_t t2 = wasm_i32x4_shuffle(r0, r1, 2, 6, 3, 7);
        const v128_t t3 = wasm_i32x4_shuffle(r2, r3, 2, 6, 3, 7);
        x[4 * half + 0] = wasm_i32x4_shuffle(t0, t1, 0, 1, 4, 5);
        x[4 * half + 1] = wasm_i32x4_shuffle(t0, t1, 2, 3, 6, 7);
        x[4 * half + 2] = wasm_i32x4_shuffle(t2, t3, 0, 1, 4, 5);
        x[4 * half + 3] = wasm_i32x4_shuffle(t2, t3, 2, 3, 6, 7);
    }
    const v128_t zero = wasm_f32x4_splat(0.0f);
    v128_t a0 = b2s[0], a1 = b2s[1];
    for (int j = 0; j < HID; j++) {
        v128_t h = b1s[j];
        for (int i = 0; i < OBS; i++) h = wasm_f32x4_add(h, wasm_f32x4_mul(x[i], w1s[i][j]));
        h = wasm_f32x4_pmax(zero, h); /* relu: (0 < h) ? h : 0 */
        a0 = wasm_f32x4_add(a0, wasm_f32x4_mul(h, w2s[j][0]));
        a1 = wasm_f32x4_add(a1, wasm_f32x4_mul(h, w2s[j][1]));
    }
    wasm_v128_store(out, wasm_i32x4_shuffle(a0, a1, 0, 4, 1, 5));
    wasm_v128_store(out + 4, wasm_i32x4_shuffle(a0, a1, 2, 6, 3, 7));
}

ES_EXPORT(es_step) int32_t es_step(int32_t n, const float *obs, float *state, float *act) {
    (void)state;
    if (n < 0) return 1;
    if (!configured) return 2;
    int32_t r = 0;
    for (; r + 4 <= n; r += 4) mlp4(obs + OBS * r, act + ACT * r);
    if (r < n) { /* 1-3 agents left: pad to four with zero rows, store only theirs */
        float rows[4 * OBS] __attribute__((aligned(16))) = {0};
        float out[4 * ACT] __attribute__((aligned(16)));
        const int32_t left = n - r;
        __builtin_memcpy(rows, obs + OBS * r, (size_t)left * OBS * sizeof(float));
        mlp4(rows, out);
        __builtin_memcpy(act + ACT * r, out, (size_t)left * ACT * sizeof(float));
    }
    return 0;
}
