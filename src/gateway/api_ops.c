/* Operational routes: /healthz (the process answers), /readyz (Redis answers a PING, else
 * 503) and /metrics (Prometheus text: request counters from stats.c plus connection state). */
#include <stdio.h>
#include <string.h>
#include "gateway/admin.h"
#include "gateway/api.h"
#include "gateway/gateway.h"
#include "gateway/presence_watch.h"
#include "gateway/socketio/socketio.h"
#include "switchboard/clock.h"
#include "gateway/jwt_cache.h"
#include "switchboard/prom.h"
#include "switchboard/prom_runtime.h"

void sb_api_healthz(sb_req_t *req) {
    char body[96];
    int n = snprintf(body, sizeof body, "{\"status\":\"ok\",\"uptimeSeconds\":%lld}",
                     (long long)((sb_now_ms() - req->gw->started_ms) / 1000));
    sb_req_send(req, 200, "application/json", body, (size_t)n, NULL);
}

static void sb_readyz_cb(redisReply *reply, void *priv) {
    sb_req_t *req = priv;
    if (reply && reply->type == REDIS_REPLY_STATUS && !strcmp(reply->str, "PONG")) {
        static const char ok[] = "{\"status\":\"ready\",\"redis\":\"up\"}";
        sb_req_send(req, 200, "application/json", ok, sizeof ok - 1, NULL);
    } else {
        sb_req_unavailable(req);
    }
    sb_req_release(req);
}

void sb_api_readyz(sb_req_t *req) {
    sb_batch_t *b = sb_batch_create();
    if (b && sb_batch_add(b, "PING") != 0) {
        sb_batch_free(b);
        b = NULL;
    }
    sb_api_redis(req, b, sb_readyz_cb);
}

void sb_api_prometheus(sb_req_t *req) {
    const sb_gateway_t *gw = req->gw;
    sb_prom_t p;
    sb_prom_init(&p);
    sb_gw_stats_render(&gw->stats, &p);
    sb_socketio_render(gw->sio, &p);
    sb_presence_watch_render(gw->presence_watch, &p);
    sb_admin_render(gw->admin, &p);
    sb_admin_scraped(gw->admin);
    sb_prom_single(&p, "gateway_redis_connected", "gauge",
                   "1 while the command connection to Redis is up.", sb_aredis_up(gw->redis));
    sb_prom_single(&p, "gateway_redis_reconnects_total", "counter",
                   "Times the command connection to Redis was re-established after a loss.",
                   (double)sb_aredis_reconnects(gw->redis));
    uint64_t hits, misses;
    sb_jwt_cache_counts(gw->tokens, &hits, &misses);
    sb_prom_single(&p, "gateway_token_cache_hits_total", "counter",
                   "Bearer and CONNECT tokens answered from the verified-token cache.",
                   (double)hits);
    sb_prom_single(&p, "gateway_token_cache_misses_total", "counter",
                   "Tokens verified in full (new, evicted, or refused).", (double)misses);
    sb_prom_single(&p, "gateway_start_time_seconds", "gauge",
                   "Unix time the gateway started.", (double)gw->started_ms / 1000.0);
    sb_prom_runtime(&p);
    size_t len = 0;
    const char *text = sb_prom_text(&p, &len);
    if (text) sb_req_send(req, 200, SB_PROM_CONTENT_TYPE, text, len, NULL);
    else sb_req_error(req, 500, "internal", "out of memory");
    sb_prom_close(&p);
}
