/* Random identifiers: bytes from the kernel's CSPRNG (getrandom(2)), written as lowercase hex
 * with a table instead of printf (ids are made on every request: job ids, rate-window
 * members, event ids).
 *
 * A caller that makes many ids may keep an sb_rand_t: one getrandom call then serves many ids
 * (the gateway made three calls per POST). Its bytes are handed out once each and wiped from
 * the buffer as they go. A pool belongs to one thread and must not be used on both sides of a
 * fork() (the child would hand out the parent's next bytes). Every function taking a pool
 * accepts NULL: each call then reads getrandom directly. */
#ifndef SB_RANDOM_H
#define SB_RANDOM_H

#include <stddef.h>

#define SB_RAND_POOL 512 /* bytes read from the kernel at a time */

typedef struct {
    unsigned char buf[SB_RAND_POOL];
    size_t pos; /* bytes of buf already handed out (and wiped); SB_RAND_POOL: empty */
} sb_rand_t;

/* An empty pool: the first use fills it. */
void sb_rand_init(sb_rand_t *pool);
/* Wipes what is left of the pool. */
void sb_rand_close(sb_rand_t *pool);

/* n random bytes into out, from pool (NULL: from getrandom; also when n is over a quarter of
 * the pool). Returns 0, or SB_ERR when the kernel gives none (out is then unspecified). */
int sb_random_bytes(sb_rand_t *pool, void *out, size_t n);
/* Writes 2 * n hex digits of in, then a NUL, to out (2 * n + 1 bytes). */
void sb_hex_encode(char *out, const unsigned char *in, size_t n);
/* n random bytes (n <= 256) as 2 * n hex digits and a NUL in out. Returns 0 or SB_ERR. */
int sb_random_hex(sb_rand_t *pool, char *out, size_t n);

#endif
