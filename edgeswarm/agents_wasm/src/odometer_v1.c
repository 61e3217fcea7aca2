/* odometer v1: counts each agent's steps in its one state f32 (state_dim 1).
 * Action 0 is the count, action 1 the version marker 1.0. odometer_v2 changes the
 * state layout and migrates this one's state (ABI.md, "Hot swap and state layout"). */
#include "edgeswarm.h"

ES_DESCRIBE("{\"name\": \"odometer\", \"obs_dim\": 8, \"state_dim\": 1, \"act_dim\": 2}")

ES_EXPORT(es_init) int32_t es_init(const uint8_t *cfg, int32_t cfg_len) {
    (void)cfg;
    return cfg_len == 0 ? 0 : 1;
}

ES_EXPORT(es_step) int32_t es_step(int32_t n, const float *obs, float *state, float *act) {
    (void)obs;
    for (int32_t i = 0; i < n; i++) {
        state[i] += 1.0f;
        act[2 * i] = state[i];
        act[2 * i + 1] = 1.0f;
    }
    return 0;
}
