/* Catch-up of connected users after a subscription gap (see catchup.h).
 *
 * The snapshot is one packed buffer of NUL-terminated public keys (the "user:" prefix cut);
 * pos is the next one to send. A repeating timer sends up to SB_CATCHUP_PER_TURN of them per
 * turn and stops itself at the end. Users whose read came back lost or transient (the
 * replays' on-retry hook) are packed into a second buffer; at the end of a pass that buffer
 * becomes the snapshot and the timer starts again after the backoff (backoff.h; back to the
 * minimum when a pass starts afresh). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gateway/backoff.h"
#include "gateway/catchup.h"
#include "gateway/replay.h"
#include "switchboard/clock.h"
#include "switchboard/error.h"
#include "switchboard/log.h"

#define SB_CATCHUP_PREFIX "user:"

/* Packed NUL-terminated public keys. */
typedef struct {
    char *buf;
    size_t len, cap;
    int oom; /* a key could not be added: the list is partial */
} sb_catchup_keys_t;

struct sb_catchup {
    uv_timer_t timer; /* data = this; the struct is freed in its close callback */
    sb_replays_t *replays;
    sb_sio_t *sio;
    int64_t since_ms;
    int running;
    sb_catchup_keys_t snap;  /* snapshot: public keys, each NUL-terminated */
    size_t pos;              /* next key of snap to send */
    sb_catchup_keys_t retry; /* keys whose read must be sent again */
    sb_backoff_t backoff;    /* wait before the next retry pass */
    char why[96];            /* what Redis answered the last user to retry */
    unsigned long long users;
};

/* ---- snapshot ------------------------------------------------------------------------------ */

static void sb_catchup_keys_add(sb_catchup_keys_t *k, const char *pk) {
    size_t n = strlen(pk) + 1;
    if (k->len + n > k->cap) {
        size_t cap = k->cap ? k->cap * 2 : 4096;
        while (cap < k->len + n) cap *= 2;
        char *p = realloc(k->buf, cap);
        if (!p) {
            k->oom = 1;
            return;
        }
        k->buf = p;
        k->cap = cap;
    }
    memcpy(k->buf + k->len, pk, n);
    k->len += n;
}

static void sb_catchup_add(void *ud, const char *room) {
    sb_catchup_t *c = ud;
    sb_catchup_keys_add(&c->snap, room + strlen(SB_CATCHUP_PREFIX));
}

/* Rebuilds the snapshot from the rooms user:*. Returns the number of users. */
static uint32_t sb_catchup_snapshot(sb_catchup_t *c) {
    c->snap.len = c->pos = 0;
    c->snap.oom = 0;
    uint32_t n = sb_rooms_each_name(sb_sio_rooms(c->sio), SB_CATCHUP_PREFIX, sb_catchup_add, c);
    if (c->snap.oom) sb_error("gateway", "catch-up: out of memory, some users are skipped");
    return n;
}

/* ---- turns --------------------------------------------------------------------------------- */

static void sb_catchup_stop(sb_catchup_t *c) {
    c->running = 0;
    uv_timer_stop(&c->timer);
}

static void sb_catchup_turn(uv_timer_t *t);

/* The end of a pass: the users to retry become the snapshot, sent after the backoff. */
static int sb_catchup_next_pass(sb_catchup_t *c) {
    if (!c->retry.len) return 0;
    sb_catchup_keys_t t = c->snap;
    c->snap = c->retry;
    c->retry = t;
    c->retry.len = 0;
    c->retry.oom = 0;
    c->pos = 0;
    int wait_ms = sb_backoff_next(&c->backoff);
    sb_info("gateway", "catch-up: retrying users in %d ms (redis answered: %s)", wait_ms, c->why);
    uv_timer_start(&c->timer, sb_catchup_turn, (uint64_t)wait_ms, SB_CATCHUP_TURN_MS);
    return 1;
}

static void sb_catchup_turn(uv_timer_t *t) {
    sb_catchup_t *c = t->data;
    int64_t now = sb_now_ms();
    for (int i = 0; i < SB_CATCHUP_PER_TURN && c->pos < c->snap.len; i++) {
        const char *pk = c->snap.buf + c->pos;
        int rc = sb_replays_user(c->replays, pk, c->since_ms, now);
        if (rc == SB_EREDIS) return; /* commands down: the same user next turn */
        if (rc != SB_OK) sb_warn("gateway", "catch-up of user %s skipped (%d)", pk, rc);
        else c->users++;
        c->pos += strlen(pk) + 1;
    }
    if (c->pos < c->snap.len || sb_catchup_next_pass(c)) return;
    sb_info("gateway", "catch-up pass after the subscription gap sent");
    sb_catchup_stop(c);
}

/* The replays' on-retry hook: key goes to the next pass (started now if none runs). */
static void sb_catchup_retry(void *ud, const char *public_key, const char *why) {
    sb_catchup_t *c = ud;
    sb_debug("gateway", "catch-up of user %s to be retried: %s", public_key, why);
    snprintf(c->why, sizeof c->why, "%s", why);
    sb_catchup_keys_add(&c->retry, public_key);
    if (c->retry.oom) sb_error("gateway", "catch-up: out of memory, some users are skipped");
    if (c->running) return; /* the pass's end picks it up */
    c->running = 1;
    c->pos = c->snap.len;
    uv_timer_start(&c->timer, sb_catchup_turn, 0, SB_CATCHUP_TURN_MS);
}

void sb_catchup_start(sb_catchup_t *c, int64_t since_ms) {
    if (c->running && c->since_ms < since_ms) since_ms = c->since_ms;
    c->since_ms = since_ms;
    c->retry.len = 0; /* the new snapshot has them all */
    sb_backoff_reset(&c->backoff);
    uint32_t n = sb_catchup_snapshot(c);
    char at[SB_ISO_LEN];
    sb_info("gateway", "status subscription back: catching up %u connected user(s) since %s",
            (unsigned)n, sb_iso8601(since_ms, at));
    if (!n) {
        sb_catchup_stop(c);
        return;
    }
    c->running = 1;
    uv_timer_start(&c->timer, sb_catchup_turn, 0, SB_CATCHUP_TURN_MS);
}

/* ---- life cycle ---------------------------------------------------------------------------- */

sb_catchup_t *sb_catchup_create(uv_loop_t *loop, sb_replays_t *replays, sb_sio_t *sio) {
    sb_catchup_t *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->replays = replays;
    c->sio = sio;
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    sb_replays_on_retry(replays, sb_catchup_retry, c);
    return c;
}

int sb_catchup_running(const sb_catchup_t *c) { return c->running; }
unsigned long long sb_catchup_users(const sb_catchup_t *c) { return c->users; }

static void sb_catchup_closed(uv_handle_t *h) {
    sb_catchup_t *c = h->data;
    free(c->snap.buf);
    free(c->retry.buf);
    free(c);
}

void sb_catchup_close(sb_catchup_t *c) {
    if (!c) return;
    sb_replays_on_retry(c->replays, NULL, NULL);
    sb_catchup_stop(c);
    uv_close((uv_handle_t *)&c->timer, sb_catchup_closed);
}
