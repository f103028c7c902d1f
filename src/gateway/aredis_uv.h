/* hiredis async ↔ libuv binding for the gateway, in place of hiredis 0.14's
 * adapters/libuv.h, which ignores a poll error: when Redis dies with unread data the kernel
 * resets the connection, libuv reports POLLERR as an error status and stops the poll, and
 * that adapter returns without telling hiredis — the context then hangs with its callbacks
 * pending. Here an error status makes hiredis read, see the reset and disconnect, so every
 * pending callback gets NULL at once. It also keeps epoll quiet: the poll's mask changes only
 * when it must, and commands are written once per loop turn from a uv_prepare handle rather
 * than by polling for WRITE per command (see aredis_uv.c). */
#ifndef SB_GATEWAY_AREDIS_UV_H
#define SB_GATEWAY_AREDIS_UV_H

#include <hiredis/async.h>
#include <uv.h>

/* Attaches ac to loop (ac->ev is set; hiredis calls our cleanup when the context goes).
 * Returns REDIS_OK, or REDIS_ERR (already attached, out of memory, bad fd). */
int sb_aredis_uv_attach(redisAsyncContext *ac, uv_loop_t *loop);

#endif
