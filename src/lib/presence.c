/* Presence (SPEC §5): ids, the Lua scripts that change presence state, and the builders that
 * append one call of them to an sb_batch_t (for the async gateway and the blocking wrappers in
 * presence_sync.c alike). Replies are turned into results in presence_reply.c.
 *
 * Every script starts with SB_LUA_COMMON, whose gone() retires an agent: it deletes the
 * agents:meta entry, drops the id from agents:all and its department set and, only if the
 * entry was there (or the record was), publishes agent:offline. Whichever path notices a
 * departure first (explicit offline, expiry notification, sweep, a list meeting a stale member)
 * announces it, and the others find nothing left to announce. Every script gets the names of
 * presence.h as its four KEYS (agents:meta, agents:all, and the prefixes of agent:online:{id}
 * and agents:dept:{dept}, from which it derives the others): on Redis Cluster they all carry
 * the hash tag {agents}, so a script runs on the one node that holds presence. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "switchboard/clock.h"
#include "switchboard/error.h"
#include "switchboard/job.h"
#include "switchboard/presence.h"

/* ---- scripts ------------------------------------------------------------------------------ */

#define SB_LUA_COMMON                                                                            \
    "local META, ALL, OPFX, DPFX = KEYS[1], KEYS[2], KEYS[3], KEYS[4]\n"                         \
    "local function okey(id) return OPFX .. id end\n"                                           \
    "local function dkey(d) return DPFX .. d end\n"                                             \
    "local function decode(s)\n"                                                                 \
    "  if not s then return nil end\n"                                                           \
    "  local ok, v = pcall(cjson.decode, s)\n"                                                   \
    "  if ok and type(v) == 'table' then return v end\n"                                         \
    "  return nil\n"                                                                             \
    "end\n"                                                                                      \
    "local function str(v) if type(v) == 'string' then return v end return '' end\n"             \
    "local function gone(id, reason, chan, now, rec)\n"                                          \
    "  local m = redis.call('HGET', META, id)\n"                                                 \
    "  local info = decode(m) or rec or {}\n"                                                    \
    "  redis.call('HDEL', META, id)\n"                                                           \
    "  redis.call('SREM', ALL, id)\n"                                                            \
    "  for _, d in ipairs({str(info.department_id), str(rec and rec.department_id)}) do\n"       \
    "    if d ~= '' then redis.call('SREM', dkey(d), id) end\n"                                  \
    "  end\n"                                                                                    \
    "  if not m and not rec then return false end\n"                                             \
    "  local agent = {agent_id = id, name = str(info.name), email = str(info.email),\n"          \
    "    department_id = str(info.department_id), department = str(info.department),\n"         \
    "    status = 'offline'}\n"                                                                  \
    "  local ev = cjson.encode({event = 'agent:offline', reason = reason, timestamp = now,\n"    \
    "    agent = agent})\n"                                                                      \
    "  redis.call('PUBLISH', chan, ev)\n"                                                        \
    "  return ev\n"                                                                              \
    "end\n"

/* ARGV: id name email dept_id dept status now ttl index_ttl set_chats current max chan extra
 * (extra: '' or a JSON object whose members the record gets where it has none of its own) */
static const char SB_HEARTBEAT_LUA[] = SB_LUA_COMMON
    "local id, dept, status = ARGV[1], ARGV[4], ARGV[6]\n"
    "local prev = decode(redis.call('GET', okey(id)))\n"
    "local cur = tonumber(ARGV[11])\n"
    "if ARGV[10] ~= '1' then cur = (prev and tonumber(prev.current_chats)) or 0 end\n"
    "local rec = {agent_id = id, name = ARGV[2], email = ARGV[3], department_id = dept,\n"
    "  department = ARGV[5], status = status, last_heartbeat = ARGV[7],\n"
    "  current_chats = cur, max_chats = tonumber(ARGV[12])}\n"
    "for k, v in pairs(decode(ARGV[14]) or {}) do if rec[k] == nil then rec[k] = v end end\n"
    "local json = cjson.encode(rec)\n"
    "redis.call('SET', okey(id), json, 'EX', ARGV[8])\n"
    "redis.call('SADD', ALL, id)\n"
    "redis.call('EXPIRE', ALL, ARGV[9])\n"
    "local old = decode(redis.call('HGET', META, id))\n"
    "local olddept = str(old and old.department_id)\n"
    "if olddept ~= '' and olddept ~= dept then redis.call('SREM', dkey(olddept), id) end\n"
    "if dept ~= '' then\n"
    "  redis.call('SADD', dkey(dept), id)\n"
    "  redis.call('EXPIRE', dkey(dept), ARGV[9])\n"
    "end\n"
    "redis.call('HSET', META, id, cjson.encode({agent_id = id, name = ARGV[2], email = ARGV[3],\n"
    "  department_id = dept, department = ARGV[5]}))\n"
    "local ev\n"
    "if not prev then\n"
    "  ev = {event = 'agent:online'}\n"
    "elseif prev.status ~= status or str(prev.department_id) ~= dept then\n"
    "  ev = {event = 'agent:status', previous_status = str(prev.status)}\n"
    "end\n"
    "if ev then\n"
    "  ev.timestamp = ARGV[7]\n"
    "  ev.agent = rec\n"
    "  redis.call('PUBLISH', ARGV[13], cjson.encode(ev))\n"
    "end\n"
    "return json\n";

/* ARGV: id now chan */
static const char SB_OFFLINE_LUA[] = SB_LUA_COMMON
    "local id = ARGV[1]\n"
    "local rec = decode(redis.call('GET', okey(id)))\n"
    "redis.call('DEL', okey(id))\n"
    "if gone(id, 'explicit', ARGV[3], ARGV[2], rec) then return 1 end\n"
    "return 0\n";

/* ARGV: dept ('' = all) now chan */
static const char SB_LIST_LUA[] = SB_LUA_COMMON
    "local set = ARGV[1] == '' and ALL or dkey(ARGV[1])\n"
    "local out = {}\n"
    "for _, id in ipairs(redis.call('SMEMBERS', set)) do\n"
    "  local v = redis.call('GET', okey(id))\n"
    "  if v then out[#out + 1] = v else\n"
    "    redis.call('SREM', set, id)\n"
    "    gone(id, 'expired', ARGV[3], ARGV[2], nil)\n"
    "  end\n"
    "end\n"
    "return out\n";

/* ARGV: dept now chan. Load ratio compared as c/m < bc/bm ⇔ c*bm < bc*m (m, bm > 0). */
static const char SB_ASSIGN_LUA[] = SB_LUA_COMMON
    "local set = dkey(ARGV[1])\n"
    "local best, brec, bc, bm\n"
    "for _, id in ipairs(redis.call('SMEMBERS', set)) do\n"
    "  local v = redis.call('GET', okey(id))\n"
    "  if not v then\n"
    "    redis.call('SREM', set, id)\n"
    "    gone(id, 'expired', ARGV[3], ARGV[2], nil)\n"
    "  else\n"
    "    local r = decode(v)\n"
    "    if r and r.status == 'online' then\n"
    "      local c, m = tonumber(r.current_chats) or 0, tonumber(r.max_chats) or 0\n"
    "      if c < m and (not best or c * bm < bc * m or (c * bm == bc * m and id < best)) then\n"
    "        best, brec, bc, bm = id, r, c, m\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "if not best then return false end\n"
    "brec.current_chats = bc + 1\n"
    "local json = cjson.encode(brec)\n"
    "redis.call('SET', okey(best), json, 'KEEPTTL')\n"
    "return json\n";

/* ARGV: id */
static const char SB_RELEASE_LUA[] = SB_LUA_COMMON
    "local r = decode(redis.call('GET', okey(ARGV[1])))\n"
    "if not r then return false end\n"
    "local c = tonumber(r.current_chats) or 0\n"
    "r.current_chats = c > 0 and c - 1 or 0\n"
    "local json = cjson.encode(r)\n"
    "redis.call('SET', okey(ARGV[1]), json, 'KEEPTTL')\n"
    "return json\n";

/* ARGV: id now chan */
static const char SB_EXPIRE_LUA[] = SB_LUA_COMMON
    "if redis.call('EXISTS', okey(ARGV[1])) == 1 then return 0 end\n"
    "if gone(ARGV[1], 'expired', ARGV[3], ARGV[2], nil) then return 1 end\n"
    "return 0\n";

/* ARGV: cursor count now chan */
static const char SB_SWEEP_LUA[] = SB_LUA_COMMON
    "local page = redis.call('HSCAN', META, ARGV[1], 'COUNT', ARGV[2])\n"
    "local kv, n = page[2], 0\n"
    "for i = 1, #kv, 2 do\n"
    "  if redis.call('EXISTS', okey(kv[i])) == 0 and\n"
    "     gone(kv[i], 'expired', ARGV[4], ARGV[3], nil) then n = n + 1 end\n"
    "end\n"
    "return {page[1], n}\n";

void sb_presence_init(sb_presence_ctx_t *ctx, int ttl_s, int max_chats) {
    sb_script_init(&ctx->heartbeat, SB_HEARTBEAT_LUA);
    sb_script_init(&ctx->offline, SB_OFFLINE_LUA);
    sb_script_init(&ctx->list, SB_LIST_LUA);
    sb_script_init(&ctx->assign, SB_ASSIGN_LUA);
    sb_script_init(&ctx->release, SB_RELEASE_LUA);
    sb_script_init(&ctx->expire, SB_EXPIRE_LUA);
    sb_script_init(&ctx->sweep, SB_SWEEP_LUA);
    ctx->ttl_s = ttl_s;
    ctx->max_chats = max_chats;
}

/* ---- names -------------------------------------------------------------------------------- */

const sb_presence_names_t *sb_presence_names(void) {
    static const sb_presence_names_t plain = {SB_PRESENCE_META, SB_PRESENCE_ALL,
                                              SB_PRESENCE_PREFIX, SB_PRESENCE_DEPT_PREFIX};
    static const sb_presence_names_t tagged = {"{agents}:meta", "{agents}:all",
                                               "{agents}:online:", "{agents}:dept:"};
    return sb_key_style() == SB_KEYS_CLUSTER ? &tagged : &plain;
}

static int sb_is_alnum(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static int sb_is_hex(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

int sb_agent_id_is_uuid(const char *id) {
    if (!id || strlen(id) != 36) return 0;
    for (int i = 0; i < 36; i++) {
        int dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? id[i] != '-' : !sb_is_hex(id[i])) return 0;
    }
    return 1;
}

int sb_agent_id_valid(const char *id) {
    if (!id || !*id) return 0;
    size_t n = strlen(id);
    if (n > SB_AGENT_ID_MAX || !sb_is_alnum(id[0]) || !sb_is_alnum(id[n - 1])) return 0;
    for (size_t i = 0; i < n; i++)
        if (!sb_is_alnum(id[i]) && id[i] != '.' && id[i] != '_' && id[i] != '-') return 0;
    return 1;
}

int sb_presence_status_valid(const char *s) {
    return s && (!strcmp(s, "online") || !strcmp(s, "busy") || !strcmp(s, "away"));
}

int sb_presence_dept_valid(const char *dept) {
    if (!dept || !*dept || strlen(dept) > SB_PRESENCE_DEPT_MAX) return 0;
    for (const char *p = dept; *p; p++)
        if (!sb_is_alnum(*p) && !strchr("._:-", *p)) return 0;
    return 1;
}

char *sb_presence_key(char *buf, size_t len, const char *agent_id) {
    int n = snprintf(buf, len, "%s%s", sb_presence_names()->online, agent_id);
    return n > 0 && (size_t)n < len ? buf : NULL;
}

char *sb_presence_expired_channel(char *buf, size_t len, int db) {
    int n = snprintf(buf, len, "__keyevent@%d__:expired", db);
    return n > 0 && (size_t)n < len ? buf : NULL;
}

/* ---- builders ----------------------------------------------------------------------------- */

static const char *sb_or_empty(const char *s) { return s ? s : ""; }

/* Appends one call of s: the four names (KEYS) and then argc arguments. */
static int sb_presence_call(sb_batch_t *b, const sb_script_t *s, sb_script_mode_t mode,
                            int argc, const char *const *args) {
    const sb_presence_names_t *n = sb_presence_names();
    const char *argv[4 + 16] = {n->meta, n->all, n->online, n->dept};
    if (argc > 16) return SB_EINVAL;
    memcpy(argv + 4, args, (size_t)argc * sizeof *args);
    return sb_batch_add_script(b, s, mode, 4, 4 + argc, argv, NULL);
}

int sb_presence_heartbeat_cmd(sb_batch_t *b, const sb_presence_ctx_t *ctx,
                              const sb_presence_t *p, int64_t now_ms, sb_script_mode_t mode) {
    const char *status = p->status ? p->status : "online";
    const char *dept = sb_or_empty(p->department_id);
    if (!sb_agent_id_valid(p->agent_id) || !sb_presence_status_valid(status) ||
        (*dept && !sb_presence_dept_valid(dept)) || p->current_chats < 0 || p->max_chats < 0)
        return SB_EINVAL;
    char now[SB_ISO_LEN], ttl[16], ittl[16], cur[16], max[16];
    snprintf(ttl, sizeof ttl, "%d", ctx->ttl_s);
    snprintf(ittl, sizeof ittl, "%d", SB_PRESENCE_INDEX_TTL);
    snprintf(cur, sizeof cur, "%d", p->current_chats);
    snprintf(max, sizeof max, "%d", p->max_chats ? p->max_chats : ctx->max_chats);
    const char *argv[] = {p->agent_id, sb_or_empty(p->name), sb_or_empty(p->email), dept,
                          sb_or_empty(p->department), status, sb_iso8601(now_ms, now), ttl,
                          ittl, p->set_chats ? "1" : "0", cur, max, SB_PRESENCE_CHANNEL,
                          sb_or_empty(p->extra)};
    return sb_presence_call(b, &ctx->heartbeat, mode, 14, argv);
}

/* A script whose arguments are (id, now, channel): offline and expire. */
static int sb_presence_id_cmd(sb_batch_t *b, const sb_script_t *s, const char *agent_id,
                              int64_t now_ms, sb_script_mode_t mode) {
    if (!sb_agent_id_valid(agent_id)) return SB_EINVAL;
    char now[SB_ISO_LEN];
    const char *argv[] = {agent_id, sb_iso8601(now_ms, now), SB_PRESENCE_CHANNEL};
    return sb_presence_call(b, s, mode, 3, argv);
}

int sb_presence_offline_cmd(sb_batch_t *b, const sb_presence_ctx_t *ctx, const char *agent_id,
                            int64_t now_ms, sb_script_mode_t mode) {
    return sb_presence_id_cmd(b, &ctx->offline, agent_id, now_ms, mode);
}

int sb_presence_expire_cmd(sb_batch_t *b, const sb_presence_ctx_t *ctx, const char *agent_id,
                           int64_t now_ms, sb_script_mode_t mode) {
    return sb_presence_id_cmd(b, &ctx->expire, agent_id, now_ms, mode);
}

/* A script whose arguments are (department, now, channel): list and assign. */
static int sb_presence_dept_cmd(sb_batch_t *b, const sb_script_t *s, const char *dept,
                                int64_t now_ms, sb_script_mode_t mode) {
    char now[SB_ISO_LEN];
    const char *argv[] = {dept, sb_iso8601(now_ms, now), SB_PRESENCE_CHANNEL};
    return sb_presence_call(b, s, mode, 3, argv);
}

int sb_presence_list_cmd(sb_batch_t *b, const sb_presence_ctx_t *ctx, const char *department_id,
                         int64_t now_ms, sb_script_mode_t mode) {
    const char *dept = sb_or_empty(department_id);
    if (*dept && !sb_presence_dept_valid(dept)) return SB_EINVAL;
    return sb_presence_dept_cmd(b, &ctx->list, dept, now_ms, mode);
}

int sb_presence_assign_cmd(sb_batch_t *b, const sb_presence_ctx_t *ctx,
                           const char *department_id, int64_t now_ms, sb_script_mode_t mode) {
    if (!sb_presence_dept_valid(department_id)) return SB_EINVAL;
    return sb_presence_dept_cmd(b, &ctx->assign, department_id, now_ms, mode);
}

int sb_presence_release_cmd(sb_batch_t *b, const sb_presence_ctx_t *ctx, const char *agent_id,
                            sb_script_mode_t mode) {
    if (!sb_agent_id_valid(agent_id)) return SB_EINVAL;
    const char *argv[] = {agent_id};
    return sb_presence_call(b, &ctx->release, mode, 1, argv);
}

int sb_presence_get_cmd(sb_batch_t *b, const char *agent_id) {
    if (!sb_agent_id_valid(agent_id)) return SB_EINVAL;
    return sb_batch_add(b, "GET %s%s", sb_presence_names()->online, agent_id);
}

int sb_presence_sweep_cmd(sb_batch_t *b, const sb_presence_ctx_t *ctx, const char *cursor,
                          int count, int64_t now_ms, sb_script_mode_t mode) {
    if (!cursor || !*cursor || strspn(cursor, "0123456789") != strlen(cursor) || count < 0)
        return SB_EINVAL;
    char now[SB_ISO_LEN], n[16];
    snprintf(n, sizeof n, "%d", count ? count : SB_PRESENCE_SWEEP_COUNT);
    const char *argv[] = {cursor, n, sb_iso8601(now_ms, now), SB_PRESENCE_CHANNEL};
    return sb_presence_call(b, &ctx->sweep, mode, 4, argv);
}

/* ---- keyspace notifications ---------------------------------------------------------------- */

int sb_presence_notify_flags(const char *current, char *out, size_t outlen) {
    const char *cur = sb_or_empty(current);
    int has_e = strchr(cur, 'E') != NULL;
    int has_x = strchr(cur, 'x') != NULL || strchr(cur, 'A') != NULL;
    if (has_e && has_x) return 0;
    int n = snprintf(out, outlen, "%s%s%s", cur, has_e ? "" : "E", has_x ? "" : "x");
    return n > 0 && (size_t)n < outlen ? 1 : SB_EINVAL;
}

int sb_presence_notify_get_cmd(sb_batch_t *b) {
    return sb_batch_add(b, "CONFIG GET notify-keyspace-events");
}

int sb_presence_notify_set_cmd(sb_batch_t *b, const redisReply *rep) {
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
        rep->element[1]->type != REDIS_REPLY_STRING)
        return SB_EPROTO;
    char flags[64];
    int rc = sb_presence_notify_flags(rep->element[1]->str, flags, sizeof flags);
    if (rc <= 0) return rc == 0 ? 1 : SB_EPROTO;
    rc = sb_batch_add(b, "CONFIG SET notify-keyspace-events %s", flags);
    return rc;
}
