/* `switchboard presence …`: who is online (SPEC §5), what the seed does with redis-cli on
 * agent:online:* keys, made first-class. A table of sub-verbs; each is one blocking presence
 * call (src/lib/presence_sync.c) and a printer. --json prints the library's JSON as is.
 * `watch` is the gateway's presence loop in miniature: it turns expired key events on, turns
 * each agent-key expiry into agent:offline, and prints every event on agent:presence. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/cli.h"
#include "switchboard/cluster.h"
#include "switchboard/switchboard.h"

typedef struct {
    sb_config_t *cfg;
    sb_redis_t *r;
    sb_presence_ctx_t ctx;
    const char *arg; /* the sub-verb's argument, or NULL */
} sb_pcli_t;

static int sb_pcli_fail(const char *what, int rc) {
    fprintf(stderr, "switchboard presence %s: %s\n", what,
            rc == SB_EINVAL ? "malformed id" : sb_strerror(rc));
    return sb_cli_exit(rc);
}

/* Prints doc as JSON: compact with --json, indented otherwise. */
static void sb_pcli_print_json(const sb_pcli_t *c, const cJSON *doc) {
    char *txt = c->cfg->json_out ? sb_json_print(doc) : cJSON_Print(doc);
    if (txt) printf("%s\n", txt);
    free(txt);
}

static const char *sb_pcli_str(const cJSON *o, const char *name) {
    const char *s = sb_json_str(o, name);
    return s && *s ? s : "-";
}

/* One line per agent under a header per department (the list comes sorted by department). */
static void sb_pcli_print_table(const cJSON *agents) {
    const char *dept = NULL;
    const cJSON *a;
    if (cJSON_GetArraySize(agents) == 0) printf("no agent online\n");
    cJSON_ArrayForEach(a, agents) {
        const char *d = sb_json_str(a, "department_id");
        if (!dept || strcmp(dept, d ? d : "") != 0) {
            dept = d ? d : "";
            if (*dept) printf("%sdepartment %s (%s)\n", a == agents->child ? "" : "\n",
                              sb_pcli_str(a, "department"), dept);
            else printf("%sno department\n", a == agents->child ? "" : "\n");
        }
        double cur = 0, max = 0;
        char chats[48];
        sb_json_num(a, "current_chats", &cur);
        sb_json_num(a, "max_chats", &max);
        snprintf(chats, sizeof chats, "%.0f/%.0f chats", cur, max);
        printf("  %-38s %-6s %-12s %s  %s <%s>\n", sb_pcli_str(a, "agent_id"),
               sb_pcli_str(a, "status"), chats, sb_pcli_str(a, "last_heartbeat"),
               sb_pcli_str(a, "name"), sb_pcli_str(a, "email"));
    }
}

static int sb_pcli_list(sb_pcli_t *c) {
    cJSON *agents = NULL;
    int rc = sb_presence_list(c->r, &c->ctx, c->arg, &agents);
    if (rc != SB_OK) return sb_pcli_fail("list", rc);
    if (c->cfg->json_out) sb_pcli_print_json(c, agents);
    else sb_pcli_print_table(agents);
    cJSON_Delete(agents);
    return SB_EXIT_OK;
}

static int sb_pcli_stats(sb_pcli_t *c) {
    cJSON *stats = NULL;
    int rc = sb_presence_stats(c->r, &c->ctx, &stats);
    if (rc != SB_OK) return sb_pcli_fail("stats", rc);
    if (c->cfg->json_out) {
        sb_pcli_print_json(c, stats);
    } else {
        const cJSON *by = sb_json_obj(stats, "by_status"), *d;
        double n[4] = {0};
        sb_json_num(stats, "total", &n[0]);
        sb_json_num(by, "online", &n[1]);
        sb_json_num(by, "busy", &n[2]);
        sb_json_num(by, "away", &n[3]);
        printf("%.0f online: %.0f online, %.0f busy, %.0f away\n", n[0], n[1], n[2], n[3]);
        cJSON_ArrayForEach(d, sb_json_obj(stats, "departments")) {
            double t = 0, on = 0, busy = 0, away = 0, cur = 0, max = 0;
            sb_json_num(d, "total", &t), sb_json_num(d, "online", &on);
            sb_json_num(d, "busy", &busy), sb_json_num(d, "away", &away);
            sb_json_num(d, "current_chats", &cur), sb_json_num(d, "max_chats", &max);
            printf("  %-38s %-20s %4.0f (%.0f online, %.0f busy, %.0f away)  chats %.0f/%.0f\n",
                   sb_pcli_str(d, "department_id"), sb_pcli_str(d, "department"), t, on, busy,
                   away, cur, max);
        }
    }
    cJSON_Delete(stats);
    return SB_EXIT_OK;
}

/* agent ID, assign DEPT, release ID: one record, or exit 1 when there is none. */
static int sb_pcli_record(sb_pcli_t *c, const char *what, int rc, cJSON *rec, const char *none) {
    if (rc == SB_ENOTFOUND) fprintf(stderr, "switchboard presence %s: %s\n", what, none);
    else if (rc != SB_OK) return sb_pcli_fail(what, rc);
    else sb_pcli_print_json(c, rec);
    cJSON_Delete(rec);
    return rc == SB_OK ? SB_EXIT_OK : SB_EXIT_FAIL;
}

static int sb_pcli_agent(sb_pcli_t *c) {
    cJSON *rec = NULL;
    int rc = sb_presence_get(c->r, c->arg, &rec);
    return sb_pcli_record(c, "agent", rc, rec, "offline (no live presence key)");
}

static int sb_pcli_assign(sb_pcli_t *c) {
    cJSON *rec = NULL;
    int rc = sb_presence_assign(c->r, &c->ctx, c->arg, &rec);
    return sb_pcli_record(c, "assign", rc, rec, "none: no online agent with free capacity");
}

static int sb_pcli_release(sb_pcli_t *c) {
    cJSON *rec = NULL;
    int rc = sb_presence_release(c->r, &c->ctx, c->arg, &rec);
    return sb_pcli_record(c, "release", rc, rec, "the agent is offline");
}

static int sb_pcli_offline(sb_pcli_t *c) {
    int was = 0;
    int rc = sb_presence_offline(c->r, &c->ctx, c->arg, sb_now_ms(), &was);
    if (rc != SB_OK) return sb_pcli_fail("offline", rc);
    printf("%s\n", was ? "offline" : "was not online");
    return SB_EXIT_OK;
}

/* One full pass over agents:meta. */
static int sb_pcli_sweep(sb_pcli_t *c) {
    char cursor[32] = "0";
    int total = 0, n = 0, rc;
    do {
        if ((rc = sb_presence_sweep(c->r, &c->ctx, cursor, 0, &n)) != SB_OK)
            return sb_pcli_fail("sweep", rc);
        total += n;
    } while (strcmp(cursor, "0") != 0);
    printf("%d agent(s) retired\n", total);
    return SB_EXIT_OK;
}

/* Handles one message of the watch connection. Returns 1 when an event was printed. */
static int sb_pcli_watch_msg(sb_pcli_t *c, const redisReply *msg) {
    char id[SB_AGENT_ID_MAX + 1];
    if (sb_presence_expired_parse(msg, id, sizeof id)) {
        sb_presence_expire(c->r, &c->ctx, id, NULL); /* its event comes back on the channel */
        return 0;
    }
    if (msg->type != REDIS_REPLY_ARRAY || msg->elements != 3 ||
        strcmp(msg->element[0]->str, "message") != 0)
        return 0;
    printf("%s\n", msg->element[2]->str);
    fflush(stdout);
    return 1;
}

/* Redis Cluster: a plain client of the master holding the presence keys ({agents}), where
 * their expiries are announced (node-local), with the events turned on there. NULL when the
 * slot map cannot be read. */
static sb_redis_t *sb_pcli_presence_master(sb_pcli_t *c) {
    sb_slotmap_t map = {0};
    char err[256];
    const char *key = sb_presence_names()->meta;
    redisReply *rep = sb_redis_cmd(c->r, "CLUSTER SLOTS");
    int ok = rep && sb_slotmap_parse(&map, rep, "127.0.0.1", err, sizeof err) == SB_OK;
    int i = ok ? map.owner[sb_cluster_keyslot(key, strlen(key))] : SB_CLUSTER_NO_NODE;
    sb_redis_t *r = NULL;
    if (i != SB_CLUSTER_NO_NODE) {
        sb_redis_addr_t a = sb_cluster_node_addr(&c->cfg->redis, map.nodes[i].host,
                                                 map.nodes[i].port);
        r = sb_redis_create(&a, "cli");
    }
    if (rep) freeReplyObject(rep);
    sb_slotmap_free(&map);
    if (r && (sb_redis_connect(r, err, sizeof err) != SB_OK ||
              sb_presence_notify_enable(r) != SB_OK))
        fprintf(stderr, "switchboard presence watch: expired key events unavailable on the "
                "presence master; run `switchboard presence sweep` periodically\n");
    return r;
}

/* A subscriber for watch (reads wait in sb_pcli_watch, up to --timeout): on a cluster, on the
 * presence master (a PUBLISH reaches every node's subscribers; expiries only its own). */
static sb_redis_t *sb_pcli_subscriber(sb_pcli_t *c) {
    const sb_config_t *cfg = c->cfg;
    char err[256], chan[64];
    sb_redis_t *sub = cfg->redis.cluster ? sb_pcli_presence_master(c)
                                         : sb_redis_create(&cfg->redis, "cli");
    redisReply *rep = NULL;
    if (sub && (sb_redis_connected(sub) || sb_redis_connect(sub, err, sizeof err) == SB_OK))
        rep = sb_redis_cmd(sub, "SUBSCRIBE %s %s", SB_PRESENCE_CHANNEL,
                           sb_presence_expired_channel(chan, sizeof chan, cfg->redis.db));
    if (!rep) {
        fprintf(stderr, "switchboard presence watch: cannot subscribe\n");
        sb_redis_free(sub);
        return NULL;
    }
    freeReplyObject(rep);
    return sub;
}

static int sb_pcli_watch(sb_pcli_t *c) {
    int rc = c->cfg->redis.cluster ? SB_OK : sb_presence_notify_enable(c->r);
    if (rc != SB_OK)
        fprintf(stderr, "switchboard presence watch: expired key events unavailable (%s); run "
                "`switchboard presence sweep` periodically\n", sb_strerror(rc));
    sb_redis_t *sub = sb_pcli_subscriber(c);
    if (!sub) return SB_EXIT_REDIS;
    int64_t deadline = c->cfg->timeout > 0 ? sb_mono_ms() + c->cfg->timeout * 1000LL : 0;
    int n = 0, max = c->cfg->max_events, timed_out = 0, lost = 0;
    while (!lost && (max == 0 || n < max) && (!deadline || sb_mono_ms() < deadline)) {
        int wait_ms = deadline ? (int)(deadline - sb_mono_ms()) : -1;
        redisReply *msg = sb_redis_read_wait(sub, wait_ms, &timed_out);
        if (!msg && !timed_out) lost = 1;
        if (!msg) continue; /* subscribe confirmations are skipped by sb_pcli_watch_msg */
        n += sb_pcli_watch_msg(c, msg);
        freeReplyObject(msg);
    }
    sb_redis_free(sub);
    if (lost) fprintf(stderr, "switchboard presence watch: lost redis\n");
    return lost ? SB_EXIT_REDIS : sb_cli_watch_end(0, max, n);
}

typedef struct {
    const char *name;
    int (*run)(sb_pcli_t *c);
    int arg; /* 0: none, 1: required, 2: optional */
} sb_psub_t;

static const sb_psub_t sb_psubs[] = {
    {"list", sb_pcli_list, 2},       {"stats", sb_pcli_stats, 0},
    {"agent", sb_pcli_agent, 1},     {"assign", sb_pcli_assign, 1},
    {"release", sb_pcli_release, 1}, {"offline", sb_pcli_offline, 1},
    {"sweep", sb_pcli_sweep, 0},     {"watch", sb_pcli_watch, 0},
};

int sb_cmd_presence(sb_config_t *cfg) {
    const sb_psub_t *sub = cfg->nargs == 0 ? &sb_psubs[0] : NULL;
    for (size_t i = 0; !sub && i < sizeof sb_psubs / sizeof sb_psubs[0]; i++)
        if (!strcmp(cfg->args[0], sb_psubs[i].name)) sub = &sb_psubs[i];
    int nargs = cfg->nargs > 0 ? cfg->nargs - 1 : 0;
    if (!sub || nargs > (sub->arg ? 1 : 0) || (sub->arg == 1 && nargs != 1)) {
        fprintf(stderr, "usage: switchboard presence [list [DEPT]|stats|agent ID|assign DEPT|"
                "release ID|offline ID|sweep|watch] [--json] (switchboard presence --help)\n");
        return SB_EXIT_USAGE;
    }
    sb_pcli_t c = {.cfg = cfg, .arg = nargs ? cfg->args[1] : NULL};
    sb_presence_init(&c.ctx, cfg->agent_status_ttl, cfg->max_chats);
    if (!(c.r = sb_cli_connect(cfg))) return SB_EXIT_REDIS;
    int rc = sub->run(&c);
    sb_redis_free(c.r);
    return rc;
}
