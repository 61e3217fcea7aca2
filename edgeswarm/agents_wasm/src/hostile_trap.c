/* hostile_trap: a valid ABI v1 policy whose es_step traps (unreachable). */
#include "edgeswarm.h"

ES_DESCRIBE("{\"name\": \"hostile_trap\", \"obs_dim\": 8, \"state_dim\": 0, \"act_dim\": 2}")

ES_EXPORT(es_init) int32_t es_init(const uint8_t *cfg, int32_t cfg_len) {
    (void)cfg;
    (void)cfg_len;
    return 0;
}

ES_EXPORT(es_step) int32_t es_step(int32_t n, const float *obs, float *state, float *act) {
    (void)obs;
    (void)state;
    (void)act;
    if (n >= 0) __builtin_trap();
    return 0;
}
