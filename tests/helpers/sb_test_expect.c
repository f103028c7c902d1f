/* Checked Redis commands for C tests: see sb_test_expect.h.
 *
 * A command is formatted by hiredis (redisvFormatCommand: the same syntax as sb_redis_cmd),
 * read back into its arguments by hiredis's own RESP reader, and sent with sb_redis_cmdargv.
 * The arguments give the failure message its text: the command as Redis received it, not the
 * format string. Every check frees the reply before failing, so a failed test leaks nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sb_test_expect.h"

#define SB_EXPECT_TEXT 512 /* the command's text in messages, truncated */
#define SB_EXPECT_ARG 64   /* at most this much of one argument is shown */

/* One command run for a check. */
typedef struct {
    const char *file; /* where the check was written */
    int line;
    char text[SB_EXPECT_TEXT]; /* the command as sent, for messages */
    redisReply *reply;         /* NULL: no reply (connection lost or no client) */
} sb_expect_t;

/* Appends argument a (n bytes) to e->text, printable and bounded. */
static void sb_expect_text_add(sb_expect_t *e, const char *a, size_t n) {
    size_t at = strlen(e->text);
    int quote = n == 0 || memchr(a, ' ', n) != NULL; /* "" and "a b" stay one argument */
    if (at && at + 1 < sizeof e->text) e->text[at++] = ' ';
    if (quote && at + 1 < sizeof e->text) e->text[at++] = '"';
    for (size_t i = 0; i < n && i < SB_EXPECT_ARG && at + 1 < sizeof e->text; i++)
        e->text[at++] = isprint((unsigned char)a[i]) ? a[i] : '?';
    if (n > SB_EXPECT_ARG && at + 4 < sizeof e->text) memcpy(e->text + at, "...", 3), at += 3;
    if (quote && at + 1 < sizeof e->text) e->text[at++] = '"';
    e->text[at] = '\0';
}

/* Formats the command, sends it, and keeps its text and reply in e. */
static void sb_expect_run(sb_expect_t *e, sb_redis_t *r, const char *fmt, va_list ap) {
    char *resp = NULL;
    int len = redisvFormatCommand(&resp, fmt, ap);
    e->text[0] = '\0';
    e->reply = NULL;
    if (len < 0) {
        print_error("%s:%d: cannot format the command \"%s\"\n", e->file, e->line, fmt);
        _fail(e->file, e->line);
        return;
    }
    redisReader *rd = redisReaderCreate();
    void *parsed = NULL;
    if (!rd || redisReaderFeed(rd, resp, (size_t)len) != REDIS_OK ||
        redisReaderGetReply(rd, &parsed) != REDIS_OK || !parsed) {
        redisReaderFree(rd);
        free(resp);
        print_error("%s:%d: cannot read back the command \"%s\"\n", e->file, e->line, fmt);
        _fail(e->file, e->line);
        return;
    }
    redisReply *cmd = parsed;
    const char **argv = calloc(cmd->elements, sizeof *argv);
    size_t *lens = calloc(cmd->elements, sizeof *lens);
    for (size_t i = 0; argv && lens && i < cmd->elements; i++) {
        argv[i] = cmd->element[i]->str;
        lens[i] = cmd->element[i]->len;
        sb_expect_text_add(e, argv[i], lens[i]);
    }
    if (r && argv && lens) e->reply = sb_redis_cmdargv(r, (int)cmd->elements, argv, lens);
    free(argv);
    free(lens);
    freeReplyObject(cmd);
    redisReaderFree(rd);
    free(resp);
}

/* What a reply is, for messages: `integer 1`, `error "WRONGTYPE …"`, `array of 3`. */
static void sb_expect_describe(const redisReply *rep, char *out, size_t n) {
    if (!rep) {
        snprintf(out, n, "no reply (no client, or the connection was lost)");
        return;
    }
    switch (rep->type) {
    case REDIS_REPLY_STATUS: snprintf(out, n, "status %.*s", (int)rep->len, rep->str); break;
    case REDIS_REPLY_ERROR: snprintf(out, n, "error \"%.*s\"", (int)rep->len, rep->str); break;
    case REDIS_REPLY_INTEGER: snprintf(out, n, "integer %lld", rep->integer); break;
    case REDIS_REPLY_NIL: snprintf(out, n, "nil"); break;
    case REDIS_REPLY_STRING:
        snprintf(out, n, "string \"%.*s\"%s", rep->len > 120 ? 120 : (int)rep->len, rep->str,
                 rep->len > 120 ? "..." : "");
        break;
    case REDIS_REPLY_ARRAY: snprintf(out, n, "array of %zu", rep->elements); break;
    default: snprintf(out, n, "reply of type %d", rep->type); break;
    }
}

static const char *sb_expect_type_name(int type) {
    switch (type) {
    case REDIS_REPLY_STATUS: return "a status";
    case REDIS_REPLY_ERROR: return "an error";
    case REDIS_REPLY_INTEGER: return "an integer";
    case REDIS_REPLY_NIL: return "nil";
    case REDIS_REPLY_STRING: return "a string";
    case REDIS_REPLY_ARRAY: return "an array";
    default: return "an unknown type";
    }
}

/* Fails the test: prints `file:line: COMMAND: expected WANT, got REPLY`, frees the reply. */
static void sb_expect_fail(sb_expect_t *e, const char *want) {
    char got[200];
    sb_expect_describe(e->reply, got, sizeof got);
    print_error("%s:%d: %s: expected %s, got %s\n", e->file, e->line, e->text, want, got);
    if (e->reply) freeReplyObject(e->reply);
    e->reply = NULL;
    _fail(e->file, e->line);
}

/* 1 if e's reply has the given type; else fails the test and returns 0. */
static int sb_expect_is(sb_expect_t *e, int type) {
    if (e->reply && e->reply->type == type) return 1;
    sb_expect_fail(e, sb_expect_type_name(type));
    return 0;
}

/* Declares an sb_expect_t named e for the current check and runs the command in it. */
#define SB_EXPECT_RUN(e, r, fmt)              \
    sb_expect_t e = {.file = file, .line = line}; \
    do {                                      \
        va_list ap;                           \
        va_start(ap, fmt);                    \
        sb_expect_run(&e, r, fmt, ap);        \
        va_end(ap);                           \
    } while (0)

/* Frees e's reply when ok; else fails the test saying what was wanted. */
static void sb_expect_settle(sb_expect_t *e, int ok, const char *want) {
    if (ok) freeReplyObject(e->reply);
    else sb_expect_fail(e, want);
}

void sb_expect_ok_at(const char *file, int line, sb_redis_t *r, const char *fmt, ...) {
    SB_EXPECT_RUN(e, r, fmt);
    sb_expect_settle(&e, e.reply && e.reply->type == REDIS_REPLY_STATUS &&
                             !strcmp(e.reply->str, "OK"), "status OK");
}

void sb_expect_int_at(const char *file, int line, sb_redis_t *r, long long want,
                      const char *fmt, ...) {
    SB_EXPECT_RUN(e, r, fmt);
    char w[64];
    snprintf(w, sizeof w, "integer %lld", want);
    sb_expect_settle(&e, e.reply && e.reply->type == REDIS_REPLY_INTEGER &&
                             e.reply->integer == want, w);
}

void sb_expect_str_at(const char *file, int line, sb_redis_t *r, const char *want,
                      const char *fmt, ...) {
    SB_EXPECT_RUN(e, r, fmt);
    char w[200];
    snprintf(w, sizeof w, want ? "string \"%.120s\"" : "nil", want);
    sb_expect_settle(&e, e.reply && (want ? e.reply->type == REDIS_REPLY_STRING &&
                                                e.reply->len == strlen(want) &&
                                                !memcmp(e.reply->str, want, e.reply->len)
                                          : e.reply->type == REDIS_REPLY_NIL), w);
}

void sb_expect_len_at(const char *file, int line, sb_redis_t *r, size_t n, const char *fmt, ...) {
    SB_EXPECT_RUN(e, r, fmt);
    char w[64];
    snprintf(w, sizeof w, "array of %zu", n);
    sb_expect_settle(&e, e.reply && e.reply->type == REDIS_REPLY_ARRAY && e.reply->elements == n,
                     w);
}

void sb_expect_type_at(const char *file, int line, sb_redis_t *r, int type, const char *fmt, ...) {
    SB_EXPECT_RUN(e, r, fmt);
    if (sb_expect_is(&e, type)) freeReplyObject(e.reply);
}

long long sb_query_int_at(const char *file, int line, sb_redis_t *r, const char *fmt, ...) {
    SB_EXPECT_RUN(e, r, fmt);
    if (!sb_expect_is(&e, REDIS_REPLY_INTEGER)) return 0;
    long long v = e.reply->integer;
    freeReplyObject(e.reply);
    return v;
}

redisReply *sb_expect_reply_at(const char *file, int line, sb_redis_t *r, int type,
                               const char *fmt, ...) {
    SB_EXPECT_RUN(e, r, fmt);
    return sb_expect_is(&e, type) ? e.reply : NULL;
}

long long sb_cmdstat_calls_at(const char *file, int line, sb_redis_t *r, const char *command) {
    redisReply *rep = sb_expect_reply_at(file, line, r, REDIS_REPLY_STRING, "INFO commandstats");
    char needle[64];
    snprintf(needle, sizeof needle, "cmdstat_%s:calls=", command);
    const char *p = strstr(rep->str, needle);
    long long n = p ? atoll(p + strlen(needle)) : 0;
    freeReplyObject(rep);
    return n;
}
