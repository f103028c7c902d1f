/* Engine.IO WebSocket transport: a session opened on a WebSocket, or a polling session's
 * upgrade (probe `2probe` / `3probe`, then `5`, while the held GET is released with `6`; the
 * same in v3).
 * One received message is one packet; each writeable callback pulls one queued packet. */
#include <string.h>

#include "gateway/socketio/eio_internal.h"
#include "switchboard/error.h"

/* ================================================================ attach and upgrade */

int sb__eio_ws_attach(sb_eio_server_t *srv, sb_eio_session_t *s, void *conn, int64_t now,
                      sb_eio_reply_t *out) {
    s->ws_conn = conn;
    s->flags |= F_PROBING;
    s->aux_until = now + srv->cfg.upgrade_timeout_ms;
    sb__eio_update_due(srv, s);
    return sb__eio_reply(out, 101, NULL, NULL, sb__eio_id(srv, s));
}

/* ================================================================ probe and frames */

/* The probe failed: forget its conn and wake it so its next pull says SB_EIO_CLOSE. */
void sb__eio_probe_fail(sb_eio_server_t *srv, sb_eio_session_t *s) {
    void *conn = s->ws_conn;
    s->ws_conn = NULL;
    s->flags &= ~(F_PROBING | F_PROBED | F_PROBE_REPLY | F_NOOP);
    s->aux_until = s->state == ST_OPEN ? SB_EIO_NEVER : s->aux_until;
    sb__eio_update_due(srv, s);
    sb__eio_wake(srv, conn);
}

static void sb_eio_upgrade_done(sb_eio_server_t *srv, sb_eio_session_t *s) {
    s->flags = (uint16_t)((s->flags & ~(F_PROBING | F_PROBED | F_PROBE_REPLY)) | F_WS);
    s->aux_until = SB_EIO_NEVER;
    sb__eio_update_due(srv, s);
    if (s->poll_conn) { /* release the held GET; polling is over */
        s->flags |= F_NOOP;
        sb__eio_wake(srv, s->poll_conn);
    } else {
        s->flags &= ~F_NOOP;
    }
    if (s->qlen) sb__eio_wake(srv, s->ws_conn);
}

static int sb_eio_probe_frame(sb_eio_server_t *srv, sb_eio_session_t *s, const char *data,
                              size_t len, int binary) {
    if (!binary && len == 6 && memcmp(data, "2probe", 6) == 0 && !(s->flags & F_PROBED)) {
        s->flags |= F_PROBED | F_PROBE_REPLY;
        sb__eio_wake(srv, s->ws_conn);
        if (s->poll_conn) {
            s->flags |= F_NOOP;
            sb__eio_wake(srv, s->poll_conn);
        }
        return SB_OK;
    }
    if (!binary && len == 1 && data[0] == '5' && (s->flags & F_PROBED)) {
        sb_eio_upgrade_done(srv, s);
        return SB_OK;
    }
    sb__eio_probe_fail(srv, s);
    return SB_EINVAL;
}

int sb_eio_ws_frame(sb_eio_server_t *srv, sb_eio_id_t id, void *conn, const char *data,
                    size_t len, int binary, int64_t now) {
    sb_eio_session_t *s = sb__eio_get(srv, id);
    if (!s || !conn || s->ws_conn != conn) return SB_ENOTFOUND;
    if (s->state != ST_OPEN) return SB_OK; /* closing: drain, ignore input */
    srv->now = now;
    sb__eio_enter(srv);
    int rc = SB_OK;
    if (len > srv->cfg.max_payload) {
        if (s->flags & F_PROBING) sb__eio_probe_fail(srv, s);
        else sb__eio_mark_closed(srv, s, 0, "transport error");
        rc = SB_EINVAL;
    } else if (s->flags & F_PROBING) {
        rc = sb_eio_probe_frame(srv, s, data, len, binary);
    } else if (binary && !(s->flags & F_EIO3)) {
        sb__eio_heard(srv, s, now);
        if (srv->app.on_message) srv->app.on_message(srv->app.ud, id, data, len, 1, now);
    } else { /* a text packet; v3: a binary frame is a packet too, `\x04<bytes>` */
        sb__eio_rx_t rx = {srv, s, now};
        if (s->flags & F_EIO3) sb__eio_on_packet3(&rx, data, len, binary);
        else sb__eio_on_packet(&rx, data, len);
        if (s->state != ST_OPEN && s->reason == sb__eio_r_parse) rc = SB_EINVAL;
    }
    sb__eio_leave(srv);
    return rc;
}

int sb_eio_ws_pull(sb_eio_server_t *srv, sb_eio_id_t id, void *conn, sb_eio_buf_t **out) {
    *out = NULL;
    sb_eio_session_t *s = sb__eio_get(srv, id);
    if (!s || !conn || s->ws_conn != conn) return SB_EIO_CLOSE;
    if (s->flags & F_PROBING) {
        if (!(s->flags & F_PROBE_REPLY)) return s->state == ST_OPEN ? 0 : SB_EIO_CLOSE;
        s->flags &= ~F_PROBE_REPLY;
        *out = sb_eio_buf_ref(srv->pkt_probe);
        return 1;
    }
    if (s->qlen) {
        *out = sb__eio_q_pop(s);
        return 1;
    }
    return s->state == ST_OPEN ? 0 : SB_EIO_CLOSE;
}
