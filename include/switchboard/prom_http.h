/* A tiny Prometheus listener for processes without an HTTP server of their own (the agent,
 * `switchboard events consume`, programs built on the library): one thread answers GET
 * /metrics with what a render callback writes, followed by the process families of
 * prom_runtime.h, and GET /healthz with 200.
 *
 * One thread, one connection at a time (a scraper's load), each with a 2 s I/O deadline and a
 * request cap of 8 KiB, so a stuck or hostile client cannot hold it. The callback runs on that
 * thread: what it reads must be guarded against the threads that write it. */
#ifndef SB_PROM_HTTP_H
#define SB_PROM_HTTP_H

#include <stddef.h>
#include "switchboard/prom.h"

typedef void (*sb_prom_render_cb)(sb_prom_t *p, void *ctx);
typedef struct sb_prom_http sb_prom_http_t;

/* Listens on bind:port (IPv4; NULL or "" = 0.0.0.0; port 0 takes a free one) and starts the
 * thread. Logs "<component>: metrics on http://bind:port/metrics" at info. Returns NULL with a
 * reason in err. */
sb_prom_http_t *sb_prom_http_start(const char *bind, int port, const char *component,
                                   sb_prom_render_cb render, void *ctx, char *err,
                                   size_t errlen);
/* The port listened on (the one taken when 0 was asked). */
int sb_prom_http_port(const sb_prom_http_t *h);
/* Stops the thread, closes the socket and frees h. NULL is fine. */
void sb_prom_http_stop(sb_prom_http_t *h);

#endif
