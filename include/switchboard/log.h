/* Logging: one line per meaningful event, to stderr.
 *
 * Text format: `2025-11-11T10:30:00.000Z info  agent  message`. JSON format (LOG_FORMAT=json):
 * `{"time":"2025-11-11T10:30:00.000Z","level":"info","component":"agent",
 * "instance":"3f9a0c12b4e7","message":"..."}` on one line. Components name the part of the
 * system (agent, gateway, redis, queue...); the instance id names the process (random, made
 * once; also the instance_id label of switchboard_build_info). The minimum level and the
 * format are process-wide and set once by main() before any thread starts; they are the
 * library's only globals. */
#ifndef SB_LOG_H
#define SB_LOG_H

typedef enum { SB_LOG_DEBUG = 0, SB_LOG_INFO, SB_LOG_WARN, SB_LOG_ERROR } sb_log_level_t;
typedef enum { SB_LOG_TEXT = 0, SB_LOG_JSON } sb_log_format_t;

#define SB_LOG_INSTANCE_LEN 13 /* 12 hex digits and a NUL */

void sb_log_set_format(sb_log_format_t format);
/* Parses "text" | "json". Returns 0, or SB_EINVAL leaving *out untouched. */
int sb_log_format_parse(const char *s, sb_log_format_t *out);
/* This process's instance id: 12 lowercase hex digits, the same for its whole life. */
const char *sb_log_instance(void);

void sb_log_set_level(sb_log_level_t level);
/* Parses "debug" | "info" | "warn" | "error". Returns 0, or SB_EINVAL leaving *out untouched. */
int sb_log_level_parse(const char *s, sb_log_level_t *out);

void sb_log(sb_log_level_t level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define sb_debug(comp, ...) sb_log(SB_LOG_DEBUG, comp, __VA_ARGS__)
#define sb_info(comp, ...)  sb_log(SB_LOG_INFO, comp, __VA_ARGS__)
#define sb_warn(comp, ...)  sb_log(SB_LOG_WARN, comp, __VA_ARGS__)
#define sb_error(comp, ...) sb_log(SB_LOG_ERROR, comp, __VA_ARGS__)

#endif
