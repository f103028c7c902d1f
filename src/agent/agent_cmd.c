/* `switchboard agent`: the worker runtime with the built-in handler of its job type, or any
 * program given with --exec. */
#include <stdio.h>
#include <string.h>
#include "cli/cli.h"
#include "handlers.h"
#include "switchboard/log.h"

int sb_cmd_agent(sb_config_t *cfg) {
    sb_exec_opts_t exec = {.cmd = cfg->exec_cmd, .timeout_s = cfg->job_timeout};
    if (cfg->exec_cmd && *cfg->exec_cmd)
        return sb_agent_run(cfg, sb_handler_exec, &exec);
    if (strcmp(cfg->job_type, "rebalance") == 0)
        return sb_agent_run(cfg, sb_handler_rebalance, NULL);
    sb_error("agent", "no built-in handler for type '%s': give one with --exec CMD",
             cfg->job_type);
    return 2;
}
