/* UTF-8: strict validation (RFC 3629, Unicode §3.9 Table 3-7) and repair.
 *
 * Text that leaves Switchboard in a JSON document or a WebSocket text frame must be UTF-8:
 * browsers and socket.io-client drop a text frame that is not (and reconnect in a loop), and
 * other readers replace or reject the bad bytes, so different readers would see different
 * data. Input is checked where it enters (HTTP bodies, tokens, status messages); what an agent
 * makes itself (handler output) is checked, and error text repaired, before it is stored.
 * Pure functions; no state. */
#ifndef SB_UTF8_H
#define SB_UTF8_H

#include <stddef.h>
#include <cjson/cJSON.h>

/* 1 when buf[0..len) is well-formed UTF-8, 0 when not. Refused: stray continuation bytes,
 * truncated sequences, overlong forms (C0, C1, E0 80..9F, F0 80..8F), UTF-16 surrogates
 * (ED A0..BF: U+D800..U+DFFF) and code points above U+10FFFF (F4 90.., F5..FF). A NUL byte
 * (U+0000) is valid UTF-8; callers that keep C strings refuse it themselves. len 0 is valid;
 * buf may be NULL only when len is 0. */
int sb_utf8_valid(const char *buf, size_t len);

/* 1 if every key and string value in the tree (item and what it contains) is valid UTF-8,
 * else 0. NULL is valid. */
int sb_utf8_json_valid(const cJSON *item);

/* Copies the NUL-terminated src into dst (dstlen > 0 bytes, NUL-terminated), replacing each
 * byte that does not start a valid sequence, and each truncated sequence, with U+FFFD. Stops
 * at a character boundary when dst is full. dst and src must not overlap. Returns the length
 * written. */
size_t sb_utf8_sanitize(char *dst, size_t dstlen, const char *src);

/* A copy of buf[0..len) (NUL bytes included) with the same replacements as sb_utf8_sanitize,
 * NUL-terminated, its length in *outlen (when not NULL); malloc'd, the caller frees it. NULL
 * when out of memory. Only bytes >= 0x80 are replaced and every ASCII byte stays where it
 * was, so the repair of JSON text is JSON with the same structure (its strings repaired). */
char *sb_utf8_repair(const char *buf, size_t len, size_t *outlen);

/* sb_utf8_sanitize of buf into itself (buf has size bytes): what does not fit after the
 * replacements is cut off at a character boundary. */
void sb_utf8_sanitize_buf(char *buf, size_t size);

#endif
