/* Unit tests of the pure parts of presence: agent ids, keyspace flags, the expired-keyevent
 * parser, event parsing, reply parsing and stats aggregation, and the command builders. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include "switchboard/agent.h"
#include "switchboard/switchboard.h"

/* ---- hand-made replies ------------------------------------------------------------------- */

static redisReply *text(int type, const char *s) {
    redisReply *r = calloc(1, sizeof *r);
    r->type = type;
    r->str = strdup(s);
    r->len = strlen(s);
    return r;
}

/* An array reply of n strings (NULL entries become nil). */
static redisReply *array(size_t n, const char **items) {
    redisReply *r = calloc(1, sizeof *r);
    r->type = REDIS_REPLY_ARRAY;
    r->elements = n;
    r->element = calloc(n, sizeof *r->element);
    for (size_t i = 0; i < n; i++) {
        if (items[i]) r->element[i] = text(REDIS_REPLY_STRING, items[i]);
        else (r->element[i] = calloc(1, sizeof(redisReply)))->type = REDIS_REPLY_NIL;
    }
    return r;
}

/* ---- tests ------------------------------------------------------------------------------- */

static void test_agent_ids(void **state) {
    (void)state;
    char id[128];
    sb_agent_default_id(id, sizeof id);
    assert_true(sb_agent_id_valid(id));
    assert_false(sb_agent_id_is_uuid(id));
    assert_true(sb_agent_id_is_uuid("550e8400-e29b-41d4-a716-446655440000"));
    assert_true(sb_agent_id_is_uuid("550E8400-E29B-41D4-A716-446655440000"));
    assert_false(sb_agent_id_is_uuid("550e8400-e29b-41d4-a716-44665544000g"));
    assert_false(sb_agent_id_is_uuid("550e8400e29b-41d4-a716-4466554400000"));
    assert_true(sb_agent_id_valid("web-1.example.com-4242-a1b2c3d4"));
    assert_true(sb_agent_id_valid("host-123-abcd1234"));
    assert_false(sb_agent_id_valid("a b"));
    assert_false(sb_agent_id_valid("x*"));
    assert_false(sb_agent_id_valid(""));
    assert_false(sb_agent_id_valid(NULL));
    assert_false(sb_agent_id_valid("-x"));
    assert_false(sb_agent_id_valid("x-"));
    assert_false(sb_agent_id_valid("a:b"));
    assert_false(sb_agent_id_valid("a/b"));
    char longid[SB_AGENT_ID_MAX + 2];
    memset(longid, 'a', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    assert_false(sb_agent_id_valid(longid));
    longid[SB_AGENT_ID_MAX] = '\0';
    assert_true(sb_agent_id_valid(longid));
    assert_true(sb_presence_dept_valid("660e8400-e29b-41d4-a716-446655440000"));
    assert_false(sb_presence_dept_valid(""));
    assert_false(sb_presence_dept_valid("a b"));
    assert_false(sb_presence_dept_valid("a*"));
    assert_true(sb_presence_status_valid("busy"));
    assert_false(sb_presence_status_valid("gone"));
    assert_false(sb_presence_status_valid(NULL));
}

static void test_notify_flags(void **state) {
    (void)state;
    char out[64];
    assert_int_equal(sb_presence_notify_flags("", out, sizeof out), 1);
    assert_string_equal(out, "Ex");
    assert_int_equal(sb_presence_notify_flags("Kl", out, sizeof out), 1);
    assert_string_equal(out, "KlEx");
    assert_int_equal(sb_presence_notify_flags("xE", out, sizeof out), 0);
    assert_int_equal(sb_presence_notify_flags("AKE", out, sizeof out), 0);
    assert_int_equal(sb_presence_notify_flags("AK", out, sizeof out), 1);
    assert_string_equal(out, "AKE");
    assert_int_equal(sb_presence_notify_flags("Kg", out, 3), SB_EINVAL);

    const char *cfg[] = {"notify-keyspace-events", "gK"};
    redisReply *rep = array(2, cfg);
    sb_batch_t *b = sb_batch_create();
    assert_int_equal(sb_presence_notify_set_cmd(b, rep), 0);
    size_t len;
    const char *cmd = sb_batch_cmd(b, 0, &len);
    assert_non_null(memmem(cmd, len, "gKEx", 4));
    freeReplyObject(rep);
    const char *on[] = {"notify-keyspace-events", "AE"};
    rep = array(2, on);
    assert_int_equal(sb_presence_notify_set_cmd(b, rep), 1);
    assert_int_equal(sb_batch_count(b), 1);
    freeReplyObject(rep);
    rep = text(REDIS_REPLY_ERROR, "ERR unknown command 'CONFIG'");
    assert_int_equal(sb_presence_notify_set_cmd(b, rep), SB_EPROTO);
    freeReplyObject(rep);
    sb_batch_free(b);
}

static void test_expired_parse(void **state) {
    (void)state;
    char id[SB_AGENT_ID_MAX + 1], chan[64];
    assert_string_equal(sb_presence_expired_channel(chan, sizeof chan, 3),
                        "__keyevent@3__:expired");
    const char *m1[] = {"message", "__keyevent@0__:expired", "agent:online:host-1-abcd1234"};
    redisReply *rep = array(3, m1);
    assert_int_equal(sb_presence_expired_parse(rep, id, sizeof id), 1);
    assert_string_equal(id, "host-1-abcd1234");
    assert_int_equal(sb_presence_expired_parse(rep, id, 4), 0); /* does not fit */
    freeReplyObject(rep);
    const char *m2[] = {"pmessage", "__keyevent@*__:expired", "__keyevent@5__:expired",
                        "agent:online:550e8400-e29b-41d4-a716-446655440000"};
    rep = array(4, m2);
    assert_int_equal(sb_presence_expired_parse(rep, id, sizeof id), 1);
    assert_string_equal(id, "550e8400-e29b-41d4-a716-446655440000");
    freeReplyObject(rep);
    const char *bad[][3] = {
        {"message", "__keyevent@0__:expired", "agent:rebalance:job:1-a"},
        {"message", "__keyevent@0__:expired", "agent:online:"},
        {"message", "__keyevent@0__:expired", "agent:online:bad id"},
        {"message", "__keyevent@0__:del", "agent:online:host-1-abcd1234"},
        {"message", "agent:presence", "agent:online:host-1-abcd1234"},
        {"subscribe", "__keyevent@0__:expired", "agent:online:host-1-abcd1234"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rep = array(3, bad[i]);
        assert_int_equal(sb_presence_expired_parse(rep, id, sizeof id), 0);
        freeReplyObject(rep);
    }
    assert_int_equal(sb_presence_expired_parse(NULL, id, sizeof id), 0);
}

static void test_event_parse(void **state) {
    (void)state;
    cJSON *doc;
    const char *ev;
    const char ok[] = "{\"event\":\"agent:status\",\"agent\":{\"agent_id\":\"a1\"}}";
    assert_int_equal(sb_presence_event_parse(ok, strlen(ok), &doc, &ev), SB_OK);
    assert_string_equal(ev, "agent:status");
    cJSON_Delete(doc);
    const char *bad[] = {"{", "{\"event\":\"agent:gone\",\"agent\":{}}", "{\"event\":\"agent:online\"}",
                         "[]", "{\"event\":1,\"agent\":{}}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(sb_presence_event_parse(bad[i], strlen(bad[i]), &doc, &ev), SB_EINVAL);
        assert_null(doc);
    }
}

static void test_list_and_stats_replies(void **state) {
    (void)state;
    const char *recs[] = {
        "{\"agent_id\":\"b\",\"department_id\":\"d1\",\"department\":\"One\",\"status\":\"busy\","
        "\"current_chats\":2,\"max_chats\":5}",
        "not json",
        "{\"agent_id\":\"a\",\"department_id\":\"d1\",\"department\":\"One\",\"status\":\"online\","
        "\"current_chats\":1,\"max_chats\":5}",
        "{\"agent_id\":\"c\",\"department_id\":\"\",\"status\":\"away\",\"current_chats\":0,"
        "\"max_chats\":3}",
    };
    redisReply *rep = array(4, recs);
    cJSON *list = NULL, *stats = NULL;
    assert_int_equal(sb_presence_list_reply(rep, &list), SB_OK);
    assert_int_equal(cJSON_GetArraySize(list), 3); /* garbage skipped */
    assert_string_equal(sb_json_str(cJSON_GetArrayItem(list, 0), "agent_id"), "c");
    assert_string_equal(sb_json_str(cJSON_GetArrayItem(list, 1), "agent_id"), "a");
    assert_int_equal(sb_presence_stats_reply(rep, &stats), SB_OK);
    char *txt = sb_json_print(stats);
    assert_string_equal(txt,
        "{\"total\":3,\"by_status\":{\"online\":1,\"busy\":1,\"away\":1},\"departments\":["
        "{\"department_id\":\"\",\"department\":\"\",\"total\":1,\"online\":0,\"busy\":0,"
        "\"away\":1,\"current_chats\":0,\"max_chats\":3},"
        "{\"department_id\":\"d1\",\"department\":\"One\",\"total\":2,\"online\":1,\"busy\":1,"
        "\"away\":0,\"current_chats\":3,\"max_chats\":10}]}");
    free(txt);
    cJSON_Delete(list);
    cJSON_Delete(stats);
    freeReplyObject(rep);

    rep = text(REDIS_REPLY_ERROR, "ERR boom");
    assert_int_equal(sb_presence_list_reply(rep, &list), SB_EPROTO);
    assert_int_equal(sb_presence_record_reply(rep, NULL), SB_EPROTO);
    assert_int_equal(sb_presence_offline_reply(rep, NULL), SB_EPROTO);
    freeReplyObject(rep);
    redisReply nil = {.type = REDIS_REPLY_NIL};
    assert_int_equal(sb_presence_record_reply(&nil, NULL), SB_ENOTFOUND);
    const char *page[] = {"17", NULL};
    rep = array(2, page);
    char cursor[32];
    assert_int_equal(sb_presence_sweep_reply(rep, cursor, sizeof cursor, NULL), SB_EPROTO);
    rep->element[1]->type = REDIS_REPLY_INTEGER;
    rep->element[1]->integer = 4;
    int retired = 0;
    assert_int_equal(sb_presence_sweep_reply(rep, cursor, sizeof cursor, &retired), SB_OK);
    assert_string_equal(cursor, "17");
    assert_int_equal(retired, 4);
    freeReplyObject(rep);
}

static void test_builders(void **state) {
    (void)state;
    sb_presence_ctx_t ctx;
    sb_presence_init(&ctx, 300, 5);
    sb_batch_t *b = sb_batch_create();
    sb_presence_t p = {.agent_id = "550e8400-e29b-41d4-a716-446655440000", .name = "N"};
    assert_int_equal(sb_presence_heartbeat_cmd(b, &ctx, &p, 0, SB_SCRIPT_EVALSHA), SB_OK);
    size_t len;
    const char *cmd = sb_batch_cmd(b, 0, &len);
    assert_non_null(memmem(cmd, len, "EVALSHA", 7));
    assert_non_null(memmem(cmd, len, ctx.heartbeat.sha1, 40));
    assert_non_null(memmem(cmd, len, SB_PRESENCE_CHANNEL, strlen(SB_PRESENCE_CHANNEL)));
    assert_int_equal(sb_presence_offline_cmd(b, &ctx, "x y", 0, SB_SCRIPT_EVAL), SB_EINVAL);
    assert_int_equal(sb_presence_assign_cmd(b, &ctx, NULL, 0, SB_SCRIPT_EVAL), SB_EINVAL);
    assert_int_equal(sb_presence_get_cmd(b, "a*"), SB_EINVAL);
    assert_int_equal(sb_presence_sweep_cmd(b, &ctx, "1x", 10, 0, SB_SCRIPT_EVAL), SB_EINVAL);
    assert_int_equal(sb_batch_count(b), 1); /* nothing appended on error */
    assert_int_equal(sb_presence_release_cmd(b, &ctx, "host-1-abcd1234", SB_SCRIPT_EVAL), SB_OK);
    cmd = sb_batch_cmd(b, 1, &len);
    assert_non_null(memmem(cmd, len, "$4\r\nEVAL\r\n", 10));
    sb_batch_free(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_agent_ids),
        cmocka_unit_test(test_notify_flags),
        cmocka_unit_test(test_expired_parse),
        cmocka_unit_test(test_event_parse),
        cmocka_unit_test(test_list_and_stats_replies),
        cmocka_unit_test(test_builders),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
