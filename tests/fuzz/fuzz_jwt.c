/* libFuzzer target for bearer tokens: sb_jwt_verify must refuse anything that is not an HS256
 * token signed with our key, without crashing, leaking or reading out of bounds. Inputs
 * starting with 'V' are first given a valid signature (minted from the rest as claims), so the
 * claim checks behind the signature are reached too. Every token also goes through the
 * verified-token cache (twice, so cached answers are exercised), which must answer exactly as
 * sb_jwt_verify does. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "switchboard/jwt.h"
#include "gateway/jwt_cache.h"

static const char SECRET[] = "fuzz-secret";

/* sb_jwt_verify and the cache give the same verdict and the same claims, at two times. */
static void sb_check_cached(sb_jwt_cache_t *cache, const char *tok) {
    for (int64_t now = 1700000000; now <= 1700000001; now++) {
        for (int round = 0; round < 2; round++) {
            char e1[256], e2[256];
            sb_claims_t a, b;
            int r1 = sb_jwt_verify(tok, SECRET, now, &a, e1, sizeof e1);
            int r2 = sb_jwt_verify_cached(cache, tok, SECRET, now, &b, e2, sizeof e2);
            if (r1 != r2 || (r1 != 0 && strcmp(e1, e2))) abort();
            if (r1 == 0 && (a.role != b.role || a.exp != b.exp || a.nbf != b.nbf ||
                            !a.public_key != !b.public_key ||
                            (a.public_key && strcmp(a.public_key, b.public_key))))
                abort();
            if (r1 == 0) sb_claims_close(&a);
            if (r2 == 0) sb_claims_close(&b);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static sb_jwt_cache_t *cache; /* lives across inputs, as in the gateway */
    if (!cache && !(cache = sb_jwt_cache_create(64))) return 0;
    char err[256];
    sb_claims_t c;
    char *tok = malloc(size + 1);
    if (!tok) return 0;
    memcpy(tok, data, size);
    tok[size] = '\0';
    if (sb_jwt_verify(tok, SECRET, 1700000000, &c, err, sizeof err) == 0) sb_claims_close(&c);
    sb_check_cached(cache, tok);
    if (size > 1 && tok[0] == 'V') {
        /* claims from the input: publicKey and role strings, exp/nbf from the bytes */
        sb_claims_t in = {.sub = tok + 1, .public_key = tok + 1,
                          .role = (sb_role_t)(1 << (data[size - 1] % 3)),
                          .exp = 1700000000 + (int64_t)(data[1] % 3) - 1,
                          .nbf = (data[size - 1] & 8) ? 1700000001 : 0};
        char *minted = sb_jwt_mint(&in, SECRET, 1700000000, err, sizeof err);
        if (minted && sb_jwt_verify(minted, SECRET, 1700000000, &c, err, sizeof err) == 0)
            sb_claims_close(&c);
        if (minted) sb_check_cached(cache, minted);
        free(minted);
    }
    free(tok);
    return 0;
}
