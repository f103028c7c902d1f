/* Strict UTF-8 validation (RFC 3629, Unicode §3.9 Table 3-7).
 *
 * Text that leaves Switchboard in a JSON document or a WebSocket text frame must be UTF-8:
 * browsers and socket.io-client drop a text frame that is not (and reconnect in a loop), and
 * other readers replace or reject the bad bytes, so different readers would see different
 * data. Input is therefore checked where it enters. Pure function; no state. */
#ifndef SB_UTF8_H
#define SB_UTF8_H

#include <stddef.h>

/* 1 when buf[0..len) is well-formed UTF-8, 0 when not. Refused: stray continuation bytes,
 * truncated sequences, overlong forms (C0, C1, E0 80..9F, F0 80..8F), UTF-16 surrogates
 * (ED A0..BF: U+D800..U+DFFF) and code points above U+10FFFF (F4 90.., F5..FF). A NUL byte
 * (U+0000) is valid UTF-8; callers that keep C strings refuse it themselves. len 0 is valid;
 * buf may be NULL only when len is 0. */
int sb_utf8_valid(const char *buf, size_t len);

#endif
