/* Decimal numbers without printf (fmt.h): digits from the least significant, written backwards
 * into a scratch buffer, then copied. The magnitude is taken as unsigned, so LLONG_MIN works. */
#include "switchboard/fmt.h"

#include <errno.h>
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
