/* hostile_wrong_abi: otherwise valid, but es_abi_version() returns 99 (must be refused). */
#define ES_EXPORTED_ABI_VERSION 99
#include "edgeswarm.h"

ES_DESCRIBE("{\"name\": \"hostile_wrong_abi\", \"obs_dim\": 8, \"state_dim\": 0, \"act_dim\": 2}")

ES_EXPORT(es_init) int32_t es_init(const uint8_t *cfg, int32_t cfg_len) {
    (void)cfg;
    (void)cfg_len;
    return 0;
}

ES_EXPORT(es_step) int32_t es_step(int32_t n, const float *obs, float *state, float *act) {
    (void)obs;
    (void)state;
    for (int32_t i = 0; i < 2 * n; i++) act[i] = 0.0f;
    return 0;
}
