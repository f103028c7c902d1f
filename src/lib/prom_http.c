/* The Prometheus listener (see include/switchboard/prom_http.h): poll() on the listening
 * socket and a wake-up pipe; each accepted connection is read up to the end of its headers,
 * answered and closed. Stopping writes to the pipe and joins the thread. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include "switchboard/log.h"
#include "switchboard/prom_http.h"
#include "switchboard/prom_runtime.h"

#define SB_PH_REQ_MAX 8192
#define SB_PH_IO_TIMEOUT_S 2

struct sb_prom_http {
    sb_prom_render_cb render;
    void *ctx;
    int fd;          /* listening socket */
    int port;
    int wake[2];     /* pipe: a byte on wake[1] stops the thread */
    pthread_t thread;
};

static void sb_ph_write_all(int fd, const char *buf, size_t len) {
    while (len) {
        ssize_t n = write(fd, buf, len);
        if (n <= 0) return;
        buf += n;
        len -= (size_t)n;
    }
}

static void sb_ph_respond(int fd, int status, const char *ctype, const char *body, size_t len) {
    char head[256];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %zu\r\n"
                     "connection: close\r\n\r\n",
                     status, status == 200 ? "OK" : status == 404 ? "Not Found" : "Bad Request",
                     ctype, len);
    sb_ph_write_all(fd, head, (size_t)n);
    sb_ph_write_all(fd, body, len);
}

/* Reads one request's head (up to SB_PH_REQ_MAX) and answers it. */
static void sb_ph_serve(sb_prom_http_t *m, int fd) {
    char req[SB_PH_REQ_MAX + 1];
    size_t got = 0;
    struct timeval tv = {SB_PH_IO_TIMEOUT_S, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    while (got < SB_PH_REQ_MAX) {
        ssize_t n = read(fd, req + got, SB_PH_REQ_MAX - got);
        if (n <= 0) break;
        got += (size_t)n;
        req[got] = '\0';
        if (strstr(req, "\r\n\r\n")) break;
    }
    req[got] = '\0';
    if (!strncmp(req, "GET /metrics ", 13) || !strncmp(req, "GET /metrics?", 13)) {
        sb_prom_t p;
        size_t len = 0;
        sb_prom_init(&p);
        m->render(&p, m->ctx);
        sb_prom_runtime(&p);
        const char *text = sb_prom_text(&p, &len);
        if (text) sb_ph_respond(fd, 200, SB_PROM_CONTENT_TYPE, text, len);
        sb_prom_close(&p);
    } else if (!strncmp(req, "GET /healthz ", 13)) {
        sb_ph_respond(fd, 200, "application/json", "{\"status\":\"ok\"}", 15);
    } else {
        static const char nf[] = "{\"success\":false,\"error\":\"not_found\"}";
        sb_ph_respond(fd, got ? 404 : 400, "application/json", nf, sizeof nf - 1);
    }
}

static void *sb_ph_main(void *arg) {
    sb_prom_http_t *m = arg;
    for (;;) {
        struct pollfd pfd[2] = {{m->fd, POLLIN, 0}, {m->wake[0], POLLIN, 0}};
        if (poll(pfd, 2, -1) < 0 && errno != EINTR) break;
        if (pfd[1].revents) break;
        if (!(pfd[0].revents & POLLIN)) continue;
        int c = accept(m->fd, NULL, NULL);
        if (c < 0) continue;
        sb_ph_serve(m, c);
        close(c);
    }
    return NULL;
}

static int sb_ph_listen(const char *bind_addr, int port, char *err, size_t errlen) {
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, bind_addr && *bind_addr ? bind_addr : "0.0.0.0", &sa.sin_addr) != 1) {
        snprintf(err, errlen, "bad setting BIND='%s': expected an IPv4 address", bind_addr);
        return -1;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 16) != 0) {
        snprintf(err, errlen, "cannot listen on %s:%d for metrics: %s", bind_addr, port,
                 strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    return fd;
}

sb_prom_http_t *sb_prom_http_start(const char *bind_addr, int port, const char *component,
                                   sb_prom_render_cb render, void *ctx, char *err,
                                   size_t errlen) {
    sb_prom_http_t *m = calloc(1, sizeof *m);
    if (!m) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    m->render = render;
    m->ctx = ctx;
    if (!bind_addr || !*bind_addr) bind_addr = "0.0.0.0";
    m->fd = sb_ph_listen(bind_addr, port, err, errlen);
    if (m->fd < 0) {
        free(m);
        return NULL;
    }
    struct sockaddr_in sa;
    socklen_t salen = sizeof sa;
    m->port = getsockname(m->fd, (struct sockaddr *)&sa, &salen) == 0 ? ntohs(sa.sin_port) : port;
    int piped = pipe2(m->wake, O_CLOEXEC) == 0;
    if (!piped || pthread_create(&m->thread, NULL, sb_ph_main, m) != 0) {
        snprintf(err, errlen, "cannot start the metrics thread");
        if (piped) close(m->wake[0]), close(m->wake[1]);
        close(m->fd);
        free(m);
        return NULL;
    }
    sb_info(component, "metrics on http://%s:%d/metrics", bind_addr, m->port);
    return m;
}

int sb_prom_http_port(const sb_prom_http_t *h) { return h->port; }

void sb_prom_http_stop(sb_prom_http_t *m) {
    if (!m) return;
    sb_ph_write_all(m->wake[1], "x", 1);
    pthread_join(m->thread, NULL);
    close(m->fd);
    close(m->wake[0]);
    close(m->wake[1]);
    free(m);
}
