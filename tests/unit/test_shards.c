/* Unit tests of queue shards (job.h, QUEUE_SHARDS): queue names and their parsing, the shard a
 * job id names, the shard of a user, sharded ids, and the keys of a shard in both key styles
 * (the channels always carry the base type; in the cluster style the queue name is the hash
 * tag, so the shards of a type land in different slots). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include "switchboard/cluster.h"
#include "switchboard/error.h"
#include "switchboard/job.h"
#include "switchboard/metrics.h"

static void test_queue_names(void **state) {
    (void)state;
    char q[SB_QUEUE_LEN], type[SB_TYPE_MAX + 1];
    int s = -1;
    assert_string_equal(sb_queue_name(q, "rebalance", 0), "rebalance");
    assert_string_equal(sb_queue_name(q, "rebalance", 3), "rebalance.3");
    assert_string_equal(sb_queue_name(q, "rebalance", 255), "rebalance.255");
    assert_null(sb_queue_name(q, "rebalance", 256));
    assert_string_equal(q, "");
    assert_null(sb_queue_name(q, "rebalance", -1));
    assert_null(sb_queue_name(q, "Bad", 1));
    /* the longest type with the largest shard fits */
    const char *longest = "abcdefghijklmnopqrstuvwxyz012345";
    assert_non_null(sb_queue_name(q, longest, 255));
    assert_int_equal(strlen(q), SB_TYPE_MAX + 4);

    assert_int_equal(sb_queue_parse("rebalance", type, &s), SB_OK);
    assert_string_equal(type, "rebalance");
    assert_int_equal(s, 0);
    assert_int_equal(sb_queue_parse("rebalance.17", type, &s), SB_OK);
    assert_string_equal(type, "rebalance");
    assert_int_equal(s, 17);
    const char *bad[] = {"rebalance.0", "rebalance.", "rebalance.256", "rebalance.01",
                         "rebalance.1.2", "rebalance.x", ".3", "Re.1", "", NULL};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(sb_queue_parse(bad[i], type, &s), SB_EINVAL);
    /* every name sb_queue_name writes parses back */
    for (int i = 0; i < SB_SHARDS_MAX; i++) {
        assert_int_equal(sb_queue_parse(sb_queue_name(q, "a-b_c", i), type, &s), SB_OK);
        assert_string_equal(type, "a-b_c");
        assert_int_equal(s, i);
    }
}

static void test_id_shards(void **state) {
    (void)state;
    char id[SB_JOB_ID_LEN], q[SB_QUEUE_LEN];
    assert_int_equal(sb_job_id_shard("1700000000000-abcdef01", 6), 0);
    assert_int_equal(sb_job_id_shard("1700000000000-abcdef01s5", 6), 5);
    assert_int_equal(sb_job_id_shard("1700000000000-abcdef01s6", 6), -1); /* beyond N */
    assert_int_equal(sb_job_id_shard("1700000000000-abcdef01s5", 1), -1);
    assert_int_equal(sb_job_id_shard("1700000000000-abcdef01s", 6), 0);   /* no number */
    assert_int_equal(sb_job_id_shard("1700000000000-abcs05", 6), 0);      /* leading zero */
    assert_int_equal(sb_job_id_shard("not-an-id", 6), -1);
    assert_int_equal(sb_job_id_shard(NULL, 6), -1);
    for (int s = 0; s < 40; s++) {
        assert_int_equal(sb_job_id_new_in(id, NULL, s), SB_OK);
        assert_true(sb_job_id_valid(id));
        assert_int_equal(sb_job_id_shard(id, 40), s);
        assert_int_equal(strchr(id, 's') != NULL, s > 0);
    }
    sb_queue_shards_set(6);
    assert_int_equal(sb_queue_shards(), 6);
    assert_string_equal(sb_queue_of_job(q, "rebalance", "1-abcs4"), "rebalance.4");
    assert_string_equal(sb_queue_of_job(q, "rebalance.2", "1-abc"), "rebalance");
    assert_null(sb_queue_of_job(q, "rebalance", "1-abcs9"));
    assert_null(sb_queue_of_job(q, "rebalance", "bad"));
    sb_queue_shards_set(1);
    assert_null(sb_queue_of_job(q, "rebalance", "1-abcs4"));
    assert_string_equal(sb_queue_of_job(q, "rebalance", "1-abc"), "rebalance");
    sb_queue_shards_set(0);
    assert_int_equal(sb_queue_shards(), 1);
    sb_queue_shards_set(1000);
    assert_int_equal(sb_queue_shards(), SB_SHARDS_MAX);
    sb_queue_shards_set(1);
}

/* One user always maps to one shard (crc16 % N, the cluster's CRC16); many users spread. */
static void test_user_shards(void **state) {
    (void)state;
    char q[SB_QUEUE_LEN], pk[32];
    int seen[6] = {0};
    assert_int_equal(sb_queue_shard_of_user("alice", 1), 0);
    assert_int_equal(sb_queue_shard_of_user("alice", 6),
                     sb_cluster_crc16("alice", 5) % 6);
    for (int i = 0; i < 300; i++) {
        snprintf(pk, sizeof pk, "user-%d", i);
        int s = sb_queue_shard_of_user(pk, 6);
        assert_true(s >= 0 && s < 6);
        assert_int_equal(sb_queue_shard_of_user(pk, 6), s);
        seen[s]++;
    }
    for (int s = 0; s < 6; s++) assert_true(seen[s] > 20);
    sb_queue_shards_set(6);
    int s = sb_queue_shard_of_user("alice", 6);
    char want[SB_QUEUE_LEN];
    assert_string_equal(sb_queue_of_user(q, "rebalance", "alice"),
                        sb_queue_name(want, "rebalance", s));
    sb_queue_shards_set(1);
    assert_string_equal(sb_queue_of_user(q, "rebalance", "alice"), "rebalance");
}

/* A shard's keys: the queue name in the type's place; channels name the base type. */
static void test_shard_keys(void **state) {
    (void)state;
    char k[SB_KEY_LEN];
    assert_string_equal(sb_key(k, sizeof k, SB_KEY_JOBS, "rebalance.3", NULL),
                        "agent:rebalance.3:jobs");
    assert_string_equal(sb_key(k, sizeof k, SB_KEY_STATUS, "rebalance.3", NULL),
                        "agent:rebalance:status");
    assert_string_equal(sb_key(k, sizeof k, SB_KEY_EVENTS, "rebalance.3", NULL),
                        "agent:rebalance:events");
    sb_key_style_set(SB_KEYS_CLUSTER);
    assert_string_equal(sb_key(k, sizeof k, SB_KEY_JOBS, "rebalance.3", NULL),
                        "agent:{rebalance.3}:jobs");
    int slot3 = sb_cluster_keyslot(k, strlen(k));
    assert_non_null(sb_metrics_key(k, sizeof k, "rebalance.3", "rate", "alice"));
    assert_string_equal(k, "metrics:agent:{rebalance.3}:rate:alice");
    assert_int_equal(sb_cluster_keyslot(k, strlen(k)), slot3);
    sb_key(k, sizeof k, SB_KEY_JOBS, "rebalance.4", NULL);
    assert_int_not_equal(sb_cluster_keyslot(k, strlen(k)), slot3);
    assert_string_equal(sb_key(k, sizeof k, SB_KEY_STATUS, "rebalance.3", NULL),
                        "agent:rebalance:status");
    sb_key_style_set(SB_KEYS_PLAIN);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_queue_names),
        cmocka_unit_test(test_id_shards),
        cmocka_unit_test(test_user_shards),
        cmocka_unit_test(test_shard_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
