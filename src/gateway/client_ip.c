/* Client address and scheme behind trusted proxies (see client_ip.h). Addresses are parsed
 * with inet_pton, never by hand; CIDR matching compares whole bytes then the masked rest. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "gateway/client_ip.h"

/* ip as 16 bytes (IPv4 kept as 4 bytes, IPv4-mapped IPv6 turned into IPv4). 0 if malformed. */
static int sb_ip_parse(const char *ip, int *family, unsigned char addr[16]) {
    if (inet_pton(AF_INET, ip, addr) == 1) {
        *family = AF_INET;
        return 1;
    }
    if (inet_pton(AF_INET6, ip, addr) != 1) return 0;
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (!memcmp(addr, mapped, sizeof mapped)) {
        memmove(addr, addr + 12, 4);
        *family = AF_INET;
    } else {
        *family = AF_INET6;
    }
    return 1;
}

static int sb_cidr_parse(const char *s, sb_cidr_t *c) {
    char ip[64];
    const char *slash = strchr(s, '/');
    size_t n = slash ? (size_t)(slash - s) : strlen(s);
    if (n == 0 || n >= sizeof ip) return 0;
    memcpy(ip, s, n);
    ip[n] = '\0';
    if (!sb_ip_parse(ip, &c->family, c->addr)) return 0;
    int max = c->family == AF_INET ? 32 : 128;
    c->bits = max;
    if (slash) {
        char *end;
        long b = strtol(slash + 1, &end, 10);
        if (!slash[1] || *end || b < 0 || b > max) return 0;
        c->bits = (int)b;
    }
    return 1;
}

int sb_proxies_parse(sb_proxies_t *p, const char *list, char *err, size_t errlen) {
    p->n = 0;
    for (const char *s = list ? list : ""; *s;) {
        s += strspn(s, ", ");
        size_t n = strcspn(s, ", ");
        if (!n) break;
        char item[96];
        snprintf(item, sizeof item, "%.*s", (int)(n < 95 ? n : 95), s);
        if (p->n == SB_PROXIES_MAX || n > 95 || !sb_cidr_parse(item, &p->v[p->n])) {
            snprintf(err, errlen, "bad setting TRUSTED_PROXIES: '%s' %s", item,
                     p->n == SB_PROXIES_MAX ? "is one CIDR too many (at most 64)"
                                            : "is not an address or CIDR (e.g. 10.0.0.0/8, ::1)");
            p->n = 0;
            return -1;
        }
        p->n++;
        s += n;
    }
    return 0;
}

static int sb_cidr_match(const sb_cidr_t *c, int family, const unsigned char *a) {
    if (c->family != family) return 0;
    int whole = c->bits / 8, rest = c->bits % 8;
    if (memcmp(c->addr, a, (size_t)whole)) return 0;
    if (!rest) return 1;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (c->addr[whole] & mask) == (a[whole] & mask);
}

int sb_proxies_trusted(const sb_proxies_t *p, const char *ip) {
    int family;
    unsigned char a[16];
    if (!p || !p->n || !ip || !sb_ip_parse(ip, &family, a)) return 0;
    for (size_t i = 0; i < p->n; i++)
        if (sb_cidr_match(&p->v[i], family, a)) return 1;
    return 0;
}

/* The i-th entry from the right of an X-Forwarded-For list, trimmed, into out; 0 if none. */
static int sb_xff_from_right(const char *xff, size_t i, char *out, size_t outlen) {
    const char *end = xff + strlen(xff);
    for (;;) {
        const char *start = end;
        while (start > xff && start[-1] != ',') start--;
        if (i-- == 0) {
            while (start < end && (*start == ' ' || *start == '\t')) start++;
            while (end > start && (end[-1] == ' ' || end[-1] == '\t')) end--;
            if (end == start || (size_t)(end - start) >= outlen) return 0;
            memcpy(out, start, (size_t)(end - start));
            out[end - start] = '\0';
            return 1;
        }
        if (start == xff) return 0;
        end = start - 1;
    }
}

const char *sb_client_ip_resolve(const sb_proxies_t *p, const char *peer, const char *xff,
                                 char *out, size_t outlen) {
    snprintf(out, outlen, "%s", peer ? peer : "");
    if (!xff || !sb_proxies_trusted(p, peer)) return out;
    char hop[SB_CLIENT_IP_MAX];
    int family;
    unsigned char a[16];
    for (size_t i = 0; sb_xff_from_right(xff, i, hop, sizeof hop); i++) {
        if (!sb_ip_parse(hop, &family, a)) break; /* garbage: keep the last trusted hop */
        snprintf(out, outlen, "%s", hop);
        if (!sb_proxies_trusted(p, hop)) break;
    }
    return out;
}

const char *sb_client_proto_resolve(const sb_proxies_t *p, const char *peer, const char *xfp,
                                    int tls) {
    if (xfp && sb_proxies_trusted(p, peer)) {
        if (!strcasecmp(xfp, "https")) return "https";
        if (!strcasecmp(xfp, "http")) return "http";
    }
    return tls ? "https" : "http";
}
