/* Logging to stderr, one line per event: timestamp, level, component, message.
 *
 * This runs on every request, so the line is built in a local buffer without a format string
 * for the prefix: the timestamp is written in place by sb_iso8601, the level and component are
 * copied and padded (as "%s %-5s %-8s " did), the message is one vsnprintf whose return value
 * gives the length. A line longer than the buffer is cut, and always ends with '\n'.
 *
 * The line goes out with one fwrite on stderr. stderr is unbuffered, so that is one write(2) per
 * line and lines from several threads never interleave. It goes through stdio rather than
 * write(2) on fd 2 because other code writes to stderr with fprintf: stdio's stream lock keeps
 * those calls and ours in order, and a buffered or reopened stderr still works.
 *
 * With the JSON format (LOG_FORMAT=json) a line is instead one JSON object:
 * {"time","level","component","instance","message"}, written with jsonw.h into the same
 * buffer; the message is made valid UTF-8 first (it may quote bytes a client sent). A message
 * too long for the line is cut, so the object always closes.
 *
 * The minimum level and the format are the library's only process-wide settings, written once
 * by main() before threads start and read with relaxed atomics. The instance id is made once
 * (pthread_once) from getrandom: 12 hex digits naming this process in logs and metrics. */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include "switchboard/clock.h"
#include "switchboard/error.h"
#include "switchboard/jsonw.h"
#include "switchboard/log.h"
#include "switchboard/random.h"
#include "switchboard/utf8.h"

static atomic_int sb_log_min = SB_LOG_INFO;
static atomic_int sb_log_fmt = SB_LOG_TEXT;

static char sb_log_id[SB_LOG_INSTANCE_LEN];
static pthread_once_t sb_log_id_once = PTHREAD_ONCE_INIT;

static void sb_log_id_init(void) {
    if (sb_random_hex(NULL, sb_log_id, (SB_LOG_INSTANCE_LEN - 1) / 2) != SB_OK)
        snprintf(sb_log_id, sizeof sb_log_id, "unknown");
}

const char *sb_log_instance(void) {
    pthread_once(&sb_log_id_once, sb_log_id_init);
    return sb_log_id;
}

void sb_log_set_format(sb_log_format_t format) {
    atomic_store_explicit(&sb_log_fmt, (int)format, memory_order_relaxed);
}

int sb_log_format_parse(const char *s, sb_log_format_t *out) {
    if (!strcmp(s, "text")) *out = SB_LOG_TEXT;
    else if (!strcmp(s, "json")) *out = SB_LOG_JSON;
    else return SB_EINVAL;
    return SB_OK;
}

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

#define SB_LOG_LINE 2048             /* line buffer */
#define SB_LOG_MAX (SB_LOG_LINE - 2) /* longest line without its '\n' (the old cut) */
#define SB_LOG_COMPONENT_WIDTH 8

/* The level names as "%-5s" wrote them. */
static const char sb_level_cols[][6] = {"debug", "info ", "warn ", "error"};

/* Appends n bytes of s at line[len], cut at SB_LOG_MAX. Returns the new length. */
static size_t sb_log_put(char *line, size_t len, const char *s, size_t n) {
    if (n > SB_LOG_MAX - len) n = SB_LOG_MAX - len;
    memcpy(line + len, s, n);
    return len + n;
}

/* Writes "<timestamp> <level> <component> " as "%s %-5s %-8s " did. Returns its length. */
static size_t sb_log_prefix(char *line, sb_log_level_t level, const char *component) {
    static const char spaces[SB_LOG_COMPONENT_WIDTH + 2] = "         "; /* width + 1 */
    size_t len = strlen(sb_iso8601(sb_now_ms(), line)); /* < SB_ISO_LEN */
    line[len++] = ' ';
    memcpy(line + len, sb_level_cols[level], 5);
    len += 5;
    line[len++] = ' ';
    if (!component) component = "(null)"; /* what glibc's %s printed */
    size_t n = strnlen(component, SB_LOG_MAX);
    len = sb_log_put(line, len, component, n);
    size_t pad = n < SB_LOG_COMPONENT_WIDTH ? SB_LOG_COMPONENT_WIDTH - n : 0;
    return sb_log_put(line, len, spaces, pad + 1);
}

/* Writes one JSON object line: the message is formatted, made valid UTF-8, then escaped. */
__attribute__((format(printf, 3, 0))) static void
sb_log_json(sb_log_level_t level, const char *component, const char *fmt, va_list ap) {
    char msg[SB_LOG_LINE / 2], line[SB_LOG_LINE * 4], ts[SB_ISO_LEN];
    if (vsnprintf(msg, sizeof msg, fmt, ap) < 0) msg[0] = '\0';
    sb_utf8_sanitize_buf(msg, sizeof msg);
    sb_jw_t w;
    sb_jw_init_fixed(&w, line, sizeof line - 1); /* room for the '\n' */
    sb_jw_raw(&w, "{\"time\":", 8);
    sb_jw_str(&w, sb_iso8601(sb_now_ms(), ts));
    sb_jw_raw(&w, ",\"level\":", 9);
    sb_jw_str(&w, sb_level_names[level]);
    sb_jw_raw(&w, ",\"component\":", 13);
    sb_jw_str(&w, component ? component : "");
    sb_jw_raw(&w, ",\"instance\":", 12);
    sb_jw_str(&w, sb_log_instance());
    sb_jw_raw(&w, ",\"message\":", 11);
    sb_jw_str(&w, msg);
    sb_jw_raw(&w, "}", 1);
    size_t len = 0;
    if (!sb_jw_finish(&w, &len)) return; /* cannot happen: 1 KiB escapes to at most 6 KiB */
    line[len++] = '\n';
    fwrite(line, 1, len, stderr);
}

/* Builds and writes one line. Out of line so that sb_log's early return stays a few
 * instructions (the 2 KiB buffer and saved registers are only set up for lines written). */
__attribute__((noinline, format(printf, 3, 0))) static void
sb_log_line(sb_log_level_t level, const char *component, const char *fmt, va_list ap) {
    if (atomic_load_explicit(&sb_log_fmt, memory_order_relaxed) == SB_LOG_JSON) {
        sb_log_json(level, component, fmt, ap);
        return;
    }
    char line[SB_LOG_LINE];
    size_t len = sb_log_prefix(line, level, component);
    if (len < SB_LOG_MAX) {
        line[len] = '\0'; /* what is left if vsnprintf fails */
        int r = vsnprintf(line + len, sizeof line - len, fmt, ap);
        size_t n = r >= 0 ? (size_t)r : strnlen(line + len, sizeof line - len);
        len += n < SB_LOG_MAX - len ? n : SB_LOG_MAX - len;
    }
    line[len++] = '\n';
    fwrite(line, 1, len, stderr);
}

void sb_log(sb_log_level_t level, const char *component, const char *fmt, ...) {
    if ((int)level < atomic_load_explicit(&sb_log_min, memory_order_relaxed)) return;
    va_list ap;
    va_start(ap, fmt);
    sb_log_line(level, component, fmt, ap);
    va_end(ap);
}
