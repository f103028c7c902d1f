/* Time: wall and monotonic milliseconds, ISO 8601 UTC formatting and parsing. */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "switchboard/clock.h"
#include "switchboard/error.h"

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

char *sb_iso8601(int64_t unix_ms, char *buf) {
    time_t secs = (time_t)(unix_ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t n = strftime(buf, SB_ISO_LEN, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, SB_ISO_LEN - n, ".%03dZ", (int)(unix_ms % 1000));
    return buf;
}

char *sb_utc_date(int64_t unix_ms, char *buf) {
    time_t secs = (time_t)(unix_ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    strftime(buf, 11, "%Y-%m-%d", &tm);
    return buf;
}

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
