/* What redis.c (the blocking connection) and resp.c (commands as data) share, and nothing
 * else does (library-internal; the contract for other modules is switchboard/redis.h).
 * Names: sb__resp_* / sb__batch_* are private to these two files. */
#ifndef SB_LIB_RESP_H
#define SB_LIB_RESP_H

#include <stdarg.h>
#include <stddef.h>
#include "switchboard/redis.h"

/* Exact size of the RESP command for argv (lens NULL: strlen of each), or 0 when it cannot be
 * written (argc <= 0, a NULL argument, too long). */
size_t sb__resp_argv_len(int argc, const char **argv, const size_t *lens);
/* Writes that command (total bytes, from sb__resp_argv_len) and a NUL into buf. */
void sb__resp_argv(char *buf, size_t total, int argc, const char **argv, const size_t *lens);
/* sb_batch_add with a va_list. Returns 0, SB_EINVAL (bad format) or SB_ENOMEM; b is unchanged
 * on failure. */
int sb__batch_vadd(sb_batch_t *b, const char *fmt, va_list ap);
#endif
