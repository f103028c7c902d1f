/* Upstash REST transport (rest.h).
 *
 * Request: each RESP command of the batch ("*N\r\n" then "$len\r\n<bytes>\r\n" per argument,
 * as sb_batch holds them) is decoded into a cJSON array of strings; one command is POSTed to
 * the base URL, several to /pipeline as an array of arrays. Reply: the body is parsed with
 * cJSON; {"result":X} becomes a reply tree (null → NIL, number → INTEGER, "OK" → STATUS,
 * other strings → STRING after base64 decoding, arrays → ARRAY), {"error":"…"} an ERROR.
 * HTTP 200 and 400 carry such bodies (400: the command failed); 401 is a bad token; any other
 * status, or a body of another shape, is a transport failure. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <openssl/evp.h>
#include "rest.h"
#include "switchboard/error.h"

#define SB_REST_TIMEOUT_MS 10000
#define SB_REST_CONNECT_MS 5000

struct sb_rest {
    CURL *curl;
    struct curl_slist *headers;
    char *url;          /* base URL */
    char *pipeline_url; /* base URL + "/pipeline" */
    int timeout_ms;
    char *body;         /* the last response */
    size_t len, cap;
};

static size_t sb_rest_write(char *data, size_t size, size_t n, void *ud) {
    sb_rest_t *t = ud;
    size_t add = size * n;
    if (t->len + add + 1 > t->cap) {
        size_t cap = (t->len + add + 1) * 2;
        char *b = realloc(t->body, cap);
        if (!b) return 0; /* libcurl fails the transfer */
        t->body = b;
        t->cap = cap;
    }
    memcpy(t->body + t->len, data, add);
    t->len += add;
    t->body[t->len] = '\0';
    return add;
}

sb_rest_t *sb_rest_create(const char *url, const char *token) {
    sb_rest_t *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    size_t ulen = strlen(url);
    while (ulen && url[ulen - 1] == '/') ulen--;
    char *auth = malloc(strlen(token) + 32);
    t->url = strndup(url, ulen);
    t->pipeline_url = malloc(ulen + sizeof "/pipeline");
    t->curl = curl_easy_init();
    if (auth) sprintf(auth, "Authorization: Bearer %s", token);
    struct curl_slist *h = auth ? curl_slist_append(NULL, auth) : NULL;
    if (h) h = curl_slist_append(h, "Content-Type: application/json");
    if (h) h = curl_slist_append(h, "Upstash-Encoding: base64");
    t->headers = h;
    free(auth);
    if (!t->url || !t->pipeline_url || !t->curl || !h) {
        sb_rest_free(t);
        return NULL;
    }
    snprintf(t->pipeline_url, ulen + sizeof "/pipeline", "%s/pipeline", t->url);
    curl_easy_setopt(t->curl, CURLOPT_HTTPHEADER, t->headers);
    curl_easy_setopt(t->curl, CURLOPT_WRITEFUNCTION, sb_rest_write);
    curl_easy_setopt(t->curl, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(t->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(t->curl, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(t->curl, CURLOPT_CONNECTTIMEOUT_MS, (long)SB_REST_CONNECT_MS);
    curl_easy_setopt(t->curl, CURLOPT_PROTOCOLS_STR, "http,https");
    return t;
}

void sb_rest_free(sb_rest_t *t) {
    if (!t) return;
    if (t->curl) curl_easy_cleanup(t->curl);
    curl_slist_free_all(t->headers);
    free(t->url);
    free(t->pipeline_url);
    free(t->body);
    free(t);
}

void sb_rest_set_timeout(sb_rest_t *t, int ms) { t->timeout_ms = ms; }

/* ---- request: RESP command → JSON array ----------------------------------------------------- */

/* Reads "<type><n>\r\n" at *p (end e); returns n or -1. */
static long sb_rest_resp_header(const char **p, const char *e, char type) {
    const char *s = *p;
    if (s >= e || *s != type) return -1;
    char *end;
    long n = strtol(s + 1, &end, 10);
    if (end + 1 >= e || end[0] != '\r' || end[1] != '\n' || n < 0) return -1;
    *p = end + 2;
    return n;
}

/* The cJSON array of the RESP command cmd (len bytes), or NULL (malformed, a NUL byte in an
 * argument, or out of memory: *why says which). */
static cJSON *sb_rest_command(const char *cmd, size_t len, const char **why) {
    const char *p = cmd, *e = cmd + len;
    long argc = sb_rest_resp_header(&p, e, '*');
    cJSON *arr = argc > 0 ? cJSON_CreateArray() : NULL;
    *why = "a malformed command";
    for (long i = 0; arr && i < argc; i++) {
        long n = sb_rest_resp_header(&p, e, '$');
        if (n < 0 || e - p < n + 2) goto fail;
        if (memchr(p, '\0', (size_t)n)) {
            *why = "an argument with a NUL byte (not representable over REST)";
            goto fail;
        }
        char *s = strndup(p, (size_t)n);
        cJSON *item = s ? cJSON_CreateString(s) : NULL;
        free(s);
        if (!item) goto fail;
        cJSON_AddItemToArray(arr, item);
        p += n + 2;
    }
    return arr;
fail:
    cJSON_Delete(arr);
    return NULL;
}

/* The request body for b, or NULL with *why. */
static char *sb_rest_body(const sb_batch_t *b, const char **why) {
    size_t n = sb_batch_count(b), len;
    cJSON *root = n > 1 ? cJSON_CreateArray() : NULL;
    if (n > 1 && !root) return *why = "out of memory", NULL;
    for (size_t i = 0; i < n; i++) {
        const char *resp = sb_batch_cmd(b, i, &len);
        cJSON *cmd = sb_rest_command(resp, len, why);
        if (!cmd) {
            cJSON_Delete(root);
            return NULL;
        }
        if (n == 1) root = cmd;
        else cJSON_AddItemToArray(root, cmd);
    }
    char *body = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!body) *why = "out of memory";
    return body;
}

/* ---- reply: JSON → redisReply ------------------------------------------------------------- */

static redisReply *sb_rest_reply_new(int type) {
    redisReply *r = calloc(1, sizeof *r);
    if (r) r->type = type;
    return r;
}

/* A STRING/STATUS/ERROR reply holding a copy of s (len bytes). */
static redisReply *sb_rest_reply_str(int type, const char *s, size_t len) {
    redisReply *r = sb_rest_reply_new(type);
    if (r && !(r->str = malloc(len + 1))) {
        free(r);
        return NULL;
    }
    if (!r) return NULL;
    memcpy(r->str, s, len);
    r->str[len] = '\0';
    r->len = len;
    return r;
}

/* Decodes base64 text into a STRING reply (NULL when it is not base64). */
static redisReply *sb_rest_reply_b64(const char *s) {
    size_t n = strlen(s);
    if (n % 4) return NULL;
    unsigned char *out = malloc(n / 4 * 3 + 1);
    if (!out) return NULL;
    int got = n ? EVP_DecodeBlock(out, (const unsigned char *)s, (int)n) : 0;
    redisReply *r = NULL;
    if (got >= 0) {
        size_t pad = (n && s[n - 1] == '=') + (n > 1 && s[n - 2] == '=');
        r = sb_rest_reply_str(REDIS_REPLY_STRING, (const char *)out, (size_t)got - pad);
    }
    free(out);
    return r;
}

static redisReply *sb_rest_reply_from(const cJSON *v) {
    if (cJSON_IsNull(v)) return sb_rest_reply_new(REDIS_REPLY_NIL);
    if (cJSON_IsNumber(v)) {
        redisReply *r = sb_rest_reply_new(REDIS_REPLY_INTEGER);
        if (r) r->integer = (long long)v->valuedouble;
        return r;
    }
    if (cJSON_IsString(v))
        return !strcmp(v->valuestring, "OK") ? sb_rest_reply_str(REDIS_REPLY_STATUS, "OK", 2)
                                             : sb_rest_reply_b64(v->valuestring);
    if (!cJSON_IsArray(v)) return NULL;
    redisReply *r = sb_rest_reply_new(REDIS_REPLY_ARRAY);
    size_t n = (size_t)cJSON_GetArraySize(v), i = 0;
    if (!r) return NULL;
    if (n && !(r->element = calloc(n, sizeof *r->element))) {
        free(r);
        return NULL;
    }
    const cJSON *item;
    cJSON_ArrayForEach(item, v) {
        if (!(r->element[i] = sb_rest_reply_from(item))) {
            r->elements = i;
            freeReplyObject(r);
            return NULL;
        }
        i++;
    }
    r->elements = n;
    return r;
}

/* One {"result":…} / {"error":"…"} object as a reply (NULL: another shape). */
static redisReply *sb_rest_reply_of(const cJSON *o) {
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(o, "error");
    if (cJSON_IsString(e)) return sb_rest_reply_str(REDIS_REPLY_ERROR, e->valuestring,
                                                    strlen(e->valuestring));
    const cJSON *res = cJSON_GetObjectItemCaseSensitive(o, "result");
    return res ? sb_rest_reply_from(res) : NULL;
}

/* Fills replies from the body (n commands). Returns 0, or SB_EREDIS (slots all NULL). */
static int sb_rest_replies(const char *body, size_t n, redisReply **replies) {
    cJSON *doc = cJSON_Parse(body);
    int ok = doc && (n == 1 ? cJSON_IsObject(doc)
                            : cJSON_IsArray(doc) && (size_t)cJSON_GetArraySize(doc) == n);
    for (size_t i = 0; ok && i < n; i++)
        ok = (replies[i] = sb_rest_reply_of(n == 1 ? doc : cJSON_GetArrayItem(doc, (int)i))) != NULL;
    cJSON_Delete(doc);
    if (ok) return SB_OK;
    sb_replies_free(replies, n);
    return SB_EREDIS;
}

int sb_rest_run(sb_rest_t *t, const sb_batch_t *b, redisReply **replies, char *err,
                size_t errlen) {
    size_t n = sb_batch_count(b);
    for (size_t i = 0; i < n; i++) replies[i] = NULL;
    const char *why = NULL;
    char *body = n ? sb_rest_body(b, &why) : NULL;
    if (!body) {
        snprintf(err, errlen, "cannot send over REST: %s", why ? why : "no command");
        return SB_EINVAL;
    }
    t->len = 0;
    curl_easy_setopt(t->curl, CURLOPT_URL, n == 1 ? t->url : t->pipeline_url);
    curl_easy_setopt(t->curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(t->curl, CURLOPT_TIMEOUT_MS,
                     (long)(t->timeout_ms > 0 ? t->timeout_ms : SB_REST_TIMEOUT_MS));
    CURLcode cc = curl_easy_perform(t->curl);
    free(body);
    long status = 0;
    curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &status);
    if (cc != CURLE_OK) {
        snprintf(err, errlen, "Upstash REST request failed: %s", curl_easy_strerror(cc));
        return SB_EREDIS;
    }
    if (status == 401) {
        snprintf(err, errlen, "Upstash refused the token (HTTP 401): check "
                 "UPSTASH_REDIS_REST_TOKEN");
        return SB_EREDIS;
    }
    if ((status != 200 && status != 400) || !t->body ||
        sb_rest_replies(t->body, n, replies) != SB_OK) {
        snprintf(err, errlen, "Upstash REST answered HTTP %ld with %s", status,
                 status == 200 || status == 400 ? "a body that is not its JSON" : "an error");
        return SB_EREDIS;
    }
    return SB_OK;
}
