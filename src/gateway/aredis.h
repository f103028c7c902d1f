/* The gateway's asynchronous Redis client on the gateway's libuv loop. Its I/O, plain or TLS,
 * is aconn.h's (our own connection under hiredis's RESP reader: hiredis 0.14's async context
 * cannot carry TLS); this layer adds reconnecting, the watchdog and the on-up hooks.
 *
 * One sb_aredis_t is one logical connection that reconnects by itself: when the connection
 * is refused or lost it retries with capped exponential backoff (100 ms doubling to 5 s),
 * logging the loss once and the recovery once. A watchdog drops a connection whose server
 * stops answering (no reply for SB_AREDIS_STALL_MS while commands are pending) or that
 * cannot be established in time, so a callback is never left hanging.
 *
 * Commands go out as pre-formatted sb_batch_t batches (the same bytes the blocking client
 * sends). While disconnected, sending fails at once and the caller answers 503; nothing is
 * queued behind the caller's back. Everything runs on the loop thread.
 *
 * Push mode (a SUBSCRIBE connection): sb_aredis_subscribe() sends SUBSCRIBE commands whose
 * callback runs for every message of the subscription (and with NULL when the connection
 * goes), and the on-up hooks (sb_aredis_on_up) run each time the connection is (re)made, so
 * the owner subscribes again after every reconnect. Any connection may carry several hooks
 * (the command connection: presence's keyspace-events check and the replays that waited for
 * Redis). */
#ifndef SB_GATEWAY_AREDIS_H
#define SB_GATEWAY_AREDIS_H

#include <hiredis/hiredis.h>
#include <uv.h>
#include "switchboard/config.h"
#include "switchboard/redis.h"

#define SB_AREDIS_STALL_MS 3000

typedef struct sb_aredis sb_aredis_t;

/* An on-up hook, embedded in its owner (as libuv embeds uv_handle_t in yours), so registering
 * needs no allocation and cannot fail. Zero it (or leave it removed) before use; the fields
 * are aredis.c's. */
typedef struct sb_aredis_hook {
    void (*fn)(void *ud);
    void *ud;
    struct sb_aredis_hook *next; /* next hook of the same connection */
    sb_aredis_t *ar;             /* the connection it is registered on; NULL when not */
} sb_aredis_hook_t;

/* Called exactly once per accepted send with the reply to the batch's last command, or with
 * NULL when Redis went away before answering (the command may or may not have run). The
 * reply belongs to the connection and is valid only during the call. */
typedef void (*sb_aredis_cb)(redisReply *reply, void *priv);

/* Creates a client for addr (copied) on loop and starts connecting. name appears in logs.
 * Returns NULL on allocation failure. */
sb_aredis_t *sb_aredis_create(uv_loop_t *loop, const sb_redis_addr_t *addr, const char *name);
/* Closes the connection (pending callbacks get NULL) and its timers and unregisters every
 * on-up hook; the struct is freed once libuv has closed the timers, during a later uv_run.
 * NULL is fine. */
void sb_aredis_close(sb_aredis_t *ar);

/* 1 while connected. */
int sb_aredis_up(const sb_aredis_t *ar);
/* Successful reconnections after a loss, since creation. */
unsigned long long sb_aredis_reconnects(const sb_aredis_t *ar);

/* Sends every command of b in one write; cb gets the last command's reply. Returns 0 (cb
 * will be called once), SB_EREDIS when not connected or SB_ENOMEM (cb is never called). */
int sb_aredis_send(sb_aredis_t *ar, const sb_batch_t *b, sb_aredis_cb cb, void *priv);

/* A Lua script call, EVALSHA first: build(b, mode, priv) appends the whole call to b in the
 * given mode (e.g. sb_batch_add_script with script, whose SHA1 sb_script_init computed once).
 * When Redis answers NOSCRIPT (its script cache is empty: a restart, SCRIPT FLUSH) the call
 * is built again with SB_SCRIPT_EVAL and sent once more. cb runs exactly once, with the
 * final reply (NULL when Redis went away, including when the EVAL could not be sent; then
 * nothing ran). build must be able to run again from priv until cb runs. Returns 0 (cb will
 * be called), or the builder's error, SB_EREDIS (not connected) or SB_ENOMEM: cb is never
 * called. */
typedef int (*sb_aredis_build_fn)(sb_batch_t *b, sb_script_mode_t mode, void *priv);
int sb_aredis_eval(sb_aredis_t *ar, sb_aredis_build_fn build, sb_aredis_cb cb, void *priv);

/* Registers h to run fn(ud) (fn non-NULL), after the hooks added before it, every time the
 * connection comes up (not now if it is already up). h belongs to the caller and must stay
 * valid until sb_aredis_on_up_remove(h) or sb_aredis_close(ar); it must not be registered
 * already. */
void sb_aredis_on_up(sb_aredis_t *ar, sb_aredis_hook_t *h, void (*fn)(void *ud), void *ud);
/* Unregisters h. Idempotent: a zeroed hook, one removed already, or one whose connection was
 * closed (sb_aredis_close unregisters every hook) is left as is, so owners may call it after
 * the connection is gone. A hook may remove itself or another while the hooks run. */
void sb_aredis_on_up_remove(sb_aredis_hook_t *h);
/* Redis Cluster: the master that serves key's slot now (host into host, len bytes, and port),
 * for a connection that must be on that node (node-local keyspace events). 0; SB_EINVAL when
 * ar is not a cluster client; SB_EREDIS before its slot map is loaded. */
int sb_aredis_key_node(const sb_aredis_t *ar, const char *key, char *host, size_t len,
                       int *port);
/* Sends the SUBSCRIBE / PSUBSCRIBE commands of b. cb(reply, priv) then runs for every push
 * reply of those channels (["subscribe",ch,n], ["message",ch,payload]) for as long as the
 * connection lives, and with NULL (once) when it goes or is closed, including
 * from inside sb_aredis_close. Subscriptions do not survive a reconnect: resubscribe from the
 * on-up hook. Returns 0, or SB_EREDIS when not connected. */
int sb_aredis_subscribe(sb_aredis_t *ar, const sb_batch_t *b, sb_aredis_cb cb, void *priv);

#endif
