/* Unit tests of sb_jwt_verify / sb_jwt_mint: HS256 only, exp required and checked, nbf
 * checked, claims typed; every forged or damaged token is refused with a reason. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jwt.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gateway/jwt_cache.h"
#include "switchboard/switchboard.h"

#define SECRET "unit-test-secret"
#define NOW 1800000000

static char *b64url(const char *s) {
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t n = strlen(s);
    char *out = malloc(n * 4 / 3 + 4), *o = out;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned char)s[i] << 16;
        if (i + 1 < n) v |= (unsigned char)s[i + 1] << 8;
        if (i + 2 < n) v |= (unsigned char)s[i + 2];
        *o++ = tbl[(v >> 18) & 63];
        *o++ = tbl[(v >> 12) & 63];
        if (i + 1 < n) *o++ = tbl[(v >> 6) & 63];
        if (i + 2 < n) *o++ = tbl[v & 63];
    }
    *o = '\0';
    return out;
}

/* A token with the given header/payload JSON and signature text (not a real HMAC). */
static char *forge(const char *header, const char *payload, const char *sig) {
    char *h = b64url(header), *p = b64url(payload);
    char *t = malloc(strlen(h) + strlen(p) + strlen(sig) + 3);
    sprintf(t, "%s.%s.%s", h, p, sig);
    free(h);
    free(p);
    return t;
}

/* A properly signed token from libjwt with any algorithm and grants. */
static char *sign(jwt_alg_t alg, const char *key, const char *grants) {
    jwt_t *jwt = NULL;
    assert_int_equal(jwt_new(&jwt), 0);
    assert_int_equal(jwt_add_grants_json(jwt, grants), 0);
    assert_int_equal(jwt_set_alg(jwt, alg, (const unsigned char *)key, (int)strlen(key)), 0);
    char *t = jwt_encode_str(jwt);
    jwt_free(jwt);
    assert_non_null(t);
    return t;
}

/* A token over exactly these header and payload bytes, HMAC-SHA256-signed with SECRET by
 * OpenSSL (libjwt would re-encode the JSON, collapsing a name given twice). */
static char *sign_raw(const char *header, const char *payload) {
    char *unsigned_token = forge(header, payload, "");
    size_t n = strlen(unsigned_token) - 1; /* without the last '.' */
    unsigned char mac[EVP_MAX_MD_SIZE + 1];
    unsigned int maclen = 0;
    assert_non_null(HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET),
                         (const unsigned char *)unsigned_token, n, mac, &maclen));
    mac[maclen] = '\0'; /* b64url() takes a C string: retry the rare MAC holding a zero byte */
    assert_int_equal(strlen((char *)mac), maclen);
    char *sig = b64url((char *)mac);
    char *t = malloc(n + strlen(sig) + 2);
    sprintf(t, "%.*s.%s", (int)n, unsigned_token, sig);
    free(sig);
    free(unsigned_token);
    return t;
}

static void expect_refused(const char *token, const char *needle) {
    sb_claims_t c;
    char err[160] = "";
    assert_int_equal(sb_jwt_verify(token, SECRET, NOW, &c, err, sizeof err), SB_EINVAL);
    if (!strstr(err, needle)) fail_msg("error '%s' does not mention '%s'", err, needle);
    assert_null(c.sub);
    assert_int_equal(c.role, SB_ROLE_NONE);
}

static void test_mint_verify_roundtrip(void **state) {
    (void)state;
    sb_claims_t in = {.sub = "u-42", .public_key = "GXHEXYVepv5", .role = SB_ROLE_AGENT,
                      .name = "Ann", .email = "ann@example.com", .department_id = "d-1",
                      .department = "Support", .exp = NOW + 60};
    char err[160];
    char *t = sb_jwt_mint(&in, SECRET, NOW, err, sizeof err);
    assert_non_null(t);
    sb_claims_t c;
    assert_int_equal(sb_jwt_verify(t, SECRET, NOW, &c, err, sizeof err), SB_OK);
    assert_string_equal(c.sub, "u-42");
    assert_string_equal(c.public_key, "GXHEXYVepv5");
    assert_int_equal(c.role, SB_ROLE_AGENT);
    assert_string_equal(c.name, "Ann");
    assert_string_equal(c.email, "ann@example.com");
    assert_string_equal(c.department_id, "d-1");
    assert_string_equal(c.department, "Support");
    assert_int_equal(c.exp, NOW + 60);
    sb_claims_close(&c);
    sb_claims_close(NULL);
    free(t);
}

static void test_hs256_from_libjwt_accepted(void **state) {
    (void)state;
    char *t = sign(JWT_ALG_HS256, SECRET, "{\"role\":\"user\",\"publicKey\":\"PK\",\"exp\":1800000100}");
    sb_claims_t c;
    char err[160];
    assert_int_equal(sb_jwt_verify(t, SECRET, NOW, &c, err, sizeof err), SB_OK);
    assert_int_equal(c.role, SB_ROLE_USER);
    assert_null(c.sub);
    sb_claims_close(&c);
    free(t);
}

static void test_other_algorithms_refused(void **state) {
    (void)state;
    const char *g = "{\"role\":\"admin\",\"publicKey\":\"PK\",\"exp\":1800000100}";
    char *t = sign(JWT_ALG_HS512, SECRET, g); /* libjwt alone would accept this */
    expect_refused(t, "HS256");
    free(t);
    t = sign(JWT_ALG_HS384, SECRET, g);
    expect_refused(t, "HS256");
    free(t);
    t = forge("{\"alg\":\"none\",\"typ\":\"JWT\"}", g, "");
    expect_refused(t, "signed JWT"); /* empty signature segment */
    free(t);
    t = forge("{\"alg\":\"none\",\"typ\":\"JWT\"}", g, "x");
    expect_refused(t, "HS256");
    free(t);
    t = forge("{\"alg\":\"hs256\"}", g, "abc");
    expect_refused(t, "HS256");
    free(t);
}

static void test_signature_checks(void **state) {
    (void)state;
    const char *g = "{\"role\":\"user\",\"publicKey\":\"PK\",\"exp\":1800000100}";
    char *t = sign(JWT_ALG_HS256, "another-key", g);
    expect_refused(t, "signature");
    free(t);
    t = sign(JWT_ALG_HS256, SECRET, g);
    /* tamper: swap the payload for an admin one, keep the signature */
    char *dot1 = strchr(t, '.'), *dot2 = strchr(dot1 + 1, '.');
    char *evil = b64url("{\"role\":\"admin\",\"publicKey\":\"PK\",\"exp\":1800000100}");
    char *forged = malloc(strlen(t) + strlen(evil) + 2);
    sprintf(forged, "%.*s.%s%s", (int)(dot1 - t), t, evil, dot2);
    expect_refused(forged, "signature");
    /* flip one signature character */
    char *last = t + strlen(t) - 2;
    *last = *last == 'A' ? 'B' : 'A';
    expect_refused(t, "signature");
    free(evil);
    free(forged);
    free(t);
}

/* Properly signed HS256 tokens whose claims are refused, and the word the error names. */
static void test_claims_refused(void **state) {
    (void)state;
    static const struct {
        const char *grants, *needle;
    } cases[] = {
        {"{\"role\":\"user\",\"exp\":1799999999}", "expired"},
        {"{\"role\":\"user\",\"exp\":1800000000}", "expired"}, /* exp == now is expired */
        {"{\"role\":\"user\"}", "exp"},
        {"{\"role\":\"user\",\"exp\":\"1900000000\"}", "exp"},
        {"{\"role\":\"user\",\"exp\":1900000000,\"nbf\":1800000500}", "nbf"},
        {"{\"role\":\"user\",\"exp\":1900000000,\"nbf\":\"0\"}", "nbf"},
        {"{\"role\":\"root\",\"exp\":1900000000}", "role"},
        {"{\"exp\":1900000000}", "role"},
        {"{\"role\":\"user\",\"exp\":1900000000,\"publicKey\":7}", "publicKey"},
        {"{\"role\":\"user\",\"exp\":1900000000,\"sub\":{}}", "sub"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *t = sign(JWT_ALG_HS256, SECRET, cases[i].grants);
        expect_refused(t, cases[i].needle);
        free(t);
    }
}

/* Tokens that are signed right but that different readers would read differently: a name
 * given twice (libjwt's jansson keeps the last, cJSON the first), a crit extension the
 * gateway does not understand (RFC 7515 §4.1.11), a \u0000 or bytes that are not UTF-8. */
static void test_ambiguous_tokens_refused(void **state) {
    (void)state;
    const char *hs = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    const char *g = "{\"role\":\"user\",\"publicKey\":\"PK\",\"exp\":1900000000}";
    static const struct {
        const char *header, *payload, *needle;
    } cases[] = {
        {NULL, "{\"role\":\"user\",\"role\":\"admin\",\"exp\":1900000000}", "\"role\" twice"},
        {NULL, "{\"role\":\"admin\",\"exp\":1,\"exp\":1900000000}", "\"exp\" twice"},
        {NULL, "{\"role\":\"user\",\"exp\":1900000000,\"x\":{\"a\":1,\"a\":2}}", "\"a\" twice"},
        {NULL, "{\"role\":\"user\",\"publicKey\":\"PK\\u0000x\",\"exp\":1900000000}",
         "publicKey"},
        {NULL, "{\"role\":\"user\",\"publicKey\":\"P\xc0\xafK\",\"exp\":1900000000}", "malformed"},
        {"{\"alg\":\"HS256\",\"alg\":\"none\"}", NULL, "\"alg\" twice"},
        {"{\"alg\":\"HS256\",\"crit\":[\"exp\"],\"exp\":1}", NULL, "crit"},
        {"{\"alg\":\"HS256\",\"crit\":[]}", NULL, "crit"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *t = sign_raw(cases[i].header ? cases[i].header : hs,
                           cases[i].payload ? cases[i].payload : g);
        expect_refused(t, cases[i].needle);
        free(t);
    }
    char *ok = sign_raw(hs, g); /* the same signing, unambiguous: accepted */
    sb_claims_t c;
    char err[160] = "";
    assert_int_equal(sb_jwt_verify(ok, SECRET, NOW, &c, err, sizeof err), SB_OK);
    assert_int_equal(c.role, SB_ROLE_USER);
    assert_string_equal(c.public_key, "PK");
    sb_claims_close(&c);
    free(ok);
}

static void test_nbf_in_the_past_accepted(void **state) {
    (void)state;
    char *t = sign(JWT_ALG_HS256, SECRET, "{\"role\":\"user\",\"exp\":1900000000,\"nbf\":1700000000}");
    sb_claims_t c;
    char err[160];
    assert_int_equal(sb_jwt_verify(t, SECRET, NOW, &c, err, sizeof err), SB_OK);
    assert_int_equal(c.nbf, 1700000000);
    sb_claims_close(&c);
    free(t);
}

static void test_malformed_tokens(void **state) {
    (void)state;
    expect_refused("", "missing");
    expect_refused("abc", "signed JWT");
    expect_refused("a.b", "signed JWT");
    expect_refused("a.b.c.d", "signed JWT");
    expect_refused("!!!.e30.sig", "malformed");
    expect_refused("e30.e30.sig", "malformed"); /* header {} has no alg */
    char *big = malloc(SB_JWT_MAX_LEN + 10);
    memset(big, 'a', SB_JWT_MAX_LEN + 9);
    big[SB_JWT_MAX_LEN + 9] = '\0';
    expect_refused(big, "too long");
    free(big);
    sb_claims_t c;
    char err[64];
    assert_int_equal(sb_jwt_verify("a.b.c", "", NOW, &c, err, sizeof err), SB_EINVAL);
}

/* The token of an Authorization value, or NULL; spaces and tabs around it are not part of it. */
static void expect_bearer(const char *header, const char *want) {
    size_t len = 0;
    const char *t = sb_jwt_bearer(header, &len);
    if (!want) {
        assert_null(t);
        return;
    }
    assert_non_null(t);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(t, want, len);
}

static void test_bearer_header(void **state) {
    (void)state;
    expect_bearer("Bearer a.b.c", "a.b.c");
    expect_bearer("bearer a.b.c", "a.b.c");
    expect_bearer("BEARER   a.b.c", "a.b.c");
    expect_bearer("Bearer\ta.b.c", "a.b.c");
    expect_bearer("Bearer \t a.b.c \t ", "a.b.c");
    expect_bearer("Bearer a.b.c  ", "a.b.c");
    expect_bearer("Bearer a.b.c\t", "a.b.c");
    expect_bearer("Bearer", NULL);
    expect_bearer("Bearer ", NULL);
    expect_bearer("Bearer \t ", NULL);
    expect_bearer("Bearera.b.c", NULL);
    expect_bearer("Basic dXNlcjpwYXNz", NULL);
    expect_bearer("", NULL);
    expect_bearer(NULL, NULL);
}

static void test_mint_refuses(void **state) {
    (void)state;
    sb_claims_t in = {.role = SB_ROLE_NONE, .exp = NOW + 1};
    char err[160];
    assert_null(sb_jwt_mint(&in, SECRET, NOW, err, sizeof err));
    in.role = SB_ROLE_USER;
    assert_null(sb_jwt_mint(&in, "", NOW, err, sizeof err));
    assert_int_equal(sb_role_parse("admin"), SB_ROLE_ADMIN);
    assert_int_equal(sb_role_parse("Admin"), SB_ROLE_NONE);
    assert_string_equal(sb_role_name(SB_ROLE_USER), "user");
}

/* The verified-token cache answers exactly as sb_jwt_verify would, at every time. */
static void test_cache_same_answers(void **state) {
    (void)state;
    sb_claims_t in = {.sub = "u-1", .public_key = "PK1", .role = SB_ROLE_USER, .exp = NOW + 60,
                      .nbf = NOW - 5};
    char err[160];
    char *t = sb_jwt_mint(&in, SECRET, NOW - 10, err, sizeof err);
    assert_non_null(t);
    sb_jwt_cache_t *cache = sb_jwt_cache_create(8);
    assert_non_null(cache);
    uint64_t hits, misses;
    sb_claims_t c;
    for (int i = 0; i < 3; i++) { /* one verification, then two hits with equal claims */
        assert_int_equal(sb_jwt_verify_cached(cache, t, SECRET, NOW, &c, err, sizeof err), SB_OK);
        assert_string_equal(c.sub, "u-1");
        assert_string_equal(c.public_key, "PK1");
        assert_int_equal(c.role, SB_ROLE_USER);
        assert_int_equal(c.exp, NOW + 60);
        sb_claims_close(&c);
    }
    sb_jwt_cache_counts(cache, &hits, &misses);
    assert_int_equal(hits, 2);
    assert_int_equal(misses, 1);
    /* before nbf and at/after exp a cached token is refused with the uncached reasons */
    assert_int_equal(sb_jwt_verify_cached(cache, t, SECRET, NOW - 6, &c, err, sizeof err),
                     SB_EINVAL);
    assert_non_null(strstr(err, "not valid yet"));
    assert_null(c.sub);
    assert_int_equal(sb_jwt_verify_cached(cache, t, SECRET, NOW + 60, &c, err, sizeof err),
                     SB_EINVAL);
    assert_non_null(strstr(err, "expired"));
    assert_null(c.public_key);
    /* a damaged copy of a cached token is no hit: it fails verification */
    assert_int_equal(sb_jwt_verify_cached(cache, t, SECRET, NOW, &c, err, sizeof err), SB_OK);
    sb_claims_close(&c);
    char *bad = strdup(t);
    bad[strlen(bad) - 2] = bad[strlen(bad) - 2] == 'A' ? 'B' : 'A';
    assert_int_equal(sb_jwt_verify_cached(cache, bad, SECRET, NOW, &c, err, sizeof err),
                     SB_EINVAL);
    assert_non_null(strstr(err, "signature"));
    /* a wrong secret never gets a cached answer: the cache is per secret */
    sb_jwt_cache_t *other = sb_jwt_cache_create(8);
    assert_int_equal(sb_jwt_verify_cached(other, t, "another-secret", NOW, &c, err, sizeof err),
                     SB_EINVAL);
    /* no cache: plain verification */
    assert_int_equal(sb_jwt_verify_cached(NULL, t, SECRET, NOW, &c, err, sizeof err), SB_OK);
    sb_claims_close(&c);
    sb_jwt_cache_free(other);
    sb_jwt_cache_free(cache);
    sb_jwt_cache_free(NULL);
    free(bad);
    free(t);
}

/* Many tokens through a small cache: collisions replace slots, answers stay right. */
static void test_cache_collisions(void **state) {
    (void)state;
    sb_jwt_cache_t *cache = sb_jwt_cache_create(2);
    char err[160], pk[16];
    char *tokens[16];
    for (int i = 0; i < 16; i++) {
        snprintf(pk, sizeof pk, "PK%d", i);
        sb_claims_t in = {.public_key = pk, .role = SB_ROLE_USER, .exp = NOW + 60};
        tokens[i] = sb_jwt_mint(&in, SECRET, NOW, err, sizeof err);
    }
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 16; i++) {
            sb_claims_t c;
            snprintf(pk, sizeof pk, "PK%d", i);
            assert_int_equal(sb_jwt_verify_cached(cache, tokens[i], SECRET, NOW, &c, err,
                                                  sizeof err), SB_OK);
            assert_string_equal(c.public_key, pk);
            sb_claims_close(&c);
        }
    }
    sb_jwt_cache_free(cache);
    /* a set holds 4 tokens: 4 tokens through a 4-slot cache miss once each, then always hit */
    cache = sb_jwt_cache_create(4);
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 4; i++) {
            sb_claims_t c;
            assert_int_equal(sb_jwt_verify_cached(cache, tokens[i], SECRET, NOW, &c, err,
                                                  sizeof err), SB_OK);
            sb_claims_close(&c);
        }
    }
    uint64_t hits, misses;
    sb_jwt_cache_counts(cache, &hits, &misses);
    assert_int_equal(misses, 4);
    assert_int_equal(hits, 8);
    /* a fifth token evicts the least recently used one (token 0, last used first) */
    sb_claims_t c;
    assert_int_equal(sb_jwt_verify_cached(cache, tokens[4], SECRET, NOW, &c, err, sizeof err), SB_OK);
    sb_claims_close(&c);
    assert_int_equal(sb_jwt_verify_cached(cache, tokens[1], SECRET, NOW, &c, err, sizeof err), SB_OK);
    sb_claims_close(&c);
    sb_jwt_cache_counts(cache, &hits, &misses);
    assert_int_equal(misses, 5);
    assert_int_equal(hits, 9);
    assert_int_equal(sb_jwt_verify_cached(cache, tokens[0], SECRET, NOW, &c, err, sizeof err), SB_OK);
    sb_claims_close(&c);
    sb_jwt_cache_counts(cache, &hits, &misses);
    assert_int_equal(misses, 6);
    for (int i = 0; i < 16; i++) free(tokens[i]);
    sb_jwt_cache_free(cache);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mint_verify_roundtrip),
        cmocka_unit_test(test_hs256_from_libjwt_accepted),
        cmocka_unit_test(test_other_algorithms_refused),
        cmocka_unit_test(test_signature_checks),
        cmocka_unit_test(test_claims_refused),
        cmocka_unit_test(test_ambiguous_tokens_refused),
        cmocka_unit_test(test_nbf_in_the_past_accepted),
        cmocka_unit_test(test_malformed_tokens),
        cmocka_unit_test(test_bearer_header),
        cmocka_unit_test(test_mint_refuses),
        cmocka_unit_test(test_cache_same_answers),
        cmocka_unit_test(test_cache_collisions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
