/* The agent's Prometheus listener (see metrics_http.h): poll() on the listening socket and a
 * wake-up pipe; each accepted connection is read up to the end of its headers, answered and
 * closed. Stopping writes to the pipe and joins the thread. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include "agent/metrics_http.h"
#include "switchboard/log.h"
#include "switchboard/version.h"

#define SB_AM_REQ_MAX 8192
#define SB_AM_IO_TIMEOUT_S 2

struct sb_agent_metrics {
    sb_agent_t *agent;
    int fd;          /* listening socket */
    int wake[2];     /* pipe: a byte on wake[1] stops the thread */
    pthread_t thread;
};

void sb_agent_metrics_render(const sb_agent_stats_t *s, sb_prom_t *p) {
    sb_prom_label_t done[1] = {{"status", "done"}}, failed[1] = {{"status", "failed"}};
    sb_prom_family(p, "agent_jobs_processed_total", "counter",
                   "Jobs this agent finished, by outcome.");
    sb_prom_sample(p, "agent_jobs_processed_total", done, 1, (double)s->done);
    sb_prom_sample(p, "agent_jobs_processed_total", failed, 1, (double)s->failed);
    sb_prom_family(p, "agent_job_duration_seconds", "histogram",
                   "Handler run time of finished jobs.");
    sb_prom_histogram(p, "agent_job_duration_seconds", NULL, 0, sb_agent_buckets,
                      s->duration_bucket, SB_AGENT_NBUCKETS, s->duration_sum, s->duration_count);
    static const struct {
        const char *name, *help;
        size_t off;
    } counters[] = {
        {"agent_job_retries_total", "Attempts that failed and were retried.",
         offsetof(sb_agent_stats_t, retries)},
        {"agent_jobs_recovered_total", "Jobs of dead agents returned to the queue.",
         offsetof(sb_agent_stats_t, recovered)},
        {"agent_jobs_requeued_total", "Jobs put back unfinished at shutdown.",
         offsetof(sb_agent_stats_t, requeued)},
        {"agent_bad_records_total", "Job ids whose record was missing or unreadable.",
         offsetof(sb_agent_stats_t, bad_records)},
        {"agent_redis_refusals_total",
         "Commands Redis refused for now (LOADING, BUSY...) and that were sent again.",
         offsetof(sb_agent_stats_t, refused)},
    };
    for (size_t i = 0; i < sizeof counters / sizeof counters[0]; i++) {
        sb_prom_family(p, counters[i].name, "counter", counters[i].help);
        sb_prom_sample(p, counters[i].name, NULL, 0,
                       (double)*(const unsigned long long *)((const char *)s + counters[i].off));
    }
    sb_prom_family(p, "agent_jobs_inflight", "gauge", "Jobs running now.");
    sb_prom_sample(p, "agent_jobs_inflight", NULL, 0, s->inflight);
}

static void sb_am_write_all(int fd, const char *buf, size_t len) {
    while (len) {
        ssize_t n = write(fd, buf, len);
        if (n <= 0) return;
        buf += n;
        len -= (size_t)n;
    }
}

static void sb_am_respond(int fd, int status, const char *ctype, const char *body, size_t len) {
    char head[256];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %zu\r\n"
                     "connection: close\r\n\r\n",
                     status, status == 200 ? "OK" : status == 404 ? "Not Found" : "Bad Request",
                     ctype, len);
    sb_am_write_all(fd, head, (size_t)n);
    sb_am_write_all(fd, body, len);
}

/* Reads one request's head (up to SB_AM_REQ_MAX) and answers it. */
static void sb_am_serve(sb_agent_metrics_t *m, int fd) {
    char req[SB_AM_REQ_MAX + 1];
    size_t got = 0;
    struct timeval tv = {SB_AM_IO_TIMEOUT_S, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    while (got < SB_AM_REQ_MAX) {
        ssize_t n = read(fd, req + got, SB_AM_REQ_MAX - got);
        if (n <= 0) break;
        got += (size_t)n;
        req[got] = '\0';
        if (strstr(req, "\r\n\r\n")) break;
    }
    req[got] = '\0';
    if (!strncmp(req, "GET /metrics ", 13) || !strncmp(req, "GET /metrics?", 13)) {
        sb_agent_stats_t st;
        sb_prom_t p;
        size_t len = 0;
        sb_agent_stats(m->agent, &st);
        sb_prom_init(&p);
        sb_agent_metrics_render(&st, &p);
        sb_version_prom(&p);
        const char *text = sb_prom_text(&p, &len);
        if (text) sb_am_respond(fd, 200, SB_PROM_CONTENT_TYPE, text, len);
        sb_prom_close(&p);
    } else if (!strncmp(req, "GET /healthz ", 13)) {
        sb_am_respond(fd, 200, "application/json", "{\"status\":\"ok\"}", 15);
    } else {
        static const char nf[] = "{\"success\":false,\"error\":\"not_found\"}";
        sb_am_respond(fd, got ? 404 : 400, "application/json", nf, sizeof nf - 1);
    }
}

static void *sb_am_main(void *arg) {
    sb_agent_metrics_t *m = arg;
    for (;;) {
        struct pollfd pfd[2] = {{m->fd, POLLIN, 0}, {m->wake[0], POLLIN, 0}};
        if (poll(pfd, 2, -1) < 0 && errno != EINTR) break;
        if (pfd[1].revents) break;
        if (!(pfd[0].revents & POLLIN)) continue;
        int c = accept(m->fd, NULL, NULL);
        if (c < 0) continue;
        sb_am_serve(m, c);
        close(c);
    }
    return NULL;
}

static int sb_am_listen(const char *bind_addr, int port, char *err, size_t errlen) {
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

sb_agent_metrics_t *sb_agent_metrics_start(sb_agent_t *a, const char *bind_addr, int port,
                                           char *err, size_t errlen) {
    sb_agent_metrics_t *m = calloc(1, sizeof *m);
    if (!m) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    m->agent = a;
    m->fd = sb_am_listen(bind_addr, port, err, errlen);
    if (m->fd < 0) {
        free(m);
        return NULL;
    }
    int piped = pipe(m->wake) == 0;
    if (!piped || pthread_create(&m->thread, NULL, sb_am_main, m) != 0) {
        snprintf(err, errlen, "cannot start the metrics thread");
        if (piped) close(m->wake[0]), close(m->wake[1]);
        close(m->fd);
        free(m);
        return NULL;
    }
    sb_info("agent", "metrics on http://%s:%d/metrics", bind_addr, port);
    return m;
}

void sb_agent_metrics_stop(sb_agent_metrics_t *m) {
    if (!m) return;
    sb_am_write_all(m->wake[1], "x", 1);
    pthread_join(m->thread, NULL);
    close(m->fd);
    close(m->wake[0]);
    close(m->wake[1]);
    free(m);
}
