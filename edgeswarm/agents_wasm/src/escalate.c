/*
 * escalate: the anomaly detector that escalates its top suspects to a heavy model
 * (Wasm agent ABI v1 with the heavy-lane imports; light model "anomaly" on the
 * edge, heavy model "triage" on the gateway's inference nodes, 8 -> 2).
 *
 * Per batch:
 *   1. ONE model_infer("anomaly") over all n rows: score (0..1) per agent;
 *   2. heavy_results("triage") until it has nothing more: for each result,
 *      OK -> verdict = output[0] > 0.5 (state[1] = 1 confirmed, 0 cleared);
 *      TIMEOUT, REJECTED, FAILED -> state[1] = 0 (may be escalated again);
 *   3. per agent: e = 0.8*e + 0.2*score (state[0]); a confirmed agent whose e
 *      drops below 0.2 is cleared (state[1] = 0);
 *   4. top suspects: of the agents with e > 0.12 (above the calm baseline) that
 *      are neither pending nor confirmed, the 16 with the highest e (ties: the
 *      lower index) -> mask, state[1] = 0.5 (pending); ONE heavy_request;
 *   5. action = [score, alarm], alarm = 1 when confirmed by triage, else e > 0.5;
 *      ONE counter_add("anomalies", alarms) when there are any.
 * state[1]: 0 idle, 0.5 pending (a result comes on a later tick), 1 confirmed.
 * Reference: edgeswarm.edge.policy.reference.escalate_numpy.
 * es_step returns 2 when a model call fails, 3 when scratch memory runs out.
 */
#include "edgeswarm.h"

#define KEEP 0.8f
#define GAIN 0.2f
#define ALARM 0.5f
#define SUSPECT 0.12f
#define CLEAR 0.2f
#define MAX_ESCALATE 16
#define PENDING 0.5f
#define CONFIRMED 1.0f

ES_DESCRIBE("{\"name\": \"escalate\", \"obs_dim\": 8, \"state_dim\": 2, \"act_dim\": 2, "
            "\"counters\": [\"anomalies\"], \"models\": [\"anomaly\"], \"heavy\": [\"triage\"]}")

static float *scores;
static uint8_t *mask;
static int32_t *agent;
static int32_t *status;
static float *verdicts;
static int32_t cap;

ES_EXPORT(es_init) int32_t es_init(const uint8_t *cfg, int32_t cfg_len) {
    (void)cfg;
    (void)cfg_len;
    return 0;
}

static int32_t reserve(int32_t n) {
    if (n <= cap) return 0;
    if (n > 0x03ffffff) return 3;
    int32_t want = cap ? cap : 256;
    while (want < n) want *= 2;
    scores = es_malloc(want * (int32_t)sizeof(float));
    mask = es_malloc(want);
    agent = es_malloc(want * (int32_t)sizeof(int32_t));
    status = es_malloc(want * (int32_t)sizeof(int32_t));
    verdicts = es_malloc(want * 2 * (int32_t)sizeof(float));
    if (!scores || !mask || !agent || !status || !verdicts) return 3;
    cap = want;
    return 0;
}

ES_EXPORT(es_step) int32_t es_step(int32_t n, const float *obs, float *state, float *act) {
    if (n < 0) return 1;
    if (n == 0) return 0;
    if (reserve(n) != 0) return 3;
    if (ES_MODEL_INFER("anomaly", obs, n, scores) != 0) return 2;
    for (;;) { /* results of earlier ticks' requests */
        int32_t k = ES_HEAVY_RESULTS("triage", agent, status, verdicts, n, 2);
        if (k <= 0) break;
        for (int32_t j = 0; j < k; j++) {
            int32_t i = agent[j];
            if (i < 0 || i >= n) continue;
            int confirmed = status[j] == ES_HEAVY_OK && verdicts[2 * j] > 0.5f;
            state[2 * i + 1] = confirmed ? CONFIRMED : 0.0f;
        }
        if (k < n) break;
    }
    for (int32_t i = 0; i < n; i++) {
        const float e = KEEP * state[2 * i] + GAIN * scores[i];
        state[2 * i] = e;
        if (state[2 * i + 1] == CONFIRMED && e < CLEAR) state[2 * i + 1] = 0.0f;
        mask[i] = 0;
    }
    int32_t suspects = 0;
    for (; suspects < MAX_ESCALATE; suspects++) { /* the top suspects, one pass each */
        int32_t best = -1;
        for (int32_t i = 0; i < n; i++) {
            const float e = state[2 * i];
            if (!mask[i] && state[2 * i + 1] == 0.0f && e > SUSPECT &&
                (best < 0 || e > state[2 * best]))
                best = i;
        }
        if (best < 0) break;
        mask[best] = 1;
        state[2 * best + 1] = PENDING;
    }
    int32_t alarms = 0;
    for (int32_t i = 0; i < n; i++) {
        const int alarm = state[2 * i + 1] == CONFIRMED || state[2 * i] > ALARM;
        act[2 * i] = scores[i];
        act[2 * i + 1] = alarm ? 1.0f : 0.0f;
        alarms += alarm;
    }
    if (suspects > 0 && ES_HEAVY_REQUEST("triage", mask, obs, n, 8) < 0) {
        for (int32_t i = 0; i < n; i++) /* no heavy lane: nothing is pending */
            if (mask[i]) state[2 * i + 1] = 0.0f;
    }
    if (alarms > 0) ES_COUNTER_ADD("anomalies", alarms);
    return 0;
}
