/* UTF-8 checks for text that leaves the process: records, status messages and events must be
 * valid UTF-8 (a WebSocket text frame with anything else is a protocol error for the peer).
 * Valid means RFC 3629: shortest forms only, no surrogates (U+D800..U+DFFF), at most
 * U+10FFFF. */
#ifndef SB_UTF8_H
#define SB_UTF8_H

#include <stddef.h>
#include <cjson/cJSON.h>

/* 1 if the len bytes at s are valid UTF-8 (NUL bytes count as valid), else 0. */
int sb_utf8_valid(const char *s, size_t len);

/* 1 if every key and string value in the tree (item and what it contains) is valid UTF-8,
 * else 0. NULL is valid. */
int sb_utf8_json_valid(const cJSON *item);

/* Copies the NUL-terminated src into dst (dstlen > 0 bytes, NUL-terminated), replacing each
 * byte that does not start a valid sequence, and each truncated sequence, with U+FFFD. Stops
 * at a character boundary when dst is full. dst and src must not overlap. Returns the length
 * written. */
size_t sb_utf8_sanitize(char *dst, size_t dstlen, const char *src);

/* sb_utf8_sanitize of buf into itself (buf has size bytes): what does not fit after the
 * replacements is cut off at a character boundary. */
void sb_utf8_sanitize_buf(char *buf, size_t size);

#endif
