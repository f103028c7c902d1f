/* The program's settings: environment variables first, then matching command-line flags.
 *
 * Every setting is a row of one table (settings.c): its environment name, its flag, its type
 * and range, and a line of help. sb_config_load_only() fills an sb_config_t from the
 * defaults, then the environment, then argv, taking only the settings a verb reads: a flag
 * of another verb is refused, an environment variable of another verb is ignored. Anything
 * malformed or out of range stops with one sentence naming the setting. Strings in the
 * struct are owned by it and released by sb_config_close().
 *
 * This is the command line's business, not the library's: library objects take their own
 * options (sb_redis_addr_t, sb_consumer_opts_t, ...), which the verbs fill from here. */
#ifndef SB_CLI_SETTINGS_H
#define SB_CLI_SETTINGS_H

#include <stdio.h>
#include "switchboard/config.h"
#include "switchboard/log.h"

/* The settings of every verb (each verb reads the ones in its row of the verb table). */
#define SB_CONFIG_MAX_ARGS 32

typedef struct {
    sb_redis_addr_t redis;
    int redis_explicit;     /* some REDIS_* variable or --redis-* flag was given */
    int bind_explicit;      /* BIND or --bind was given (`up` listens on loopback otherwise) */
    int user_explicit;      /* --user was given (job list: a filter, not the default owner) */
    /* gateway */
    char *bind;             /* listen address of the gateway */
    int port;               /* PORT, default 3001 */
    char *jwt_secret;       /* JWT_SECRET (HS256 key) */
    int dev_mode;           /* SB_DEV: development conveniences (token minting on the dashboard) */
    char *web_dir;          /* WEB_DIR: dashboard files; NULL = found next to the executable */
    char *tls_cert;         /* TLS_CERT, TLS_KEY: the gateway serves HTTPS/WSS; NULL = HTTP */
    char *tls_key;
    char *trusted_proxies;  /* TRUSTED_PROXIES: CIDR list (client_ip.h); NULL = none */
    char *job_types;        /* JOB_TYPES: comma-separated types the gateway accepts */
    int rate_limit;         /* requests per window per user */
    int rate_window;        /* seconds */
    int wait_replicas;      /* REDIS_WAIT_REPLICAS: 202 only once WAIT confirms N replicas */
    int wait_timeout_ms;    /* REDIS_WAIT_TIMEOUT_MS: WAIT's timeout */
    int sio_connect_rate;   /* Socket.IO CONNECTs per user per minute (0 = no limit) */
    int sio_connect_rate_ip; /* Engine.IO sessions per client address per minute (0 = none) */
    int sio_ping_interval_ms;   /* PING_INTERVAL: Engine.IO pingInterval */
    int sio_ping_timeout_ms;    /* PING_TIMEOUT: Engine.IO pingTimeout */
    int sio_connect_timeout_ms; /* CONNECT_TIMEOUT: engine session to Socket.IO CONNECT */
    int sio_max_payload;        /* MAX_PAYLOAD: Engine.IO maxPayload, bytes */
    int sio_allow_eio3;         /* ALLOW_EIO3: also Engine.IO v3 (socket.io-client v2) */
    /* jobs and agents */
    char *job_type;         /* JOB_TYPE / --type: the type an agent or CLI verb works on */
    int queue_shards;       /* QUEUE_SHARDS: queues a job type is spread over (job.h) */
    int max_attempts;
    int retry_backoff_ms;   /* first retry waits this × attempt, plus jitter */
    int retry_backoff_max_ms;
    int job_timeout;        /* seconds an --exec or --worker handler may run */
    int concurrency;
    char *exec_cmd;         /* --exec: handler program run through /bin/sh -c */
    char *worker_cmd;       /* --worker: long-lived handler processes (workerpool.h) */
    char *agent_id;         /* default {hostname}-{pid}-{random} */
    int shutdown_grace;     /* seconds to finish running jobs on SIGTERM */
    int agent_status_ttl;   /* presence key TTL, seconds */
    int heartbeat_interval; /* seconds between presence heartbeats */
    int max_chats;          /* MAX_CHATS: default chat capacity of a person agent */
    int recovery_interval;  /* seconds between scans for jobs of dead agents */
    int job_lease;          /* JOB_LEASE_TTL: seconds an agent owns its jobs without renewing */
    int dead_retention;     /* DEAD_RETENTION: seconds a failed job's record is kept */
    int dead_max;           /* DEAD_MAX: bound of the dead list */
    int audit_events;       /* AUDIT_EVENTS: job.created / completed / failed audit entries */
    int admin_feed;         /* ADMIN_FEED: gateway's admin:* feed to room admins (admin_feed.h) */
    int metrics_port;       /* agent: Prometheus port, 0 = off */
    sb_log_level_t log_level;
    sb_log_format_t log_format;
    char *data_dir;         /* `up`: where the private redis-server keeps its data */
    /* verb-specific switches */
    int wait;               /* --wait: block until the job finishes */
    int json_out;           /* --json: machine-readable output */
    char *user;             /* --user: publicKey a CLI-enqueued job belongs to */
    char *user_id;          /* --user-id: its user id */
    int limit;              /* --limit: how many items a listing shows */
    char *state;            /* --state: job list filter (jobctl.h states) */
    int all_dead;           /* --all-dead: job retry of every dead job (bounded by --limit) */
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


/* Fills cfg from defaults, environment and argv (argv[0] is not read), for the settings whose
 * flag (without "--") is in the space-separated list `flags` (NULL: every setting). Returns 0,
 * or SB_EINVAL with a sentence in err naming the bad setting or the flag that is not in
 * `flags`; cfg must be closed either way. */
int sb_config_load_only(sb_config_t *cfg, int argc, char **argv, const char *flags, char *err,
                        size_t errlen);
/* sb_config_load_only with every setting. */
int sb_config_load(sb_config_t *cfg, int argc, char **argv, char *err, size_t errlen);
void sb_config_close(sb_config_t *cfg); /* NULL is fine */

/* Prints every setting: flag, environment name, default and help. */
void sb_config_usage(FILE *out);
/* The same for the settings whose flag (without "--") is in the space-separated list. */
void sb_config_usage_only(FILE *out, const char *flags);

#endif
