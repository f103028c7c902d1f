/* `switchboard doctor`: checks the configured Redis for what Switchboard needs (the checks
 * are the library's, redis_check.h) and prints each verdict with how to fix it, as text or
 * as one JSON document (--json). Exit 0 when nothing fails, 1 when a check fails, 3 when Redis
 * cannot be reached. */
#include <stdio.h>
#include <stdlib.h>
#include <cjson/cJSON.h>
#include "cli/cli.h"
#include "switchboard/redis_check.h"
#include "switchboard/switchboard.h"

static const char *const sb_check_word[] = {"ok", "warn", "FAIL"};

static void sb_doctor_text(const char *where, const sb_check_t *c, int n, int fails, int warns) {
    printf("switchboard doctor: redis at %s\n", where);
    for (int i = 0; i < n; i++) {
        printf("  %-5s %-17s %s\n", sb_check_word[c[i].status], c[i].name, c[i].detail);
        if (c[i].status != SB_CHECK_OK) printf("  %-5s %-17s fix: %s\n", "", "", c[i].fix);
    }
    printf("%s: %d failed, %d warning%s\n", fails ? "problems found" : warns ? "usable" : "all good",
           fails, warns, warns == 1 ? "" : "s");
}

static void sb_doctor_json(const char *where, const sb_check_t *c, int n, int fails) {
    cJSON *doc = cJSON_CreateObject(), *list = cJSON_AddArrayToObject(doc, "checks");
    cJSON_AddStringToObject(doc, "redis", where);
    cJSON_AddBoolToObject(doc, "ok", !fails);
    for (int i = 0; i < n; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", c[i].name);
        cJSON_AddStringToObject(o, "status", c[i].status == SB_CHECK_OK     ? "ok"
                                             : c[i].status == SB_CHECK_WARN ? "warn"
                                                                            : "fail");
        cJSON_AddStringToObject(o, "detail", c[i].detail);
        if (c[i].status != SB_CHECK_OK) cJSON_AddStringToObject(o, "fix", c[i].fix);
        cJSON_AddItemToArray(list, o);
    }
    char *text = cJSON_PrintUnformatted(doc);
    if (text) puts(text);
    free(text);
    cJSON_Delete(doc);
}

int sb_cmd_doctor(sb_config_t *cfg) {
    char where[300];
    sb_redis_addr_str(&cfg->redis, where, sizeof where);
    sb_redis_t *r = sb_cli_connect(cfg);
    if (!r) return SB_EXIT_REDIS;
    sb_check_t checks[SB_CHECK_MAX];
    int n = sb_redis_check_all(r, &cfg->redis, checks);
    sb_redis_free(r);
    if (n < 0) {
        fprintf(stderr, "switchboard doctor: lost the connection to redis at %s\n", where);
        return SB_EXIT_REDIS;
    }
    int fails = 0, warns = 0;
    for (int i = 0; i < n; i++) {
        fails += checks[i].status == SB_CHECK_FAIL;
        warns += checks[i].status == SB_CHECK_WARN;
    }
    if (cfg->json_out) sb_doctor_json(where, checks, n, fails);
    else sb_doctor_text(where, checks, n, fails, warns);
    return fails ? SB_EXIT_FAIL : SB_EXIT_OK;
}
