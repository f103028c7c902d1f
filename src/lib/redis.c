/* Blocking Redis client with reconnect, pipelines and EVALSHA-with-fallback scripts.
 *
 * I/O is ours, RESP is hiredis's: the connection is an sb_conn_t (conn.h: a socket, TLS on
 * top for rediss://) made blocking with the command timeout, commands are appended to an
 * output buffer and written in one go, and replies are parsed by a hiredis redisReader fed
 * with what we read. Plain TCP costs the same system calls as hiredis's redisContext did (one
 * write, then read until a reply is complete); TLS swaps read/write for SSL_read/SSL_write.
 *
 * With Sentinels the address is resolved (sb_redis_target) before every connection; with an
 * Upstash REST URL the commands go over HTTPS instead (rest.h, at the end of this file).
 *
 * The connection is dropped as soon as an I/O or protocol error happens (the stream is then
 * out of step), so "connected" always means "the last command worked". sb_redis_ensure()
 * owns reconnecting: capped exponential backoff, one log line when the connection is lost and
 * one when it is back, however many attempts lie between.
 *
 * Batches hold commands already written as RESP. Argument-vector commands (the hot path: the
 * gateway builds one EVALSHA per HTTP request) are written by the small encoder below, which
 * sizes the command exactly, allocates once and writes lengths without printf, giving the same
 * bytes as hiredis's redisFormatCommandArgv; printf-style commands (sb_batch_add, cold paths)
 * still go through hiredis's formatter. */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/sha.h>
#include "switchboard/clock.h"
#include "switchboard/conn.h"
#include "switchboard/error.h"
#include "switchboard/fmt.h"
#include "switchboard/log.h"
#include "switchboard/redis.h"
#include "switchboard/sentinel.h"
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
    int lost;               /* a loss was logged and no recovery yet */
    int backoff_ms;         /* wait before the next reconnect; grows while connections flap */
    int64_t connected_at;   /* monotonic ms of the last successful connect */
    size_t deferred;        /* replies of sb_redis_send_deferred() not read yet */
    char server[300];       /* with Sentinels: the master last connected to, "" before */
    sb_rest_t *rest;        /* Upstash REST transport instead of conn (rest.h), or NULL */
    int rest_up;            /* REST: the last request worked */
};

/* The Upstash REST transport's side of the calls below (at the end of this file). */
static int sb_redis_rest_connect(sb_redis_t *r, char *err, size_t errlen);
static redisReply *sb_redis_rest_vcmd(sb_redis_t *r, const char *fmt, va_list ap);
static redisReply *sb_redis_rest_argv(sb_redis_t *r, int argc, const char **argv,
                                      const size_t *lens);
static int sb_redis_rest_pipeline(sb_redis_t *r, const sb_batch_t *b, redisReply **replies);

sb_redis_t *sb_redis_create(const sb_redis_addr_t *addr, const char *component) {
    sb_redis_t *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    if (sb_redis_addr_copy(&r->addr, addr) != SB_OK) {
        free(r);
        return NULL;
    }
    snprintf(r->component, sizeof r->component, "%s", component ? component : "redis");
    if (addr->rest_url &&
        !(r->rest = sb_rest_create(addr->rest_url, addr->rest_token ? addr->rest_token : ""))) {
        sb_redis_free(r);
        return NULL;
    }
    return r;
}

void sb_redis_free(sb_redis_t *r) {
    if (!r) return;
    sb_redis_disconnect(r);
    free(r->obuf);
    sb_rest_free(r->rest);
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
}

int sb_redis_connected(const sb_redis_t *r) { return r->conn != NULL || r->rest_up; }

int sb_redis_is_tls(const sb_redis_t *r) { return r->conn && sb_conn_is_tls(r->conn); }

void sb_redis_set_timeout(sb_redis_t *r, int ms) {
    r->timeout_ms = ms;
    if (r->rest) sb_rest_set_timeout(r->rest, ms);
    if (r->conn) sb_conn_set_blocking(r->conn, ms);
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
    sb_redis_addr_t to;
    int rc = sb_redis_target(r, &to, err, errlen); /* with Sentinels: the master, now */
    if (rc != SB_OK) return rc;
    r->conn = sb_conn_connect(&to, SB_REDIS_CONNECT_TIMEOUT_MS, err, errlen);
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
    if (rc == SB_OK) r->connected_at = sb_mono_ms();
    else sb_redis_disconnect(r);
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
    if (r->rest) {
        va_start(ap, fmt);
        redisReply *rep = sb_redis_rest_vcmd(r, fmt, ap);
        va_end(ap);
        return rep;
    }
    if (!r->conn) return NULL;
    va_start(ap, fmt);
    int rc = sb_redis_appendv(r, fmt, ap);
    va_end(ap);
    if (rc != REDIS_OK) {
        sb_redis_broken(r);
        return NULL;
    }
    return sb_redis_reply(r);
}

/* Appends argv as one command (our encoder, below). */
static int sb_redis_append_argv(sb_redis_t *r, int argc, const char **argv, const size_t *lens);

redisReply *sb_redis_cmdargv(sb_redis_t *r, int argc, const char **argv, const size_t *lens) {
    if (r->rest) return sb_redis_rest_argv(r, argc, argv, lens);
    if (!r->conn) return NULL;
    if (sb_redis_append_argv(r, argc, argv, lens) != REDIS_OK) {
        sb_redis_broken(r);
        return NULL;
    }
    return sb_redis_reply(r);
}

redisReply *sb_redis_read(sb_redis_t *r) {
    if (!r->conn) return NULL;
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
    if (!r->conn) return NULL;
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

/* ---- RESP encoding of argument vectors ------------------------------------------------- */
/* A command is "*<argc>\r\n" then "$<len>\r\n<bytes>\r\n" per argument, byte for byte what
 * redisFormatCommandArgv writes (NUL after the end included). One pass sizes it exactly, the
 * second writes it into a single allocation. */

/* Longest command (and argument) we write: a sum of two such sizes plus a header cannot wrap. */
#define SB_RESP_MAX (SIZE_MAX / 4)

/* Decimal digits of v (1 for 0). */
static size_t sb_resp_digits(size_t v) {
    size_t n = 1;
    while (v >= 10) {
        v /= 10;
        n++;
    }
    return n;
}

/* Bytes of the header "<type><n>\r\n". */
static size_t sb_resp_header_len(size_t n) { return 1 + sb_resp_digits(n) + 2; }

/* Writes the header "<type><n>\r\n" at p (n <= SB_RESP_MAX fits a long long); returns the byte
 * after it. */
static char *sb_resp_header(char *p, char type, size_t n) {
    *p++ = type;
    p += sb_fmt_ll(p, (long long)n);
    *p++ = '\r';
    *p++ = '\n';
    return p;
}

static size_t sb_resp_arglen(const char **argv, const size_t *lens, int i) {
    return lens ? lens[i] : strlen(argv[i]);
}

/* Exact size of the command, or 0 when it cannot be written (argc <= 0, a NULL argument, over
 * SB_RESP_MAX). */
static size_t sb_resp_argv_len(int argc, const char **argv, const size_t *lens) {
    if (argc <= 0 || !argv) return 0;
    size_t total = sb_resp_header_len((size_t)argc);
    for (int i = 0; i < argc; i++) {
        if (!argv[i]) return 0;
        size_t len = sb_resp_arglen(argv, lens, i);
        if (len > SB_RESP_MAX) return 0;
        total += sb_resp_header_len(len) + len + 2; /* total and len <= SB_RESP_MAX: no wrap */
        if (total > SB_RESP_MAX) return 0;
    }
    return total;
}

/* Writes the command (total bytes, from sb_resp_argv_len) and a NUL into buf. */
static void sb_resp_argv(char *buf, size_t total, int argc, const char **argv,
                         const size_t *lens) {
    char *p = sb_resp_header(buf, '*', (size_t)argc);
    for (int i = 0; i < argc; i++) {
        size_t len = sb_resp_arglen(argv, lens, i);
        p = sb_resp_header(p, '$', len);
        memcpy(p, argv[i], len);
        p += len;
        *p++ = '\r';
        *p++ = '\n';
    }
    buf[total] = '\0';
}

static int sb_redis_append_argv(sb_redis_t *r, int argc, const char **argv, const size_t *lens) {
    size_t total = sb_resp_argv_len(argc, argv, lens);
    if (total == 0) {
        snprintf(r->errstr, sizeof r->errstr, "bad command (no or NULL arguments)");
        return REDIS_ERR;
    }
    if (sb_redis_reserve(r, total) != REDIS_OK) return REDIS_ERR;
    sb_resp_argv(r->obuf + r->olen, total, argc, argv, lens); /* writes a NUL after it */
    r->olen += total;
    return REDIS_OK;
}

/* ---- pipelines ------------------------------------------------------------------------- */

typedef struct {
    char *buf;  /* RESP bytes plus a NUL, malloc'd by hiredis's formatter or sb_resp_argv() */
    size_t len; /* without the NUL */
} sb_fcmd_t;

struct sb_batch {
    sb_fcmd_t *cmds;
    size_t n, cap;
};

sb_batch_t *sb_batch_create(void) { return calloc(1, sizeof(sb_batch_t)); }

void sb_batch_reset(sb_batch_t *b) {
    for (size_t i = 0; i < b->n; i++) free(b->cmds[i].buf);
    b->n = 0;
}

void sb_batch_free(sb_batch_t *b) {
    if (!b) return;
    sb_batch_reset(b);
    free(b->cmds);
    free(b);
}

/* Appends buf (malloc'd, len bytes of RESP). b owns it from here on: sb_batch_reset() frees it,
 * and so does this function when it fails. Returns 0 or SB_ENOMEM. */
static int sb_batch_take(sb_batch_t *b, char *buf, size_t len) {
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 8;
        sb_fcmd_t *c = realloc(b->cmds, cap * sizeof *c);
        if (!c) {
            free(buf);
            return SB_ENOMEM;
        }
        b->cmds = c;
        b->cap = cap;
    }
    b->cmds[b->n].buf = buf;
    b->cmds[b->n].len = len;
    b->n++;
    return SB_OK;
}

/* Appends what a hiredis formatter returned: its length, -1 for a bad format (hiredis 0.14 also
 * returns -1 when malloc fails; we cannot tell the two apart). */
static int sb_batch_push(sb_batch_t *b, char *buf, long long len) {
    if (len <= 0 || !buf) return len == -1 ? SB_EINVAL : SB_ENOMEM;
    return sb_batch_take(b, buf, (size_t)len);
}

static int sb_batch_vadd(sb_batch_t *b, const char *fmt, va_list ap) {
    char *buf = NULL;
    int len = redisvFormatCommand(&buf, fmt, ap);
    return sb_batch_push(b, buf, len);
}

int sb_batch_add(sb_batch_t *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = sb_batch_vadd(b, fmt, ap);
    va_end(ap);
    return rc;
}

int sb_batch_addargv(sb_batch_t *b, int argc, const char **argv, const size_t *lens) {
    size_t total = sb_resp_argv_len(argc, argv, lens);
    if (total == 0) return SB_EINVAL;
    char *buf = malloc(total + 1);
    if (!buf) return SB_ENOMEM;
    sb_resp_argv(buf, total, argc, argv, lens);
    return sb_batch_take(b, buf, total);
}

size_t sb_batch_count(const sb_batch_t *b) { return b->n; }

const char *sb_batch_cmd(const sb_batch_t *b, size_t i, size_t *len) {
    *len = b->cmds[i].len;
    return b->cmds[i].buf;
}

void sb_replies_free(redisReply **replies, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (replies[i]) freeReplyObject(replies[i]);
        replies[i] = NULL;
    }
}

/* Appends every command of b to the output buffer (sent by the next write). */
static int sb_redis_append(sb_redis_t *r, const sb_batch_t *b) {
    for (size_t i = 0; i < b->n; i++)
        if (sb_redis_out(r, b->cmds[i].buf, b->cmds[i].len) != REDIS_OK) return REDIS_ERR;
    return REDIS_OK;
}

int sb_redis_pipeline(sb_redis_t *r, const sb_batch_t *b, redisReply **replies) {
    for (size_t i = 0; i < b->n; i++) replies[i] = NULL;
    if (r->rest) return sb_redis_rest_pipeline(r, b, replies);
    if (!r->conn) return SB_EREDIS;
    if (sb_redis_append(r, b) != REDIS_OK) goto broken;
    if (sb_redis_drain(r) != REDIS_OK) goto broken;
    for (size_t i = 0; i < b->n; i++) {
        void *rep = NULL;
        if (sb_redis_get_reply(r, &rep) != REDIS_OK) goto broken;
        replies[i] = rep;
    }
    for (size_t i = 0; i < b->n; i++) sb_redis_check_demoted(r, replies[i]);
    return SB_OK;
broken:
    sb_replies_free(replies, b->n);
    sb_redis_broken(r);
    return SB_EREDIS;
}

int sb_redis_send_deferred(sb_redis_t *r, const sb_batch_t *b) {
    if (r->rest) { /* no connection to leave replies on: run it now, errors logged */
        redisReply *replies[b->n ? b->n : 1];
        int rc = sb_redis_rest_pipeline(r, b, replies);
        for (size_t i = 0; rc == SB_OK && i < b->n; i++)
            if (replies[i]->type == REDIS_REPLY_ERROR)
                sb_warn(r->component, "a deferred redis command failed: %s", replies[i]->str);
        if (rc == SB_OK) sb_replies_free(replies, b->n);
        return rc;
    }
    if (!r->conn) return SB_EREDIS;
    /* blocking socket: one write unless the kernel buffer is full */
    if (sb_redis_append(r, b) != REDIS_OK || sb_redis_flush(r) != REDIS_OK) goto broken;
    r->deferred += b->n;
    return SB_OK;
broken:
    sb_redis_broken(r);
    return SB_EREDIS;
}

/* ---- scripts --------------------------------------------------------------------------- */

void sb_script_init(sb_script_t *s, const char *source) {
    unsigned char md[SHA_DIGEST_LENGTH];
    s->source = source;
    SHA1((const unsigned char *)source, strlen(source), md);
    for (int i = 0; i < SHA_DIGEST_LENGTH; i++) snprintf(s->sha1 + 2 * i, 3, "%02x", md[i]);
}

enum { SB_SCRIPT_MAXARGS = 64 };

/* EVALSHA/EVAL argv for a script call into av/al (SB_SCRIPT_MAXARGS slots; nk holds the key
 * count text). Returns the argument count, or -1 when there are too many. */
static int sb_script_argv(const sb_script_t *s, sb_script_mode_t mode, int nkeys, int argc,
                          const char **argv, const size_t *lens, const char **av, size_t *al,
                          char nk[16]) {
    if (argc < 0 || argc + 3 > SB_SCRIPT_MAXARGS) return -1;
    snprintf(nk, 16, "%d", nkeys);
    av[0] = mode == SB_SCRIPT_EVAL ? "EVAL" : "EVALSHA";
    al[0] = strlen(av[0]);
    av[1] = mode == SB_SCRIPT_EVAL ? s->source : s->sha1;
    al[1] = strlen(av[1]);
    av[2] = nk;
    al[2] = strlen(nk);
    for (int i = 0; i < argc; i++) {
        av[3 + i] = argv[i];
        al[3 + i] = lens ? lens[i] : strlen(argv[i]);
    }
    return argc + 3;
}

int sb_reply_is_noscript(const redisReply *reply) {
    return reply && reply->type == REDIS_REPLY_ERROR && reply->str &&
           strncmp(reply->str, "NOSCRIPT", 8) == 0;
}

int sb_reply_is_transient(const redisReply *reply) {
    static const char *const codes[] = {"LOADING ", "BUSY ", "TRYAGAIN ", "MASTERDOWN ",
                                        "READONLY ", "OOM "};
    if (!reply || reply->type != REDIS_REPLY_ERROR || !reply->str) return 0;
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (strncmp(reply->str, codes[i], strlen(codes[i])) == 0) return 1;
    return 0;
}

redisReply *sb_redis_eval(sb_redis_t *r, const sb_script_t *s, int nkeys, int argc,
                          const char **argv, const size_t *lens) {
    const char *av[SB_SCRIPT_MAXARGS];
    size_t al[SB_SCRIPT_MAXARGS];
    char nk[16];
    int n = sb_script_argv(s, SB_SCRIPT_EVALSHA, nkeys, argc, argv, lens, av, al, nk);
    if (n < 0) return NULL;
    redisReply *rep = sb_redis_cmdargv(r, n, av, al);
    if (sb_reply_is_noscript(rep)) {
        freeReplyObject(rep);
        av[0] = "EVAL"; al[0] = 4;
        av[1] = s->source; al[1] = strlen(s->source);
        rep = sb_redis_cmdargv(r, n, av, al);
    }
    return rep;
}

int sb_batch_add_script(sb_batch_t *b, const sb_script_t *s, sb_script_mode_t mode, int nkeys,
                        int argc, const char **argv, const size_t *lens) {
    const char *av[SB_SCRIPT_MAXARGS];
    size_t al[SB_SCRIPT_MAXARGS];
    char nk[16];
    int n = sb_script_argv(s, mode, nkeys, argc, argv, lens, av, al, nk);
    return n < 0 ? SB_EINVAL : sb_batch_addargv(b, n, av, al);
}

int sb_reply_is_error(const redisReply *reply) {
    return !reply || reply->type == REDIS_REPLY_ERROR;
}

int sb_reply_ok(const redisReply *reply) { return !sb_reply_is_error(reply); }

/* ---- Upstash REST transport (rest.h) ------------------------------------------------------ */

/* Every command goes through sb_rest_run as a batch; a failed request counts as a lost
 * connection (logged once, sb_redis_ensure "reconnects" with a PING). */
static int sb_redis_rest_pipeline(sb_redis_t *r, const sb_batch_t *b, redisReply **replies) {
    char err[300];
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
static redisReply *sb_redis_rest_one(sb_redis_t *r, sb_batch_t *b, int rc) {
    redisReply *rep = NULL;
    if (rc == SB_OK && sb_redis_rest_pipeline(r, b, &rep) != SB_OK) rep = NULL;
    sb_batch_free(b);
    return rep;
}

static redisReply *sb_redis_rest_vcmd(sb_redis_t *r, const char *fmt, va_list ap) {
    sb_batch_t *b = sb_batch_create();
    return sb_redis_rest_one(r, b, b ? sb_batch_vadd(b, fmt, ap) : SB_ENOMEM);
}

static redisReply *sb_redis_rest_argv(sb_redis_t *r, int argc, const char **argv,
                                      const size_t *lens) {
    sb_batch_t *b = sb_batch_create();
    return sb_redis_rest_one(r, b, b ? sb_batch_addargv(b, argc, argv, lens) : SB_ENOMEM);
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
