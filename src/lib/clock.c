/* Time: wall and monotonic milliseconds, ISO 8601 UTC formatting and parsing.
 *
 * Formatting runs on every HTTP request, status event and log line, so it uses no libc time
 * functions (gmtime_r takes a lock, strftime and snprintf interpret formats and the locale):
 * milliseconds are floor-divided into days, seconds of the day and milliseconds, the days are
 * turned into a proleptic Gregorian date with integer arithmetic on 400-year eras (the
 * "civil from days" method described by Howard Hinnant), and digits are written directly.
 * The output is byte for byte what gmtime_r + strftime("%Y-%m-%d...") give for the floor-divided
 * seconds, for every int64_t input (checked against them by tests/unit/test_core.c). */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "switchboard/clock.h"
#include "switchboard/error.h"
#include "switchboard/fmt.h"

int64_t sb_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t sb_mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- formatting -------------------------------------------------------------------------- */

#define SB_DAYS_PER_ERA 146097     /* days in 400 Gregorian years */
#define SB_DAYS_0000_03_01 719468 /* days from 0000-03-01 to 1970-01-01 */
#define SB_MS_PER_DAY 86400000

typedef struct {
    int64_t year;   /* proleptic Gregorian; 0 is 1 BC, as in gmtime_r's tm_year + 1900 */
    unsigned month; /* 1..12 */
    unsigned day;   /* 1..31 */
} sb_civil_t;

/* a = *q * b + *r with 0 <= *r < b (b > 0): rounds toward minus infinity, without overflow. */
static void sb_floor_divmod(int64_t a, int64_t b, int64_t *q, int64_t *r) {
    *q = a / b;
    *r = a % b;
    if (*r < 0) {
        *q -= 1;
        *r += b;
    }
}

/* Days since 1970-01-01 to a date. Counting from 0000-03-01 puts the leap day last in each
 * year, so within a 400-year era the year and the day of the year follow from divisions by
 * the lengths of 4-, 100- and 400-year cycles, and the month from the 153-days-per-5-months
 * pattern of March..January (31 30 31 30 31). */
static sb_civil_t sb_civil_from_days(int64_t days) {
    int64_t era, day_of_era;
    sb_floor_divmod(days + SB_DAYS_0000_03_01, SB_DAYS_PER_ERA, &era, &day_of_era);
    uint32_t doe = (uint32_t)day_of_era;                                 /* 0..146096 */
    uint32_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365; /* 0..399 */
    uint32_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100); /* 0..365, from March 1 */
    uint32_t mp = (5 * doy + 2) / 153;                      /* 0..11, March is 0 */
    sb_civil_t c;
    c.day = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
    c.month = mp < 10 ? mp + 3 : mp - 9;
    c.year = era * 400 + (int64_t)yoe + (c.month <= 2);
    return c;
}

static char *sb_put2(char *p, unsigned v) {
    p[0] = (char)('0' + v / 10);
    p[1] = (char)('0' + v % 10);
    return p + 2;
}

/* The year as strftime's %Y writes it: 4 digits for 1000..9999, otherwise the plain decimal
 * number with a '-' sign when negative and no zero padding. */
static char *sb_put_year(char *p, int64_t y) {
    if (y >= 1000 && y <= 9999) {
        p = sb_put2(p, (unsigned)y / 100);
        return sb_put2(p, (unsigned)y % 100);
    }
    return p + sb_fmt_ll(p, (long long)y);
}

/* Writes `Y-MM-DD` for days since 1970-01-01; returns the end (no terminator). At most 16 bytes. */
static char *sb_put_date(char *p, int64_t days) {
    sb_civil_t c = sb_civil_from_days(days);
    p = sb_put_year(p, c.year);
    *p++ = '-';
    p = sb_put2(p, c.month);
    *p++ = '-';
    return sb_put2(p, c.day);
}

/* floor(floor(ms / 1000) / 86400) is floor(ms / 86400000): one 64-bit division, then 32-bit. */
char *sb_iso8601(int64_t unix_ms, char *buf) {
    int64_t days, ms_of_day;
    sb_floor_divmod(unix_ms, SB_MS_PER_DAY, &days, &ms_of_day);
    uint32_t msd = (uint32_t)ms_of_day, sod = msd / 1000, ms = msd % 1000; /* sod: second of day */
    char *p = sb_put_date(buf, days);
    *p++ = 'T';
    p = sb_put2(p, sod / 3600);
    *p++ = ':';
    p = sb_put2(p, sod / 60 % 60);
    *p++ = ':';
    p = sb_put2(p, sod % 60);
    *p++ = '.';
    *p++ = (char)('0' + ms / 100);
    p = sb_put2(p, ms % 100);
    *p++ = 'Z';
    *p = '\0';
    return buf;
}

char *sb_utc_date(int64_t unix_ms, char *buf) {
    int64_t days, ms_of_day;
    sb_floor_divmod(unix_ms, SB_MS_PER_DAY, &days, &ms_of_day);
    char tmp[SB_ISO_LEN];
    size_t len = (size_t)(sb_put_date(tmp, days) - tmp);
    if (len > 10) len = 10; /* only years beyond -999..9999 */
    memcpy(buf, tmp, len);
    buf[len] = '\0';
    return buf;
}

/* ---- parsing, sleeping ------------------------------------------------------------------- */

int sb_iso8601_parse(const char *s, int64_t *out_ms) {
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    int ms = 0, used = 0;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
               &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &used) != 6)
        return SB_EINVAL;
    const char *p = s + used;
    if (*p == '.') {
        int digits = 0;
        for (p++; *p >= '0' && *p <= '9'; p++, digits++)
            if (digits < 3) ms = ms * 10 + (*p - '0');
        if (digits == 0) return SB_EINVAL;
        for (; digits < 3; digits++) ms *= 10;
    }
    if (*p == 'Z') p++;
    if (*p != '\0') return SB_EINVAL;
    if (tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 || tm.tm_mday > 31 ||
        tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60)
        return SB_EINVAL;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    *out_ms = (int64_t)timegm(&tm) * 1000 + ms;
    return SB_OK;
}

int sb_sleep_ms(int ms, const atomic_int *stop) {
    while (ms > 0) {
        if (stop && atomic_load(stop)) return SB_ECANCELED;
        int slice = ms < 50 ? ms : 50;
        struct timespec ts = {0, (long)slice * 1000000L};
        nanosleep(&ts, NULL);
        ms -= slice;
    }
    return (stop && atomic_load(stop)) ? SB_ECANCELED : SB_OK;
}
