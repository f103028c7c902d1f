/* Every script call the library builds names keys of one slot in the cluster key style (a
 * cluster node refuses anything else with CROSSSLOT), and names at least one key (the routers
 * send a script by its first key; a keyless one would go to an arbitrary node). Checked on the
 * RESP bytes of the calls, without Redis: submit (with and without a rate limit, without
 * audit, a group), and every presence command. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "switchboard/cluster.h"
#include "switchboard/error.h"
#include "switchboard/job.h"
#include "switchboard/presence.h"
#include "switchboard/submit.h"

#define MAX_ARGS 1024

/* The arguments of one RESP command (bulk strings): pointers into resp, lengths. */
static int resp_args(const char *resp, size_t len, const char **arg, size_t *alen) {
    const char *p = resp, *end = resp + len;
    assert_true(*p == '*');
    int n = atoi(p + 1);
    assert_true(n > 0 && n <= MAX_ARGS);
    p = strstr(p, "\r\n") + 2;
    for (int i = 0; i < n; i++) {
        assert_true(p < end && *p == '$');
        alen[i] = (size_t)atol(p + 1);
        arg[i] = strstr(p, "\r\n") + 2;
        p = arg[i] + alen[i] + 2;
    }
    return n;
}

/* The slot every key of script call i of b names (asserting they agree and there is one). */
static int call_slot(const sb_batch_t *b, size_t i) {
    size_t len, alen[MAX_ARGS];
    const char *arg[MAX_ARGS];
    const char *cmd = sb_batch_cmd(b, i, &len);
    int n = resp_args(cmd, len, arg, alen);
    assert_true(n >= 3);
    assert_true(!strncmp(arg[0], "EVAL", 4));
    int nkeys = atoi(arg[2]), slot = -1;
    assert_true(nkeys >= 1);
    assert_true(3 + nkeys <= n);
    for (int k = 0; k < nkeys; k++) {
        int s = sb_cluster_keyslot(arg[3 + k], alen[3 + k]);
        if (slot < 0) slot = s;
        if (s != slot) fail_msg("key %d (%.*s) is in slot %d, key 1 in %d", k + 1,
                                (int)alen[3 + k], arg[3 + k], s, slot);
    }
    return slot;
}

static int setup(void **state) {
    (void)state;
    sb_key_style_set(SB_KEYS_CLUSTER);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    sb_key_style_set(SB_KEYS_PLAIN);
    return 0;
}

static int type_slot(const char *type) {
    char key[SB_KEY_LEN];
    sb_key(key, sizeof key, SB_KEY_JOBS, type, NULL);
    return sb_cluster_keyslot(key, strlen(key));
}

static void test_submit_one_slot(void **state) {
    (void)state;
    sb_script_t s;
    sb_submit_script_init(&s);
    const char *rate[] = {"user-1", NULL, "user-2"};
    int no_audit[] = {0, 0, 1};
    for (int v = 0; v < 3; v++) {
        sb_batch_t *b = sb_batch_create();
        sb_submit_t q = {.type = "rebalance", .job_id = "1731304200000-a7f3e2c1",
                         .public_key = "PK", .record_json = "{}", .now_ms = 1731304200000,
                         .rate_user = rate[v], .limit = 10, .window_s = 60,
                         .no_audit = no_audit[v]};
        assert_int_equal(sb_submit_batch(b, &s, SB_SCRIPT_EVALSHA, &q), SB_OK);
        assert_int_equal(call_slot(b, 0), type_slot("rebalance"));
        /* without a rate limit the audit XADD follows as a command of its own */
        assert_int_equal(sb_batch_count(b), (size_t)(!rate[v] && !no_audit[v] ? 2 : 1));
        sb_batch_free(b);
    }
}

static void test_submit_group_one_slot(void **state) {
    (void)state;
    sb_script_t s;
    sb_submit_script_init(&s);
    sb_submit_call_t *calls[3];
    const char *ids[] = {"1-a", "2-b", "3-c"};
    for (int i = 0; i < 3; i++) {
        sb_submit_t q = {.type = "report", .job_id = ids[i], .public_key = "PK",
                         .record_json = "{}", .now_ms = 1, .rate_user = "u", .limit = 5,
                         .window_s = 1};
        assert_int_equal(sb_submit_prepare(&q, &calls[i]), SB_OK);
        assert_int_equal(sb_submit_call_slot(calls[i]), type_slot("report"));
    }
    sb_batch_t *b = sb_batch_create();
    assert_int_equal(sb_submit_add(b, &s, SB_SCRIPT_EVAL, calls, 3), SB_OK);
    assert_int_equal(call_slot(b, 0), type_slot("report"));
    sb_batch_t *audit = sb_batch_create();
    assert_int_equal(sb_submit_audit_add(audit, calls[0]), 1); /* kept for after the script */
    sb_batch_free(audit);
    for (int i = 0; i < 3; i++) sb_submit_call_free(calls[i]);
    sb_batch_free(b);
}

static void test_presence_one_slot(void **state) {
    (void)state;
    sb_presence_ctx_t ctx;
    sb_presence_init(&ctx, 60, 5);
    sb_batch_t *b = sb_batch_create();
    sb_presence_t p = {.agent_id = "agent-1", .department_id = "support", .status = "online"};
    assert_int_equal(sb_presence_heartbeat_cmd(b, &ctx, &p, 1, SB_SCRIPT_EVALSHA), SB_OK);
    assert_int_equal(sb_presence_offline_cmd(b, &ctx, "agent-1", 1, SB_SCRIPT_EVALSHA), SB_OK);
    assert_int_equal(sb_presence_list_cmd(b, &ctx, "", 1, SB_SCRIPT_EVALSHA), SB_OK);
    assert_int_equal(sb_presence_list_cmd(b, &ctx, "support", 1, SB_SCRIPT_EVALSHA), SB_OK);
    assert_int_equal(sb_presence_assign_cmd(b, &ctx, "support", 1, SB_SCRIPT_EVALSHA), SB_OK);
    assert_int_equal(sb_presence_release_cmd(b, &ctx, "agent-1", SB_SCRIPT_EVALSHA), SB_OK);
    assert_int_equal(sb_presence_expire_cmd(b, &ctx, "agent-1", 1, SB_SCRIPT_EVALSHA), SB_OK);
    assert_int_equal(sb_presence_sweep_cmd(b, &ctx, "0", 10, 1, SB_SCRIPT_EVALSHA), SB_OK);
    int agents = sb_cluster_keyslot("{agents}", 8);
    for (size_t i = 0; i < sb_batch_count(b); i++) assert_int_equal(call_slot(b, i), agents);
    char key[SB_PRESENCE_KEY_LEN + 16];
    assert_non_null(sb_presence_key(key, sizeof key, "agent-1"));
    assert_string_equal(key, "{agents}:online:agent-1");
    sb_batch_free(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_submit_one_slot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_submit_group_one_slot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_presence_one_slot, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
