/* Event bus on Redis Streams: names, the envelope, publishing, reading entries, replay and
 * tail, request/response. The consumer group machinery is in events_consumer.c.
 *
 * An entry is written with one XADD of the envelope's fields (see events.h) and read back by
 * sb_event_from_reply(), which points an sb_event_t into the Redis reply: reading never copies
 * field values, and a malformed entry is described, never fatal. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include "switchboard/clock.h"
#include "switchboard/error.h"
#include "switchboard/events.h"
#include "switchboard/json.h"
#include "switchboard/jsonw.h"
#include "switchboard/log.h"
#include "switchboard/random.h"

#define SB_EVENTS_PREFIX "agent:stream:"
#define SB_EVENTS_RESPONSE_PREFIX "agent:stream:response:"
#define SB_REPLAY_PAGE 200
#define SB_REQUEST_SLICE_MS 1000

/* ---- names ------------------------------------------------------------------------------- */

int sb_event_type_valid(const char *type) {
    if (!type || !*type || strlen(type) > SB_EVENT_TYPE_MAX) return 0;
    for (const char *p = type; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '.' || *p == '_' || *p == ':' || *p == '-'))
            return 0;
    return 1;
}

static char *sb_events_fmt(char *buf, size_t len, const char *infix, const char *type) {
    if (len) buf[0] = '\0';
    if (!sb_event_type_valid(type)) return NULL;
    int n = snprintf(buf, len, SB_EVENTS_PREFIX "%s%s", infix, type);
    if (n < 0 || (size_t)n >= len) {
        if (len) buf[0] = '\0';
        return NULL;
    }
    return buf;
}

char *sb_events_key(char *buf, size_t len, const char *type) {
    return sb_events_fmt(buf, len, "", type);
}

char *sb_events_dead_key(char *buf, size_t len, const char *type) {
    return sb_events_fmt(buf, len, "dead:", type);
}

int sb_uuid_v4(char out[SB_EVENT_ID_LEN], sb_rand_t *pool) {
    unsigned char b[16];
    if (sb_random_bytes(pool, b, sizeof b) != SB_OK) return SB_ERR;
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    /* 8-4-4-4-12 hex digits */
    static const unsigned char groups[] = {4, 2, 2, 2, 6};
    char *o = out;
    const unsigned char *in = b;
    for (size_t g = 0; g < sizeof groups; g++) {
        if (g) *o++ = '-';
        sb_hex_encode(o, in, groups[g]);
        o += 2 * groups[g];
        in += groups[g];
    }
    return SB_OK;
}

/* ---- publishing -------------------------------------------------------------------------- */

int sb_envelope_init(sb_envelope_t *e, const char *event_type, const char *data_json,
                     const char *correlation_id, const char *event_id) {
    memset(e, 0, sizeof *e);
    if (!sb_event_type_valid(event_type)) return SB_EINVAL;
    if (event_id) snprintf(e->event_id, sizeof e->event_id, "%s", event_id);
    else if (sb_uuid_v4(e->event_id, NULL) != SB_OK) return SB_ERR;
    sb_iso8601(sb_now_ms(), e->timestamp);
    e->event_type = event_type;
    e->data = data_json;
    e->correlation_id = correlation_id;
    return SB_OK;
}

int sb_events_xadd_batch(sb_batch_t *b, const char *stream, const sb_envelope_t *e,
                         long maxlen) {
    const char *argv[16];
    char ml[24];
    int n = 0;
    argv[n++] = "XADD";
    argv[n++] = stream;
    if (maxlen > 0) {
        snprintf(ml, sizeof ml, "%ld", maxlen);
        argv[n++] = "MAXLEN";
        argv[n++] = "~";
        argv[n++] = ml;
    }
    argv[n++] = "*";
    argv[n++] = "event_id";
    argv[n++] = e->event_id;
    argv[n++] = "event_type";
    argv[n++] = e->event_type;
    argv[n++] = "timestamp";
    argv[n++] = e->timestamp;
    argv[n++] = "data";
    argv[n++] = e->data;
    if (e->correlation_id) {
        argv[n++] = "correlation_id";
        argv[n++] = e->correlation_id;
    }
    return sb_batch_addargv(b, n, argv, NULL);
}

/* 1 if text is valid JSON (within the parser's limits). */
static int sb_json_valid(const char *text) {
    cJSON *doc = text ? sb_json_parse(text, strlen(text)) : NULL;
    cJSON_Delete(doc);
    return doc != NULL;
}

/* XADDs e to stream in one round trip. Returns 0 with the entry id in stream_id_out (may be
 * NULL), SB_ENOMEM, SB_EREDIS, SB_EPROTO. */
static int sb_events_xadd(sb_redis_t *r, const char *stream, const sb_envelope_t *e,
                          long maxlen, char stream_id_out[SB_STREAM_ID_LEN]) {
    sb_batch_t *b = sb_batch_create();
    int rc = b ? sb_events_xadd_batch(b, stream, e, maxlen) : SB_ENOMEM;
    redisReply *rep = NULL;
    if (rc == SB_OK) rc = sb_redis_pipeline(r, b, &rep);
    if (rc == SB_OK && rep->type != REDIS_REPLY_STRING) {
        sb_warn("events", "XADD %s refused: %s", stream,
                rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
        rc = SB_EPROTO;
    }
    if (rc == SB_OK && stream_id_out) snprintf(stream_id_out, SB_STREAM_ID_LEN, "%s", rep->str);
    if (rep) freeReplyObject(rep);
    sb_batch_free(b);
    return rc;
}

int sb_events_publish(sb_redis_t *r, const char *type, const char *data_json,
                      const sb_publish_opts_t *o, char event_id_out[SB_EVENT_ID_LEN],
                      char stream_id_out[SB_STREAM_ID_LEN]) {
    static const sb_publish_opts_t none = {0};
    char key[SB_EVENT_TYPE_MAX + 32];
    sb_envelope_t e;
    if (!o) o = &none;
    if (!sb_events_key(key, sizeof key, type) || !sb_json_valid(data_json)) return SB_EINVAL;
    int rc = sb_envelope_init(&e, type, data_json, o->correlation_id, o->event_id);
    if (rc == SB_OK) rc = sb_events_xadd(r, key, &e, o->maxlen, stream_id_out);
    if (rc == SB_OK && event_id_out) memcpy(event_id_out, e.event_id, SB_EVENT_ID_LEN);
    return rc;
}

/* ---- job lifecycle audit trail ----------------------------------------------------------- */

int sb_events_audit_apart(sb_redis_t *r, const char *event, const sb_envelope_t *e) {
    char key[256];
    int rc = sb_events_key(key, sizeof key, event) ? SB_OK : SB_EINVAL;
    if (rc == SB_OK) rc = sb_events_xadd(r, key, e, SB_EVENTS_AUDIT_MAXLEN, NULL);
    if (rc != SB_OK) /* sb_events_xadd said why when Redis refused */
        sb_warn("events", "a %s audit entry was not written (%s); the job change stands",
                event, sb_strerror(rc));
    return rc;
}

int sb_events_job_envelope(sb_envelope_t *e, char **data_out, const char *event,
                           const char *type, const char *job_id, const char *user_id,
                           const cJSON *extra, sb_rand_t *pool) {
    sb_jw_t w;
    sb_jw_init(&w);
    sb_jw_member(&w, "{\"jobId\":", job_id);
    sb_jw_member(&w, ",\"type\":", type);
    if (user_id) sb_jw_member(&w, ",\"userId\":", user_id);
    for (const cJSON *m = extra ? extra->child : NULL; m; m = m->next) {
        sb_jw_member(&w, ",", m->string);
        sb_jw_lit(&w, ":");
        sb_jw_value(&w, m);
    }
    sb_jw_lit(&w, "}");
    if (!(*data_out = sb_jw_take(&w, NULL))) return SB_ENOMEM;
    char id[SB_EVENT_ID_LEN];
    int rc = sb_uuid_v4(id, pool);
    if (rc == SB_OK) rc = sb_envelope_init(e, event, *data_out, NULL, id);
    if (rc != SB_OK) {
        free(*data_out);
        *data_out = NULL;
    }
    return rc;
}

/* ---- reading ----------------------------------------------------------------------------- */

static int sb_is_str(const redisReply *r) {
    return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS);
}

/* Points ev's named members at the values of the flat field/value array. */
static void sb_event_fields(sb_event_t *ev, const redisReply *f) {
    for (size_t i = 0; i + 1 < f->elements; i += 2) {
        const redisReply *k = f->element[i], *v = f->element[i + 1];
        if (!sb_is_str(k) || !sb_is_str(v)) continue;
        if (!strcmp(k->str, "event_id")) ev->event_id = v->str;
        else if (!strcmp(k->str, "event_type")) ev->event_type = v->str;
        else if (!strcmp(k->str, "timestamp")) ev->timestamp = v->str;
        else if (!strcmp(k->str, "correlation_id")) ev->correlation_id = v->str;
        else if (!strcmp(k->str, "data")) {
            ev->data_json = v->str;
            ev->data_len = v->len;
        }
    }
}

int sb_event_from_reply(sb_event_t *ev, const char *stream, const redisReply *entry,
                        cJSON **data_out, char *why, size_t whylen) {
    memset(ev, 0, sizeof *ev);
    *data_out = NULL;
    ev->stream = stream;
    if (!entry || entry->type != REDIS_REPLY_ARRAY || entry->elements != 2 ||
        !sb_is_str(entry->element[0])) {
        snprintf(why, whylen, "not a stream entry");
        return SB_EPROTO;
    }
    ev->id = entry->element[0]->str;
    const redisReply *f = entry->element[1];
    if (!f || f->type != REDIS_REPLY_ARRAY) {
        snprintf(why, whylen, "entry has no fields (deleted)");
        return SB_EINVAL;
    }
    ev->fields = f;
    sb_event_fields(ev, f);
    const char *missing = !ev->event_id ? "event_id" : !ev->event_type ? "event_type"
                        : !ev->timestamp ? "timestamp" : !ev->data_json ? "data" : NULL;
    if (missing) {
        snprintf(why, whylen, "malformed entry: field %s is missing", missing);
        return SB_EINVAL;
    }
    *data_out = sb_json_parse(ev->data_json, ev->data_len);
    ev->data = *data_out;
    if (!ev->data) {
        snprintf(why, whylen, "malformed entry: data is not valid JSON");
        return SB_EINVAL;
    }
    return SB_OK;
}

/* Adds name: value when value is not NULL. Returns 0 or SB_ENOMEM. */
static int sb_json_opt_str(cJSON *o, const char *name, const char *value) {
    return !value || cJSON_AddStringToObject(o, name, value) ? SB_OK : SB_ENOMEM;
}

cJSON *sb_event_to_json(const sb_event_t *ev) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    int rc = sb_json_opt_str(o, "id", ev->id);
    if (!rc) rc = sb_json_opt_str(o, "stream", ev->stream);
    if (!rc) rc = sb_json_opt_str(o, "event_id", ev->event_id);
    if (!rc) rc = sb_json_opt_str(o, "event_type", ev->event_type);
    if (!rc) rc = sb_json_opt_str(o, "timestamp", ev->timestamp);
    if (!rc && ev->data) {
        cJSON *d = cJSON_Duplicate(ev->data, 1);
        rc = d && cJSON_AddItemToObject(o, "data", d) ? SB_OK : (cJSON_Delete(d), SB_ENOMEM);
    } else if (!rc) {
        rc = sb_json_opt_str(o, "data", ev->data_json);
    }
    if (!rc) rc = sb_json_opt_str(o, "correlation_id", ev->correlation_id);
    if (!rc && ev->deliveries > 0 &&
        !cJSON_AddNumberToObject(o, "deliveries", (double)ev->deliveries))
        rc = SB_ENOMEM;
    if (rc) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* 1 if s is digits only (at least one). */
static int sb_digits(const char *s, size_t n) {
    if (n == 0) return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9') return 0;
    return 1;
}

/* ISO 8601 as written by us (…Z) or by Python's isoformat() (…+00:00). */
static int sb_parse_iso_utc(const char *s, int64_t *ms) {
    char buf[64];
    size_t n = strlen(s);
    if (n >= sizeof buf) return SB_EINVAL;
    memcpy(buf, s, n + 1);
    if (n > 6 && strcmp(buf + n - 6, "+00:00") == 0) strcpy(buf + n - 6, "Z");
    return sb_iso8601_parse(buf, ms);
}

int sb_events_parse_from(const char *from, char out[SB_STREAM_ID_LEN]) {
    if (!from || !*from || strlen(from) >= SB_STREAM_ID_LEN) return SB_EINVAL;
    const char *dash = strchr(from, '-');
    int64_t ms;
    if (!strcmp(from, "-") || !strcmp(from, "$") ||
        (dash && sb_digits(from, (size_t)(dash - from)) && sb_digits(dash + 1, strlen(dash + 1)))) {
        snprintf(out, SB_STREAM_ID_LEN, "%s", from);
        return SB_OK;
    }
    if (sb_digits(from, strlen(from))) { /* unix ms */
        if (strlen(from) > 20) return SB_EINVAL;
        snprintf(out, SB_STREAM_ID_LEN, "%.20s-0", from);
        return SB_OK;
    }
    if (sb_parse_iso_utc(from, &ms) != SB_OK || ms < 0) return SB_EINVAL;
    snprintf(out, SB_STREAM_ID_LEN, "%lld-0", (long long)ms);
    return SB_OK;
}

/* Visits the entries of one XRANGE / XREAD entry list. Returns how many were visited; *stopped
 * becomes 1 when the visitor asked to stop; last is set to the last id visited. */
static long sb_visit_entries(const redisReply *list, const char *stream, sb_event_visit_cb cb,
                             void *user, char last[SB_STREAM_ID_LEN], int *stopped) {
    long n = 0;
    *stopped = 0;
    for (size_t i = 0; i < list->elements && !*stopped; i++) {
        sb_event_t ev;
        cJSON *data = NULL;
        char why[128];
        if (sb_event_from_reply(&ev, stream, list->element[i], &data, why, sizeof why) ==
            SB_EPROTO)
            continue;
        snprintf(last, SB_STREAM_ID_LEN, "%s", ev.id);
        *stopped = cb(&ev, user) != 0;
        cJSON_Delete(data);
        n++;
    }
    return n;
}

long sb_events_replay(sb_redis_t *r, const char *type, const char *from_id, long limit,
                      sb_event_visit_cb cb, void *user) {
    char key[SB_EVENT_TYPE_MAX + 32], start[SB_STREAM_ID_LEN + 1], last[SB_STREAM_ID_LEN];
    if (!sb_events_key(key, sizeof key, type) || !from_id || !strcmp(from_id, "$"))
        return SB_EINVAL;
    snprintf(start, sizeof start, "%s", from_id);
    long total = 0;
    for (;;) {
        long page = limit > 0 && limit - total < SB_REPLAY_PAGE ? limit - total : SB_REPLAY_PAGE;
        if (page <= 0) return total;
        redisReply *rep = sb_redis_cmd(r, "XRANGE %s %s + COUNT %ld", key, start, page);
        if (!rep) return SB_EREDIS;
        if (rep->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(rep);
            return SB_EPROTO;
        }
        int stopped;
        total += sb_visit_entries(rep, key, cb, user, last, &stopped);
        size_t got = rep->elements;
        freeReplyObject(rep);
        if (stopped || (long)got < page) return total;
        snprintf(start, sizeof start, "(%s", last); /* exclusive: continue after the last */
    }
}

int sb_events_read(sb_redis_t *r, int n, const char *const *types,
                   char (*last_ids)[SB_STREAM_ID_LEN], int block_ms, int count,
                   sb_event_visit_cb cb, void *user) {
    enum { MAXS = 32 };
    char keys[MAXS][SB_EVENT_TYPE_MAX + 32], blk[16], cnt[16];
    const char *argv[8 + 2 * MAXS];
    int argc = 0;
    if (n < 1 || n > MAXS) return SB_EINVAL;
    argv[argc++] = "XREAD";
    snprintf(cnt, sizeof cnt, "%d", count > 0 ? count : 100);
    argv[argc++] = "COUNT";
    argv[argc++] = cnt;
    if (block_ms >= 0) {
        snprintf(blk, sizeof blk, "%d", block_ms);
        argv[argc++] = "BLOCK";
        argv[argc++] = blk;
    }
    argv[argc++] = "STREAMS";
    for (int i = 0; i < n; i++) {
        if (!sb_events_key(keys[i], sizeof keys[i], types[i])) return SB_EINVAL;
        argv[argc++] = keys[i];
    }
    for (int i = 0; i < n; i++) argv[argc++] = last_ids[i];
    redisReply *rep = sb_redis_cmdargv(r, argc, argv, NULL);
    if (!rep) return SB_EREDIS;
    int rc = rep->type == REDIS_REPLY_NIL ? 0 : rep->type == REDIS_REPLY_ARRAY ? 0 : SB_EPROTO;
    for (size_t s = 0; rc >= 0 && rep->type == REDIS_REPLY_ARRAY && s < rep->elements; s++) {
        const redisReply *sr = rep->element[s];
        if (sr->type != REDIS_REPLY_ARRAY || sr->elements != 2) continue;
        for (int i = 0; i < n; i++) {
            if (strcmp(keys[i], sr->element[0]->str) != 0) continue;
            int stopped;
            rc += (int)sb_visit_entries(sr->element[1], keys[i], cb, user, last_ids[i], &stopped);
            if (stopped) rc = SB_ECANCELED;
        }
    }
    freeReplyObject(rep);
    return rc;
}

/* ---- request / response ------------------------------------------------------------------ */

/* The request's data text: data_json (an object) plus response_stream. NULL if not an object
 * or on ENOMEM. */
static char *sb_request_data(const char *data_json, const char *response_stream) {
    cJSON *d = data_json ? sb_json_parse(data_json, strlen(data_json)) : NULL;
    char *text = NULL;
    if (cJSON_IsObject(d) && sb_json_set_str(d, "response_stream", response_stream) == SB_OK)
        text = sb_json_print(d);
    cJSON_Delete(d);
    return text;
}

/* Waits for the first entry of stream (XREAD from 0, BLOCK slices) and copies its data text.
 * Returns 0, SB_ETIMEOUT, SB_ECANCELED, SB_EREDIS, SB_EPROTO (reply without data). */
static int sb_request_wait(sb_redis_t *r, const char *stream, int timeout_ms,
                           const atomic_int *stop, char **reply_out) {
    int64_t deadline = sb_mono_ms() + timeout_ms;
    for (;;) {
        if (stop && atomic_load(stop)) return SB_ECANCELED;
        int64_t left = deadline - sb_mono_ms();
        if (left <= 0) return SB_ETIMEOUT;
        int slice = left < SB_REQUEST_SLICE_MS ? (int)left : SB_REQUEST_SLICE_MS;
        redisReply *rep = sb_redis_cmd(r, "XREAD COUNT 1 BLOCK %d STREAMS %s 0", slice, stream);
        if (!rep) return SB_EREDIS;
        int rc = SB_ETIMEOUT;
        if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 1 &&
            rep->element[0]->elements == 2 && rep->element[0]->element[1]->elements > 0) {
            sb_event_t ev;
            cJSON *data = NULL;
            char why[128];
            sb_event_from_reply(&ev, stream, rep->element[0]->element[1]->element[0], &data, why,
                                sizeof why);
            rc = ev.data_json ? SB_OK : SB_EPROTO;
            if (rc == SB_OK && !(*reply_out = strndup(ev.data_json, ev.data_len))) rc = SB_ENOMEM;
            cJSON_Delete(data);
        } else if (rep->type == REDIS_REPLY_ERROR) {
            rc = SB_EPROTO;
        }
        freeReplyObject(rep);
        if (rc != SB_ETIMEOUT) return rc;
    }
}

int sb_events_request(sb_redis_t *r, const char *type, const char *data_json, int timeout_ms,
                      const atomic_int *stop, char **reply_out, char *err, size_t errlen) {
    char cid[SB_EVENT_ID_LEN], stream[sizeof SB_EVENTS_RESPONSE_PREFIX + SB_EVENT_ID_LEN];
    *reply_out = NULL;
    if (!sb_event_type_valid(type)) {
        snprintf(err, errlen, "bad event type");
        return SB_EINVAL;
    }
    if (sb_uuid_v4(cid, NULL) != SB_OK) {
        snprintf(err, errlen, "no random source for the correlation id");
        return SB_ERR;
    }
    snprintf(stream, sizeof stream, SB_EVENTS_RESPONSE_PREFIX "%s", cid);
    char *data = sb_request_data(data_json, stream);
    if (!data) {
        snprintf(err, errlen, "request data must be a JSON object");
        return SB_EINVAL;
    }
    sb_publish_opts_t po = {.event_id = cid};
    int rc = sb_events_publish(r, type, data, &po, NULL, NULL);
    free(data);
    if (rc == SB_OK) rc = sb_request_wait(r, stream, timeout_ms, stop, reply_out);
    redisReply *del = rc != SB_EREDIS ? sb_redis_cmd(r, "DEL %s", stream) : NULL;
    if (del) freeReplyObject(del);
    if (rc != SB_OK)
        snprintf(err, errlen, "request %s (correlation id %s): %s", type, cid,
                 rc == SB_ETIMEOUT ? "no response in time" : sb_strerror(rc));
    return rc;
}

const char *sb_event_response_stream(const sb_event_t *request) {
    const char *rs = request->data ? sb_json_str(request->data, "response_stream") : NULL;
    size_t plen = strlen(SB_EVENTS_RESPONSE_PREFIX);
    if (!rs || strncmp(rs, SB_EVENTS_RESPONSE_PREFIX, plen) != 0 ||
        !sb_event_type_valid(rs + plen))
        return NULL;
    return rs;
}

int sb_events_respond(sb_redis_t *r, const sb_event_t *request, const char *reply_json) {
    const char *stream = sb_event_response_stream(request);
    if (!stream || !sb_json_valid(reply_json)) return SB_EINVAL;
    sb_envelope_t e;
    /* event type "response:{id}": the stream is agent:stream:{event_type}, as for any event */
    int rc = sb_envelope_init(&e, stream + strlen(SB_EVENTS_PREFIX), reply_json,
                              request->event_id, NULL);
    sb_batch_t *b = rc == SB_OK ? sb_batch_create() : NULL;
    if (rc == SB_OK && !b) rc = SB_ENOMEM;
    if (rc == SB_OK) rc = sb_events_xadd_batch(b, stream, &e, 0);
    if (rc == SB_OK) rc = sb_batch_add(b, "EXPIRE %s %d", stream, SB_EVENTS_RESPONSE_TTL);
    redisReply *rep[2] = {NULL, NULL};
    if (rc == SB_OK) rc = sb_redis_pipeline(r, b, rep);
    if (rc == SB_OK && rep[0]->type != REDIS_REPLY_STRING) rc = SB_EPROTO;
    if (b) sb_replies_free(rep, sb_batch_count(b));
    sb_batch_free(b);
    return rc;
}
