/* Socket.IO v5 (and v4 for Engine.IO v3 sessions) over Engine.IO: the packet codec, the main
 * namespace with token auth and the user/admin rooms, the namespaces of the allow-list, binary
 * attachments, and shared-buffer emission. Per connected socket it keeps an sb_sio_socket_t;
 * the sockets of one engine session (one per namespace) are chained from the session's app
 * data (sb_eio_set_app_data). See sio.h. */
#include "gateway/socketio/sio.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "switchboard/error.h"
#include "switchboard/json.h"
#include "switchboard/utf8.h"

/* A BINARY_EVENT / BINARY_ACK waiting for its attachments. */
typedef struct sb_sio_pending {
    sb_sio_packet_t pkt;  /* data owned; nsp is the socket's */
    int got;              /* attachments received */
    int keep;             /* 1: kept for on_event; 0: counted and dropped */
    size_t bytes;         /* total kept */
    sb_sio_attachment_t att[]; /* pkt.attachments entries, data malloc'd */
} sb_sio_pending_t;

typedef struct sb_sio_socket {
    sb_rooms_member_t member;        /* rooms this socket is in; member.id is the eio id */
    char sid[SB_EIO_SID_LEN + 1];    /* Socket.IO sid (not the engine's) */
    sb_sio_identity_t who;
    void *data;                      /* the application's (sb_sio_set_data), not owned */
    const char *nsp;                 /* "/" or an entry of cfg.namespaces */
    struct sb_sio_socket *next;      /* the session's socket in another namespace, or NULL */
    sb_sio_pending_t *pending;       /* a binary packet waiting for attachments, or NULL */
} sb_sio_socket_t;

static const char sb_sio_main[] = "/";

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
    default: return d && cJSON_IsArray(d); /* ACK, BINARY_ACK: mandatory, possibly empty */
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

/* sb_sio_encode with natt attachments announced (`<n>-` after the type of a binary one). */
static sb_eio_buf_t *sb_sio_encode_n(size_t headroom, int type, int natt, const char *nsp,
                                     int64_t ack_id, const char *json, size_t len) {
    char head[SB_SIO_NSP_MAX + 48];
    int has_nsp = nsp && strcmp(nsp, "/") != 0 && strlen(nsp) <= SB_SIO_NSP_MAX;
    int n = snprintf(head, sizeof head, "4%d", type);
    if (type == SB_SIO_BINARY_EVENT || type == SB_SIO_BINARY_ACK)
        n += snprintf(head + n, sizeof head - (size_t)n, "%d-", natt);
    n += snprintf(head + n, sizeof head - (size_t)n, "%s%s", has_nsp ? nsp : "",
                  has_nsp ? "," : "");
    if (ack_id >= 0) n += snprintf(head + n, sizeof head - (size_t)n, "%lld", (long long)ack_id);
    sb_eio_buf_t *b = sb_eio_buf_create(headroom, NULL, (size_t)n + (json ? len : 0));
    if (!b) return NULL;
    memcpy(b->data, head, (size_t)n);
    if (json && len) memcpy(b->data + n, json, len);
    return b;
}

sb_eio_buf_t *sb_sio_encode(size_t headroom, int type, const char *nsp, int64_t ack_id,
                            const char *json, size_t len) {
    return sb_sio_encode_n(headroom, type, 0, nsp, ack_id, json, len);
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

/* The session's socket in namespace nsp (compared by address: "/" is sb_sio_main, the
 * others cfg.namespaces entries), or NULL. */
static sb_sio_socket_t *sb_sio_nsp_socket(const sb_sio_t *sio, sb_eio_id_t id,
                                          const char *nsp) {
    sb_sio_socket_t *sock = sb_eio_app_data(sio->eio, id);
    while (sock && sock->nsp != nsp) sock = sock->next;
    return sock;
}

/* The session's socket in "/", or NULL. */
static sb_sio_socket_t *sb_sio_socket(const sb_sio_t *sio, sb_eio_id_t id) {
    return sb_sio_nsp_socket(sio, id, sb_sio_main);
}

/* The served namespace named by name (len bytes, e.g. from a packet), or NULL. */
static const char *sb_sio_nsp_find(const sb_sio_t *sio, const char *name, size_t len) {
    if (len == 1 && name[0] == '/') return sb_sio_main;
    for (const char *const *n = sio->cfg.namespaces; n && *n; n++)
        if (strlen(*n) == len && memcmp(*n, name, len) == 0) return *n;
    return NULL;
}

size_t sb_sio_socket_size(void) { return sizeof(sb_sio_socket_t); }

static void sb_sio_pending_free(sb_sio_pending_t *pd) {
    if (!pd) return;
    for (int i = 0; i < pd->got; i++) free((char *)pd->att[i].data);
    sb_sio_packet_close(&pd->pkt);
    free(pd);
}

/* Unchains sock from its session and frees it (rooms left by the caller). */
static void sb_sio_socket_unchain(sb_sio_t *sio, sb_eio_id_t id, sb_sio_socket_t *sock) {
    sb_sio_socket_t *head = sb_eio_app_data(sio->eio, id), **link = &head;
    while (*link && *link != sock) link = &(*link)->next;
    if (*link) *link = sock->next;
    sb_eio_set_app_data(sio->eio, id, head);
    sb_sio_pending_free(sock->pending);
    free(sock);
}

/* Leaves a namespace: rooms, state, and arms the connect timeout again when it was the
 * session's last. on_disconnect (sockets of "/") still finds the socket (identity, sid,
 * data) but no longer in its rooms. */
static void sb_sio_socket_drop(sb_sio_t *sio, sb_eio_id_t id, sb_sio_socket_t *sock,
                               const char *reason, int64_t rearm_at) {
    if (sock->nsp == sb_sio_main) {
        sb_rooms_leave_all(sio->rooms, &sock->member);
        sio->connected--;
        if (sio->cb.on_disconnect) sio->cb.on_disconnect(sio->cb.ud, id, reason);
    }
    sb_sio_socket_unchain(sio, id, sock);
    if (rearm_at && !sb_eio_app_data(sio->eio, id)) sb_eio_set_timer(sio->eio, id, rearm_at);
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

static sb_sio_socket_t *sb_sio_socket_new(const sb_sio_identity_t *who, sb_eio_id_t id,
                                          const char *nsp) {
    sb_sio_socket_t *sock = calloc(1, sizeof *sock);
    if (!sock) return NULL;
    sock->nsp = nsp;
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

/* Connects the session to namespace nsp with token: authenticate, answer (`40[nsp,]{"sid"}`,
 * or `40` alone to a v2 client), join rooms ("/" only), let the app replay. auth is the
 * CONNECT's payload for on_connect (NULL: none). */
static void sb_sio_connect_token(sb_sio_t *sio, sb_eio_id_t id, const char *nsp,
                                 const char *token, const cJSON *auth) {
    sb_sio_identity_t who;
    memset(&who, 0, sizeof who);
    char err[256] = "";
    if (sio->cb.auth(sio->cb.ud, token, &who, err, sizeof err) != 0 || !who.public_key[0]) {
        sb_sio_refuse(sio, id, nsp, err[0] ? err : "Authentication error");
        return;
    }
    sb_sio_socket_t *sock = sb_sio_socket_new(&who, id, nsp);
    if (!sock || (nsp == sb_sio_main && sb_sio_join_defaults(sio, sock))) {
        if (sock) sb_rooms_leave_all(sio->rooms, &sock->member);
        free(sock);
        sb_sio_refuse(sio, id, nsp, "Server error");
        return;
    }
    sock->next = sb_eio_app_data(sio->eio, id);
    sb_eio_set_app_data(sio->eio, id, sock);
    sb_eio_set_timer(sio->eio, id, 0);
    if (nsp == sb_sio_main) sio->connected++;
    char reply[64];
    snprintf(reply, sizeof reply, "{\"sid\":\"%s\"}", sock->sid);
    int v2 = sb_eio_protocol(sio->eio, id) == 3;
    sb_sio_send_packet(sio, id, SB_SIO_CONNECT, nsp, v2 ? NULL : reply);
    if (sio->cb.on_connect) sio->cb.on_connect(sio->cb.ud, id, nsp, &sock->who, auth);
}

/* A CONNECT packet to a served namespace: the token of its auth payload. A v2 client has none
 * (its token came with the handshake, sb_sio_connect_v2): it is refused as one without a
 * token. */
static void sb_sio_on_connect(sb_sio_t *sio, sb_eio_id_t id, const char *nsp,
                              const cJSON *auth) {
    int v2 = sb_eio_protocol(sio->eio, id) == 3;
    sb_sio_connect_token(sio, id, nsp, auth && !v2 ? sb_json_str(auth, "token") : NULL,
                         v2 ? NULL : auth);
}

int sb_sio_connect_v2(sb_sio_t *sio, sb_eio_id_t id, const char *token) {
    if (sb_eio_protocol(sio->eio, id) != 3 || !sb_eio_is_open(sio->eio, id)) return SB_EINVAL;
    if (sb_sio_socket(sio, id)) return SB_EINVAL; /* connected already */
    sb_eio_batch_begin(sio->eio);
    sb_sio_connect_token(sio, id, sb_sio_main, token, NULL);
    sb_eio_batch_end(sio->eio);
    return SB_OK;
}

/* The ACK a client EVENT that nobody handles gets, so that no client waits on it for ever. */
static const char sb_sio_unsupported[] = "[{\"error\":\"client events are not supported\"}]";

/* A client EVENT (or BINARY_EVENT with its attachments) on a connected socket: to the app's
 * on_event when it has one and the name is a string; otherwise dropped, and an ack id is
 * answered at once with sb_sio_unsupported. */
static void sb_sio_on_event(sb_sio_t *sio, sb_eio_id_t id, const sb_sio_socket_t *sock,
                            const sb_sio_packet_t *p, const sb_sio_attachment_t *att,
                            int natt) {
    const cJSON *name = cJSON_GetArrayItem(p->data, 0);
    if (cJSON_IsString(name) && sio->cb.on_event) {
        sb_sio_event_t ev = {sock->nsp, name->valuestring, p->data, p->id, att, natt};
        sio->cb.on_event(sio->cb.ud, id, &ev);
        return;
    }
    if (p->id >= 0)
        sb_sio_send(sio, id, sock->nsp, SB_SIO_ACK, p->id, sb_sio_unsupported,
                    sizeof sb_sio_unsupported - 1, NULL, 0);
}

/* 1 when every placeholder {"_placeholder":true,"num":N} in d names one of n attachments
 * (socket.io-parser's reconstructPacket throws "illegal attachments" otherwise). The depth
 * is bounded by sb_json_parse's. */
static int sb_sio_placeholders_ok(const cJSON *d, int n) {
    if (cJSON_IsObject(d) && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(d, "_placeholder"))) {
        const cJSON *num = cJSON_GetObjectItemCaseSensitive(d, "num");
        return cJSON_IsNumber(num) && num->valuedouble >= 0 && num->valuedouble < n &&
               num->valuedouble == (double)(int)num->valuedouble;
    }
    for (const cJSON *c = d ? d->child : NULL; c; c = c->next)
        if (!sb_sio_placeholders_ok(c, n)) return 0;
    return 1;
}

/* A binary packet with attachments to come: it waits on its socket. Takes p's data. Returns
 * 0, or SB_ENOMEM (p left as it was). */
static int sb_sio_wait_attachments(sb_sio_t *sio, sb_sio_socket_t *sock, sb_sio_packet_t *p) {
    sb_sio_pending_t *pd = calloc(1, sizeof *pd + (size_t)p->attachments * sizeof pd->att[0]);
    if (!pd) return SB_ENOMEM;
    pd->pkt = *p;
    pd->pkt.nsp = sock->nsp;
    pd->pkt.nsp_len = strlen(sock->nsp);
    pd->keep = p->type == SB_SIO_BINARY_EVENT && sio->cb.on_event;
    p->data = NULL;
    sock->pending = pd;
    return SB_OK;
}

/* The session's socket waiting for attachments, or NULL. */
static sb_sio_socket_t *sb_sio_waiting(const sb_sio_t *sio, sb_eio_id_t id) {
    sb_sio_socket_t *sock = sb_eio_app_data(sio->eio, id);
    while (sock && !sock->pending) sock = sock->next;
    return sock;
}

/* One binary message: the next attachment of the packet waiting; the last one completes it.
 * A binary message nothing waits for, or attachments past maxPayload in all, close the
 * session (socket.io-parser throws on the first). */
static void sb_sio_on_attachment(sb_sio_t *sio, sb_eio_id_t id, const char *data, size_t len) {
    sb_sio_socket_t *sock = sb_sio_waiting(sio, id);
    sb_sio_pending_t *pd = sock ? sock->pending : NULL;
    if (!pd || (pd->keep && pd->bytes + len > sb_eio_max_payload(sio->eio))) {
        sb_eio_close(sio->eio, id, 0, "parse error");
        return;
    }
    if (pd->keep) {
        char *copy = malloc(len ? len : 1);
        if (!copy) {
            sb_eio_close(sio->eio, id, 0, "server error");
            return;
        }
        if (len) memcpy(copy, data, len);
        pd->att[pd->got] = (sb_sio_attachment_t){copy, len};
        pd->bytes += len;
    }
    if (++pd->got < pd->pkt.attachments) return;
    sock->pending = NULL;
    if (!sb_sio_placeholders_ok(pd->pkt.data, pd->got)) {
        sb_sio_pending_free(pd);
        sb_eio_close(sio->eio, id, 0, "parse error");
        return;
    }
    if (pd->pkt.type == SB_SIO_BINARY_EVENT)
        sb_sio_on_event(sio, id, sock, &pd->pkt, pd->keep ? pd->att : NULL,
                        pd->keep ? pd->got : 0);
    sb_sio_pending_free(pd);
}

/* A packet the session's state does not allow: socket.io closes the whole connection. */
static void sb_sio_invalid_state(sb_sio_t *sio, sb_eio_id_t id) {
    sb_eio_close(sio->eio, id, 1, "invalid state");
}

/* As socket.io's Client.ondecoded: a CONNECT to an unknown namespace is refused with
 * CONNECT_ERROR; any other packet for a namespace this session is not connected to (an EVENT
 * before CONNECT, after DISCONNECT, to another namespace), and a second CONNECT to a connected
 * namespace, close the connection. */
static void sb_sio_dispatch(sb_sio_t *sio, sb_eio_id_t id, sb_sio_packet_t *p,
                            int64_t now) {
    const char *nsp = sb_sio_nsp_find(sio, p->nsp, p->nsp_len);
    sb_sio_socket_t *sock = nsp ? sb_sio_nsp_socket(sio, id, nsp) : NULL;
    if (!nsp && p->type == SB_SIO_CONNECT) {
        char name[SB_SIO_NSP_MAX + 1];
        memcpy(name, p->nsp, p->nsp_len);
        name[p->nsp_len] = '\0';
        sb_sio_refuse(sio, id, name, "Invalid namespace");
        return;
    }
    if (!nsp || (p->type == SB_SIO_CONNECT) == (sock != NULL)) {
        sb_sio_invalid_state(sio, id);
        return;
    }
    int binary = p->type == SB_SIO_BINARY_EVENT || p->type == SB_SIO_BINARY_ACK;
    if (binary && p->attachments > 0) {
        if (sb_sio_wait_attachments(sio, sock, p)) sb_eio_close(sio->eio, id, 0, "server error");
        return;
    }
    switch (p->type) {
    case SB_SIO_CONNECT: sb_sio_on_connect(sio, id, nsp, p->data); break;
    case SB_SIO_DISCONNECT:
        sb_sio_socket_drop(sio, id, sock, "client namespace disconnect",
                           now + sio->cfg.connect_timeout_ms);
        break;
    case SB_SIO_EVENT:
    case SB_SIO_BINARY_EVENT: sb_sio_on_event(sio, id, sock, p, NULL, 0); break;
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
    if (binary) {
        sb_sio_on_attachment(sio, id, data, len);
        return;
    }
    sb_sio_packet_t p;
    if (sb_sio_waiting(sio, id) || sb_sio_decode(data, len, &p)) {
        sb_eio_close(sio->eio, id, 0, "parse error");
        return;
    }
    sb_sio_dispatch(sio, id, &p, now);
    sb_sio_packet_close(&p);
}

static void sb_sio_eio_close(void *ud, sb_eio_id_t id, const char *reason) {
    sb_sio_t *sio = ud;
    sb_sio_socket_t *sock;
    while ((sock = sb_eio_app_data(sio->eio, id))) sb_sio_socket_drop(sio, id, sock, reason, 0);
}

static void sb_sio_eio_timer(void *ud, sb_eio_id_t id, int64_t now) {
    (void)now;
    sb_sio_t *sio = ud;
    if (!sb_eio_app_data(sio->eio, id)) sb_eio_close(sio->eio, id, 0, "connect timeout");
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
    sio->cfg.namespaces = cfg ? cfg->namespaces : NULL;
    sb_eio_app_cb_t app = {sb_sio_eio_open, sb_sio_eio_message, sb_sio_eio_close,
                           sb_sio_eio_timer, sio};
    sb_eio_set_app(eio, &app);
    return sio;
}

static void sb_sio_free_socket(void *ud, sb_eio_id_t id) {
    sb_sio_t *sio = ud;
    sb_sio_socket_t *sock;
    while ((sock = sb_eio_app_data(sio->eio, id))) {
        sb_rooms_leave_all(sio->rooms, &sock->member);
        sb_sio_socket_unchain(sio, id, sock);
    }
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

/* Queues the attachments of a binary packet, one binary message each. */
static int sb_sio_send_attachments(sb_sio_t *sio, sb_eio_id_t id, const sb_sio_attachment_t *att,
                                   int natt) {
    int rc = SB_OK;
    for (int i = 0; i < natt && rc == SB_OK; i++)
        rc = sb_eio_send_binary(sio->eio, id, att[i].data, att[i].len);
    return rc;
}

int sb_sio_send(sb_sio_t *sio, sb_eio_id_t id, const char *nsp, int type, int64_t ack_id,
                const char *json, size_t len, const sb_sio_attachment_t *att, int natt) {
    const char *served = sb_sio_nsp_find(sio, nsp ? nsp : "/", nsp ? strlen(nsp) : 1);
    if (!served || !sb_sio_nsp_socket(sio, id, served)) return SB_ENOTFOUND;
    if ((type != SB_SIO_EVENT && type != SB_SIO_ACK) || (type == SB_SIO_ACK) != (ack_id >= 0) ||
        !json || len < 2 || json[0] != '[' || natt < 0 || natt > SB_SIO_MAX_ATTACHMENTS)
        return SB_EINVAL;
    if (natt) type = type == SB_SIO_EVENT ? SB_SIO_BINARY_EVENT : SB_SIO_BINARY_ACK;
    sb_eio_buf_t *b = sb_sio_encode_n(sb_eio_config(sio->eio)->headroom, type, natt, served,
                                      ack_id, json, len);
    if (!b) return SB_ENOMEM;
    sb_eio_batch_begin(sio->eio); /* a drop closes after the whole packet was tried */
    int rc = sb_eio_send(sio->eio, id, b);
    if (rc == SB_OK) rc = sb_sio_send_attachments(sio, id, att, natt);
    sb_eio_batch_end(sio->eio);
    sb_eio_buf_unref(b);
    return rc;
}

int sb_sio_ack(sb_sio_t *sio, sb_eio_id_t id, int64_t ack_id, const char *json, size_t len) {
    if (!sb_sio_socket(sio, id)) return SB_ENOTFOUND;
    if (ack_id < 0) return SB_EINVAL;
    return sb_sio_send(sio, id, NULL, SB_SIO_ACK, ack_id, json, len, NULL, 0);
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
