/* Random identifiers: see include/switchboard/random.h. The kernel's CSPRNG is the only
 * source; a pool only batches the calls to it. Hex by table lookup. */
#include <string.h>
#include <sys/random.h>
#include "switchboard/error.h"
#include "switchboard/random.h"

void sb_rand_init(sb_rand_t *pool) { pool->pos = SB_RAND_POOL; }

void sb_rand_close(sb_rand_t *pool) {
    memset(pool->buf, 0, sizeof pool->buf);
    pool->pos = SB_RAND_POOL;
}

/* Reads exactly n bytes from getrandom (it may return fewer, or be interrupted). */
static int sb_getrandom(unsigned char *out, size_t n) {
    while (n > 0) {
        ssize_t got = getrandom(out, n, 0);
        if (got <= 0) return SB_ERR;
        out += got;
        n -= (size_t)got;
    }
    return SB_OK;
}

int sb_random_bytes(sb_rand_t *pool, void *out, size_t n) {
    if (!pool || n > SB_RAND_POOL / 4) return sb_getrandom(out, n);
    if (SB_RAND_POOL - pool->pos < n) {
        if (sb_getrandom(pool->buf, SB_RAND_POOL) != SB_OK) return SB_ERR;
        pool->pos = 0;
    }
    memcpy(out, pool->buf + pool->pos, n);
    memset(pool->buf + pool->pos, 0, n); /* handed out once */
    pool->pos += n;
    return SB_OK;
}

void sb_hex_encode(char *out, const unsigned char *in, size_t n) {
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

int sb_random_hex(sb_rand_t *pool, char *out, size_t n) {
    unsigned char rnd[256];
    if (n > sizeof rnd || sb_random_bytes(pool, rnd, n) != SB_OK) return SB_ERR;
    sb_hex_encode(out, rnd, n);
    return SB_OK;
}
