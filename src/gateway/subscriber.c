/* Status and gateway-event forwarding from Redis pub/sub to Socket.IO rooms (subscriber.h).
 *
 * The connection is an aredis client in push mode: its on-up hook sends one SUBSCRIBE for
 * all channels each time it (re)connects, and every push reply comes back to
 * sb_subscriber_push. A channel name says which job type and which kind of message it
 * carries (agent:{type}:status or agent:{type}:events), so no table of channels is kept. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gateway/aredis.h"
#include "gateway/status_event.h"
#include "gateway/subscriber.h"
#include "switchboard/clock.h"
#include "switchboard/error.h"
#include "switchboard/job.h"
#include "switchboard/json.h"
#include "switchboard/log.h"
#include "switchboard/utf8.h"

#define SB_SUB_MAX_TYPES 64
/* A gap is taken to start this long before the loss was noticed (a silent connection is only
 * noticed late); states replayed twice are harmless, lost ones are not. */
#define SB_SUB_GAP_SLACK_MS 5000
/* A status event's payload is written on the stack up to this size; a longer one (a large
 * result) goes through a cJSON object instead. */
#define SB_SUB_PAYLOAD_MAX 2048

struct sb_subscriber {
    sb_aredis_t *ar;
    sb_sio_t *sio;
    char *types;          /* owned copy of the comma-separated job types */
    int closing;
    sb_subscriber_stats_t stats;
    sb_aredis_hook_t up_hook;      /* resubscribes on every (re)connect */
    sb_subscriber_watch_t *watches; /* channels other modules watch (sb_subscriber_watch) */
    int64_t lost_ms;      /* unix ms the subscription was last lost (or created); 0: none */
    int confirming;       /* SUBSCRIBE sent on (re)connect, confirmation not seen yet */
    sb_subscriber_gap_fn on_gap;
    void *on_gap_ud;
    sb_subscriber_status_fn on_status;
    void *on_status_ud;
    sb_subscriber_foreign_fn on_foreign;
    void *on_foreign_ud;
    sb_subscriber_job_fn on_job;
    void *on_job_ud;
    int64_t now_ms;            /* the unix ms now_iso was written for */
    char now_iso[SB_ISO_LEN];  /* timestamp of status messages that carry none */
};

/* ---- subscribing ------------------------------------------------------------------------ */

/* Appends SUBSCRIBE agent:{t}:status agent:{t}:events for every type, and every watched
 * channel, to b. */
static int sb_subscriber_batch(const sb_subscriber_t *s, sb_batch_t *b) {
    int nwatch = 0;
    for (const sb_subscriber_watch_t *w = s->watches; w; w = w->next) nwatch++;
    const char **argv = malloc((1 + 2 * SB_SUB_MAX_TYPES + (size_t)nwatch) * sizeof *argv);
    char keys[2 * SB_SUB_MAX_TYPES][SB_KEY_LEN];
    int argc = 0, nk = 0;
    if (!argv) return SB_ENOMEM;
    argv[argc++] = "SUBSCRIBE";
    for (const char *p = s->types; *p && nk < 2 * SB_SUB_MAX_TYPES;) {
        while (*p == ' ' || *p == ',') p++;
        size_t n = strcspn(p, ", ");
        char type[SB_TYPE_MAX + 1];
        if (n && n <= SB_TYPE_MAX) {
            memcpy(type, p, n);
            type[n] = '\0';
            if (sb_job_type_valid(type) &&
                sb_key(keys[nk], SB_KEY_LEN, SB_KEY_STATUS, type, NULL) &&
                sb_key(keys[nk + 1], SB_KEY_LEN, SB_KEY_EVENTS, type, NULL)) {
                argv[argc++] = keys[nk];
                argv[argc++] = keys[nk + 1];
                nk += 2;
            }
        }
        p += n;
    }
    for (const sb_subscriber_watch_t *w = s->watches; w; w = w->next) argv[argc++] = w->channel;
    int rc = argc == 1 ? SB_EINVAL : sb_batch_addargv(b, argc, argv, NULL);
    free(argv);
    return rc;
}

static void sb_subscriber_push(redisReply *reply, void *priv);

static void sb_subscriber_on_up(void *ud) {
    sb_subscriber_t *s = ud;
    sb_batch_t *b = sb_batch_create();
    int rc = b ? sb_subscriber_batch(s, b) : SB_ENOMEM;
    if (rc == SB_OK) rc = sb_aredis_subscribe(s->ar, b, sb_subscriber_push, s);
    sb_batch_free(b);
    s->confirming = rc == SB_OK;
    if (rc != SB_OK) sb_error("gateway", "cannot subscribe to the status channels (%d)", rc);
}

/* Sends verb (SUBSCRIBE / UNSUBSCRIBE) channel when connected; else the next on-up hook
 * sends what is watched then. A failure is logged: the next reconnect sets it right. */
static void sb_subscriber_send1(sb_subscriber_t *s, const char *verb, const char *channel) {
    if (!sb_aredis_up(s->ar)) return;
    const char *argv[] = {verb, channel};
    sb_batch_t *b = sb_batch_create();
    int rc = b ? sb_batch_addargv(b, 2, argv, NULL) : SB_ENOMEM;
    if (rc == SB_OK) rc = sb_aredis_subscribe(s->ar, b, sb_subscriber_push, s);
    sb_batch_free(b);
    if (rc != SB_OK) sb_warn("gateway", "cannot %s %s (%d)", verb, channel, rc);
}

void sb_subscriber_watch(sb_subscriber_t *s, sb_subscriber_watch_t *w, const char *channel,
                         sb_subscriber_fn fn, void *ud) {
    *w = (sb_subscriber_watch_t){.channel = channel, .fn = fn, .ud = ud, .sub = s};
    sb_subscriber_watch_t **link = &s->watches;
    while (*link) link = &(*link)->next;
    *link = w;
    sb_subscriber_send1(s, "SUBSCRIBE", channel);
}

/* The first watch of channel, or NULL. */
static const sb_subscriber_watch_t *sb_subscriber_watched(const sb_subscriber_t *s,
                                                          const char *channel) {
    for (const sb_subscriber_watch_t *w = s->watches; w; w = w->next)
        if (!strcmp(w->channel, channel)) return w;
    return NULL;
}

void sb_subscriber_unwatch(sb_subscriber_watch_t *w) {
    sb_subscriber_t *s = w->sub;
    if (!s) return;
    sb_subscriber_watch_t **link = &s->watches;
    while (*link != w) link = &(*link)->next;
    *link = w->next;
    const char *channel = w->channel;
    *w = (sb_subscriber_watch_t){0};
    if (!s->closing && !sb_subscriber_watched(s, channel))
        sb_subscriber_send1(s, "UNSUBSCRIBE", channel);
}

/* ---- forwarding ------------------------------------------------------------------------- */

/* Counts an emit that reached n sockets (n < 0: it failed, returned as is). */
static int sb_subscriber_count(sb_subscriber_t *s, const char *room, const char *event, int n) {
    if (n < 0) return n;
    s->stats.deliveries += (unsigned long long)n;
    s->stats.forwarded++;
    sb_debug("gateway", "[%s] room=%s sockets=%d", event, room, n);
    return SB_OK;
}

/* Emits data to room as event; counts the deliveries. Returns 0 or SB_ENOMEM. */
static int sb_subscriber_emit(sb_subscriber_t *s, const char *room, const char *event,
                              const cJSON *data) {
    return sb_subscriber_count(s, room, event, sb_sio_emit_room(s->sio, room, event, data));
}

/* Same with data already JSON text. */
static int sb_subscriber_emit_json(sb_subscriber_t *s, const char *room, const char *event,
                                   const char *json, size_t len) {
    return sb_subscriber_count(s, room, event,
                               sb_sio_emit_room_json(s->sio, room, event, json, len));
}

/* The ISO 8601 text of now, formatted once per millisecond (many messages share one). */
static const char *sb_subscriber_now(sb_subscriber_t *s) {
    int64_t ms = sb_now_ms();
    if (ms != s->now_ms) {
        sb_iso8601(ms, s->now_iso);
        s->now_ms = ms;
    }
    return s->now_iso;
}

/* a then b into out (cap bytes), cut to fit; callers size out for the longest valid a, b. */
static void sb_subscriber_concat(char *out, size_t cap, const char *a, const char *b) {
    size_t na = strnlen(a, cap - 1), nb = strnlen(b, cap - 1 - na);
    memcpy(out, a, na);
    memcpy(out + na, b, nb);
    out[na + nb] = '\0';
}

/* The event of a valid status (root parsed into st) for room: its payload written straight
 * to text (no allocation), or built as a cJSON object when it does not fit. */
static int sb_subscriber_status_emit(sb_subscriber_t *s, const cJSON *root, const sb_status_t *st,
                                     const char *room, const char *event) {
    const char *ts = st->timestamp ? st->timestamp : sb_subscriber_now(s);
    char text[SB_SUB_PAYLOAD_MAX];
    int n = sb_status_event_write(root, st->job_id, st->status, ts, text, sizeof text);
    if (n >= 0) return sb_subscriber_emit_json(s, room, event, text, (size_t)n);
    cJSON *payload = sb_status_event_payload(root, st->job_id, st->status, ts);
    int rc = payload ? sb_subscriber_emit(s, room, event, payload) : SB_ENOMEM;
    cJSON_Delete(payload);
    return rc;
}

static int sb_subscriber_status(sb_subscriber_t *s, const char *type, const char *msg,
                                size_t len) {
    cJSON *root = NULL;
    sb_status_t st;
    char err[128], event[SB_TYPE_MAX + 16], room[SB_PUBKEY_MAX + 8], pre[SB_TYPE_MAX + 2];
    if (sb_status_parse(msg, len, &root, &st, err, sizeof err) != SB_OK) {
        sb_warn("gateway", "dropped a status message on agent:%s:status: %s", type, err);
        return SB_EINVAL;
    }
    if (!sb_public_key_valid(st.user_id)) {
        sb_warn("gateway", "dropped a status message on agent:%s:status: bad userId", type);
        cJSON_Delete(root);
        return SB_EINVAL;
    }
    sb_subscriber_concat(pre, sizeof pre, type, ":");
    sb_subscriber_concat(event, sizeof event, pre, st.status);
    sb_subscriber_concat(room, sizeof room, "user:", st.user_id);
    int rc = sb_subscriber_status_emit(s, root, &st, room, event);
    if (s->on_status) s->on_status(s->on_status_ud, st.user_id, st.job_id);
    if (s->on_job) s->on_job(s->on_job_ud, type, st.job_id, st.status, st.user_id);
    if (s->on_foreign && !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "recorded")))
        s->on_foreign(s->on_foreign_ud, type, &st);
    cJSON_Delete(root);
    return rc == SB_OK ? SB_OK : SB_EINVAL;
}

/* {"event":"{type}:...","room":"...","data":...} published by a gateway. */
static int sb_subscriber_event(sb_subscriber_t *s, const char *type, const char *msg,
                               size_t len) {
    cJSON *root = sb_json_parse(msg, len);
    const char *event = sb_json_str(root, "event"), *room = sb_json_str(root, "room");
    size_t tlen = strlen(type);
    int rc = SB_EINVAL;
    if (!event || !room || !*room || strlen(room) > 256 || strlen(event) > 128 ||
        strncmp(event, type, tlen) != 0 || event[tlen] != ':')
        sb_warn("gateway", "dropped a message on agent:%s:events: not {event:\"%s:...\",room}",
                type, type);
    else
        rc = sb_subscriber_emit(s, room, event, cJSON_GetObjectItemCaseSensitive(root, "data"));
    const char *id = sb_json_str(sb_json_obj(root, "data"), "jobId");
    if (rc == SB_OK && s->on_job && id && !strcmp(event + tlen, ":created") &&
        !strncmp(room, "user:", 5))
        s->on_job(s->on_job_ud, type, id, "queued", room + 5);
    cJSON_Delete(root);
    return rc == SB_OK ? SB_OK : SB_EINVAL;
}

int sb_subscriber_handle(sb_subscriber_t *s, const char *channel, const char *msg, size_t len) {
    char type[SB_TYPE_MAX + 1];
    s->stats.received++;
    if (!sb_utf8_valid(msg, len)) { /* it would go out in WebSocket text frames */
        sb_warn("gateway", "dropped a message on %s: not valid UTF-8", channel);
        s->stats.dropped++;
        return SB_EINVAL;
    }
    const char *rest = strncmp(channel, "agent:", 6) == 0 ? channel + 6 : NULL;
    const char *colon = rest ? strrchr(rest, ':') : NULL;
    size_t tlen = colon ? (size_t)(colon - rest) : 0;
    int rc = SB_EINVAL;
    if (tlen && tlen <= SB_TYPE_MAX) {
        memcpy(type, rest, tlen);
        type[tlen] = '\0';
        if (!strcmp(colon, ":status")) rc = sb_subscriber_status(s, type, msg, len);
        else if (!strcmp(colon, ":events")) rc = sb_subscriber_event(s, type, msg, len);
    }
    if (rc != SB_OK) s->stats.dropped++;
    return rc;
}

/* The first SUBSCRIBE confirmation after a (re)connect: every channel is subscribed again (one
 * command), so messages flow; report the gap since the loss to the on-gap hook. */
static void sb_subscriber_confirmed(sb_subscriber_t *s) {
    s->confirming = 0;
    if (!s->lost_ms) return;
    int64_t since = s->lost_ms - SB_SUB_GAP_SLACK_MS;
    s->lost_ms = 0;
    if (s->on_gap) s->on_gap(s->on_gap_ud, since);
}

/* A push reply: ["message", channel, payload] is forwarded; the first subscribe confirmation
 * closes a gap; the NULLs of a lost connection open one (the on-up hook resubscribes). */
static void sb_subscriber_push(redisReply *reply, void *priv) {
    sb_subscriber_t *s = priv;
    if (!s->closing && !reply && !s->lost_ms) s->lost_ms = sb_now_ms();
    if (!s->closing && !reply) s->confirming = 0;
    if (s->closing || !reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3)
        return;
    redisReply **e = reply->element;
    if (e[0]->type != REDIS_REPLY_STRING) return;
    if (!strcmp(e[0]->str, "message") && e[1]->type == REDIS_REPLY_STRING &&
        e[2]->type == REDIS_REPLY_STRING) {
        const sb_subscriber_watch_t *w = sb_subscriber_watched(s, e[1]->str);
        if (w) w->fn(w->ud, reply);
        else sb_subscriber_handle(s, e[1]->str, e[2]->str, e[2]->len);
    } else if (!strcmp(e[0]->str, "subscribe")) {
        sb_info("gateway", "subscribed to %s", e[1]->type == REDIS_REPLY_STRING ? e[1]->str : "?");
        if (s->confirming) sb_subscriber_confirmed(s);
    }
}

/* ---- life cycle --------------------------------------------------------------------------- */

sb_subscriber_t *sb_subscriber_create(uv_loop_t *loop, const sb_redis_addr_t *addr,
                                      const char *job_types, sb_sio_t *sio) {
    sb_subscriber_t *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->sio = sio;
    s->lost_ms = sb_now_ms(); /* until the first subscription, nothing is forwarded either */
    s->types = strdup(job_types ? job_types : "");
    s->ar = s->types ? sb_aredis_create(loop, addr, "subscriber") : NULL;
    if (!s->ar) {
        free(s->types);
        free(s);
        return NULL;
    }
    sb_aredis_on_up(s->ar, &s->up_hook, sb_subscriber_on_up, s);
    return s;
}

void sb_subscriber_close(sb_subscriber_t *s) {
    if (!s) return;
    s->closing = 1;
    while (s->watches) sb_subscriber_unwatch(s->watches);
    sb_aredis_close(s->ar); /* runs the push callback with NULL; it ignores it (closing) */
    free(s->types);
    free(s);
}

void sb_subscriber_on_gap(sb_subscriber_t *s, sb_subscriber_gap_fn fn, void *ud) {
    s->on_gap = fn;
    s->on_gap_ud = ud;
}

void sb_subscriber_on_status(sb_subscriber_t *s, sb_subscriber_status_fn fn, void *ud) {
    s->on_status = fn;
    s->on_status_ud = ud;
}

void sb_subscriber_on_foreign(sb_subscriber_t *s, sb_subscriber_foreign_fn fn, void *ud) {
    s->on_foreign = fn;
    s->on_foreign_ud = ud;
}

void sb_subscriber_on_job(sb_subscriber_t *s, sb_subscriber_job_fn fn, void *ud) {
    s->on_job = fn;
    s->on_job_ud = ud;
}

const sb_subscriber_stats_t *sb_subscriber_stats(const sb_subscriber_t *s) { return &s->stats; }
int sb_subscriber_up(const sb_subscriber_t *s) { return sb_aredis_up(s->ar); }
unsigned long long sb_subscriber_reconnects(const sb_subscriber_t *s) {
    return sb_aredis_reconnects(s->ar);
}
