/* The Socket.IO event a job status becomes (SPEC §6): event `{type}:{status}` with the payload
 * {jobId,status,result?,error?,details?,attempts?,timestamp}, where result / error / details /
 * attempts are copied
 * from the source (a status message or a job record) when present and not null.
 *
 * Two ways to the same bytes:
 *   - sb_status_event_payload builds a cJSON object (the replay on connect adds "replay":true
 *     to it before printing);
 *   - sb_status_event_write writes the JSON text straight into a caller's buffer, with no
 *     allocation: the subscriber's path, run once per status message on the fan-out's hot
 *     path. It uses the JSON writer of jsonw.h, which also prints the object of the first
 *     way (sb_json_print), so both give the same bytes (tests/unit/test_status_event.c
 *     checks it). */
#ifndef SB_GATEWAY_STATUS_EVENT_H
#define SB_GATEWAY_STATUS_EVENT_H

#include <stddef.h>
#include <cjson/cJSON.h>

/* The payload as a new cJSON object; timestamp NULL means now. Returns NULL on ENOMEM (the
 * caller deletes the object). */
cJSON *sb_status_event_payload(const cJSON *src, const char *job_id, const char *status,
                               const char *timestamp);

/* Writes the payload's JSON text (the one sb_status_event_payload's object prints, without
 * its "replay") into out, NUL-terminated. timestamp must not be NULL. Returns the text's
 * length, or SB_ENOMEM when it does not fit in cap bytes (out then holds garbage; callers
 * fall back to sb_status_event_payload). */
int sb_status_event_write(const cJSON *src, const char *job_id, const char *status,
                          const char *timestamp, char *out, size_t cap);

#endif
