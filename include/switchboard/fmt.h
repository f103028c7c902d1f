/* Decimal numbers written without printf, for the text built on every request (JSON numbers,
 * RESP lengths, script arguments, timestamps' years): printf interprets its format and the
 * locale each time. Pure functions; no state. */
#ifndef SB_FMT_H
#define SB_FMT_H

#include <stddef.h>

#define SB_FMT_HOST_MAX 256 /* longest host name of a host:port entry, NUL included */
#define SB_FMT_INT_LEN 21 /* the longest long long: '-' and 20 digits (no NUL) */

/* Writes v in decimal ('-' first when negative) at out; no NUL. Returns the number of bytes
 * written: at most SB_FMT_INT_LEN, and out needs room for exactly that many. */
size_t sb_fmt_ll(char *out, long long v);
/* The same followed by a NUL (room for one more byte). Returns out. */
char *sb_fmt_llz(char *out, long long v);
/* Reads s, all of it, as a decimal number from min to max into *out. Returns 0, or SB_EINVAL
 * (not a number, trailing text, out of range) leaving *out unchanged. */
int sb_fmt_parse_long(const char *s, long min, long max, long *out);
/* The i-th entry (from 0) of a list "host:port,host:port,..." (spaces around entries allowed,
 * "[v6]:port" too) as host (at most hostlen bytes with the NUL) and port 1-65535. Returns 1
 * when found, 0 past the end, -1 when the entry is malformed (reason in err). Used for
 * REDIS_SENTINELS and REDIS_CLUSTER. */
int sb_fmt_hostport_nth(const char *list, int i, char *host, size_t hostlen, int *port,
                        char *err, size_t errlen);

#endif
