/* Socket.IO v5 (and v4 for Engine.IO v3 sessions) over Engine.IO: the packet codec, the main
 * namespace with token auth and the user/admin rooms, and shared-buffer emission. Per connected
 * socket it keeps an sb_sio_socket_t hung on the engine session (sb_eio_set_app_data). See
 * sio.h. */
#include "gateway/socketio/sio.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "switchboard/error.h"
#include "switchboard/json.h"
#include "switchboard/utf8.h"

typedef struct sb_sio_socket {
    sb_rooms_member_t member;        /* rooms this socket is in; member.id is the eio id */
    char sid[SB_EIO_SID_LEN + 1];    /* Socket.IO sid (not the engine's) */
    sb_sio_identity_t who;
    void *data;                      /* the application's (sb_sio_set_data), not owned */
} sb_sio_socket_t;

struct sb_sio {
    sb_eio_server_t *eio;
    sb_rooms_t *rooms;
    sb_sio_callbacks_t cb;
    sb_sio_config_t cfg;
    uint32_t connected;
};

/* ================================================================ codec: decode */

static int sb_sio_digit(char c) { return c >= '0' && c <= '9'; }

/* Reads "<digits>-" at *i (binary packets). */
static int sb_sio_read_attachments(const char *buf, size_t len, size_t *i, int *out) {
    int n = 0;
    size_t start = *i;
    while (*i < len && sb_sio_digit(buf[*i])) {
        n = n * 10 + (buf[(*i)++] - '0');
        if (n > SB_SIO_MAX_ATTACHMENTS) return SB_EINVAL;
    }
    if (*i == start || *i >= len || buf[*i] != '-') return SB_EINVAL;
    (*i)++;
    *out = n;
    return SB_OK;
}

/* Reads "/nsp," (or "/nsp" up to the end) at *i; leaves "/" when there is none. */
static int sb_sio_read_nsp(const char *buf, size_t len, size_t *i, sb_sio_packet_t *p) {
    p->nsp = "/";
    p->nsp_len = 1;
    if (*i >= len || buf[*i] != '/') return SB_OK;
    size_t start = *i;
    while (*i < len && buf[*i] != ',') (*i)++;
    if (*i - start > SB_SIO_NSP_MAX) return SB_EINVAL;
    p->nsp = buf + start;
    p->nsp_len = *i - start;
    if (*i < len) (*i)++; /* the comma */
    return SB_OK;
}

static int sb_sio_read_id(const char *buf, size_t len, size_t *i, int64_t *id) {
    *id = -1;
    if (*i >= len || !sb_sio_digit(buf[*i])) return SB_OK;
    int64_t v = 0;
    for (int n = 0; *i < len && sb_sio_digit(buf[*i]); n++) {
        if (n == 15) return SB_EINVAL; /* beyond JS's exact integers */
        v = v * 10 + (buf[(*i)++] - '0');
    }
    *id = v;
    return SB_OK;
}

static int sb_sio_payload_ok(int type, const cJSON *d) {
    switch (type) {
    case SB_SIO_CONNECT: return !d || cJSON_IsObject(d) || cJSON_IsNull(d);
    case SB_SIO_DISCONNECT: return !d;
    case SB_SIO_CONNECT_ERROR: return !d || cJSON_IsString(d) || cJSON_IsObject(d);
    case SB_SIO_EVENT:
    case SB_SIO_BINARY_EVENT: return d && cJSON_IsArray(d) && cJSON_GetArraySize(d) > 0;
    default: return !d || cJSON_IsArray(d); /* ACK, BINARY_ACK */
    }
}

int sb_sio_decode(const char *buf, size_t len, sb_sio_packet_t *out) {
    *out = (sb_sio_packet_t){.id = -1, .nsp = "/", .nsp_len = 1};
    if (!buf || len == 0 || buf[0] < '0' || buf[0] > '6') return SB_EINVAL;
    sb_sio_packet_t p = {.type = buf[0] - '0'};
    size_t i = 1;
    if (p.type == SB_SIO_BINARY_EVENT || p.type == SB_SIO_BINARY_ACK)
        if (sb_sio_read_attachments(buf, len, &i, &p.attachments)) return SB_EINVAL;
    if (sb_sio_read_nsp(buf, len, &i, &p) || sb_sio_read_id(buf, len, &i, &p.id))
        return SB_EINVAL;
    if (i < len && !(p.data = sb_json_parse(buf + i, len - i))) return SB_EINVAL;
    if (!sb_sio_payload_ok(p.type, p.data)) {
        cJSON_Delete(p.data);
        return SB_EINVAL;
    }
    *out = p;
    return SB_OK;
}

void sb_sio_packet_close(sb_sio_packet_t *p) {
    if (!p) return;
    cJSON_Delete(p->data);
    p->data = NULL;
}

/* ================================================================ codec: encode */

/* Writes s as a JSON string literal at out (room for 6 * strlen + 2 bytes); returns length. */
static size_t sb_sio_json_quote(char *out, const char *s) {
    static const char hex[] = "0123456789abcdef";
    char *o = out;
    *o++ = '"';
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            *o++ = '\\';
            *o++ = (char)c;
        } else if (c < 0x20) {
            memcpy(o, "\\u00", 4);
            o[4] = hex[c >> 4];
            o[5] = hex[c & 15];
            o += 6;
        } else {
            *o++ = (char)c;
        }
    }
    *o++ = '"';
    return (size_t)(o - out);
}

sb_eio_buf_t *sb_sio_encode(size_t headroom, int type, const char *nsp, int64_t ack_id,
                            const char *json, size_t len) {
    char head[SB_SIO_NSP_MAX + 32];
    int has_nsp = nsp && strcmp(nsp, "/") != 0 && strlen(nsp) <= SB_SIO_NSP_MAX;
    int n = snprintf(head, sizeof head, "4%d%s%s", type, has_nsp ? nsp : "", has_nsp ? "," : "");
    if (ack_id >= 0) n += snprintf(head + n, sizeof head - (size_t)n, "%lld", (long long)ack_id);
    sb_eio_buf_t *b = sb_eio_buf_create(headroom, NULL, (size_t)n + (json ? len : 0));
    if (!b) return NULL;
    memcpy(b->data, head, (size_t)n);
    if (json && len) memcpy(b->data + n, json, len);
    return b;
}

sb_eio_buf_t *sb_sio_encode_event(size_t headroom, const char *event, const char *json,
                                  size_t len) {
    size_t elen = strlen(event);
    if (!json) len = 0;
    if (elen > (SIZE_MAX - len - 16) / 6) return NULL;
    sb_eio_buf_t *b = sb_eio_buf_create(headroom, NULL, 3 + elen * 6 + 2 + 1 + len + 1);
    if (!b) return NULL;
    char *o = b->data;
    memcpy(o, "42[", 3);
    o += 3;
    o += sb_sio_json_quote(o, event);
    if (json) {
        *o++ = ',';
        memcpy(o, json, len);
        o += len;
    }
    *o++ = ']';
    *o = '\0';
    b->len = (uint32_t)(o - b->data);
    return b;
}

/* ================================================================ sockets */

static sb_sio_socket_t *sb_sio_socket(const sb_sio_t *sio, sb_eio_id_t id) {
    return sb_eio_app_data(sio->eio, id);
}

size_t sb_sio_socket_size(void) { return sizeof(sb_sio_socket_t); }

/* Leaves "/": rooms, state, and arms the connect timeout again. on_disconnect still finds the
 * socket (identity, sid, data) but no longer in its rooms. */
static void sb_sio_socket_drop(sb_sio_t *sio, sb_eio_id_t id, sb_sio_socket_t *sock,
                               const char *reason, int64_t rearm_at) {
    sb_rooms_leave_all(sio->rooms, &sock->member);
    sio->connected--;
    if (sio->cb.on_disconnect) sio->cb.on_disconnect(sio->cb.ud, id, reason);
    sb_eio_set_app_data(sio->eio, id, NULL);
    free(sock);
    if (rearm_at) sb_eio_set_timer(sio->eio, id, rearm_at);
}

static void sb_sio_send_packet(sb_sio_t *sio, sb_eio_id_t id, int type, const char *nsp,
                               const char *json) {
    size_t headroom = sb_eio_config(sio->eio)->headroom;
    sb_eio_buf_t *b = sb_sio_encode(headroom, type, nsp, -1, json, json ? strlen(json) : 0);
    if (b) sb_eio_send(sio->eio, id, b);
    sb_eio_buf_unref(b);
}

/* CONNECT_ERROR: `44{"message":...}`; to a Socket.IO v2 client (an Engine.IO v3 session)
 * the message alone, `44"..."`, as socket.io answers protocol 3. */
static void sb_sio_refuse(sb_sio_t *sio, sb_eio_id_t id, const char *nsp, const char *msg) {
    int v2 = sb_eio_protocol(sio->eio, id) == 3;
    cJSON *o = v2 ? cJSON_CreateString(msg) : cJSON_CreateObject();
    char *text = NULL;
    if (o && (v2 || cJSON_AddStringToObject(o, "message", msg))) text = sb_json_print(o);
    sb_sio_send_packet(sio, id, SB_SIO_CONNECT_ERROR, nsp, text ? text : v2 ? "\"\"" : "{}");
    free(text);
    cJSON_Delete(o);
}

static int sb_sio_join_defaults(sb_sio_t *sio, sb_sio_socket_t *sock) {
    char room[sizeof "user:" + SB_SIO_ID_MAX];
    snprintf(room, sizeof room, "user:%s", sock->who.public_key);
    int rc = sb_rooms_join(sio->rooms, &sock->member, room);
    if (!rc && strcmp(sock->who.role, "admin") == 0)
        rc = sb_rooms_join(sio->rooms, &sock->member, "admins");
    return rc;
}

static sb_sio_socket_t *sb_sio_socket_new(const sb_sio_identity_t *who, sb_eio_id_t id) {
    sb_sio_socket_t *sock = calloc(1, sizeof *sock);
    if (!sock) return NULL;
    sb_rooms_member_init(&sock->member, id);
    sock->who = *who;
    sock->who.public_key[SB_SIO_ID_MAX - 1] = '\0';
    sock->who.user_id[SB_SIO_ID_MAX - 1] = '\0';
    sock->who.role[SB_SIO_ROLE_MAX - 1] = '\0';
    if (sb_eio_random_id(sock->sid)) {
        free(sock);
        return NULL;
    }
    return sock;
}

/* Connects the session to "/" with token: authenticate, answer (`40{"sid"}`, or `40` alone
 * to a v2 client), join rooms, let the app replay. */
static void sb_sio_connect_token(sb_sio_t *sio, sb_eio_id_t id, const char *token) {
    sb_sio_identity_t who;
    memset(&who, 0, sizeof who);
    char err[256] = "";
    if (sio->cb.auth(sio->cb.ud, token, &who, err, sizeof err) != 0 || !who.public_key[0]) {
        sb_sio_refuse(sio, id, NULL, err[0] ? err : "Authentication error");
        return;
    }
    sb_sio_socket_t *sock = sb_sio_socket_new(&who, id);
    if (!sock || sb_sio_join_defaults(sio, sock)) {
        if (sock) sb_rooms_leave_all(sio->rooms, &sock->member);
        free(sock);
        sb_sio_refuse(sio, id, NULL, "Server error");
        return;
    }
    sb_eio_set_app_data(sio->eio, id, sock);
    sb_eio_set_timer(sio->eio, id, 0);
    sio->connected++;
    char reply[64];
    snprintf(reply, sizeof reply, "{\"sid\":\"%s\"}", sock->sid);
    int v2 = sb_eio_protocol(sio->eio, id) == 3;
    sb_sio_send_packet(sio, id, SB_SIO_CONNECT, NULL, v2 ? NULL : reply);
    if (sio->cb.on_connect) sio->cb.on_connect(sio->cb.ud, id, &sock->who);
}

/* A CONNECT packet to "/": the token of its auth payload. A v2 client has none (its token
 * came with the handshake, sb_sio_connect_v2): it is refused as one without a token. */
static void sb_sio_on_connect(sb_sio_t *sio, sb_eio_id_t id, const cJSON *auth) {
    int v2 = sb_eio_protocol(sio->eio, id) == 3;
    sb_sio_connect_token(sio, id, auth && !v2 ? sb_json_str(auth, "token") : NULL);
}

int sb_sio_connect_v2(sb_sio_t *sio, sb_eio_id_t id, const char *token) {
    if (sb_eio_protocol(sio->eio, id) != 3 || !sb_eio_is_open(sio->eio, id)) return SB_EINVAL;
    if (sb_sio_socket(sio, id)) return SB_EINVAL; /* connected already */
    sb_eio_batch_begin(sio->eio);
    sb_sio_connect_token(sio, id, token);
    sb_eio_batch_end(sio->eio);
    return SB_OK;
}

/* The ACK a client EVENT that nobody handles gets, so that no client waits on it for ever. */
static const char sb_sio_unsupported[] = "[{\"error\":\"client events are not supported\"}]";

/* A client EVENT (or BINARY_EVENT, whose attachments are ignored) on a connected socket: to
 * the app's on_event when it has one and the name is a string; otherwise dropped, and an
 * ack id is answered at once with sb_sio_unsupported. */
static void sb_sio_on_event(sb_sio_t *sio, sb_eio_id_t id, const sb_sio_packet_t *p) {
    const cJSON *name = cJSON_GetArrayItem(p->data, 0);
    if (p->type == SB_SIO_EVENT && cJSON_IsString(name) && sio->cb.on_event) {
        sio->cb.on_event(sio->cb.ud, id, name->valuestring, p->data, p->id);
        return;
    }
    if (p->id >= 0) sb_sio_ack(sio, id, p->id, sb_sio_unsupported, sizeof sb_sio_unsupported - 1);
}

/* A packet the session's state does not allow: socket.io closes the whole connection. */
static void sb_sio_invalid_state(sb_sio_t *sio, sb_eio_id_t id) {
    sb_eio_close(sio->eio, id, 1, "invalid state");
}

/* As socket.io's Client.ondecoded: a CONNECT to an unknown namespace is refused with
 * CONNECT_ERROR; any other packet for a namespace this session is not connected to (an EVENT
 * before CONNECT, after DISCONNECT, to another namespace), and a second CONNECT to a connected
 * namespace, close the connection. */
static void sb_sio_dispatch(sb_sio_t *sio, sb_eio_id_t id, const sb_sio_packet_t *p,
                            int64_t now) {
    sb_sio_socket_t *sock = sb_sio_socket(sio, id);
    if (p->nsp_len != 1 && p->type == SB_SIO_CONNECT) { /* only "/" exists */
        char nsp[SB_SIO_NSP_MAX + 1];
        memcpy(nsp, p->nsp, p->nsp_len);
        nsp[p->nsp_len] = '\0';
        sb_sio_refuse(sio, id, nsp, "Invalid namespace");
        return;
    }
    if (p->nsp_len != 1 || (p->type == SB_SIO_CONNECT) == (sock != NULL)) {
        sb_sio_invalid_state(sio, id);
        return;
    }
    switch (p->type) {
    case SB_SIO_CONNECT: sb_sio_on_connect(sio, id, p->data); break;
    case SB_SIO_DISCONNECT:
        sb_sio_socket_drop(sio, id, sock, "client namespace disconnect",
                               now + sio->cfg.connect_timeout_ms);
        break;
    case SB_SIO_EVENT:
    case SB_SIO_BINARY_EVENT: sb_sio_on_event(sio, id, p); break;
    default: break; /* ACK, CONNECT_ERROR, BINARY_ACK: tolerated, ignored */
    }
}

/* ================================================================ engine callbacks */

static void sb_sio_eio_open(void *ud, sb_eio_id_t id, int64_t now) {
    sb_sio_t *sio = ud;
    sb_eio_set_timer(sio->eio, id, now + sio->cfg.connect_timeout_ms);
}

static void sb_sio_eio_message(void *ud, sb_eio_id_t id, const char *data, size_t len,
                               int binary, int64_t now) {
    sb_sio_t *sio = ud;
    if (binary) { /* attachments of binary packets: not supported, ignored once connected; */
        if (!sb_sio_socket(sio, id)) sb_eio_close(sio->eio, id, 0, "parse error"); /* garbage */
        return;
    }
    sb_sio_packet_t p;
    if (sb_sio_decode(data, len, &p)) {
        sb_eio_close(sio->eio, id, 0, "parse error");
        return;
    }
    sb_sio_dispatch(sio, id, &p, now);
    sb_sio_packet_close(&p);
}

static void sb_sio_eio_close(void *ud, sb_eio_id_t id, const char *reason) {
    sb_sio_t *sio = ud;
    sb_sio_socket_t *sock = sb_sio_socket(sio, id);
    if (sock) sb_sio_socket_drop(sio, id, sock, reason, 0);
}

static void sb_sio_eio_timer(void *ud, sb_eio_id_t id, int64_t now) {
    (void)now;
    sb_sio_t *sio = ud;
    if (!sb_sio_socket(sio, id)) sb_eio_close(sio->eio, id, 0, "connect timeout");
}

/* ================================================================ lifecycle */

sb_sio_t *sb_sio_create(sb_eio_server_t *eio, const sb_sio_callbacks_t *cb,
                        const sb_sio_config_t *cfg) {
    if (!eio || !cb || !cb->auth) return NULL;
    sb_sio_t *sio = calloc(1, sizeof *sio);
    if (!sio) return NULL;
    sio->rooms = sb_rooms_create();
    if (!sio->rooms) {
        free(sio);
        return NULL;
    }
    sio->eio = eio;
    sio->cb = *cb;
    sio->cfg.connect_timeout_ms = cfg && cfg->connect_timeout_ms > 0 ? cfg->connect_timeout_ms
                                                                     : 45000;
    sb_eio_app_cb_t app = {sb_sio_eio_open, sb_sio_eio_message, sb_sio_eio_close,
                           sb_sio_eio_timer, sio};
    sb_eio_set_app(eio, &app);
    return sio;
}

static void sb_sio_free_socket(void *ud, sb_eio_id_t id) {
    sb_sio_t *sio = ud;
    sb_sio_socket_t *sock = sb_sio_socket(sio, id);
    if (!sock) return;
    sb_rooms_leave_all(sio->rooms, &sock->member);
    sb_eio_set_app_data(sio->eio, id, NULL);
    free(sock);
}

void sb_sio_free(sb_sio_t *sio) {
    if (!sio) return;
    sb_eio_foreach(sio->eio, sb_sio_free_socket, sio);
    sb_eio_set_app(sio->eio, &(sb_eio_app_cb_t){0});
    sb_rooms_free(sio->rooms);
    free(sio);
}

sb_rooms_t *sb_sio_rooms(sb_sio_t *sio) { return sio->rooms; }
uint32_t sb_sio_count(const sb_sio_t *sio) { return sio->connected; }

const sb_sio_identity_t *sb_sio_identity(const sb_sio_t *sio, sb_eio_id_t id) {
    sb_sio_socket_t *sock = sb_sio_socket(sio, id);
    return sock ? &sock->who : NULL;
}

const char *sb_sio_sid(const sb_sio_t *sio, sb_eio_id_t id) {
    sb_sio_socket_t *sock = sb_sio_socket(sio, id);
    return sock ? sock->sid : NULL;
}

int sb_sio_set_data(sb_sio_t *sio, sb_eio_id_t id, void *data) {
    sb_sio_socket_t *sock = sb_sio_socket(sio, id);
    if (!sock) return SB_ENOTFOUND;
    sock->data = data;
    return SB_OK;
}

void *sb_sio_data(const sb_sio_t *sio, sb_eio_id_t id) {
    sb_sio_socket_t *sock = sb_sio_socket(sio, id);
    return sock ? sock->data : NULL;
}

int sb_sio_join(sb_sio_t *sio, sb_eio_id_t id, const char *room) {
    sb_sio_socket_t *sock = sb_sio_socket(sio, id);
    return sock ? sb_rooms_join(sio->rooms, &sock->member, room) : SB_ENOTFOUND;
}

int sb_sio_leave(sb_sio_t *sio, sb_eio_id_t id, const char *room) {
    sb_sio_socket_t *sock = sb_sio_socket(sio, id);
    return sock ? sb_rooms_leave(sio->rooms, &sock->member, room) : SB_ENOTFOUND;
}

int sb_sio_disconnect(sb_sio_t *sio, sb_eio_id_t id, int close_engine) {
    sb_sio_socket_t *sock = sb_sio_socket(sio, id);
    if (!sock) return SB_ENOTFOUND;
    sb_eio_batch_begin(sio->eio);
    sb_sio_send_packet(sio, id, SB_SIO_DISCONNECT, NULL, NULL);
    sb_sio_socket_drop(sio, id, sock, "server namespace disconnect", 0);
    if (close_engine) sb_eio_close(sio->eio, id, 1, "forced close");
    sb_eio_batch_end(sio->eio);
    return SB_OK;
}

/* ================================================================ emission */

int sb_sio_ack(sb_sio_t *sio, sb_eio_id_t id, int64_t ack_id, const char *json, size_t len) {
    if (!sb_sio_socket(sio, id)) return SB_ENOTFOUND;
    if (ack_id < 0 || !json || len < 2 || json[0] != '[') return SB_EINVAL;
    sb_eio_buf_t *b = sb_sio_encode(sb_eio_config(sio->eio)->headroom, SB_SIO_ACK, NULL, ack_id,
                                    json, len);
    if (!b) return SB_ENOMEM;
    int rc = sb_eio_send(sio->eio, id, b);
    sb_eio_buf_unref(b);
    return rc;
}

static char *sb_sio_print(const cJSON *data) {
    return data ? sb_json_print(data) : NULL;
}

/* The text an emit frames, valid UTF-8: event and json as given when they are, else repaired
 * copies (U+FFFD) in t (freed with sb_sio_text_free). 0 or SB_ENOMEM. */
typedef struct {
    const char *event, *json;
    size_t len;
    char *copies[2];
} sb_sio_text_t;

static int sb_sio_text(sb_sio_text_t *t, const char *event, const char *json, size_t len) {
    *t = (sb_sio_text_t){.event = event, .json = json, .len = len};
    if (!sb_utf8_valid(event, strlen(event)))
        t->event = t->copies[0] = sb_utf8_repair(event, strlen(event), NULL);
    if (json && !sb_utf8_valid(json, len))
        t->json = t->copies[1] = sb_utf8_repair(json, len, &t->len);
    return t->event && (t->json || !json) ? SB_OK : SB_ENOMEM;
}

static void sb_sio_text_free(sb_sio_text_t *t) {
    free(t->copies[0]);
    free(t->copies[1]);
}

int sb_sio_emit_json(sb_sio_t *sio, sb_eio_id_t id, const char *event, const char *json,
                     size_t len) {
    if (!sb_sio_socket(sio, id)) return SB_ENOTFOUND;
    sb_sio_text_t t;
    sb_eio_buf_t *b = sb_sio_text(&t, event, json, len) == SB_OK
        ? sb_sio_encode_event(sb_eio_config(sio->eio)->headroom, t.event, t.json, t.len) : NULL;
    sb_sio_text_free(&t);
    if (!b) return SB_ENOMEM;
    int rc = sb_eio_send(sio->eio, id, b);
    sb_eio_buf_unref(b);
    return rc;
}

int sb_sio_emit(sb_sio_t *sio, sb_eio_id_t id, const char *event, const cJSON *data) {
    char *json = sb_sio_print(data);
    if (data && !json) return SB_ENOMEM;
    int rc = sb_sio_emit_json(sio, id, event, json, json ? strlen(json) : 0);
    free(json);
    return rc;
}

/* One emit's walk of a room. The packet is either given, or encoded from (event, json, len)
 * when the walk meets the room's first member: the room is looked up once, and an emit to
 * an empty room encodes nothing. */
typedef struct sb_sio_fanout {
    sb_eio_server_t *eio;
    sb_eio_buf_t *pkt;        /* NULL until encoded */
    const char *event, *json; /* what to encode */
    size_t len;
    int sent;                 /* sockets the packet was queued to */
    int failed;               /* encoding ran out of memory: nothing was queued */
} sb_sio_fanout_t;

static void sb_sio_fanout_one(void *ud, uint64_t id) {
    sb_sio_fanout_t *f = ud;
    if (!f->pkt && !f->failed) {
        f->pkt = sb_sio_encode_event(sb_eio_config(f->eio)->headroom, f->event, f->json, f->len);
        f->failed = f->pkt == NULL;
    }
    if (f->pkt && sb_eio_send(f->eio, id, f->pkt) == SB_OK) f->sent++;
}

/* Walks room with f; drops happen after the walk, not under it. */
static void sb_sio_fanout(sb_sio_t *sio, const char *room, sb_sio_fanout_t *f) {
    sb_eio_batch_begin(sio->eio);
    sb_rooms_each(sio->rooms, room, sb_sio_fanout_one, f);
    sb_eio_batch_end(sio->eio);
}

int sb_sio_broadcast(sb_sio_t *sio, const char *room, sb_eio_buf_t *pkt) {
    sb_sio_fanout_t f = {.eio = sio->eio, .pkt = pkt};
    sb_sio_fanout(sio, room, &f);
    return f.sent;
}

int sb_sio_emit_room_json(sb_sio_t *sio, const char *room, const char *event, const char *json,
                          size_t len) {
    sb_sio_text_t t;
    int rc = sb_sio_text(&t, event, json, len);
    sb_sio_fanout_t f = {.eio = sio->eio, .event = t.event, .json = t.json, .len = t.len};
    if (rc == SB_OK) sb_sio_fanout(sio, room, &f);
    sb_eio_buf_unref(f.pkt);
    sb_sio_text_free(&t);
    return rc != SB_OK || f.failed ? SB_ENOMEM : f.sent;
}

int sb_sio_emit_room(sb_sio_t *sio, const char *room, const char *event, const cJSON *data) {
    if (sb_rooms_size(sio->rooms, room) == 0) return 0;
    char *json = sb_sio_print(data);
    if (data && !json) return SB_ENOMEM;
    int n = sb_sio_emit_room_json(sio, room, event, json, json ? strlen(json) : 0);
    free(json);
    return n;
}
