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

/* Where Redis is. Either unix_path is set, or host/port (host NULL: SB_REDIS_DEFAULT_HOST). */
typedef struct {
    char *host;
    int port;
    char *unix_path;
    char *user;     /* ACL user, NULL for the default user */
    char *password; /* NULL when no AUTH is needed */
    int db;
} sb_redis_addr_t;

/* The defaults: TCP to SB_REDIS_DEFAULT_HOST:SB_REDIS_DEFAULT_PORT, database 0, no AUTH.
 * Allocates nothing. */
void sb_redis_addr_init(sb_redis_addr_t *addr);
/* Parses a redis URL (redis://[user:pass@]host:port[/db] or unix:///path[?db=N]) into addr
 * (strings malloc'd, previous ones freed). Returns 0 or SB_EINVAL with a reason in err. */
int sb_redis_url_parse(const char *url, sb_redis_addr_t *addr, char *err, size_t errlen);
/* Deep-copies src into dst (dst's previous strings are not freed; a TCP address without a host
 * gets SB_REDIS_DEFAULT_HOST). Returns 0, or SB_ENOMEM with dst holding no allocation. */
int sb_redis_addr_copy(sb_redis_addr_t *dst, const sb_redis_addr_t *src);
/* Frees the strings of a and NULLs them; NULL is fine. */
void sb_redis_addr_free(sb_redis_addr_t *a);
/* "host:port" or the socket path, for log lines; writes into buf. */
const char *sb_redis_addr_str(const sb_redis_addr_t *addr, char *buf, size_t len);

/* ---- transitional ---------------------------------------------------------------------------
 * The command line's settings (src/cli/settings.h loads them). They stay visible here only while
 * sb_agent_create (agent.h) still takes them; once it takes its own sb_agent_opts_t this struct
 * moves to src/cli/settings.h and no library function reads it. */
#include "switchboard/log.h"

#define SB_CONFIG_MAX_ARGS 32

typedef struct {
    sb_redis_addr_t redis;
    int redis_explicit;     /* some REDIS_* variable or --redis-* flag was given */
    int bind_explicit;      /* BIND or --bind was given (`up` listens on loopback otherwise) */
    /* gateway */
    char *bind;             /* listen address of the gateway */
    int port;               /* PORT, default 3001 */
    char *jwt_secret;       /* JWT_SECRET (HS256 key) */
    int dev_mode;           /* SB_DEV: development conveniences (token minting on the dashboard) */
    char *web_dir;          /* WEB_DIR: dashboard files; NULL = found next to the executable */
    char *job_types;        /* JOB_TYPES: comma-separated types the gateway accepts */
    int rate_limit;         /* requests per window per user */
    int rate_window;        /* seconds */
    /* jobs and agents */
    char *job_type;         /* JOB_TYPE / --type: the type an agent or CLI verb works on */
    int max_attempts;
    int retry_backoff_ms;   /* first retry waits this × attempt, plus jitter */
    int retry_backoff_max_ms;
    int job_timeout;        /* seconds an --exec handler may run */
    int concurrency;
    char *exec_cmd;         /* --exec: handler program run through /bin/sh -c */
    char *agent_id;         /* default {hostname}-{pid}-{random} */
    int shutdown_grace;     /* seconds to finish running jobs on SIGTERM */
    int agent_status_ttl;   /* presence key TTL, seconds */
    int heartbeat_interval; /* seconds between presence heartbeats */
    int max_chats;          /* MAX_CHATS: default chat capacity of a person agent */
    int recovery_interval;  /* seconds between scans for jobs of dead agents */
    int metrics_port;       /* agent: Prometheus port, 0 = off */
    sb_log_level_t log_level;
    char *data_dir;         /* `up`: where the private redis-server keeps its data */
    /* verb-specific switches */
    int wait;               /* --wait: block until the job finishes */
    int json_out;           /* --json: machine-readable output */
    char *user;             /* --user: publicKey a CLI-enqueued job belongs to */
    char *user_id;          /* --user-id: its user id */
    int limit;              /* --limit: how many items a listing shows */
    int timeout;            /* --timeout: seconds a waiting verb waits (0 = forever) */
    int days;               /* --days: metrics window, 1..30 */
    int jobs;               /* --jobs: how many jobs `bench` sends */
    /* event bus (switchboard events …) */
    char *group;            /* --group: consumer group (agent-group) */
    char *consumer;         /* --consumer: consumer name (default {hostname}-{pid}) */
    int maxlen;             /* --maxlen: trim a published-to stream to about N (0 = never) */
    int count;              /* --count: entries per read */
    int block_ms;           /* --block-ms: XREADGROUP / XREAD BLOCK */
    int min_idle_ms;        /* --min-idle-ms: pending this long → claimed and redelivered */
    int max_deliveries;     /* --max-deliveries: more → dead-letter stream */
    int idempotency_ttl;    /* --idempotency-ttl: seconds event ids are remembered (0 = off) */
    char *from;             /* --from: stream id, unix ms or ISO 8601 time */
    char *correlation_id;   /* --correlation-id: for publish */
    int respond;            /* --respond: consume answers requests with the handler's stdout */
    int max_events;         /* --max-events: stop after N events (0 = never) */
    /* `token` verb: the claims of a development JWT */
    char *role;             /* --role: user | agent | admin */
    char *public_key;       /* --public-key */
    char *sub;              /* --sub: user id (default: the publicKey) */
    char *name;             /* --name, --email, --department-id, --department: for agents */
    char *email;
    char *department_id;
    char *department;
    int ttl;                /* --ttl: seconds until the token expires */
    /* positional arguments left after the flags (pointers into argv, not owned) */
    int nargs;
    char *args[SB_CONFIG_MAX_ARGS];
} sb_config_t;

#endif
