/* Socket.IO v5 on top of Engine.IO (eio.h), and v4 for socket.io-client v2 (see
 * sb_sio_connect_v2): packet codec, the main namespace "/" with token
 * auth, rooms, and emission of events encoded once and shared by every recipient.
 *
 * How it works: sb_sio_create() installs itself as the eio server's application. A client's
 * CONNECT (`40{"token":...}`) calls the injected auth callback; success answers
 * `40{"sid":"..."}`, joins `user:{publicKey}` (and `admins` for role admin) and then calls
 * on_connect (where the HTTP layer replays the latest state of the user's recent jobs with
 * sb_sio_emit); failure answers `44{"message":"..."}` and joins nothing. Namespaces other than
 * "/" exist only when sb_sio_config_t.namespaces lists them (the conformance server's
 * "/custom"; the gateway has none); a session may be connected to several at once, each its
 * own socket. Client EVENTs go to on_event (unknown ones may simply be ignored there;
 * sb_sio_ack / sb_sio_send answer an ack id); a BINARY_EVENT first waits for its attachments
 * (the next binary messages; text before they are all in is a parse error, as in
 * socket.io-parser), kept up to maxPayload bytes in all. Without on_event (or for a
 * non-string name) an ack id is answered at once with
 * `43<id>[{"error":"client events are not supported"}]` (attachments are then counted and
 * dropped); client ACKs are ignored; a DISCONNECT (`41`) leaves the namespace. As socket.io's
 * Client.ondecoded, any packet but CONNECT for a namespace the session is not connected to,
 * and a second CONNECT, close the connection ("invalid state"). A Socket.IO packet that does
 * not parse closes that session only. An engine session connected to no namespace within
 * connect_timeout_ms is closed, as the reference does.
 *
 * Emitting: sb_sio_emit_room() encodes `42["event",data]` once into a refcounted buffer and
 * queues a reference on every socket of the room (sb_rooms_each + sb_eio_send); a socket whose
 * queue is full is dropped, after the loop (eio batches closes). Every emit's text goes out
 * as valid UTF-8, since a WebSocket text frame must be (utf8.h): an event name or data that is
 * not is framed repaired, each invalid sequence replaced by U+FFFD. Data read back from Redis
 * (presence events, replayed records) is sent repaired that way; a caller that would rather
 * drop such text checks it first (subscriber.c drops live status messages).
 *
 * Connection-state recovery (TODO, optional in the SPEC): clients recover when the CONNECT
 * reply carries a "pid" and every event carries an offset as its last argument; on reconnect
 * they send {"pid","offset"} in the CONNECT auth and expect the missed packets. The design
 * leaves room for it (a per-room ring of recent shared buffers keyed by offset, and "pid" in
 * sb_sio_socket_t), but for now no "pid" is sent, so clients never attempt it; replay is done by
 * the HTTP layer in on_connect from Redis (the SPEC's must-have).
 *
 * Memory: a connected socket adds one sb_sio_socket_t (sb_sio_socket_size(): 352 bytes with
 * the identity inline) plus its room memberships (16 bytes on each side per room); an engine
 * session that has not connected adds nothing. Total measured per connected socket, engine
 * session and a room of its own included: ~704 bytes of heap with the 328-byte socket of
 * before namespaces (so ~728 now; public keys up to 128 characters inline). */
#ifndef SB_GATEWAY_SIO_H
#define SB_GATEWAY_SIO_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/socketio/eio.h"
#include "gateway/socketio/rooms.h"
#include "switchboard/job.h"

enum {
    SB_SIO_CONNECT = 0,
    SB_SIO_DISCONNECT = 1,
    SB_SIO_EVENT = 2,
    SB_SIO_ACK = 3,
    SB_SIO_CONNECT_ERROR = 4,
    SB_SIO_BINARY_EVENT = 5,
    SB_SIO_BINARY_ACK = 6,
};

/* public key / user id buffer, NUL included: any publicKey the HTTP API accepts fits */
#define SB_SIO_ID_MAX (SB_PUBKEY_MAX + 1)
#define SB_SIO_ROLE_MAX 16   /* role buffer, NUL included */
#define SB_SIO_NSP_MAX 256   /* longest namespace accepted in a packet */
#define SB_SIO_MAX_ATTACHMENTS 64

/* ---- codec (pure) ------------------------------------------------------------------------ */

typedef struct sb_sio_packet {
    int type;           /* SB_SIO_* */
    int attachments;    /* binary packets only */
    const char *nsp;    /* into the input, or "/" when absent; not NUL-terminated */
    size_t nsp_len;
    int64_t id;         /* ack id, -1 when absent */
    cJSON *data;        /* parsed payload or NULL; owned, freed by sb_sio_packet_close */
} sb_sio_packet_t;

/* Decodes one Socket.IO packet (the payload of an Engine.IO message). Validates the payload
 * shape as the reference decoder does (CONNECT: object, DISCONNECT: none, EVENT: non-empty
 * array, ACK: array, CONNECT_ERROR: string or object) with the JSON depth limit of
 * sb_json_parse. Returns 0 (close *out with sb_sio_packet_close), or SB_EINVAL with nothing
 * to free. */
int sb_sio_decode(const char *buf, size_t len, sb_sio_packet_t *out);
void sb_sio_packet_close(sb_sio_packet_t *p); /* frees data; accepts a zeroed packet */

/* Encodes the Engine.IO message `4` + type [+ "nsp,"] [+ ack id] [+ json] into a new buffer
 * (refs = 1, headroom spare bytes in front). nsp NULL or "/" is the main namespace; ack_id < 0
 * is none; json (len bytes, trusted to be valid JSON) may be NULL. NULL on ENOMEM. */
sb_eio_buf_t *sb_sio_encode(size_t headroom, int type, const char *nsp, int64_t ack_id,
                            const char *json, size_t len);
/* Encodes `42["event",json]` (json NULL: `42["event"]`); the event name is JSON-escaped.
 * NULL on ENOMEM. */
sb_eio_buf_t *sb_sio_encode_event(size_t headroom, const char *event, const char *json,
                                  size_t len);

/* ---- the namespace "/" -------------------------------------------------------------------- */

typedef struct sb_sio sb_sio_t;

/* Who a token belongs to, filled by the auth callback (strings NUL-terminated, truncated
 * values must be refused by the callback). */
typedef struct sb_sio_identity {
    char public_key[SB_SIO_ID_MAX];
    char user_id[SB_SIO_ID_MAX];
    char role[SB_SIO_ROLE_MAX]; /* "user" | "agent" | "admin" */
} sb_sio_identity_t;

/* One binary attachment of a packet (the bytes of one binary message). */
typedef struct sb_sio_attachment {
    const char *data;
    size_t len;
} sb_sio_attachment_t;

/* A client EVENT (or BINARY_EVENT, its attachments received) on a connected socket. */
typedef struct sb_sio_event {
    const char *nsp;    /* "/" or one of sb_sio_config_t.namespaces */
    const char *name;   /* args[0] */
    const cJSON *args;  /* the whole array (item 0 is the name); an attachment stands in it
                           as its placeholder {"_placeholder":true,"num":N}, as received */
    int64_t ack_id;     /* -1 when none */
    const sb_sio_attachment_t *attachments; /* natt of them, in order; valid during the call */
    int natt;
} sb_sio_event_t;

typedef struct sb_sio_callbacks {
    /* Required. token is NULL when the CONNECT carried none. Return 0 and fill *who, or
     * non-zero and write the sentence the client gets in CONNECT_ERROR into err. */
    int (*auth)(void *ud, const char *token, sb_sio_identity_t *who, char *err, size_t errlen);
    /* After `40{"sid"}` was queued (on "/": and the rooms joined): replay state with
     * sb_sio_emit. nsp is "/" or one of sb_sio_config_t.namespaces; auth is the CONNECT's
     * payload (NULL when it had none). */
    void (*on_connect)(void *ud, sb_eio_id_t id, const char *nsp, const sb_sio_identity_t *who,
                       const cJSON *auth);
    /* A client event; answer an ack id with sb_sio_ack / sb_sio_send. Without on_event (a push
     * server) an ack id is answered at once with an error (see above). */
    void (*on_event)(void *ud, sb_eio_id_t id, const sb_sio_event_t *ev);
    /* The socket left "/" (client disconnect, engine closed; e.g. "slow consumer"). reason is
     * static. The socket has left its rooms; its identity, sid and data are still readable. */
    void (*on_disconnect)(void *ud, sb_eio_id_t id, const char *reason);
    void *ud;
} sb_sio_callbacks_t;

typedef struct sb_sio_config {
    int connect_timeout_ms; /* 45000: close an engine session connected to no namespace by then */
    /* Namespaces served besides "/" (a NULL-terminated allow-list, not copied: it must outlive
     * sio), or NULL for none. Their sockets authenticate as "/" does but join no room, and
     * on_disconnect is not called for them: rooms, emits and the other accessors are the
     * main namespace's. A CONNECT to a namespace not listed is refused ("Invalid namespace"). */
    const char *const *namespaces;
} sb_sio_config_t;

/* Creates the Socket.IO layer over eio (not owned; must outlive it) and installs itself as its
 * application. cfg NULL = defaults. Returns NULL on ENOMEM or when cb->auth is NULL. */
sb_sio_t *sb_sio_create(sb_eio_server_t *eio, const sb_sio_callbacks_t *cb,
                        const sb_sio_config_t *cfg);
/* Frees every socket's state and the rooms, and detaches from eio (free it before eio).
 * on_disconnect is not called. Accepts NULL. */
void sb_sio_free(sb_sio_t *sio);

sb_rooms_t *sb_sio_rooms(sb_sio_t *sio);
uint32_t sb_sio_count(const sb_sio_t *sio); /* sockets connected to "/" (a gauge) */
/* The identity of a connected socket, or NULL. Valid until it disconnects. */
const sb_sio_identity_t *sb_sio_identity(const sb_sio_t *sio, sb_eio_id_t id);
/* The Socket.IO sid of a connected socket, or NULL. A socket that disconnects and connects
 * again on the same engine session (`41` then `40`) gets a new sid: (id, sid) names one
 * socket. */
const char *sb_sio_sid(const sb_sio_t *sio, sb_eio_id_t id);
/* A pointer the application hangs on a connected socket (NULL at connect; not owned, never
 * freed here): sb_sio_set_data returns 0 or SB_ENOTFOUND; sb_sio_data NULL when unset or not
 * connected. Still readable during on_disconnect, gone after. */
int sb_sio_set_data(sb_sio_t *sio, sb_eio_id_t id, void *data);
void *sb_sio_data(const sb_sio_t *sio, sb_eio_id_t id);

/* Joins / leaves a room for a connected socket. 0, SB_ENOTFOUND (not connected), SB_EINVAL
 * (bad name), SB_ENOMEM; leave also SB_ENOTFOUND when not in it. */
int sb_sio_join(sb_sio_t *sio, sb_eio_id_t id, const char *room);
int sb_sio_leave(sb_sio_t *sio, sb_eio_id_t id, const char *room);

/* Emits event with data (JSON; NULL for no argument) to one connected socket. Returns 0,
 * SB_ENOTFOUND (not connected), SB_ENOMEM, or SB_ETIMEOUT (its queue was full: dropped). */
int sb_sio_emit(sb_sio_t *sio, sb_eio_id_t id, const char *event, const cJSON *data);
/* Same with data as JSON text (len bytes, trusted to be JSON, e.g. built by the caller; bytes
 * that are not UTF-8 are repaired, see above). */
int sb_sio_emit_json(sb_sio_t *sio, sb_eio_id_t id, const char *event, const char *json,
                     size_t len);
/* Emits to every socket in room, encoding once. Returns how many sockets it was queued for
 * (0 when the room is empty or absent) or SB_ENOMEM. */
int sb_sio_emit_room(sb_sio_t *sio, const char *room, const char *event, const cJSON *data);
int sb_sio_emit_room_json(sb_sio_t *sio, const char *room, const char *event, const char *json,
                          size_t len);
/* Answers a client EVENT that asked for an acknowledgement (ack_id from on_event) with json,
 * a JSON array of the reply's arguments (e.g. "[]"): sends `43<ack_id>[...]`. Returns 0,
 * SB_ENOTFOUND (not connected), SB_EINVAL (no ack id / not an array), SB_ENOMEM, SB_ETIMEOUT. */
int sb_sio_ack(sb_sio_t *sio, sb_eio_id_t id, int64_t ack_id, const char *json, size_t len);
/* Sends one packet to the socket of namespace nsp (NULL: "/") on session id: type
 * SB_SIO_EVENT (json: the array [name, args...]) or SB_SIO_ACK (ack_id >= 0; json: the array
 * of the reply's arguments). With natt > 0 attachments it goes as BINARY_EVENT / BINARY_ACK
 * (json carries their placeholders) followed by one binary message each. Returns 0,
 * SB_ENOTFOUND (not connected to nsp), SB_EINVAL (bad type, ack id or json), SB_ENOMEM or
 * SB_ETIMEOUT (queue full: dropped). */
int sb_sio_send(sb_sio_t *sio, sb_eio_id_t id, const char *nsp, int type, int64_t ack_id,
                const char *json, size_t len, const sb_sio_attachment_t *att, int natt);
/* Queues an already encoded packet (from sb_sio_encode*) on every socket of room; the caller
 * keeps its reference. Returns the count of sockets it was queued for. */
int sb_sio_broadcast(sb_sio_t *sio, const char *room, sb_eio_buf_t *pkt);

/* Socket.IO v2 clients (protocol rev 4, over an Engine.IO v3 session) send no CONNECT for
 * "/": the server connects them on its own. The HTTP layer calls this right after the v3
 * handshake with the token of the handshake's query (`query: {token}` on the client; NULL
 * when absent); it is checked by the same auth callback as a CONNECT's. Success answers `40`
 * (no sid payload in that protocol) and continues as a CONNECT does; failure answers
 * CONNECT_ERROR `44"message"` (a JSON string, not v5's object) and the session stays
 * unconnected until connect_timeout_ms closes it (socket.io keeps it open). Every other
 * difference of the v2 protocol is in the engine (eio.h). Returns 0 (connected or refused),
 * or SB_EINVAL for a session that is not an open v3 one or is connected already: the query
 * token is never taken for an Engine.IO v4 session. */
int sb_sio_connect_v2(sb_sio_t *sio, sb_eio_id_t id, const char *token);

/* Server-side disconnect: sends `41`, leaves the rooms, and when close_engine is set closes
 * the engine session after the queue drains. Returns 0 or SB_ENOTFOUND. */
int sb_sio_disconnect(sb_sio_t *sio, sb_eio_id_t id, int close_engine);

size_t sb_sio_socket_size(void); /* sizeof the per-socket state */

#endif
