/* JWT HS256 verification and minting over libjwt 1.10 (see include/switchboard/jwt.h).
 *
 * libjwt verifies the HMAC but trusts the token's own `alg` header, checks no time claim,
 * ignores `crit`, and lets a claim given twice silently take its last value. So this module
 * decodes the header itself first (alg must be exactly "HS256", no `crit`, no name twice),
 * lets libjwt check the signature, re-checks the algorithm libjwt saw, and then decodes the
 * signed payload itself and reads every claim from it with cJSON, so that a name given twice
 * is refused and types are checked too (an `exp` given as a string is refused, not read as
 * 0). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <jwt.h>
#include <cjson/cJSON.h>
#include "switchboard/error.h"
#include "switchboard/json.h"
#include "switchboard/jwt.h"
#include "switchboard/utf8.h"

#define SB_JWT_HEADER_MAX 1024 /* a decoded JOSE header longer than this is refused */

static const struct {
    const char *name;
    sb_role_t role;
} sb_roles[] = {{"user", SB_ROLE_USER}, {"agent", SB_ROLE_AGENT}, {"admin", SB_ROLE_ADMIN}};

sb_role_t sb_role_parse(const char *s) {
    for (size_t i = 0; s && i < sizeof sb_roles / sizeof sb_roles[0]; i++)
        if (strcmp(s, sb_roles[i].name) == 0) return sb_roles[i].role;
    return SB_ROLE_NONE;
}

const char *sb_role_name(sb_role_t role) {
    for (size_t i = 0; i < sizeof sb_roles / sizeof sb_roles[0]; i++)
        if (sb_roles[i].role == role) return sb_roles[i].name;
    return "none";
}

static int sb_is_ows(char c) { return c == ' ' || c == '\t'; }

const char *sb_jwt_bearer(const char *header, size_t *len) {
    if (!header || strncasecmp(header, "Bearer", 6) != 0 || !sb_is_ows(header[6])) return NULL;
    const char *t = header + 6;
    while (sb_is_ows(*t)) t++;
    size_t n = strlen(t);
    while (n && sb_is_ows(t[n - 1])) n--;
    if (!n) return NULL;
    *len = n;
    return t;
}

void sb_claims_close(sb_claims_t *c) {
    if (!c) return;
    free(c->sub);
    free(c->public_key);
    free(c->name);
    free(c->email);
    free(c->department_id);
    free(c->department);
    memset(c, 0, sizeof *c);
}

int sb_claims_copy(const sb_claims_t *in, sb_claims_t *out) {
    memset(out, 0, sizeof *out);
    out->role = in->role;
    out->exp = in->exp;
    out->nbf = in->nbf;
    const char *src[] = {in->sub, in->public_key, in->name, in->email, in->department_id,
                         in->department};
    char **dst[] = {&out->sub, &out->public_key, &out->name, &out->email, &out->department_id,
                    &out->department};
    for (size_t i = 0; i < sizeof src / sizeof src[0]; i++) {
        if (src[i] && !(*dst[i] = strdup(src[i]))) {
            sb_claims_close(out);
            return SB_ENOMEM;
        }
    }
    return SB_OK;
}

static int sb_fail(char *err, size_t errlen, const char *why) {
    if (err && errlen) snprintf(err, errlen, "%s", why);
    return SB_EINVAL;
}

/* ---- header pre-check ------------------------------------------------------------------- */

static int sb_b64url_val(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
}

/* Decodes unpadded base64url s[0..len) into out (cap bytes). Returns the decoded length or
 * -1 on a bad character, a bad length or overflow. */
static long sb_b64url_decode(const char *s, size_t len, unsigned char *out, size_t cap) {
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0;
    if (len % 4 == 1) return -1;
    for (size_t i = 0; i < len; i++) {
        int v = sb_b64url_val((unsigned char)s[i]);
        if (v < 0) return -1;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o == cap) return -1;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    return (long)o;
}

/* Decodes one base64url segment of a token and parses it as a JSON object, held to what
 * bodies are held to: UTF-8, no member name twice in an object (cJSON reads the first, libjwt's
 * jansson and every JavaScript verifier the last: `"role":"user","role":"admin"` would mean
 * two things), no \u0000 in a string (cJSON would cut it short). Returns the document (caller
 * deletes), or NULL with the reason in *why. */
static cJSON *sb_jwt_segment(const char *seg, size_t len, const char *what, char *why,
                             size_t whylen) {
    char buf[SB_JWT_MAX_LEN], member[40];
    long n = sb_b64url_decode(seg, len, (unsigned char *)buf, sizeof buf);
    cJSON *doc = n > 0 && sb_utf8_valid(buf, (size_t)n) ? sb_json_parse(buf, (size_t)n) : NULL;
    const char *dup = doc ? sb_json_duplicate_key(doc) : NULL;
    if (!cJSON_IsObject(doc)) snprintf(why, whylen, "token %s is malformed", what);
    else if (dup) snprintf(why, whylen, "token %s names \"%.32s\" twice", what, dup);
    else if (sb_json_nul_member(buf, (size_t)n, member, sizeof member))
        snprintf(why, whylen, "token %s member \"%s\" holds \\u0000", what, member);
    else return doc;
    cJSON_Delete(doc);
    return NULL;
}

/* Checks the token's shape and its header: alg exactly "HS256", and no `crit` (RFC 7515
 * §4.1.11: a token whose critical extensions the recipient does not understand is invalid,
 * and the gateway understands none). On success *payload points at the payload segment. */
static int sb_jwt_header_ok(const char *token, const char **payload, size_t *plen, char *err,
                            size_t errlen) {
    char why[128];
    const char *dot1 = strchr(token, '.');
    const char *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
    if (!dot1 || !dot2 || strchr(dot2 + 1, '.') || dot2[1] == '\0')
        return sb_fail(err, errlen, "token is not a signed JWT (header.payload.signature)");
    if ((size_t)(dot1 - token) > SB_JWT_HEADER_MAX * 4 / 3 + 4)
        return sb_fail(err, errlen, "token header is malformed");
    cJSON *h = sb_jwt_segment(token, (size_t)(dot1 - token), "header", why, sizeof why);
    if (!h) return sb_fail(err, errlen, why);
    const char *alg = sb_json_str(h, "alg");
    int ok = alg && strcmp(alg, "HS256") == 0;
    int crit = cJSON_GetObjectItemCaseSensitive(h, "crit") != NULL;
    cJSON_Delete(h);
    if (!alg) return sb_fail(err, errlen, "token header is malformed");
    if (!ok) return sb_fail(err, errlen, "token algorithm must be HS256");
    if (crit)
        return sb_fail(err, errlen,
                       "token header lists critical extensions (crit) the gateway does not "
                       "understand");
    *payload = dot1 + 1;
    *plen = (size_t)(dot2 - dot1 - 1);
    return SB_OK;
}

/* ---- claims ------------------------------------------------------------------------------ */

/* Copies an optional string claim. Returns 0, SB_EINVAL (present but not a string), or
 * SB_ENOMEM. */
static int sb_claim_str(const cJSON *grants, const char *name, char **out) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(grants, name);
    if (!it || cJSON_IsNull(it)) return SB_OK;
    if (!cJSON_IsString(it)) return SB_EINVAL;
    return (*out = strdup(it->valuestring)) ? SB_OK : SB_ENOMEM;
}

/* Reads and checks the claims of a verified token. */
static int sb_claims_read(const cJSON *g, int64_t now_s, sb_claims_t *c, char *err,
                          size_t errlen) {
    double exp, nbf;
    if (sb_json_num(g, "exp", &exp) != SB_OK)
        return sb_fail(err, errlen, "token has no numeric exp claim");
    /* compare as doubles: converting an out-of-range double to int64 is undefined */
    if (exp <= (double)now_s) return sb_fail(err, errlen, "token has expired");
    if (cJSON_GetObjectItemCaseSensitive(g, "nbf")) {
        if (sb_json_num(g, "nbf", &nbf) != SB_OK)
            return sb_fail(err, errlen, "token nbf claim is not a number");
        if (nbf > (double)now_s) return sb_fail(err, errlen, "token is not valid yet (nbf)");
        c->nbf = nbf < -9.2e18 ? INT64_MIN : (int64_t)nbf;
    }
    c->exp = exp > 9.2e18 ? INT64_MAX : (int64_t)exp;
    c->role = sb_role_parse(sb_json_str(g, "role"));
    if (c->role == SB_ROLE_NONE)
        return sb_fail(err, errlen, "token role must be user, agent or admin");
    static const struct {
        const char *name;
        size_t off;
    } strs[] = {
        {"sub", offsetof(sb_claims_t, sub)},
        {"publicKey", offsetof(sb_claims_t, public_key)},
        {"name", offsetof(sb_claims_t, name)},
        {"email", offsetof(sb_claims_t, email)},
        {"department_id", offsetof(sb_claims_t, department_id)},
        {"department", offsetof(sb_claims_t, department)},
    };
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
        int rc = sb_claim_str(g, strs[i].name, (char **)((char *)c + strs[i].off));
        if (rc == SB_ENOMEM) return sb_fail(err, errlen, "out of memory");
        if (rc != SB_OK) {
            char why[96];
            snprintf(why, sizeof why, "token claim %s must be a string", strs[i].name);
            return sb_fail(err, errlen, why);
        }
    }
    return SB_OK;
}

int sb_jwt_verify(const char *token, const char *secret, int64_t now_s, sb_claims_t *c,
                  char *err, size_t errlen) {
    memset(c, 0, sizeof *c);
    if (!token || !*token) return sb_fail(err, errlen, "missing token");
    if (!secret || !*secret) return sb_fail(err, errlen, "no JWT secret is configured");
    if (strlen(token) > SB_JWT_MAX_LEN) return sb_fail(err, errlen, "token is too long");
    const char *payload = NULL;
    size_t plen = 0;
    char why[128];
    int rc = sb_jwt_header_ok(token, &payload, &plen, err, errlen);
    if (rc != SB_OK) return rc;
    /* the claims are read from the signed bytes themselves, not from libjwt's re-encoding of
     * them (in which a name given twice has already become one); decoded before libjwt sees
     * them so that a refusal names its reason (libjwt fails alike on all of them) */
    cJSON *grants = sb_jwt_segment(payload, plen, "claims", why, sizeof why);
    if (!grants) return sb_fail(err, errlen, why);
    jwt_t *jwt = NULL;
    if (jwt_decode(&jwt, token, (const unsigned char *)secret, (int)strlen(secret)) != 0 || !jwt)
        rc = sb_fail(err, errlen, "token signature is invalid");
    else if (jwt_get_alg(jwt) != JWT_ALG_HS256)
        rc = sb_fail(err, errlen, "token algorithm must be HS256");
    else
        rc = sb_claims_read(grants, now_s, c, err, errlen);
    jwt_free(jwt);
    cJSON_Delete(grants);
    if (rc != SB_OK) sb_claims_close(c);
    return rc;
}

/* ---- minting ----------------------------------------------------------------------------- */

static cJSON *sb_claims_json(const sb_claims_t *c, int64_t now_s) {
    cJSON *o = cJSON_CreateObject();
    const char *names[] = {"sub", "publicKey", "name", "email", "department_id", "department"};
    const char *vals[] = {c->sub, c->public_key, c->name, c->email, c->department_id,
                          c->department};
    int ok = o && cJSON_AddStringToObject(o, "role", sb_role_name(c->role)) &&
             cJSON_AddNumberToObject(o, "iat", (double)now_s) &&
             cJSON_AddNumberToObject(o, "exp", (double)c->exp) &&
             (!c->nbf || cJSON_AddNumberToObject(o, "nbf", (double)c->nbf));
    for (size_t i = 0; ok && i < sizeof names / sizeof names[0]; i++)
        if (vals[i]) ok = cJSON_AddStringToObject(o, names[i], vals[i]) != NULL;
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

char *sb_jwt_mint(const sb_claims_t *c, const char *secret, int64_t now_s, char *err,
                  size_t errlen) {
    if (!secret || !*secret) {
        sb_fail(err, errlen, "JWT_SECRET is not set");
        return NULL;
    }
    if (c->role == SB_ROLE_NONE) {
        sb_fail(err, errlen, "role must be user, agent or admin");
        return NULL;
    }
    cJSON *claims = sb_claims_json(c, now_s);
    char *json = claims ? sb_json_print(claims) : NULL;
    cJSON_Delete(claims);
    jwt_t *jwt = NULL;
    char *token = NULL;
    if (json && jwt_new(&jwt) == 0 &&
        jwt_set_alg(jwt, JWT_ALG_HS256, (const unsigned char *)secret, (int)strlen(secret)) == 0 &&
        jwt_add_grants_json(jwt, json) == 0)
        token = jwt_encode_str(jwt);
    jwt_free(jwt);
    free(json);
    if (!token) sb_fail(err, errlen, "could not encode the token");
    return token;
}
