/* The maintenance thread: renews the agent's job lease, heartbeats its presence, acts on the
 * lapsed leases of other agents (every renewal interval), and every recovery interval SCANs
 * all processing lists (agents without a lease are judged by their presence) and puts back
 * ids orphaned in its own list, and sweeps a bounded part of the job indices (entries of jobs
 * whose record is gone, jobctl.h). See agent.h for the lease design. With Sentinels it also asks
 * them, every renewal interval, where the master is, and moves every connection of the agent
 * there when it moved (sb_maint_follow): a master cut off from the Sentinels but still up is
 * otherwise never left.
 *
 * Its schedule follows the agent's clock (sb__agent_now); how long a Redis call took is
 * measured on the real monotonic clock (a call slower than SB_STALL_MS means Redis stalled).
 * It never recovers other agents' jobs while Redis is lost, nor for a grace period after
 * Redis was lost or stalled, nor while Redis itself has been up for less than that period:
 * the keys that prove live agents alive may have expired meanwhile and not been written
 * again. The grace is one lease for leases, one presence TTL for presence. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "agent_int.h"
#include "switchboard/clock.h"
#include "switchboard/error.h"
#include "switchboard/jobctl.h"
#include "switchboard/json.h"
#include "switchboard/log.h"
#include "switchboard/queue.h"

#define SB_WORKER_DEPT "workers"
#define SB_STALL_MS 1000  /* a heartbeat or check slower than this: redis was stalled */
#define SB_MAINT_TICK_MS 1000 /* the longest the thread sleeps between looks at its connection */
#define SB_LAPSED_BATCH "100" /* lapsed leases acted on per check */
#define SB_SWEEP_BUDGET 200   /* index entries looked at per index per scan (jobctl.h) */

/* The maintenance thread's schedule (agent clock) and what it knows of Redis's recent past. */
typedef struct {
    int64_t next_renew, next_hb, next_check, next_scan;
    int64_t next_follow;          /* next look at the Sentinels' view of the master */
    int64_t lease_grace_until;    /* no acting on lapsed leases before this */
    int64_t presence_grace_until; /* no judging agents by their presence before this */
    int64_t lease_until;          /* real clock: our lease runs at least until this (0: none) */
    int uptime_read;     /* Redis's uptime was read since we (re)connected (sb_maint_may) */
    int shards_checked;  /* the queues of shards beyond ours were looked at (once) */
    int lost;            /* redis was out of reach (or stalled) since the last write landed */
} sb_maint_t;

/* What recovery may act on now (see the file comment). */
typedef struct {
    int lease;    /* lapsed leases */
    int presence; /* expired presence of agents without a lease */
} sb_maint_may_t;

static int sb_agent_heartbeat(sb_agent_t *a) {
    int inflight = atomic_load(&a->inflight);
    char name[SB_TYPE_MAX + 32];
    snprintf(name, sizeof name, "switchboard agent (%s)", a->type);
    sb_presence_t p = {.agent_id = a->id, .name = name, .email = "",
                       .department_id = SB_WORKER_DEPT, .department = SB_WORKER_DEPT,
                       .status = inflight >= a->nworkers ? "busy" : "online",
                       .set_chats = 1, .current_chats = inflight, .max_chats = a->nworkers,
                       .extra = a->info};
    return sb_presence_heartbeat(a->maint_redis, &a->presence, &p, sb_now_ms(), NULL);
}

/* ---- recovery of dead agents' jobs --------------------------------------------------------- */

/* Marks the records of recovered ids as queued again, if they still say "processing". The
 * write is a compare-and-set against the text read: the job is already back on the queue and
 * a worker may be writing a newer state. */
static void sb_agent_requeue_records(sb_agent_t *a, const sb__shard_t *sh, const redisReply *ids,
                                     const char *dead) {
    for (size_t i = 0; i < ids->elements; i++) {
        const char *id = ids->element[i]->str;
        char *json = NULL, why[128], details[256], key[SB_KEY_LEN];
        if (!id || !sb_key(key, sizeof key, SB_KEY_JOB, sh->queue, id) ||
            sb_job_get(a->maint_redis, sh->queue, id, &json) != SB_OK)
            continue;
        sb_job_t job;
        if (sb_job_parse(json, strlen(json), &job, why, sizeof why) == SB_OK) {
            if (job.status && !strcmp(job.status, "processing")) {
                snprintf(details, sizeof details, "recovered from agent %s", dead);
                sb_job_set_status(&job, "queued", sb_now_ms());
                sb_json_set_str(job.root, "details", details);
                char *rec = sb_json_print(job.root);
                const char *argv[SB__CAS_ARGC] = {[SB__CAS_K_RECORD] = key,
                                                  [SB__CAS_A_OLD] = json, [SB__CAS_A_NEW] = rec};
                redisReply *rep = rec ? sb_redis_eval(a->maint_redis, &a->scripts.cas,
                                                      SB__CAS_NKEYS, SB__CAS_ARGC, argv, NULL)
                                      : NULL;
                if (rep) freeReplyObject(rep);
                free(rec);
            }
            sb_job_close(&job);
        }
        free(json);
    }
}

/* Recovers the list proc_key (of shard sh) of agent dead if the recovery script finds it dead. */
static void sb_agent_recover_one(sb_agent_t *a, const sb__shard_t *sh, const char *proc_key,
                                 const char *dead, sb_maint_may_t may) {
    char pkey[SB_KEY_LEN + 256];
    if (!sb_agent_id_valid(dead) || !sb_presence_key(pkey, sizeof pkey, dead)) return;
    if (sb_key_style() == SB_KEYS_CLUSTER) {
        /* the presence key is in the presence slot: asked apart, and the script is given a
         * key of the type's slot that never exists in its place */
        redisReply *on = may.presence ? sb_redis_cmd(a->maint_redis, "EXISTS %s", pkey) : NULL;
        may.presence = on && on->type == REDIS_REPLY_INTEGER && on->integer == 0;
        if (on) freeReplyObject(on);
        snprintf(pkey, sizeof pkey, "%spresence-of:%s", sh->k_prefix, dead);
    }
    const char *argv[SB__REC_ARGC] = {
        [SB__REC_K_PROC] = proc_key, [SB__REC_K_PRESENCE] = pkey, [SB__REC_K_JOBS] = sh->k_jobs,
        [SB__REC_K_LEASES] = sh->k_leases, [SB__REC_A_AGENT] = dead,
        [SB__REC_A_LEASE_OK] = may.lease ? "1" : "0",
        [SB__REC_A_PRESENCE_OK] = may.presence ? "1" : "0"};
    redisReply *rep = sb_redis_eval(a->maint_redis, &a->scripts.recover, SB__REC_NKEYS,
                                    SB__REC_ARGC, argv, NULL);
    if (!rep) return;
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
        rep->element[0]->type == REDIS_REPLY_STRING &&
        rep->element[1]->type == REDIS_REPLY_ARRAY && rep->element[1]->elements > 0) {
        const redisReply *ids = rep->element[1];
        sb_warn("agent", "recovered %zu job(s) of agent %s (%s expired): back on %s",
                ids->elements, dead, rep->element[0]->str, sh->k_jobs);
        sb__stat_add(a, &a->stats.recovered, ids->elements);
        sb_agent_requeue_records(a, sh, ids, dead);
    } else if (rep->type == REDIS_REPLY_ERROR) {
        sb_error("agent", "recovery script failed: %s", rep->str);
    }
    freeReplyObject(rep);
}

static int sb_maint_beat(sb_agent_t *a, sb_maint_t *m, int64_t now);

/* Mid-scan: writes our lease and presence if due (a long scan must not cost us our jobs).
 * Returns 1 to go on, 0 when redis was lost or stalled meanwhile (a grace started at
 * grace_was, or lost is set): what the scan may act on is no longer known. */
static int sb_maint_go_on(sb_agent_t *a, sb_maint_t *m, int64_t grace_was) {
    return !atomic_load(&a->maint_stop) && sb_maint_beat(a, m, sb__agent_now(a)) == SB_OK &&
           !m->lost && m->lease_grace_until == grace_was;
}

/* SCANs agent:{queue}:processing:* of shard sh and recovers every list whose agent is gone.
 * Returns 0 when it stopped early (sb_maint_go_on), else 1. */
static int sb_agent_recover_shard(sb_agent_t *a, sb_maint_t *m, sb_maint_may_t may,
                                  const sb__shard_t *sh) {
    int64_t grace = m->lease_grace_until;
    int go = 1;
    char pattern[SB_KEY_LEN + 1], prefix[SB_KEY_LEN];
    sb_key(prefix, sizeof prefix, SB_KEY_PROCESSING, sh->queue, "");
    snprintf(pattern, sizeof pattern, "%s*", prefix);
    size_t plen = strlen(prefix);
    char cursor[32] = "0";
    do {
        redisReply *rep = sb_redis_cmd(a->maint_redis, "SCAN %s MATCH %s COUNT 500", cursor,
                                       pattern);
        if (!rep) return 0;
        if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2) {
            freeReplyObject(rep);
            return 0;
        }
        snprintf(cursor, sizeof cursor, "%s", rep->element[0]->str);
        const redisReply *keys = rep->element[1];
        for (size_t i = 0; i < keys->elements && (go = sb_maint_go_on(a, m, grace)); i++) {
            const char *key = keys->element[i]->str;
            if (strlen(key) > plen && strcmp(key + plen, a->id) != 0)
                sb_agent_recover_one(a, sh, key, key + plen, may);
        }
        freeReplyObject(rep);
    } while (strcmp(cursor, "0") != 0 && go);
    return go;
}

/* Every shard's processing lists (a crashed agent held jobs of any of them). */
static void sb_agent_recover(sb_agent_t *a, sb_maint_t *m, sb_maint_may_t may) {
    for (int i = 0; i < a->nshards && sb_agent_recover_shard(a, m, may, &a->shards[i]); i++) {
    }
}

/* Recovers the lists of the agents whose lease has lapsed (never our own: a late renewal of
 * ours writes it again). */
static void sb_agent_recover_lapsed(sb_agent_t *a, const sb__shard_t *sh, sb_maint_may_t may) {
    const char *argv[SB__LAPSED_ARGC] = {[SB__LAPSED_K_LEASES] = sh->k_leases,
                                         [SB__LAPSED_A_LIMIT] = SB_LAPSED_BATCH};
    redisReply *rep = sb_redis_eval(a->maint_redis, &a->scripts.lapsed, SB__LAPSED_NKEYS,
                                    SB__LAPSED_ARGC, argv, NULL);
    if (!rep) return;
    for (size_t i = 0; rep->type == REDIS_REPLY_ARRAY && i < rep->elements; i++) {
        const char *dead = rep->element[i]->str;
        char key[SB_KEY_LEN];
        if (!dead || !strcmp(dead, a->id) || atomic_load(&a->maint_stop)) continue;
        if (sb_key(key, sizeof key, SB_KEY_PROCESSING, sh->queue, dead))
            sb_agent_recover_one(a, sh, key, dead, may);
    }
    if (rep->type == REDIS_REPLY_ERROR) sb_error("agent", "lease check failed: %s", rep->str);
    freeReplyObject(rep);
}

/* ---- ids orphaned in our own list ---------------------------------------------------------- */

static int sb_agent_suspected(const sb_agent_t *a, const char *id) {
    for (size_t i = 0; i < a->nsuspects; i++)
        if (strcmp(a->suspects[i], id) == 0) return 1;
    return 0;
}

void sb__maint_close(sb_agent_t *a) {
    for (size_t i = 0; i < a->nsuspects; i++) free(a->suspects[i]);
    free(a->suspects);
    a->suspects = NULL;
    a->nsuspects = 0;
}

/* The ids of our list of shard sh (rep, an LRANGE reply) that no worker holds: one suspected
 * at the last scan too goes back on the queue, the others are appended to next (the suspects
 * of this scan; room for every id of rep). */
static void sb_reclaim_shard(sb_agent_t *a, const sb__shard_t *sh, const redisReply *rep,
                             char **next, size_t *nnext) {
    sb__conn_t conn = {.agent = a, .redis = a->maint_redis, .quit = &a->maint_stop, .shard = sh};
    for (size_t i = 0; i < rep->elements; i++) {
        const char *id = rep->element[i]->str;
        if (!id || sb__agent_held(a, id)) continue;
        if (!sb_agent_suspected(a, id)) {
            if ((next[*nnext] = strdup(id))) (*nnext)++;
            continue;
        }
        sb__finish_t f = {.mode = SB__FINISH_REQUEUE};
        if (sb__conn_finish(&conn, id, &f) == 1) {
            sb_warn("agent", "job %.64s was left in our processing list (a reply lost with "
                    "redis); put back on the queue", id);
            sb__stat_add(a, &a->stats.recovered, 1);
        }
    }
}

/* A take whose reply was lost (Redis died after running it) leaves an id in our own
 * processing list that no worker holds, and the recovery of dead agents never looks at a live
 * agent's list. So each scan compares our list with what the workers hold: an id orphaned on
 * two consecutive scans (not one whose take reply is just arriving) goes back on the queue
 * through the guarded finish script. */
static void sb_agent_reclaim_own(sb_agent_t *a) {
    char **next = NULL;
    size_t nnext = 0;
    for (int s = 0; s < a->nshards; s++) {
        redisReply *rep = sb_redis_cmd(a->maint_redis, "LRANGE %s 0 -1", a->shards[s].k_proc);
        if (!rep || rep->type != REDIS_REPLY_ARRAY) {
            if (rep) freeReplyObject(rep);
            for (size_t i = 0; i < nnext; i++) free(next[i]);
            free(next);
            return; /* the suspects of the last scan stay for the next */
        }
        char **grown = realloc(next, (nnext + rep->elements + 1) * sizeof *next);
        if (grown) next = grown;
        if (grown) sb_reclaim_shard(a, &a->shards[s], rep, next, &nnext);
        freeReplyObject(rep);
    }
    sb__maint_close(a);
    a->suspects = next;
    a->nsuspects = nnext;
}
/* ---- queue shards of another deployment ---------------------------------------------------- */

/* Once: warns when jobs wait on queues of shards at or beyond our QUEUE_SHARDS (job.h), which
 * no agent of ours takes: a gateway or producer with a larger QUEUE_SHARDS (every process of a
 * deployment must use the same), or jobs left after it was lowered. One pipelined LLEN per
 * possible shard. Returns 0 when the look was made (whatever it found). */
static int sb_maint_check_shards(sb_agent_t *a) {
    sb_batch_t *b = sb_batch_create();
    int n = SB_SHARDS_MAX - a->nshards, rc = b ? SB_OK : SB_ENOMEM;
    for (int s = a->nshards; rc == SB_OK && s < SB_SHARDS_MAX; s++) {
        char q[SB_QUEUE_LEN], key[SB_KEY_LEN];
        sb_key(key, sizeof key, SB_KEY_JOBS, sb_queue_name(q, a->type, s), NULL);
        rc = sb_batch_add(b, "LLEN %s", key);
    }
    redisReply **replies = n > 0 && rc == SB_OK ? calloc((size_t)n, sizeof *replies) : NULL;
    if (n > 0 && rc == SB_OK) rc = replies ? sb_redis_pipeline(a->maint_redis, b, replies)
                                           : SB_ENOMEM;
    long long waiting = 0;
    int first = -1;
    for (int i = 0; rc == SB_OK && i < n; i++) {
        if (replies[i]->type == REDIS_REPLY_INTEGER && replies[i]->integer > 0) {
            waiting += replies[i]->integer;
            if (first < 0) first = a->nshards + i;
        }
    }
    if (waiting > 0)
        sb_warn("agent", "%lld job(s) of type %s wait on queue shards at or beyond %d (first: "
                "%s.%d), which this agent (QUEUE_SHARDS=%d) never takes: give every gateway, "
                "agent and CLI of the deployment the same QUEUE_SHARDS", waiting, a->type,
                a->nshards, a->type, first, a->nshards);
    if (replies && rc == SB_OK) sb_replies_free(replies, (size_t)n);
    free(replies);
    sb_batch_free(b);
    return rc;
}

/* ---- the schedule ------------------------------------------------------------------------- */

/* Seconds Redis has been up: LLONG_MAX when it does not tell (INFO renamed away: counts as
 * settled), -1 when the call failed. */
static long long sb_redis_uptime(sb_agent_t *a) {
    redisReply *rep = sb_redis_cmd(a->maint_redis, "INFO server");
    if (!rep) return -1;
    const char *up = rep->type == REDIS_REPLY_STRING ? strstr(rep->str, "uptime_in_seconds:") : NULL;
    long long secs = up ? atoll(up + strlen("uptime_in_seconds:")) : LLONG_MAX;
    freeReplyObject(rep);
    return secs;
}

/* Extends *until so that it is at least wait_ms after Redis started (up seconds ago). */
static void sb_grace_since_start(int64_t *until, int64_t now, long long up, int64_t wait_ms) {
    if (up > wait_ms / 1000) return; /* up long enough (or it does not say: LLONG_MAX) */
    int64_t end = now + wait_ms - up * 1000;
    if (end > *until) *until = end;
}

/* What recovery may act on now: nothing while redis was lost lately (see sb_maint_beat) or
 * stalls right now; a kind of key only after its grace. The first time after a (re)connect,
 * a Redis that has been up for less than a grace extends it to that long after its start:
 * keys of live agents may have expired while it was down, or been lost with it, and not been
 * written again yet. */
static sb_maint_may_t sb_maint_may(sb_agent_t *a, sb_maint_t *m, int64_t now) {
    sb_maint_may_t may = {0};
    if (m->lost) return may;
    if (!m->uptime_read) {
        int64_t t0 = sb_mono_ms();
        long long up = sb_redis_uptime(a);
        if (sb_mono_ms() - t0 > SB_STALL_MS || up < 0) { /* stalled or lost right now */
            m->lost = 1;
            return may;
        }
        sb_grace_since_start(&m->lease_grace_until, now, up, a->o.lease_ms);
        sb_grace_since_start(&m->presence_grace_until, now, up, (int64_t)a->o.status_ttl_s * 1000);
        m->uptime_read = 1;
    }
    may.lease = now >= m->lease_grace_until;
    may.presence = now >= m->presence_grace_until;
    return may;
}

/* An operator cancelled or deleted id while we held it (jobctl.h): raises the cancel flag of
 * the worker running it. Returns 1 if one is, 0 if none (the run is over). */
static int sb_maint_withdraw(sb_agent_t *a, const char *id) {
    int held = 0;
    for (int i = 0; i < a->nworkers && !held; i++) {
        sb__worker_t *w = &a->workers[i];
        pthread_mutex_lock(&w->lock);
        if (!strcmp(w->job_id, id)) {
            held = 1;
            if (!atomic_exchange(&w->cancel, 1))
                sb_info("agent", "job %s was cancelled or deleted: stopping its handler", id);
        }
        pthread_mutex_unlock(&w->lock);
    }
    return held;
}

/* The ids the renewal returned: each held one's handler is told to stop; the others are done
 * with and leave the set (so a retry is allowed again). */
static void sb_maint_cancels(sb_agent_t *a, const sb__shard_t *sh, const redisReply *ids) {
    for (size_t i = 0; i < ids->elements; i++) {
        const char *id = ids->element[i]->str;
        if (ids->element[i]->type != REDIS_REPLY_STRING || sb_maint_withdraw(a, id)) continue;
        redisReply *rep = sb_redis_cmd(a->maint_redis, "SREM %s %s", sh->k_cancel, id);
        if (rep) freeReplyObject(rep);
    }
}

/* Renews our lease on shard sh and reads its cancel set. */
static int sb_lease_renew_shard(sb_agent_t *a, const sb__shard_t *sh) {
    char ms[SB_FMT_INT_LEN + 1], ttl[SB_FMT_INT_LEN + 1];
    sb_fmt_llz(ms, a->o.lease_ms);
    /* the set outlives any lease and presence: entries of dead agents stay until acted on */
    sb_fmt_llz(ttl, (long long)a->o.status_ttl_s + a->o.lease_ms / 1000 + 86400);
    const char *argv[SB__RENEW_ARGC] = {[SB__RENEW_K_LEASES] = sh->k_leases,
                                        [SB__RENEW_K_CANCEL] = sh->k_cancel,
                                        [SB__RENEW_A_AGENT] = a->id, [SB__RENEW_A_LEASE_MS] = ms,
                                        [SB__RENEW_A_TTL] = ttl};
    redisReply *rep = sb_redis_eval(a->maint_redis, &a->scripts.renew, SB__RENEW_NKEYS,
                                    SB__RENEW_ARGC, argv, NULL);
    int rc = rep && rep->type == REDIS_REPLY_ARRAY ? SB_OK : SB_EREDIS;
    if (rc == SB_OK) sb_maint_cancels(a, sh, rep);
    if (rep && rc != SB_OK)
        sb_error("agent", "job lease renewal refused by redis: %s",
                 rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
    if (rep) freeReplyObject(rep);
    return rc;
}

/* Our lease on every shard: each shard's agents recover that shard's lists. */
static int sb_lease_renew(sb_agent_t *a) {
    int rc = SB_OK;
    for (int i = 0; i < a->nshards && rc == SB_OK; i++)
        rc = sb_lease_renew_shard(a, &a->shards[i]);
    return rc;
}

void sb__lease_drop(sb_agent_t *a) {
    for (int i = 0; i < a->nshards; i++) {
        redisReply *rep = sb_redis_cmd(a->maint_redis, "ZREM %s %s", a->shards[i].k_leases,
                                       a->id);
        if (rep) freeReplyObject(rep);
    }
}

/* A renewal sent at now (agent clock) and t0 (real clock: the lease lapses in real time)
 * landed: says so if our lease had lapsed before (our jobs may have been recovered by others:
 * their finish here will be refused), and notes the new end. */
static void sb_maint_renewed(sb_agent_t *a, sb_maint_t *m, int64_t now, int64_t t0) {
    int64_t landed = sb_mono_ms();
    if (m->lease_until && landed > m->lease_until)
        sb_warn("agent", "our job lease lapsed for %lld ms (redis out of reach or this process "
                "stalled): other agents may have taken our jobs back",
                (long long)(landed - m->lease_until));
    m->lease_until = t0 + a->o.lease_ms;
    m->next_renew = now + a->lease_renew_ms;
}

/* Renews the lease and heartbeats presence, each when due. Returns 0 when what was due landed.
 * The first success after redis was lost starts the grace periods: the other agents' writes
 * may not have landed either. */
static int sb_maint_beat(sb_agent_t *a, sb_maint_t *m, int64_t now) {
    int renew = now >= m->next_renew, hb = now >= m->next_hb;
    if (!renew && !hb) return SB_OK;
    int64_t t0 = sb_mono_ms();
    int rc = renew ? sb_lease_renew(a) : SB_OK;
    if (rc == SB_OK && renew) sb_maint_renewed(a, m, now, t0);
    if (rc == SB_OK && hb) rc = sb_agent_heartbeat(a);
    m->lost |= sb_mono_ms() - t0 > SB_STALL_MS && atomic_load(&a->present); /* paused */
    if (rc != SB_OK) {
        m->lost = 1;
        return rc;
    }
    if (hb) m->next_hb = now + (int64_t)a->o.heartbeat_s * 1000;
    if (hb && !atomic_exchange(&a->present, 1))
        sb_info("agent", "agent %s online (type %s, concurrency %d)", a->id, a->type, a->nworkers);
    if (m->lost) {
        m->lease_grace_until = now + a->o.lease_ms;
        m->presence_grace_until = now + (int64_t)a->o.status_ttl_s * 1000;
        sb_info("agent", "redis back: jobs of dead agents are recovered after %d ms (lease) or "
                "%d s (presence), once live agents had time to write theirs again",
                a->o.lease_ms, a->o.status_ttl_s);
        m->lost = 0;
        m->uptime_read = 0;
    }
    return SB_OK;
}

/* One bounded step of the job indices' sweep of shard sh: entries of jobs whose record is gone. */
static void sb_maint_sweep(sb_agent_t *a, sb__shard_t *sh) {
    long removed = 0;
    int rc = sb_jobctl_sweep(a->maint_redis, sh->queue, &sh->sweep, SB_SWEEP_BUDGET, &removed);
    if (rc == SB_EPROTO) sb_error("agent", "job index sweep refused by redis");
    else if (removed)
        sb_debug("agent", "job index sweep: %ld entries of expired jobs removed", removed);
}

/* The lease check (every renewal interval) and the scan of all lists with the check of our
 * own (every recovery interval), as due. */
static void sb_maint_recover(sb_agent_t *a, sb_maint_t *m, int64_t now) {
    int check = now >= m->next_check, scan = now >= m->next_scan;
    if (!check && !scan) return;
    sb_maint_may_t may = sb_maint_may(a, m, now);
    sb__stat_add(a, &a->stats.checks, 1);
    for (int i = 0; check && may.lease && i < a->nshards; i++)
        sb_agent_recover_lapsed(a, &a->shards[i], may);
    if (scan && (may.lease || may.presence)) sb_agent_recover(a, m, may);
    if (scan) sb_agent_reclaim_own(a);
    if (scan && !m->shards_checked) m->shards_checked = sb_maint_check_shards(a) == SB_OK;
    for (int i = 0; scan && i < a->nshards; i++) sb_maint_sweep(a, &a->shards[i]);
    /* from the end: two of them are never closer than the interval */
    if (check) m->next_check = sb__agent_now(a) + a->lease_renew_ms;
    if (scan) m->next_scan = sb__agent_now(a) + (int64_t)a->o.recovery_s * 1000;
}

static int64_t sb_min64(int64_t x, int64_t y) { return x < y ? x : y; }

/* With Sentinels, every renewal interval: asks them where the master is. When it is not the
 * server we are connected to (a master cut off from the Sentinels but still up, or a planned
 * failover we have not felt yet), bumps the agent's master epoch: every connection (workers'
 * and ours) is dropped at its next command and made again to the master the Sentinels name. */
static void sb_maint_follow(sb_agent_t *a, sb_maint_t *m, int64_t now) {
    char where[300];
    if (now < m->next_follow) return;
    m->next_follow = now + a->lease_renew_ms;
    if (!sb_redis_master_moved(a->maint_redis, where, sizeof where)) return;
    sb_warn("agent", "the Sentinels name %s as the redis master now: moving every connection "
            "there", where);
    atomic_fetch_add(&a->master_epoch, 1);
}

/* Sleeps until the agent clock reaches wake, at most SB_MAINT_TICK_MS of real time. */
static void sb_maint_sleep(sb_agent_t *a, int64_t wake) {
    int64_t until = sb_mono_ms() + SB_MAINT_TICK_MS;
    while (!atomic_load(&a->maint_stop) && sb__agent_now(a) < wake && sb_mono_ms() < until)
        sb_sleep_ms(50, &a->maint_stop);
}

void *sb__maint_main(void *arg) {
    sb_agent_t *a = arg;
    sb_maint_t m = {0};
    while (!atomic_load(&a->maint_stop)) {
        m.lost |= !sb_redis_connected(a->maint_redis) && atomic_load(&a->present);
        if (sb_redis_ensure(a->maint_redis, &a->maint_stop) != SB_OK) break;
        int64_t now = sb__agent_now(a);
        if (m.lost) m.next_hb = m.next_renew = now; /* ours may be gone too: write them at once */
        if (sb_maint_beat(a, &m, now) != SB_OK) {
            /* connection dropped: ensure() and try again; anything else: not in a hot loop */
            if (sb_redis_connected(a->maint_redis)) {
                sb_error("agent", "lease renewal or presence heartbeat refused by redis");
                sb_sleep_ms(1000, &a->maint_stop);
            }
            continue;
        }
        if (atomic_load(&a->present)) sb_maint_recover(a, &m, now);
        sb_maint_follow(a, &m, now);
        sb_maint_sleep(a, sb_min64(sb_min64(sb_min64(m.next_hb, m.next_renew), m.next_follow),
                                   sb_min64(m.next_check, m.next_scan)));
    }
    return NULL;
}
