/* Where Redis is (config.h): the library's connection options, their defaults and the Redis
 * URL parser. The command line's settings table lives with the program (src/cli/settings.c);
 * the library only ever sees an sb_redis_addr_t filled by whoever embeds it. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "switchboard/config.h"
#include "switchboard/error.h"
#include "switchboard/fmt.h"

static int sb_set_str(char **slot, const char *value) {
    char *copy = value ? strdup(value) : NULL;
    if (value && !copy) return SB_ENOMEM;
    free(*slot);
    *slot = copy;
    return SB_OK;
}

void sb_redis_addr_init(sb_redis_addr_t *a) {
    memset(a, 0, sizeof *a);
    a->port = SB_REDIS_DEFAULT_PORT;
}

/* Decodes %XX escapes of a URL component into a new string. NULL on bad escapes / ENOMEM. */
static char *sb_url_unescape(const char *s, size_t len) {
    char *out = malloc(len + 1), *o = out;
    if (!out) return NULL;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '%') {
            unsigned v;
            if (i + 2 >= len || sscanf(s + i + 1, "%2x", &v) != 1) goto bad;
            *o++ = (char)v;
            i += 2;
        } else {
            *o++ = s[i];
        }
    }
    *o = '\0';
    return out;
bad:
    free(out);
    return NULL;
}

static int sb_url_tcp(const char *rest, sb_redis_addr_t *a, char *err, size_t errlen) {
    const char *at = strrchr(rest, '@');
    const char *hostpart = rest;
    if (at) {
        const char *colon = memchr(rest, ':', (size_t)(at - rest));
        const char *pass = colon ? colon + 1 : rest;
        size_t ulen = colon ? (size_t)(colon - rest) : 0;
        free(a->user);
        free(a->password);
        a->user = ulen ? sb_url_unescape(rest, ulen) : NULL;
        a->password = sb_url_unescape(pass, (size_t)(at - pass));
        if ((ulen && !a->user) || !a->password) {
            sb_errf(err, errlen, "bad escape in user or password");
            return SB_EINVAL;
        }
        if (a->user && strcmp(a->user, "default") == 0) { free(a->user); a->user = NULL; }
        hostpart = at + 1;
    }
    const char *slash = strchr(hostpart, '/');
    size_t hlen = slash ? (size_t)(slash - hostpart) : strlen(hostpart);
    char host[256];
    if (hlen == 0 || hlen >= sizeof host) {
        sb_errf(err, errlen, "missing or too long host");
        return SB_EINVAL;
    }
    memcpy(host, hostpart, hlen);
    host[hlen] = '\0';
    long port = 6379, db = 0;
    char *pcolon;
    if (host[0] == '[') { /* [::1]:6379 */
        char *close = strchr(host, ']');
        if (!close || (close[1] && close[1] != ':')) {
            sb_errf(err, errlen, "bad [ipv6] host");
            return SB_EINVAL;
        }
        pcolon = close[1] ? close + 1 : NULL;
        *close = '\0';
        memmove(host, host + 1, strlen(host + 1) + 1); /* the ":port" tail stays in place */
    } else {
        pcolon = strrchr(host, ':');
    }
    if (pcolon) {
        *pcolon = '\0';
        if (sb_fmt_parse_long(pcolon + 1, 1, 65535, &port) != SB_OK) {
            sb_errf(err, errlen, "port must be 1-65535");
            return SB_EINVAL;
        }
    }
    if (slash && slash[1] && sb_fmt_parse_long(slash + 1, 0, 15, &db) != SB_OK) {
        sb_errf(err, errlen, "database must be 0-15");
        return SB_EINVAL;
    }
    if (sb_set_str(&a->host, host) != SB_OK) return SB_ENOMEM;
    free(a->unix_path);
    a->unix_path = NULL;
    a->port = (int)port;
    a->db = (int)db;
    return SB_OK;
}

int sb_redis_url_parse(const char *url, sb_redis_addr_t *a, char *err, size_t errlen) {
    int tls = strncmp(url, "rediss://", 9) == 0;
    if (tls || strncmp(url, "redis://", 8) == 0) {
        int rc = sb_url_tcp(url + 8 + tls, a, err, errlen);
        if (rc == SB_OK) a->tls.enabled = tls;
        return rc;
    }
    if (strncmp(url, "unix://", 7) == 0) {
        const char *path = url + 7, *q = strchr(path, '?');
        size_t plen = q ? (size_t)(q - path) : strlen(path);
        long db = 0;
        if (plen == 0 || path[0] != '/') {
            sb_errf(err, errlen, "unix:// needs an absolute path");
            return SB_EINVAL;
        }
        if (q && (strncmp(q, "?db=", 4) != 0 || sb_fmt_parse_long(q + 4, 0, 15, &db) != SB_OK)) {
            sb_errf(err, errlen, "only ?db=0-15 may follow the socket path");
            return SB_EINVAL;
        }
        char *p = strndup(path, plen);
        if (!p) return SB_ENOMEM;
        free(a->unix_path);
        a->unix_path = p;
        a->db = (int)db;
        a->tls.enabled = 0;
        return SB_OK;
    }
    sb_errf(err, errlen, "expected redis://host:port[/db], rediss://... (TLS) or unix:///path");
    return SB_EINVAL;
}

void sb_redis_addr_free(sb_redis_addr_t *a) {
    if (!a) return;
    free(a->host);
    free(a->unix_path);
    free(a->user);
    free(a->password);
    free(a->sentinels);
    free(a->sentinel_master);
    free(a->sentinel_password);
    free(a->rest_url);
    free(a->rest_token);
    free(a->cluster);
    free(a->tls.ca_file);
    free(a->tls.cert_file);
    free(a->tls.key_file);
    free(a->tls.sni);
    a->rest_url = a->rest_token = a->cluster = NULL;
    a->host = a->unix_path = a->user = a->password = NULL;
    a->sentinels = a->sentinel_master = a->sentinel_password = NULL;
    a->tls.ca_file = a->tls.cert_file = a->tls.key_file = a->tls.sni = NULL;
}

/* The host a TCP address without one connects to. */
static const char *sb_redis_host(const sb_redis_addr_t *a) {
    return a->host ? a->host : a->unix_path ? NULL : SB_REDIS_DEFAULT_HOST;
}

int sb_redis_addr_copy(sb_redis_addr_t *dst, const sb_redis_addr_t *src) {
    *dst = *src;
    dst->host = dst->unix_path = dst->user = dst->password = NULL;
    dst->sentinels = dst->sentinel_master = dst->sentinel_password = NULL;
    dst->rest_url = dst->rest_token = dst->cluster = NULL;
    dst->tls.ca_file = dst->tls.cert_file = dst->tls.key_file = dst->tls.sni = NULL;
    if (sb_set_str(&dst->host, sb_redis_host(src)) || sb_set_str(&dst->unix_path, src->unix_path) ||
        sb_set_str(&dst->user, src->user) || sb_set_str(&dst->password, src->password) ||
        sb_set_str(&dst->sentinels, src->sentinels) ||
        sb_set_str(&dst->sentinel_master, src->sentinel_master) ||
        sb_set_str(&dst->sentinel_password, src->sentinel_password) ||
        sb_set_str(&dst->rest_url, src->rest_url) || sb_set_str(&dst->rest_token, src->rest_token) ||
        sb_set_str(&dst->cluster, src->cluster) ||
        sb_set_str(&dst->tls.ca_file, src->tls.ca_file) ||
        sb_set_str(&dst->tls.cert_file, src->tls.cert_file) ||
        sb_set_str(&dst->tls.key_file, src->tls.key_file) ||
        sb_set_str(&dst->tls.sni, src->tls.sni)) {
        sb_redis_addr_free(dst);
        return SB_ENOMEM;
    }
    return SB_OK;
}

const char *sb_redis_addr_str(const sb_redis_addr_t *a, char *buf, size_t len) {
    if (a->rest_url)
        snprintf(buf, len, "%s (Upstash REST)", a->rest_url);
    else if (a->cluster)
        snprintf(buf, len, "cluster %s", a->cluster);
    else if (a->sentinels && a->sentinel_master)
        snprintf(buf, len, "master %s via Sentinels %s", a->sentinel_master, a->sentinels);
    else if (a->sentinels) snprintf(buf, len, "Sentinels %s", a->sentinels);
    else if (a->unix_path) snprintf(buf, len, "%s", a->unix_path);
    else snprintf(buf, len, "%s:%d", sb_redis_host(a), a->port);
    return buf;
}

