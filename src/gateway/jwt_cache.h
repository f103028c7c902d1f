/* A cache of verified JWTs, for a process that sees the same bearer token request after
 * request (the gateway: every POST of a session carries it).
 *
 * A full sb_jwt_verify costs base64 decoding, two JSON parses (libjwt's and ours) and an HMAC;
 * a hit costs one hash of the token, one constant-time comparison with the cached copy and the
 * copy of the claims. Only tokens that verified are cached, keyed by their exact bytes, so a
 * hit is a token that was checked with the same secret; exp and nbf are checked again against
 * the time of each call, so a cached token stops working exactly when it would uncached.
 *
 * 4-way set associative: each token has one set of 4 slots, chosen by a hash seeded at random
 * per cache (so nobody can aim tokens at a set from outside); a new token replaces the set's
 * least recently used one. Not thread-safe: one cache per event loop. */
#ifndef SB_JWT_CACHE_H
#define SB_JWT_CACHE_H

#include <stddef.h>
#include <stdint.h>
#include "switchboard/jwt.h"

#define SB_JWT_CACHE_TOKEN_MAX 2048 /* longer tokens are verified every time, never stored */

typedef struct sb_jwt_cache sb_jwt_cache_t;

/* A cache of `slots` entries (rounded up to a multiple of 4). NULL on allocation failure. */
sb_jwt_cache_t *sb_jwt_cache_create(size_t slots);
void sb_jwt_cache_free(sb_jwt_cache_t *cache); /* NULL is fine */

/* sb_jwt_verify's contract (the same errors, claims for the caller to close), answered from
 * the cache when this exact token verified before. cache NULL: plain sb_jwt_verify. */
int sb_jwt_verify_cached(sb_jwt_cache_t *cache, const char *token, const char *secret,
                         int64_t now_s, sb_claims_t *claims, char *err, size_t errlen);

/* Hits and misses so far (misses include failed verifications). */
void sb_jwt_cache_counts(const sb_jwt_cache_t *cache, uint64_t *hits, uint64_t *misses);

#endif
