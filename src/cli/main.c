/* `switchboard VERB [flags]`: one program for the gateway, the agent and the CLI verbs.
 * The verb table below is the whole dispatch; each verb lives in its own file. */
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
    const char *detail; /* more lines for `switchboard VERB --help`, or NULL */
} sb_verb_t;

static const char sb_events_detail[] =
    "  events publish TYPE 'DATA-JSON' [--maxlen N] [--correlation-id ID] [--json]\n"
    "  events publish TYPE - [--count N]        one event per stdin line, pipelined\n"
    "  events request TYPE 'DATA-JSON' [--timeout S]   print the reply's data (exit 1: none)\n"
    "  events tail TYPE... [--from ID|MS|ISO|$] [--max-events N] [--timeout S]\n"
    "  events replay TYPE [--from ID|MS|ISO|-] [--max-events N] [--exec CMD]\n"
    "  events pending TYPE [--group G] [--limit N]\n"
    "  events info [TYPE...]\n"
    "  events consume TYPE... [--exec CMD [--respond]] [--group G] [--consumer C] [--count N]\n"
    "                 [--block-ms MS] [--min-idle-ms MS] [--max-deliveries N]\n"
    "                 [--idempotency-ttl S] [--from 0|$] [--max-events N] [--job-timeout S]\n"
    "  Streams are agent:stream:{TYPE}; --exec CMD gets the event JSON on stdin and SB_EVENT_ID,\n"
    "  SB_EVENT_TYPE, SB_STREAM_ID, SB_DELIVERIES in its environment; exit 0 acknowledges,\n"
    "  anything else leaves the entry pending for a retry after --min-idle-ms; past\n"
    "  --max-deliveries (or malformed) it goes to agent:stream:dead:{TYPE}. With --respond the\n"
    "  program's stdout (JSON) is sent to the request's data.response_stream.\n";

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
    "  agents:meta; events on channel agent:presence. Worker agents are in department\n"
    "  'workers'; people get --max-chats chats each.\n";

static const sb_verb_t sb_verbs[] = {
    {"up", sb_cmd_up, "up [--concurrency N] [--data-dir DIR]",
     "the whole system here: private redis-server (unless REDIS_URL), gateway, agent"},
    {"gateway", sb_cmd_gateway, "gateway [--port N] [--bind ADDR] [--job-types a,b]",
     "serve the HTTP API (/api/v1), /healthz, /readyz and Prometheus /metrics"},
    {"token", sb_cmd_token, "token --role R --public-key PK [--sub S] [--ttl SECONDS]",
     "mint a development JWT (HS256 with JWT_SECRET) and print it"},
    {"agent", sb_cmd_agent, "agent [--type T] [--concurrency N] [--exec CMD]",
     "run a worker: take jobs, run the handler, publish status, retry, recover"},
    {"enqueue", sb_cmd_enqueue, "enqueue [--type T] [--user PK] [--wait] 'PAYLOAD-JSON'",
     "queue a job (atomically) and print its id; --wait follows it to the end"},
    {"job", sb_cmd_job, "job [--type T] JOB_ID", "print a job record"},
    {"queue", sb_cmd_queue, "queue [--type T] [--limit N]",
     "pending, processing (per agent) and dead jobs of a type"},
    {"presence", sb_cmd_presence, "presence [list [DEPT]|stats|agent ID|assign DEPT|...]",
     "who is online, by department (switchboard presence --help)", sb_presence_detail},
    {"events", sb_cmd_events, "events publish|request|tail|replay|pending|info|consume ...",
     "event bus on Redis Streams (switchboard events --help)", sb_events_detail},
};
#define SB_NVERBS (sizeof sb_verbs / sizeof sb_verbs[0])

static void sb_usage(FILE *out) {
    fprintf(out, "switchboard %s — real-time jobs for agents on Redis\n\nusage:\n", SB_VERSION);
    for (size_t i = 0; i < SB_NVERBS; i++)
        fprintf(out, "  switchboard %-58s %s\n", sb_verbs[i].usage, sb_verbs[i].summary);
    fprintf(out, "\nsettings (flag, environment, meaning [default]):\n");
    sb_config_usage(out);
}

static int sb_wants_help(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return 1;
    return 0;
}

int main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN); /* a lost Redis or client must be an error, never a death */
    if (argc < 2 || !strcmp(argv[1], "help") || !strcmp(argv[1], "--help") ||
        !strcmp(argv[1], "-h")) {
        sb_usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
        printf("switchboard %s\n", SB_VERSION);
        return 0;
    }
    const sb_verb_t *verb = NULL;
    for (size_t i = 0; i < SB_NVERBS; i++)
        if (!strcmp(argv[1], sb_verbs[i].name)) verb = &sb_verbs[i];
    if (!verb) {
        fprintf(stderr, "switchboard: unknown verb '%s' (see switchboard --help)\n", argv[1]);
        return 2;
    }
    if (sb_wants_help(argc - 1, argv + 1)) {
        printf("usage: switchboard %s\n  %s\n%s\nsettings (flag, environment, meaning "
               "[default]):\n", verb->usage, verb->summary, verb->detail ? verb->detail : "");
        sb_config_usage(stdout);
        return 0;
    }
    sb_config_t cfg;
    char err[512];
    if (sb_config_load(&cfg, argc - 1, argv + 1, err, sizeof err) != SB_OK) {
        fprintf(stderr, "switchboard %s: %s\n", verb->name, err);
        sb_config_close(&cfg);
        return 2;
    }
    sb_log_set_level(cfg.log_level);
    int rc = verb->run(&cfg);
    sb_config_close(&cfg);
    return rc;
}
