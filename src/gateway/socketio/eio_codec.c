/* Engine.IO pure parts: refcounted shared packet buffers, the polling payload split, packet
 * decoding (v4, and v3's length-prefixed string / binary payloads) and random sids. No session
 * state; the fuzzer and tests call these directly. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <openssl/evp.h>

#include "gateway/socketio/eio.h"
#include "switchboard/error.h"

/* ================================================================ buffers */

sb_eio_buf_t *sb_eio_buf_create(size_t headroom, const void *src, size_t len) {
    if (len > UINT32_MAX || headroom > 4096) return NULL;
    sb_eio_buf_t *b = malloc(sizeof *b + headroom + len + 1);
    if (!b) return NULL;
    b->refs = 1;
    b->len = (uint32_t)len;
    b->data = b->mem + headroom;
    b->binary = 0;
    if (src && len) memcpy(b->data, src, len);
    b->data[len] = '\0';
    return b;
}

sb_eio_buf_t *sb_eio_buf_ref(sb_eio_buf_t *b) {
    b->refs++;
    return b;
}

void sb_eio_buf_unref(sb_eio_buf_t *b) {
    if (b && --b->refs == 0) free(b);
}

/* ================================================================ codec */

int sb_eio_split_payload(const char *buf, size_t len,
                         int (*fn)(void *ud, const char *pkt, size_t n), void *ud) {
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && buf[i] != '\x1e') continue;
        int rc = fn(ud, buf + start, i - start);
        if (rc) return rc;
        start = i + 1;
    }
    return 0;
}

/* Base64 alphabet with at most two trailing "="; unpadded input is accepted, as Node's
 * decoder does. */
static int sb_eio_is_base64(const char *s, size_t n) {
    size_t pad = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '=') {
            if (++pad > 2) return 0;
            continue;
        }
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 c == '+' || c == '/';
        if (!ok || pad) return 0;
    }
    return 1;
}

int sb_eio_decode_packet(const char *buf, size_t len, sb_eio_packet_t *out) {
    if (!buf || len == 0) return SB_EINVAL;
    char t = buf[0];
    if ((t < '0' || t > '6') && t != 'b') return SB_EINVAL;
    out->type = t;
    out->data = buf + 1;
    out->len = len - 1;
    if (t == 'b' && !sb_eio_is_base64(out->data, out->len)) return SB_EINVAL;
    return SB_OK;
}

/* ================================================================ codec: v3 */

size_t sb_eio_utf16_len(const char *s, size_t n) {
    size_t units = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c & 0xC0) == 0x80) continue; /* continuation byte */
        units += c >= 0xF0 ? 2 : 1;       /* beyond the BMP: a surrogate pair */
    }
    return units;
}

size_t sb_eio_prefix3(const char *pkt, size_t len, char out[SB_EIO_PREFIX3_MAX]) {
    int n = snprintf(out, SB_EIO_PREFIX3_MAX, "%zu:", sb_eio_utf16_len(pkt, len));
    return n > 0 ? (size_t)n : 0;
}

/* Bytes from buf[i] that hold `units` UTF-16 code units (whole characters), or 0 when the
 * text ends first or a character would straddle the end. */
static size_t sb_eio_units_span(const char *buf, size_t len, size_t i, size_t units) {
    size_t j = i, u = 0;
    while (u < units && j < len) {
        u += (unsigned char)buf[j++] >= 0xF0 ? 2 : 1;
        while (j < len && ((unsigned char)buf[j] & 0xC0) == 0x80) j++;
    }
    return u == units ? j - i : 0;
}

/* `<length>:<packet>`...: length in UTF-16 code units (engine.io-parser v2's string payload). */
static int sb_eio_split_string3(const char *buf, size_t len,
                                int (*fn)(void *, const char *, size_t, int), void *ud) {
    size_t i = 0;
    while (i < len) {
        size_t units = 0, digits = 0;
        while (i < len && buf[i] >= '0' && buf[i] <= '9' && digits < 10)
            units = units * 10 + (size_t)(buf[i++] - '0'), digits++;
        if (!digits || i >= len || buf[i++] != ':') return SB_EINVAL;
        if (units == 0) continue; /* an empty packet is skipped, as the reference does */
        size_t n = sb_eio_units_span(buf, len, i, units);
        if (!n) return SB_EINVAL;
        int rc = fn(ud, buf + i, n, 0);
        if (rc) return rc;
        i += n;
    }
    return 0;
}

/* XHR2 binary payload: per packet 0 (string) / 1 (binary), the length in bytes as digit bytes,
 * 0xFF, then the packet. */
static int sb_eio_split_binary3(const char *buf, size_t len,
                                int (*fn)(void *, const char *, size_t, int), void *ud) {
    size_t i = 0;
    while (i < len) {
        int binary = buf[i++];
        size_t n = 0, digits = 0;
        if (binary != 0 && binary != 1) return SB_EINVAL;
        while (i < len && (unsigned char)buf[i] <= 9 && digits < 10)
            n = n * 10 + (unsigned char)buf[i++], digits++;
        if (!digits || i >= len || (unsigned char)buf[i++] != 0xFF || n > len - i)
            return SB_EINVAL;
        int rc = fn(ud, buf + i, n, binary);
        if (rc) return rc;
        i += n;
    }
    return 0;
}

int sb_eio_split_payload3(const char *buf, size_t len,
                          int (*fn)(void *ud, const char *pkt, size_t n, int binary), void *ud) {
    if (!buf || len == 0) return SB_EINVAL;
    if (buf[0] == 0 || buf[0] == 1) return sb_eio_split_binary3(buf, len, fn, ud);
    return sb_eio_split_string3(buf, len, fn, ud);
}

int sb_eio_decode_packet3(const char *buf, size_t len, int binary, sb_eio_packet_t *out) {
    if (!buf || len == 0) return SB_EINVAL;
    if (binary) { /* the type as a number; only a message may carry bytes */
        if (buf[0] != 4) return SB_EINVAL;
        *out = (sb_eio_packet_t){.type = 'b', .data = buf + 1, .len = len - 1};
        return SB_OK;
    }
    if (buf[0] != 'b') return sb_eio_decode_packet(buf, len, out);
    if (len < 2 || buf[1] != '4' || !sb_eio_is_base64(buf + 2, len - 2)) return SB_EINVAL;
    *out = (sb_eio_packet_t){.type = 'b', .data = buf + 2, .len = len - 2};
    return SB_OK;
}

/* ================================================================ base64 (OpenSSL's) */

size_t sb_eio_base64_len(size_t len) { return (len + 2) / 3 * 4; }

size_t sb_eio_base64_encode(char *out, const void *src, size_t len) {
    size_t o = 0;
    for (size_t i = 0; i < len; i += 48) { /* EVP_EncodeBlock takes an int length */
        size_t n = len - i < 48 ? len - i : 48;
        o += (size_t)EVP_EncodeBlock((unsigned char *)out + o, (const unsigned char *)src + i,
                                     (int)n);
    }
    return o;
}

int sb_eio_base64_decode(const char *s, size_t n, char **out, size_t *outlen) {
    *out = NULL;
    *outlen = 0;
    size_t pad = 0;
    while (pad < n && pad < 2 && s[n - 1 - pad] == '=') pad++;
    n -= pad; /* decoded here without padding, re-padded below */
    if (!sb_eio_is_base64(s, n) || n % 4 == 1 || n > (size_t)INT32_MAX - 8) return SB_EINVAL;
    size_t padded = (n + 3) / 4 * 4;
    char *tmp = malloc(padded + 1), *buf = malloc(padded / 4 * 3 + 1);
    if (!tmp || !buf) {
        free(tmp);
        free(buf);
        return SB_ENOMEM;
    }
    memcpy(tmp, s, n);
    memset(tmp + n, '=', padded - n);
    int got = padded ? EVP_DecodeBlock((unsigned char *)buf, (unsigned char *)tmp, (int)padded)
                     : 0;
    free(tmp);
    if (got < 0) {
        free(buf);
        return SB_EINVAL;
    }
    *out = buf;
    *outlen = (size_t)got - (padded - n); /* EVP_DecodeBlock counts the padding's zero bytes */
    return SB_OK;
}

int sb_eio_random_id(char *sid) {
    static const char b64[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned char raw[15];
    size_t got = 0;
    while (got < sizeof raw) {
        ssize_t n = getrandom(raw + got, sizeof raw - got, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return SB_ERR;
        got += (size_t)n;
    }
    for (int i = 0, o = 0; i < 15; i += 3) {
        uint32_t v = (uint32_t)raw[i] << 16 | (uint32_t)raw[i + 1] << 8 | raw[i + 2];
        sid[o++] = b64[v >> 18 & 63];
        sid[o++] = b64[v >> 12 & 63];
        sid[o++] = b64[v >> 6 & 63];
        sid[o++] = b64[v & 63];
    }
    sid[SB_EIO_SID_LEN] = '\0';
    return SB_OK;
}
