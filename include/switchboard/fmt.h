/* Decimal numbers written without printf, for the text built on every request (JSON numbers,
 * RESP lengths, script arguments, timestamps' years): printf interprets its format and the
 * locale each time. Pure functions; no state. */
#ifndef SB_FMT_H
#define SB_FMT_H

#include <stddef.h>

#define SB_FMT_INT_LEN 21 /* the longest long long: '-' and 20 digits (no NUL) */

/* Writes v in decimal ('-' first when negative) at out; no NUL. Returns the number of bytes
 * written: at most SB_FMT_INT_LEN, and out needs room for exactly that many. */
size_t sb_fmt_ll(char *out, long long v);
/* The same followed by a NUL (room for one more byte). Returns out. */
char *sb_fmt_llz(char *out, long long v);
/* Reads s, all of it, as a decimal number from min to max into *out. Returns 0, or SB_EINVAL
 * (not a number, trailing text, out of range) leaving *out unchanged. */
int sb_fmt_parse_long(const char *s, long min, long max, long *out);

#endif
