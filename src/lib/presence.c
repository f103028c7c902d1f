/* Presence records and their indexes (SPEC §5), as batch commands. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "switchboard/clock.h"
#include "switchboard/error.h"
#include "switchboard/json.h"
#include "switchboard/presence.h"

int sb_agent_id_valid(const char *id) {
    if (!id || !*id) return 0;
    size_t n = 0;
    for (; id[n]; n++) {
        char c = id[n];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '.' || c == '_' || c == ':' || c == '-';
        if (!ok || n >= SB_AGENT_ID_MAX) return 0;
    }
    return 1;
}

int sb_presence_status_valid(const char *s) {
    return s && (!strcmp(s, "online") || !strcmp(s, "busy") || !strcmp(s, "away"));
}

char *sb_presence_key(char *buf, size_t len, const char *agent_id) {
    int n = snprintf(buf, len, "agent:online:%s", agent_id);
    return n > 0 && (size_t)n < len ? buf : NULL;
}

static char *sb_presence_json(const sb_presence_t *p, int64_t now_ms) {
    char ts[SB_ISO_LEN];
    cJSON *o = cJSON_CreateObject();
    int ok = o && cJSON_AddStringToObject(o, "agent_id", p->agent_id) &&
             cJSON_AddStringToObject(o, "name", p->name ? p->name : "") &&
             cJSON_AddStringToObject(o, "email", p->email ? p->email : "") &&
             cJSON_AddStringToObject(o, "department_id", p->department_id ? p->department_id : "") &&
             cJSON_AddStringToObject(o, "department", p->department ? p->department : "") &&
             cJSON_AddStringToObject(o, "status", p->status ? p->status : "online") &&
             cJSON_AddStringToObject(o, "last_heartbeat", sb_iso8601(now_ms, ts)) &&
             cJSON_AddNumberToObject(o, "current_chats", p->current_chats) &&
             cJSON_AddNumberToObject(o, "max_chats", p->max_chats);
    char *json = ok ? sb_json_print(o) : NULL;
    cJSON_Delete(o);
    return json;
}

int sb_presence_heartbeat(sb_batch_t *b, const sb_presence_t *p, int ttl_s, int64_t now_ms) {
    char key[256];
    if (!sb_agent_id_valid(p->agent_id) || !sb_presence_key(key, sizeof key, p->agent_id))
        return SB_EINVAL;
    char *json = sb_presence_json(p, now_ms);
    if (!json) return SB_ENOMEM;
    int rc = sb_batch_add(b, "SET %s %s EX %d", key, json, ttl_s);
    free(json);
    if (!rc) rc = sb_batch_add(b, "SADD agents:all %s", p->agent_id);
    if (!rc) rc = sb_batch_add(b, "EXPIRE agents:all %d", SB_PRESENCE_INDEX_TTL);
    if (!rc && p->department_id && *p->department_id) {
        rc = sb_batch_add(b, "SADD agents:dept:%s %s", p->department_id, p->agent_id);
        if (!rc)
            rc = sb_batch_add(b, "EXPIRE agents:dept:%s %d", p->department_id,
                              SB_PRESENCE_INDEX_TTL);
    }
    return rc;
}

int sb_presence_offline(sb_batch_t *b, const char *agent_id, const char *department_id) {
    char key[256];
    if (!sb_agent_id_valid(agent_id) || !sb_presence_key(key, sizeof key, agent_id))
        return SB_EINVAL;
    int rc = sb_batch_add(b, "DEL %s", key);
    if (!rc) rc = sb_batch_add(b, "SREM agents:all %s", agent_id);
    if (!rc && department_id && *department_id)
        rc = sb_batch_add(b, "SREM agents:dept:%s %s", department_id, agent_id);
    return rc;
}
