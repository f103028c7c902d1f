/* Wall-clock and monotonic time helpers, and ISO 8601 formatting (UTC, milliseconds). */
#ifndef SB_CLOCK_H
#define SB_CLOCK_H

#include <stdatomic.h>
#include <stdint.h>
#include <stddef.h>

#define SB_ISO_LEN 32 /* buffer size for an ISO 8601 timestamp */

int64_t sb_now_ms(void);       /* wall clock, Unix milliseconds */
int64_t sb_mono_ms(void);      /* monotonic clock, milliseconds */
/* Writes `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC) for unix ms into buf (>= SB_ISO_LEN). Returns buf.
 * Defined for every int64_t, lock-free and locale-free. Milliseconds are floor-divided, so a
 * negative value is the instant before 1970 it denotes (-1 -> 1969-12-31T23:59:59.999Z), as
 * gmtime_r gives for the floor-divided seconds. Years outside 1000..9999 are written as
 * strftime's %Y does: no zero padding, '-' when negative (`999-...`, `-1-...`, `10000-...`;
 * at most 30 characters), which sb_iso8601_parse does not accept. */
char *sb_iso8601(int64_t unix_ms, char *buf);
/* Writes `YYYY-MM-DD` (UTC), the date part of sb_iso8601, into buf (>= 11 bytes). Returns buf.
 * A date longer than 10 characters (year above 9999 or below -999) is cut to its first 10. */
char *sb_utc_date(int64_t unix_ms, char *buf);
/* Parses an ISO 8601 UTC timestamp as written by sb_iso8601 (fraction and Z optional).
 * Returns 0 and sets *out_ms, or SB_EINVAL. */
int sb_iso8601_parse(const char *s, int64_t *out_ms);

/* Sleeps ms milliseconds in slices of at most 50 ms, returning early with SB_ECANCELED when
 * *stop becomes non-zero (stop may be NULL). Returns 0 after the full sleep. */
int sb_sleep_ms(int ms, const atomic_int *stop);

#endif
