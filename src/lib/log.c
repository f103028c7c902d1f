/* Logging to stderr, one line per event: timestamp, level, component, message.
 *
 * The line is formatted into a local buffer and written with one fputs so lines from several
 * threads never interleave. The minimum level is the library's only process-wide setting,
 * written once by main() before threads start and read with relaxed atomics. */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include "switchboard/clock.h"
#include "switchboard/error.h"
#include "switchboard/log.h"

static atomic_int sb_log_min = SB_LOG_INFO;

static const char *const sb_level_names[] = {"debug", "info", "warn", "error"};

void sb_log_set_level(sb_log_level_t level) {
    atomic_store_explicit(&sb_log_min, (int)level, memory_order_relaxed);
}

int sb_log_level_parse(const char *s, sb_log_level_t *out) {
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, sb_level_names[i]) == 0) {
            *out = (sb_log_level_t)i;
            return SB_OK;
        }
    }
    return SB_EINVAL;
}

void sb_log(sb_log_level_t level, const char *component, const char *fmt, ...) {
    if ((int)level < atomic_load_explicit(&sb_log_min, memory_order_relaxed)) return;
    char line[2048], ts[SB_ISO_LEN];
    int n = snprintf(line, sizeof line, "%s %-5s %-8s ", sb_iso8601(sb_now_ms(), ts),
                     sb_level_names[level], component);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof line) vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    size_t len = strlen(line);
    if (len == sizeof line - 1) len--; /* truncated: keep room for the newline */
    line[len] = '\n';
    line[len + 1] = '\0';
    fputs(line, stderr);
}
