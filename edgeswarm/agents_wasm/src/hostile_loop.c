/* hostile_loop: a valid ABI v1 policy whose es_step never returns (fuel must stop it). */
#include "edgeswarm.h"

ES_DESCRIBE("{\"name\": \"hostile_loop\", \"obs_dim\": 8, \"state_dim\": 0, \"act_dim\": 2}")

ES_EXPORT(es_init) int32_t es_init(const uint8_t *cfg, int32_t cfg_len) {
    (void)cfg;
    (void)cfg_len;
    return 0;
}

ES_EXPORT(es_step) int32_t es_step(int32_t n, const float *obs, float *state, float *act) {
    (void)n;
    (void)obs;
    (void)state;
    volatile uint32_t spins = 0;
    for (;;) spins = spins + 1u; /* a side effect, so the loop cannot be optimised away */
    (void)act;
    return 0;
}
