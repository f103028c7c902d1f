/* Live presence: events to admins, expiry notifications, the sweep (see presence_watch.h).
 *
 * Three small state machines share one struct:
 *   notify  UNKNOWN → (CONFIG GET answered) → ON | (CONFIG SET answered) → ON, or REFUSED
 *           when Redis refuses CONFIG. Rerun on every (re)connect of the command connection,
 *           since a restarted Redis forgets a CONFIG SET.
 *   sweep   idle → pass in flight (one page per round trip, until the cursor is "0") → idle.
 *           A tick that finds a pass in flight does nothing.
 *   expire  one heap call per expired key in flight, freed by its callback.
 * Every script call goes through sb_aredis_eval (EVALSHA, and on NOSCRIPT once more as EVAL).
 * Callbacks of the command connection all run (with NULL when it closes) before
 * sb_presence_watch_free: the gateway closes that connection first on shutdown.
 *
 * On Redis Cluster a key's expiry is announced only by the node that holds it, and the
 * presence keys ({agents} tag, presence.h) are on one master: a connection of its own (kev)
 * to that master turns the events on there (CONFIG GET / SET) and SUBSCRIBEs; every tick asks
 * the router which master serves {agents} now and moves kev after a failover or a
 * resharding. The SUBSCRIBE connection's home node is not watched for expiries then. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gateway/gateway.h"
#include "gateway/presence_watch.h"
#include "gateway/socketio/socketio.h"
#include "gateway/subscriber.h"
#include "switchboard/cluster.h"
#include "switchboard/clock.h"
#include "switchboard/error.h"
#include "switchboard/json.h"
#include "switchboard/log.h"
#include "switchboard/presence.h"
#include "switchboard/utf8.h"

typedef enum { SB_NOTIFY_UNKNOWN = 0, SB_NOTIFY_ON, SB_NOTIFY_REFUSED } sb_notify_t;

struct sb_presence_watch {
    sb_gateway_t *gw;
    uv_timer_t sweep;          /* the sweep's period timer */
    sb_aredis_hook_t up_hook;  /* on the command connection: notifications on again */
    sb_subscriber_watch_t events_watch, expired_watch; /* on the SUBSCRIBE connection */
    int stopped;               /* stop() ran: send nothing more */
    sb_notify_t notify;
    int refusal_logged;        /* the CONFIG refusal was logged (once per process) */
    int sweeping;              /* a sweep pass is in flight */
    char cursor[32];           /* HSCAN cursor of the pass in flight */
    char expired_channel[64];  /* __keyevent@{db}__:expired */
    sb_aredis_t *kev;          /* cluster: plain connection to the presence master, or NULL */
    sb_aredis_hook_t kev_hook; /* on kev: notifications on, then SUBSCRIBE */
    char kev_at[300];          /* host:port kev is for */
    unsigned long long forwarded, dropped, repaired, expiries, announced, sweeps;
};

/* An expire script call in flight (one per expired key). */
typedef struct {
    sb_presence_watch_t *pw;
    char id[SB_AGENT_ID_MAX + 1];
} sb_pw_expire_t;

static int sb_pw_can_send(const sb_presence_watch_t *pw) {
    return !pw->stopped && pw->gw->redis && sb_aredis_up(pw->gw->redis);
}

/* Sends b (freed here) on the command connection. Returns 0 or an SB_E* code. */
static int sb_pw_send(sb_presence_watch_t *pw, sb_batch_t *b, int built, sb_aredis_cb cb,
                      void *priv) {
    int rc = !b ? SB_ENOMEM : built != SB_OK ? built
                                              : sb_aredis_send(pw->gw->redis, b, cb, priv);
    sb_batch_free(b);
    return rc;
}

/* ---- forwarding: agent:presence → room admins ------------------------------------------- */

static void sb_pw_on_event(void *ud, const redisReply *msg) {
    sb_presence_watch_t *pw = ud;
    const redisReply *text = msg->element[2];
    cJSON *doc = NULL;
    const char *event = NULL;
    if (sb_presence_event_parse(text->str, text->len, &doc, &event) != SB_OK) {
        pw->dropped++;
        sb_warn("gateway", "dropped a message on " SB_PRESENCE_CHANNEL ": not a presence event");
        return;
    }
    const char *who = sb_json_str(sb_json_obj(doc, "agent"), "agent_id");
    if (!sb_utf8_valid(text->str, text->len)) { /* forwarded repaired: see presence_watch.h */
        pw->repaired++;
        sb_warn("gateway", "a %s event of agent %s held bytes that are not UTF-8: forwarded with "
                "U+FFFD", event, who ? who : "?");
    }
    int n = sb_socketio_emit_admins(pw->gw->sio, event, text->str, text->len);
    if (n >= 0) pw->forwarded++;
    sb_debug("gateway", "[%s] agent=%s admins=%d", event, who ? who : "?", n);
    cJSON_Delete(doc);
}

/* ---- expiry: __keyevent@db__:expired → expire script -------------------------------------- */

static int sb_pw_expire_build(sb_batch_t *b, sb_script_mode_t mode, void *priv) {
    sb_pw_expire_t *call = priv;
    return sb_presence_expire_cmd(b, &call->pw->gw->presence, call->id, sb_now_ms(), mode);
}

static void sb_pw_expire_cb(redisReply *reply, void *priv) {
    sb_pw_expire_t *call = priv;
    int announced = 0;
    if (reply && sb_presence_expire_reply(reply, &announced) == SB_OK && announced)
        call->pw->announced++;
    else if (reply && reply->type == REDIS_REPLY_ERROR)
        sb_warn("gateway", "presence expire %s: %s", call->id, reply->str);
    free(call);
}

/* Sends the expire script for call->id; frees call when it cannot (the sweep catches up). */
static void sb_pw_expire_send(sb_pw_expire_t *call) {
    sb_presence_watch_t *pw = call->pw;
    if (!sb_pw_can_send(pw) ||
        sb_aredis_eval(pw->gw->redis, sb_pw_expire_build, sb_pw_expire_cb, call) != SB_OK)
        free(call);
}

static void sb_pw_on_expired(void *ud, const redisReply *msg) {
    sb_presence_watch_t *pw = ud;
    sb_pw_expire_t *call = malloc(sizeof *call);
    if (!call) return;
    call->pw = pw;
    if (!sb_presence_expired_parse(msg, call->id, sizeof call->id)) {
        free(call); /* some other key expired */
        return;
    }
    pw->expiries++;
    sb_pw_expire_send(call);
}

/* ---- sweep: one pass over agents:meta ------------------------------------------------------ */

static void sb_pw_sweep_page(sb_presence_watch_t *pw);

static void sb_pw_sweep_cb(redisReply *reply, void *priv) {
    sb_presence_watch_t *pw = priv;
    int retired = 0;
    if (!reply || sb_presence_sweep_reply(reply, pw->cursor, sizeof pw->cursor, &retired) != SB_OK) {
        if (reply) sb_warn("gateway", "presence sweep: unexpected reply from redis");
        pw->sweeping = 0;
        return;
    }
    pw->announced += (unsigned long long)retired;
    if (retired) sb_info("gateway", "presence sweep retired %d agent(s)", retired);
    if (strcmp(pw->cursor, "0") != 0) sb_pw_sweep_page(pw);
    else pw->sweeping = 0;
}

static int sb_pw_sweep_build(sb_batch_t *b, sb_script_mode_t mode, void *priv) {
    sb_presence_watch_t *pw = priv;
    return sb_presence_sweep_cmd(b, &pw->gw->presence, pw->cursor, 0, sb_now_ms(), mode);
}

/* Sends the sweep script for the page at pw->cursor; the pass ends when it cannot. */
static void sb_pw_sweep_page(sb_presence_watch_t *pw) {
    if (!sb_pw_can_send(pw) ||
        sb_aredis_eval(pw->gw->redis, sb_pw_sweep_build, sb_pw_sweep_cb, pw) != SB_OK)
        pw->sweeping = 0;
}

static void sb_pw_kev_follow(sb_presence_watch_t *pw);

static void sb_pw_tick(uv_timer_t *t) {
    sb_presence_watch_t *pw = t->data;
    sb_pw_kev_follow(pw);
    if (pw->sweeping || !sb_pw_can_send(pw)) return;
    pw->sweeping = 1;
    pw->sweeps++;
    snprintf(pw->cursor, sizeof pw->cursor, "0");
    sb_pw_sweep_page(pw);
}

/* The sweep's period follows the notification mode. */
static void sb_pw_set_mode(sb_presence_watch_t *pw, sb_notify_t mode) {
    pw->notify = mode;
    uv_timer_set_repeat(&pw->sweep, mode == SB_NOTIFY_ON ? SB_PRESENCE_BACKSTOP_MS
                                                         : SB_PRESENCE_FALLBACK_MS);
    if (mode == SB_NOTIFY_ON) {
        sb_info("gateway", "presence: expired key events on; sweeping every %d ms as a backstop",
                SB_PRESENCE_BACKSTOP_MS);
    } else if (!pw->refusal_logged) {
        pw->refusal_logged = 1;
        sb_warn("gateway", "presence: redis refused CONFIG (notify-keyspace-events); agents whose "
                "heartbeats stop are found by a sweep every %d ms", SB_PRESENCE_FALLBACK_MS);
    }
}

/* ---- notifications: CONFIG GET, then CONFIG SET when needed --------------------------------- */

static void sb_pw_notify_set_cb(redisReply *reply, void *priv) {
    if (!reply) return; /* connection lost: the next on-up runs it again */
    sb_pw_set_mode(priv, reply->type == REDIS_REPLY_STATUS ? SB_NOTIFY_ON : SB_NOTIFY_REFUSED);
}

static void sb_pw_notify_get_cb(redisReply *reply, void *priv) {
    sb_presence_watch_t *pw = priv;
    if (!reply) return;
    sb_batch_t *b = sb_pw_can_send(pw) ? sb_batch_create() : NULL;
    int rc = b ? sb_presence_notify_set_cmd(b, reply) : SB_ENOMEM;
    if (rc == 1 || rc == SB_EPROTO) sb_pw_set_mode(pw, rc == 1 ? SB_NOTIFY_ON : SB_NOTIFY_REFUSED);
    if (rc == SB_OK) sb_pw_send(pw, b, rc, sb_pw_notify_set_cb, pw);
    else sb_batch_free(b);
}

/* The command connection came up (first time or after a loss). */
static void sb_pw_on_up(void *ud) {
    sb_presence_watch_t *pw = ud;
    if (pw->gw->cfg->redis.cluster) { /* the presence master's own connection does it */
        sb_pw_kev_follow(pw);
        return;
    }
    sb_batch_t *b = sb_pw_can_send(pw) ? sb_batch_create() : NULL;
    int built = b ? sb_presence_notify_get_cmd(b) : SB_EREDIS;
    if (sb_pw_send(pw, b, built, sb_pw_notify_get_cb, pw) != SB_OK)
        sb_warn("gateway", "presence: could not ask redis for notify-keyspace-events");
}

/* ---- cluster: the presence master's expired events ------------------------------------------ */

/* kev lost or moved: no expiry events until it subscribed again (the gauge says so, and the
 * sweep runs at its fallback pace meanwhile). */
static void sb_pw_kev_blind(sb_presence_watch_t *pw) {
    pw->notify = SB_NOTIFY_UNKNOWN;
    if (!pw->stopped) uv_timer_set_repeat(&pw->sweep, SB_PRESENCE_FALLBACK_MS);
}

static void sb_pw_kev_msg(redisReply *reply, void *priv) {
    if (!reply) sb_pw_kev_blind(priv);
    else if (reply->type == REDIS_REPLY_ARRAY) sb_pw_on_expired(priv, reply);
}

static void sb_pw_kev_subscribe(sb_presence_watch_t *pw) {
    sb_batch_t *b = sb_batch_create();
    if (!b || sb_batch_add(b, "SUBSCRIBE %s", pw->expired_channel) != SB_OK ||
        sb_aredis_subscribe(pw->kev, b, sb_pw_kev_msg, pw) != SB_OK)
        sb_warn("gateway", "presence: could not subscribe to %s at %s (the sweep finds "
                "departures)", pw->expired_channel, pw->kev_at);
    sb_batch_free(b);
}

static void sb_pw_kev_set_cb(redisReply *reply, void *priv) {
    if (!reply) return; /* kev lost: its on-up runs it again */
    sb_pw_set_mode(priv, reply->type == REDIS_REPLY_STATUS ? SB_NOTIFY_ON : SB_NOTIFY_REFUSED);
    sb_pw_kev_subscribe(priv);
}

static void sb_pw_kev_get_cb(redisReply *reply, void *priv) {
    sb_presence_watch_t *pw = priv;
    if (!reply || pw->stopped) return;
    sb_batch_t *b = sb_batch_create();
    int rc = b ? sb_presence_notify_set_cmd(b, reply) : SB_ENOMEM;
    if (rc == SB_OK && sb_aredis_send(pw->kev, b, sb_pw_kev_set_cb, pw) == SB_OK) {
        sb_batch_free(b);
        return;
    }
    sb_batch_free(b);
    sb_pw_set_mode(pw, rc == 1 ? SB_NOTIFY_ON : SB_NOTIFY_REFUSED);
    sb_pw_kev_subscribe(pw);
}

/* kev came up: notifications on at that node, then SUBSCRIBE (CONFIG first: after SUBSCRIBE
 * the connection takes no other command). */
static void sb_pw_kev_up(void *ud) {
    sb_presence_watch_t *pw = ud;
    sb_batch_t *b = sb_batch_create();
    if (!b || sb_presence_notify_get_cmd(b) != SB_OK ||
        sb_aredis_send(pw->kev, b, sb_pw_kev_get_cb, pw) != SB_OK)
        sb_warn("gateway", "presence: could not ask %s for notify-keyspace-events", pw->kev_at);
    sb_batch_free(b);
}

/* Cluster: (re)opens kev to the master serving the presence keys when it is not there yet. */
static void sb_pw_kev_follow(sb_presence_watch_t *pw) {
    char host[256], at[sizeof pw->kev_at];
    int port;
    if (pw->stopped || !pw->gw->cfg->redis.cluster ||
        sb_aredis_key_node(pw->gw->redis, sb_presence_names()->meta, host, sizeof host, &port))
        return;
    snprintf(at, sizeof at, "%s:%d", host, port);
    if (pw->kev && !strcmp(at, pw->kev_at)) return;
    if (pw->kev) {
        sb_info("gateway", "presence: the presence keys moved from %s to %s; following",
                pw->kev_at, at);
        sb_aredis_close(pw->kev);
        sb_pw_kev_blind(pw);
    }
    sb_redis_addr_t a = sb_cluster_node_addr(&pw->gw->cfg->redis, host, port);
    memset(&pw->kev_hook, 0, sizeof pw->kev_hook);
    snprintf(pw->kev_at, sizeof pw->kev_at, "%s", at);
    if ((pw->kev = sb_aredis_create(pw->gw->loop, &a, "presence-expired")))
        sb_aredis_on_up(pw->kev, &pw->kev_hook, sb_pw_kev_up, pw);
}

/* ---- life cycle ---------------------------------------------------------------------------- */

sb_presence_watch_t *sb_presence_watch_create(sb_gateway_t *gw) {
    sb_subscriber_t *sub = sb_socketio_subscriber(gw->sio);
    sb_presence_watch_t *pw = sub && gw->redis ? calloc(1, sizeof *pw) : NULL;
    if (!pw) return NULL;
    pw->gw = gw;
    if (!sb_presence_expired_channel(pw->expired_channel, sizeof pw->expired_channel,
                                     gw->cfg->redis.db)) {
        free(pw);
        return NULL;
    }
    sb_subscriber_watch(sub, &pw->events_watch, SB_PRESENCE_CHANNEL, sb_pw_on_event, pw);
    if (!gw->cfg->redis.cluster) /* cluster: on the presence master's own connection (kev) */
        sb_subscriber_watch(sub, &pw->expired_watch, pw->expired_channel, sb_pw_on_expired, pw);
    uv_timer_init(gw->loop, &pw->sweep);
    pw->sweep.data = pw;
    uv_timer_start(&pw->sweep, sb_pw_tick, SB_PRESENCE_FALLBACK_MS, SB_PRESENCE_FALLBACK_MS);
    sb_aredis_on_up(gw->redis, &pw->up_hook, sb_pw_on_up, pw);
    if (sb_aredis_up(gw->redis)) sb_pw_on_up(pw);
    return pw;
}

void sb_presence_watch_stop(sb_presence_watch_t *pw) {
    if (!pw || pw->stopped) return;
    pw->stopped = 1;
    sb_aredis_on_up_remove(&pw->up_hook);
    sb_subscriber_unwatch(&pw->events_watch); /* nothing reaches pw once it is freed */
    sb_subscriber_unwatch(&pw->expired_watch);
    sb_aredis_close(pw->kev); /* its callbacks run now, with NULL */
    pw->kev = NULL;
    uv_close((uv_handle_t *)&pw->sweep, NULL);
}

void sb_presence_watch_free(sb_presence_watch_t *pw) {
    if (!pw) return;
    sb_presence_watch_stop(pw);
    free(pw);
}

/* ---- metrics ------------------------------------------------------------------------------- */

void sb_presence_watch_render(const sb_presence_watch_t *pw, sb_prom_t *p) {
    if (!pw) return;
    const struct {
        const char *name, *type, *help;
        double value;
    } rows[] = {
        {"gateway_presence_events_forwarded_total", "counter",
         "Presence events (agent:online/status/offline) emitted to room admins.",
         (double)pw->forwarded},
        {"gateway_presence_events_dropped_total", "counter",
         "Messages on agent:presence that were not presence events.", (double)pw->dropped},
        {"gateway_presence_events_repaired_total", "counter",
         "Presence events forwarded with bytes that were not UTF-8 replaced by U+FFFD.",
         (double)pw->repaired},
        {"gateway_presence_expiries_total", "counter",
         "Expired-key events of agent:online:* keys received.", (double)pw->expiries},
        {"gateway_presence_offline_announced_total", "counter",
         "Agents this gateway announced offline after their key expired.",
         (double)pw->announced},
        {"gateway_presence_sweeps_total", "counter", "Sweep passes over agents:meta started.",
         (double)pw->sweeps},
        {"gateway_presence_keyspace_notifications", "gauge",
         "1 when Redis sends expired-key events, 0 when CONFIG was refused or not yet known "
         "(the sweep then finds departures).",
         pw->notify == SB_NOTIFY_ON},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        sb_prom_single(p, rows[i].name, rows[i].type, rows[i].help, rows[i].value);
}
