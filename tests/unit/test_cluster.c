/* Unit tests of Redis Cluster's rules (cluster.h) that need no server: CRC16 and key slots
 * with hash tags (the spec's vectors; the slots were read from redis-server 7's CLUSTER
 * KEYSLOT), the first key of each kind of command, MOVED/ASK parsing (good and malformed), and
 * the slot map read from a CLUSTER SLOTS reply (built by hiredis's reader from RESP text). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include "switchboard/cluster.h"
#include "switchboard/error.h"
#include "switchboard/job.h"
#include "switchboard/metrics.h"

static int slot_of(const char *key) { return sb_cluster_keyslot(key, strlen(key)); }

static void test_crc16_and_slots(void **state) {
    (void)state;
    assert_int_equal(sb_cluster_crc16("123456789", 9), 0x31C3); /* the spec's check value */
    assert_int_equal(slot_of("123456789"), 12739);
    assert_int_equal(slot_of(""), 0);
    assert_int_equal(slot_of("{user1000}.following"), 3443);
    assert_int_equal(slot_of("{user1000}.followers"), 3443);
    assert_int_equal(slot_of("user1000"), 3443);
    assert_int_equal(slot_of("foo{}{bar}"), 8363);    /* empty tag: the whole key */
    assert_int_equal(slot_of("foo{{bar}}zap"), 4015); /* the tag is "{bar" */
    assert_int_equal(slot_of("{bar"), 4015);
    assert_int_equal(slot_of("foo{bar}{zap}"), 5061); /* the first tag only */
    assert_int_equal(slot_of("bar"), 5061);
    assert_int_equal(slot_of("agent:{rebalance.0}:jobs"), 11005);
    assert_int_equal(slot_of("agent:{rebalance.0}:job:42"), 11005);
    /* binary keys: the length counts, not a NUL */
    assert_int_equal(sb_cluster_keyslot("a\0{x}", 5), sb_cluster_keyslot("x", 1));
}

/* The first key's index in the command given as words. */
static int key_of(int argc, const char **argv) {
    size_t lens[16];
    for (int i = 0; i < argc; i++) lens[i] = strlen(argv[i]);
    return sb_cluster_key_index(argc, argv, lens);
}
#define KEY_OF(...) key_of(sizeof((const char *[]){__VA_ARGS__}) / sizeof(char *), \
                           (const char *[]){__VA_ARGS__})

static void test_key_index(void **state) {
    (void)state;
    assert_int_equal(KEY_OF("GET", "k"), 1);
    assert_int_equal(KEY_OF("hset", "k", "f", "v"), 1);
    assert_int_equal(KEY_OF("BLMOVE", "a", "b", "LEFT", "RIGHT", "1"), 1);
    assert_int_equal(KEY_OF("EVALSHA", "abc", "2", "k1", "k2", "arg"), 3);
    assert_int_equal(KEY_OF("eval", "return 1", "0", "arg"), -1);
    assert_int_equal(KEY_OF("EVAL", "return 1", "x", "k"), -1); /* not a count */
    assert_int_equal(KEY_OF("XREADGROUP", "GROUP", "g", "c", "COUNT", "1", "STREAMS", "s", ">"),
                     7);
    assert_int_equal(KEY_OF("XREAD", "BLOCK", "0", "streams", "s", "$"), 4);
    assert_int_equal(KEY_OF("XGROUP", "CREATE", "s", "g", "$"), 2);
    assert_int_equal(KEY_OF("PING"), -1);
    assert_int_equal(KEY_OF("SCRIPT", "LOAD", "return 1"), -1);
    assert_int_equal(KEY_OF("PUBLISH", "ch", "m"), -1);
    assert_int_equal(KEY_OF("subscribe", "ch"), -1);
    assert_int_equal(KEY_OF("MULTI"), -1);
    assert_int_equal(KEY_OF("SCAN", "0", "MATCH", "agent:{t}:processing:*", "COUNT", "9"), 3);
    assert_int_equal(KEY_OF("SCAN", "0", "MATCH", "agent:t:processing:*"), -1);
    assert_int_equal(KEY_OF("SCAN", "0", "MATCH", "agent:{t*}:x"), -1); /* glob in the tag */
    assert_int_equal(KEY_OF("SCAN", "0", "MATCH", "*{t}"), -1);
    assert_int_equal(KEY_OF("SCAN", "0"), -1);
}

static void test_cmd_slot(void **state) {
    (void)state;
    const char *argv[] = {"EVALSHA", "sha", "1", "{user1000}.x", "a"};
    sb_batch_t *b = sb_batch_create();
    assert_int_equal(sb_batch_addargv(b, 5, argv, NULL), SB_OK);
    assert_int_equal(sb_batch_add(b, "PING"), SB_OK);
    size_t len;
    const char *cmd = sb_batch_cmd(b, 0, &len);
    assert_int_equal(sb_cluster_cmd_slot(cmd, len), 3443);
    cmd = sb_batch_cmd(b, 1, &len);
    assert_int_equal(sb_cluster_cmd_slot(cmd, len), -1);
    assert_int_equal(sb_cluster_cmd_slot("+OK\r\n", 5), SB_EINVAL);   /* not a command */
    assert_int_equal(sb_cluster_cmd_slot("*2\r\n$3\r\nGET", 12), SB_EINVAL); /* cut short */
    /* a header declaring a huge array or string is refused, not allocated (fuzz_config) */
    assert_int_equal(sb_cluster_cmd_slot("*333333361\r\n$3333337", 20), SB_EINVAL);
    assert_int_equal(sb_cluster_cmd_slot("*1\r\n$3333337\r\nGET\r\n", 19), SB_EINVAL);
    assert_int_equal(sb_cluster_cmd_slot("*1\r\n$3\r\nGET\r\n+", 14), SB_EINVAL); /* trailing */
    assert_int_equal(sb_cluster_cmd_slot("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", 20),
                     sb_cluster_keyslot("k", 1));
    sb_batch_free(b);
}

static void test_redirect_parse(void **state) {
    (void)state;
    redisReply e = {.type = REDIS_REPLY_ERROR};
    sb_redirect_t d;
    e.str = "MOVED 3999 127.0.0.1:6381";
    assert_int_equal(sb_cluster_redirect_parse(&e, &d), SB_REDIRECT_MOVED);
    assert_int_equal(d.slot, 3999);
    assert_string_equal(d.host, "127.0.0.1");
    assert_int_equal(d.port, 6381);
    e.str = "ASK 16383 ::1:7000";
    assert_int_equal(sb_cluster_redirect_parse(&e, &d), SB_REDIRECT_ASK);
    assert_int_equal(d.kind, SB_REDIRECT_ASK);
    assert_int_equal(d.slot, 16383);
    assert_string_equal(d.host, "::1");
    assert_int_equal(d.port, 7000);
    const char *bad[] = {"MOVED", "MOVED x 1.2.3.4:5", "MOVED 16384 h:1", "MOVED 1 h:0",
                         "MOVED 1 h", "MOVED 1 :5", "ASK 1 h:5 extra", "ERR MOVED 1 h:2",
                         "MOVEDX 1 h:2", "NOSCRIPT x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        e.str = (char *)bad[i];
        assert_int_equal(sb_cluster_redirect_parse(&e, &d), SB_REDIRECT_NONE);
        assert_int_equal(d.kind, SB_REDIRECT_NONE);
    }
    e.str = "CLUSTERDOWN The cluster is down"; /* not a redirect, but worth sending again */
    assert_int_equal(sb_cluster_redirect_parse(&e, &d), SB_REDIRECT_NONE);
    assert_true(sb_reply_is_transient(&e));
    e.str = "MOVED 1 h:2";
    assert_false(sb_reply_is_transient(&e));
    redisReply s = {.type = REDIS_REPLY_STATUS, .str = "MOVED 1 h:2"};
    assert_int_equal(sb_cluster_redirect_parse(&s, &d), SB_REDIRECT_NONE);
    assert_int_equal(sb_cluster_redirect_parse(NULL, &d), SB_REDIRECT_NONE);
}

/* A reply parsed from RESP text by hiredis (the caller frees it). */
static redisReply *resp(const char *text) {
    redisReader *rd = redisReaderCreate();
    void *rep = NULL;
    redisReaderFeed(rd, text, strlen(text));
    assert_int_equal(redisReaderGetReply(rd, &rep), REDIS_OK);
    redisReaderFree(rd);
    assert_non_null(rep);
    return rep;
}

#define NODE(host, port) "*3\r\n$" #host "\r\n:" #port "\r\n$2\r\nid\r\n"

static void test_slotmap_parse(void **state) {
    (void)state;
    char err[256];
    sb_slotmap_t map;
    /* two masters, one with a replica, one with an empty host (the asked node's) */
    redisReply *r = resp("*3\r\n"
                         "*4\r\n:0\r\n:8000\r\n*3\r\n$8\r\n10.0.0.1\r\n:7000\r\n$1\r\na\r\n"
                         "*3\r\n$8\r\n10.0.0.9\r\n:7009\r\n$1\r\nr\r\n"
                         "*3\r\n:8001\r\n:9000\r\n*3\r\n$0\r\n\r\n:7001\r\n$1\r\nb\r\n"
                         "*3\r\n:9001\r\n:16383\r\n*3\r\n$8\r\n10.0.0.1\r\n:7000\r\n$1\r\na\r\n");
    assert_int_equal(sb_slotmap_parse(&map, r, "10.0.0.2", err, sizeof err), SB_OK);
    assert_int_equal(map.nnodes, 2);
    assert_string_equal(map.nodes[map.owner[0]].host, "10.0.0.1");
    assert_int_equal(map.nodes[map.owner[8000]].port, 7000);
    assert_string_equal(map.nodes[map.owner[8001]].host, "10.0.0.2");
    assert_int_equal(map.nodes[map.owner[9000]].port, 7001);
    assert_int_equal(map.owner[16383], map.owner[0]);
    sb_slotmap_free(&map);
    freeReplyObject(r);
    /* a slot left uncovered, a bad shape, an error reply: refused with a reason */
    r = resp("*1\r\n*3\r\n:0\r\n:100\r\n*3\r\n$1\r\nh\r\n:1\r\n$1\r\na\r\n");
    assert_int_equal(sb_slotmap_parse(&map, r, "x", err, sizeof err), SB_EINVAL);
    assert_non_null(strstr(err, "slot 101"));
    assert_null(map.nodes);
    freeReplyObject(r);
    r = resp("*1\r\n*2\r\n:0\r\n:16383\r\n");
    assert_int_equal(sb_slotmap_parse(&map, r, "x", err, sizeof err), SB_EINVAL);
    freeReplyObject(r);
    r = resp("*1\r\n*3\r\n:5\r\n:1\r\n*3\r\n$1\r\nh\r\n:1\r\n$1\r\na\r\n");
    assert_int_equal(sb_slotmap_parse(&map, r, "x", err, sizeof err), SB_EINVAL);
    freeReplyObject(r);
    r = resp("-ERR This instance has cluster support disabled\r\n");
    assert_int_equal(sb_slotmap_parse(&map, r, "x", err, sizeof err), SB_EINVAL);
    assert_non_null(strstr(err, "cluster support disabled"));
    freeReplyObject(r);
}

/* Key names: seed-compatible by default; in the cluster style the type is a hash tag, so every
 * key of a type (and its metrics) shares one slot, while the channels keep their names. */
static void test_key_style(void **state) {
    (void)state;
    char k[SB_KEY_LEN];
    assert_string_equal(sb_key(k, sizeof k, SB_KEY_JOBS, "rebalance", NULL), "agent:rebalance:jobs");
    sb_key_style_set(SB_KEYS_CLUSTER);
    assert_string_equal(sb_key(k, sizeof k, SB_KEY_JOBS, "rebalance", NULL),
                        "agent:{rebalance}:jobs");
    int slot = slot_of(k);
    assert_string_equal(sb_key(k, sizeof k, SB_KEY_JOB, "rebalance", "1-a"),
                        "agent:{rebalance}:job:1-a");
    assert_int_equal(slot_of(k), slot);
    assert_string_equal(sb_key_prefix(k, sizeof k, "rebalance"), "agent:{rebalance}:");
    assert_int_equal(slot_of(k), slot);
    assert_non_null(sb_metrics_key(k, sizeof k, "rebalance", "failed", "1-a"));
    assert_string_equal(k, "metrics:agent:{rebalance}:failed:1-a");
    assert_int_equal(slot_of(k), slot);
    assert_string_equal(sb_key(k, sizeof k, SB_KEY_STATUS, "rebalance", NULL),
                        "agent:rebalance:status");
    assert_string_equal(sb_key(k, sizeof k, SB_KEY_EVENTS, "rebalance", NULL),
                        "agent:rebalance:events");
    assert_null(sb_key(k, 12, SB_KEY_JOBS, "rebalance", NULL));
    assert_string_equal(k, "");
    sb_key_style_set(SB_KEYS_PLAIN);
    assert_string_equal(sb_key_prefix(k, sizeof k, "rebalance"), "agent:rebalance:");
    assert_non_null(sb_metrics_key(k, sizeof k, "rebalance", "failed", "1-a"));
    assert_string_equal(k, "metrics:agent:rebalance:failed:1-a");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc16_and_slots),
        cmocka_unit_test(test_key_index),
        cmocka_unit_test(test_cmd_slot),
        cmocka_unit_test(test_redirect_parse),
        cmocka_unit_test(test_slotmap_parse),
        cmocka_unit_test(test_key_style),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
