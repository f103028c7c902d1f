/* The verbs of the `switchboard` program. Each takes the loaded configuration (positional
 * arguments in cfg->args) and returns the process exit status. */
#ifndef SB_CLI_H
#define SB_CLI_H

#include <pthread.h>
#include <stdatomic.h>
#include "switchboard/config.h"

int sb_cmd_agent(sb_config_t *cfg);
int sb_cmd_enqueue(sb_config_t *cfg);
int sb_cmd_job(sb_config_t *cfg);
int sb_cmd_queue(sb_config_t *cfg);
int sb_cmd_up(sb_config_t *cfg);
int sb_cmd_metrics(sb_config_t *cfg);
int sb_cmd_bench(sb_config_t *cfg);
int sb_cmd_events(sb_config_t *cfg);
int sb_cmd_gateway(sb_config_t *cfg);
int sb_cmd_token(sb_config_t *cfg);
int sb_cmd_presence(sb_config_t *cfg);

/* Connects a blocking client for a CLI verb, or prints why not and returns NULL. */
struct sb_redis;
struct sb_redis *sb_cli_connect(const sb_config_t *cfg);

/* SIGINT/SIGTERM → stop = 1 (signals.c). Start before any other thread: it blocks both
 * signals in the caller. stop() wakes and joins the watcher. */
typedef struct {
    pthread_t thread;
    int started;
    atomic_int stop;
} sb_sigwatch_t;
int sb_sigwatch_start(sb_sigwatch_t *w); /* 0 or SB_ERR */
void sb_sigwatch_stop(sb_sigwatch_t *w);

#endif
