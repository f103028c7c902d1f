/* The maintenance thread: heartbeats the agent's presence, and every recovery interval moves
 * the processing lists of dead agents back to the queue and puts back ids orphaned in its own
 * list. Its schedule follows the agent's clock (sb__agent_now); how long a Redis call took is
 * measured on the real monotonic clock (a call slower than SB_STALL_MS means Redis stalled).
 *
 * It never recovers other agents' jobs while Redis is lost, nor for a grace period after
 * Redis was lost or stalled, nor while Redis itself has been up for less than that period: the
 * keys that prove live agents alive may have expired meanwhile and not been written again. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "agent_int.h"
#include "switchboard/clock.h"
#include "switchboard/error.h"
#include "switchboard/json.h"
#include "switchboard/log.h"
#include "switchboard/queue.h"

#define SB_WORKER_DEPT "workers"
#define SB_STALL_MS 1000  /* a heartbeat or check slower than this: redis was stalled */
#define SB_MAINT_TICK_MS 1000 /* the longest the thread sleeps between looks at its connection */

/* The maintenance thread's schedule (agent clock) and what it knows of Redis's recent past. */
typedef struct {
    int64_t next_hb, next_scan;
    int64_t grace_until; /* no recovery of other agents' lists before this */
    int lost;            /* redis was out of reach (or stalled) since the last heartbeat landed */
} sb_maint_t;

static int sb_agent_heartbeat(sb_agent_t *a) {
    int inflight = atomic_load(&a->inflight);
    char name[SB_TYPE_MAX + 32];
    snprintf(name, sizeof name, "switchboard agent (%s)", a->type);
    sb_presence_t p = {.agent_id = a->id, .name = name, .email = "",
                       .department_id = SB_WORKER_DEPT, .department = SB_WORKER_DEPT,
                       .status = inflight >= a->nworkers ? "busy" : "online",
                       .set_chats = 1, .current_chats = inflight, .max_chats = a->nworkers};
    return sb_presence_heartbeat(a->maint_redis, &a->presence, &p, sb_now_ms(), NULL);
}

/* ---- recovery of dead agents' jobs --------------------------------------------------------- */

/* Marks the records of recovered ids as queued again, if they still say "processing". The
 * write is a compare-and-set against the text read: the job is already back on the queue and
 * a worker may be writing a newer state. */
static void sb_agent_requeue_records(sb_agent_t *a, const redisReply *ids, const char *dead) {
    for (size_t i = 0; i < ids->elements; i++) {
        const char *id = ids->element[i]->str;
        char *json = NULL, why[128], details[256], key[SB_KEY_LEN];
        if (!id || !sb_key(key, sizeof key, SB_KEY_JOB, a->type, id) ||
            sb_job_get(a->maint_redis, a->type, id, &json) != SB_OK)
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

static void sb_agent_recover_one(sb_agent_t *a, const char *proc_key, const char *dead) {
    char pkey[256];
    if (!sb_agent_id_valid(dead) || !sb_presence_key(pkey, sizeof pkey, dead)) return;
    const char *argv[SB__REC_ARGC] = {[SB__REC_K_PROC] = proc_key, [SB__REC_K_PRESENCE] = pkey,
                                      [SB__REC_K_JOBS] = a->k_jobs};
    redisReply *rep = sb_redis_eval(a->maint_redis, &a->scripts.recover, SB__REC_NKEYS,
                                    SB__REC_ARGC, argv, NULL);
    if (!rep) return;
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements > 0) {
        sb_warn("agent", "recovered %zu job(s) of agent %s (presence expired): back on %s",
                rep->elements, dead, a->k_jobs);
        sb__stat_add(a, &a->stats.recovered, rep->elements);
        sb_agent_requeue_records(a, rep, dead);
    } else if (rep->type == REDIS_REPLY_ERROR) {
        sb_error("agent", "recovery script failed: %s", rep->str);
    }
    freeReplyObject(rep);
}

/* SCANs agent:{type}:processing:* and recovers every list whose agent is gone. */
static void sb_agent_recover(sb_agent_t *a) {
    char pattern[SB_KEY_LEN + 1], prefix[SB_KEY_LEN];
    sb_key(prefix, sizeof prefix, SB_KEY_PROCESSING, a->type, "");
    snprintf(pattern, sizeof pattern, "%s*", prefix);
    size_t plen = strlen(prefix);
    char cursor[32] = "0";
    do {
        redisReply *rep = sb_redis_cmd(a->maint_redis, "SCAN %s MATCH %s COUNT 500", cursor,
                                       pattern);
        if (!rep) return;
        if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2) {
            freeReplyObject(rep);
            return;
        }
        snprintf(cursor, sizeof cursor, "%s", rep->element[0]->str);
        const redisReply *keys = rep->element[1];
        for (size_t i = 0; i < keys->elements && !atomic_load(&a->maint_stop); i++) {
            const char *key = keys->element[i]->str;
            if (strlen(key) > plen && strcmp(key + plen, a->id) != 0)
                sb_agent_recover_one(a, key, key + plen);
        }
        freeReplyObject(rep);
    } while (strcmp(cursor, "0") != 0 && !atomic_load(&a->maint_stop));
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

/* A take whose reply was lost (Redis died after running it) leaves an id in our own
 * processing list that no worker holds, and the recovery of dead agents never looks at a live
 * agent's list. So each scan compares our list with what the workers hold: an id orphaned on
 * two consecutive scans (not one whose take reply is just arriving) goes back on the queue
 * through the guarded finish script. */
static void sb_agent_reclaim_own(sb_agent_t *a) {
    redisReply *rep = sb_redis_cmd(a->maint_redis, "LRANGE %s 0 -1", a->k_proc);
    if (!rep || rep->type != REDIS_REPLY_ARRAY) {
        if (rep) freeReplyObject(rep);
        return;
    }
    char **next = calloc(rep->elements + 1, sizeof *next);
    size_t nnext = 0;
    sb__conn_t conn = {.agent = a, .redis = a->maint_redis, .quit = &a->maint_stop};
    for (size_t i = 0; next && i < rep->elements; i++) {
        const char *id = rep->element[i]->str;
        if (!id || sb__agent_held(a, id)) continue;
        if (!sb_agent_suspected(a, id)) {
            if ((next[nnext] = strdup(id))) nnext++;
            continue;
        }
        sb__finish_t f = {.mode = SB__FINISH_REQUEUE};
        if (sb__conn_finish(&conn, id, &f) == 1) {
            sb_warn("agent", "job %.64s was left in our processing list (a reply lost with "
                    "redis); put back on the queue", id);
            sb__stat_add(a, &a->stats.recovered, 1);
        }
    }
    freeReplyObject(rep);
    sb__maint_close(a);
    a->suspects = next;
    a->nsuspects = nnext;
}

/* ---- the schedule ------------------------------------------------------------------------- */

/* 1 once Redis has been up for a presence TTL: before that, presence keys of live agents may
 * have expired while it was down (or been lost with it) and not been written again yet. A
 * server that does not tell its uptime (INFO renamed away) counts as settled. */
static int sb_agent_redis_settled(sb_agent_t *a) {
    redisReply *rep = sb_redis_cmd(a->maint_redis, "INFO server");
    if (!rep) return 0;
    const char *up = rep->type == REDIS_REPLY_STRING ? strstr(rep->str, "uptime_in_seconds:") : NULL;
    int settled = !up || atol(up + strlen("uptime_in_seconds:")) >= a->o.status_ttl_s;
    freeReplyObject(rep);
    return settled;
}

/* A heartbeat. Returns 0 when it landed. The first one after redis was lost starts the grace:
 * the others' heartbeats may not have landed either, so they get a TTL before their jobs are
 * taken for those of dead agents. */
static int sb_maint_heartbeat(sb_agent_t *a, sb_maint_t *m, int64_t now) {
    int64_t t0 = sb_mono_ms();
    int rc = sb_agent_heartbeat(a);
    m->lost |= sb_mono_ms() - t0 > SB_STALL_MS && atomic_load(&a->present); /* paused */
    if (rc != SB_OK) {
        m->lost = 1;
        return rc;
    }
    if (!atomic_exchange(&a->present, 1))
        sb_info("agent", "agent %s online (type %s, concurrency %d)", a->id, a->type, a->nworkers);
    if (m->lost) {
        m->grace_until = now + (int64_t)a->o.status_ttl_s * 1000;
        sb_info("agent", "redis back: jobs of agents whose presence expired are recovered after "
                "%d s, once live agents had time to heartbeat", a->o.status_ttl_s);
        m->lost = 0;
    }
    m->next_hb = now + (int64_t)a->o.heartbeat_s * 1000;
    return SB_OK;
}

/* A scan: other agents' lists (unless redis was lost lately, see sb_maint_heartbeat), then
 * our own. */
static void sb_maint_scan(sb_agent_t *a, sb_maint_t *m, int64_t now) {
    int64_t t0 = sb_mono_ms();
    int settled = !m->lost && now >= m->grace_until && sb_agent_redis_settled(a);
    if (sb_mono_ms() - t0 > SB_STALL_MS) { /* stalled right now: heartbeat, then a TTL */
        m->lost = 1;
        settled = 0;
    }
    if (settled) sb_agent_recover(a);
    sb_agent_reclaim_own(a);
    /* from the scan's end: two scans are never closer than the interval */
    m->next_scan = sb__agent_now(a) + (int64_t)a->o.recovery_s * 1000;
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
        if (m.lost) m.next_hb = now; /* our own key may be gone too: write it again at once */
        if (now >= m.next_hb && sb_maint_heartbeat(a, &m, now) != SB_OK) {
            /* connection dropped: ensure() and try again; anything else: not in a hot loop */
            if (sb_redis_connected(a->maint_redis)) {
                sb_error("agent", "presence heartbeat refused by redis");
                sb_sleep_ms(1000, &a->maint_stop);
            }
            continue;
        }
        if (now >= m.next_scan && atomic_load(&a->present)) sb_maint_scan(a, &m, now);
        sb_maint_sleep(a, m.next_hb < m.next_scan ? m.next_hb : m.next_scan);
    }
    return NULL;
}
