/* The Upstash REST transport under the blocking client (redis.h; library-internal).
 *
 * With UPSTASH_REDIS_REST_URL / _TOKEN (sb_redis_addr_t rest_url, rest_token) an sb_redis_t
 * sends its commands over HTTPS instead of RESP over TCP, so the verbs and the library's
 * callers do not change. Every call is one HTTP request on one libcurl easy handle (kept
 * alive between requests): a single command goes as POST {url}/ with the JSON array
 * ["CMD","arg",…], a batch of several as POST {url}/pipeline with an array of such arrays.
 * Atomic steps are already scripts (EVALSHA, EVAL after NOSCRIPT), which go through as they
 * are. Commands arrive in the RESP bytes the batch holds and are turned back into argument
 * arrays here; replies ({"result":…} / {"error":…}, strings base64-encoded at our request
 * with the Upstash-Encoding header) become hiredis redisReply trees allocated the way hiredis
 * 0.14 frees them, so callers free them with freeReplyObject as usual.
 *
 * Nothing that needs a held connection works here: SUBSCRIBE, blocking reads, MULTI (a
 * REST request is stateless). Arguments must be text without NUL bytes (JSON strings). */
#ifndef SB_LIB_REST_H
#define SB_LIB_REST_H

#include <stddef.h>
#include <hiredis/hiredis.h>
#include "switchboard/redis.h"

typedef struct sb_rest sb_rest_t;

/* A transport for url (copied, no trailing slash needed) with token. NULL on allocation
 * failure. */
sb_rest_t *sb_rest_create(const char *url, const char *token);
void sb_rest_free(sb_rest_t *t); /* NULL is fine */
/* Whole-request timeout, ms (0: 10 s). */
void sb_rest_set_timeout(sb_rest_t *t, int ms);

/* Runs every command of b in one request and fills replies[0..count). Returns 0 (each slot
 * a reply; a Redis error is a REDIS_REPLY_ERROR), SB_EINVAL (a command we cannot send: NUL
 * byte in an argument), or SB_EREDIS (HTTP failure, a 401 — the reason names the token —
 * or an answer that is not Upstash's JSON); on error every slot is NULL and err says why. */
int sb_rest_run(sb_rest_t *t, const sb_batch_t *b, redisReply **replies, char *err,
                size_t errlen);

#endif
