/* `switchboard agent`: the worker runtime with the built-in handler of its job type, any
 * program given with --exec (a process per job), or long-lived handler processes given with
 * --worker (workerpool.h); with --metrics-port, a Prometheus listener runs beside it. */
#include <stdio.h>
#include <string.h>
#include "agent/metrics_http.h"
#include "agent/worker.h"
#include "cli/cli.h"
#include "handlers.h"
#include "switchboard/log.h"

typedef struct {
    const sb_config_t *cfg;
    sb_agent_metrics_t *metrics; /* NULL when --metrics-port is 0 */
} sb_agent_side_t;

static int sb_agent_side_start(sb_agent_t *a, void *ctx) {
    sb_agent_side_t *side = ctx;
    char err[256];
    if (side->cfg->metrics_port == 0) return 0;
    side->metrics = sb_agent_metrics_start(a, side->cfg->bind, side->cfg->metrics_port, err,
                                           sizeof err);
    if (!side->metrics) sb_error("agent", "%s", err);
    return side->metrics ? 0 : -1;
}

static void sb_agent_side_stop(void *ctx) {
    sb_agent_side_t *side = ctx;
    sb_agent_metrics_stop(side->metrics);
    side->metrics = NULL;
}

/* The agent's options from the settings. */
static void sb_agent_opts_from(const sb_config_t *cfg, sb_agent_opts_t *o) {
    sb_agent_opts_init(o);
    o->type = cfg->job_type;
    o->agent_id = cfg->agent_id;
    o->concurrency = cfg->concurrency;
    o->max_attempts = cfg->max_attempts;
    o->retry_backoff_ms = cfg->retry_backoff_ms;
    o->retry_backoff_max_ms = cfg->retry_backoff_max_ms;
    o->status_ttl_s = cfg->agent_status_ttl;
    o->heartbeat_s = cfg->heartbeat_interval;
    o->recovery_s = cfg->recovery_interval;
    o->lease_ms = cfg->job_lease * 1000;
    o->dead_retention_s = cfg->dead_retention;
    o->dead_max = cfg->dead_max;
    o->no_audit = !cfg->audit_events;
    o->shutdown_grace_s = cfg->shutdown_grace;
}

/* --worker: the pool lives as long as the agent; its processes get the grace period again to
 * exit once their stdin closes. */
static int sb_agent_run_workers(sb_config_t *cfg, const sb_agent_opts_t *o,
                                sb_agent_hooks_t *hooks) {
    sb_workerpool_opts_t wo;
    sb_workerpool_opts_init(&wo);
    wo.cmd = cfg->worker_cmd;
    wo.procs = cfg->concurrency;
    wo.grace_ms = cfg->shutdown_grace * 1000;
    char err[256];
    sb_workerpool_t *pool = sb_workerpool_create(&wo, err, sizeof err);
    if (!pool) {
        sb_error("agent", "%s", err);
        return 1;
    }
    sb_worker_handler_opts_t h = {.pool = pool, .timeout_s = cfg->job_timeout};
    int rc = sb_agent_run_hooks(&cfg->redis, o, sb_handler_worker, &h, hooks);
    sb_workerpool_free(pool);
    return rc;
}

int sb_cmd_agent(sb_config_t *cfg) {
    sb_exec_opts_t exec = {.cmd = cfg->exec_cmd, .timeout_s = cfg->job_timeout};
    sb_agent_side_t side = {.cfg = cfg};
    sb_agent_hooks_t hooks = {sb_agent_side_start, sb_agent_side_stop, &side};
    sb_agent_opts_t o;
    sb_agent_opts_from(cfg, &o);
    sb_cli_warn_eviction(cfg, "agent");
    int has_exec = cfg->exec_cmd && *cfg->exec_cmd;
    int has_worker = cfg->worker_cmd && *cfg->worker_cmd;
    if (has_exec && has_worker) {
        sb_error("agent", "give --exec CMD or --worker CMD, not both");
        return 2;
    }
    if (has_worker) return sb_agent_run_workers(cfg, &o, &hooks);
    if (has_exec)
        return sb_agent_run_hooks(&cfg->redis, &o, sb_handler_exec, &exec, &hooks);
    if (strcmp(cfg->job_type, "rebalance") == 0)
        return sb_agent_run_hooks(&cfg->redis, &o, sb_handler_rebalance, NULL, &hooks);
    sb_error("agent", "no built-in handler for type '%s': give one with --exec or --worker",
             cfg->job_type);
    return 2;
}
