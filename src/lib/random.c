/* Random identifiers: see include/switchboard/random.h. One getrandom call per id (the
 * kernel's CSPRNG is the only source; nothing is buffered, so forked children never share
 * bytes with their parent), hex by table lookup. */
#include <sys/random.h>
#include "switchboard/error.h"
#include "switchboard/random.h"

void sb_hex_encode(char *out, const unsigned char *in, size_t n) {
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

int sb_random_hex(char *out, size_t n) {
    unsigned char rnd[256];
    if (n > sizeof rnd || getrandom(rnd, n, 0) != (ssize_t)n) return SB_ERR;
    sb_hex_encode(out, rnd, n);
    return SB_OK;
}
