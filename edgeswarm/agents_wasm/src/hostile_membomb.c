/* hostile_membomb: a valid ABI v1 policy whose es_step grows memory until
 * memory.grow fails (the instance limit), then writes past the end (a trap). */
#include "edgeswarm.h"

ES_DESCRIBE("{\"name\": \"hostile_membomb\", \"obs_dim\": 8, \"state_dim\": 0, \"act_dim\": 2}")

ES_EXPORT(es_init) int32_t es_init(const uint8_t *cfg, int32_t cfg_len) {
    (void)cfg;
    (void)cfg_len;
    return 0;
}

ES_EXPORT(es_step) int32_t es_step(int32_t n, const float *obs, float *state, float *act) {
    (void)n;
    (void)obs;
    (void)state;
    (void)act;
    while (__builtin_wasm_memory_grow(0, 16) != (size_t)-1) { /* 1 MiB at a time */
    }
    /* a 4-byte store straddling the end of memory: out of bounds (even at 4 GiB) */
    volatile uint32_t *end = (volatile uint32_t *)((__builtin_wasm_memory_size(0) << 16) - 2);
    *end = 1;
    return 0;
}
