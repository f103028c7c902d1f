/* Group commit of the workers' job writes (agent_int.h, sb__commit_*): each update or finish
 * script call of a worker is queued here, and whichever worker finds no group call under way
 * becomes the leader: it takes the queued calls of the first one's shard (one slot on a
 * cluster; at most SB_GROUP_MAX, in queue order), sends them as one call of the group script
 * (agent_scripts.c) on the agent's commit connection, hands each waiting worker its reply and
 * wakes them. Calls queued while a group was out go with the next one, so under load one call
 * carries several workers' writes and nothing ever waits for a group to fill.
 *
 * Order: one worker's calls (its `processing` update, then its finish) enter one queue, leave it
 * in order and run in order inside a group, on one connection: a later call can never overtake
 * an earlier one. A call nobody waits for (the update sent as an attempt starts) is sent
 * deferred when its group has no waiting call: its reply is read and dropped with the next
 * group, as sb_redis_send_deferred does, and a deferred group goes as EVAL once a connection
 * (which loads the script) and by SHA1 after, since nobody would resend it on NOSCRIPT.
 *
 * Failures: a group lost with its connection is sent again once reconnected (sb__conn_retry),
 * as a single call is; each call is guarded (LPOS / LREM on our processing list), so one run
 * twice is a no-op the second time. A refusal (BUSY, LOADING..., and READONLY, OOM or
 * MASTERDOWN met inside the script, which the group script returns as the whole call's error)
 * waits and sends it again. Any other error inside one call (a key of the wrong type) is that
 * call's reply alone (pcall). */
#include <stdlib.h>
#include <string.h>
#include "agent_int.h"
#include "switchboard/error.h"
#include "switchboard/fmt.h"
#include "switchboard/log.h"

enum { SB_GROUP_MAX = 32 };            /* calls a group carries at most */
enum { SB_GROUP_BYTES = 512 * 1024 };  /* and argument bytes, past its first call (a REST
                                        * provider's request limit) */

/* A queued call, with copies of its arguments (one allocation). */
typedef struct sb_call {
    struct sb_call *next;
    sb__call_kind_t kind;
    int shard;
    int nkeys, nargs;
    const char **argv;  /* nkeys keys then nargs arguments, into the same allocation */
    size_t bytes;       /* their text */
    int wait;           /* a worker waits for reply / rc; else the leader frees the call */
    int done;           /* reply / rc are set (under the lock) */
    int rc;
    redisReply *reply;
} sb_call_t;

struct sb__commit {
    sb__conn_t conn;      /* its connection; quit = the agent's cancel */
    pthread_mutex_t lock; /* guards the rest */
    pthread_cond_t cond;  /* a group ended */
    sb_call_t *head, **tail;
    int busy;             /* a leader is sending a group */
    int waiting;          /* queued calls a worker waits for */
    unsigned eval_epoch;  /* sb_redis_script_epoch() + 1 when a deferred group last went as EVAL */
};

sb__commit_t *sb__commit_create(sb_agent_t *a, const sb_redis_addr_t *redis) {
    sb__commit_t *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->conn = (sb__conn_t){.agent = a, .quit = &a->cancel, .shard = &a->shards[0]};
    if (!(m->conn.redis = sb_redis_create(redis, "agent"))) {
        free(m);
        return NULL;
    }
    sb_redis_set_timeout(m->conn.redis, 10000);
    sb_redis_follow(m->conn.redis, &a->master_epoch);
    pthread_mutex_init(&m->lock, NULL);
    pthread_cond_init(&m->cond, NULL);
    m->tail = &m->head;
    return m;
}

void sb__commit_free(sb__commit_t *m) {
    if (!m) return;
    while (m->head) { /* only deferred calls can be left: nobody waits for them */
        sb_call_t *c = m->head;
        m->head = c->next;
        free(c);
    }
    sb_redis_free(m->conn.redis);
    pthread_mutex_destroy(&m->lock);
    pthread_cond_destroy(&m->cond);
    free(m);
}

/* A call with copies of argv's nkeys + nargs strings. NULL: no memory. */
static sb_call_t *sb_call_new(sb__call_kind_t kind, int shard, const char *const *argv,
                              int nkeys, int nargs, int wait) {
    int n = nkeys + nargs;
    size_t size = sizeof(sb_call_t) + (size_t)n * sizeof(char *);
    for (int i = 0; i < n; i++) size += strlen(argv[i]) + 1;
    sb_call_t *c = malloc(size);
    if (!c) return NULL;
    *c = (sb_call_t){.kind = kind, .shard = shard, .nkeys = nkeys, .nargs = nargs, .wait = wait,
                     .bytes = size - sizeof(sb_call_t) - (size_t)n * sizeof(char *)};
    c->argv = (const char **)(c + 1);
    char *text = (char *)(c->argv + n);
    for (int i = 0; i < n; i++) {
        size_t len = strlen(argv[i]) + 1;
        c->argv[i] = memcpy(text, argv[i], len);
        text += len;
    }
    return c;
}

/* Takes the next group out of the queue (lock held): the calls of the first one's shard, in
 * order, at most SB_GROUP_MAX and SB_GROUP_BYTES. Returns how many went into calls. */
static int sb_commit_take(sb__commit_t *m, sb_call_t **calls) {
    int n = 0, shard = m->head->shard;
    size_t bytes = 0;
    sb_call_t **p = &m->head;
    while (*p && n < SB_GROUP_MAX) {
        sb_call_t *c = *p;
        if (c->shard != shard) {
            p = &c->next;
            continue;
        }
        if (n > 0 && bytes + c->bytes > SB_GROUP_BYTES) break;
        bytes += c->bytes;
        *p = c->next;
        c->next = NULL;
        if (c->wait) m->waiting--;
        calls[n++] = c;
    }
    m->tail = &m->head;
    while (*m->tail) m->tail = &(*m->tail)->next;
    return n;
}

/* The group script's call for calls: every call's keys, then the number of calls and each
 * call's kind and arguments. Returns 0 or SB_ENOMEM. */
static int sb_commit_build(const sb__commit_t *m, sb_call_t *const *calls, int n,
                           sb_script_mode_t mode, sb_batch_t *b) {
    int nkeys = 0, argc = 1;
    for (int i = 0; i < n; i++) {
        nkeys += calls[i]->nkeys;
        argc += calls[i]->nkeys + 1 + calls[i]->nargs;
    }
    const char **argv = malloc((size_t)argc * sizeof *argv);
    if (!argv) return SB_ENOMEM;
    char count[SB_FMT_INT_LEN + 1];
    const char **keys = argv, **args = argv + nkeys;
    *args++ = sb_fmt_llz(count, n);
    for (int i = 0; i < n; i++) {
        const sb_call_t *c = calls[i];
        memcpy(keys, c->argv, (size_t)c->nkeys * sizeof *argv);
        keys += c->nkeys;
        *args++ = c->kind == SB__CALL_FINISH ? "f" : "u";
        memcpy(args, c->argv + c->nkeys, (size_t)c->nargs * sizeof *argv);
        args += c->nargs;
    }
    int rc = sb_batch_add_script(b, &m->conn.agent->scripts.group, mode, nkeys, argc, argv, NULL);
    free(argv);
    return rc;
}

typedef struct {
    sb__commit_t *m;
    sb_call_t **calls;
    int n;
    sb_batch_t *b;
} sb_group_t;

/* One try of a waited group: by SHA1, then as EVAL when Redis does not know the script.
 * Returns the reply, or NULL on an I/O error or no memory (b left empty). */
static redisReply *sb_group_attempt(sb__conn_t *conn, void *ctx) {
    sb_group_t *g = ctx;
    redisReply *rep = NULL;
    for (int mode = SB_SCRIPT_EVALSHA; mode <= SB_SCRIPT_EVAL; mode++) {
        sb_batch_reset(g->b);
        if (sb_commit_build(g->m, g->calls, g->n, mode, g->b) != SB_OK ||
            sb_redis_pipeline(conn->redis, g->b, &rep) != SB_OK)
            return NULL;
        if (!sb_reply_is_noscript(rep)) break;
        freeReplyObject(rep);
        rep = NULL;
    }
    return rep;
}

/* Sends a group nobody waits for, deferred (its reply dropped with the next read). */
static void sb_group_send_deferred(sb_group_t *g) {
    sb_redis_t *r = g->m->conn.redis;
    if (sb_redis_ensure(r, g->m->conn.quit) != SB_OK) return;
    unsigned epoch = sb_redis_script_epoch(r) + 1;
    sb_script_mode_t mode = g->m->eval_epoch == epoch ? SB_SCRIPT_EVALSHA : SB_SCRIPT_EVAL;
    g->m->eval_epoch = epoch;
    if (sb_commit_build(g->m, g->calls, g->n, mode, g->b) == SB_OK)
        sb__conn_send(&g->m->conn, g->b, NULL);
}

/* Sends a group that has waiting calls and hands each of those its reply (rc when there is
 * none); the replies of deferred calls are dropped with the group's. */
static void sb_group_send_waited(sb_group_t *g) {
    const sb_call_t *first = g->calls[0];
    const char *id = first->argv[first->nkeys]; /* both scripts take the id first */
    redisReply *rep = sb__conn_retry(&g->m->conn, "job writes", id, sb_group_attempt, g);
    int rc = rep ? SB_EPROTO : SB_ECANCELED;
    if (rep && (rep->type != REDIS_REPLY_ARRAY || rep->elements != (size_t)g->n))
        sb_error("agent", "job %s: the group of %d job writes failed: %s", id, g->n,
                 rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
    for (int i = 0; i < g->n; i++) {
        g->calls[i]->rc = rc;
        if (g->calls[i]->wait && rep && rep->type == REDIS_REPLY_ARRAY &&
            rep->elements == (size_t)g->n) {
            g->calls[i]->reply = rep->element[i];
            rep->element[i] = NULL; /* freeReplyObject skips it: the call owns it now */
            g->calls[i]->rc = SB_OK;
        }
    }
    if (rep) freeReplyObject(rep);
}

/* Leads one group (lock held, busy clear, queue not empty): takes it, sends it with the lock
 * released, then settles its calls and wakes the waiting workers. */
static void sb_commit_lead(sb__commit_t *m) {
    sb_call_t *calls[SB_GROUP_MAX];
    sb_group_t g = {.m = m, .calls = calls, .n = sb_commit_take(m, calls)};
    int waited = 0;
    for (int i = 0; i < g.n; i++) waited |= calls[i]->wait;
    m->busy = 1;
    pthread_mutex_unlock(&m->lock);
    g.b = sb_batch_create();
    if (!g.b) {
        for (int i = 0; i < g.n; i++) calls[i]->rc = SB_ENOMEM;
    } else if (waited) {
        sb_group_send_waited(&g);
    } else {
        sb_group_send_deferred(&g);
    }
    sb_batch_free(g.b);
    pthread_mutex_lock(&m->lock);
    for (int i = 0; i < g.n; i++) {
        if (calls[i]->wait) calls[i]->done = 1;
        else free(calls[i]);
    }
    m->busy = 0;
    pthread_cond_broadcast(&m->cond);
}

redisReply *sb__commit_call(sb__commit_t *m, const sb__shard_t *sh, sb__call_kind_t kind,
                            const char *const *argv, int wait, int *rc) {
    int finish = kind == SB__CALL_FINISH;
    sb_call_t *c = sb_call_new(kind, sh->index, argv, finish ? SB__FIN_NKEYS : SB__UPD_NKEYS,
                               finish ? SB__FIN_NARGS : SB__UPD_ARGC - SB__UPD_NKEYS, wait);
    *rc = c ? SB_OK : SB_ENOMEM;
    if (!c) return NULL;
    pthread_mutex_lock(&m->lock);
    *m->tail = c;
    m->tail = &c->next;
    m->waiting += wait;
    /* lead while there is a group and either our call waits in it or nobody else will send it
     * (every queued call is deferred); a deferred call of ours may be freed by any leader */
    for (;;) {
        int mine = wait && !c->done;
        if (!m->busy && m->head && (mine || m->waiting == 0)) {
            sb_commit_lead(m);
            continue;
        }
        if (!mine) break;
        pthread_cond_wait(&m->cond, &m->lock);
    }
    pthread_mutex_unlock(&m->lock);
    if (!wait) return NULL;
    redisReply *reply = c->reply;
    *rc = c->rc;
    free(c);
    return reply;
}
