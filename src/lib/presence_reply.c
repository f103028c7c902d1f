/* Presence replies: pure functions from the redisReply of a presence command (presence.c) to
 * results: records, sorted lists, per-department and per-status stats, sweep cursors, and the
 * parsers for the pub/sub messages the gateway receives (presence events, expired keyevents).
 * Nothing here talks to Redis, so the async gateway and the blocking wrappers share it. */
#include <stdlib.h>
#include <string.h>
#include "switchboard/error.h"
#include "switchboard/json.h"
#include "switchboard/presence.h"

static int sb_reply_is_text(const redisReply *r) {
    return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS);
}

int sb_presence_record_reply(const redisReply *rep, cJSON **out) {
    if (out) *out = NULL;
    if (rep && rep->type == REDIS_REPLY_NIL) return SB_ENOTFOUND;
    if (!sb_reply_is_text(rep)) return SB_EPROTO;
    cJSON *doc = sb_json_parse(rep->str, rep->len);
    if (!cJSON_IsObject(doc)) {
        cJSON_Delete(doc);
        return SB_EPROTO;
    }
    if (out) *out = doc;
    else cJSON_Delete(doc);
    return SB_OK;
}

/* An integer reply into *value (may be NULL). */
static int sb_int_reply(const redisReply *rep, int *value) {
    if (!rep || rep->type != REDIS_REPLY_INTEGER) return SB_EPROTO;
    if (value) *value = rep->integer != 0;
    return SB_OK;
}

int sb_presence_offline_reply(const redisReply *rep, int *was_online) {
    return sb_int_reply(rep, was_online);
}

int sb_presence_expire_reply(const redisReply *rep, int *announced) {
    return sb_int_reply(rep, announced);
}

int sb_presence_sweep_reply(const redisReply *rep, char *cursor, size_t cursorlen, int *retired) {
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
        !sb_reply_is_text(rep->element[0]) || rep->element[1]->type != REDIS_REPLY_INTEGER ||
        rep->element[0]->len >= cursorlen)
        return SB_EPROTO;
    memcpy(cursor, rep->element[0]->str, rep->element[0]->len + 1);
    if (retired) *retired = (int)rep->element[1]->integer;
    return SB_OK;
}

/* ---- lists and stats ------------------------------------------------------------------------ */

static const char *sb_member(const cJSON *o, const char *name) {
    const char *s = sb_json_str(o, name);
    return s ? s : "";
}

static int sb_record_cmp(const void *a, const void *b) {
    const cJSON *x = *(const cJSON *const *)a, *y = *(const cJSON *const *)b;
    int c = strcmp(sb_member(x, "department_id"), sb_member(y, "department_id"));
    return c ? c : strcmp(sb_member(x, "agent_id"), sb_member(y, "agent_id"));
}

/* Parses each text element of rep into recs (n slots); returns how many parsed. */
static size_t sb_parse_records(const redisReply *rep, cJSON **recs) {
    size_t n = 0;
    for (size_t i = 0; i < rep->elements; i++) {
        const redisReply *e = rep->element[i];
        cJSON *doc = sb_reply_is_text(e) ? sb_json_parse(e->str, e->len) : NULL;
        if (cJSON_IsObject(doc) && sb_json_str(doc, "agent_id")) recs[n++] = doc;
        else cJSON_Delete(doc);
    }
    return n;
}

int sb_presence_list_reply(const redisReply *rep, cJSON **out) {
    *out = NULL;
    if (!rep || rep->type != REDIS_REPLY_ARRAY) return SB_EPROTO;
    cJSON **recs = calloc(rep->elements ? rep->elements : 1, sizeof *recs);
    cJSON *arr = cJSON_CreateArray();
    if (!recs || !arr) {
        free(recs);
        cJSON_Delete(arr);
        return SB_ENOMEM;
    }
    size_t n = sb_parse_records(rep, recs);
    qsort(recs, n, sizeof *recs, sb_record_cmp);
    for (size_t i = 0; i < n; i++) cJSON_AddItemToArray(arr, recs[i]);
    free(recs);
    *out = arr;
    return SB_OK;
}

/* Adds one record's status to a {"online","busy","away"} counter object. */
static void sb_count_status(cJSON *counts, const char *status) {
    cJSON *c = cJSON_GetObjectItemCaseSensitive(counts, status);
    if (cJSON_IsNumber(c)) cJSON_SetNumberValue(c, c->valuedouble + 1);
}

static cJSON *sb_status_counts(cJSON *into) {
    static const char *const st[] = {"online", "busy", "away"};
    for (size_t i = 0; into && i < 3; i++)
        if (!cJSON_AddNumberToObject(into, st[i], 0)) return NULL;
    return into;
}

static void sb_add_num(cJSON *o, const char *name, double v) {
    cJSON *c = cJSON_GetObjectItemCaseSensitive(o, name);
    if (cJSON_IsNumber(c)) cJSON_SetNumberValue(c, c->valuedouble + v);
}

/* The department entry for rec in depts (records arrive sorted by department, so it is the
 * last one or a new one). NULL on allocation failure. */
static cJSON *sb_dept_entry(cJSON *depts, const cJSON *rec) {
    const char *id = sb_member(rec, "department_id");
    cJSON *last = cJSON_GetArrayItem(depts, cJSON_GetArraySize(depts) - 1);
    if (last && !strcmp(sb_member(last, "department_id"), id)) return last;
    cJSON *d = cJSON_CreateObject();
    if (!d || !cJSON_AddStringToObject(d, "department_id", id) ||
        !cJSON_AddStringToObject(d, "department", sb_member(rec, "department")) ||
        !cJSON_AddNumberToObject(d, "total", 0) || !sb_status_counts(d) ||
        !cJSON_AddNumberToObject(d, "current_chats", 0) ||
        !cJSON_AddNumberToObject(d, "max_chats", 0)) {
        cJSON_Delete(d);
        return NULL;
    }
    cJSON_AddItemToArray(depts, d);
    return d;
}

cJSON *sb_presence_stats_build(const cJSON *agents) {
    cJSON *out = cJSON_CreateObject(), *by = NULL, *depts = NULL;
    if (!out || !cJSON_AddNumberToObject(out, "total", cJSON_GetArraySize(agents)) ||
        !(by = sb_status_counts(cJSON_AddObjectToObject(out, "by_status"))) ||
        !(depts = cJSON_AddArrayToObject(out, "departments")))
        goto fail;
    const cJSON *rec;
    cJSON_ArrayForEach(rec, agents) {
        cJSON *d = sb_dept_entry(depts, rec);
        if (!d) goto fail;
        double cur = 0, max = 0;
        sb_json_num(rec, "current_chats", &cur);
        sb_json_num(rec, "max_chats", &max);
        sb_count_status(by, sb_member(rec, "status"));
        sb_count_status(d, sb_member(rec, "status"));
        sb_add_num(d, "total", 1);
        sb_add_num(d, "current_chats", cur);
        sb_add_num(d, "max_chats", max);
    }
    return out;
fail:
    cJSON_Delete(out);
    return NULL;
}

int sb_presence_stats_reply(const redisReply *rep, cJSON **out) {
    cJSON *agents = NULL;
    *out = NULL;
    int rc = sb_presence_list_reply(rep, &agents);
    if (rc != SB_OK) return rc;
    *out = sb_presence_stats_build(agents);
    cJSON_Delete(agents);
    return *out ? SB_OK : SB_ENOMEM;
}

/* ---- pub/sub messages ----------------------------------------------------------------------- */

int sb_presence_expired_parse(const redisReply *msg, char *id, size_t idlen) {
    if (!msg || msg->type != REDIS_REPLY_ARRAY || msg->elements < 3) return 0;
    const redisReply *kind = msg->element[0];
    size_t want = 3;
    if (sb_reply_is_text(kind) && !strcmp(kind->str, "pmessage")) want = 4;
    else if (!sb_reply_is_text(kind) || strcmp(kind->str, "message") != 0) return 0;
    const redisReply *chan = msg->element[want - 2], *key = msg->element[want - 1];
    if (msg->elements != want || !sb_reply_is_text(chan) || !sb_reply_is_text(key)) return 0;
    const char *suffix = strstr(chan->str, "__:expired");
    const char *prefix = sb_presence_names()->online;
    size_t plen = strlen(prefix);
    if (strncmp(chan->str, "__keyevent@", 11) != 0 || !suffix || suffix[10] != '\0' ||
        key->len <= plen || strncmp(key->str, prefix, plen) != 0)
        return 0;
    const char *agent = key->str + plen;
    if (strlen(agent) != key->len - plen || !sb_agent_id_valid(agent) ||
        strlen(agent) >= idlen)
        return 0;
    memcpy(id, agent, strlen(agent) + 1);
    return 1;
}

int sb_presence_event_parse(const char *buf, size_t len, cJSON **doc, const char **event) {
    *doc = NULL;
    *event = NULL;
    cJSON *d = sb_json_parse(buf, len);
    const char *ev = sb_json_str(d, "event");
    if (!ev || !cJSON_IsObject(sb_json_obj(d, "agent")) ||
        (strcmp(ev, "agent:online") && strcmp(ev, "agent:status") && strcmp(ev, "agent:offline"))) {
        cJSON_Delete(d);
        return SB_EINVAL;
    }
    *doc = d;
    *event = ev;
    return SB_OK;
}
