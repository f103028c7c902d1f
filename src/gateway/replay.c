/* Replay of recent job states on connect (see replay.h).
 *
 * One Lua script does the whole read in one round trip: for each user index key (KEYS) it
 * takes the newest ids within the creation window and MGETs their records (the record key
 * prefix of each type is an argument). The reply is an array per type of records (nil for
 * expired ones), newest first; the callback walks it backwards and emits. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gateway/replay.h"
#include "gateway/status_event.h"
#include "switchboard/clock.h"
#include "switchboard/error.h"
#include "switchboard/job.h"
#include "switchboard/json.h"
#include "switchboard/log.h"

#define SB_REPLAY_MAX_TYPES 16

static const char sb_replay_lua[] =
    "local out = {}\n"
    "for i, k in ipairs(KEYS) do\n"
    "  local ids = redis.call('ZREVRANGEBYSCORE', k, '+inf', ARGV[1], 'LIMIT', 0, "
    "tonumber(ARGV[2]))\n"
    "  local recs = {}\n"
    "  if #ids > 0 then\n"
    "    local keys = {}\n"
    "    for j, id in ipairs(ids) do keys[j] = ARGV[2 + i] .. id end\n"
    "    recs = redis.call('MGET', unpack(keys))\n"
    "  end\n"
    "  out[i] = recs\n"
    "end\n"
    "return out\n";

typedef struct {
    sb_sio_t *sio;
    sb_eio_id_t id;       /* the one socket, when room is empty */
    char room[SB_PUBKEY_MAX + 8]; /* user:{publicKey} for a catch-up, else "" */
    int64_t since_ms;     /* states changed at or after this are emitted */
    int ntypes;
    char types[SB_REPLAY_MAX_TYPES][SB_TYPE_MAX + 1];
} sb_replay_t;

/* Splits the comma-separated list into r->types (valid names only). */
static void sb_replay_types(sb_replay_t *r, const char *list) {
    for (const char *p = list ? list : ""; *p && r->ntypes < SB_REPLAY_MAX_TYPES;) {
        while (*p == ' ' || *p == ',') p++;
        size_t n = strcspn(p, ", ");
        if (n && n <= SB_TYPE_MAX) {
            memcpy(r->types[r->ntypes], p, n);
            r->types[r->ntypes][n] = '\0';
            if (sb_job_type_valid(r->types[r->ntypes])) r->ntypes++;
        }
        p += n;
    }
}

/* Emits one record if it changed recently and is past queued. Returns 1 when emitted. */
static int sb_replay_record(sb_replay_t *r, const char *type, const char *json, size_t len) {
    cJSON *rec = sb_json_parse(json, len);
    const char *job_id = sb_json_str(rec, "jobId"), *status = sb_json_str(rec, "status");
    const char *updated = sb_json_str(rec, "updatedAt");
    int64_t at;
    int sent = 0;
    if (job_id && sb_status_valid(status) && updated &&
        sb_iso8601_parse(updated, &at) == SB_OK && at >= r->since_ms) {
        char event[SB_TYPE_MAX + 16];
        snprintf(event, sizeof event, "%s:%s", type, status);
        cJSON *payload = sb_status_event_payload(rec, job_id, status, updated);
        if (payload && cJSON_AddTrueToObject(payload, "replay"))
            sent = r->room[0] ? sb_sio_emit_room(r->sio, r->room, event, payload) > 0
                              : sb_sio_emit(r->sio, r->id, event, payload) == SB_OK;
        cJSON_Delete(payload);
    }
    cJSON_Delete(rec);
    return sent;
}

static void sb_replay_cb(redisReply *reply, void *priv) {
    sb_replay_t *r = priv;
    int sent = 0;
    if (!reply || reply->type != REDIS_REPLY_ARRAY) {
        sb_debug("gateway", "replay skipped: %s",
                 reply && reply->type == REDIS_REPLY_ERROR ? reply->str : "redis unavailable");
    } else {
        for (size_t t = 0; t < reply->elements && t < (size_t)r->ntypes; t++) {
            const redisReply *recs = reply->element[t];
            if (recs->type != REDIS_REPLY_ARRAY) continue;
            for (size_t i = recs->elements; i-- > 0;) {
                const redisReply *e = recs->element[i];
                if (e->type == REDIS_REPLY_STRING)
                    sent += sb_replay_record(r, r->types[t], e->str, e->len);
            }
        }
    }
    if (sent && r->room[0])
        sb_info("gateway", "caught up %d job state(s) in room %s", sent, r->room);
    else if (sent)
        sb_info("gateway", "replayed %d recent job state(s) to a reconnecting socket", sent);
    free(r);
}

/* EVAL script nkeys keys... minscore limit prefixes... */
static sb_batch_t *sb_replay_batch(const sb_replay_t *r, const char *public_key,
                                   int64_t now_ms) {
    const char *argv[3 + 3 * SB_REPLAY_MAX_TYPES + 2];
    char keys[SB_REPLAY_MAX_TYPES][SB_KEY_LEN], prefix[SB_REPLAY_MAX_TYPES][SB_KEY_LEN];
    char nkeys[16], min[32], limit[16];
    int argc = 0;
    snprintf(nkeys, sizeof nkeys, "%d", r->ntypes);
    snprintf(min, sizeof min, "%lld", (long long)(now_ms - SB_REPLAY_CREATED_MS));
    snprintf(limit, sizeof limit, "%d", SB_REPLAY_MAX);
    argv[argc++] = "EVAL";
    argv[argc++] = sb_replay_lua;
    argv[argc++] = nkeys;
    for (int t = 0; t < r->ntypes; t++) {
        if (!sb_key(keys[t], SB_KEY_LEN, SB_KEY_USER, r->types[t], public_key) ||
            !sb_key(prefix[t], SB_KEY_LEN, SB_KEY_JOB, r->types[t], ""))
            return NULL;
        argv[argc++] = keys[t];
    }
    argv[argc++] = min;
    argv[argc++] = limit;
    for (int t = 0; t < r->ntypes; t++) argv[argc++] = prefix[t];
    sb_batch_t *b = sb_batch_create();
    if (b && sb_batch_addargv(b, argc, argv, NULL) != SB_OK) {
        sb_batch_free(b);
        b = NULL;
    }
    return b;
}

/* Sends the read for r (owned; freed here when nothing was sent). */
static int sb_replay_send(sb_aredis_t *redis, sb_replay_t *r, const char *public_key,
                          const char *job_types, int64_t now_ms) {
    sb_replay_types(r, job_types);
    sb_batch_t *b = r->ntypes ? sb_replay_batch(r, public_key, now_ms) : NULL;
    int rc = b ? sb_aredis_send(redis, b, sb_replay_cb, r) : SB_EINVAL;
    sb_batch_free(b);
    if (rc != SB_OK) free(r);
    return rc;
}

int sb_replay_start(sb_aredis_t *redis, sb_sio_t *sio, sb_eio_id_t id, const char *public_key,
                    const char *job_types, int64_t now_ms) {
    if (!redis || !sb_aredis_up(redis)) return SB_EREDIS;
    sb_replay_t *r = calloc(1, sizeof *r);
    if (!r) return SB_ENOMEM;
    *r = (sb_replay_t){.sio = sio, .id = id, .since_ms = now_ms - SB_REPLAY_WINDOW_MS};
    return sb_replay_send(redis, r, public_key, job_types, now_ms);
}

int sb_replay_user(sb_aredis_t *redis, sb_sio_t *sio, const char *public_key,
                   const char *job_types, int64_t since_ms, int64_t now_ms) {
    if (!redis || !sb_aredis_up(redis)) return SB_EREDIS;
    if (!sb_public_key_valid(public_key)) return SB_EINVAL;
    sb_replay_t *r = calloc(1, sizeof *r);
    if (!r) return SB_ENOMEM;
    *r = (sb_replay_t){.sio = sio, .since_ms = since_ms};
    snprintf(r->room, sizeof r->room, "user:%s", public_key);
    return sb_replay_send(redis, r, public_key, job_types, now_ms);
}
