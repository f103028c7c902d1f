/* Decimal numbers without printf (fmt.h): digits from the least significant, written backwards
 * into a scratch buffer, then copied. The magnitude is taken as unsigned, so LLONG_MIN works. */
#include "switchboard/fmt.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "switchboard/error.h"

size_t sb_fmt_ll(char *out, long long v) {
    char digits[SB_FMT_INT_LEN], *p = digits + sizeof digits;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) *--p = '-';
    size_t n = (size_t)(digits + sizeof digits - p);
    memcpy(out, p, n);
    return n;
}

char *sb_fmt_llz(char *out, long long v) {
    out[sb_fmt_ll(out, v)] = '\0';
    return out;
}

int sb_fmt_parse_long(const char *s, long min, long max, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < min || v > max) return SB_EINVAL;
    *out = v;
    return SB_OK;
}

int sb_fmt_hostport_nth(const char *list, int i, char *host, size_t hostlen, int *port,
                           char *err, size_t errlen) {
    const char *p = list;
    for (int k = 0; k < i; k++) {
        p = strchr(p, ',');
        if (!p) return 0;
        p++;
    }
    p += strspn(p, " ");
    size_t n = strcspn(p, ",");
    while (n && p[n - 1] == ' ') n--;
    char entry[SB_FMT_HOST_MAX + 16];
    if (n == 0 || n >= sizeof entry) {
        snprintf(err, errlen, "expected host:port entries separated by commas");
        return -1;
    }
    memcpy(entry, p, n);
    entry[n] = '\0';
    char *colon = strrchr(entry, ':');
    long v;
    if (!colon || colon == entry || sb_fmt_parse_long(colon + 1, 1, 65535, &v) != SB_OK) {
        snprintf(err, errlen, "'%s' is not host:port (port 1-65535)", entry);
        return -1;
    }
    *colon = '\0';
    char *h = entry;
    if (h[0] == '[' && colon[-1] == ']') { /* [::1]:26379 */
        colon[-1] = '\0';
        h++;
    }
    snprintf(host, hostlen, "%s", h);
    *port = (int)v;
    return 1;
}
