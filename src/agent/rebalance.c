/* The built-in `rebalance` handler, the seeds' executeRebalance in C: 2 % fee. */
#include <stdio.h>
#include "handlers.h"
#include "switchboard/clock.h"
#include "switchboard/json.h"

sb_handler_rc_t sb_handler_rebalance(const sb_job_t *job, int attempt, const atomic_int *cancel,
                                     sb_handler_out_t *out, void *user) {
    (void)attempt, (void)cancel, (void)user;
    double amount;
    if (!cJSON_IsObject(job->payload) || sb_json_num(job->payload, "amount", &amount) != 0 ||
        amount <= 0) {
        snprintf(out->error, sizeof out->error, "Invalid amount");
        snprintf(out->details, sizeof out->details,
                 "payload.amount must be a finite number greater than 0");
        return SB_HANDLER_FAIL;
    }
    char ts[SB_ISO_LEN];
    double fee = amount * 0.02;
    cJSON *r = cJSON_CreateObject();
    if (!r) {
        snprintf(out->error, sizeof out->error, "out of memory");
        return SB_HANDLER_RETRY;
    }
    cJSON_AddBoolToObject(r, "success", 1);
    cJSON_AddNumberToObject(r, "originalAmount", amount);
    cJSON_AddNumberToObject(r, "fee", fee);
    cJSON_AddNumberToObject(r, "remainingAmount", amount - fee);
    cJSON_AddStringToObject(r, "processedAt", sb_iso8601(sb_now_ms(), ts));
    out->result = r;
    return SB_HANDLER_OK;
}
