/* The client's address behind trusted reverse proxies (TRUSTED_PROXIES), for per-IP limits
 * and logs.
 *
 * A request's client is the TCP peer, unless the peer is a trusted proxy: then the
 * X-Forwarded-For list is read from the right (the entry the nearest proxy appended) and the
 * first address that is not itself a trusted proxy is the client. So a client cannot choose
 * its address by sending its own X-Forwarded-For: only what trusted proxies appended counts.
 * X-Forwarded-Proto is believed on the same condition. With no trusted proxy (the default)
 * both headers are ignored. */
#ifndef SB_GW_CLIENT_IP_H
#define SB_GW_CLIENT_IP_H

#include <stddef.h>

#define SB_CLIENT_IP_MAX 46 /* INET6_ADDRSTRLEN: room for any address and its NUL */
#define SB_PROXIES_MAX 64   /* CIDRs in TRUSTED_PROXIES */

typedef struct {
    int family;             /* AF_INET or AF_INET6 */
    unsigned char addr[16]; /* network address, 4 or 16 bytes */
    int bits;               /* prefix length */
} sb_cidr_t;

typedef struct {
    sb_cidr_t v[SB_PROXIES_MAX];
    size_t n;
} sb_proxies_t;

/* Parses a comma- or space-separated list of CIDRs or single addresses ("10.0.0.0/8, ::1").
 * NULL or "" is the empty list. Returns 0, or -1 with one line naming TRUSTED_PROXIES and the
 * bad entry in err (p is then empty). */
int sb_proxies_parse(sb_proxies_t *p, const char *list, char *err, size_t errlen);

/* 1 when the textual address ip is inside one of p's CIDRs (an IPv4-mapped IPv6 address
 * counts as its IPv4 address), else 0 (also for a malformed ip). */
int sb_proxies_trusted(const sb_proxies_t *p, const char *ip);

/* The client address for a connection from peer that sent X-Forwarded-For xff (NULL when
 * absent), written into out (at least SB_CLIENT_IP_MAX bytes). Returns out. */
const char *sb_client_ip_resolve(const sb_proxies_t *p, const char *peer, const char *xff,
                                 char *out, size_t outlen);

/* "https" or "http": X-Forwarded-Proto xfp when peer is trusted and it says one of them,
 * else tls ? "https" : "http" (how the peer itself connected). */
const char *sb_client_proto_resolve(const sb_proxies_t *p, const char *peer, const char *xfp,
                                    int tls);

struct lws;
struct sb_gateway;
/* The two above for a live lws connection (peer from the socket, headers from the request). */
const char *sb_gw_client_ip(const struct sb_gateway *gw, struct lws *wsi, char *out,
                            size_t outlen);
const char *sb_gw_client_proto(const struct sb_gateway *gw, struct lws *wsi);

#endif
