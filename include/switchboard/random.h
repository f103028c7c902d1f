/* Random identifiers: bytes from the kernel's CSPRNG (getrandom(2)), written as lowercase hex
 * with a table instead of printf (ids are made on every request: job ids, rate-window
 * members, event ids). Pure functions of their arguments; no state. */
#ifndef SB_RANDOM_H
#define SB_RANDOM_H

#include <stddef.h>

/* Writes 2 * n hex digits of in, then a NUL, to out (2 * n + 1 bytes). */
void sb_hex_encode(char *out, const unsigned char *in, size_t n);
/* n random bytes (n <= 256) as 2 * n hex digits and a NUL in out. Returns 0 or SB_ERR. */
int sb_random_hex(char *out, size_t n);

#endif
