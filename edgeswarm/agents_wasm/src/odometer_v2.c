/* odometer v2: a new state layout (state_dim 2: the step count, and the count the
 * agent had when it left v1) and es_migrate, which converts v1's state into it.
 * Action 0 is the count, action 1 minus the count carried over from v1 (negative:
 * v2 stepped; -0 for an agent that never ran v1). */
#include "edgeswarm.h"

ES_DESCRIBE("{\"name\": \"odometer\", \"obs_dim\": 8, \"state_dim\": 2, \"act_dim\": 2}")

ES_EXPORT(es_init) int32_t es_init(const uint8_t *cfg, int32_t cfg_len) {
    (void)cfg;
    return cfg_len == 0 ? 0 : 1;
}

/* v1's layout (one f32: the count) -> ours ([count, count carried over]); any other
 * layout is refused (nonzero), and the host keeps the old version running. */
ES_EXPORT(es_migrate) int32_t es_migrate(int32_t n, int32_t old_state_dim,
                                         const float *old_state, float *state) {
    if (old_state_dim != 1) return 1;
    for (int32_t i = 0; i < n; i++) {
        state[2 * i] = old_state[i];
        state[2 * i + 1] = old_state[i];
    }
    return 0;
}

ES_EXPORT(es_step) int32_t es_step(int32_t n, const float *obs, float *state, float *act) {
    (void)obs;
    for (int32_t i = 0; i < n; i++) {
        float *s = state + 2 * i;
        s[0] += 1.0f;
        act[2 * i] = s[0];
        act[2 * i + 1] = -s[1];
    }
    return 0;
}
