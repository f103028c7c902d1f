/* JSON Web Tokens (SPEC §3): HS256 only, exp required, identity claims.
 *
 * Verification checks, in order: size cap, three base64url segments, a header whose `alg` is
 * exactly "HS256" (so `none`, HS384/HS512 and every asymmetric algorithm are refused before
 * libjwt sees the token) and that has no `crit` (no extension is understood), header and
 * claims that are UTF-8 JSON objects with no member name twice and no \u0000 (libjwt would
 * keep the last of two names, cJSON the first), the HMAC signature with libjwt, then the
 * claims ourselves, read from the signed bytes (libjwt 1.10 checks neither exp nor nbf):
 * `exp` a number in the future, `nbf` (if present) not in the future, `role` one of
 * user | agent | admin. Both verify and mint are pure functions of
 * their arguments: no globals, nothing printed. */
#ifndef SB_JWT_H
#define SB_JWT_H

#include <stddef.h>
#include <stdint.h>

#define SB_JWT_MAX_LEN 8192 /* longer tokens are refused without being decoded */

typedef enum { SB_ROLE_NONE = 0, SB_ROLE_USER = 1, SB_ROLE_AGENT = 2, SB_ROLE_ADMIN = 4 } sb_role_t;

/* The claims a token carries. Strings are malloc'd and owned by the struct (NULL when the
 * claim is absent); release them with sb_claims_close(). */
typedef struct {
    char *sub;           /* user id */
    char *public_key;    /* publicKey: owner of jobs, room user:{publicKey} */
    sb_role_t role;
    char *name, *email, *department_id, *department; /* people who are agents */
    int64_t exp;         /* unix seconds */
    int64_t nbf;         /* unix seconds, 0 when absent */
} sb_claims_t;

/* "user" | "agent" | "admin" → role; anything else → SB_ROLE_NONE. */
sb_role_t sb_role_parse(const char *s);
/* The role's name ("user"...), "none" for SB_ROLE_NONE. Static string. */
const char *sb_role_name(sb_role_t role);

/* Verifies token with secret at time now_s (unix seconds). Returns 0 and fills *claims
 * (caller closes); or SB_EINVAL with a sentence in err (e.g. "token has expired") and
 * *claims zeroed. Never allocates on failure. */
int sb_jwt_verify(const char *token, const char *secret, int64_t now_s, sb_claims_t *claims,
                  char *err, size_t errlen);

/* Mints an HS256 token from claims (exp and nbf taken from the struct; nbf 0 = none) plus
 * iat = now_s. Returns a malloc'd token the caller frees, or NULL with a reason in err. */
char *sb_jwt_mint(const sb_claims_t *claims, const char *secret, int64_t now_s, char *err,
                  size_t errlen);

/* The token of an Authorization header value "Bearer <token>": the scheme matched without
 * regard to case, then one or more spaces or tabs (RFC 7235 says 1*SP; tabs and extra spaces
 * are tolerated), then the token, with trailing spaces and tabs left out. Returns a pointer
 * into header and the token's length in *len, or NULL (another scheme, or no token). */
const char *sb_jwt_bearer(const char *header, size_t *len);

void sb_claims_close(sb_claims_t *claims); /* frees the strings; NULL is fine */
/* Deep copy of in into out (caller closes). Returns 0, or SB_ENOMEM with out zeroed. */
int sb_claims_copy(const sb_claims_t *in, sb_claims_t *out);

#endif
