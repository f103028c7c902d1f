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
