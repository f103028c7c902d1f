/* hiredis async on a libuv loop: one uv_poll_t per context plus a uv_prepare_t that flushes
 * hiredis's output buffer (see aredis_uv.h for why this is not hiredis's own adapter).
 *
 * Why not just follow hiredis's add/del read/write requests with uv_poll_start: in libuv 1.44
 * every uv_poll_start first stops the poll, which is an epoll_ctl(DEL) (uv__poll_stop →
 * uv__platform_invalidate_fd), and the next loop turn re-ADDs the fd: two epoll_ctl per call.
 * hiredis asks to add WRITE for every command and READ after every write, and to drop WRITE
 * once written, so the plain adapter costs ~4–6 epoll_ctl per round trip. Here:
 *   - the poll's mask changes only when the wanted mask changes (READ stays on for the life
 *     of the connection);
 *   - once connected, a command does not ask the poll for WRITE: the prepare handle, run just
 *     before the loop blocks, writes everything queued in this loop turn in one write(); only
 *     when the socket cannot take it all (EAGAIN) does the poll wait for WRITE, as before.
 * While connecting, WRITE is polled for (it tells us the TCP connect finished).
 *
 * Memory: the two handles are closed when hiredis cleans up and the struct is freed after
 * both close callbacks; `ac` is NULLed at cleanup, so an event already queued does nothing. */
#include <stdlib.h>
#include "gateway/aredis_uv.h"

typedef struct {
    uv_poll_t poll;
    uv_prepare_t flush;    /* started while hiredis has output to write */
    redisAsyncContext *ac; /* NULL once hiredis has cleaned up */
    int events;            /* UV_READABLE | UV_WRITABLE the poll runs with */
    int flushing;          /* inside our own redisAsyncHandleWrite call */
    int open_handles;      /* the struct is freed when this reaches 0 */
} sb_uvio_t;

static void sb_uvio_cb(uv_poll_t *h, int status, int events);

/* Runs the poll with mask events, touching libuv (and so epoll) only on a change. */
static void sb_uvio_set(sb_uvio_t *io, int events) {
    if (events == io->events) return;
    io->events = events;
    if (events) uv_poll_start(&io->poll, events, sb_uvio_cb);
    else uv_poll_stop(&io->poll);
}

static void sb_uvio_cb(uv_poll_t *h, int status, int events) {
    sb_uvio_t *io = h->data;
    if (!io->ac) return;
    if (status < 0) {
        /* POLLERR (e.g. the connection was reset): libuv has stopped the poll; a read makes
         * hiredis see the error and disconnect, calling every pending callback with NULL */
        io->events = 0;
        redisAsyncHandleRead(io->ac);
        return;
    }
    if (events & UV_READABLE) redisAsyncHandleRead(io->ac);
    if (io->ac && (events & UV_WRITABLE)) redisAsyncHandleWrite(io->ac);
}

/* Before the loop blocks: write what this loop turn queued. */
static void sb_uvio_flush_cb(uv_prepare_t *p) {
    sb_uvio_t *io = p->data;
    uv_prepare_stop(p);
    if (!io->ac) return;
    io->flushing = 1;
    redisAsyncHandleWrite(io->ac); /* may clean up the context: io stays valid until closed */
    io->flushing = 0;
}

static void sb_uvio_add_read(void *p) {
    sb_uvio_t *io = p;
    sb_uvio_set(io, io->events | UV_READABLE);
}

static void sb_uvio_del_read(void *p) {
    sb_uvio_t *io = p;
    sb_uvio_set(io, io->events & ~UV_READABLE);
}

/* Connected and not already writing: defer to the flush. Else (connecting, or our flush hit
 * EAGAIN) wait for the socket to become writable. */
static void sb_uvio_add_write(void *p) {
    sb_uvio_t *io = p;
    if (io->ac && (io->ac->c.flags & REDIS_CONNECTED) && !io->flushing)
        uv_prepare_start(&io->flush, sb_uvio_flush_cb);
    else
        sb_uvio_set(io, io->events | UV_WRITABLE);
}

static void sb_uvio_del_write(void *p) {
    sb_uvio_t *io = p;
    sb_uvio_set(io, io->events & ~UV_WRITABLE);
}

static void sb_uvio_closed(uv_handle_t *h) {
    sb_uvio_t *io = h->data;
    if (--io->open_handles == 0) free(io);
}

static void sb_uvio_cleanup(void *p) {
    sb_uvio_t *io = p;
    io->ac = NULL;
    uv_close((uv_handle_t *)&io->poll, sb_uvio_closed);
    uv_close((uv_handle_t *)&io->flush, sb_uvio_closed);
}

int sb_aredis_uv_attach(redisAsyncContext *ac, uv_loop_t *loop) {
    if (ac->ev.data) return REDIS_ERR;
    sb_uvio_t *io = calloc(1, sizeof *io);
    if (!io) return REDIS_ERR;
    if (uv_poll_init(loop, &io->poll, ac->c.fd) != 0) {
        free(io);
        return REDIS_ERR;
    }
    uv_prepare_init(loop, &io->flush);
    io->poll.data = io->flush.data = io;
    io->open_handles = 2;
    io->ac = ac;
    ac->ev.data = io;
    ac->ev.addRead = sb_uvio_add_read;
    ac->ev.delRead = sb_uvio_del_read;
    ac->ev.addWrite = sb_uvio_add_write;
    ac->ev.delWrite = sb_uvio_del_write;
    ac->ev.cleanup = sb_uvio_cleanup;
    return REDIS_OK;
}
