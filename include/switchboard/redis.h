/* Blocking Redis connections with reconnect, pipelines and cached Lua scripts.
 *
 * An sb_redis_t is one connection (conn.h: TCP, unix socket, or TLS for rediss://) with
 * hiredis 0.14 parsing its replies (RESP2). It is not thread-safe: each thread owns its
 * connections. When a command fails at the I/O level the context is dropped
 * and the call returns NULL / SB_EREDIS; sb_redis_ensure() reconnects with capped exponential
 * backoff (100 ms doubling to 5 s), logging the loss once and the recovery once. Nothing is
 * retried behind the caller's back: only the caller knows whether a command is idempotent.
 *
 * Plain sockets are written with write(): a process using this module must ignore SIGPIPE
 * (signal(SIGPIPE, SIG_IGN)) or a server that goes away kills it. `switchboard` does so in main.
 *
 * sb_batch_t holds pre-formatted commands (RESP bytes) so the same batch can be sent by the
 * blocking client here or by the gateway's async client. Argument-vector commands are written by
 * our own RESP encoder (no printf: the gateway builds one per HTTP request), printf-style ones by
 * hiredis's formatter; replies are always read and parsed by hiredis. */
#ifndef SB_REDIS_H
#define SB_REDIS_H

#include <stdatomic.h>
#include <stddef.h>
#include <hiredis/hiredis.h>
#include "switchboard/config.h"

typedef struct sb_redis sb_redis_t;

/* Creates an unconnected client for addr (copied). component names it in log lines.
 * Returns NULL only on allocation failure. */
sb_redis_t *sb_redis_create(const sb_redis_addr_t *addr, const char *component);
void sb_redis_free(sb_redis_t *r); /* closes the connection; NULL is fine */

/* One connection attempt (plus AUTH/SELECT). Returns 0, or SB_EREDIS with a reason in err. */
int sb_redis_connect(sb_redis_t *r, char *err, size_t errlen);
/* Returns 0 once connected, retrying with backoff; SB_ECANCELED if *stop becomes non-zero
 * (stop may be NULL: retry forever). */
int sb_redis_ensure(sb_redis_t *r, const atomic_int *stop);
int sb_redis_connected(const sb_redis_t *r);
/* 1 while connected over TLS. */
int sb_redis_is_tls(const sb_redis_t *r);
/* Socket read/write timeout for later commands, in ms (0 = none): a command that waits
 * longer fails and drops the connection. Applies on reconnect too. */
void sb_redis_set_timeout(sb_redis_t *r, int ms);
/* Bound of each connect (TCP connect and TLS handshake), in ms; 0 = the default, 2 s. */
void sb_redis_set_connect_timeout(sb_redis_t *r, int ms);
/* Follows an epoch shared between threads (epoch NULL: stop following): whenever *epoch
 * differs from its value when the connection was made, the next command drops the
 * connection and fails (NULL / SB_EREDIS) as if it had been lost, so that sb_redis_ensure()
 * finds the master again. Another thread bumps the epoch when the master moved (see
 * sb_redis_master_moved); epoch must outlive r. */
void sb_redis_follow(sb_redis_t *r, const atomic_uint *epoch);
/* With Sentinels and a master name, while connected: asks the Sentinels where the master is
 * now (sb_sentinel_resolve: blocking, short timeouts) and returns 1 with its "host:port" in
 * now when that is not the server r is connected to; 0 when it is, when r has no Sentinels
 * or no connection, or when the Sentinels could not say (nothing is changed either way). */
int sb_redis_master_moved(sb_redis_t *r, char *now, size_t nowlen);
/* Drops the connection (next command fails until ensure/connect). */
void sb_redis_disconnect(sb_redis_t *r);

/* Runs one command. Returns the reply (caller frees with freeReplyObject), or NULL when not
 * connected or on an I/O error (the connection is then dropped). A Redis error is a reply of
 * type REDIS_REPLY_ERROR, not NULL. */
redisReply *sb_redis_cmd(sb_redis_t *r, const char *fmt, ...);
redisReply *sb_redis_cmdargv(sb_redis_t *r, int argc, const char **argv, const size_t *lens);

/* Reads the next reply without sending anything (pub/sub messages after SUBSCRIBE). NULL on
 * timeout or I/O error (the connection is then dropped). */
redisReply *sb_redis_read(sb_redis_t *r);
/* The same, waiting at most timeout_ms: NULL with *timed_out = 1 when nothing arrived (the
 * connection stays usable — unlike a socket timeout, after which the connection is dropped), NULL with
 * *timed_out = 0 on an I/O error (the connection is then dropped). */
redisReply *sb_redis_read_wait(sb_redis_t *r, int timeout_ms, int *timed_out);

/* ---- pipelines ------------------------------------------------------------------------- */
typedef struct sb_batch sb_batch_t;

sb_batch_t *sb_batch_create(void);        /* NULL on allocation failure */
void sb_batch_free(sb_batch_t *b);        /* NULL is fine */
void sb_batch_reset(sb_batch_t *b);       /* empties it for reuse */
/* Appends a command in hiredis format syntax (%s, %b, %d...). Returns 0, SB_ENOMEM, SB_EINVAL. */
int sb_batch_add(sb_batch_t *b, const char *fmt, ...);
/* Appends the command argv[0..argc) (lens: byte lengths, binary-safe; NULL: strlen of each),
 * the same bytes redisFormatCommandArgv would write. Returns 0, SB_EINVAL (argc <= 0, a NULL
 * argument, absurd total size) or SB_ENOMEM; b is unchanged on error. */
int sb_batch_addargv(sb_batch_t *b, int argc, const char **argv, const size_t *lens);
/* Appends a copy of one command already written as RESP (len bytes, e.g. from sb_batch_cmd of
 * another batch: the cluster routers regroup commands this way). Returns 0 or SB_ENOMEM (b
 * unchanged). */
int sb_batch_add_raw(sb_batch_t *b, const char *cmd, size_t len);
/* Appends a copy of every command of src. Returns 0 or SB_ENOMEM (dst may then hold some). */
int sb_batch_append(sb_batch_t *dst, const sb_batch_t *src);
size_t sb_batch_count(const sb_batch_t *b);
/* The i-th formatted command (RESP bytes, followed by a NUL not counted in *len) and its length.
 * Valid until the batch is reset or freed. */
const char *sb_batch_cmd(const sb_batch_t *b, size_t i, size_t *len);

/* Sends every command of b in one write and reads one reply per command into replies
 * (an array of sb_batch_count(b) slots; caller frees each reply, see sb_replies_free).
 * Returns 0, or SB_EREDIS (connection dropped; slots are all NULL). */
int sb_redis_pipeline(sb_redis_t *r, const sb_batch_t *b, redisReply **replies);
void sb_replies_free(redisReply **replies, size_t n);

/* Sends every command of b now, in one write, without waiting for the replies: the next call
 * that reads from r (any command, pipeline or read) reads them first and drops them, logging
 * a Redis error among them as a warning, so they cost no round trip of their own. For
 * commands whose outcome the caller can do without (a progress update that a later terminal
 * write supersedes). Returns 0, or SB_EREDIS (connection dropped; some may have been sent). */
int sb_redis_send_deferred(sb_redis_t *r, const sb_batch_t *b);
/* Changes whenever a script sent by SHA1 may be unknown to the server: at each new connection,
 * and when a deferred command was answered NOSCRIPT (SCRIPT FLUSH). A script sent deferred
 * (whose NOSCRIPT nobody would retry) goes as EVAL, which also loads it, when this differs from
 * its value at the caller's last EVAL on r, else as EVALSHA. */
unsigned sb_redis_script_epoch(const sb_redis_t *r);

/* ---- Lua scripts ----------------------------------------------------------------------- */
typedef struct {
    const char *source;
    char sha1[41];
} sb_script_t;

/* Computes the script's SHA1 (hex). Call once before use. */
void sb_script_init(sb_script_t *s, const char *source);
/* EVALSHA, falling back to EVAL when the server does not know the script (NOSCRIPT).
 * argv holds nkeys keys followed by the arguments. Same return contract as sb_redis_cmd. */
redisReply *sb_redis_eval(sb_redis_t *r, const sb_script_t *s, int nkeys, int argc,
                          const char **argv, const size_t *lens);

/* For async callers: appends EVALSHA (SB_SCRIPT_EVALSHA) or EVAL (SB_SCRIPT_EVAL) of s with
 * nkeys keys followed by the arguments (argc in all; lens NULL: strlen). Send EVALSHA first and,
 * when the reply is NOSCRIPT (sb_reply_is_noscript), the same call built with SB_SCRIPT_EVAL.
 * argc may be any count (a group of calls in one script). Returns 0, SB_EINVAL, SB_ENOMEM. */
typedef enum { SB_SCRIPT_EVALSHA = 0, SB_SCRIPT_EVAL = 1 } sb_script_mode_t;
int sb_batch_add_script(sb_batch_t *b, const sb_script_t *s, sb_script_mode_t mode, int nkeys,
                        int argc, const char **argv, const size_t *lens);
/* 1 if reply is the NOSCRIPT error (the server does not know the script's SHA1). */
int sb_reply_is_noscript(const redisReply *reply);
/* 1 if reply is an error the server gives instead of running the command, so that sending it
 * again later is safe and may succeed: LOADING (restarting from disk), BUSY (a script is
 * running), TRYAGAIN, MASTERDOWN, READONLY (a replica), OOM, CLUSTERDOWN (a cluster while a
 * failover or a resharding leaves a slot unserved). */
int sb_reply_is_transient(const redisReply *reply);

/* Reply helpers: 1 if reply is a non-error reply of that shape. */
int sb_reply_ok(const redisReply *reply);          /* status "OK" / "QUEUED" or any non-error */
int sb_reply_is_error(const redisReply *reply);    /* NULL or REDIS_REPLY_ERROR */

#endif
