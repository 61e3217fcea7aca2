/*
 * wasm_simd128.h for the host: the WebAssembly SIMD128 intrinsics a shipped policy
 * uses, spelled with clang's portable vector extensions, so the same C source
 * builds for the host CPU (edgeswarm/agents_wasm/native.py: the benchmark's
 * native ceiling). Only the native build puts this directory on the include path;
 * Wasm builds use clang's own header.
 *
 * Each intrinsic does exactly the IEEE operation its Wasm instruction does (lane
 * by lane, no fusion: build with -ffp-contract=off), so a policy's native and
 * Wasm builds agree bit for bit on finite inputs. Add an intrinsic here when a
 * shipped policy needs it; an unknown one is a compile error, never a guess.
 */
#ifndef EDGESWARM_NATIVE_WASM_SIMD128_H
#define EDGESWARM_NATIVE_WASM_SIMD128_H

#include <stdint.h>
#include <string.h>

typedef int32_t v128_t __attribute__((vector_size(16), aligned(16)));
typedef float es_f32x4_ __attribute__((vector_size(16), aligned(16)));
typedef int32_t es_i32x4_ __attribute__((vector_size(16), aligned(16)));

#define ES_SIMD_ static inline __attribute__((always_inline, unused))

ES_SIMD_ v128_t wasm_v128_load(const void *mem) {
    v128_t v;
    memcpy(&v, mem, sizeof v);
    return v;
}

ES_SIMD_ void wasm_v128_store(void *mem, v128_t a) { memcpy(mem, &a, sizeof a); }

ES_SIMD_ v128_t wasm_v128_load64_zero(const void *mem) {
    int64_t low;
    memcpy(&low, mem, sizeof low);
    v128_t v = {0, 0, 0, 0};
    memcpy(&v, &low, sizeof low);
    return v;
}

/* lane must be a constant 0 or 1 (the 64-bit half to store) */
#define wasm_v128_store64_lane(mem, a, lane)                                  \
    do {                                                                      \
        const v128_t es_lane_v_ = (a);                                        \
        memcpy((mem), (const char *)&es_lane_v_ + 8 * (lane), sizeof(int64_t)); \
    } while (0)

ES_SIMD_ v128_t wasm_f32x4_splat(float x) { return (v128_t)(es_f32x4_){x, x, x, x}; }

ES_SIMD_ v128_t wasm_f32x4_add(v128_t a, v128_t b) { return (v128_t)((es_f32x4_)a + (es_f32x4_)b); }
ES_SIMD_ v128_t wasm_f32x4_sub(v128_t a, v128_t b) { return (v128_t)((es_f32x4_)a - (es_f32x4_)b); }
ES_SIMD_ v128_t wasm_f32x4_mul(v128_t a, v128_t b) { return (v128_t)((es_f32x4_)a * (es_f32x4_)b); }
ES_SIMD_ v128_t wasm_f32x4_div(v128_t a, v128_t b) { return (v128_t)((es_f32x4_)a / (es_f32x4_)b); }

ES_SIMD_ v128_t wasm_f32x4_sqrt(v128_t a) {
    return (v128_t)__builtin_elementwise_sqrt((es_f32x4_)a);
}

/* all ones in the lanes where a > b (ordered), zero elsewhere */
ES_SIMD_ v128_t wasm_f32x4_gt(v128_t a, v128_t b) { return (v128_t)((es_f32x4_)a > (es_f32x4_)b); }

ES_SIMD_ v128_t wasm_v128_bitselect(v128_t a, v128_t b, v128_t mask) {
    return (a & mask) | (b & ~mask);
}

ES_SIMD_ int wasm_v128_any_true(v128_t a) { return (a[0] | a[1] | a[2] | a[3]) != 0; }

#define wasm_i32x4_shuffle(a, b, c0, c1, c2, c3) \
    ((v128_t)__builtin_shufflevector((es_i32x4_)(a), (es_i32x4_)(b), c0, c1, c2, c3))

#endif /* EDGESWARM_NATIVE_WASM_SIMD128_H */
