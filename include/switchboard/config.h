/* The library's connection options: where Redis is.
 *
 * Every library object that talks to Redis (sb_redis_create, sb_consumer_create,
 * sb_poller_start, the gateway's async clients) takes an sb_redis_addr_t: start from
 * sb_redis_addr_init() (127.0.0.1:6379, database 0) and set what differs, or parse a Redis URL
 * into it. Strings are owned by the struct: sb_redis_addr_free() releases them. The command
 * line's settings (environment and flags) are the program's business: src/cli/settings.h. */
#ifndef SB_CONFIG_H
#define SB_CONFIG_H

#include <stddef.h>

#define SB_REDIS_DEFAULT_HOST "127.0.0.1"
#define SB_REDIS_DEFAULT_PORT 6379

/* TLS to Redis (rediss://). Off unless enabled; when on, the server's certificate is verified
 * against ca_file (NULL: the system's trust store) and must name the host we connect to (sni
 * when set, else the address's host; an IP literal is checked as an IP). Strings are owned by
 * the sb_redis_addr_t that holds them. */
typedef struct {
    int enabled;
    char *ca_file;   /* PEM bundle of the CAs that may sign the server's certificate */
    char *cert_file; /* client certificate (mutual TLS), PEM; needs key_file */
    char *key_file;  /* its private key, PEM */
    char *sni;       /* server name sent and verified; NULL: the host */
    int insecure;    /* 1: no verification at all (development only; callers warn loudly) */
} sb_redis_tls_t;

/* Where Redis is. Either unix_path is set, or host/port (host NULL: SB_REDIS_DEFAULT_HOST).
 * With sentinels set, host/port are ignored: the master named sentinel_master is found through
 * the Sentinels before every connection (sentinel.h); with sentinels set and no master name the
 * connection goes to a Sentinel itself (used to watch for failovers). With rest_url set, the
 * blocking client (sb_redis_t) talks to Upstash's REST API instead (no held connection: no
 * SUBSCRIBE, no blocking reads); the gateway's async client does not take such an address.
 * TLS options apply to the master and to the Sentinels alike (conn.h: the address given to
 * sb_conn_open is the one resolved through the Sentinels). */
typedef struct {
    char *host;
    int port;
    char *unix_path;
    char *user;     /* ACL user, NULL for the default user */
    char *password; /* NULL when no AUTH is needed */
    int db;
    char *sentinels;         /* "host:port,host:port,...", NULL: no Sentinel */
    char *sentinel_master;   /* the master's name at the Sentinels */
    char *sentinel_password; /* AUTH for the Sentinels, NULL for none */
    char *rest_url;          /* Upstash REST URL: the blocking client speaks HTTPS (rest.h) */
    char *rest_token;        /* its Bearer token */
    char *cluster;           /* Redis Cluster seeds "host:port,...": host/port are ignored and
                                every node is reached with this address's user, password
                                and TLS (cluster.h); NULL: no cluster */
    sb_redis_tls_t tls; /* TCP only */
} sb_redis_addr_t;

/* The defaults: TCP to SB_REDIS_DEFAULT_HOST:SB_REDIS_DEFAULT_PORT, database 0, no AUTH.
 * Allocates nothing. */
void sb_redis_addr_init(sb_redis_addr_t *addr);
/* Parses a redis URL (redis[s]://[user:pass@]host:port[/db] or unix:///path[?db=N]) into addr
 * (strings malloc'd, previous ones freed). rediss:// turns TLS on (tls.enabled = 1) and
 * redis:// / unix:// turn it off; the other TLS options are left as they are. Returns 0 or
 * SB_EINVAL with a reason in err. */
int sb_redis_url_parse(const char *url, sb_redis_addr_t *addr, char *err, size_t errlen);
/* Deep-copies src into dst (dst's previous strings are not freed; a TCP address without a host
 * gets SB_REDIS_DEFAULT_HOST). Returns 0, or SB_ENOMEM with dst holding no allocation. */
int sb_redis_addr_copy(sb_redis_addr_t *dst, const sb_redis_addr_t *src);
/* Frees the strings of a and NULLs them; NULL is fine. */
void sb_redis_addr_free(sb_redis_addr_t *a);
/* "host:port" or the socket path, for log lines; writes into buf. */
const char *sb_redis_addr_str(const sb_redis_addr_t *addr, char *buf, size_t len);

#endif
