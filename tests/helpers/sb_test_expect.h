/* Test helper: run one Redis command and check its reply.
 *
 * Each macro takes the command in hiredis format syntax (as sb_redis_cmd: "SADD %s %s", key,
 * id), runs it on r and checks the reply. On a mismatch the test fails (cmocka) at the file and
 * line of the call, printing the command as sent (its arguments after formatting) and the reply
 * received, e.g.
 *     test_presence.c:120: SADD agents:all a-1: expected integer 1, got error "WRONGTYPE ..."
 * No reply at all (connection lost) and a NULL client are failures too. Nothing is left to free
 * except the reply sb_expect_reply returns. The _at functions are the macros' implementation. */
#ifndef SB_TEST_EXPECT_H
#define SB_TEST_EXPECT_H

#include <stddef.h>
#include "switchboard/redis.h"

/* The status reply OK (SET, FLUSHALL, CONFIG SET, XGROUP CREATE…). */
#define sb_expect_ok(r, ...) sb_expect_ok_at(__FILE__, __LINE__, r, __VA_ARGS__)
/* An integer reply equal to want (SADD, EXISTS, XLEN…). */
#define sb_expect_int(r, want, ...) sb_expect_int_at(__FILE__, __LINE__, r, want, __VA_ARGS__)
/* A bulk string equal to want (GET, HGET…); want NULL expects a nil reply. */
#define sb_expect_str(r, want, ...) sb_expect_str_at(__FILE__, __LINE__, r, want, __VA_ARGS__)
/* An array of exactly n elements (KEYS, XRANGE, SMEMBERS…). */
#define sb_expect_len(r, n, ...) sb_expect_len_at(__FILE__, __LINE__, r, n, __VA_ARGS__)
/* A reply of the given REDIS_REPLY_* type, whatever its value (XADD's id, SUBSCRIBE…). */
#define sb_expect_type(r, type, ...) sb_expect_type_at(__FILE__, __LINE__, r, type, __VA_ARGS__)
/* An integer reply, returned (for values a test computes with rather than compares). */
#define sb_query_int(r, ...) sb_query_int_at(__FILE__, __LINE__, r, __VA_ARGS__)
/* A reply of the given type, returned for a closer look; the caller frees it
 * (freeReplyObject). */
#define sb_expect_reply(r, type, ...) sb_expect_reply_at(__FILE__, __LINE__, r, type, __VA_ARGS__)
/* Calls of a command since the last CONFIG RESETSTAT (INFO commandstats; 0 when none), e.g.
 * sb_cmdstat_calls(r, "evalsha"). */
#define sb_cmdstat_calls(r, command) sb_cmdstat_calls_at(__FILE__, __LINE__, r, command)

void sb_expect_ok_at(const char *file, int line, sb_redis_t *r, const char *fmt, ...);
void sb_expect_int_at(const char *file, int line, sb_redis_t *r, long long want,
                      const char *fmt, ...);
void sb_expect_str_at(const char *file, int line, sb_redis_t *r, const char *want,
                      const char *fmt, ...);
void sb_expect_len_at(const char *file, int line, sb_redis_t *r, size_t n, const char *fmt, ...);
void sb_expect_type_at(const char *file, int line, sb_redis_t *r, int type, const char *fmt, ...);
long long sb_query_int_at(const char *file, int line, sb_redis_t *r, const char *fmt, ...);
redisReply *sb_expect_reply_at(const char *file, int line, sb_redis_t *r, int type,
                               const char *fmt, ...);
long long sb_cmdstat_calls_at(const char *file, int line, sb_redis_t *r, const char *command);

#endif
