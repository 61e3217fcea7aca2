/* hostile_import: otherwise valid, but imports wasi_snapshot_preview1.fd_write,
 * which the ABI forbids (only module "es" may be imported): must be refused at load. */
#include "edgeswarm.h"

__attribute__((import_module("wasi_snapshot_preview1"), import_name("fd_write"))) int32_t
fd_write(int32_t fd, int32_t iovs, int32_t iovs_len, int32_t nwritten);

ES_DESCRIBE("{\"name\": \"hostile_import\", \"obs_dim\": 8, \"state_dim\": 0, \"act_dim\": 2}")

ES_EXPORT(es_init) int32_t es_init(const uint8_t *cfg, int32_t cfg_len) {
    (void)cfg;
    (void)cfg_len;
    return 0;
}

ES_EXPORT(es_step) int32_t es_step(int32_t n, const float *obs, float *state, float *act) {
    (void)obs;
    (void)state;
    (void)act;
    return fd_write(1, 0, 0, n) == 0 ? 0 : 1;
}
