/* Event bus on Redis Streams (SPEC §7, seed 003).
 *
 * An event of type T is an entry of the stream `agent:stream:{T}` with exactly the fields the
 * seed's Python publisher writes: event_id (UUID v4), event_type, timestamp (ISO 8601 UTC) and
 * data (a JSON text). A publisher that gives a correlation id adds a fifth field,
 * correlation_id; readers that do not know it ignore it.
 *
 * Consumers read as a consumer group (default `agent-group`, consumer `{hostname}-{pid}`) in
 * batches, acknowledge an entry only after its handler succeeded, claim entries a dead
 * consumer left pending (XAUTOCLAIM after a minimum idle time), and move an entry delivered
 * more than max_deliveries times, or one that is malformed, to `agent:stream:dead:{T}` (its
 * fields plus reason, deliveries, source_stream, source_id, group) before acknowledging it.
 * With idempotency on, a handler success also sets `agent:events:processed:{group}:{event_id}`
 * (TTL) and entries whose key exists are acknowledged without running the handler again.
 *
 * Request/response: the request's data carries response_stream =
 * `agent:stream:response:{correlation_id}` (and its event_id is the correlation id, as in the
 * seed); the responder XADDs a normal envelope there (event_type `response:{correlation_id}`);
 * the requester waits with XREAD BLOCK and deletes the stream.
 *
 * Every function here uses a blocking sb_redis_t the caller owns and does not reconnect it
 * (SB_EREDIS: call sb_redis_ensure), except the consumer, which owns its connection and
 * reconnects by itself. As with hiredis, the process should ignore SIGPIPE, so that writing to
 * a Redis that went away fails instead of killing it. */
#ifndef SB_EVENTS_H
#define SB_EVENTS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include "switchboard/clock.h"
#include "switchboard/config.h"
#include "switchboard/prom.h"
#include "switchboard/random.h"
#include "switchboard/redis.h"

#define SB_EVENT_ID_LEN 37            /* UUID text + NUL */
#define SB_STREAM_ID_LEN 48           /* "{ms}-{seq}" + NUL, with room */
#define SB_EVENT_TYPE_MAX 128         /* longest event type */
#define SB_EVENTS_GROUP "agent-group" /* default consumer group */
#define SB_EVENTS_DEAD_MAXLEN 10000   /* dead-letter streams are trimmed to about this */
#define SB_EVENTS_AUDIT_MAXLEN 10000  /* job.created / job.completed / job.failed likewise */
#define SB_EVENTS_RESPONSE_TTL 300    /* seconds a response stream lives if nobody reads it */

/* ---- names ------------------------------------------------------------------------------- */

/* 1 if type is 1..SB_EVENT_TYPE_MAX characters of [A-Za-z0-9._:-], else 0. */
int sb_event_type_valid(const char *type);
/* `agent:stream:{type}` / `agent:stream:dead:{type}` into buf. Return buf, or NULL when type
 * is invalid or the key does not fit. */
char *sb_events_key(char *buf, size_t len, const char *type);
char *sb_events_dead_key(char *buf, size_t len, const char *type);
/* A random UUID v4 from pool (random.h; NULL: getrandom). Returns 0 or SB_ERR. */
int sb_uuid_v4(char out[SB_EVENT_ID_LEN], sb_rand_t *pool);

/* ---- publishing -------------------------------------------------------------------------- */

/* The fields of one entry. Strings other than the two arrays are borrowed. */
typedef struct {
    char event_id[SB_EVENT_ID_LEN];
    char timestamp[SB_ISO_LEN];
    const char *event_type;
    const char *data;            /* JSON text */
    const char *correlation_id;  /* NULL: the field is not written */
} sb_envelope_t;

/* Fills e with a fresh event id (or event_id when not NULL) and the current time. Returns 0,
 * SB_EINVAL (bad event type), SB_ERR (no random source). */
int sb_envelope_init(sb_envelope_t *e, const char *event_type, const char *data_json,
                     const char *correlation_id, const char *event_id);
/* Appends `XADD stream [MAXLEN ~ maxlen] * fields…` to b (maxlen <= 0: no trimming).
 * Returns 0, SB_ENOMEM. */
int sb_events_xadd_batch(sb_batch_t *b, const char *stream, const sb_envelope_t *e,
                         long maxlen);

typedef struct {
    const char *correlation_id; /* optional: written as field correlation_id */
    const char *event_id;       /* optional: this id instead of a fresh UUID */
    long maxlen;                /* > 0: trim the stream to about this many entries */
} sb_publish_opts_t;

/* Publishes data_json (must be valid JSON) as an event of type. o may be NULL. Writes the
 * event id and the stream entry id into the out buffers (either may be NULL). Returns 0;
 * SB_EINVAL (bad type or data, nothing written); SB_EREDIS; SB_EPROTO (Redis refused). */
int sb_events_publish(sb_redis_t *r, const char *type, const char *data_json,
                      const sb_publish_opts_t *o, char event_id_out[SB_EVENT_ID_LEN],
                      char stream_id_out[SB_STREAM_ID_LEN]);

/* ---- job lifecycle audit trail ----------------------------------------------------------- */

#define SB_EVENT_JOB_CREATED "job.created"     /* written by the enqueue transaction */
#define SB_EVENT_JOB_COMPLETED "job.completed" /* written by the agent's finish script */
#define SB_EVENT_JOB_FAILED "job.failed"       /* likewise, for a final failure */

/* The envelope of a job lifecycle event: data = {jobId, type, userId (when user_id is not
 * NULL), then the members of extra (borrowed, may be NULL)}, written as text directly
 * (jsonw.h); its event id comes from pool (random.h; NULL: getrandom). *data_out is the data
 * text e->data points at (malloc'd, caller frees). Returns 0, SB_ENOMEM, SB_ERR (no random
 * source); on failure *data_out is NULL. */
int sb_events_job_envelope(sb_envelope_t *e, char **data_out, const char *event,
                           const char *type, const char *job_id, const char *user_id,
                           const cJSON *extra, sb_rand_t *pool);

/* The audit entry e of a job change already made, XADDed to the stream of event (SB_EVENT_JOB_*,
 * MAXLEN ~ SB_EVENTS_AUDIT_MAXLEN) as a command of its own: on Redis Cluster the audit streams
 * are in other slots than the job's keys, so the job scripts leave the entry out and the caller
 * sends it after (not atomic with the change; a failure is logged here). Returns 0 or SB_E*. */
int sb_events_audit_apart(sb_redis_t *r, const char *event, const sb_envelope_t *e);

/* ---- reading ----------------------------------------------------------------------------- */

/* One entry as read. Strings point into the Redis reply (or into data, for `data`) and live
 * as long as the call that hands the event out; copy what you keep. */
typedef struct {
    const char *stream;         /* the key it was read from */
    const char *id;             /* stream entry id */
    const char *event_id;       /* NULL when missing (the entry is then malformed) */
    const char *event_type;
    const char *timestamp;
    const char *correlation_id; /* NULL when absent */
    const char *data_json;      /* raw data field, NULL when missing */
    size_t data_len;
    const cJSON *data;          /* parsed data, NULL when missing or not valid JSON */
    long long deliveries;       /* times delivered to a group (1 = first); 0 outside groups */
    const redisReply *fields;   /* the flat field/value array as stored */
} sb_event_t;

/* Fills ev from one entry of an XRANGE / XREAD / XREADGROUP reply ([id, [field, value…]])
 * read from stream (borrowed). The parsed data goes to *data_out (caller deletes; NULL when
 * data is missing or invalid). Returns 0 for a well-formed event; SB_EINVAL with a reason in
 * why for a malformed one (a required field missing or data not JSON), ev filled as far as
 * possible; SB_EPROTO when entry is not an entry at all (ev->id may then be NULL). */
int sb_event_from_reply(sb_event_t *ev, const char *stream, const redisReply *entry,
                        cJSON **data_out, char *why, size_t whylen);

/* The event as one JSON object {id, stream, event_id, event_type, timestamp, data,
 * correlation_id?, deliveries?} (data is the raw text when it is not JSON). Caller deletes;
 * NULL on ENOMEM. */
cJSON *sb_event_to_json(const sb_event_t *ev);

/* Visitor for replay and tail: return 0 to go on, anything else to stop. */
typedef int (*sb_event_visit_cb)(const sb_event_t *ev, void *user);

/* Turns a --from value into a stream id: an entry id (`1731304200000-0`), a Unix time in
 * milliseconds (`1731304200000` → `1731304200000-0`), an ISO 8601 UTC time, `-` (the start) or
 * `$` (only new entries, for tail). Returns 0 or SB_EINVAL. */
int sb_events_parse_from(const char *from, char out[SB_STREAM_ID_LEN]);

/* Visits the entries of type's stream from from_id (inclusive) in order, at most limit of
 * them (limit <= 0: all), in pages. Returns the number visited, or SB_EINVAL / SB_EREDIS /
 * SB_EPROTO. */
long sb_events_replay(sb_redis_t *r, const char *type, const char *from_id, long limit,
                      sb_event_visit_cb cb, void *user);

/* One XREAD [BLOCK block_ms] of the streams of types[0..n) after last_ids[i] (updated to the
 * last id seen; "$" to start with new entries only). block_ms < 0: do not block. Returns the
 * number of entries visited (0 on timeout), SB_ECANCELED when the visitor stopped, SB_EREDIS,
 * SB_EPROTO. The connection's socket timeout, if any, must exceed block_ms. */
int sb_events_read(sb_redis_t *r, int n, const char *const *types,
                   char (*last_ids)[SB_STREAM_ID_LEN], int block_ms, int count,
                   sb_event_visit_cb cb, void *user);

/* ---- request / response ------------------------------------------------------------------ */

/* Publishes a request of type whose data is data_json (a JSON object) plus response_stream,
 * with a fresh correlation id as its event id, then waits up to timeout_ms for the reply
 * (XREAD BLOCK in slices of at most 1 s; *stop may end it early; stop may be NULL) and deletes
 * the response stream. On success returns 0 and the reply's data text in *reply_out (malloc'd,
 * caller frees). Fails with SB_EINVAL (bad type / data not an object), SB_ETIMEOUT,
 * SB_ECANCELED, SB_EREDIS, SB_EPROTO; err says why; *reply_out is then NULL. */
int sb_events_request(sb_redis_t *r, const char *type, const char *data_json, int timeout_ms,
                      const atomic_int *stop, char **reply_out, char *err, size_t errlen);

/* The response stream a request asks for: data.response_stream when it is a string of the
 * form agent:stream:response:{id}, else NULL (a request can never make us write elsewhere). */
const char *sb_event_response_stream(const sb_event_t *request);

/* XADDs reply_json (valid JSON) to the request's response stream (with correlation_id = the
 * request's event id) and gives the stream a TTL of SB_EVENTS_RESPONSE_TTL. Returns 0,
 * SB_EINVAL (not a request, or bad reply), SB_EREDIS, SB_EPROTO. */
int sb_events_respond(sb_redis_t *r, const sb_event_t *request, const char *reply_json);

/* ---- consuming as a group ---------------------------------------------------------------- */

typedef enum {
    SB_EVENT_ACK = 0,  /* handled: acknowledge (and mark processed) */
    SB_EVENT_RETRY,    /* failed: leave pending; delivered again after min_idle_ms */
    SB_EVENT_DEAD,     /* failed for good: dead-letter now */
} sb_event_verdict_t;

/* A handler runs on the consumer's thread. r is the consumer's connection, usable during the
 * call (to respond or publish). On RETRY / DEAD, write a sentence into why. A handler that may
 * run longer than min_idle_ms calls sb_consumer_keep at least every sb_consumer_keep_every_ms,
 * or another consumer takes its entry over as if this one had died. */
typedef sb_event_verdict_t (*sb_event_cb)(const sb_event_t *ev, sb_redis_t *r, void *user,
                                          char *why, size_t whylen);

typedef struct {
    const char *group;      /* NULL: SB_EVENTS_GROUP */
    const char *consumer;   /* NULL: {hostname}-{pid} */
    const char *start_id;   /* where a new group starts: NULL = "0" (everything) or "$" */
    int count;              /* entries per read (XREADGROUP COUNT / XAUTOCLAIM COUNT) */
    int block_ms;           /* XREADGROUP BLOCK */
    int min_idle_ms;        /* pending this long without a reset → claimable (retries, dead
                             * or stalled consumers); not a limit on handlers (see keep) */
    int max_deliveries;     /* an entry delivered more often is dead-lettered */
    int idempotency_ttl_s;  /* > 0: suppress event ids processed in the last ttl seconds */
    long dead_maxlen;       /* trim dead-letter streams to about this (<= 0: no trimming) */
} sb_consumer_opts_t;

/* Defaults: count 10, block 1000 ms, min idle 30000 ms, max deliveries 5, idempotency off,
 * dead_maxlen SB_EVENTS_DEAD_MAXLEN. */
void sb_consumer_opts_init(sb_consumer_opts_t *o);

typedef struct {
    unsigned long long handled;    /* handler returned ACK */
    unsigned long long retried;    /* handler returned RETRY */
    unsigned long long dead;       /* dead-lettered (any reason) */
    unsigned long long malformed;  /* of those: bad entries */
    unsigned long long duplicates; /* suppressed by idempotency */
    unsigned long long claimed;    /* taken over with XAUTOCLAIM */
} sb_consumer_stats_t;

typedef struct sb_consumer sb_consumer_t;

/* Creates a consumer with its own connection to addr (connected lazily). Options are copied.
 * Returns NULL on allocation failure or bad options (reason in err). */
sb_consumer_t *sb_consumer_create(const sb_redis_addr_t *addr, const sb_consumer_opts_t *o,
                                  char *err, size_t errlen);
void sb_consumer_free(sb_consumer_t *c); /* NULL is fine */

/* Routes events of type to cb (before the first poll). Returns 0, SB_EINVAL (bad type, or
 * already subscribed), SB_ENOMEM. */
int sb_consumer_subscribe(sb_consumer_t *c, const char *type, sb_event_cb cb, void *user);

/* One round: (re)connect and create missing groups if needed; when due, claim idle pending
 * entries and handle them; then read one batch (blocking up to block_ms) and handle it.
 * Returns the number of entries dealt with (>= 0), SB_EREDIS (connection lost; the next poll
 * reconnects), SB_ECANCELED (*stop set while reconnecting), SB_EINVAL (nothing subscribed). */
int sb_consumer_poll(sb_consumer_t *c, const atomic_int *stop);
/* Polls until *stop is non-zero. Returns 0, or SB_EINVAL (nothing subscribed). */
int sb_consumer_run(sb_consumer_t *c, const atomic_int *stop);

/* From inside a handler, on the consumer's thread: says the entry in hand is still being
 * worked on. At most once every sb_consumer_keep_every_ms (calls in between return 1 at once)
 * it re-claims that entry, and those waiting behind it in the same batch, with XCLAIM … JUSTID
 * where they are still in this consumer's pending list: their idle time is reset, so no other
 * consumer's XAUTOCLAIM takes them; their delivery count is unchanged. Returns 1 while the
 * entry is ours; 0 once another consumer took it over (this consumer stalled for min_idle_ms:
 * the handler should give up with SB_EVENT_RETRY, the new owner runs it); SB_EREDIS
 * (connection lost: try again on the next call) or SB_ENOMEM; SB_EINVAL outside a handler. */
int sb_consumer_keep(sb_consumer_t *c);
/* How often a long handler should call sb_consumer_keep: min_idle_ms / 4 (at least 1). */
int sb_consumer_keep_every_ms(const sb_consumer_t *c);

const char *sb_consumer_name(const sb_consumer_t *c);
void sb_consumer_stats(const sb_consumer_t *c, sb_consumer_stats_t *out);
/* Appends seed 003's families: events_processed_total{event_type,status="success"|"error"}
 * (handler runs: ACK is success, RETRY and DEAD are errors) and the histogram
 * event_processing_seconds{event_type} (handler run time). Any thread, once subscribing is
 * over and while c lives (serve it with sb_prom_http_start). */
void sb_consumer_prom(sb_consumer_t *c, sb_prom_t *p);

#endif
