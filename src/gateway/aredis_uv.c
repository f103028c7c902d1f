/* hiredis async on a libuv loop: one uv_poll_t per context (see aredis_uv.h for why this is
 * not hiredis's own adapter). The poll's memory is freed in its close callback; `ac` is
 * NULLed as soon as hiredis cleans up, so a poll event that is already queued does nothing. */
#include <stdlib.h>
#include "gateway/aredis_uv.h"

typedef struct {
    uv_poll_t poll;
    redisAsyncContext *ac; /* NULL once hiredis has cleaned up */
    int events;            /* UV_READABLE | UV_WRITABLE wanted by hiredis */
} sb_uvio_t;

static void sb_uvio_cb(uv_poll_t *h, int status, int events) {
    sb_uvio_t *io = h->data;
    if (!io->ac) return;
    if (status < 0) {
        /* POLLERR (e.g. the connection was reset): libuv has stopped the poll; a read makes
         * hiredis see the error and disconnect, calling every pending callback with NULL */
        redisAsyncHandleRead(io->ac);
        return;
    }
    if (events & UV_READABLE) redisAsyncHandleRead(io->ac);
    if (io->ac && (events & UV_WRITABLE)) redisAsyncHandleWrite(io->ac);
}

static void sb_uvio_update(sb_uvio_t *io) {
    if (io->events) uv_poll_start(&io->poll, io->events, sb_uvio_cb);
    else uv_poll_stop(&io->poll);
}

static void sb_uvio_add_read(void *p) { ((sb_uvio_t *)p)->events |= UV_READABLE, sb_uvio_update(p); }
static void sb_uvio_del_read(void *p) { ((sb_uvio_t *)p)->events &= ~UV_READABLE, sb_uvio_update(p); }
static void sb_uvio_add_write(void *p) { ((sb_uvio_t *)p)->events |= UV_WRITABLE, sb_uvio_update(p); }
static void sb_uvio_del_write(void *p) { ((sb_uvio_t *)p)->events &= ~UV_WRITABLE, sb_uvio_update(p); }

static void sb_uvio_closed(uv_handle_t *h) { free(h->data); }

static void sb_uvio_cleanup(void *p) {
    sb_uvio_t *io = p;
    io->ac = NULL;
    uv_close((uv_handle_t *)&io->poll, sb_uvio_closed);
}

int sb_aredis_uv_attach(redisAsyncContext *ac, uv_loop_t *loop) {
    if (ac->ev.data) return REDIS_ERR;
    sb_uvio_t *io = calloc(1, sizeof *io);
    if (!io) return REDIS_ERR;
    if (uv_poll_init(loop, &io->poll, ac->c.fd) != 0) {
        free(io);
        return REDIS_ERR;
    }
    io->poll.data = io;
    io->ac = ac;
    ac->ev.data = io;
    ac->ev.addRead = sb_uvio_add_read;
    ac->ev.delRead = sb_uvio_del_read;
    ac->ev.addWrite = sb_uvio_add_write;
    ac->ev.delWrite = sb_uvio_del_write;
    ac->ev.cleanup = sb_uvio_cleanup;
    return REDIS_OK;
}
