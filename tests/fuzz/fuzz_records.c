/* libFuzzer target for the JSON we take from Redis and from clients: job records, status
 * messages (what any agent may PUBLISH), and the built-in rebalance handler's payload check.
 * Whatever the bytes, parsing must fail cleanly or yield views that are safe to read. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "agent/handlers.h"
#include "switchboard/job.h"
#include "switchboard/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *buf = (const char *)data;
    char err[256];
    sb_job_t job;
    if (sb_job_parse(buf, size, &job, err, sizeof err) == 0) {
        sb_handler_out_t out = {0};
        atomic_int cancel = 0;
        sb_handler_rebalance(&job, 1, &cancel, &out, NULL);
        cJSON_Delete(out.result);
        sb_job_set_status(&job, "processing", 0);
        char *again = sb_json_print(job.root);
        free(again);
        sb_job_close(&job);
    }
    cJSON *root = NULL;
    sb_status_t st;
    if (sb_status_parse(buf, size, &root, &st, err, sizeof err) == 0) {
        char *msg = sb_status_build(&st);
        free(msg);
        cJSON_Delete(root);
    }
    return 0;
}
