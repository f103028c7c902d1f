/* Blocking Redis client with reconnect and pipelines.
 *
 * I/O is ours, RESP is hiredis's: the connection is an sb_conn_t (conn.h: a socket, TLS on
 * top for rediss://) made blocking with the command timeout, commands are appended to an
 * output buffer and written in one go, and replies are parsed by a hiredis redisReader fed
 * with what we read. Plain TCP costs the same system calls as hiredis's redisContext did (one
 * write, then read until a reply is complete); TLS swaps read/write for SSL_read/SSL_write.
 *
 * With Sentinels the address is resolved (sb_redis_target) before every connection; with an
 * Upstash REST URL the commands go over HTTPS instead (rest.h), and with Redis Cluster seeds
 * they go through the cluster router (cluster.h), one connection per node: both take whole
 * batches ("via" a batch transport, at the end of this file).
 *
 * The connection is dropped as soon as an I/O or protocol error happens (the stream is then
 * out of step), so "connected" always means "the last command worked". sb_redis_ensure()
 * owns reconnecting: capped exponential backoff, one log line when the connection is lost and
 * one when it is back, however many attempts lie between.
 *
 * Commands as data (the RESP encoder, batches, script calls, reply classes) are resp.c. */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "switchboard/clock.h"
#include "switchboard/cluster.h"
#include "switchboard/conn.h"
#include "switchboard/error.h"
#include "switchboard/log.h"
#include "switchboard/redis.h"
#include "switchboard/sentinel.h"
#include "resp.h"
#include "rest.h"

#define SB_REDIS_CONNECT_TIMEOUT_MS 2000
#define SB_REDIS_BACKOFF_MIN_MS 100
#define SB_REDIS_BACKOFF_MAX_MS 5000
#define SB_REDIS_READ_CHUNK 16384

struct sb_redis {
    sb_conn_t *conn;        /* NULL while disconnected */
    redisReader *reader;    /* parses what conn delivers; made with conn, freed with it */
    char *obuf;             /* commands appended and not written yet: obuf[opos..olen) */
    size_t opos, olen, ocap;
    char errstr[256];       /* why the last I/O failed */
    sb_redis_addr_t addr;   /* owned copy */
    char component[32];
    int timeout_ms;         /* socket timeout for commands, 0 = none */
    int connect_timeout_ms; /* bound of a connect (TCP and TLS handshake) */
    int lost;               /* a loss was logged and no recovery yet */
    int backoff_ms;         /* wait before the next reconnect; grows while connections flap */
    int64_t connected_at;   /* monotonic ms of the last successful connect */
    size_t deferred;        /* replies of sb_redis_send_deferred() not read yet */
    unsigned script_epoch;  /* sb_redis_script_epoch() */
    char server[300];       /* with Sentinels: the master last connected to, "" before */
    sb_rest_t *rest;        /* Upstash REST transport instead of conn (rest.h), or NULL */
    sb_cluster_t *cluster;  /* Redis Cluster router instead of conn (cluster.h), or NULL */
    int cluster_up;         /* cluster: the slot map is loaded and the last batch worked */
    int rest_up;            /* REST: the last request worked */
    const atomic_uint *epoch; /* sb_redis_follow: bumped when the master moved, or NULL */
    unsigned epoch_seen;    /* its value when conn was made */
};

/* The batch transports' side of the calls below, REST or cluster (at the end of this file). */
static int sb_redis_rest_connect(sb_redis_t *r, char *err, size_t errlen);
static redisReply *sb_redis_via_vcmd(sb_redis_t *r, const char *fmt, va_list ap);
static redisReply *sb_redis_via_argv(sb_redis_t *r, int argc, const char **argv,
                                      const size_t *lens);
static int sb_redis_via_pipeline(sb_redis_t *r, const sb_batch_t *b, redisReply **replies);
static int sb_redis_cluster_connect(sb_redis_t *r, char *err, size_t errlen);
static redisReply *sb_redis_cluster_read(sb_redis_t *r, int timeout_ms, int *timed_out);

sb_redis_t *sb_redis_create(const sb_redis_addr_t *addr, const char *component) {
    sb_redis_t *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    if (sb_redis_addr_copy(&r->addr, addr) != SB_OK) {
        free(r);
        return NULL;
    }
    snprintf(r->component, sizeof r->component, "%s", component ? component : "redis");
    r->connect_timeout_ms = SB_REDIS_CONNECT_TIMEOUT_MS;
    if (addr->rest_url &&
        !(r->rest = sb_rest_create(addr->rest_url, addr->rest_token ? addr->rest_token : ""))) {
        sb_redis_free(r);
        return NULL;
    }
    if (addr->cluster && !(r->cluster = sb_cluster_create(addr, r->component))) {
        sb_redis_free(r);
        return NULL;
    }
    sb_redis_set_connect_timeout(r, 0);
    return r;
}

void sb_redis_free(sb_redis_t *r) {
    if (!r) return;
    sb_redis_disconnect(r);
    free(r->obuf);
    sb_rest_free(r->rest);
    sb_cluster_free(r->cluster);
    sb_redis_addr_free(&r->addr);
    free(r);
}

void sb_redis_disconnect(sb_redis_t *r) {
    sb_conn_free(r->conn);
    if (r->reader) redisReaderFree(r->reader);
    r->conn = NULL;
    r->reader = NULL;
    r->opos = r->olen = 0;
    r->deferred = 0;
    r->rest_up = 0;
    r->cluster_up = 0;
    if (r->cluster) sb_cluster_disconnect(r->cluster);
}

int sb_redis_connected(const sb_redis_t *r) {
    return r->conn != NULL || r->rest_up || r->cluster_up;
}

int sb_redis_is_tls(const sb_redis_t *r) {
    if (r->cluster) return r->cluster_up && r->addr.tls.enabled;
    return r->conn && sb_conn_is_tls(r->conn);
}

void sb_redis_set_timeout(sb_redis_t *r, int ms) {
    r->timeout_ms = ms;
    if (r->rest) sb_rest_set_timeout(r->rest, ms);
    if (r->conn) sb_conn_set_blocking(r->conn, ms);
    if (r->cluster) sb_cluster_set_timeouts(r->cluster, ms, r->connect_timeout_ms);
}

void sb_redis_set_connect_timeout(sb_redis_t *r, int ms) {
    r->connect_timeout_ms = ms > 0 ? ms : SB_REDIS_CONNECT_TIMEOUT_MS;
    if (r->cluster) sb_cluster_set_timeouts(r->cluster, r->timeout_ms, r->connect_timeout_ms);
}

void sb_redis_follow(sb_redis_t *r, const atomic_uint *epoch) {
    r->epoch = epoch;
    if (epoch) r->epoch_seen = atomic_load(epoch);
}

/* 1 when r has a connection still worth using: one made before the epoch moved (the master
 * moved, sb_redis_follow) is dropped here, so the command fails like a lost connection and
 * the caller's sb_redis_ensure() finds the master again. */
static int sb_redis_live(sb_redis_t *r) {
    if (r->conn && r->epoch && atomic_load(r->epoch) != r->epoch_seen) {
        sb_warn(r->component, "redis master '%s' moved away from %s (the Sentinels say): "
                "reconnecting", r->addr.sentinel_master ? r->addr.sentinel_master : "?",
                r->server);
        r->lost = 1;
        r->backoff_ms = 0;
        sb_redis_disconnect(r);
    }
    return r->conn != NULL;
}

int sb_redis_master_moved(sb_redis_t *r, char *now, size_t nowlen) {
    sb_redis_addr_t to;
    char err[256];
    if (!r->conn || !r->addr.sentinel_master || !sb_sentinel_enabled(&r->addr) || !r->server[0])
        return 0;
    if (sb_sentinel_resolve(&r->addr, &to, err, sizeof err) != SB_OK) return 0;
    sb_redis_addr_str(&to, now, nowlen);
    sb_redis_addr_free(&to);
    return strcmp(now, r->server) != 0;
}

/* ---- bytes in, bytes out ------------------------------------------------------------------ */

/* Makes room for len more bytes (and a NUL) in the output buffer. REDIS_OK or REDIS_ERR
 * (out of memory, errstr set). */
static int sb_redis_reserve(sb_redis_t *r, size_t len) {
    if (r->olen + len + 1 <= r->ocap) return REDIS_OK;
    size_t cap = r->ocap ? r->ocap : 4096;
    while (cap < r->olen + len + 1) cap *= 2;
    char *p = realloc(r->obuf, cap);
    if (!p) {
        snprintf(r->errstr, sizeof r->errstr, "out of memory");
        return REDIS_ERR;
    }
    r->obuf = p;
    r->ocap = cap;
    return REDIS_OK;
}

/* Appends len bytes to the output buffer. REDIS_OK or REDIS_ERR (out of memory). */
static int sb_redis_out(sb_redis_t *r, const char *buf, size_t len) {
    if (sb_redis_reserve(r, len) != REDIS_OK) return REDIS_ERR;
    memcpy(r->obuf + r->olen, buf, len);
    r->olen += len;
    return REDIS_OK;
}

/* The reason of a failed conn call: its own, or a timeout when it returned 0. */
static int sb_redis_io_failed(sb_redis_t *r, ssize_t n) {
    snprintf(r->errstr, sizeof r->errstr, "%s",
             n == 0 ? "timed out waiting for redis" : sb_conn_error(r->conn));
    return REDIS_ERR;
}

/* Writes the whole output buffer (blocking fd: a short write only when the kernel buffer is
 * full). REDIS_OK or REDIS_ERR with errstr. */
static int sb_redis_flush(sb_redis_t *r) {
    while (r->opos < r->olen) {
        int want;
        ssize_t n = sb_conn_write(r->conn, r->obuf + r->opos, r->olen - r->opos, &want);
        if (n <= 0) return sb_redis_io_failed(r, n);
        r->opos += (size_t)n;
    }
    r->opos = r->olen = 0;
    return REDIS_OK;
}

/* One read into the reader. REDIS_OK or REDIS_ERR with errstr. */
static int sb_redis_fill(sb_redis_t *r) {
    char buf[SB_REDIS_READ_CHUNK];
    int want;
    ssize_t n = sb_conn_read(r->conn, buf, sizeof buf, &want);
    if (n <= 0) return sb_redis_io_failed(r, n);
    redisReaderFeed(r->reader, buf, (size_t)n);
    return REDIS_OK;
}

/* A reply already parsed, if any (*rep NULL: none yet). REDIS_ERR on a protocol error. */
static int sb_redis_parsed(sb_redis_t *r, void **rep) {
    *rep = NULL;
    if (redisReaderGetReply(r->reader, rep) == REDIS_OK) return REDIS_OK;
    snprintf(r->errstr, sizeof r->errstr, "protocol error: %s", r->reader->errstr);
    return REDIS_ERR;
}

/* Writes what is queued, then reads until one reply is complete (hiredis's redisGetReply,
 * on our connection). REDIS_OK with *rep set, or REDIS_ERR with errstr. */
static int sb_redis_get_reply(sb_redis_t *r, void **rep) {
    if (sb_redis_flush(r) != REDIS_OK || sb_redis_parsed(r, rep) != REDIS_OK) return REDIS_ERR;
    while (!*rep)
        if (sb_redis_fill(r) != REDIS_OK || sb_redis_parsed(r, rep) != REDIS_OK)
            return REDIS_ERR;
    return REDIS_OK;
}

/* Formats and appends a printf-style command. */
static int sb_redis_appendv(sb_redis_t *r, const char *fmt, va_list ap) {
    char *cmd = NULL;
    int len = redisvFormatCommand(&cmd, fmt, ap);
    if (len < 0) {
        snprintf(r->errstr, sizeof r->errstr, "bad command format or out of memory");
        return REDIS_ERR;
    }
    int rc = sb_redis_out(r, cmd, (size_t)len);
    free(cmd);
    return rc;
}

/* One command on the fresh connection, nothing logged. The reply or NULL (errstr). */
static redisReply *sb_redis_setup_cmd(sb_redis_t *r, const char *fmt, ...) {
    va_list ap;
    void *rep = NULL;
    va_start(ap, fmt);
    int rc = sb_redis_appendv(r, fmt, ap);
    va_end(ap);
    if (rc != REDIS_OK || sb_redis_get_reply(r, &rep) != REDIS_OK) return NULL;
    return rep;
}

/* AUTH and SELECT on a fresh connection, with the credentials of the server reached (to); over TLS a PING when neither is needed, because a
 * TLS 1.3 server refuses a client certificate only after the handshake: the refusal is then a
 * connect error ("tlsv13 alert certificate required"), not a lost first command. */
static int sb_redis_handshake(sb_redis_t *r, const sb_redis_addr_t *to, char *err,
                              size_t errlen) {
    redisReply *rep = NULL;
    if (sb_conn_is_tls(r->conn) && !to->password && !to->db) {
        if (!(rep = sb_redis_setup_cmd(r, "PING")) || rep->type == REDIS_REPLY_ERROR) goto fail;
        freeReplyObject(rep);
    }
    if (to->password) {
        rep = to->user ? sb_redis_setup_cmd(r, "AUTH %s %s", to->user, to->password)
                           : sb_redis_setup_cmd(r, "AUTH %s", to->password);
        if (!rep || rep->type == REDIS_REPLY_ERROR) goto fail;
        freeReplyObject(rep);
    }
    if (to->db) {
        rep = sb_redis_setup_cmd(r, "SELECT %d", to->db);
        if (!rep || rep->type == REDIS_REPLY_ERROR) goto fail;
        freeReplyObject(rep);
    }
    return SB_OK;
fail:
    snprintf(err, errlen, "%s", rep ? rep->str : r->errstr);
    if (rep) freeReplyObject(rep);
    return SB_EREDIS;
}

/* The address to connect to now: a copy of r's, or the master found through the Sentinels
 * (sentinel.h), logging when it moved. Returns 0 (free *to), or an error with err. */
static int sb_redis_target(sb_redis_t *r, sb_redis_addr_t *to, char *err, size_t errlen) {
    if (!sb_sentinel_enabled(&r->addr)) return sb_redis_addr_copy(to, &r->addr);
    int rc = sb_sentinel_resolve(&r->addr, to, err, errlen);
    if (rc != SB_OK) return rc;
    char now[sizeof r->server];
    sb_redis_addr_str(to, now, sizeof now);
    if (r->server[0] && strcmp(r->server, now) != 0)
        sb_info(r->component, "redis master '%s' moved from %s to %s: following the failover",
                r->addr.sentinel_master ? r->addr.sentinel_master : "(sentinel)", r->server, now);
    snprintf(r->server, sizeof r->server, "%s", now);
    return SB_OK;
}

int sb_redis_connect(sb_redis_t *r, char *err, size_t errlen) {
    sb_redis_disconnect(r);
    if (r->rest) return sb_redis_rest_connect(r, err, errlen);
    if (r->cluster) return sb_redis_cluster_connect(r, err, errlen);
    sb_redis_addr_t to;
    int rc = sb_redis_target(r, &to, err, errlen); /* with Sentinels: the master, now */
    if (rc != SB_OK) return rc;
    r->conn = sb_conn_connect(&to, r->connect_timeout_ms, err, errlen);
    r->reader = r->conn ? redisReaderCreate() : NULL;
    if (!r->conn) {
        rc = SB_EREDIS;
    } else if (!r->reader) {
        snprintf(err, errlen, "out of memory");
        rc = SB_ENOMEM;
    } else if (sb_conn_set_blocking(r->conn, r->timeout_ms) != SB_OK) {
        snprintf(err, errlen, "%s", strerror(errno));
        rc = SB_EREDIS;
    } else {
        rc = sb_redis_handshake(r, &to, err, errlen);
    }
    if (rc == SB_OK) r->connected_at = sb_mono_ms(), r->script_epoch++;
    else sb_redis_disconnect(r);
    if (rc == SB_OK && r->epoch) r->epoch_seen = atomic_load(r->epoch);
    sb_redis_addr_free(&to);
    return rc;
}

/* Capped exponential backoff: 0 → 100 ms → 200 ms … → 5 s. */
static int sb_backoff_next(int ms) {
    if (ms == 0) return SB_REDIS_BACKOFF_MIN_MS;
    return ms * 2 > SB_REDIS_BACKOFF_MAX_MS ? SB_REDIS_BACKOFF_MAX_MS : ms * 2;
}

int sb_redis_ensure(sb_redis_t *r, const atomic_int *stop) {
    char err[256], where[300];
    while (!sb_redis_connected(r)) {
        if (r->backoff_ms && sb_sleep_ms(r->backoff_ms, stop) != SB_OK) return SB_ECANCELED;
        if (stop && atomic_load(stop)) return SB_ECANCELED;
        if (sb_redis_connect(r, err, sizeof err) == SB_OK) {
            if (r->lost)
                sb_info(r->component, "redis reconnected to %s",
                        sb_redis_addr_str(&r->addr, where, sizeof where));
            r->lost = 0;
            return SB_OK;
        }
        if (!r->lost)
            sb_warn(r->component, "redis unavailable at %s: %s; retrying with backoff",
                    sb_redis_addr_str(&r->addr, where, sizeof where), err);
        r->lost = 1;
        r->backoff_ms = sb_backoff_next(r->backoff_ms);
    }
    return SB_OK;
}

/* After a failed call: log the loss once and drop the context. */
static void sb_redis_broken(sb_redis_t *r) {
    if (!r->lost)
        sb_warn(r->component, "redis connection lost: %s",
                r->errstr[0] ? r->errstr : "unknown error");
    r->lost = 1;
    /* a connection that broke soon after it was made is flapping: back off before the next */
    if (sb_mono_ms() - r->connected_at < 1000)
        r->backoff_ms = sb_backoff_next(r->backoff_ms);
    else
        r->backoff_ms = 0;
    sb_redis_disconnect(r);
}

/* With Sentinels, a READONLY reply means the server was demoted: drop the connection so the
 * next ensure finds the master again (the caller still gets the reply). */
static void sb_redis_check_demoted(sb_redis_t *r, const redisReply *reply) {
    if (!r->conn || !sb_sentinel_enabled(&r->addr) || !sb_sentinel_readonly(reply)) return;
    sb_warn(r->component, "redis at %s is a replica now (READONLY): finding the master through "
            "the Sentinels", r->server);
    r->lost = 1;
    r->backoff_ms = 0;
    sb_redis_disconnect(r);
}

/* Reads and drops the replies of earlier deferred sends (whatever was appended since is
 * written first, so they share a write). A Redis error among them is logged. Returns REDIS_OK or
 * REDIS_ERR (I/O: the caller drops the connection). */
static int sb_redis_drain(sb_redis_t *r) {
    while (r->deferred > 0) {
        void *rep = NULL;
        if (sb_redis_get_reply(r, &rep) != REDIS_OK) return REDIS_ERR;
        r->deferred--;
        redisReply *x = rep;
        if (x->type == REDIS_REPLY_ERROR)
            sb_warn(r->component, "a deferred redis command failed: %s", x->str);
        if (sb_reply_is_noscript(x)) r->script_epoch++;
        int demoted = sb_sentinel_enabled(&r->addr) && sb_sentinel_readonly(x);
        freeReplyObject(x);
        if (demoted) {
            snprintf(r->errstr, sizeof r->errstr, "the server is a replica now (READONLY)");
            return REDIS_ERR;
        }
    }
    return REDIS_OK;
}

/* The reply of the command just appended, after those of deferred sends. */
static redisReply *sb_redis_reply(sb_redis_t *r) {
    void *rep = NULL;
    if (sb_redis_drain(r) != REDIS_OK || sb_redis_get_reply(r, &rep) != REDIS_OK) {
        sb_redis_broken(r);
        return NULL;
    }
    sb_redis_check_demoted(r, rep);
    return rep;
}

redisReply *sb_redis_cmd(sb_redis_t *r, const char *fmt, ...) {
    va_list ap;
    if (r->rest || r->cluster) {
        va_start(ap, fmt);
        redisReply *rep = sb_redis_via_vcmd(r, fmt, ap);
        va_end(ap);
        return rep;
    }
    if (!sb_redis_live(r)) return NULL;
    va_start(ap, fmt);
    int rc = sb_redis_appendv(r, fmt, ap);
    va_end(ap);
    if (rc != REDIS_OK) {
        sb_redis_broken(r);
        return NULL;
    }
    return sb_redis_reply(r);
}

/* Appends one argument-vector command, written by resp.c's encoder, to the output buffer. */
static int sb_redis_append_argv(sb_redis_t *r, int argc, const char **argv, const size_t *lens) {
    size_t total = sb__resp_argv_len(argc, argv, lens);
    if (total == 0) {
        snprintf(r->errstr, sizeof r->errstr, "bad command (no or NULL arguments)");
        return REDIS_ERR;
    }
    if (sb_redis_reserve(r, total) != REDIS_OK) return REDIS_ERR;
    sb__resp_argv(r->obuf + r->olen, total, argc, argv, lens); /* writes a NUL after it */
    r->olen += total;
    return REDIS_OK;
}

redisReply *sb_redis_cmdargv(sb_redis_t *r, int argc, const char **argv, const size_t *lens) {
    if (r->rest || r->cluster) return sb_redis_via_argv(r, argc, argv, lens);
    if (!sb_redis_live(r)) return NULL;
    if (sb_redis_append_argv(r, argc, argv, lens) != REDIS_OK) {
        sb_redis_broken(r);
        return NULL;
    }
    return sb_redis_reply(r);
}

redisReply *sb_redis_read(sb_redis_t *r) {
    if (r->cluster) return sb_redis_cluster_read(r, -1, NULL);
    if (!sb_redis_live(r)) return NULL;
    return sb_redis_reply(r);
}

/* 1 when bytes can be read without blocking: decrypted ones inside TLS, or the fd readable
 * within timeout_ms; 0 when none came; -1 on a poll error. */
static int sb_redis_readable(sb_redis_t *r, int timeout_ms) {
    if (sb_conn_pending(r->conn) > 0) return 1;
    struct pollfd p = {.fd = sb_conn_fd(r->conn), .events = POLLIN};
    int n = poll(&p, 1, timeout_ms);
    if (n < 0 && errno == EINTR) return 0;
    return n;
}

redisReply *sb_redis_read_wait(sb_redis_t *r, int timeout_ms, int *timed_out) {
    void *rep = NULL;
    *timed_out = 0;
    if (r->cluster) return sb_redis_cluster_read(r, timeout_ms, timed_out);
    if (!sb_redis_live(r)) return NULL;
    if (sb_redis_drain(r) != REDIS_OK || sb_redis_flush(r) != REDIS_OK ||
        sb_redis_parsed(r, &rep) != REDIS_OK)
        goto broken;
    if (rep) return rep; /* already buffered */
    int n = sb_redis_readable(r, timeout_ms);
    if (n == 0) {
        *timed_out = 1;
        return NULL;
    }
    if (n < 0) snprintf(r->errstr, sizeof r->errstr, "poll: %s", strerror(errno));
    if (n < 0 || sb_redis_fill(r) != REDIS_OK || sb_redis_parsed(r, &rep) != REDIS_OK)
        goto broken;
    if (!rep) *timed_out = 1; /* a partial reply: the rest comes with the next read */
    return rep;
broken:
    sb_redis_broken(r);
    return NULL;
}

/* ---- pipelines ------------------------------------------------------------------------- */

/* Appends every command of b to the output buffer (sent by the next write). */
static int sb_redis_append(sb_redis_t *r, const sb_batch_t *b) {
    for (size_t i = 0, len; i < sb_batch_count(b); i++) {
        const char *cmd = sb_batch_cmd(b, i, &len);
        if (sb_redis_out(r, cmd, len) != REDIS_OK) return REDIS_ERR;
    }
    return REDIS_OK;
}

int sb_redis_pipeline(sb_redis_t *r, const sb_batch_t *b, redisReply **replies) {
    size_t n = sb_batch_count(b);
    for (size_t i = 0; i < n; i++) replies[i] = NULL;
    if (r->rest || r->cluster) return sb_redis_via_pipeline(r, b, replies);
    if (!sb_redis_live(r)) return SB_EREDIS;
    if (sb_redis_append(r, b) != REDIS_OK) goto broken;
    if (sb_redis_drain(r) != REDIS_OK) goto broken;
    for (size_t i = 0; i < n; i++) {
        void *rep = NULL;
        if (sb_redis_get_reply(r, &rep) != REDIS_OK) goto broken;
        replies[i] = rep;
    }
    for (size_t i = 0; i < n; i++) sb_redis_check_demoted(r, replies[i]);
    return SB_OK;
broken:
    sb_replies_free(replies, n);
    sb_redis_broken(r);
    return SB_EREDIS;
}

unsigned sb_redis_script_epoch(const sb_redis_t *r) { return r->script_epoch; }

int sb_redis_send_deferred(sb_redis_t *r, const sb_batch_t *b) {
    size_t n = sb_batch_count(b);
    if (r->rest || r->cluster) { /* no one connection to leave replies on: run it now */
        redisReply *replies[n ? n : 1];
        int rc = sb_redis_via_pipeline(r, b, replies);
        for (size_t i = 0; rc == SB_OK && i < n; i++)
            if (replies[i]->type == REDIS_REPLY_ERROR) {
                sb_warn(r->component, "a deferred redis command failed: %s", replies[i]->str);
                if (sb_reply_is_noscript(replies[i])) r->script_epoch++;
            }
        if (rc == SB_OK) sb_replies_free(replies, n);
        return rc;
    }
    if (!sb_redis_live(r)) return SB_EREDIS;
    /* blocking socket: one write unless the kernel buffer is full */
    if (sb_redis_append(r, b) != REDIS_OK || sb_redis_flush(r) != REDIS_OK) goto broken;
    r->deferred += n;
    return SB_OK;
broken:
    sb_redis_broken(r);
    return SB_EREDIS;
}

/* ---- batch transports: Redis Cluster (cluster.h) and Upstash REST (rest.h) ---------------- */

/* The slot map loaded counts as connected. */
static int sb_redis_cluster_connect(sb_redis_t *r, char *err, size_t errlen) {
    int rc = sb_cluster_connect(r->cluster, err, errlen);
    r->cluster_up = rc == SB_OK;
    return rc;
}

/* A batch through the cluster router; a node lost counts as a lost connection (logged once;
 * sb_redis_ensure then loads the map again). */
static int sb_redis_cluster_pipeline(sb_redis_t *r, const sb_batch_t *b, redisReply **replies) {
    if (!r->cluster_up) return SB_EREDIS;
    int rc = sb_cluster_pipeline(r->cluster, b, replies);
    if (rc == SB_EREDIS) {
        if (!r->lost) sb_warn(r->component, "redis cluster connection lost");
        r->lost = 1;
        r->cluster_up = 0;
    }
    return rc;
}

/* Pub/sub messages: they arrive on the home node, where keyless SUBSCRIBE went. timeout_ms < 0:
 * wait for as long as the command timeout allows. */
static redisReply *sb_redis_cluster_read(sb_redis_t *r, int timeout_ms, int *timed_out) {
    sb_redis_t *home = r->cluster_up ? sb_cluster_home(r->cluster) : NULL;
    redisReply *rep = !home ? NULL
                      : timeout_ms < 0 ? sb_redis_read(home)
                                       : sb_redis_read_wait(home, timeout_ms, timed_out);
    if (!rep && (!timed_out || !*timed_out)) {
        r->lost = 1;
        r->cluster_up = 0;
    }
    return rep;
}

/* Every command goes through sb_rest_run (or the cluster router) as a batch; a failed request
 * counts as a lost connection (logged once, sb_redis_ensure "reconnects" with a PING). */
static int sb_redis_via_pipeline(sb_redis_t *r, const sb_batch_t *b, redisReply **replies) {
    char err[300];
    if (r->cluster) return sb_redis_cluster_pipeline(r, b, replies);
    if (!r->rest_up) return SB_EREDIS;
    int rc = sb_rest_run(r->rest, b, replies, err, sizeof err);
    if (rc == SB_EREDIS) {
        if (!r->lost) sb_warn(r->component, "redis connection lost: %s", err);
        r->lost = 1;
        r->rest_up = 0;
    } else if (rc != SB_OK) {
        sb_warn(r->component, "%s", err);
    }
    return rc;
}

/* Runs the one command of b (freed here) and returns its reply, or NULL. */
static redisReply *sb_redis_via_one(sb_redis_t *r, sb_batch_t *b, int rc) {
    redisReply *rep = NULL;
    if (rc == SB_OK && sb_redis_via_pipeline(r, b, &rep) != SB_OK) rep = NULL;
    sb_batch_free(b);
    return rep;
}

static redisReply *sb_redis_via_vcmd(sb_redis_t *r, const char *fmt, va_list ap) {
    sb_batch_t *b = sb_batch_create();
    return sb_redis_via_one(r, b, b ? sb__batch_vadd(b, fmt, ap) : SB_ENOMEM);
}

static redisReply *sb_redis_via_argv(sb_redis_t *r, int argc, const char **argv,
                                      const size_t *lens) {
    sb_batch_t *b = sb_batch_create();
    return sb_redis_via_one(r, b, b ? sb_batch_addargv(b, argc, argv, lens) : SB_ENOMEM);
}

/* "Connecting" is a PING that must come back: URL, token and service all work. */
static int sb_redis_rest_connect(sb_redis_t *r, char *err, size_t errlen) {
    sb_batch_t *b = sb_batch_create();
    redisReply *rep = NULL;
    int rc = b ? sb_batch_add(b, "PING") : SB_ENOMEM;
    if (rc == SB_OK) rc = sb_rest_run(r->rest, b, &rep, err, errlen);
    sb_batch_free(b);
    if (rc == SB_OK && rep->type == REDIS_REPLY_ERROR) {
        snprintf(err, errlen, "%s", rep->str);
        rc = SB_EREDIS;
    }
    if (rep) freeReplyObject(rep);
    if (rc == SB_OK) r->rest_up = 1;
    return rc == SB_OK ? SB_OK : SB_EREDIS;
}
