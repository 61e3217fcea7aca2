/*
 * anomaly: an anomaly detector around the host's light model "anomaly"
 * (Wasm agent ABI v1; the model is edgeswarm.models.anomaly, 8 inputs -> 1 score).
 *
 * Per batch: ONE model_infer("anomaly") over all n observation rows, then per agent
 *
 *     score = model output (0..1)
 *     e     = 0.8*e + 0.2*score          state: the EWMA of the score (1 float)
 *     alarm = 1.0 if e > 0.5 else 0.0
 *     action = [score, alarm]
 *
 * then ONE counter_add("anomalies", k) with k the number of alarmed agents
 * (skipped when k == 0), and ONE warning log when k > 0 and the previous batch
 * had no alarm (so a lasting anomaly is logged once, not every tick).
 * Reference: edgeswarm.edge.policy.reference.anomaly_numpy.
 * es_step returns 2 when the model call fails, 3 when scratch memory runs out.
 */
#include "edgeswarm.h"

#define KEEP 0.8f
#define GAIN 0.2f
#define THRESHOLD 0.5f

ES_DESCRIBE("{\"name\": \"anomaly\", \"obs_dim\": 8, \"state_dim\": 1, \"act_dim\": 2, "
            "\"counters\": [\"anomalies\"], \"models\": [\"anomaly\"]}")

static float *scores;
static int32_t scores_cap;
static int32_t previous_alarms;

ES_EXPORT(es_init) int32_t es_init(const uint8_t *cfg, int32_t cfg_len) {
    (void)cfg;
    (void)cfg_len; /* no configuration; any blob is accepted and ignored */
    return 0;
}

/* Decimal digits of v at out (no NUL); returns their count. */
static int32_t format_u32(char *out, uint32_t v) {
    char tmp[10];
    int32_t len = 0;
    do {
        tmp[len++] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v);
    for (int32_t i = 0; i < len; i++) out[i] = tmp[len - 1 - i];
    return len;
}

static void log_alarms(int32_t k, int32_t n) {
    static const char head[] = "anomaly: ";
    static const char mid[] = " of ";
    static const char tail[] = " agents alarmed";
    char msg[64];
    int32_t len = 0;
    for (int32_t i = 0; head[i]; i++) msg[len++] = head[i];
    len += format_u32(msg + len, (uint32_t)k);
    for (int32_t i = 0; mid[i]; i++) msg[len++] = mid[i];
    len += format_u32(msg + len, (uint32_t)n);
    for (int32_t i = 0; tail[i]; i++) msg[len++] = tail[i];
    es_log(2, msg, len);
}

ES_EXPORT(es_step) int32_t es_step(int32_t n, const float *obs, float *state, float *act) {
    if (n < 0) return 1;
    if (n == 0) return 0;
    if (n > scores_cap) { /* the bump allocator never frees: grow geometrically */
        if (n > 0x1fffffff) return 3; /* n floats would not fit in 2 GiB */
        int32_t cap = scores_cap ? scores_cap : 256;
        while (cap < n) cap = cap > 0x0fffffff ? n : cap * 2;
        float *fresh = es_malloc(cap * (int32_t)sizeof(float));
        if (!fresh) return 3;
        scores = fresh;
        scores_cap = cap;
    }
    if (ES_MODEL_INFER("anomaly", obs, n, scores) != 0) return 2;
    int32_t alarms = 0;
    for (int32_t i = 0; i < n; i++) {
        const float score = scores[i];
        const float e = KEEP * state[i] + GAIN * score;
        const int alarm = e > THRESHOLD;
        state[i] = e;
        act[2 * i] = score;
        act[2 * i + 1] = alarm ? 1.0f : 0.0f;
        alarms += alarm;
    }
    if (alarms > 0) {
        ES_COUNTER_ADD("anomalies", alarms);
        if (previous_alarms == 0) log_alarms(alarms, n);
    }
    previous_alarms = alarms;
    return 0;
}
