/* The checks of redis_check.h, one small function each, run from a table in the order a
 * reader fixes things: can we run at all (version, scripting), can we lose data (eviction,
 * persistence), what degrades (keyspace events, latency), is it private (TLS).
 *
 * INFO is read once and shared; a field is looked up as "\r\nname:" in its text. CONFIG may be
 * renamed away on managed services: a check that needs it then says "unknown" (a warning),
 * never a failure of its own. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "switchboard/cluster.h"
#include "switchboard/error.h"
#include "switchboard/presence.h"
#include "switchboard/redis_check.h"
#include "switchboard/sentinel.h"

#define SB_CHECK_PINGS 5
#define SB_CHECK_SLOW_MS 20.0

typedef struct {
    sb_redis_t *r;
    const sb_redis_addr_t *addr;
    const char *info; /* INFO's text */
} sb_check_ctx_t;

static void sb_check_set(sb_check_t *c, sb_check_status_t st, const char *fix, const char *fmt,
                         ...) __attribute__((format(printf, 4, 5)));
static void sb_check_set(sb_check_t *c, sb_check_status_t st, const char *fix, const char *fmt,
                         ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->detail, sizeof c->detail, fmt, ap);
    va_end(ap);
    c->status = st;
    snprintf(c->fix, sizeof c->fix, "%s", st == SB_CHECK_OK ? "" : fix);
}

/* Copies INFO field name's value into out ("" when absent). */
static const char *sb_info_field(const char *info, const char *name, char *out, size_t len) {
    char key[64];
    snprintf(key, sizeof key, "\n%s:", name);
    const char *p = info ? strstr(info, key) : NULL;
    out[0] = '\0';
    if (!p) return out;
    p += strlen(key);
    size_t n = strcspn(p, "\r\n");
    snprintf(out, len, "%.*s", (int)(n < len ? n : len - 1), p);
    return out;
}

/* CONFIG GET name's value into out; 0, or -1 when CONFIG is not allowed (out: the error). */
static int sb_config_get(sb_redis_t *r, const char *name, char *out, size_t len) {
    redisReply *rep = sb_redis_cmd(r, "CONFIG GET %s", name);
    int ok = rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
             rep->element[1]->type == REDIS_REPLY_STRING;
    snprintf(out, len, "%s", ok ? rep->element[1]->str
                                : rep && rep->type == REDIS_REPLY_ERROR ? rep->str : "no answer");
    if (rep) freeReplyObject(rep);
    return ok ? 0 : -1;
}

/* ---- the checks ---------------------------------------------------------------------------- */

static int sb_check_version(sb_check_ctx_t *x, sb_check_t *c) {
    char v[32];
    int major = 0, minor = 0;
    sb_info_field(x->info, "redis_version", v, sizeof v);
    sscanf(v, "%d.%d", &major, &minor);
    int ok = major > 6 || (major == 6 && minor >= 2);
    sb_check_set(c, ok ? SB_CHECK_OK : SB_CHECK_FAIL,
                 "upgrade to Redis 6.2 or later (agents take jobs with BLMOVE)",
                 "Redis %s%s", v[0] ? v : "(unknown)", ok ? "" : ": BLMOVE needs 6.2");
    return SB_OK;
}

static int sb_check_scripting(sb_check_ctx_t *x, sb_check_t *c) {
    redisReply *rep = sb_redis_cmd(x->r, "EVAL %s 0", "return 7");
    if (!rep) return SB_EREDIS;
    int ok = rep->type == REDIS_REPLY_INTEGER && rep->integer == 7;
    sb_check_set(c, ok ? SB_CHECK_OK : SB_CHECK_FAIL,
                 "allow EVAL/EVALSHA (not renamed, permitted to this user by its ACL): every "
                 "job step is an atomic Lua script",
                 "%s%s", ok ? "EVAL works" : "EVAL failed: ",
                 ok ? "" : rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
    freeReplyObject(rep);
    return SB_OK;
}

int sb_redis_check_eviction(sb_redis_t *r, sb_check_t *c) {
    redisReply *rep = sb_redis_cmd(r, "INFO memory");
    if (!rep) return SB_EREDIS;
    char policy[64];
    sb_info_field(rep->type == REDIS_REPLY_STRING ? rep->str : NULL, "maxmemory_policy", policy,
                  sizeof policy);
    freeReplyObject(rep);
    c->name = "maxmemory-policy";
    int ok = strcmp(policy, "noeviction") == 0;
    sb_check_set(c, ok ? SB_CHECK_OK : SB_CHECK_FAIL,
                 "CONFIG SET maxmemory-policy noeviction (and in redis.conf, or your provider's "
                 "settings)",
                 "%s%s", policy[0] ? policy : "(unknown)",
                 ok ? "" : ": Redis may evict job records and queues under memory pressure");
    return SB_OK;
}

static int sb_check_eviction(sb_check_ctx_t *x, sb_check_t *c) {
    return sb_redis_check_eviction(x->r, c);
}

static int sb_check_persistence(sb_check_ctx_t *x, sb_check_t *c) {
    char aof[8], save[128];
    sb_info_field(x->info, "aof_enabled", aof, sizeof aof);
    if (strcmp(aof, "1") == 0) {
        char fsync[32] = "";
        sb_config_get(x->r, "appendfsync", fsync, sizeof fsync);
        sb_check_set(c, SB_CHECK_OK, "", "AOF on%s%s", fsync[0] ? ", appendfsync " : "", fsync);
        return SB_OK;
    }
    const char *fix = "turn AOF on: CONFIG SET appendonly yes (and appendonly yes in redis.conf)";
    if (sb_config_get(x->r, "save", save, sizeof save) != 0)
        sb_check_set(c, SB_CHECK_WARN, fix, "AOF off; RDB schedule unknown (CONFIG: %s)", save);
    else if (save[0])
        sb_check_set(c, SB_CHECK_WARN, fix,
                     "RDB snapshots only (save %s): a crash loses the jobs since the last one",
                     save);
    else
        sb_check_set(c, SB_CHECK_WARN, fix, "no persistence: a restart loses every job");
    return SB_OK;
}

static int sb_check_notify(sb_check_ctx_t *x, sb_check_t *c) {
    char flags[64], want[64];
    const char *fix = "CONFIG SET notify-keyspace-events Ex (the gateway tries this itself); "
                      "without them presence relies on the sweep (slower offline detection)";
    if (sb_config_get(x->r, "notify-keyspace-events", flags, sizeof flags) != 0) {
        sb_check_set(c, SB_CHECK_WARN, fix, "unknown (CONFIG refused: %s)", flags);
        return SB_OK;
    }
    int missing = sb_presence_notify_flags(flags, want, sizeof want);
    sb_check_set(c, missing ? SB_CHECK_WARN : SB_CHECK_OK, fix,
                 "notify-keyspace-events '%s'%s", flags,
                 missing ? ": expired-key events off" : " (expired-key events on)");
    return SB_OK;
}

static double sb_now_ms_f(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static int sb_check_latency(sb_check_ctx_t *x, sb_check_t *c) {
    double min = 1e9, max = 0, sum = 0;
    for (int i = 0; i < SB_CHECK_PINGS; i++) {
        double t0 = sb_now_ms_f();
        redisReply *rep = sb_redis_cmd(x->r, "PING");
        if (!rep) return SB_EREDIS;
        freeReplyObject(rep);
        double ms = sb_now_ms_f() - t0;
        min = ms < min ? ms : min;
        max = ms > max ? ms : max;
        sum += ms;
    }
    double avg = sum / SB_CHECK_PINGS;
    sb_check_set(c, avg > SB_CHECK_SLOW_MS ? SB_CHECK_WARN : SB_CHECK_OK,
                 "run Switchboard near its Redis (same region / network): every job step is "
                 "at least one round trip",
                 "%d PINGs: min %.2f ms, avg %.2f ms, max %.2f ms", SB_CHECK_PINGS, min, avg, max);
    return SB_OK;
}

/* 1 when addr stays on this host: a unix socket or a loopback address. */
static int sb_addr_local(const sb_redis_addr_t *a) {
    const char *h = a->host ? a->host : SB_REDIS_DEFAULT_HOST;
    return a->unix_path || !strcmp(h, "localhost") || !strcmp(h, "::1") || !strncmp(h, "127.", 4);
}

static int sb_check_tls(sb_check_ctx_t *x, sb_check_t *c) {
    const sb_redis_tls_t *t = &x->addr->tls;
    if (t->enabled && t->insecure)
        sb_check_set(c, SB_CHECK_WARN, "give the CA with REDIS_TLS_CA and drop REDIS_TLS_INSECURE",
                     "on, NOT verified (REDIS_TLS_INSECURE)");
    else if (t->enabled)
        sb_check_set(c, SB_CHECK_OK, "", "on, certificate and name verified%s",
                     t->cert_file ? ", client certificate sent" : "");
    else
        sb_check_set(c, sb_addr_local(x->addr) ? SB_CHECK_OK : SB_CHECK_WARN,
                     "use rediss:// (TLS) for a Redis on another host",
                     "off%s", sb_addr_local(x->addr) ? " (this host)" : ": plain TCP on the network");
    return SB_OK;
}

/* Sentinel status (only with REDIS_SENTINELS): every Sentinel reachable and naming the same
 * master, that master answering ROLE master, a replica to fail over to, enough Sentinels for
 * the quorum. Returns SB_CHECK_SKIPPED when no Sentinels are configured. */
#define SB_CHECK_SKIPPED 1
static int sb_check_sentinel(sb_check_ctx_t *x, sb_check_t *c) {
    sb_sentinel_survey_t s;
    int rc = sb_sentinel_survey(x->addr, &s);
    if (rc == SB_EINVAL) return SB_CHECK_SKIPPED;
    if (rc != SB_OK) {
        sb_check_set(c, SB_CHECK_FAIL, "start the Sentinels or fix REDIS_SENTINELS / "
                     "REDIS_SENTINEL_MASTER (and the TLS settings, with rediss://)",
                     "no Sentinel of %d answered: %s", s.total, s.err);
        return SB_OK;
    }
    const char *fix = strcmp(s.role, "master") ? "wait for the failover to finish, or check the "
                      "Sentinels' configuration (SENTINEL master NAME)"
                      : s.reachable < s.total || s.agree < s.reachable
                          ? "start the missing Sentinels; Sentinels that disagree are cut off"
                      : s.num_slaves == 0 ? "add a replica: without one there is nothing to fail over to"
                      : "run at least as many Sentinels as the quorum";
    sb_check_status_t st = strcmp(s.role, "master") ? SB_CHECK_FAIL
                           : s.reachable < s.total || s.agree < s.reachable || s.num_slaves == 0 ||
                                     s.num_other_sentinels + 1 < s.quorum
                               ? SB_CHECK_WARN
                               : SB_CHECK_OK;
    sb_check_set(c, st, fix, "%d/%d Sentinels reachable, %d agree: master '%s' at %s (ROLE %s%s%s), "
                 "%ld replica%s, %ld other Sentinel%s, quorum %ld", s.reachable, s.total, s.agree,
                 x->addr->sentinel_master, s.master, s.role[0] ? s.role : "unreachable",
                 s.role[0] ? "" : ": ", s.role[0] ? "" : s.err, s.num_slaves,
                 s.num_slaves == 1 ? "" : "s", s.num_other_sentinels,
                 s.num_other_sentinels == 1 ? "" : "s", s.quorum);
    return SB_OK;
}

/* One master of a cluster, asked directly: "host:port version[, policy]" appended to out;
 * *bad set when it is older than 6.2, unreachable or may evict. */
static void sb_check_node(const sb_redis_addr_t *tmpl, char *host, int port, char *out,
                          size_t len, int *bad) {
    sb_redis_addr_t a = sb_cluster_node_addr(tmpl, host, port);
    sb_redis_t *n = sb_redis_create(&a, "doctor");
    char err[128], v[32] = "unreachable", policy[64] = "";
    redisReply *info = n && sb_redis_connect(n, err, sizeof err) == SB_OK
                           ? sb_redis_cmd(n, "INFO server") : NULL;
    int major = 0, minor = 0;
    if (info && info->type == REDIS_REPLY_STRING) {
        sb_info_field(info->str, "redis_version", v, sizeof v);
        sscanf(v, "%d.%d", &major, &minor);
        if (sb_config_get(n, "maxmemory-policy", policy, sizeof policy) != 0) policy[0] = '\0';
    }
    if (info) freeReplyObject(info);
    sb_redis_free(n);
    *bad |= !(major > 6 || (major == 6 && minor >= 2)) || (*policy && strcmp(policy, "noeviction"));
    size_t used = strlen(out);
    snprintf(out + used, len - used, "; %s:%d %s%s%s", host, port, v, *policy ? " " : "", policy);
}

/* Redis Cluster (addr->cluster): the slot map from CLUSTER SLOTS — masters, slots served,
 * replicas — and each master's version and eviction policy, asked of it. Returns
 * SB_CHECK_SKIPPED without a cluster. */
static int sb_check_cluster(sb_check_ctx_t *x, sb_check_t *c) {
    if (!x->addr->cluster) return SB_CHECK_SKIPPED;
    redisReply *rep = sb_redis_cmd(x->r, "CLUSTER SLOTS");
    if (!rep) return SB_EREDIS;
    long covered = 0, replicas = 0;
    char nodes[512] = "";
    int bad = 0, masters = 0;
    for (size_t i = 0; rep->type == REDIS_REPLY_ARRAY && i < rep->elements; i++) {
        const redisReply *r = rep->element[i];
        if (r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
            r->element[2]->type != REDIS_REPLY_ARRAY || r->element[2]->elements < 2)
            continue;
        covered += r->element[1]->integer - r->element[0]->integer + 1;
        replicas += (long)r->elements - 3;
        char host[256], at[300];
        snprintf(host, sizeof host, "%s", r->element[2]->element[0]->str);
        snprintf(at, sizeof at, "; %s:%lld ", host, r->element[2]->element[1]->integer);
        if (strstr(nodes, at)) continue; /* a master with several ranges: once */
        masters++;
        sb_check_node(x->addr, host, (int)r->element[2]->element[1]->integer, nodes,
                      sizeof nodes, &bad);
    }
    sb_check_status_t st = covered < SB_CLUSTER_SLOTS || bad ? SB_CHECK_FAIL
                           : replicas == 0 ? SB_CHECK_WARN : SB_CHECK_OK;
    sb_check_set(c, st, covered < SB_CLUSTER_SLOTS ? "assign every slot (redis-cli --cluster fix)"
                 : bad ? "every master needs Redis >= 6.2 and maxmemory-policy noeviction"
                       : "add replicas (redis-cli --cluster add-node --cluster-slave): without "
                         "one a master's failure loses its slots",
                 "%d master%s, %ld/%d slots, %ld replica%s%s", masters, masters == 1 ? "" : "s",
                 covered, SB_CLUSTER_SLOTS, replicas, replicas == 1 ? "" : "s", nodes);
    freeReplyObject(rep);
    return SB_OK;
}

/* ---- running them --------------------------------------------------------------------------- */

typedef struct {
    const char *name;
    int (*run)(sb_check_ctx_t *x, sb_check_t *c);
} sb_check_def_t;

static const sb_check_def_t sb_checks[] = {
    {"version", sb_check_version},       {"scripting", sb_check_scripting},
    {"maxmemory-policy", sb_check_eviction}, {"persistence", sb_check_persistence},
    {"keyspace-events", sb_check_notify}, {"latency", sb_check_latency},
    {"tls", sb_check_tls},               {"sentinel", sb_check_sentinel},
    {"cluster", sb_check_cluster},
};
_Static_assert(sizeof sb_checks / sizeof sb_checks[0] <= SB_CHECK_MAX, "SB_CHECK_MAX");

int sb_redis_check_all(sb_redis_t *r, const sb_redis_addr_t *addr, sb_check_t *out) {
    redisReply *info = sb_redis_cmd(r, "INFO");
    if (!info) return SB_EREDIS;
    sb_check_ctx_t x = {r, addr, info->type == REDIS_REPLY_STRING ? info->str : ""};
    int n = 0, rc = SB_OK;
    for (size_t i = 0; i < sizeof sb_checks / sizeof sb_checks[0] && rc == SB_OK; i++) {
        memset(&out[n], 0, sizeof out[n]);
        out[n].name = sb_checks[i].name;
        if ((rc = sb_checks[i].run(&x, &out[n])) == SB_OK) n++;
        if (rc == SB_CHECK_SKIPPED) rc = SB_OK;
    }
    freeReplyObject(info);
    return rc == SB_OK ? n : rc;
}
