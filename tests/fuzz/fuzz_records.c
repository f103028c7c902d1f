/* libFuzzer target for the JSON we take from Redis and from clients: job records, status
 * messages (what any agent may PUBLISH), and the built-in rebalance handler's payload check.
 * Whatever the bytes, parsing must fail cleanly or yield views that are safe to read. Any
 * document that parses is also written back with the JSON writer (jsonw.h), whose text must
 * parse back to exactly the same values (every number the very same double) and be cJSON's
 * text byte for byte wherever cJSON prints every number as exactly; and as a new record's
 * payload, which must parse back as a record. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "agent/handlers.h"
#include "switchboard/job.h"
#include "switchboard/json.h"
#include "switchboard/jsonw.h"

/* 1 when b is a read back of a: same types, member names in the same order, strings byte
 * for byte, numbers the very same double, sign of zero included (cJSON_Compare would accept
 * numbers that are merely close). A non-finite number is written as null. */
static int sb_fuzz_same(const cJSON *a, const cJSON *b) {
    if (cJSON_IsNumber(a) && !isfinite(a->valuedouble)) return cJSON_IsNull(b);
    if ((a->type & 0xFF) != (b->type & 0xFF)) return 0;
    if (cJSON_IsNumber(a))
        return a->valuedouble == b->valuedouble &&
               !signbit(a->valuedouble) == !signbit(b->valuedouble);
    if (cJSON_IsString(a)) return strcmp(a->valuestring, b->valuestring) == 0;
    const cJSON *x = a->child, *y = b->child;
    for (; x && y; x = x->next, y = y->next)
        if ((cJSON_IsObject(a) && strcmp(x->string, y->string) != 0) || !sb_fuzz_same(x, y))
            return 0;
    return !x && !y;
}

/* 1 when text is d printed with the given number of significant digits ("%.*g"). */
static int sb_fuzz_is_g(const char *text, int digits, double d) {
    char g[64];
    snprintf(g, sizeof g, "%.*g", digits, d);
    return strcmp(text, g) == 0;
}

/* 1 when cJSON prints every number of v as the writer does. Aborts when they differ other
 * than where the writer may depart from cJSON: where cJSON's text (15 digits) reads back
 * only approximately, where cJSON's fallback takes 17 digits and 16 already read back, or a
 * whole number below 2^63 that the writer gives as plain digits (cJSON: "1e+15"). */
static int sb_fuzz_numbers_as_cjson(const cJSON *v) {
    if (!cJSON_IsNumber(v)) {
        int all = 1;
        for (const cJSON *c = v->child; c; c = c->next) all &= sb_fuzz_numbers_as_cjson(c);
        return all;
    }
    char mine[64], theirs[64];
    double d = v->valuedouble;
    sb_jw_t w;
    sb_jw_init_fixed(&w, mine, sizeof mine);
    sb_jw_value(&w, v);
    if (!sb_jw_finish(&w, NULL) || !cJSON_PrintPreallocated((cJSON *)v, theirs, 64, 0)) abort();
    if (strcmp(mine, theirs) == 0) return 1;
    int whole = d == floor(d) && fabs(d) < 0x1p63;
    if (strtod(theirs, NULL) == d && !whole &&
        !(sb_fuzz_is_g(theirs, 17, d) && sb_fuzz_is_g(mine, 16, d)))
        abort();
    return 0;
}

/* The writer's text for doc reads back as doc, is cJSON's where cJSON's numbers are exact,
 * and a record with doc as its payload is a record. */
static void sb_fuzz_writer(const cJSON *doc) {
    sb_jw_t w;
    sb_jw_init(&w);
    sb_jw_value(&w, doc);
    size_t len = 0;
    char *got = sb_jw_take(&w, &len);
    if (!got) abort(); /* documents sb_json_parse accepts are never too deep for the writer */
    cJSON *back = sb_json_parse(got, len);
    if (!back || !sb_fuzz_same(doc, back)) abort();
    cJSON_Delete(back);
    if (sb_fuzz_numbers_as_cjson(doc)) {
        char *want = cJSON_PrintUnformatted(doc);
        if (!want || strcmp(want, got) != 0) abort();
        free(want);
    }
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
