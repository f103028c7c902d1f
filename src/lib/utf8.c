/* UTF-8 validation and repair (see utf8.h). One decoder, sb_utf8_scan, says how long the
 * sequence at a position is and whether it is whole; the rest walk with it. Repair replaces
 * each maximal start of a sequence that breaks off (or a byte that starts none) with one
 * U+FFFD, as Unicode recommends (§3.9, "U+FFFD substitution of maximal subparts").
 * Validation skips runs of ASCII eight bytes at a time. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "switchboard/utf8.h"

/* Scans the sequence at s (n > 0 bytes left): returns how many bytes of it are well formed
 * (at least 1) and sets *whole when they make a valid character. The second byte's range
 * excludes overlong forms (E0, F0), surrogates (ED) and code points above U+10FFFF (F4). */
static size_t sb_utf8_scan(const unsigned char *s, size_t n, int *whole) {
    unsigned char c = s[0];
    size_t len = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3
               : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    *whole = len == 1;
    if (len <= 1) return 1;
    unsigned char lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80;
    unsigned char hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
    size_t i = 1;
    if (n > 1 && s[1] >= lo && s[1] <= hi)
        for (i = 2; i < len && i < n && (s[i] & 0xC0) == 0x80;) i++;
    *whole = i == len;
    return i;
}

/* Length of the valid UTF-8 character at s (n bytes left), or 0. */
static size_t sb_utf8_seq(const unsigned char *s, size_t n) {
    int whole;
    size_t len = sb_utf8_scan(s, n, &whole);
    return whole ? len : 0;
}

/* 1 when the eight bytes at p are all ASCII. */
static int sb_utf8_ascii8(const unsigned char *p) {
    uint64_t w;
    memcpy(&w, p, sizeof w);
    return (w & 0x8080808080808080ULL) == 0;
}

int sb_utf8_valid(const char *s, size_t len) {
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0, n; i < len; i += n) {
        if (len - i >= 8 && sb_utf8_ascii8(p + i)) n = 8;
        else if ((n = sb_utf8_seq(p + i, len - i)) == 0) return 0;
    }
    return 1;
}

static int sb_utf8_str_valid(const char *s) { return !s || sb_utf8_valid(s, strlen(s)); }

int sb_utf8_json_valid(const cJSON *item) {
    for (; item; item = item->next) {
        if (!sb_utf8_str_valid(item->string)) return 0;
        if (cJSON_IsString(item) && !sb_utf8_str_valid(item->valuestring)) return 0;
        if (item->child && !sb_utf8_json_valid(item->child)) return 0;
    }
    return 1;
}

/* Copies src[0..len) into dst (dstlen > 0 bytes, NUL-terminated) with each invalid sequence
 * replaced by U+FFFD, stopping at a character boundary when dst is full; returns the length
 * written. */
static size_t sb_utf8_copy(char *dst, size_t dstlen, const char *src, size_t len) {
    static const char repl[] = "\xEF\xBF\xBD"; /* U+FFFD */
    const unsigned char *p = (const unsigned char *)src;
    size_t left = len, out = 0;
    while (left > 0) {
        int whole;
        size_t n = sb_utf8_scan(p, left, &whole);
        const char *from = whole ? (const char *)p : repl;
        size_t m = whole ? n : sizeof repl - 1;
        if (out + m >= dstlen) break;
        memcpy(dst + out, from, m);
        out += m;
        p += n;
        left -= n;
    }
    dst[out] = '\0';
    return out;
}

size_t sb_utf8_sanitize(char *dst, size_t dstlen, const char *src) {
    return sb_utf8_copy(dst, dstlen, src, strlen(src));
}

char *sb_utf8_repair(const char *buf, size_t len, size_t *outlen) {
    size_t size = len * 3 + 1; /* each replaced byte grows to at most 3 */
    char *out = len < SIZE_MAX / 3 ? malloc(size) : NULL;
    if (!out) return NULL;
    size_t n = sb_utf8_copy(out, size, buf, len);
    if (outlen) *outlen = n;
    return out;
}

void sb_utf8_sanitize_buf(char *buf, size_t size) {
    size_t len = strlen(buf);
    if (sb_utf8_valid(buf, len)) return;
    char *copy = malloc(len + 1);
    if (!copy) {
        buf[0] = '\0'; /* nothing invalid leaves, even without memory */
        return;
    }
    memcpy(copy, buf, len + 1);
    sb_utf8_sanitize(buf, size, copy);
    free(copy);
}
