/* libFuzzer target for the JSON we take from Redis and from clients: job records, status
 * messages (what any agent may PUBLISH), and the built-in rebalance handler's payload check.
 * Whatever the bytes, parsing must fail cleanly or yield views that are safe to read. Any
 * document that parses is also written back with the JSON writer (jsonw.h), which must give
 * exactly cJSON's text, and as a new record's payload, which must parse back as a record. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "agent/handlers.h"
#include "switchboard/job.h"
#include "switchboard/json.h"
#include "switchboard/jsonw.h"

/* The writer's text for doc is cJSON's, and a record with doc as its payload is a record. */
static void sb_fuzz_writer(const cJSON *doc) {
    char *want = cJSON_PrintUnformatted(doc);
    sb_jw_t w;
    sb_jw_init(&w);
    sb_jw_value(&w, doc);
    char *got = sb_jw_take(&w, NULL);
    if (!want != !got || (want && strcmp(want, got) != 0)) abort();
    free(want);
    free(got);
    sb_user_t user = {"PK\"\\\n", "id"};
    char *rec = sb_job_record_text("t", "1-a", &user, doc, 1731321000000LL);
    sb_job_t job;
    char err[256];
    if (!rec || sb_job_parse(rec, strlen(rec), &job, err, sizeof err) != 0) abort();
    if (strcmp(job.public_key, user.public_key) != 0) abort();
    sb_job_close(&job);
    free(rec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *buf = (const char *)data;
    char err[256];
    cJSON *doc = sb_json_parse(buf, size);
    if (doc) sb_fuzz_writer(doc);
    cJSON_Delete(doc);
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
