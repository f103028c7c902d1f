/* Logging: one line per meaningful event, to stderr.
 *
 * Format: `2025-11-11T10:30:00.000Z info  agent  message`. Components name the part of the
 * system (agent, gateway, redis, queue...). The minimum level is process-wide and is set once
 * by main() (sb_log_set_level) before any thread starts; it is the library's only global. */
#ifndef SB_LOG_H
#define SB_LOG_H

typedef enum { SB_LOG_DEBUG = 0, SB_LOG_INFO, SB_LOG_WARN, SB_LOG_ERROR } sb_log_level_t;

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
