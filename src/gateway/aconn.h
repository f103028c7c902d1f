/* One asynchronous Redis connection on a libuv loop, plain or TLS: the I/O under the gateway's
 * sb_aredis_t (aredis.h), which adds reconnecting, the watchdog and the on-up hooks.
 *
 * Design. hiredis 0.14's redisAsyncContext does its own read()/write() on the fd, so it
 * cannot carry TLS; this module keeps hiredis for RESP only and owns the rest:
 *   - the byte stream is an sb_conn_t (switchboard/conn.h: a socket, OpenSSL on top for
 *     rediss://), polled with one uv_poll_t;
 *   - commands are appended, already formatted (sb_batch_t), to an output buffer, and each
 *     command's callback to a FIFO; replies come out of a hiredis redisReader fed with what
 *     is read, and go to the FIFO's head in order;
 *   - the connect and the TLS handshake are driven from the poll callback, step by step,
 *     polling for whatever the handshake waits for (WANT_READ / WANT_WRITE);
 *   - epoll stays quiet (what the old hiredis adapter, aredis_uv.c, was tuned for): READ stays
 *     on for the life of the connection and the poll mask changes only when the wanted mask
 *     changes; a command does not poll for WRITE: a uv_prepare_t, run just before the loop
 *     blocks, writes everything this loop turn queued in one write(); only a short write
 *     (EAGAIN, or TLS's WANT_WRITE) polls for WRITE until the buffer is out. TLS may also
 *     need to read before it can write (WANT_READ): the next readable event retries it.
 *   - reads: one read() per readable event, as hiredis did; over TLS, then as many more as
 *     OpenSSL holds decrypted bytes for (SSL_pending), which poll() cannot see.
 *
 * Callbacks: each accepted send's callback runs exactly once, with the reply (owned by the
 * connection, valid during the call) or with NULL when the connection goes first. A poll
 * error, EOF, a protocol error or a failed handshake ends the connection: every pending
 * callback gets NULL, the push callback gets NULL, then events.closed runs once. Everything
 * may call sb_aconn_close from inside any of these callbacks; memory is released from libuv
 * close callbacks, later. */
#ifndef SB_GATEWAY_ACONN_H
#define SB_GATEWAY_ACONN_H

#include <hiredis/hiredis.h>
#include <uv.h>
#include "switchboard/config.h"
#include "switchboard/redis.h"

typedef struct sb_aconn sb_aconn_t;

typedef void (*sb_aconn_cb)(redisReply *reply, void *priv);

typedef struct {
    void (*connected)(void *data);               /* handshake done: commands flow */
    void (*closed)(void *data, const char *why); /* connect failed or connection lost */
} sb_aconn_events_t;

/* Starts connecting to addr (copied where needed) on loop; events run with data. Returns the
 * connection, or NULL with the reason in err (host unknown, refused at once, TLS files). No
 * event runs before this returns. */
sb_aconn_t *sb_aconn_open(uv_loop_t *loop, const sb_redis_addr_t *addr,
                          const sb_aconn_events_t *events, void *data, char *err,
                          size_t errlen);
/* Ends the connection now: pending callbacks (and the push callback) get NULL before it
 * returns; events.closed does not run. NULL is fine. A connection that ended by itself is
 * released by itself: once its events.closed has returned, forget the pointer (closing it
 * from inside its own callbacks, while it ends, is a no-op). */
void sb_aconn_close(sb_aconn_t *c);

/* Queues every command of b (sent when connected, in one write per loop turn). cb(priv) gets
 * the last command's reply (the others' are dropped); cb may be NULL. Returns 0 (cb will run
 * exactly once), SB_EREDIS when the connection has ended, SB_ENOMEM (nothing queued). */
int sb_aconn_send(sb_aconn_t *c, const sb_batch_t *b, sb_aconn_cb cb, void *priv);
/* Queues SUBSCRIBE-family commands: once their first reply arrives the connection is in push
 * mode and every reply goes to cb(priv), until the connection ends (then cb gets NULL once).
 * The latest cb given wins. Returns 0, SB_EREDIS, SB_ENOMEM as sb_aconn_send. */
int sb_aconn_subscribe(sb_aconn_t *c, const sb_batch_t *b, sb_aconn_cb cb, void *priv);

#endif
