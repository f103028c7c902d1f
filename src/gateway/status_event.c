/* Status event payloads (status_event.h): the cJSON builder and the direct writer.
 *
 * The writer appends to a fixed buffer through sb_sev_out_t; the first append that does not
 * fit marks it full and every later one is a no-op, so the result is checked once at the
 * end. */
#include "gateway/status_event.h"

#include <limits.h>
#include <string.h>

#include "switchboard/clock.h"
#include "switchboard/error.h"

/* The members copied from the source, in the payload's order (between status and
 * timestamp). */
static const char *const sb_status_event_copied[] = {"result", "error", "details"};
#define SB_SEV_NCOPIED (sizeof sb_status_event_copied / sizeof sb_status_event_copied[0])

/* ================================================================ the cJSON object */

cJSON *sb_status_event_payload(const cJSON *src, const char *job_id, const char *status,
                               const char *timestamp) {
    cJSON *o = cJSON_CreateObject();
    int ok = o && cJSON_AddStringToObject(o, "jobId", job_id) &&
             cJSON_AddStringToObject(o, "status", status);
    for (size_t i = 0; ok && i < SB_SEV_NCOPIED; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(src, sb_status_event_copied[i]);
        if (!v || cJSON_IsNull(v)) continue;
        cJSON *dup = cJSON_Duplicate(v, 1);
        ok = dup && cJSON_AddItemToObject(o, sb_status_event_copied[i], dup);
        if (!ok) cJSON_Delete(dup);
    }
    char now[SB_ISO_LEN];
    if (ok && !timestamp) timestamp = sb_iso8601(sb_now_ms(), now);
    if (ok) ok = cJSON_AddStringToObject(o, "timestamp", timestamp) != NULL;
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* ================================================================ the direct writer */

typedef struct {
    char *buf;
    size_t len, cap; /* bytes written, size of buf (one is kept for the NUL) */
    int full;        /* an append did not fit: the text is unusable */
} sb_sev_out_t;

static void sb_sev_put(sb_sev_out_t *w, const char *s, size_t n) {
    if (w->full || w->cap - w->len <= n) {
        w->full = 1;
        return;
    }
    memcpy(w->buf + w->len, s, n);
    w->len += n;
}

/* s as a JSON string literal, escaped as cJSON's print_string_ptr does: the two-character
 * escapes for " \ \b \f \n \r \t, \u00xx for the other control characters, every other byte
 * as is. */
static void sb_sev_quote(sb_sev_out_t *w, const char *s) {
    static const char hex[] = "0123456789abcdef";
    sb_sev_put(w, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p && !w->full; p++) {
        const char *run = (const char *)p; /* bytes that need no escape, copied at once */
        while (*p >= 0x20 && *p != '"' && *p != '\\') p++;
        sb_sev_put(w, run, (size_t)((const char *)p - run));
        if (!*p) break;
        char esc[6] = {'\\', 0, '0', '0', hex[*p >> 4], hex[*p & 15]};
        switch (*p) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default: esc[1] = 'u'; break;
        }
        sb_sev_put(w, esc, esc[1] == 'u' ? 6 : 2);
    }
    sb_sev_put(w, "\"", 1);
}

/* ,"name":value with value printed by cJSON into the rest of the buffer. cJSON asks for 5
 * bytes more than the text it prints (it may estimate high). */
static void sb_sev_value(sb_sev_out_t *w, const char *name, const cJSON *v) {
    sb_sev_put(w, ",", 1);
    sb_sev_quote(w, name);
    sb_sev_put(w, ":", 1);
    size_t room = w->full ? 0 : w->cap - w->len;
    if (room < 6 || room > (size_t)INT_MAX ||
        !cJSON_PrintPreallocated((cJSON *)v, w->buf + w->len, (int)room, 0)) {
        w->full = 1;
        return;
    }
    w->len += strlen(w->buf + w->len);
    if (w->cap - w->len < 2) w->full = 1;
}

int sb_status_event_write(const cJSON *src, const char *job_id, const char *status,
                          const char *timestamp, char *out, size_t cap) {
    sb_sev_out_t w = {out, 0, cap, cap == 0};
    sb_sev_put(&w, "{\"jobId\":", 9);
    sb_sev_quote(&w, job_id);
    sb_sev_put(&w, ",\"status\":", 10);
    sb_sev_quote(&w, status);
    for (size_t i = 0; i < SB_SEV_NCOPIED && !w.full; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(src, sb_status_event_copied[i]);
        if (v && !cJSON_IsNull(v)) sb_sev_value(&w, sb_status_event_copied[i], v);
    }
    sb_sev_put(&w, ",\"timestamp\":", 13);
    sb_sev_quote(&w, timestamp);
    sb_sev_put(&w, "}", 1);
    if (w.full || w.len > (size_t)INT_MAX) return SB_ENOMEM;
    out[w.len] = '\0';
    return (int)w.len;
}
