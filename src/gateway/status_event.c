/* Status event payloads (status_event.h): the cJSON builder and the direct writer (jsonw.h,
 * into the caller's fixed buffer: nothing is allocated). */
#include "gateway/status_event.h"

#include <limits.h>
#include <string.h>

#include "switchboard/clock.h"
#include "switchboard/error.h"
#include "switchboard/jsonw.h"

/* The members copied from the source, in the payload's order (between status and
 * timestamp). */
static const char *const sb_status_event_copied[] = {"result", "error", "details", "attempts"};
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

int sb_status_event_write(const cJSON *src, const char *job_id, const char *status,
                          const char *timestamp, char *out, size_t cap) {
    sb_jw_t w;
    sb_jw_init_fixed(&w, out, cap);
    sb_jw_member(&w, "{\"jobId\":", job_id);
    sb_jw_member(&w, ",\"status\":", status);
    for (size_t i = 0; i < SB_SEV_NCOPIED; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(src, sb_status_event_copied[i]);
        if (!v || cJSON_IsNull(v)) continue;
        sb_jw_member(&w, ",", sb_status_event_copied[i]);
        sb_jw_lit(&w, ":");
        sb_jw_value(&w, v);
    }
    sb_jw_member(&w, ",\"timestamp\":", timestamp);
    sb_jw_lit(&w, "}");
    size_t len;
    if (!sb_jw_finish(&w, &len) || len > (size_t)INT_MAX) return SB_ENOMEM;
    return (int)len;
}
