/* Replay of recent job states on connect and catch-up (see replay.h).
 *
 * One Lua script does the whole read in one round trip: for each user index key (KEYS) it
 * takes the newest ids within the creation window and MGETs their records (the record key
 * prefix of each type is an argument). The reply is an array per type of records (nil for
 * expired ones), newest first. The callback turns the records that qualify into items (event
 * name, printed payload, packet size, updatedAt), sorts them by updatedAt, keeps the newest
 * that fit the byte budget and emits those oldest first.
 *
 * A socket's replay hangs on its socket (sb_sio_set_data), so the socket's departure and the
 * live statuses of its user (a walk of room user:{publicKey}) find it in O(1), and sits in the
 * service's list, which the on-up hook walks for the ones waiting. A catch-up (one per user,
 * to its room) sits in a second list while in flight, scanned by public key on live statuses.
 * States: WAITING → IN_FLIGHT (an EVAL is out; its callback will run) → emitted and freed, or
 * back to WAITING when the reply is lost or Redis refused it for now (LOADING, BUSY...:
 * sb_reply_is_transient); GONE when it was unhooked (socket left, service freed) while in
 * flight: the reply only frees it. A refused replay is sent again by the retry timer after
 * the backoff (backoff.h, shared with the catch-up), or by the on-up hook if the connection
 * went meanwhile; a socket that leaves drops its replay, and with it its retries.
 *
 * Banners: reading · budget and emission · the sockets' replays · catch-up. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gateway/backoff.h"
#include "gateway/ratemap.h"
#include "gateway/replay.h"
#include "gateway/status_event.h"
#include "switchboard/clock.h"
#include "switchboard/cluster.h"
#include "switchboard/error.h"
#include "switchboard/job.h"
#include "switchboard/json.h"
#include "switchboard/log.h"

#define SB_REPLAY_MAX_TYPES 16
#define SB_REPLAY_SEEN_MAX 16384 /* bytes of job ids noted live while a replay is pending */

typedef enum { SB_RP_WAITING, SB_RP_IN_FLIGHT, SB_RP_GONE } sb_replay_state_t;

typedef struct sb_replay {
    sb_replays_t *owner;      /* the service it belongs to */
    sb_sio_t *sio;
    sb_eio_id_t id;           /* the socket (owner set) */
    char sid[SB_EIO_SID_LEN + 1];        /* its Socket.IO sid when the replay started */
    char public_key[SB_PUBKEY_MAX + 1];
    char room[SB_PUBKEY_MAX + 8];        /* user:{publicKey} for a catch-up, "" for a socket */
    int64_t since_ms;         /* states changed at or after this are emitted */
    int64_t now_ms;           /* unix time the read was started for (its creation window) */
    sb_replay_state_t state;
    struct sb_replay *next, **prev; /* the owner's list (list, or users for a catch-up); prev
                                       non-NULL while listed; a listed socket replay is hung
                                       on its socket (sb_sio_data) */
    char *seen;               /* NUL-terminated job ids that went live meanwhile, packed */
    size_t seen_len, seen_cap;
    int seen_full;            /* more than SB_REPLAY_SEEN_MAX bytes of them: send nothing */
    int ntypes;
    char types[SB_REPLAY_MAX_TYPES][SB_TYPE_MAX + 1];
} sb_replay_t;

struct sb_replays {
    sb_aredis_t *redis;
    sb_aredis_hook_t up_hook; /* sends the waiting replays when redis is back */
    uv_timer_t *retry;        /* sends them after a transient refusal (owned; data = this) */
    sb_backoff_t backoff;     /* its wait */
    char why[96];             /* what Redis answered the last refused replay */
    sb_sio_t *sio;
    char *types;              /* comma-separated job types (owned) */
    sb_replay_t *list;        /* replays hung on a socket, waiting or in flight */
    unsigned pending;         /* their number */
    sb_replay_t *users;       /* catch-ups in flight (few: catchup.h paces them) */
    unsigned in_flight;       /* replies still to come */
    sb_script_t script;       /* the read (sb_replay_lua), SHA1 computed once */
    sb_ratemap_t *budget;     /* replay bytes each user may still read (SB_REPLAY_USER_BYTES) */
    unsigned long long limited; /* socket replays not run: their user's budget was spent */
    int closing;              /* freed by its owner: the last reply frees the struct */
    sb_replays_retry_fn on_retry; /* a catch-up whose reply was lost or transient */
    void *on_retry_ud;
};

/* ================================================================ reading */

/* KEYS: the user indexes; ARGV: min score, ids per type, inline max, head max, read max,
 * touch max, then the record key prefix of each type. Per record: STRLEN (O(1)); a record up
 * to the inline max is read whole; a larger one only up to the head max, cut before its first
 * `,"result":` (a key: the text cannot occur inside a JSON string) and returned as {head,
 * length}, {"", length} when no cut was found. Reading stops once read max bytes were read or
 * touch max records touched: the last element of the reply is the number of records left
 * unread. Cost: ~0.5 ms for 50 records of 120 KB (2 redis.call each), whatever their size. */
static const char sb_replay_lua[] =
    "local out, left, touch, skipped = {}, tonumber(ARGV[5]), tonumber(ARGV[6]), 0\n"
    "local inline, head = tonumber(ARGV[3]), tonumber(ARGV[4])\n"
    "for i, k in ipairs(KEYS) do\n"
    "  local ids = redis.call('ZREVRANGEBYSCORE', k, '+inf', ARGV[1], 'LIMIT', 0, "
    "tonumber(ARGV[2]))\n"
    "  local recs = {}\n"
    "  for j, id in ipairs(ids) do\n"
    "    if left <= 0 or touch <= 0 then skipped = skipped + 1; recs[j] = false\n"
    "    else\n"
    "      local key = ARGV[6 + i] .. id\n"
    "      local n = redis.call('STRLEN', key)\n"
    "      touch = touch - 1\n"
    "      if n == 0 then recs[j] = false\n"
    "      elseif n <= inline then recs[j] = redis.call('GET', key); left = left - n\n"
    "      else\n"
    "        local h = redis.call('GETRANGE', key, 0, head - 1)\n"
    "        local cut = string.find(h, ',\"result\":', 1, true)\n"
    "        recs[j] = {cut and string.sub(h, 1, cut - 1) or '', n}\n"
    "        left = left - head\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "  out[i] = recs\n"
    "end\n"
    "out[#KEYS + 1] = skipped\n"
    "return out\n";

/* The slot of type's user index for r (Redis Cluster; 0 on single Redis). */
static int sb_replay_slot(const sb_replay_t *r, int t) {
    char key[SB_KEY_LEN], q[SB_QUEUE_LEN];
    if (sb_key_style() != SB_KEYS_CLUSTER) return 0;
    sb_queue_of_user(q, r->types[t], r->public_key); /* the user's queue shard (job.h) */
    sb_key(key, sizeof key, SB_KEY_USER, q, r->public_key);
    return sb_cluster_keyslot(key, strlen(key));
}

/* Redis Cluster: orders r's types by slot (stable), so that the types one script call can read
 * together (one slot) are neighbours (sb_replay_fan_send). */
static void sb_replay_sort_slots(sb_replay_t *r) {
    for (int i = 1; i < r->ntypes; i++)
        for (int j = i; j > 0 && sb_replay_slot(r, j - 1) > sb_replay_slot(r, j); j--) {
            char tmp[SB_TYPE_MAX + 1];
            memcpy(tmp, r->types[j], sizeof tmp);
            memcpy(r->types[j], r->types[j - 1], sizeof tmp);
            memcpy(r->types[j - 1], tmp, sizeof tmp);
        }
}

/* A new replay (not yet sent) for since_ms over the comma-separated list; NULL on ENOMEM. */
static sb_replay_t *sb_replay_new(sb_sio_t *sio, const char *public_key, const char *list,
                                  int64_t since_ms) {
    sb_replay_t *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->sio = sio;
    r->since_ms = since_ms;
    snprintf(r->public_key, sizeof r->public_key, "%s", public_key);
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
    if (sb_key_style() == SB_KEYS_CLUSTER) sb_replay_sort_slots(r);
    return r;
}

static void sb_replay_free(sb_replay_t *r) {
    if (!r) return;
    free(r->seen);
    free(r);
}

/* Appends the read of r's types [first, first + n): EVALSHA/EVAL nkeys keys... minscore limit
 * inline head readmax touchmax prefixes... */
static int sb_replay_build_range(sb_batch_t *b, sb_script_mode_t mode, const sb_replay_t *r,
                                 int first, int n) {
    const char *argv[2 * SB_REPLAY_MAX_TYPES + 6];
    char keys[SB_REPLAY_MAX_TYPES][SB_KEY_LEN], prefix[SB_REPLAY_MAX_TYPES][SB_KEY_LEN];
    char min[32], limit[16], inline_max[16], head_max[16], read_max[16], touch[16];
    int argc = 0;
    snprintf(min, sizeof min, "%lld", (long long)(r->now_ms - SB_REPLAY_CREATED_MS));
    snprintf(limit, sizeof limit, "%d", SB_REPLAY_MAX);
    snprintf(inline_max, sizeof inline_max, "%d", SB_REPLAY_INLINE_MAX);
    snprintf(head_max, sizeof head_max, "%d", SB_REPLAY_HEAD_MAX);
    snprintf(read_max, sizeof read_max, "%d", SB_REPLAY_READ_MAX);
    snprintf(touch, sizeof touch, "%d", SB_REPLAY_TOUCH_MAX);
    for (int t = 0; t < n; t++) {
        char q[SB_QUEUE_LEN]; /* the user's queue shard of the type (job.h) */
        if (!sb_queue_of_user(q, r->types[first + t], r->public_key) ||
            !sb_key(keys[t], SB_KEY_LEN, SB_KEY_USER, q, r->public_key) ||
            !sb_key(prefix[t], SB_KEY_LEN, SB_KEY_JOB, q, ""))
            return SB_EINVAL;
        argv[argc++] = keys[t];
    }
    argv[argc++] = min;
    argv[argc++] = limit;
    argv[argc++] = inline_max;
    argv[argc++] = head_max;
    argv[argc++] = read_max;
    argv[argc++] = touch;
    for (int t = 0; t < n; t++) argv[argc++] = prefix[t];
    return sb_batch_add_script(b, &r->owner->script, mode, n, argc, argv, NULL);
}

/* The read of all of r's types (an sb_aredis_build_fn). */
static int sb_replay_build(sb_batch_t *b, sb_script_mode_t mode, void *priv) {
    const sb_replay_t *r = priv;
    return sb_replay_build_range(b, mode, r, 0, r->ntypes);
}

/* ---- Redis Cluster: one script call per slot, one reply for the caller ------------------------
 * The types of one slot are read by one call (sb_replay_sort_slots made them neighbours); each
 * part's per-type arrays are moved into one merged reply of the usual shape (an array per type,
 * then the unread count, summed), and cb runs once with it when the last part has answered:
 * with NULL when a part's reply was lost, with the first error when a part was refused. */
typedef struct sb_replay_fan sb_replay_fan_t;
typedef struct {
    sb_replay_fan_t *fan;
    int first, n; /* its types: r->types[first, first + n) */
} sb_replay_part_t;

struct sb_replay_fan {
    sb_replay_t *r;
    sb_aredis_cb cb;
    int left, lost;
    long long unread;
    char error[160];     /* the first error a part got, "" for none */
    redisReply *merged;  /* ARRAY of ntypes + 1, filled as parts answer */
    sb_replay_part_t part[SB_REPLAY_MAX_TYPES];
};

/* A reply made here (freeReplyObject frees it like one of hiredis's): NULL on ENOMEM. */
static redisReply *sb_reply_new(int type) {
    redisReply *x = calloc(1, sizeof *x);
    if (x) x->type = type;
    return x;
}

static void sb_replay_fan_done(sb_replay_fan_t *fan) {
    redisReply *out = fan->merged, *err = NULL;
    size_t last = out->elements - 1;
    if (!fan->lost && !fan->error[0] && !(out->element[last] = sb_reply_new(REDIS_REPLY_INTEGER)))
        fan->lost = 1;
    else if (!fan->lost && !fan->error[0])
        out->element[last]->integer = fan->unread;
    if (fan->error[0] && !fan->lost && (err = sb_reply_new(REDIS_REPLY_ERROR)) &&
        (err->str = strdup(fan->error)))
        err->len = strlen(err->str);
    out = fan->lost ? NULL : fan->error[0] ? (err && err->str ? err : NULL) : out;
    fan->cb(out, fan->r);
    if (err) freeReplyObject(err);
    freeReplyObject(fan->merged);
    free(fan);
}

static int sb_replay_part_build(sb_batch_t *b, sb_script_mode_t mode, void *priv) {
    const sb_replay_part_t *p = priv;
    return sb_replay_build_range(b, mode, p->fan->r, p->first, p->n);
}

static void sb_replay_part_cb(redisReply *reply, void *priv) {
    sb_replay_part_t *p = priv;
    sb_replay_fan_t *fan = p->fan;
    if (!reply) {
        fan->lost = 1;
    } else if (reply->type == REDIS_REPLY_ARRAY && reply->elements == (size_t)p->n + 1) {
        for (int t = 0; t < p->n; t++) { /* moved: hiredis frees what is left of reply */
            fan->merged->element[p->first + t] = reply->element[t];
            reply->element[t] = NULL;
        }
        if (reply->element[p->n]->type == REDIS_REPLY_INTEGER)
            fan->unread += reply->element[p->n]->integer;
    } else if (!fan->error[0]) {
        snprintf(fan->error, sizeof fan->error, "%s",
                 reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
    }
    if (--fan->left == 0) sb_replay_fan_done(fan);
}

/* Sends one call per slot of r's types. sb_replay_send's returns. */
static int sb_replay_fan_send(sb_aredis_t *redis, sb_replay_t *r, sb_aredis_cb cb) {
    sb_replay_fan_t *fan = calloc(1, sizeof *fan);
    redisReply *merged = sb_reply_new(REDIS_REPLY_ARRAY);
    redisReply **el = calloc((size_t)r->ntypes + 1, sizeof *el);
    if (!fan || !merged || !el) {
        free(fan);
        free(merged);
        free(el);
        return SB_ENOMEM;
    }
    merged->element = el;
    merged->elements = (size_t)r->ntypes + 1;
    *fan = (sb_replay_fan_t){.r = r, .cb = cb, .merged = merged};
    int parts = 0;
    for (int t = 0; t < r->ntypes; t++) {
        sb_replay_part_t *p = &fan->part[parts];
        if (parts && sb_replay_slot(r, t) == sb_replay_slot(r, p[-1].first)) {
            p[-1].n++;
            continue;
        }
        *p = (sb_replay_part_t){fan, t, 1};
        parts++;
    }
    fan->left = parts;
    for (int i = 0; i < parts; i++) {
        int rc = sb_aredis_eval(redis, sb_replay_part_build, sb_replay_part_cb, &fan->part[i]);
        if (rc == SB_OK) continue;
        if (i == 0) { /* nothing sent: r untouched */
            freeReplyObject(merged);
            free(fan);
            return rc;
        }
        fan->lost = 1; /* the parts sent answer; then cb gets NULL (sent again later) */
        fan->left -= parts - i;
        break;
    }
    return SB_OK;
}

/* Sends r's read with cb. Returns 0 (cb will run once), SB_EREDIS (not connected), SB_ENOMEM
 * or SB_EINVAL (no valid type); r is untouched either way. */
static int sb_replay_send(sb_aredis_t *redis, sb_replay_t *r, sb_aredis_cb cb, int64_t now_ms) {
    if (!redis || !sb_aredis_up(redis)) return SB_EREDIS;
    if (!r->ntypes) return SB_EINVAL;
    r->now_ms = now_ms;
    if (sb_key_style() == SB_KEYS_CLUSTER) return sb_replay_fan_send(redis, r, cb);
    return sb_aredis_eval(redis, sb_replay_build, cb, r);
}

/* 1 when job_id went live while r was pending. */
static int sb_replay_seen(const sb_replay_t *r, const char *job_id) {
    for (size_t pos = 0; pos < r->seen_len; pos += strlen(r->seen + pos) + 1)
        if (!strcmp(r->seen + pos, job_id)) return 1;
    return 0;
}

static void sb_replay_note_live(sb_replay_t *r, const char *job_id) {
    size_t n = strlen(job_id) + 1;
    if (r->seen_full || sb_replay_seen(r, job_id)) return;
    if (r->seen_len + n > r->seen_cap) {
        size_t cap = r->seen_cap ? r->seen_cap * 2 : 256;
        while (cap < r->seen_len + n) cap *= 2;
        char *p = cap <= SB_REPLAY_SEEN_MAX ? realloc(r->seen, cap) : NULL;
        if (!p) {
            r->seen_full = 1; /* cannot tell which jobs went live: replay none of them */
            return;
        }
        r->seen = p;
        r->seen_cap = cap;
    }
    memcpy(r->seen + r->seen_len, job_id, n);
    r->seen_len += n;
}

/* ================================================================ budget and emission */

/* One state that qualifies for the replay. */
typedef struct {
    char event[SB_TYPE_MAX + 16];
    char *json;   /* the payload with "replay":true (owned) */
    size_t bytes; /* the packet: 42["event",json] */
    int64_t at;   /* updatedAt */
    size_t order; /* position in the reply, the tie-break */
    int keep;     /* within the budget */
} sb_replay_item_t;

/* What one reply gives: the items, and the states left out. */
typedef struct {
    sb_replay_item_t *items;
    size_t n;
    int live;    /* left out: their job had a live event meanwhile */
    int skipped; /* left out: over the budget */
    int large;   /* left out: large records whose state could not be read from their head */
    long long unread; /* left unread: over SB_REPLAY_READ_MAX */
} sb_replay_set_t;

/* Adds "resultUrl" (where the omitted result is read) to payload; 0 or SB_ENOMEM. */
static int sb_replay_result_url(cJSON *payload, const char *type, const char *job_id) {
    char url[SB_TYPE_MAX + SB_JOB_ID_LEN + 32];
    snprintf(url, sizeof url, "/api/v1/agent/%s/%s", type, job_id);
    return cJSON_AddStringToObject(payload, "resultUrl", url) ? SB_OK : SB_ENOMEM;
}

/* Turns one record into an item if it changed recently, is past queued and its job did not go
 * live meanwhile; rec is the record parsed (consumed), trimmed when it is the head of a large
 * record without its result. Returns 1 when an item was added (set->items has room for it). */
static int sb_replay_item(const sb_replay_t *r, const char *type, cJSON *rec, int trimmed,
                          sb_replay_set_t *set) {
    const char *job_id = sb_json_str(rec, "jobId"), *status = sb_json_str(rec, "status");
    const char *updated = sb_json_str(rec, "updatedAt");
    int64_t at;
    int added = 0;
    if (job_id && sb_status_valid(status) && updated &&
        sb_iso8601_parse(updated, &at) == SB_OK && at >= r->since_ms) {
        if (r->seen_full || sb_replay_seen(r, job_id)) {
            set->live++;
        } else {
            sb_replay_item_t *it = &set->items[set->n];
            cJSON *payload = sb_status_event_payload(rec, job_id, status, updated);
            int ok = payload && cJSON_AddTrueToObject(payload, "replay") &&
                     (!trimmed || sb_replay_result_url(payload, type, job_id) == SB_OK);
            it->json = ok ? sb_json_print(payload) : NULL;
            cJSON_Delete(payload);
            if (it->json) {
                snprintf(it->event, sizeof it->event, "%s:%s", type, status);
                it->bytes = 7 + strlen(it->event) + strlen(it->json); /* 42["", ] */
                it->at = at;
                it->order = set->n;
                added = 1;
            }
        }
    }
    cJSON_Delete(rec);
    return added;
}

/* One element of the script's reply: a whole record, {head, length} for a large one (the
 * head is the record cut before its result: closed with "}" it parses without it), or nil. */
static int sb_replay_element(const sb_replay_t *r, const char *type, const redisReply *e,
                             sb_replay_set_t *set) {
    if (e->type == REDIS_REPLY_STRING)
        return sb_replay_item(r, type, sb_json_parse(e->str, e->len), 0, set);
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
        e->element[0]->type != REDIS_REPLY_STRING)
        return 0;
    const redisReply *head = e->element[0];
    char *text = head->len ? malloc(head->len + 2) : NULL;
    cJSON *rec = NULL;
    if (text) {
        memcpy(text, head->str, head->len);
        memcpy(text + head->len, "}", 2);
        rec = sb_json_parse(text, head->len + 1);
        free(text);
    }
    if (!rec || cJSON_GetObjectItemCaseSensitive(rec, "result") || !sb_json_str(rec, "status") ||
        !sb_json_str(rec, "updatedAt")) { /* cut elsewhere, or the state comes after result */
        set->large++;
        cJSON_Delete(rec);
        return 0;
    }
    return sb_replay_item(r, type, rec, 1, set);
}

/* Collects the items of reply (an array per type, newest first) oldest first per type. */
static int sb_replay_collect(const sb_replay_t *r, const redisReply *reply,
                             sb_replay_set_t *set) {
    size_t max = 0;
    for (size_t t = 0; t < reply->elements && t < (size_t)r->ntypes; t++)
        if (reply->element[t]->type == REDIS_REPLY_ARRAY) max += reply->element[t]->elements;
    set->items = max ? calloc(max, sizeof *set->items) : NULL;
    if (max && !set->items) return SB_ENOMEM;
    for (size_t t = 0; t < reply->elements && t < (size_t)r->ntypes; t++) {
        const redisReply *recs = reply->element[t];
        if (recs->type != REDIS_REPLY_ARRAY) continue;
        for (size_t i = recs->elements; i-- > 0;)
            set->n += (size_t)sb_replay_element(r, r->types[t], recs->element[i], set);
    }
    const redisReply *unread = (size_t)r->ntypes < reply->elements ? reply->element[r->ntypes]
                                                                   : NULL;
    if (unread && unread->type == REDIS_REPLY_INTEGER) set->unread = unread->integer;
    return SB_OK;
}

static int sb_replay_item_cmp(const void *a, const void *b) {
    const sb_replay_item_t *x = a, *y = b;
    if (x->at != y->at) return x->at < y->at ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* Sorts the items oldest first and keeps, from the newest back, each one that still fits the
 * budget (a state too large for it alone is skipped, older smaller ones may still go). */
static void sb_replay_budget(sb_replay_set_t *set) {
    if (set->n > 1) qsort(set->items, set->n, sizeof *set->items, sb_replay_item_cmp);
    size_t left = SB_REPLAY_BUDGET;
    for (size_t i = set->n; i-- > 0;) {
        sb_replay_item_t *it = &set->items[i];
        it->keep = it->bytes <= left;
        if (it->keep) left -= it->bytes;
        else set->skipped++;
    }
}

/* Emits the kept items oldest first to r's socket or room; returns how many went out. */
static int sb_replay_emit(const sb_replay_t *r, const sb_replay_set_t *set) {
    int sent = 0;
    for (size_t i = 0; i < set->n; i++) {
        const sb_replay_item_t *it = &set->items[i];
        if (!it->keep) continue;
        size_t len = strlen(it->json);
        sent += r->room[0] ? sb_sio_emit_room_json(r->sio, r->room, it->event, it->json, len) > 0
                           : sb_sio_emit_json(r->sio, r->id, it->event, it->json, len) == SB_OK;
    }
    return sent;
}

static void sb_replay_set_close(sb_replay_set_t *set) {
    for (size_t i = 0; i < set->n; i++) free(set->items[i].json);
    free(set->items);
}

static void sb_replay_log(const sb_replay_t *r, int sent, const sb_replay_set_t *set) {
    char whom[SB_PUBKEY_MAX + 64];
    const char *verb = r->room[0] ? "caught up" : "replayed";
    if (r->room[0]) snprintf(whom, sizeof whom, "room %s", r->room);
    else snprintf(whom, sizeof whom, "socket %s (user %s)", r->sid, r->public_key);
    if (set->skipped)
        sb_info("gateway",
                "%s %d recent job state(s) to %s; skipped %d that did not fit the %d-byte "
                "replay budget (GET /api/v1/agent/{type}/{jobId} still has them)",
                verb, sent, whom, set->skipped, SB_REPLAY_BUDGET);
    else if (sent)
        sb_info("gateway", "%s %d recent job state(s) to %s", verb, sent, whom);
    if (set->live)
        sb_debug("gateway", "replay to %s: %d state(s) left out, their job went live meanwhile",
                 whom, set->live);
    if (set->large || set->unread)
        sb_info("gateway",
                "replay to %s: %d large record(s) whose state is not at their head and %lld "
                "beyond the read bounds (%d bytes, %d records) left out (GET "
                "/api/v1/agent/{type}/{jobId} has them)",
                whom, set->large, set->unread, SB_REPLAY_READ_MAX, SB_REPLAY_TOUCH_MAX);
}

/* Reads a reply (array) and emits what qualifies, within the budget. */
static void sb_replay_deliver(const sb_replay_t *r, const redisReply *reply) {
    sb_replay_set_t set = {0};
    if (sb_replay_collect(r, reply, &set) != SB_OK) {
        sb_error("gateway", "replay to user %s: out of memory", r->public_key);
        return;
    }
    sb_replay_budget(&set);
    int sent = sb_replay_emit(r, &set);
    sb_replay_log(r, sent, &set);
    sb_replay_set_close(&set);
}

/* ================================================================ the sockets' replays */

static void sb_replays_link(sb_replay_t **head, sb_replay_t *r) {
    r->next = *head;
    if (*head) (*head)->prev = &r->next;
    r->prev = head;
    *head = r;
}

static void sb_replays_unlink(sb_replay_t *r) {
    *r->prev = r->next;
    if (r->next) r->next->prev = r->prev;
    r->next = NULL;
    r->prev = NULL;
}

/* Hangs r on its socket and lists it (waiting or in flight). */
static void sb_replays_attach(sb_replays_t *rp, sb_replay_t *r) {
    sb_replays_link(&rp->list, r);
    rp->pending++;
    sb_sio_set_data(rp->sio, r->id, r);
}

/* Unhooks r from its socket and the list (if still there). */
static void sb_replays_detach(sb_replays_t *rp, sb_replay_t *r) {
    if (!r->prev) return;
    sb_replays_unlink(r);
    rp->pending--;
    if (sb_sio_data(rp->sio, r->id) == r) sb_sio_set_data(rp->sio, r->id, NULL);
}

/* 1 while the socket r was started for is still the one connected on its engine session. */
static int sb_replays_same_socket(const sb_replays_t *rp, const sb_replay_t *r) {
    const char *sid = sb_sio_sid(rp->sio, r->id);
    return sid && !strcmp(sid, r->sid);
}

static void sb_replays_cb(redisReply *reply, void *priv);
static void sb_replays_retry_later(sb_replays_t *rp, sb_replay_t *r, const char *why);

/* What a reply cost to read: its string bytes plus SB_REPLAY_CALL_BYTES per call. */
#define SB_REPLAY_CALL_BYTES 512
static size_t sb_replay_reply_bytes(const redisReply *reply, int depth) {
    size_t n = depth ? 0 : SB_REPLAY_CALL_BYTES;
    if (reply->type == REDIS_REPLY_STRING) return n + reply->len;
    for (size_t i = 0; depth < 3 && reply->type == REDIS_REPLY_ARRAY && i < reply->elements; i++)
        n += sb_replay_reply_bytes(reply->element[i], depth + 1);
    return n;
}

/* Sends r now, or leaves it waiting for the command connection. Returns 0 (sent or waiting)
 * or SB_ENOMEM / SB_EINVAL (nothing sent). */
static int sb_replays_run(sb_replays_t *rp, sb_replay_t *r, int64_t now_ms) {
    int rc = sb_replay_send(rp->redis, r, sb_replays_cb, now_ms);
    r->state = rc == SB_OK ? SB_RP_IN_FLIGHT : SB_RP_WAITING;
    if (rc == SB_OK) rp->in_flight++;
    if (rc != SB_EREDIS) return rc;
    sb_debug("gateway", "replay to socket %s waits for redis", r->sid);
    return SB_OK;
}

/* The reply of a socket's replay. */
static void sb_replays_cb(redisReply *reply, void *priv) {
    sb_replay_t *r = priv;
    sb_replays_t *rp = r->owner;
    rp->in_flight--;
    if (rp->closing || r->state == SB_RP_GONE) {
        sb_replay_free(r);
        if (rp->closing && !rp->in_flight) free(rp);
        return;
    }
    if (!reply) { /* the connection went: sent again when it is back */
        sb_debug("gateway", "replay to socket %s lost its reply; it waits for redis", r->sid);
        r->state = SB_RP_WAITING;
        return;
    }
    if (sb_reply_is_transient(reply)) { /* LOADING, BUSY...: sent again after the backoff */
        r->state = SB_RP_WAITING;
        sb_replays_retry_later(rp, r, reply->str);
        return;
    }
    sb_backoff_reset(&rp->backoff);
    sb_replays_detach(rp, r);
    sb_ratemap_charge(rp->budget, r->public_key, (double)sb_replay_reply_bytes(reply, 0),
                      sb_mono_ms());
    if (reply->type != REDIS_REPLY_ARRAY)
        sb_warn("gateway", "replay to socket %s (user %s) failed: %s", r->sid, r->public_key,
                reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
    else if (sb_replays_same_socket(rp, r))
        sb_replay_deliver(r, reply);
    sb_replay_free(r);
}

/* Sends every waiting replay whose socket is still there (and drops the others); returns how
 * many went out. */
static unsigned sb_replays_send_waiting(sb_replays_t *rp) {
    unsigned sent = 0;
    int64_t now = sb_now_ms();
    for (sb_replay_t *r = rp->list, *next; r; r = next) {
        next = r->next;
        if (r->state != SB_RP_WAITING) continue;
        if (sb_replays_same_socket(rp, r) && sb_replays_run(rp, r, now) == SB_OK) {
            sent += r->state == SB_RP_IN_FLIGHT;
            continue;
        }
        sb_replays_detach(rp, r);
        sb_replay_free(r);
    }
    return sent;
}

/* The command connection is (back) up: send every waiting replay whose socket is still there. */
static void sb_replays_on_up(void *ud) {
    sb_replays_t *rp = ud;
    unsigned sent = sb_replays_send_waiting(rp);
    if (sent) sb_info("gateway", "redis is back: sent %u replay(s) that waited for it", sent);
}

/* The retry timer: the refused replays go again (the on-up hook does it if redis is down). */
static void sb_replays_retry_due(uv_timer_t *t) {
    sb_replays_t *rp = t->data;
    if (!sb_aredis_up(rp->redis)) return;
    unsigned sent = sb_replays_send_waiting(rp);
    if (sent) sb_info("gateway", "sent again %u replay(s) that redis refused (%s)", sent, rp->why);
}

/* r (waiting) was refused for now with why: the retry timer sends it after the backoff. */
static void sb_replays_retry_later(sb_replays_t *rp, sb_replay_t *r, const char *why) {
    snprintf(rp->why, sizeof rp->why, "%s", why ? why : "?");
    if (uv_is_active((uv_handle_t *)rp->retry)) {
        sb_debug("gateway", "replay to socket %s refused by redis (%s); retried with the others",
                 r->sid, rp->why);
        return;
    }
    int wait_ms = sb_backoff_next(&rp->backoff);
    sb_info("gateway", "replay to socket %s refused by redis (%s); sent again in %d ms", r->sid,
            rp->why, wait_ms);
    uv_timer_start(rp->retry, sb_replays_retry_due, (uint64_t)wait_ms, 0);
}

sb_replays_t *sb_replays_create(uv_loop_t *loop, sb_aredis_t *redis, sb_sio_t *sio,
                                const char *job_types) {
    sb_replays_t *rp = calloc(1, sizeof *rp);
    if (!rp) return NULL;
    rp->redis = redis;
    rp->sio = sio;
    sb_script_init(&rp->script, sb_replay_lua);
    rp->types = strdup(job_types ? job_types : "");
    rp->budget = sb_ratemap_create(SB_REPLAY_USER_BYTES, 60 * 1000, 0);
    rp->retry = malloc(sizeof *rp->retry);
    if (!rp->types || !rp->budget || !rp->retry) {
        free(rp->retry);
        sb_ratemap_free(rp->budget);
        free(rp->types);
        free(rp);
        return NULL;
    }
    uv_timer_init(loop, rp->retry);
    rp->retry->data = rp;
    sb_aredis_on_up(redis, &rp->up_hook, sb_replays_on_up, rp);
    return rp;
}

static void sb_replays_retry_closed(uv_handle_t *h) { free(h); }

void sb_replays_free(sb_replays_t *rp) {
    if (!rp) return;
    sb_aredis_on_up_remove(&rp->up_hook);
    uv_close((uv_handle_t *)rp->retry, sb_replays_retry_closed); /* stops it; freed by uv_run */
    rp->retry = NULL;
    while (rp->list) { /* a waiting one goes now; one in flight when its reply comes */
        sb_replay_t *r = rp->list;
        sb_replays_detach(rp, r);
        if (r->state == SB_RP_IN_FLIGHT) r->state = SB_RP_GONE;
        else sb_replay_free(r);
    }
    while (rp->users) sb_replays_unlink(rp->users); /* catch-ups: all in flight */
    free(rp->types);
    rp->types = NULL;
    sb_ratemap_free(rp->budget);
    rp->budget = NULL;
    rp->closing = 1;
    if (!rp->in_flight) free(rp);
}

int sb_replays_socket(sb_replays_t *rp, sb_eio_id_t id, int64_t now_ms) {
    const sb_sio_identity_t *who = sb_sio_identity(rp->sio, id);
    const char *sid = sb_sio_sid(rp->sio, id);
    if (!who || !sid || sb_sio_data(rp->sio, id)) return SB_ENOTFOUND;
    if (!sb_public_key_valid(who->public_key)) return SB_EINVAL;
    if (!sb_ratemap_take(rp->budget, who->public_key, 0, sb_mono_ms())) {
        rp->limited++;
        sb_info("gateway", "no replay for socket %s: user %s spent its replay budget (%d bytes "
                "a minute); GET /api/v1/agent/{type}/{jobId} has its jobs", sid,
                who->public_key, SB_REPLAY_USER_BYTES);
        return SB_OK;
    }
    sb_replay_t *r = sb_replay_new(rp->sio, who->public_key, rp->types,
                                   now_ms - SB_REPLAY_WINDOW_MS);
    if (!r) return SB_ENOMEM;
    r->owner = rp;
    r->id = id;
    snprintf(r->sid, sizeof r->sid, "%s", sid);
    int rc = sb_replays_run(rp, r, now_ms);
    if (rc != SB_OK) {
        sb_replay_free(r);
        return rc;
    }
    sb_replays_attach(rp, r);
    return SB_OK;
}

void sb_replays_forget(sb_replays_t *rp, sb_eio_id_t id) {
    sb_replay_t *r = sb_sio_data(rp->sio, id);
    if (!r) return;
    sb_replays_detach(rp, r);
    if (r->state == SB_RP_IN_FLIGHT) r->state = SB_RP_GONE; /* its reply frees it */
    else sb_replay_free(r);
}

typedef struct {
    const sb_replays_t *rp;
    const char *job_id;
} sb_replays_live_t;

static void sb_replays_live_one(void *ud, uint64_t id) {
    sb_replays_live_t *l = ud;
    sb_replay_t *r = sb_sio_data(l->rp->sio, id);
    if (r) sb_replay_note_live(r, l->job_id);
}

void sb_replays_live(sb_replays_t *rp, const char *public_key, const char *job_id) {
    if (!rp || !job_id) return;
    for (sb_replay_t *r = rp->users; r; r = r->next)
        if (!strcmp(r->public_key, public_key)) sb_replay_note_live(r, job_id);
    if (!rp->pending) return;
    char room[SB_PUBKEY_MAX + 8];
    snprintf(room, sizeof room, "user:%s", public_key);
    sb_replays_live_t l = {rp, job_id};
    sb_rooms_each(sb_sio_rooms(rp->sio), room, sb_replays_live_one, &l);
}

unsigned sb_replays_pending(const sb_replays_t *rp) { return rp ? rp->pending : 0; }
unsigned long long sb_replays_limited(const sb_replays_t *rp) { return rp ? rp->limited : 0; }

/* ================================================================ catch-up */

/* The reply of a catch-up: lost or a transient error (LOADING after a restart...), the user
 * goes to the on-retry hook (catchup.h sends it again later); any other error skips it. */
static void sb_replays_user_cb(redisReply *reply, void *priv) {
    sb_replay_t *r = priv;
    sb_replays_t *rp = r->owner;
    rp->in_flight--;
    if (r->prev) sb_replays_unlink(r);
    if (rp->closing) {
        sb_replay_free(r);
        if (!rp->in_flight) free(rp);
        return;
    }
    if (reply && reply->type == REDIS_REPLY_ARRAY)
        sb_replay_deliver(r, reply);
    else if ((!reply || sb_reply_is_transient(reply)) && rp->on_retry)
        rp->on_retry(rp->on_retry_ud, r->public_key, reply ? reply->str : "redis went away");
    else
        sb_warn("gateway", "catch-up of %s skipped: %s", r->room,
                reply && reply->type == REDIS_REPLY_ERROR ? reply->str : "redis went away");
    sb_replay_free(r);
}

int sb_replays_user(sb_replays_t *rp, const char *public_key, int64_t since_ms,
                    int64_t now_ms) {
    if (!sb_aredis_up(rp->redis)) return SB_EREDIS;
    if (!sb_public_key_valid(public_key)) return SB_EINVAL;
    sb_replay_t *r = sb_replay_new(rp->sio, public_key, rp->types, since_ms);
    if (!r) return SB_ENOMEM;
    r->owner = rp;
    snprintf(r->room, sizeof r->room, "user:%s", public_key);
    int rc = sb_replay_send(rp->redis, r, sb_replays_user_cb, now_ms);
    if (rc != SB_OK) {
        sb_replay_free(r);
        return rc;
    }
    r->state = SB_RP_IN_FLIGHT;
    rp->in_flight++;
    sb_replays_link(&rp->users, r);
    return SB_OK;
}

void sb_replays_on_retry(sb_replays_t *rp, sb_replays_retry_fn fn, void *ud) {
    rp->on_retry = fn;
    rp->on_retry_ud = ud;
}
