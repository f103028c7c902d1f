/* The verbs of the `switchboard` program. Each takes the loaded settings (positional
 * arguments in cfg->args) and returns the process exit status, one of sb_exit_t. */
#ifndef SB_CLI_H
#define SB_CLI_H

#include <pthread.h>
#include <stdatomic.h>
#include "cli/settings.h"

/* Exit statuses, one meaning each, for every verb (printed by `switchboard --help`, and the
 * same table is in README.md). */
typedef enum {
    SB_EXIT_OK = 0,      /* done (a long-running verb: stopped by SIGTERM/SIGINT) */
    SB_EXIT_FAIL = 1,    /* it ran and failed: job failed, not found, none free, cannot start */
    SB_EXIT_USAGE = 2,   /* usage or bad input: unknown verb or flag, bad setting or argument */
    SB_EXIT_REDIS = 3,   /* Redis unavailable: cannot connect, or the connection was lost */
    SB_EXIT_TIMEOUT = 4, /* gave up waiting (--timeout) */
} sb_exit_t;

/* The table above as text, for --help. */
#define SB_EXIT_HELP                                                                       \
    "exit status (every verb): 0 ok, 1 failed (job failed, not found, cannot start),\n"  \
    "  2 usage or bad input, 3 Redis unavailable, 4 timed out (--timeout)\n"

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
int sb_cmd_doctor(sb_config_t *cfg);

/* jobctl_cmd.c: `job list|history|retry|cancel|delete` and `queue pause|resume` when
 * cfg->args[0] names one (cfg->nargs >= 1); -1 when it does not, else the exit status. */
int sb_cli_job_subcommand(sb_config_t *cfg);
int sb_cli_queue_pause(sb_config_t *cfg);

/* The exit status for a library result: SB_OK 0, SB_EINVAL 2, SB_EREDIS 3, SB_ETIMEOUT 4,
 * anything else 1. */
int sb_cli_exit(int sb_rc);
/* How a watching verb (events tail, presence watch) that stopped reading ends: SB_EXIT_OK when
 * it was stopped by a signal, has no --max-events, or saw them all; SB_EXIT_TIMEOUT when its
 * --timeout ended it first. */
int sb_cli_watch_end(int stopped, int max_events, long long seen);

/* 1 when the listen address addr only accepts connections from this host (127.0.0.0/8, ::1,
 * localhost); 0 for anything else, 0.0.0.0 included. */
int sb_cli_loopback(const char *addr);

/* Connects a blocking client for a CLI verb, or prints why not and returns NULL. */
struct sb_redis;
struct sb_redis *sb_cli_connect(const sb_config_t *cfg);

/* At a long-running verb's start: logs a warning when the Redis of cfg may evict keys
 * (maxmemory-policy other than noeviction). Silent when Redis cannot be reached (the verb's
 * own connection reports that). */
void sb_cli_warn_eviction(const sb_config_t *cfg, const char *component);

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
