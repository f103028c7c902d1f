/* Catch-up of connected users after a subscription gap (see catchup.h).
 *
 * The snapshot is one packed buffer of NUL-terminated public keys (the "user:" prefix cut);
 * pos is the next one to send. A repeating timer sends up to SB_CATCHUP_PER_TURN of them per
 * turn and stops itself at the end. */
#include <stdlib.h>
#include <string.h>
#include "gateway/catchup.h"
#include "gateway/replay.h"
#include "switchboard/clock.h"
#include "switchboard/error.h"
#include "switchboard/log.h"

#define SB_CATCHUP_PREFIX "user:"

struct sb_catchup {
    uv_timer_t timer; /* data = this; the struct is freed in its close callback */
    sb_replays_t *replays;
    sb_sio_t *sio;
    int64_t since_ms;
    int running;
    char *keys;       /* snapshot: public keys, each NUL-terminated */
    size_t len, cap, pos;
    int oom;          /* the snapshot could not grow: it is partial */
    unsigned long long users;
};

/* ---- snapshot ------------------------------------------------------------------------------ */

static void sb_catchup_add(void *ud, const char *room) {
    sb_catchup_t *c = ud;
    const char *pk = room + strlen(SB_CATCHUP_PREFIX);
    size_t n = strlen(pk) + 1;
    if (c->len + n > c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 4096;
        while (cap < c->len + n) cap *= 2;
        char *p = realloc(c->keys, cap);
        if (!p) {
            c->oom = 1;
            return;
        }
        c->keys = p;
        c->cap = cap;
    }
    memcpy(c->keys + c->len, pk, n);
    c->len += n;
}

/* Rebuilds the snapshot from the rooms user:*. Returns the number of users. */
static uint32_t sb_catchup_snapshot(sb_catchup_t *c) {
    c->len = c->pos = 0;
    c->oom = 0;
    uint32_t n = sb_rooms_each_name(sb_sio_rooms(c->sio), SB_CATCHUP_PREFIX, sb_catchup_add, c);
    if (c->oom) sb_error("gateway", "catch-up: out of memory, some users are skipped");
    return n;
}

/* ---- turns --------------------------------------------------------------------------------- */

static void sb_catchup_stop(sb_catchup_t *c) {
    c->running = 0;
    uv_timer_stop(&c->timer);
}

static void sb_catchup_turn(uv_timer_t *t) {
    sb_catchup_t *c = t->data;
    int64_t now = sb_now_ms();
    for (int i = 0; i < SB_CATCHUP_PER_TURN && c->pos < c->len; i++) {
        const char *pk = c->keys + c->pos;
        int rc = sb_replays_user(c->replays, pk, c->since_ms, now);
        if (rc == SB_EREDIS) return; /* commands down: the same user next turn */
        if (rc != SB_OK) sb_warn("gateway", "catch-up of user %s skipped (%d)", pk, rc);
        else c->users++;
        c->pos += strlen(pk) + 1;
    }
    if (c->pos >= c->len) {
        sb_info("gateway", "catch-up after the subscription gap done");
        sb_catchup_stop(c);
    }
}

void sb_catchup_start(sb_catchup_t *c, int64_t since_ms) {
    if (c->running && c->since_ms < since_ms) since_ms = c->since_ms;
    c->since_ms = since_ms;
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
    return c;
}

int sb_catchup_running(const sb_catchup_t *c) { return c->running; }
unsigned long long sb_catchup_users(const sb_catchup_t *c) { return c->users; }

static void sb_catchup_closed(uv_handle_t *h) {
    sb_catchup_t *c = h->data;
    free(c->keys);
    free(c);
}

void sb_catchup_close(sb_catchup_t *c) {
    if (!c) return;
    sb_catchup_stop(c);
    uv_close((uv_handle_t *)&c->timer, sb_catchup_closed);
}
