/* Strict UTF-8 validation (see include/switchboard/utf8.h).
 *
 * Follows the table of well-formed byte sequences in Unicode §3.9 (Table 3-7): the lead byte
 * fixes the length of the sequence and the range its second byte must fall in (narrower than
 * 80..BF after E0, ED, F0 and F4, which is what excludes overlongs, surrogates and code
 * points above U+10FFFF); every later byte is 80..BF. Runs of ASCII are skipped eight bytes
 * at a time. */
#include <stdint.h>
#include <string.h>
#include "switchboard/utf8.h"

/* The sequence a lead byte starts: its length and the range of its second byte. */
typedef struct {
    unsigned char len;        /* 0: not a lead byte (80..C1, F5..FF) */
    unsigned char lo, hi;     /* the second byte's range */
} sb_utf8_lead_t;

static sb_utf8_lead_t sb_utf8_lead(unsigned char c) {
    if (c < 0x80) return (sb_utf8_lead_t){1, 0, 0};
    if (c < 0xC2) return (sb_utf8_lead_t){0, 0, 0};       /* continuation, or overlong C0/C1 */
    if (c < 0xE0) return (sb_utf8_lead_t){2, 0x80, 0xBF};
    if (c == 0xE0) return (sb_utf8_lead_t){3, 0xA0, 0xBF}; /* below: overlong */
    if (c == 0xED) return (sb_utf8_lead_t){3, 0x80, 0x9F}; /* above: surrogates */
    if (c < 0xF0) return (sb_utf8_lead_t){3, 0x80, 0xBF};
    if (c == 0xF0) return (sb_utf8_lead_t){4, 0x90, 0xBF}; /* below: overlong */
    if (c < 0xF4) return (sb_utf8_lead_t){4, 0x80, 0xBF};
    if (c == 0xF4) return (sb_utf8_lead_t){4, 0x80, 0x8F}; /* above: > U+10FFFF */
    return (sb_utf8_lead_t){0, 0, 0};
}

/* 1 when the eight bytes at p are all ASCII. */
static int sb_utf8_ascii8(const unsigned char *p) {
    uint64_t w;
    memcpy(&w, p, sizeof w);
    return (w & 0x8080808080808080ULL) == 0;
}

int sb_utf8_valid(const char *buf, size_t len) {
    const unsigned char *p = (const unsigned char *)buf;
    size_t i = 0;
    while (i < len) {
        if (len - i >= 8 && sb_utf8_ascii8(p + i)) {
            i += 8;
            continue;
        }
        sb_utf8_lead_t lead = sb_utf8_lead(p[i]);
        if (lead.len == 0 || len - i < lead.len) return 0;
        if (lead.len > 1 && (p[i + 1] < lead.lo || p[i + 1] > lead.hi)) return 0;
        for (size_t k = 2; k < lead.len; k++)
            if ((p[i + k] & 0xC0) != 0x80) return 0;
        i += lead.len;
    }
    return 1;
}
