/* `switchboard VERB [flags]`: one program for the gateway, the agent and the CLI verbs.
 * The verb table below is the whole dispatch; each verb lives in its own file and accepts
 * only the flags its row lists (settings.h). */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include "cli/cli.h"
#include "switchboard/switchboard.h"

typedef struct {
    const char *name;
    int (*run)(sb_config_t *cfg);
    const char *usage;
    const char *summary;
    const char *detail;   /* more lines for `switchboard VERB --help`, or NULL */
    const char *settings; /* flags (without --) this verb reads, for its --help */
    int no_args;          /* 1: takes no positional arguments (the others check their own) */
} sb_verb_t;

#define SB_REDIS_FLAGS                                                                        \
    "redis-url redis-host redis-port redis-password redis-db redis-sentinels "                  \
    "redis-sentinel-master redis-sentinel-password redis-cluster upstash-rest-url upstash-rest-token "       \
    "redis-tls-ca redis-tls-cert redis-tls-key redis-tls-sni redis-tls-insecure log-level "      \
    "log-format "

static const char sb_up_detail[] =
    "  Starts a private redis-server (unix socket, AOF, in --data-dir) unless a REDIS_* setting\n"
    "  is given, then a gateway in development mode (SB_DEV=1) and an agent; restarts a part\n"
    "  that crashes. Once the gateway listens, prints the dashboard URL and a user and an admin\n"
    "  token (7 days, signed with JWT_SECRET or a secret kept in DATA_DIR/dev-jwt-secret),\n"
    "  the operator console's one-click URL (/#token=ADMIN-TOKEN&view=queues) and the gateway's\n"
    "  and the agent's /metrics URLs (--metrics-port, else a free port).\n"
    "  Listens on 127.0.0.1 unless --bind is given (development mode mints admin tokens for\n"
    "  anyone who can reach it); --port 0 takes a free port. One `up` per --data-dir (a lock\n"
    "  file). Ctrl-C stops the gateway and agent first (running jobs finish), Redis last.\n"
    "  Exit: 0 stopped, 1 failed to start (port taken, data dir in use, no redis-server),\n"
    "  2 bad setting.\n"
    "  e.g.  switchboard up --port 3001 --concurrency 4     then open http://127.0.0.1:3001/\n";

static const char sb_gateway_detail[] =
    "  One process: the REST API under /api/v1 (and /api), Socket.IO at /socket.io/, the\n"
    "  dashboard at / (files from WEB_DIR, the socket.io client at /vendor/socket.io.min.js),\n"
    "  /healthz, /readyz and Prometheus /metrics. With --dev (SB_DEV=1) POST /api/v1/dev/token\n"
    "  mints tokens for the dashboard; without it that route does not exist (404). --port 0\n"
    "  takes a free port; the log line `listening on http://ADDR:PORT` names the one it got.\n"
    "  Exit: 0 after SIGTERM/SIGINT, 1 cannot listen (or a handle left open at shutdown),\n"
    "  2 bad setting (e.g. no JWT_SECRET).\n"
    "  e.g.  JWT_SECRET=change-me switchboard gateway --port 3001 --dev\n";

static const char sb_token_detail[] =
    "  Prints an HS256 JWT signed with JWT_SECRET: claims sub, publicKey, role, exp (+ name,\n"
    "  email, department_id, department for people who are agents). --public-key is required\n"
    "  except for role agent. Exit: 0 printed, 2 bad or missing claim.\n"
    "  e.g.  TOKEN=$(switchboard token --role admin --public-key demo-admin --ttl 86400)\n";

static const char sb_agent_detail[] =
    "  Takes ids from agent:{type}:jobs (BLMOVE into its processing list), runs the handler\n"
    "  (built-in rebalance, or --exec CMD: job JSON on stdin, result JSON on stdout, non-zero\n"
    "  exit = failure with stderr as the error, exit 65 = failed for good; or --worker CMD:\n"
    "  one long-lived process per --concurrency, a job per line on stdin, one line back,\n"
    "  {\"jobId\",\"result\"} or {\"jobId\",\"error\",\"retry\"}: README \"Handler protocol\"),\n"
    "  publishes processing/done/error, retries with backoff, dead-letters, heartbeats its\n"
    "  presence and requeues the jobs of dead agents. With --queue-shards N it takes from\n"
    "  the type's N queues in turn (give it --concurrency >= N: a worker waits on each).\n"
    "  SIGTERM/SIGINT: finish running jobs within --grace, put back the rest, exit 0.\n"
    "  Exit: 0 stopped, 1 could not start, 2 bad setting.\n"
    "  e.g.  switchboard agent --concurrency 8\n"
    "        switchboard agent --type chat --exec ./answer.py --job-timeout 60\n"
    "        switchboard agent --concurrency 4 --worker 'exec python3 handler.py'\n";

static const char sb_enqueue_detail[] =
    "  Queues a job atomically (record + id + user index + counter) and prints its id on\n"
    "  stdout. With --wait it subscribes first, prints each status on stderr as it arrives\n"
    "  (\"processing +0.012 s  attempt 1 of 3 by host-1-ab12\"), then the final record on\n"
    "  stdout; --timeout S gives up after S s without an update (the job stays queued).\n"
    "  Also announces {type}:created to the user's Socket.IO room, as the gateway's POST does.\n"
    "  Exit: 0 queued (with --wait: done), 1 the job failed (--wait), 2 usage or bad JSON,\n"
    "  3 Redis unavailable or lost, 4 --wait timed out.\n"
    "  e.g.  switchboard enqueue --wait --timeout 60 --user GXHEXYVepv5 '{\"amount\":1000}'\n";

static const char sb_job_detail[] =
    "  job JOB_ID                 the record of agent:{type}:job:{JOB_ID}, pretty (--json: as stored)\n"
    "  job list [--state S] [--user PK] [--limit N]   jobs across users, newest first\n"
    "                             (S: queued processing retrying done error dead cancelled)\n"
    "  job history JOB_ID         state, holding agent and status history (who, when)\n"
    "  job retry JOB_ID           a failed / dead / cancelled job back on the queue\n"
    "  job retry --all-dead       every dead job of the type (at most --limit)\n"
    "  job cancel JOB_ID          cancel a queued or running job (its agent stops the handler)\n"
    "  job delete JOB_ID          delete the record, history and every list / index entry\n"
    "  Exit: 0 ok, 1 not found or refused (the job's state is named: retry of a running job,\n"
    "  cancel of a finished one), 2 malformed id or a flag of another subcommand, 3 Redis\n"
    "  unavailable.\n";

static const char sb_queue_detail[] =
    "  Lists pending ids (next out first), the processing list of each agent, and the dead\n"
    "  letters of a job type, at most --limit of each, and whether the type is paused; --json\n"
    "  prints the counts per state instead. queue pause|resume: agents stop / start taking new\n"
    "  jobs of the type (running ones finish; the gateway still accepts jobs).\n"
    "  Exit: 0 ok, 2 usage, 3 Redis unavailable.\n";

static const char sb_events_detail[] =
    "  events publish TYPE 'DATA-JSON' [--maxlen N] [--correlation-id ID] [--json]\n"
    "  events publish TYPE - [--count N]        one event per stdin line, pipelined\n"
    "  events request TYPE 'DATA-JSON' [--timeout S]   print the reply's data (exit 4: none)\n"
    "  events tail TYPE... [--from ID|MS|ISO|$] [--max-events N] [--timeout S]\n"
    "  events replay TYPE [--from ID|MS|ISO|-] [--max-events N] [--exec CMD]\n"
    "  events pending TYPE [--group G] [--limit N] [--json]\n"
    "  events info [TYPE...] [--json]\n"
    "  events consume TYPE... [--exec CMD [--respond]] [--group G] [--consumer C] [--count N]\n"
    "                 [--block-ms MS] [--min-idle-ms MS] [--max-deliveries N]\n"
    "                 [--idempotency-ttl S] [--from 0|$] [--max-events N] [--job-timeout S]\n"
    "                 [--metrics-port N]   Prometheus /metrics: events_processed_total...\n"
    "  Streams are agent:stream:{TYPE}; --exec CMD gets the event JSON on stdin and SB_EVENT_ID,\n"
    "  SB_EVENT_TYPE, SB_STREAM_ID, SB_DELIVERIES in its environment; exit 0 acknowledges,\n"
    "  anything else leaves the entry pending for a retry after --min-idle-ms; past\n"
    "  --max-deliveries (or malformed) it goes to agent:stream:dead:{TYPE}. CMD may run for\n"
    "  --job-timeout: meanwhile the claim is renewed every --min-idle-ms / 4, so only the\n"
    "  events of a consumer dead or stalled for --min-idle-ms are claimed. With --respond the\n"
    "  program's stdout (JSON) is sent to the request's data.response_stream.\n"
    "  --json (publish, pending, info): one JSON document on stdout. pending: {stream, group,\n"
    "  pending, first_id, last_id, consumers: [{name, pending}], entries: [{id, consumer,\n"
    "  idle_ms, deliveries}]} (at most --limit entries). info: {streams: [{stream, length}]};\n"
    "  with TYPEs each stream also has type, first_id, last_id, last_generated_id,\n"
    "  dead_letters and groups: [{name, pending, last_delivered_id, lag, consumers: [{name,\n"
    "  pending, idle_ms}]}]. Ids are strings or null; lag is null when Redis does not know.\n"
    "  Exit: 0 ok, 1 not found (pending, info) or an --exec run failed (replay), 2 usage or\n"
    "  bad JSON (publish -: some lines; the others are published), 3 Redis unavailable,\n"
    "  4 timed out (request: no reply; tail: --timeout before --max-events events).\n";

static const char sb_presence_detail[] =
    "  presence [list [DEPARTMENT_ID]] [--json]  online agents, grouped by department\n"
    "  presence stats [--json]                   online count per department and per status\n"
    "  presence agent AGENT_ID                   one agent's record (exit 1: offline)\n"
    "  presence assign DEPARTMENT_ID             count a chat against the least-loaded online\n"
    "                                            agent with free capacity (exit 1: none)\n"
    "  presence release AGENT_ID                 a chat ended: one chat less\n"
    "  presence offline AGENT_ID                 mark an agent offline now\n"
    "  presence sweep                            retire agents whose key expired (one pass)\n"
    "  presence watch [--max-events N] [--timeout S]\n"
    "                                            print agent:online|status|offline events as\n"
    "                                            JSON lines; turns expired key events on\n"
    "  Keys: agent:online:{id} (TTL --agent-status-ttl), agents:all, agents:dept:{id},\n"
    "  agents:meta (with REDIS_CLUSTER: {agents}:online:{id}, {agents}:all, ...); events\n"
    "  on channel agent:presence. Worker agents are in department\n"
    "  'workers'; people get --max-chats chats each.\n"
    "  Exit: 0 ok, 1 none (agent offline, no free agent), 2 usage or malformed id, 3 Redis\n"
    "  unavailable, 4 watch: --timeout before --max-events events.\n";

static const char sb_metrics_detail[] =
    "  The summary of SPEC §4 (what GET /api/v1/agent/{type}/metrics answers), read from\n"
    "  Redis: jobs submitted, done and failed, average and p95 execution time, rate-limit\n"
    "  checks and refusals, and jobs per day. --json prints the route's JSON document.\n"
    "  Exit: 0 ok, 2 usage, 3 Redis unavailable.\n";

static const char sb_bench_detail[] =
    "  Measures this installation end to end through Redis: sends --jobs jobs (atomic\n"
    "  enqueue, pipelined 100 per round trip) for the agents that are running, follows their\n"
    "  status messages, prints progress every second on stderr, then jobs/s and the\n"
    "  enqueue → done latency (p50/p95/p99); --json prints them as one JSON document:\n"
    "  {type, sent, finished, failed, unfinished, elapsed_ms, jobs_per_second,\n"
    "  latency_ms: {p50, p95, p99, max} | null}. Example, with `switchboard up` running:\n"
    "    REDIS_URL=unix://$PWD/.run/redis.sock switchboard bench --jobs 20000\n"
    "  Exit: 0 all finished, 3 Redis unavailable, 4 timed out (--timeout, default 300 s).\n";

static const char sb_doctor_detail[] =
    "  Checks the Redis of REDIS_URL for what Switchboard needs and says how to fix what is\n"
    "  wrong: version (BLMOVE needs 6.2), scripting (EVAL), maxmemory-policy (anything but\n"
    "  noeviction can evict job records), persistence (AOF / RDB), keyspace notifications\n"
    "  (presence; the sweep is the fallback), latency (a few PINGs), TLS, and with\n"
    "  REDIS_CLUSTER the cluster (masters, slots served, replicas, each master's version and\n"
    "  eviction policy). Warnings (no\n"
    "  persistence, events off, slow, plain TCP off this host) do not fail it.\n"
    "  Exit: 0 all checks pass, 1 a check failed, 2 usage, 3 Redis unavailable.\n"
    "  e.g.  REDIS_URL=rediss://cache.example:6380 REDIS_TLS_CA=ca.pem switchboard doctor\n";

static const sb_verb_t sb_verbs[] = {
    {"up", sb_cmd_up, "up [--port N] [--concurrency N] [--data-dir DIR]",
     "the whole system here: private redis-server (unless REDIS_URL), gateway, agent, dashboard",
     sb_up_detail,
     SB_REDIS_FLAGS "port bind jwt-secret job-types web-dir concurrency grace data-dir "
                    "metrics-port queue-shards", 1},
    {"gateway", sb_cmd_gateway, "gateway [--port N] [--bind ADDR] [--dev] [--job-types a,b]",
     "serve the HTTP API (/api/v1), Socket.IO, the dashboard (/), probes and /metrics",
     sb_gateway_detail,
     SB_REDIS_FLAGS "port bind jwt-secret dev web-dir job-types rate-limit rate-window "
                    "agent-status-ttl max-chats sio-connect-rate sio-connect-rate-ip "
                    "ping-interval ping-timeout connect-timeout max-payload allow-eio3 "
                    "tls-cert tls-key trusted-proxies redis-wait-replicas redis-wait-timeout-ms "
                    "audit-events admin-feed queue-shards", 1},
    {"token", sb_cmd_token, "token --role R --public-key PK [--sub S] [--ttl SECONDS] [...]",
     "mint a development JWT (HS256 with JWT_SECRET) and print it", sb_token_detail,
     "jwt-secret role public-key sub name email department-id department ttl", 1},
    {"agent", sb_cmd_agent, "agent [--type T] [--concurrency N] [--exec CMD | --worker CMD]",
     "run a worker: take jobs, run the handler, publish status, retry, recover",
     sb_agent_detail,
     SB_REDIS_FLAGS "type concurrency exec worker agent-id max-attempts retry-backoff-ms "
                    "retry-backoff-max-ms job-timeout grace agent-status-ttl heartbeat-interval "
                    "recovery-interval job-lease dead-retention dead-max metrics-port bind "
                    "audit-events queue-shards", 1},
    {"enqueue", sb_cmd_enqueue,
     "enqueue [--type T] [--user PK] [--wait] [--timeout S] 'JSON'",
     "queue a job (atomically) and print its id; --wait follows it to the end",
     sb_enqueue_detail, SB_REDIS_FLAGS "type user user-id wait timeout queue-shards"},
    {"job", sb_cmd_job, "job [list|history|retry|cancel|delete] [--type T] [--json] JOB_ID",
     "print, list, retry, cancel or delete jobs", sb_job_detail,
     SB_REDIS_FLAGS "type json state user limit all-dead queue-shards"},
    {"queue", sb_cmd_queue, "queue [pause|resume] [--type T] [--limit N] [--json]",
     "pending, processing (per agent) and dead jobs of a type; pause / resume it",
     sb_queue_detail, SB_REDIS_FLAGS "type limit json queue-shards"},
    {"presence", sb_cmd_presence, "presence [list [DEPT]|stats|agent ID|assign DEPT|...]",
     "who is online, by department", sb_presence_detail,
     SB_REDIS_FLAGS "json agent-status-ttl max-chats max-events timeout"},
    {"metrics", sb_cmd_metrics, "metrics [--type T] [--days N] [--json]",
     "the jobs metrics summary (totals, failures, execution times, rate limit, per day)",
     sb_metrics_detail, SB_REDIS_FLAGS "type days json queue-shards", 1},
    {"doctor", sb_cmd_doctor, "doctor [--json]",
     "check a Redis for what Switchboard needs, and how to fix what is wrong", sb_doctor_detail,
     SB_REDIS_FLAGS "json", 1},
    {"bench", sb_cmd_bench, "bench [--type T] [--jobs N] [--timeout S] [--json]",
     "send N jobs to the running agents and measure jobs/s and latency", sb_bench_detail,
     SB_REDIS_FLAGS "type jobs timeout json queue-shards", 1},
    {"events", sb_cmd_events, "events publish|request|tail|replay|pending|info|consume ...",
     "event bus on Redis Streams (switchboard events --help)", sb_events_detail,
     SB_REDIS_FLAGS "group consumer maxlen count block-ms min-idle-ms max-deliveries "
                    "idempotency-ttl from correlation-id respond max-events exec job-timeout "
                    "json limit timeout metrics-port bind"},
};
#define SB_NVERBS (sizeof sb_verbs / sizeof sb_verbs[0])

/* Upstash's REST API holds no connection: only these verbs work over it (enqueue without
 * --wait, events publish). Returns 1 after saying what the others need. */
static int sb_rest_refused(const sb_verb_t *verb, const sb_config_t *cfg) {
    static const char *const ok[] = {"enqueue", "job", "queue", "metrics", "events"};
    int fine = 0;
    if (!cfg->redis.rest_url) return 0;
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) fine |= !strcmp(verb->name, ok[i]);
    if (!strcmp(verb->name, "enqueue") && cfg->wait) fine = 0;
    if (!strcmp(verb->name, "events") && (cfg->nargs < 1 || strcmp(cfg->args[0], "publish")))
        fine = 0;
    if (fine) return 0;
    fprintf(stderr, "switchboard %s: needs a TCP connection to Redis (it holds one: blocking "
            "reads or SUBSCRIBE), which Upstash's REST API cannot give; set REDIS_URL (Upstash: "
            "rediss://default:TOKEN@HOST:6379). Over UPSTASH_REDIS_REST_URL: enqueue (without "
            "--wait), job, queue, metrics, events publish\n", verb->name);
    return 1;
}

static void sb_usage(FILE *out) {
    fprintf(out, "switchboard %s — real-time jobs for agents on Redis\n\nusage:\n", sb_version());
    for (size_t i = 0; i < SB_NVERBS; i++)
        fprintf(out, "  switchboard %-62s %s\n", sb_verbs[i].usage, sb_verbs[i].summary);
    fprintf(out, "  switchboard %-62s %s\n", "version", "print the version");
    fprintf(out, "\n`switchboard VERB --help` shows one verb: what it does, its exit codes and "
                 "settings.\nFirst run: `switchboard up`, then open the dashboard URL it prints."
                 "\n\n" SB_EXIT_HELP "\nsettings (flag, environment, meaning [default]; flags "
                 "win; each verb takes only its own flags):\n");
    sb_config_usage(out);
}

static void sb_verb_usage(const sb_verb_t *verb) {
    printf("usage: switchboard %s\n  %s\n\n%s\nsettings (flag, environment, meaning [default]; "
           "flags win; all: switchboard --help):\n", verb->usage, verb->summary,
           verb->detail ? verb->detail : "");
    sb_config_usage_only(stdout, verb->settings);
}

static int sb_wants_help(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return 1;
    return 0;
}

int main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN); /* a lost Redis or client must be an error, never a death */
    if (argc < 2) {
        sb_usage(stderr);
        return SB_EXIT_USAGE;
    }
    if (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        sb_usage(stdout);
        return SB_EXIT_OK;
    }
    if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
        printf("switchboard %s\n", sb_version());
        return SB_EXIT_OK;
    }
    const sb_verb_t *verb = NULL;
    for (size_t i = 0; i < SB_NVERBS; i++)
        if (!strcmp(argv[1], sb_verbs[i].name)) verb = &sb_verbs[i];
    if (!verb) {
        fprintf(stderr, "switchboard: unknown verb '%s' (see switchboard --help)\n", argv[1]);
        return SB_EXIT_USAGE;
    }
    if (sb_wants_help(argc - 1, argv + 1)) {
        sb_verb_usage(verb);
        return SB_EXIT_OK;
    }
    sb_config_t cfg;
    char err[512];
    if (sb_config_load_only(&cfg, argc - 1, argv + 1, verb->settings, err, sizeof err) != SB_OK) {
        fprintf(stderr, "switchboard %s: %s\n", verb->name, err);
        sb_config_close(&cfg);
        return SB_EXIT_USAGE;
    }
    if (verb->no_args && cfg.nargs > 0) {
        fprintf(stderr, "switchboard %s: unexpected argument '%s' (it takes none; see "
                "switchboard %s --help)\n", verb->name, cfg.args[0], verb->name);
        sb_config_close(&cfg);
        return SB_EXIT_USAGE;
    }
    sb_log_set_level(cfg.log_level);
    sb_log_set_format(cfg.log_format);
    if (cfg.redis.cluster) sb_key_style_set(SB_KEYS_CLUSTER); /* once, before any thread */
    sb_queue_shards_set(cfg.queue_shards); /* once, before any thread (job.h) */
    if (sb_rest_refused(verb, &cfg)) {
        sb_config_close(&cfg);
        return SB_EXIT_USAGE;
    }
    if (cfg.redis.tls.enabled && cfg.redis.tls.insecure)
        fprintf(stderr, "switchboard %s: WARNING: REDIS_TLS_INSECURE is on: the Redis server's "
                "certificate and name are NOT checked; anyone on the network path can read and "
                "change jobs. Use it for development only.\n", verb->name);
    int rc = verb->run(&cfg);
    sb_config_close(&cfg);
    return rc;
}
