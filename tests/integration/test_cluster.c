/* Integration tests of the Redis Cluster client (cluster.h) against a real three-master cluster
 * on loopback (helpers/sb_test_cluster.h): commands routed to the node serving their key
 * through a plain sb_redis_t whose address names the cluster, pipelines split over nodes with
 * replies in order, scripts and transactions on their key's node, ASK followed while a slot
 * migrates and MOVED once it has moved (CLUSTER SETSLOT + MIGRATE, as redis-cli --cluster
 * reshard does), pub/sub across nodes, a dead seed skipped, and recovery after every
 * connection is killed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include "sb_test_cluster.h"
#include "sb_test_redis.h"
#include "switchboard/cluster.h"
#include "switchboard/error.h"
#include "switchboard/log.h"

static sb_test_cluster_t cl;

static int setup(void **state) {
    (void)state;
    return sb_test_cluster_flush(&cl);
}

/* A cluster-aware sb_redis_t, connected. */
static sb_redis_t *client(void) {
    char err[256];
    sb_redis_t *r = sb_redis_create(&cl.addr, "test");
    assert_non_null(r);
    if (sb_redis_connect(r, err, sizeof err) != SB_OK) fail_msg("connect: %s", err);
    return r;
}

static redisReply *cmd_ok(sb_redis_t *r, const char *fmt, const char *a, const char *b) {
    redisReply *rep = sb_redis_cmd(r, fmt, a, b);
    assert_non_null(rep);
    if (rep->type == REDIS_REPLY_ERROR) fail_msg("%s: %s", fmt, rep->str);
    return rep;
}

static void run_ok(sb_redis_t *r, const char *fmt, const char *a, const char *b) {
    freeReplyObject(cmd_ok(r, fmt, a, b));
}

static long long int_of(sb_redis_t *r, const char *fmt, const char *a) {
    redisReply *rep = cmd_ok(r, fmt, a, NULL);
    assert_int_equal(rep->type, REDIS_REPLY_INTEGER);
    long long v = rep->integer;
    freeReplyObject(rep);
    return v;
}

static void expect_get(sb_redis_t *r, const char *key, const char *want) {
    redisReply *rep = cmd_ok(r, "GET %s", key, NULL);
    assert_int_equal(rep->type, REDIS_REPLY_STRING);
    assert_string_equal(rep->str, want);
    freeReplyObject(rep);
}

static void test_routes_by_key(void **state) {
    (void)state;
    sb_redis_t *r = client();
    char key[32], val[32];
    for (int i = 0; i < 200; i++) {
        snprintf(key, sizeof key, "key:%d", i);
        snprintf(val, sizeof val, "v%d", i);
        run_ok(r, "SET %s %s", key, val);
    }
    for (int i = 0; i < 200; i += 7) {
        snprintf(key, sizeof key, "key:%d", i);
        snprintf(val, sizeof val, "v%d", i);
        expect_get(r, key, val);
        assert_int_equal(sb_test_cluster_holders(&cl, key), 1);
    }
    /* spread over every master, nothing anywhere else */
    long long total = 0;
    for (int i = 0; i < cl.n; i++) {
        sb_redis_t *d = sb_test_cluster_node(&cl, i);
        long long n = int_of(d, "DBSIZE", NULL);
        assert_true(n > 0);
        total += n;
        sb_redis_free(d);
    }
    assert_int_equal(total, 200);
    sb_redis_free(r);
}

static void test_pipeline_over_nodes(void **state) {
    (void)state;
    sb_redis_t *r = client();
    sb_batch_t *b = sb_batch_create();
    char key[32];
    for (int i = 0; i < 30; i++) {
        snprintf(key, sizeof key, "p:%d", i);
        assert_int_equal(sb_batch_add(b, "INCRBY %s %d", key, i), SB_OK);
    }
    assert_int_equal(sb_batch_add(b, "PING"), SB_OK);
    redisReply *rep[31];
    assert_int_equal(sb_redis_pipeline(r, b, rep), SB_OK);
    for (int i = 0; i < 30; i++) {
        assert_int_equal(rep[i]->type, REDIS_REPLY_INTEGER);
        assert_int_equal(rep[i]->integer, i); /* each reply in its command's place */
    }
    assert_int_equal(rep[30]->type, REDIS_REPLY_STATUS);
    sb_replies_free(rep, 31);
    sb_batch_free(b);
    sb_redis_free(r);
}

static void test_script_and_transaction(void **state) {
    (void)state;
    sb_redis_t *r = client();
    sb_script_t s;
    sb_script_init(&s, "redis.call('SET', KEYS[1], ARGV[1]); "
                       "return redis.call('INCR', KEYS[2])");
    const char *argv[] = {"{u7}.name", "{u7}.count", "ann"};
    for (int i = 1; i <= 2; i++) {
        redisReply *rep = sb_redis_eval(r, &s, 2, 3, argv, NULL);
        assert_non_null(rep);
        if (rep->type == REDIS_REPLY_ERROR) fail_msg("eval: %s", rep->str);
        assert_int_equal(rep->integer, i);
        freeReplyObject(rep);
    }
    expect_get(r, "{u7}.name", "ann");
    sb_batch_t *b = sb_batch_create();
    assert_int_equal(sb_batch_add(b, "MULTI"), SB_OK);
    assert_int_equal(sb_batch_add(b, "INCR {t9}a"), SB_OK);
    assert_int_equal(sb_batch_add(b, "INCR {t9}b"), SB_OK);
    assert_int_equal(sb_batch_add(b, "EXEC"), SB_OK);
    redisReply *rep[4];
    assert_int_equal(sb_redis_pipeline(r, b, rep), SB_OK);
    assert_int_equal(rep[3]->type, REDIS_REPLY_ARRAY);
    assert_int_equal(rep[3]->elements, 2);
    assert_int_equal(rep[3]->element[1]->integer, 1);
    sb_replies_free(rep, 4);
    sb_batch_free(b);
    sb_redis_free(r);
}

/* ---- resharding: ASK while the slot migrates, MOVED once it moved ---------------------------- */

static redisReply *cl_get(sb_cluster_t *c, const char *key) {
    sb_batch_t *b = sb_batch_create();
    redisReply *rep = NULL;
    assert_int_equal(sb_batch_add(b, "GET %s", key), SB_OK);
    assert_int_equal(sb_cluster_pipeline(c, b, &rep), SB_OK);
    sb_batch_free(b);
    return rep;
}

static void expect_cl_get(sb_cluster_t *c, const char *key, const char *want) {
    redisReply *rep = cl_get(c, key);
    if (rep->type == REDIS_REPLY_ERROR) fail_msg("GET %s: %s", key, rep->str);
    assert_string_equal(rep->str, want);
    freeReplyObject(rep);
}

static void test_ask_then_moved(void **state) {
    (void)state;
    const char *key = "migrating:key";
    char err[256];
    sb_redis_t *r = client();
    run_ok(r, "SET %s %s", key, "here");
    sb_cluster_t *c = sb_cluster_create(&cl.addr, "test");
    assert_int_equal(sb_cluster_connect(c, err, sizeof err), SB_OK);
    assert_int_equal(sb_cluster_masters(c), 3);
    expect_cl_get(c, key, "here");
    assert_int_equal(sb_cluster_redirects(c, SB_REDIRECT_MOVED), 0);

    int from = sb_test_cluster_master_of(&cl, key), to = (from + 1) % cl.masters;
    assert_true(from >= 0);
    assert_int_equal(sb_test_cluster_migrate_key(&cl, key, from, to), 0);

    /* the key is on `to`, the slot still `from`'s: from answers ASK */
    expect_cl_get(c, key, "here");
    assert_int_equal(sb_cluster_redirects(c, SB_REDIRECT_ASK), 1);
    assert_int_equal(sb_cluster_redirects(c, SB_REDIRECT_MOVED), 0);
    expect_get(r, key, "here"); /* through sb_redis_t too */

    assert_int_equal(sb_test_cluster_assign_slot(&cl, sb_cluster_keyslot(key, strlen(key)), to),
                     0);
    assert_int_equal(sb_test_cluster_master_of(&cl, key), to);
    /* the slot moved: MOVED, followed, and the map updated */
    expect_cl_get(c, key, "here");
    assert_int_equal(sb_cluster_redirects(c, SB_REDIRECT_MOVED), 1);
    expect_cl_get(c, key, "here");
    assert_int_equal(sb_cluster_redirects(c, SB_REDIRECT_MOVED), 1);
    assert_int_equal(sb_cluster_redirects(c, SB_REDIRECT_ASK), 1);
    expect_get(r, key, "here");
    sb_cluster_free(c);
    sb_redis_free(r);
}

/* redis-cli --cluster reshard moves 3000 slots while INCRs run through the cluster client:
 * every INCR acknowledged is counted exactly once, none fails, and redirects were followed. */
static void test_reshard_under_load(void **state) {
    (void)state;
    enum { NKEYS = 300 };
    static long long acked[NKEYS];
    memset(acked, 0, sizeof acked);
    char err[256], key[32];
    sb_cluster_t *c = sb_cluster_create(&cl.addr, "test");
    assert_int_equal(sb_cluster_connect(c, err, sizeof err), SB_OK);
    sb_batch_t *b = sb_batch_create();
    pid_t pid = sb_test_cluster_reshard(&cl, 0, 1, 3000);
    assert_true(pid > 0);
    int status = -1, done = 0;
    long rounds = 0;
    while (!done || rounds < 3) { /* at least three rounds after the reshard ended */
        if (!done && waitpid(pid, &status, WNOHANG) == pid) {
            done = 1;
            rounds = 0;
        }
        for (int i = 0; i < NKEYS; i++) {
            snprintf(key, sizeof key, "rk:%d", i);
            sb_batch_reset(b);
            assert_int_equal(sb_batch_add(b, "INCR %s", key), SB_OK);
            redisReply *rep = NULL;
            assert_int_equal(sb_cluster_pipeline(c, b, &rep), SB_OK);
            if (rep->type != REDIS_REPLY_INTEGER) fail_msg("INCR %s: %s", key, rep->str);
            acked[i]++;
            assert_int_equal(rep->integer, acked[i]); /* once, in order */
            freeReplyObject(rep);
        }
        rounds++;
    }
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_true(sb_cluster_redirects(c, SB_REDIRECT_MOVED) +
                sb_cluster_redirects(c, SB_REDIRECT_ASK) > 0);
    sb_redis_t *r = client();
    for (int i = 0; i < NKEYS; i++) {
        snprintf(key, sizeof key, "rk:%d", i);
        char want[32];
        snprintf(want, sizeof want, "%lld", acked[i]);
        expect_get(r, key, want);
    }
    sb_redis_free(r);
    sb_batch_free(b);
    sb_cluster_free(c);
}

static void test_pubsub_across_nodes(void **state) {
    (void)state;
    sb_redis_t *sub = client();
    run_ok(sub, "SUBSCRIBE %s", "news", NULL);
    for (int i = 0; i < cl.masters; i++) {
        char msg[16];
        snprintf(msg, sizeof msg, "from-%d", i);
        assert_int_equal(sb_test_cluster_run(&cl, i, "PUBLISH news %s", msg, NULL), 0);
        int timed_out = 0;
        redisReply *rep = sb_redis_read_wait(sub, 5000, &timed_out);
        assert_non_null(rep);
        assert_int_equal(rep->type, REDIS_REPLY_ARRAY);
        assert_string_equal(rep->element[2]->str, msg);
        freeReplyObject(rep);
    }
    sb_redis_free(sub);
}

static void test_dead_seed_and_lost_connections(void **state) {
    (void)state;
    char seeds[sizeof cl.seeds + 32];
    snprintf(seeds, sizeof seeds, "127.0.0.1:1,%s", cl.seeds); /* nobody listens on port 1 */
    sb_redis_addr_t a = cl.addr;
    a.cluster = seeds;
    char err[256];
    sb_redis_t *r = sb_redis_create(&a, "test");
    assert_int_equal(sb_redis_connect(r, err, sizeof err), SB_OK);
    run_ok(r, "SET %s %s", "k1", "a");
    run_ok(r, "SET %s %s", "k2", "b");
    /* every client connection dropped by the servers: the next command fails, ensure
     * reconnects (loading the map again), and everything works */
    for (int i = 0; i < cl.n; i++)
        assert_int_equal(sb_test_cluster_run(&cl, i, "CLIENT KILL TYPE %s", "normal", NULL), 0);
    assert_null(sb_redis_cmd(r, "GET k1"));
    assert_false(sb_redis_connected(r));
    assert_int_equal(sb_redis_ensure(r, NULL), SB_OK);
    expect_get(r, "k1", "a");
    expect_get(r, "k2", "b");
    sb_redis_free(r);
    /* no node at all: a clear error, not a hang */
    a.cluster = "127.0.0.1:1";
    r = sb_redis_create(&a, "test");
    assert_int_not_equal(sb_redis_connect(r, err, sizeof err), SB_OK);
    assert_non_null(strstr(err, "no cluster node"));
    sb_redis_free(r);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    if (sb_test_cluster_start(&cl) != 0) return 1;
    sb_log_set_level(SB_LOG_ERROR);
    struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_routes_by_key, setup),
        cmocka_unit_test_setup(test_pipeline_over_nodes, setup),
        cmocka_unit_test_setup(test_script_and_transaction, setup),
        cmocka_unit_test_setup(test_ask_then_moved, setup),
        cmocka_unit_test_setup(test_reshard_under_load, setup),
        cmocka_unit_test_setup(test_pubsub_across_nodes, setup),
        cmocka_unit_test_setup(test_dead_seed_and_lost_connections, setup),
    };
    int rc = sb_test_run("cluster", tests, sizeof tests / sizeof tests[0]);
    sb_test_cluster_stop(&cl);
    return rc;
}
