/* The verbs of the `switchboard` program. Each takes the loaded configuration (positional
 * arguments in cfg->args) and returns the process exit status. */
#ifndef SB_CLI_H
#define SB_CLI_H

#include "switchboard/config.h"

int sb_cmd_agent(sb_config_t *cfg);
int sb_cmd_enqueue(sb_config_t *cfg);
int sb_cmd_job(sb_config_t *cfg);
int sb_cmd_queue(sb_config_t *cfg);
int sb_cmd_gateway(sb_config_t *cfg);
int sb_cmd_token(sb_config_t *cfg);

/* Connects a blocking client for a CLI verb, or prints why not and returns NULL. */
struct sb_redis;
struct sb_redis *sb_cli_connect(const sb_config_t *cfg);

#endif
