/* Decimal numbers without printf (fmt.h): digits from the least significant, written backwards
 * into a scratch buffer, then copied. The magnitude is taken as unsigned, so LLONG_MIN works. */
#include "switchboard/fmt.h"

#include <string.h>

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
