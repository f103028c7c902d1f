/* Test helper: a private Redis Cluster on loopback.
 *
 * sb_test_cluster_start() starts masters (and replicas per master) redis-servers with
 * cluster-enabled on free loopback ports in a fresh mktemp directory, joins them with
 * `redis-cli --cluster create ... --cluster-yes`, and waits until every node says
 * cluster_state:ok and serves the whole slot map (an event polled against a deadline of 30 s).
 * addr then points at the cluster (addr.cluster = the seed list). sb_test_cluster_stop() kills
 * the servers and removes the directory. The servers die with the test binary. */
#ifndef SB_TEST_CLUSTER_H
#define SB_TEST_CLUSTER_H

#include <sys/types.h>
#include "switchboard/config.h"
#include "switchboard/redis.h"

#define SB_TEST_CLUSTER_MAX 6

typedef struct {
    int masters;                     /* set before start: 3 by default (0) */
    int replicas;                    /* set before start: replicas per master, 0 or 1 */
    int n;                           /* servers started */
    pid_t pid[SB_TEST_CLUSTER_MAX];
    int port[SB_TEST_CLUSTER_MAX];
    char dir[256];
    char seeds[SB_TEST_CLUSTER_MAX * 24]; /* "127.0.0.1:P,127.0.0.1:P,..." */
    sb_redis_addr_t addr;            /* cluster = seeds (points into this struct) */
} sb_test_cluster_t;

/* Returns 0, or -1 with the reason on stderr and whatever had started stopped (the test
 * should fail). */
int sb_test_cluster_start(sb_test_cluster_t *t);
void sb_test_cluster_stop(sb_test_cluster_t *t);
/* A plain (not cluster-aware) connected client of server i, or NULL. The test frees it. */
sb_redis_t *sb_test_cluster_node(const sb_test_cluster_t *t, int i);
/* The index of the server listening on port, or -1. */
int sb_test_cluster_index(const sb_test_cluster_t *t, int port);
/* Runs one command (hiredis format, up to two %s arguments) on server i; it must not answer an
 * error. 0 or -1 (the command and the reply on stderr). */
int sb_test_cluster_run(const sb_test_cluster_t *t, int i, const char *fmt, const char *a,
                        const char *b);
/* Server i's node id (CLUSTER MYID) into id. 0 or -1. */
int sb_test_cluster_node_id(const sb_test_cluster_t *t, int i, char *id, size_t len);
/* The live server that is master for key now (the others answer MOVED), or -1. */
int sb_test_cluster_master_of(const sb_test_cluster_t *t, const char *key);
/* How many live servers store key (asked directly; a non-owner answers MOVED). */
int sb_test_cluster_holders(const sb_test_cluster_t *t, const char *key);
/* Half a resharding, as redis-cli --cluster reshard does it: key's slot marked IMPORTING on
 * master `to` and MIGRATING on `from`, and key MIGRATEd; the slot still belongs to `from`
 * (which answers ASK for key). 0 or -1 (reason on stderr). */
int sb_test_cluster_migrate_key(const sb_test_cluster_t *t, const char *key, int from, int to);
/* The other half: CLUSTER SETSLOT slot NODE <to> on every master. 0 or -1. */
int sb_test_cluster_assign_slot(const sb_test_cluster_t *t, int slot, int to);
/* Starts `redis-cli --cluster reshard` moving nslots slots from master i to master j, in the
 * background. Returns its pid (the test reaps it with waitpid), or -1. */
pid_t sb_test_cluster_reshard(const sb_test_cluster_t *t, int from, int to, int nslots);
/* Kills server i (SIGKILL), as a crash would. */
void sb_test_cluster_kill(sb_test_cluster_t *t, int i);
/* FLUSHALL and SCRIPT FLUSH on every master. 0 or -1. */
int sb_test_cluster_flush(const sb_test_cluster_t *t);

#endif
