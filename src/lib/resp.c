/* Redis commands as data: the RESP encoder for argument vectors, batches of pre-written
 * commands, Lua script calls (EVALSHA with the EVAL fallback) and reply classes. The blocking
 * connection that sends them is redis.c; what the two share privately is in resp.h.
 *
 * Batches hold commands already written as RESP. Argument-vector commands (the hot path: the
 * gateway builds one EVALSHA per HTTP request) are written by the small encoder below, which
 * sizes the command exactly, allocates once and writes lengths without printf, giving the same
 * bytes as hiredis's redisFormatCommandArgv; printf-style commands (sb_batch_add, cold paths)
 * still go through hiredis's formatter. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/sha.h>
#include "switchboard/error.h"
#include "switchboard/fmt.h"
#include "switchboard/redis.h"
#include "resp.h"

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
size_t sb__resp_argv_len(int argc, const char **argv, const size_t *lens) {
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

/* Writes the command (total bytes, from sb__resp_argv_len) and a NUL into buf. */
void sb__resp_argv(char *buf, size_t total, int argc, const char **argv, const size_t *lens) {
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

/* ---- batches --------------------------------------------------------------------------- */

typedef struct {
    char *buf;  /* RESP bytes plus a NUL, malloc'd by hiredis's formatter or sb__resp_argv() */
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

int sb_batch_add_raw(sb_batch_t *b, const char *cmd, size_t len) {
    char *buf = malloc(len + 1);
    if (!buf) return SB_ENOMEM;
    memcpy(buf, cmd, len);
    buf[len] = '\0';
    return sb_batch_take(b, buf, len);
}

int sb_batch_append(sb_batch_t *dst, const sb_batch_t *src) {
    int rc = SB_OK;
    for (size_t i = 0; rc == SB_OK && i < src->n; i++)
        rc = sb_batch_add_raw(dst, src->cmds[i].buf, src->cmds[i].len);
    return rc;
}

int sb__batch_vadd(sb_batch_t *b, const char *fmt, va_list ap) {
    char *buf = NULL;
    int len = redisvFormatCommand(&buf, fmt, ap);
    return sb_batch_push(b, buf, len);
}

int sb_batch_add(sb_batch_t *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = sb__batch_vadd(b, fmt, ap);
    va_end(ap);
    return rc;
}

int sb_batch_addargv(sb_batch_t *b, int argc, const char **argv, const size_t *lens) {
    size_t total = sb__resp_argv_len(argc, argv, lens);
    if (total == 0) return SB_EINVAL;
    char *buf = malloc(total + 1);
    if (!buf) return SB_ENOMEM;
    sb__resp_argv(buf, total, argc, argv, lens);
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

/* ---- scripts --------------------------------------------------------------------------- */

void sb_script_init(sb_script_t *s, const char *source) {
    unsigned char md[SHA_DIGEST_LENGTH];
    s->source = source;
    SHA1((const unsigned char *)source, strlen(source), md);
    for (int i = 0; i < SHA_DIGEST_LENGTH; i++) snprintf(s->sha1 + 2 * i, 3, "%02x", md[i]);
}

enum { SB_SCRIPT_MAXARGS = 64 };

/* EVALSHA/EVAL argv for a script call into av/al (argc + 3 slots; nk holds the key count
 * text). Returns the argument count, argc + 3. */
static int sb_script_argv(const sb_script_t *s, sb_script_mode_t mode, int nkeys, int argc,
                          const char **argv, const size_t *lens, const char **av, size_t *al,
                          char nk[16]) {
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
                                        "READONLY ", "OOM ", "CLUSTERDOWN "};
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
    if (argc < 0 || argc + 3 > SB_SCRIPT_MAXARGS) return NULL;
    int n = sb_script_argv(s, SB_SCRIPT_EVALSHA, nkeys, argc, argv, lens, av, al, nk);
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
    const char *stack_av[SB_SCRIPT_MAXARGS];
    size_t stack_al[SB_SCRIPT_MAXARGS];
    char nk[16];
    if (argc < 0) return SB_EINVAL;
    /* a group of calls in one script (submit.c, agent_commit.c) takes more than the stack's */
    int big = argc + 3 > SB_SCRIPT_MAXARGS;
    const char **av = big ? malloc((size_t)(argc + 3) * sizeof *av) : stack_av;
    size_t *al = big ? malloc((size_t)(argc + 3) * sizeof *al) : stack_al;
    int rc = av && al ? sb_batch_addargv(b, sb_script_argv(s, mode, nkeys, argc, argv, lens, av,
                                                           al, nk), av, al)
                      : SB_ENOMEM;
    if (big) {
        free(av);
        free(al);
    }
    return rc;
}

int sb_reply_is_error(const redisReply *reply) {
    return !reply || reply->type == REDIS_REPLY_ERROR;
}

int sb_reply_ok(const redisReply *reply) { return !sb_reply_is_error(reply); }
