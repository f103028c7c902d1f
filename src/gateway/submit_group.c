/* Group commit of job submissions (see submit_group.h): a group is a flight, filled during a
 * loop turn, sent by sb_aredis_eval (EVALSHA, EVAL after NOSCRIPT: the builder runs again and
 * leaves out who left meanwhile), answered member by member from the one reply, freed. On
 * Redis Cluster a flight holds the jobs of one slot (sb_submit_call_slot: one script call
 * touches one slot): up to SB_SG_OPEN flights, one per slot, fill during a turn and are all sent
 * at its end, so POSTs of users on different shards or types still group (a user's jobs share
 * a slot, hence a flight, in arrival order). The job.created audit entries of a flight's queued
 * jobs follow its reply as one separate batch (submit.h). */
#include <stdlib.h>
#include "gateway/submit_group.h"
#include "switchboard/error.h"
#include "switchboard/log.h"

typedef struct {
    sb_submit_call_t *call;
    void *owner;
    sb_submit_alive_fn alive;
    sb_submit_done_fn done;
    int slot; /* its place in the call last built, -1 when left out */
} sb_sg_member_t;

typedef struct {
    const sb_script_t *script;
    sb_aredis_t *ar; /* where it was sent */
    int slot;        /* of its jobs (sb_submit_call_slot; 0 off Redis Cluster) */
    size_t n, sent;
    sb_sg_member_t m[SB_SUBMIT_GROUP_MAX];
} sb_sg_flight_t;

#define SB_SG_OPEN 16 /* flights (slots) open at once; one more sends them all */

struct sb_submit_group {
    uv_check_t check;
    sb_aredis_t *const *redis;
    const sb_script_t *script;
    sb_sg_flight_t *open[SB_SG_OPEN]; /* filling during this loop turn, one per slot */
    size_t nopen;
};

static void sb_sg_audit_cb(redisReply *reply, void *priv) {
    (void)priv;
    if (!reply || reply->type == REDIS_REPLY_ERROR)
        sb_warn("gateway", "job.created audit entries not written: %s",
                reply ? reply->str : "redis went away");
}

/* Cluster: the audit entries of f's queued jobs, one batch sent apart (submit.h). */
static void sb_sg_audit(sb_sg_flight_t *f, const redisReply *reply) {
    sb_batch_t *b = f->ar ? sb_batch_create() : NULL;
    for (size_t i = 0; b && i < f->n; i++) {
        sb_rate_result_t rate;
        if (f->m[i].slot >= 0 &&
            sb_submit_result(reply, (size_t)f->m[i].slot, f->sent, &rate) == SB_OK &&
            rate.allowed)
            sb_submit_audit_add(b, f->m[i].call);
    }
    if (b && sb_batch_count(b) && sb_aredis_send(f->ar, b, sb_sg_audit_cb, NULL) != SB_OK)
        sb_sg_audit_cb(NULL, NULL);
    sb_batch_free(b);
}

/* Answers every member with rc, or when rc is 0 with its result in reply (a left-out one:
 * SB_ECANCELED), and frees f. */
static void sb_sg_answer(sb_sg_flight_t *f, int rc, const redisReply *reply) {
    if (rc == SB_OK && reply) sb_sg_audit(f, reply);
    for (size_t i = 0; i < f->n; i++) {
        sb_sg_member_t *m = &f->m[i];
        sb_rate_result_t rate = {0};
        int r = rc != SB_OK  ? rc
                : m->slot < 0 ? SB_ECANCELED
                              : sb_submit_result(reply, (size_t)m->slot, f->sent, &rate);
        m->done(m->owner, r, &rate, reply);
        sb_submit_call_free(m->call);
    }
    free(f);
}

static int sb_sg_build(sb_batch_t *b, sb_script_mode_t mode, void *priv) {
    sb_sg_flight_t *f = priv;
    sb_submit_call_t *calls[SB_SUBMIT_GROUP_MAX];
    f->sent = 0;
    for (size_t i = 0; i < f->n; i++) {
        sb_sg_member_t *m = &f->m[i];
        m->slot = m->alive(m->owner) ? (int)f->sent : -1;
        if (m->slot >= 0) calls[f->sent++] = m->call;
    }
    if (f->sent == 0) return SB_ECANCELED;
    return sb_submit_add(b, f->script, mode, calls, f->sent);
}

static void sb_sg_reply(redisReply *reply, void *priv) {
    sb_sg_answer(priv, reply ? SB_OK : SB_EREDIS, reply);
}

/* Sends the open flight i (and closes the gap it leaves). */
static void sb_sg_send(sb_submit_group_t *g, size_t i) {
    sb_sg_flight_t *f = g->open[i];
    g->open[i] = g->open[--g->nopen];
    if (!g->nopen && !uv_is_closing((uv_handle_t *)&g->check)) uv_check_stop(&g->check);
    sb_aredis_t *ar = f->ar = *g->redis;
    int rc = ar ? sb_aredis_eval(ar, sb_sg_build, sb_sg_reply, f) : SB_EREDIS;
    if (rc == SB_OK) return;
    /* nothing was sent: all left (ECANCELED, slots say so), Redis down, or no memory */
    sb_sg_answer(f, rc == SB_ECANCELED ? SB_OK : SB_EREDIS, NULL);
}

static void sb_sg_send_all(sb_submit_group_t *g) {
    while (g->nopen) sb_sg_send(g, g->nopen - 1);
}

/* The index of the open flight of call's slot, a new one's, or -1 (no memory). */
static long sb_sg_flight_for(sb_submit_group_t *g, const sb_submit_call_t *call) {
    int slot = sb_submit_call_slot(call);
    for (size_t i = 0; i < g->nopen; i++)
        if (g->open[i]->slot == slot) return (long)i;
    if (g->nopen == SB_SG_OPEN) sb_sg_send_all(g);
    sb_sg_flight_t *f = calloc(1, sizeof *f);
    if (!f) return -1;
    f->script = g->script;
    f->slot = slot;
    g->open[g->nopen] = f;
    return (long)g->nopen++;
}

static void sb_sg_check_cb(uv_check_t *h) { sb_sg_send_all(h->data); }

sb_submit_group_t *sb_submit_group_create(uv_loop_t *loop, sb_aredis_t *const *redis,
                                          const sb_script_t *script) {
    sb_submit_group_t *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->redis = redis;
    g->script = script;
    uv_check_init(loop, &g->check);
    g->check.data = g;
    return g;
}

int sb_submit_group_add(sb_submit_group_t *g, sb_submit_call_t *call, void *owner,
                        sb_submit_alive_fn alive, sb_submit_done_fn done, int now) {
    long i = g ? sb_sg_flight_for(g, call) : -1;
    if (i < 0) {
        sb_submit_call_free(call);
        return SB_ENOMEM;
    }
    sb_sg_flight_t *f = g->open[i];
    f->m[f->n++] = (sb_sg_member_t){call, owner, alive, done, -1};
    if (now || f->n == SB_SUBMIT_GROUP_MAX || uv_is_closing((uv_handle_t *)&g->check))
        sb_sg_send(g, (size_t)i);
    else
        uv_check_start(&g->check, sb_sg_check_cb);
    return SB_OK;
}

void sb_submit_group_stop(sb_submit_group_t *g) {
    if (!g) return;
    sb_sg_send_all(g);
    uv_close((uv_handle_t *)&g->check, NULL);
}

void sb_submit_group_free(sb_submit_group_t *g) { free(g); }
