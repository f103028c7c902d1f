/* HTTP route matching: a table of (method, pattern) rows instead of a switch.
 *
 * A pattern is a path of literal segments and `{name}` parameters, e.g.
 * "/agent/{type}/{jobId}". Matching walks the table in order; the first row whose pattern
 * and method both match wins, so list literal rows before parameter rows that overlap them
 * ("/agent/{type}/jobs" before "/agent/{type}/{jobId}"). When the path matches rows but
 * none with the method, the result says which methods would have (for 405 + Allow). Pure
 * functions, no allocation: parameter values are copied into the match struct. */
#ifndef SB_ROUTER_H
#define SB_ROUTER_H

#include <stddef.h>

#define SB_ROUTE_MAX_PARAMS 4
#define SB_ROUTE_MAX_SEGS 16
#define SB_ROUTE_PARAM_MAX 256 /* longest parameter value; longer segments do not match */

typedef enum {
    SB_HTTP_GET = 1 << 0,
    SB_HTTP_POST = 1 << 1,
    SB_HTTP_PUT = 1 << 2,
    SB_HTTP_DELETE = 1 << 3,
    SB_HTTP_PATCH = 1 << 4,
    SB_HTTP_OPTIONS = 1 << 5,
    SB_HTTP_HEAD = 1 << 6,
} sb_http_method_t;

typedef struct {
    int method;          /* one sb_http_method_t */
    const char *pattern; /* "/agent/{type}/jobs" */
    const void *data;    /* the caller's: handler, labels, required role... */
} sb_route_t;

typedef enum { SB_ROUTE_FOUND = 0, SB_ROUTE_NOT_FOUND, SB_ROUTE_BAD_METHOD } sb_route_rc_t;

typedef struct {
    const sb_route_t *route; /* the matching row when SB_ROUTE_FOUND, else NULL */
    int allowed;             /* methods of every row whose pattern matched the path */
    size_t nparams;
    struct {
        char name[32];
        char value[SB_ROUTE_PARAM_MAX + 1];
    } params[SB_ROUTE_MAX_PARAMS];
} sb_route_match_t;

/* Matches method + path (no query string) against table[0..n). Fills *m. */
sb_route_rc_t sb_route_match(const sb_route_t *table, size_t n, int method, const char *path,
                             sb_route_match_t *m);
/* The value of parameter name, or NULL. */
const char *sb_route_param(const sb_route_match_t *m, const char *name);

/* The API path of a request path served under /api/v1 and /api: "/api/v1/agent/x" → "/agent/x".
 * Returns a pointer into path, or NULL when path is under neither prefix. */
const char *sb_route_api_path(const char *path);

/* "GET" → SB_HTTP_GET ...; 0 for anything else. */
int sb_http_method_parse(const char *s);
/* Writes "GET, POST" for a method mask into buf. Returns buf. */
char *sb_http_methods_str(int mask, char *buf, size_t len);

#endif
