/*
 * edgeswarm.h — write an edgeswarm agent policy (Wasm agent ABI v1) in C.
 *
 * The contract is ../ABI.md; this header only spells it in C. A policy is one
 * translation unit, compiled without libc for wasm32 with the flags of build.py
 * (C_FLAGS; ABI.md, "Writing a policy in C"), in short:
 *
 *     python -m ziglang cc --target=wasm32-freestanding -mcpu=mvp -msimd128 \
 *         -mbulk-memory -O2 -ffp-contract=off -nostdlib -g0 -I../include \
 *         -Wl,--no-entry -Wl,--strip-all -o mine.wasm mine.c
 *
 * No -ffast-math and no FMA contraction: float results must be reproducible.
 *
 * Including this header defines, in that translation unit:
 *
 *   es_abi_version  exported, returns ES_EXPORTED_ABI_VERSION (default ES_ABI_VERSION)
 *   es_alloc        exported bump allocator (unless ES_NO_DEFAULT_ALLOC is defined)
 *   es_malloc       the same allocator for the policy's own use (returns a pointer)
 *
 * The policy itself provides:
 *
 *   ES_DESCRIBE("{\"name\": ...}")                            the descriptor (JSON literal)
 *   ES_EXPORT(es_init) int32_t es_init(const uint8_t *cfg, int32_t cfg_len)
 *   ES_EXPORT(es_step) int32_t es_step(int32_t n, const float *obs, float *state, float *act)
 *
 * and, optionally, to take over the state of a version with another state_dim:
 *
 *   ES_EXPORT(es_migrate) int32_t es_migrate(int32_t n, int32_t old_state_dim,
 *                                            const float *old_state, float *state)
 *
 * Host imports (module "es") are declared below as es_log, es_time_ns, ...; a
 * declaration the policy never calls does not become an import. Call them once
 * per batch, never per agent. Memory is exported as "memory" by the linker.
 *
 * Compiled for any other target than wasm32 (the benchmark's native build of a
 * policy, edgeswarm/agents_wasm/native.py), ES_EXPORT only makes a symbol visible,
 * the imports are plain declarations a native policy must not call, es_malloc
 * takes from a static ES_NATIVE_HEAP_BYTES arena and es_describe is meaningless.
 */
#ifndef EDGESWARM_H
#define EDGESWARM_H

#include <stddef.h>
#include <stdint.h>

/* The ABI this header implements; es_abi_version() returns it. */
#define ES_ABI_VERSION 1

#ifndef ES_EXPORTED_ABI_VERSION
#define ES_EXPORTED_ABI_VERSION ES_ABI_VERSION
#endif

#if defined(__wasm__)
/* Export a function under the given Wasm export name: ES_EXPORT(es_step) int32_t es_step(...) */
#define ES_EXPORT(name) __attribute__((export_name(#name), visibility("default")))
/* Declare a host function from module "es". */
#define ES_IMPORT(name) __attribute__((import_module("es"), import_name(#name)))
#else
#define ES_EXPORT(name) __attribute__((visibility("default")))
#define ES_IMPORT(name)
#endif

/* Length of a string literal (no terminating NUL), for the key arguments below. */
#define ES_LITERAL_LEN(s) ((int32_t)(sizeof(s) - 1))

/* ---- host imports (ABI.md, "Imports") -------------------------------------------------- */

/* Log a UTF-8 message. level: 0 debug, 1 info, 2 warning, 3 error. */
ES_IMPORT(log) void es_log(int32_t level, const char *msg, int32_t len);
/* Monotonic nanoseconds since the policy was loaded. */
ES_IMPORT(time_ns) int64_t es_time_ns(void);
/* Fill len bytes from the policy's seeded generator. */
ES_IMPORT(random_fill) void es_random_fill(void *ptr, int32_t len);
/* Add delta to a declared counter: 0 ok, -1 undeclared key. */
ES_IMPORT(counter_add) int32_t es_counter_add(const char *key, int32_t key_len, int64_t delta);
/* Add an item (<= 256 bytes UTF-8) to a declared set: 0 ok, -1 undeclared, -2 bad item. */
ES_IMPORT(set_add)
int32_t es_set_add(const char *key, int32_t key_len, const char *item, int32_t item_len);
/* A declared flag: 1 set, 0 unset, -1 undeclared key. */
ES_IMPORT(flag_get) int32_t es_flag_get(const char *key, int32_t key_len);
/* Run declared model id on n rows at in, writing n x out_dim f32 at out:
 * 0 ok, -1 not declared / not loaded, -2 bad shape or pointers. */
ES_IMPORT(model_infer)
int32_t es_model_infer(const char *id, int32_t id_len, const float *in, int32_t n, float *out);
/* Widths of a declared, loaded model: (in_dim << 32) | out_dim, or -1. */
ES_IMPORT(model_dims) int64_t es_model_dims(const char *id, int32_t id_len);

/* Heavy inference (ABI.md, "Heavy inference"): ask the gateway's inference nodes
 * to run declared heavy model id on the rows of the agents whose mask byte is
 * non-zero (mask: n bytes; in: n x in_dim f32, the rows of unmarked agents are
 * not read). Returns the number of agents asked for, -1 model not declared or no
 * heavy lane, -2 bad arguments. Results arrive on a later tick (t + 1 at the
 * defaults), one per asked agent, whatever happens. */
ES_IMPORT(heavy_request)
int32_t es_heavy_request(const char *id, int32_t id_len, const uint8_t *mask, const float *in,
                         int32_t n, int32_t in_dim);
/* Up to cap results of heavy model id that arrived: agent index (in this step's
 * block) at agent[k], status (ES_HEAVY_*) at status[k], out_dim f32 at
 * out[k * out_dim] (zeros unless ES_HEAVY_OK). Returns how many were written
 * (call again while it returns cap), -1 not declared, -2 bad arguments. */
ES_IMPORT(heavy_results)
int32_t es_heavy_results(const char *id, int32_t id_len, int32_t *agent, int32_t *status,
                         float *out, int32_t cap, int32_t out_dim);

#define ES_HEAVY_OK 0       /* the model's outputs */
#define ES_HEAVY_TIMEOUT 1  /* no result by the deadline */
#define ES_HEAVY_REJECTED 2 /* not taken (back-pressure, no node, no gateway): ask again later */
#define ES_HEAVY_FAILED 3   /* the model cannot take these rows */

/* Convenience wrappers for string-literal keys. */
#define ES_LOG(level, literal) es_log((level), (literal), ES_LITERAL_LEN(literal))
#define ES_COUNTER_ADD(literal, delta) es_counter_add((literal), ES_LITERAL_LEN(literal), (delta))
#define ES_FLAG_GET(literal) es_flag_get((literal), ES_LITERAL_LEN(literal))
#define ES_MODEL_INFER(literal, in, n, out) \
    es_model_infer((literal), ES_LITERAL_LEN(literal), (in), (n), (out))
#define ES_MODEL_DIMS(literal) es_model_dims((literal), ES_LITERAL_LEN(literal))
#define ES_HEAVY_REQUEST(literal, mask, in, n, in_dim) \
    es_heavy_request((literal), ES_LITERAL_LEN(literal), (mask), (in), (n), (in_dim))
#define ES_HEAVY_RESULTS(literal, agent, status, out, cap, out_dim) \
    es_heavy_results((literal), ES_LITERAL_LEN(literal), (agent), (status), (out), (cap), (out_dim))

/* ---- descriptor ---------------------------------------------------------------------- */

/* Define es_describe() returning (ptr << 32) | len of the JSON literal (NUL not counted). */
#define ES_DESCRIBE(json)                                                       \
    static const char es_descriptor_[] = json;                                  \
    ES_EXPORT(es_describe) int64_t es_describe(void) {                          \
        return (int64_t)(((uint64_t)(uintptr_t)es_descriptor_ << 32) |          \
                         (uint64_t)(sizeof(es_descriptor_) - 1));               \
    }

/* ---- ABI version --------------------------------------------------------------------- */

ES_EXPORT(es_abi_version) int32_t es_abi_version(void) { return ES_EXPORTED_ABI_VERSION; }

/* ---- allocator ----------------------------------------------------------------------- */

#if defined(__wasm__)
/* First byte after the data segments and the stack, provided by wasm-ld. */
extern unsigned char __heap_base;

static uintptr_t es_heap_top_;

/* Bump allocator: size bytes, 16-byte aligned, never freed; NULL on failure
 * (size < 0 or memory cannot grow). Grows memory with memory.grow. */
__attribute__((unused)) static void *es_malloc(int32_t size) {
    if (size < 0) return NULL;
    if (es_heap_top_ == 0) es_heap_top_ = (uintptr_t)&__heap_base;
    uint64_t start = ((uint64_t)es_heap_top_ + 15u) & ~(uint64_t)15u;
    uint64_t end = start + (uint64_t)(uint32_t)size;
    if (end > 0x80000000ull) return NULL; /* keep pointers positive as i32 */
    uint64_t have = (uint64_t)__builtin_wasm_memory_size(0) << 16;
    if (end > have) {
        uint64_t pages = (end - have + 0xffffu) >> 16;
        if (__builtin_wasm_memory_grow(0, (size_t)pages) == (size_t)-1) return NULL;
    }
    es_heap_top_ = (uintptr_t)end;
    return (void *)(uintptr_t)start;
}
#else
#ifndef ES_NATIVE_HEAP_BYTES
#define ES_NATIVE_HEAP_BYTES (1 << 20)
#endif
static unsigned char es_native_heap_[ES_NATIVE_HEAP_BYTES] __attribute__((aligned(16)));
static size_t es_native_top_;

/* The same contract on the host: 16-byte aligned, never freed, NULL when the arena is full. */
__attribute__((unused)) static void *es_malloc(int32_t size) {
    if (size < 0) return NULL;
    size_t start = (es_native_top_ + 15u) & ~(size_t)15u;
    if (start + (size_t)size > sizeof(es_native_heap_)) return NULL;
    es_native_top_ = start + (size_t)size;
    return es_native_heap_ + start;
}
#endif

#ifndef ES_NO_DEFAULT_ALLOC
/* es_alloc(size) -> 16-byte aligned offset, 0 on failure. */
ES_EXPORT(es_alloc) int32_t es_alloc(int32_t size) { return (int32_t)(uintptr_t)es_malloc(size); }
#endif

#endif /* EDGESWARM_H */
