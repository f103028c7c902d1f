/* Verified-token cache: see jwt_cache.h.
 *
 * Each slot owns a copy of a token that verified and the claims it carried. Slots come in sets
 * of SB_JWT_WAYS: FNV-1a of the token mixed with the cache's random seed picks the set (a
 * direct-mapped table made two of 64 tokens evict each other on every request), and a new
 * token replaces the set's least recently used slot. Within the set the stored hash and
 * length filter, then CRYPTO_memcmp compares every byte in constant time, so response timing
 * tells nothing about how much of a cached token a guess matched. A hit re-checks exp/nbf
 * (the time-dependent part of verification) and copies the claims out. */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include "switchboard/error.h"
#include "gateway/jwt_cache.h"

#define SB_JWT_WAYS 4 /* slots per set */

typedef struct {
    char *token;        /* owned; NULL when the slot is empty */
    size_t len;
    uint64_t hash;
    uint64_t used;      /* the cache's clock at the last hit or fill: LRU within a set */
    sb_claims_t claims; /* owned */
} sb_jwt_slot_t;

struct sb_jwt_cache {
    sb_jwt_slot_t *slots; /* nsets * SB_JWT_WAYS */
    size_t nslots, nsets;
    uint64_t seed;
    uint64_t clock;       /* counts lookups */
    uint64_t hits, misses;
};

sb_jwt_cache_t *sb_jwt_cache_create(size_t slots) {
    sb_jwt_cache_t *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->nsets = (slots + SB_JWT_WAYS - 1) / SB_JWT_WAYS;
    if (!c->nsets) c->nsets = 1;
    c->nslots = c->nsets * SB_JWT_WAYS;
    if (!(c->slots = calloc(c->nslots, sizeof *c->slots))) {
        free(c);
        return NULL;
    }
    if (getrandom(&c->seed, sizeof c->seed, 0) != (ssize_t)sizeof c->seed)
        c->seed = (uint64_t)(uintptr_t)c ^ 0x9e3779b97f4a7c15ULL;
    return c;
}

static void sb_jwt_slot_clear(sb_jwt_slot_t *s) {
    free(s->token);
    sb_claims_close(&s->claims);
    memset(s, 0, sizeof *s);
}

void sb_jwt_cache_free(sb_jwt_cache_t *c) {
    if (!c) return;
    for (size_t i = 0; i < c->nslots; i++) sb_jwt_slot_clear(&c->slots[i]);
    free(c->slots);
    free(c);
}

void sb_jwt_cache_counts(const sb_jwt_cache_t *c, uint64_t *hits, uint64_t *misses) {
    *hits = c ? c->hits : 0;
    *misses = c ? c->misses : 0;
}

static uint64_t sb_jwt_hash(uint64_t seed, const char *s, size_t len) {
    uint64_t h = 14695981039346656037ULL ^ seed;
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h ^ (h >> 29);
}

static int sb_fail(char *err, size_t errlen, const char *why) {
    if (err && errlen) snprintf(err, errlen, "%s", why);
    return SB_EINVAL;
}

/* The cached answer for a slot holding this very token. */
static int sb_jwt_cache_hit(sb_jwt_slot_t *s, int64_t now_s, sb_claims_t *claims, char *err,
                            size_t errlen) {
    if (s->claims.exp <= now_s) {
        sb_jwt_slot_clear(s); /* it will never verify again */
        return sb_fail(err, errlen, "token has expired");
    }
    if (s->claims.nbf > now_s) return sb_fail(err, errlen, "token is not valid yet (nbf)");
    if (sb_claims_copy(&s->claims, claims) != SB_OK) return sb_fail(err, errlen, "out of memory");
    return SB_OK;
}

int sb_jwt_verify_cached(sb_jwt_cache_t *c, const char *token, const char *secret,
                         int64_t now_s, sb_claims_t *claims, char *err, size_t errlen) {
    size_t len = token ? strnlen(token, SB_JWT_CACHE_TOKEN_MAX + 1) : 0;
    if (!c || len == 0 || len > SB_JWT_CACHE_TOKEN_MAX || !secret || !*secret) {
        if (c) c->misses++;
        return sb_jwt_verify(token, secret, now_s, claims, err, errlen);
    }
    uint64_t h = sb_jwt_hash(c->seed, token, len);
    sb_jwt_slot_t *set = &c->slots[(h % c->nsets) * SB_JWT_WAYS], *victim = set;
    c->clock++;
    for (sb_jwt_slot_t *s = set; s < set + SB_JWT_WAYS; s++) {
        if (s->token && s->hash == h && s->len == len &&
            CRYPTO_memcmp(s->token, token, len) == 0) {
            memset(claims, 0, sizeof *claims);
            c->hits++;
            s->used = c->clock;
            return sb_jwt_cache_hit(s, now_s, claims, err, errlen);
        }
        if (!s->token ? victim->token != NULL : victim->token && s->used < victim->used)
            victim = s; /* an empty slot, else the least recently used */
    }
    c->misses++;
    int rc = sb_jwt_verify(token, secret, now_s, claims, err, errlen);
    if (rc != SB_OK) return rc;
    sb_claims_t copy;
    char *dup = malloc(len + 1);
    if (!dup || sb_claims_copy(claims, &copy) != SB_OK) {
        free(dup); /* not cached: the answer stands */
        return SB_OK;
    }
    memcpy(dup, token, len + 1);
    sb_jwt_slot_clear(victim);
    *victim = (sb_jwt_slot_t){.token = dup, .len = len, .hash = h, .used = c->clock,
                              .claims = copy};
    return SB_OK;
}
