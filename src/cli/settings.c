/* Settings from the environment and command-line flags (settings.h, SPEC §1).
 *
 * sb_settings[] is the single list of settings: each row names its environment variable, its
 * flag, its kind (int, string, bool, log level, Redis URL), its range and a help line. Loading
 * walks the table three times: defaults, environment, then argv (flags win), each time only
 * over the rows the verb reads. A bad value stops loading with one sentence that names the
 * setting. */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/settings.h"
#include "switchboard/error.h"
#include "switchboard/fmt.h"
#include "switchboard/job.h"
#include "switchboard/sentinel.h"

typedef enum {
    SB_SET_INT, SB_SET_STR, SB_SET_BOOL, SB_SET_LEVEL, SB_SET_LOGFMT, SB_SET_URL
} sb_set_kind_t;

typedef struct {
    const char *env;   /* environment name (NULL: flag only) */
    const char *flag;  /* without the leading "--" */
    sb_set_kind_t kind;
    size_t offset;     /* into sb_config_t */
    long min, max;     /* for SB_SET_INT */
    const char *def;   /* default, as text (NULL: unset) */
    const char *help;
} sb_setting_t;

#define OFF(f) offsetof(sb_config_t, f)
static const sb_setting_t sb_settings[] = {
    {"REDIS_URL", "redis-url", SB_SET_URL, 0, 0, 0, NULL,
     "redis[s]://[user:pass@]host:port[/db] or unix:///path (wins over REDIS_HOST...)"},
    {"REDIS_HOST", "redis-host", SB_SET_STR, OFF(redis.host), 0, 0, "127.0.0.1", "Redis host"},
    {"REDIS_PORT", "redis-port", SB_SET_INT, OFF(redis.port), 1, 65535, "6379", "Redis port"},
    {"REDIS_PASSWORD", "redis-password", SB_SET_STR, OFF(redis.password), 0, 0, NULL,
     "Redis password"},
    {"REDIS_DB", "redis-db", SB_SET_INT, OFF(redis.db), 0, 15, "0", "Redis database number"},
    {"REDIS_TLS_CA", "redis-tls-ca", SB_SET_STR, OFF(redis.tls.ca_file), 0, 0, NULL,
     "rediss://: CA file (PEM) the server's certificate must chain to [system store]"},
    {"REDIS_TLS_CERT", "redis-tls-cert", SB_SET_STR, OFF(redis.tls.cert_file), 0, 0, NULL,
     "rediss://: client certificate (PEM) for mutual TLS"},
    {"REDIS_TLS_KEY", "redis-tls-key", SB_SET_STR, OFF(redis.tls.key_file), 0, 0, NULL,
     "rediss://: the client certificate's private key (PEM)"},
    {"REDIS_TLS_SNI", "redis-tls-sni", SB_SET_STR, OFF(redis.tls.sni), 0, 0, NULL,
     "rediss://: server name sent and verified [the URL's host]"},
    {"REDIS_TLS_INSECURE", "redis-tls-insecure", SB_SET_BOOL, OFF(redis.tls.insecure), 0, 1, "0",
     "rediss://: skip certificate checks (development only; warns)"},
    {"REDIS_SENTINELS", "redis-sentinels", SB_SET_STR, OFF(redis.sentinels), 0, 0, NULL,
     "host:port,... of Redis Sentinels: find the master through them (host of the URL unused)"},
    {"REDIS_SENTINEL_MASTER", "redis-sentinel-master", SB_SET_STR, OFF(redis.sentinel_master), 0,
     0, NULL, "the master's name at the Sentinels (with REDIS_SENTINELS)"},
    {"REDIS_SENTINEL_PASSWORD", "redis-sentinel-password", SB_SET_STR,
     OFF(redis.sentinel_password), 0, 0, NULL, "AUTH password of the Sentinels"},
    {"REDIS_CLUSTER", "redis-cluster", SB_SET_STR, OFF(redis.cluster), 0, 0, NULL,
     "host:port,... seed nodes of a Redis Cluster (user, password, TLS: REDIS_URL / REDIS_*)"},
    {"UPSTASH_REDIS_REST_URL", "upstash-rest-url", SB_SET_STR, OFF(redis.rest_url), 0, 0, NULL,
     "Upstash REST URL: enqueue, job, queue, metrics, events publish over HTTPS (REDIS_* win)"},
    {"UPSTASH_REDIS_REST_TOKEN", "upstash-rest-token", SB_SET_STR, OFF(redis.rest_token), 0, 0,
     NULL, "Upstash REST token (Bearer)"},
    {"REDIS_WAIT_REPLICAS", "redis-wait-replicas", SB_SET_INT, OFF(wait_replicas), 0, 100, "0",
     "gateway: answer 202 only once WAIT confirms N replicas hold the job (0 = off)"},
    {"REDIS_WAIT_TIMEOUT_MS", "redis-wait-timeout-ms", SB_SET_INT, OFF(wait_timeout_ms), 1,
     2000, "1000", "gateway: how long WAIT waits for the replicas, ms (then 503)"},
    {"BIND", "bind", SB_SET_STR, OFF(bind), 0, 0, "0.0.0.0",
     "listen address (`up`: 127.0.0.1 unless given)"},
    {"PORT", "port", SB_SET_INT, OFF(port), 0, 65535, "3001", "gateway port (0: any free one)"},
    {"JWT_SECRET", "jwt-secret", SB_SET_STR, OFF(jwt_secret), 0, 0, NULL,
     "HS256 key for tokens"},
    {"SB_DEV", "dev", SB_SET_BOOL, OFF(dev_mode), 0, 1, "0",
     "development mode (dashboard can mint tokens)"},
    {"JOB_TYPES", "job-types", SB_SET_STR, OFF(job_types), 0, 0, "rebalance",
     "comma-separated job types the gateway accepts"},
    {"RATE_LIMIT", "rate-limit", SB_SET_INT, OFF(rate_limit), 1, 1000000, "10",
     "job requests per user per window"},
    {"RATE_WINDOW", "rate-window", SB_SET_INT, OFF(rate_window), 1, 86400, "60",
     "rate-limit window, seconds"},
    {"SIO_CONNECT_RATE", "sio-connect-rate", SB_SET_INT, OFF(sio_connect_rate), 0, 1000000,
     "60", "Socket.IO connects per user per minute (burst as many; 0 = no limit)"},
    {"SIO_CONNECT_RATE_IP", "sio-connect-rate-ip", SB_SET_INT, OFF(sio_connect_rate_ip), 0,
     1000000, "600", "Engine.IO sessions opened per client address per minute (0 = no limit)"},
    {"PING_INTERVAL", "ping-interval", SB_SET_INT, OFF(sio_ping_interval_ms), 100, 3600000,
     "25000", "Engine.IO pingInterval, ms: how often the gateway pings each client"},
    {"PING_TIMEOUT", "ping-timeout", SB_SET_INT, OFF(sio_ping_timeout_ms), 100, 3600000, "20000",
     "Engine.IO pingTimeout, ms: a client silent this long after a ping is dropped"},
    {"CONNECT_TIMEOUT", "connect-timeout", SB_SET_INT, OFF(sio_connect_timeout_ms), 100,
     3600000, "45000", "ms an Engine.IO session may take to send its Socket.IO CONNECT"},
    {"MAX_PAYLOAD", "max-payload", SB_SET_INT, OFF(sio_max_payload), 1024, 8388608, "1000000",
     "Engine.IO maxPayload, bytes: largest POST body / WebSocket message from a client"},
    {"ALLOW_EIO3", "allow-eio3", SB_SET_BOOL, OFF(sio_allow_eio3), 0, 1, "0",
     "also accept Engine.IO v3 clients (socket.io-client v2; token in the query)"},
    {"JOB_TYPE", "type", SB_SET_STR, OFF(job_type), 0, 0, "rebalance",
     "job type an agent or CLI verb works on"},
    {"QUEUE_SHARDS", "queue-shards", SB_SET_INT, OFF(queue_shards), 1, 256, "1",
     "queues each job type is spread over (by user); every process of a deployment alike"},
    {"MAX_ATTEMPTS", "max-attempts", SB_SET_INT, OFF(max_attempts), 1, 100, "3",
     "attempts before a job fails for good"},
    {"RETRY_BACKOFF_MS", "retry-backoff-ms", SB_SET_INT, OFF(retry_backoff_ms), 0, 3600000,
     "1000", "retry wait per attempt, ms (plus jitter)"},
    {"RETRY_BACKOFF_MAX_MS", "retry-backoff-max-ms", SB_SET_INT, OFF(retry_backoff_max_ms), 0,
     3600000, "30000", "cap on the retry wait, ms"},
    {"JOB_TIMEOUT", "job-timeout", SB_SET_INT, OFF(job_timeout), 1, 86400, "300",
     "seconds an --exec or --worker handler may run on one attempt"},
    {"CONCURRENCY", "concurrency", SB_SET_INT, OFF(concurrency), 1, 1024, "1",
     "jobs an agent runs at once"},
    {"AGENT_EXEC", "exec", SB_SET_STR, OFF(exec_cmd), 0, 0, NULL,
     "handler program: job JSON on stdin, result JSON on stdout"},
    {"AGENT_WORKER", "worker", SB_SET_STR, OFF(worker_cmd), 0, 0, NULL,
     "long-lived handler processes (one per --concurrency): JSON lines on stdin/stdout"},
    {"AGENT_ID", "agent-id", SB_SET_STR, OFF(agent_id), 0, 0, NULL,
     "agent id (default {hostname}-{pid}-{random})"},
    {"SHUTDOWN_GRACE", "grace", SB_SET_INT, OFF(shutdown_grace), 0, 3600, "30",
     "seconds to finish running jobs on SIGTERM"},
    {"AGENT_STATUS_TTL", "agent-status-ttl", SB_SET_INT, OFF(agent_status_ttl), 1, 86400,
     "300", "presence TTL, seconds"},
    {"HEARTBEAT_INTERVAL", "heartbeat-interval", SB_SET_INT, OFF(heartbeat_interval), 1, 86400,
     "180", "seconds between presence heartbeats"},
    {"MAX_CHATS", "max-chats", SB_SET_INT, OFF(max_chats), 1, 100000, "5",
     "chats a person agent takes at once (presence assign)"},
    {"RECOVERY_INTERVAL", "recovery-interval", SB_SET_INT, OFF(recovery_interval), 1, 86400,
     "30", "seconds between scans for jobs of dead agents"},
    {"JOB_LEASE_TTL", "job-lease", SB_SET_INT, OFF(job_lease), 1, 3600, "15",
     "job ownership lease, s: a dead agent's jobs return after it (renewed every third)"},
    {"DEAD_RETENTION", "dead-retention", SB_SET_INT, OFF(dead_retention), 1, 31536000, "604800",
     "seconds a failed (dead) job's record, history and failure are kept"},
    {"DEAD_MAX", "dead-max", SB_SET_INT, OFF(dead_max), 1, 10000000, "10000",
     "most ids the dead list keeps (the oldest beyond it are deleted)"},
    {"AUDIT_EVENTS", "audit-events", SB_SET_INT, OFF(audit_events), 0, 1, "1",
     "1: append job.created / job.completed / job.failed to the event bus streams; 0: off"},
    {"ADMIN_FEED", "admin-feed", SB_SET_INT, OFF(admin_feed), 0, 1, "1",
     "gateway: 1: the operator console's live feed (admin:jobs, admin:queues, admin:action) to room admins; 0: off"},
    {"METRICS_PORT", "metrics-port", SB_SET_INT, OFF(metrics_port), 0, 65535, "0",
     "agent / events consume Prometheus port (0 = off)"},
    {"SB_DATA_DIR", "data-dir", SB_SET_STR, OFF(data_dir), 0, 0, ".run",
     "`up`: folder of the private redis-server's data"},
    {"WEB_DIR", "web-dir", SB_SET_STR, OFF(web_dir), 0, 0, NULL,
     "gateway: dashboard files [<exe dir>/../web, else <exe dir>/../share/switchboard/web]"},
    {"TLS_CERT", "tls-cert", SB_SET_STR, OFF(tls_cert), 0, 0, NULL,
     "gateway: PEM certificate chain; with TLS_KEY it serves HTTPS/WSS (reloaded on SIGHUP)"},
    {"TLS_KEY", "tls-key", SB_SET_STR, OFF(tls_key), 0, 0, NULL,
     "gateway: PEM private key of TLS_CERT"},
    {"TRUSTED_PROXIES", "trusted-proxies", SB_SET_STR, OFF(trusted_proxies), 0, 0, NULL,
     "gateway: CIDRs whose X-Forwarded-For/-Proto are believed (e.g. 10.0.0.0/8,::1)"},
    {"LOG_LEVEL", "log-level", SB_SET_LEVEL, OFF(log_level), 0, 0, "info",
     "debug | info | warn | error"},
    {"LOG_FORMAT", "log-format", SB_SET_LOGFMT, OFF(log_format), 0, 0, "text",
     "text | json (one object a line: time, level, component, instance, message)"},
    {NULL, "wait", SB_SET_BOOL, OFF(wait), 0, 1, "0", "wait until the job finishes"},
    {NULL, "json", SB_SET_BOOL, OFF(json_out), 0, 1, "0", "machine-readable output"},
    {NULL, "user", SB_SET_STR, OFF(user), 0, 0, "cli", "publicKey of the user a job belongs to"},
    {NULL, "user-id", SB_SET_STR, OFF(user_id), 0, 0, NULL, "user id of that user"},
    {NULL, "limit", SB_SET_INT, OFF(limit), 1, 100000, "10", "items a listing shows"},
    {NULL, "state", SB_SET_STR, OFF(state), 0, 0, NULL,
     "job list: queued|processing|retrying|done|error|dead|cancelled"},
    {NULL, "all-dead", SB_SET_BOOL, OFF(all_dead), 0, 1, "0",
     "job retry: every dead job of the type (at most --limit)"},
    {NULL, "days", SB_SET_INT, OFF(days), 1, 30, "7", "metrics: summary over the last N days"},
    {NULL, "jobs", SB_SET_INT, OFF(jobs), 1, 10000000, "10000", "bench: jobs to send"},
    {NULL, "timeout", SB_SET_INT, OFF(timeout), 0, 86400, "0",
     "seconds a waiting verb waits (0 = forever)"},
    {"EVENTS_GROUP", "group", SB_SET_STR, OFF(group), 0, 0, "agent-group",
     "events: consumer group"},
    {"EVENTS_CONSUMER", "consumer", SB_SET_STR, OFF(consumer), 0, 0, NULL,
     "events: consumer name (default {hostname}-{pid})"},
    {"EVENTS_MAXLEN", "maxlen", SB_SET_INT, OFF(maxlen), 0, 1000000000, "0",
     "events publish: trim the stream to about N entries (0 = never)"},
    {"EVENTS_COUNT", "count", SB_SET_INT, OFF(count), 1, 100000, "10",
     "events: entries per read (batch size)"},
    {"EVENTS_BLOCK_MS", "block-ms", SB_SET_INT, OFF(block_ms), 1, 3600000, "1000",
     "events: how long one read blocks, ms"},
    {"EVENTS_MIN_IDLE_MS", "min-idle-ms", SB_SET_INT, OFF(min_idle_ms), 1, 86400000, "30000",
     "events consume: idle this long → claimed and delivered again (retries, dead consumers)"},
    {"EVENTS_MAX_DELIVERIES", "max-deliveries", SB_SET_INT, OFF(max_deliveries), 1, 1000, "5",
     "events consume: deliveries before an entry goes to agent:stream:dead:{type}"},
    {"EVENTS_IDEMPOTENCY_TTL", "idempotency-ttl", SB_SET_INT, OFF(idempotency_ttl), 0, 31536000,
     "0", "events consume: skip event ids processed in the last N s (0 = off)"},
    {NULL, "from", SB_SET_STR, OFF(from), 0, 0, NULL,
     "events tail|replay: stream id, unix ms or ISO 8601 time (- = start, $ = new only)"},
    {NULL, "correlation-id", SB_SET_STR, OFF(correlation_id), 0, 0, NULL,
     "events publish: correlation id field"},
    {NULL, "respond", SB_SET_BOOL, OFF(respond), 0, 1, "0",
     "events consume: reply to requests with the --exec program's stdout"},
    {NULL, "max-events", SB_SET_INT, OFF(max_events), 0, 1000000000, "0",
     "events consume|tail|replay: stop after N events (0 = never)"},
    {NULL, "role", SB_SET_STR, OFF(role), 0, 0, "user", "token: role claim (user|agent|admin)"},
    {NULL, "public-key", SB_SET_STR, OFF(public_key), 0, 0, NULL, "token: publicKey claim"},
    {NULL, "sub", SB_SET_STR, OFF(sub), 0, 0, NULL, "token: sub claim (default: publicKey)"},
    {NULL, "name", SB_SET_STR, OFF(name), 0, 0, NULL, "token: name claim"},
    {NULL, "email", SB_SET_STR, OFF(email), 0, 0, NULL, "token: email claim"},
    {NULL, "department-id", SB_SET_STR, OFF(department_id), 0, 0, NULL,
     "token: department_id claim"},
    {NULL, "department", SB_SET_STR, OFF(department), 0, 0, NULL, "token: department claim"},
    {NULL, "ttl", SB_SET_INT, OFF(ttl), 1, 31536000, "3600", "token: seconds until it expires"},
};
#undef OFF
#define SB_NSETTINGS (sizeof sb_settings / sizeof sb_settings[0])

static int sb_parse_bool(const char *s, int *out) {
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off", ""};
    for (size_t i = 0; i < 4; i++)
        if (strcmp(s, yes[i]) == 0) return *out = 1, SB_OK;
    for (size_t i = 0; i < 5; i++)
        if (strcmp(s, no[i]) == 0) return *out = 0, SB_OK;
    return SB_EINVAL;
}

static int sb_set_str(char **slot, const char *value) {
    char *copy = value ? strdup(value) : NULL;
    if (value && !copy) return SB_ENOMEM;
    free(*slot);
    *slot = copy;
    return SB_OK;
}

/* Applies one textual value to a setting. `from` says where it came from, for the error. */
static int sb_setting_apply(sb_config_t *cfg, const sb_setting_t *s, const char *value,
                            const char *from, char *err, size_t errlen) {
    void *slot = (char *)cfg + s->offset;
    long v;
    int b, rc;
    char why[256];
    switch (s->kind) {
    case SB_SET_INT:
        if (sb_fmt_parse_long(value, s->min, s->max, &v) != SB_OK) {
            sb_errf(err, errlen, "bad setting %s='%s': expected an integer from %ld to %ld",
                    from, value, s->min, s->max);
            return SB_EINVAL;
        }
        *(int *)slot = (int)v;
        return SB_OK;
    case SB_SET_BOOL:
        if (sb_parse_bool(value, &b) != SB_OK) {
            sb_errf(err, errlen, "bad setting %s='%s': expected true or false", from, value);
            return SB_EINVAL;
        }
        *(int *)slot = b;
        return SB_OK;
    case SB_SET_LEVEL:
        if (sb_log_level_parse(value, (sb_log_level_t *)slot) != SB_OK) {
            sb_errf(err, errlen, "bad setting %s='%s': expected debug, info, warn or error",
                    from, value);
            return SB_EINVAL;
        }
        return SB_OK;
    case SB_SET_LOGFMT:
        if (sb_log_format_parse(value, (sb_log_format_t *)slot) != SB_OK) {
            sb_errf(err, errlen, "bad setting %s='%s': expected text or json", from, value);
            return SB_EINVAL;
        }
        return SB_OK;
    case SB_SET_URL:
        rc = sb_redis_url_parse(value, &cfg->redis, why, sizeof why);
        if (rc != SB_OK) sb_errf(err, errlen, "bad setting %s='%s': %s", from, value, why);
        return rc;
    case SB_SET_STR:
        return sb_set_str((char **)slot, value);
    }
    return SB_EINVAL;
}

static const sb_setting_t *sb_setting_by_flag(const char *name, size_t len) {
    for (size_t i = 0; i < SB_NSETTINGS; i++)
        if (strlen(sb_settings[i].flag) == len && strncmp(sb_settings[i].flag, name, len) == 0)
            return &sb_settings[i];
    return NULL;
}

/* 1 if flag is one of the space-separated names in list (NULL = every flag). */
static int sb_flag_listed(const char *list, const char *flag) {
    size_t n = strlen(flag);
    for (const char *p = list; p && *p;) {
        while (*p == ' ') p++;
        size_t w = strcspn(p, " ");
        if (w == n && !strncmp(p, flag, n)) return 1;
        p += w;
    }
    return list == NULL;
}

/* Notes which settings' being given changes a verb's defaults (`up`). */
static void sb_setting_given(sb_config_t *cfg, const sb_setting_t *s) {
    if (strncmp(s->flag, "redis-", 6) == 0) cfg->redis_explicit = 1;
    if (strcmp(s->flag, "bind") == 0) cfg->bind_explicit = 1;
    if (strcmp(s->flag, "user") == 0) cfg->user_explicit = 1;
}

static int sb_config_positional(sb_config_t *cfg, char *arg, char *err, size_t errlen) {
    if (cfg->nargs == SB_CONFIG_MAX_ARGS) {
        sb_errf(err, errlen, "too many arguments (at most %d)", SB_CONFIG_MAX_ARGS);
        return SB_EINVAL;
    }
    cfg->args[cfg->nargs++] = arg;
    return SB_OK;
}

/* The setting of one "--name[=value]" argument, or NULL with the reason in err. */
static const sb_setting_t *sb_config_flag(const char *arg, const char *flags, char *err,
                                          size_t errlen) {
    const char *name = arg + 2, *eq = strchr(name, '=');
    size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
    const sb_setting_t *s = sb_setting_by_flag(name, nlen);
    if (!s)
        sb_errf(err, errlen, "unknown option '%.*s' (see --help)", (int)(nlen + 2), arg);
    else if (!sb_flag_listed(flags, s->flag))
        sb_errf(err, errlen, "--%s is not an option of this command (see --help)", s->flag);
    return s && sb_flag_listed(flags, s->flag) ? s : NULL;
}

/* Pass 3: flags. Accepts --name value, --name=value, and bare --name for booleans. */
static int sb_config_flags(sb_config_t *cfg, int argc, char **argv, const char *flags,
                           char *err, size_t errlen) {
    int rc = SB_OK;
    for (int i = 1; i < argc && rc == SB_OK; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--") == 0) {
            while (++i < argc && rc == SB_OK) rc = sb_config_positional(cfg, argv[i], err, errlen);
            break;
        }
        if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0') {
            rc = sb_config_positional(cfg, argv[i], err, errlen);
            continue;
        }
        const sb_setting_t *s = sb_config_flag(arg, flags, err, errlen);
        if (!s) return SB_EINVAL;
        const char *eq = strchr(arg, '=');
        const char *value = eq ? eq + 1 : s->kind == SB_SET_BOOL ? "1" : NULL;
        if (!value && i + 1 >= argc) {
            sb_errf(err, errlen, "option --%s needs a value", s->flag);
            return SB_EINVAL;
        }
        if (!value) value = argv[++i];
        char from[64];
        snprintf(from, sizeof from, "--%s", s->flag);
        sb_setting_given(cfg, s);
        rc = sb_setting_apply(cfg, s, value, from, err, errlen);
    }
    return rc;
}

/* 1 when list names at least one job type and every name in it is one (sb_job_type_valid);
 * names are separated by commas and/or spaces, as the gateway reads them. */
static int sb_job_types_valid(const char *list) {
    int count = 0;
    for (const char *p = list ? list : "";;) {
        p += strspn(p, ", ");
        size_t n = strcspn(p, ", ");
        if (!n) return count > 0;
        char type[SB_TYPE_MAX + 1];
        if (n > SB_TYPE_MAX) return 0;
        memcpy(type, p, n);
        type[n] = '\0';
        if (!sb_job_type_valid(type)) return 0;
        count++;
        p += n;
    }
}

/* REDIS_SENTINELS and REDIS_SENTINEL_MASTER come together, and the list is well formed. */
static int sb_config_check_sentinels(const sb_redis_addr_t *a, char *err, size_t errlen) {
    char why[256];
    if (!a->sentinels && !a->sentinel_master) return SB_OK;
    if (!a->sentinels || !a->sentinel_master) {
        sb_errf(err, errlen, "bad setting: REDIS_SENTINELS and REDIS_SENTINEL_MASTER go together "
                "(the Sentinels' addresses and the name of the master they watch)");
        return SB_EINVAL;
    }
    if (sb_sentinel_list_check(a->sentinels, why, sizeof why) == SB_OK) return SB_OK;
    sb_errf(err, errlen, "bad setting REDIS_SENTINELS='%s': %s", a->sentinels, why);
    return SB_EINVAL;
}

/* REDIS_CLUSTER: a well-formed seed list, database 0, TCP, and neither Sentinels nor Upstash's
 * REST API (each is a different way of finding the one Redis; the cluster has many). */
static int sb_config_check_cluster(sb_config_t *cfg, char *err, size_t errlen) {
    sb_redis_addr_t *a = &cfg->redis;
    char why[256];
    if (a->cluster && !*a->cluster) sb_set_str(&a->cluster, NULL); /* empty = unset */
    if (!a->cluster) return SB_OK;
    if (sb_sentinel_list_check(a->cluster, why, sizeof why) != SB_OK) {
        sb_errf(err, errlen, "bad setting REDIS_CLUSTER='%s': %s", a->cluster, why);
        return SB_EINVAL;
    }
    const char *other = a->sentinels || a->sentinel_master ? "REDIS_SENTINELS"
                        : a->rest_url || a->rest_token   ? "UPSTASH_REDIS_REST_URL"
                        : a->unix_path                   ? "a unix:// REDIS_URL"
                        : a->db != 0                     ? "REDIS_DB other than 0"
                                                         : NULL;
    if (!other) return SB_OK;
    sb_errf(err, errlen, "bad setting: REDIS_CLUSTER cannot be used with %s (a cluster is "
            "reached through its seed nodes, database 0; REDIS_URL only lends it its "
            "user, password and TLS)", other);
    return SB_EINVAL;
}

/* Upstash REST: URL and token together, http(s); any REDIS_* setting means TCP instead. */
static int sb_config_check_rest(sb_config_t *cfg, char *err, size_t errlen) {
    sb_redis_addr_t *a = &cfg->redis;
    if (a->rest_url && !*a->rest_url) sb_set_str(&a->rest_url, NULL); /* empty = unset */
    if (a->rest_token && !*a->rest_token) sb_set_str(&a->rest_token, NULL);
    if (cfg->redis_explicit || (!a->rest_url && !a->rest_token)) {
        free(a->rest_url);
        free(a->rest_token);
        a->rest_url = a->rest_token = NULL;
        return SB_OK;
    }
    if (!a->rest_url || !a->rest_token) {
        sb_errf(err, errlen, "bad setting: UPSTASH_REDIS_REST_URL and UPSTASH_REDIS_REST_TOKEN "
                "go together (the database's REST URL and its token)");
        return SB_EINVAL;
    }
    if (strncmp(a->rest_url, "https://", 8) && strncmp(a->rest_url, "http://", 7)) {
        sb_errf(err, errlen, "bad setting UPSTASH_REDIS_REST_URL='%s': expected https://…",
                a->rest_url);
        return SB_EINVAL;
    }
    return SB_OK;
}

/* 0 when path names a readable file, else SB_EINVAL naming the setting. */
static int sb_tls_file_check(const char *setting, const char *path, char *err, size_t errlen) {
    FILE *f = path ? fopen(path, "r") : NULL;
    if (!path || f) {
        if (f) fclose(f);
        return SB_OK;
    }
    sb_errf(err, errlen, "bad setting %s='%s': cannot read it (%s)", setting, path,
            strerror(errno));
    return SB_EINVAL;
}

/* The TLS settings against the address: they need rediss:// (so that nobody believes a
 * plain connection is encrypted), a TCP host, a key with the certificate, readable files. */
static int sb_tls_check(const sb_redis_addr_t *a, char *err, size_t errlen) {
    const sb_redis_tls_t *t = &a->tls;
    if (!t->enabled && (t->ca_file || t->cert_file || t->key_file || t->sni || t->insecure)) {
        sb_errf(err, errlen, "REDIS_TLS_* settings need a rediss:// REDIS_URL (TLS is off)");
        return SB_EINVAL;
    }
    if (t->enabled && !t->cert_file != !t->key_file) {
        sb_errf(err, errlen, "mutual TLS needs both REDIS_TLS_CERT and REDIS_TLS_KEY");
        return SB_EINVAL;
    }
    int rc = sb_tls_file_check("REDIS_TLS_CA", t->ca_file, err, errlen);
    if (rc == SB_OK) rc = sb_tls_file_check("REDIS_TLS_CERT", t->cert_file, err, errlen);
    return rc == SB_OK ? sb_tls_file_check("REDIS_TLS_KEY", t->key_file, err, errlen) : rc;
}

/* The checks no single setting's kind covers: job type names (of the verb's settings). */
static int sb_config_check(sb_config_t *cfg, const char *flags, char *err, size_t errlen) {
    if (sb_config_check_sentinels(&cfg->redis, err, errlen) != SB_OK) return SB_EINVAL;
    if (sb_config_check_cluster(cfg, err, errlen) != SB_OK) return SB_EINVAL;
    if (sb_config_check_rest(cfg, err, errlen) != SB_OK) return SB_EINVAL;
    if (sb_flag_listed(flags, "type") && !sb_job_type_valid(cfg->job_type)) {
        sb_errf(err, errlen, "bad setting JOB_TYPE='%s': expected [a-z][a-z0-9_-]{0,31}",
                cfg->job_type ? cfg->job_type : "");
        return SB_EINVAL;
    }
    if (sb_flag_listed(flags, "redis-url") && sb_tls_check(&cfg->redis, err, errlen) != SB_OK)
        return SB_EINVAL;
    if (sb_flag_listed(flags, "job-types") && !sb_job_types_valid(cfg->job_types)) {
        sb_errf(err, errlen,
                "bad setting JOB_TYPES='%s': expected one or more job types separated by "
                "commas, each [a-z][a-z0-9_-]{0,31}",
                cfg->job_types ? cfg->job_types : "");
        return SB_EINVAL;
    }
    return SB_OK;
}

/* Passes 1 and 2: defaults of every setting, then the environment of the listed ones. */
static int sb_config_env(sb_config_t *cfg, const char *flags, char *err, size_t errlen) {
    int rc;
    for (size_t i = 0; i < SB_NSETTINGS; i++) {
        const sb_setting_t *s = &sb_settings[i];
        if (s->def && (rc = sb_setting_apply(cfg, s, s->def, s->flag, err, errlen)) != SB_OK)
            return rc;
    }
    for (size_t i = 0; i < SB_NSETTINGS; i++) {
        const sb_setting_t *s = &sb_settings[i];
        const char *v = s->env && sb_flag_listed(flags, s->flag) ? getenv(s->env) : NULL;
        if (!v || s->kind == SB_SET_URL) continue; /* URL last: it wins over REDIS_HOST... */
        sb_setting_given(cfg, s);
        if ((rc = sb_setting_apply(cfg, s, v, s->env, err, errlen)) != SB_OK) return rc;
    }
    const sb_setting_t *url = &sb_settings[0];
    const char *v = sb_flag_listed(flags, url->flag) ? getenv(url->env) : NULL;
    if (!v || !*v) return SB_OK;
    sb_setting_given(cfg, url);
    return sb_setting_apply(cfg, url, v, url->env, err, errlen);
}

int sb_config_load_only(sb_config_t *cfg, int argc, char **argv, const char *flags, char *err,
                        size_t errlen) {
    memset(cfg, 0, sizeof *cfg);
    int rc = sb_config_env(cfg, flags, err, errlen);
    if (rc == SB_OK) rc = sb_config_flags(cfg, argc, argv, flags, err, errlen);
    return rc == SB_OK ? sb_config_check(cfg, flags, err, errlen) : rc;
}

int sb_config_load(sb_config_t *cfg, int argc, char **argv, char *err, size_t errlen) {
    return sb_config_load_only(cfg, argc, argv, NULL, err, errlen);
}

void sb_config_close(sb_config_t *cfg) {
    if (!cfg) return;
    sb_redis_addr_free(&cfg->redis);
    free(cfg->bind);
    free(cfg->jwt_secret);
    free(cfg->job_types);
    free(cfg->job_type);
    free(cfg->exec_cmd);
    free(cfg->worker_cmd);
    free(cfg->agent_id);
    free(cfg->data_dir);
    free(cfg->web_dir);
    free(cfg->tls_cert);
    free(cfg->tls_key);
    free(cfg->trusted_proxies);
    free(cfg->user);
    free(cfg->state);
    free(cfg->user_id);
    free(cfg->group);
    free(cfg->consumer);
    free(cfg->from);
    free(cfg->correlation_id);
    free(cfg->role);
    free(cfg->public_key);
    free(cfg->sub);
    free(cfg->name);
    free(cfg->email);
    free(cfg->department_id);
    free(cfg->department);
    memset(cfg, 0, sizeof *cfg);
}

void sb_config_usage_only(FILE *out, const char *flags) {
    for (size_t i = 0; i < SB_NSETTINGS; i++) {
        const sb_setting_t *s = &sb_settings[i];
        char flag[64];
        if (!sb_flag_listed(flags, s->flag)) continue;
        snprintf(flag, sizeof flag, "--%s%s", s->flag, s->kind == SB_SET_BOOL ? "" : " V");
        fprintf(out, "  %-26s %-22s %s%s%s%s\n", flag, s->env ? s->env : "", s->help,
                s->def ? " [" : "", s->def ? s->def : "", s->def ? "]" : "");
    }
}

void sb_config_usage(FILE *out) { sb_config_usage_only(out, NULL); }
