/* libFuzzer target for bearer tokens: sb_jwt_verify must refuse anything that is not an HS256
 * token signed with our key, without crashing, leaking or reading out of bounds. Inputs
 * starting with 'V' are first given a valid signature (minted from the rest as claims), so the
 * claim checks behind the signature are reached too. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "switchboard/jwt.h"

static const char SECRET[] = "fuzz-secret";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[256];
    sb_claims_t c;
    char *tok = malloc(size + 1);
    if (!tok) return 0;
    memcpy(tok, data, size);
    tok[size] = '\0';
    if (sb_jwt_verify(tok, SECRET, 1700000000, &c, err, sizeof err) == 0) sb_claims_close(&c);
    if (size > 1 && tok[0] == 'V') {
        /* claims from the input: publicKey and role strings, exp/nbf from the bytes */
        sb_claims_t in = {.sub = tok + 1, .public_key = tok + 1,
                          .role = (sb_role_t)(1 << (data[size - 1] % 3)),
                          .exp = 1700000000 + (int64_t)(data[1] % 3) - 1,
                          .nbf = (data[size - 1] & 8) ? 1700000001 : 0};
        char *minted = sb_jwt_mint(&in, SECRET, 1700000000, err, sizeof err);
        if (minted && sb_jwt_verify(minted, SECRET, 1700000000, &c, err, sizeof err) == 0)
            sb_claims_close(&c);
        free(minted);
    }
    free(tok);
    return 0;
}
