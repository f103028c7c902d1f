/* Wall-clock and monotonic time helpers, and ISO 8601 formatting (UTC, milliseconds). */
#ifndef SB_CLOCK_H
#define SB_CLOCK_H

#include <stdatomic.h>
#include <stdint.h>
#include <stddef.h>

#define SB_ISO_LEN 32 /* buffer size for an ISO 8601 timestamp */

int64_t sb_now_ms(void);       /* wall clock, Unix milliseconds */
int64_t sb_mono_ms(void);      /* monotonic clock, milliseconds */
/* Writes `YYYY-MM-DDTHH:MM:SS.mmmZ` for unix ms into buf (>= SB_ISO_LEN). Returns buf. */
char *sb_iso8601(int64_t unix_ms, char *buf);
/* Writes `YYYY-MM-DD` (UTC) for unix ms into buf (>= 11 bytes). Returns buf. */
char *sb_utc_date(int64_t unix_ms, char *buf);
/* Parses an ISO 8601 UTC timestamp as written by sb_iso8601 (fraction and Z optional).
 * Returns 0 and sets *out_ms, or SB_EINVAL. */
int sb_iso8601_parse(const char *s, int64_t *out_ms);

/* Sleeps ms milliseconds in slices of at most 50 ms, returning early with SB_ECANCELED when
 * *stop becomes non-zero (stop may be NULL). Returns 0 after the full sleep. */
int sb_sleep_ms(int ms, const atomic_int *stop);

#endif
