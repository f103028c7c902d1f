/* Route table matching (see router.h): both the pattern and the path are
 * walked segment by segment; `{name}` segments capture, the others compare literally. */
#include <stdio.h>
#include <string.h>
#include "gateway/router.h"

static const struct {
    const char *name;
    int method;
} sb_methods[] = {
    {"GET", SB_HTTP_GET},       {"POST", SB_HTTP_POST},       {"PUT", SB_HTTP_PUT},
    {"DELETE", SB_HTTP_DELETE}, {"PATCH", SB_HTTP_PATCH},     {"OPTIONS", SB_HTTP_OPTIONS},
    {"HEAD", SB_HTTP_HEAD},
};
#define SB_NMETHODS (sizeof sb_methods / sizeof sb_methods[0])

int sb_http_method_parse(const char *s) {
    for (size_t i = 0; s && i < SB_NMETHODS; i++)
        if (strcmp(s, sb_methods[i].name) == 0) return sb_methods[i].method;
    return 0;
}

char *sb_http_methods_str(int mask, char *buf, size_t len) {
    size_t o = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < SB_NMETHODS; i++) {
        if (!(mask & sb_methods[i].method)) continue;
        int w = snprintf(buf + o, len - o, "%s%s", o ? ", " : "", sb_methods[i].name);
        if (w < 0 || (size_t)w >= len - o) break;
        o += (size_t)w;
    }
    return buf;
}

const char *sb_route_api_path(const char *path) {
    static const char *const prefixes[] = {"/api/v1", "/api"};
    for (size_t i = 0; i < 2; i++) {
        size_t n = strlen(prefixes[i]);
        if (strncmp(path, prefixes[i], n) == 0 && (path[n] == '/' || path[n] == '\0'))
            return path[n] ? path + n : "/";
    }
    return NULL;
}

/* Splits "/a/b" into segments (pointer + length). Returns the count, or -1 for a path that
 * does not start with '/', has an empty segment, or has too many. "/" has zero segments. */
static int sb_split(const char *path, const char *seg[], size_t len[]) {
    if (path[0] != '/') return -1;
    if (path[1] == '\0') return 0;
    int n = 0;
    const char *s = path + 1;
    for (;;) {
        const char *slash = strchr(s, '/');
        size_t l = slash ? (size_t)(slash - s) : strlen(s);
        if (l == 0 || n == SB_ROUTE_MAX_SEGS) return -1;
        seg[n] = s;
        len[n++] = l;
        if (!slash) return n;
        s = slash + 1;
    }
}

/* Matches one pattern against split path segments, capturing into m (params reset). */
static int sb_pattern_match(const char *pattern, const char *seg[], const size_t len[], int n,
                            sb_route_match_t *m) {
    const char *pseg[SB_ROUTE_MAX_SEGS];
    size_t plen[SB_ROUTE_MAX_SEGS];
    int pn = sb_split(pattern, pseg, plen);
    if (pn != n) return 0;
    m->nparams = 0;
    for (int i = 0; i < n; i++) {
        int is_param = plen[i] > 2 && pseg[i][0] == '{' && pseg[i][plen[i] - 1] == '}';
        if (!is_param) {
            if (plen[i] != len[i] || memcmp(pseg[i], seg[i], len[i]) != 0) return 0;
            continue;
        }
        if (m->nparams == SB_ROUTE_MAX_PARAMS || len[i] > SB_ROUTE_PARAM_MAX ||
            plen[i] - 2 >= sizeof m->params[0].name)
            return 0;
        snprintf(m->params[m->nparams].name, sizeof m->params[0].name, "%.*s",
                 (int)(plen[i] - 2), pseg[i] + 1);
        memcpy(m->params[m->nparams].value, seg[i], len[i]);
        m->params[m->nparams].value[len[i]] = '\0';
        m->nparams++;
    }
    return 1;
}

sb_route_rc_t sb_route_match(const sb_route_t *table, size_t n, int method, const char *path,
                             sb_route_match_t *m) {
    const char *seg[SB_ROUTE_MAX_SEGS];
    size_t len[SB_ROUTE_MAX_SEGS];
    memset(m, 0, sizeof *m);
    int nseg = path ? sb_split(path, seg, len) : -1;
    if (nseg < 0) return SB_ROUTE_NOT_FOUND;
    sb_route_match_t found;
    for (size_t i = 0; i < n; i++) {
        if (!sb_pattern_match(table[i].pattern, seg, len, nseg, &found)) continue;
        m->allowed |= table[i].method;
        if (table[i].method == method && !m->route) {
            int allowed = m->allowed;
            *m = found;
            m->route = &table[i];
            m->allowed = allowed;
        }
    }
    if (m->route) return SB_ROUTE_FOUND;
    m->nparams = 0;
    return m->allowed ? SB_ROUTE_BAD_METHOD : SB_ROUTE_NOT_FOUND;
}

const char *sb_route_param(const sb_route_match_t *m, const char *name) {
    for (size_t i = 0; i < m->nparams; i++)
        if (strcmp(m->params[i].name, name) == 0) return m->params[i].value;
    return NULL;
}
