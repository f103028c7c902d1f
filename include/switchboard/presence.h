/* Presence (SPEC §5): who is online, in which department, with what load.
 *
 * Keys (standalone Redis; the scripts derive the keys below from the agent id, so they are not
 * Redis-Cluster safe, like the rest of §5's layout):
 *   agent:online:{id}      JSON record, TTL AGENT_STATUS_TTL. An agent is online while it lives.
 *   agents:all             set of ids, TTL 600 s, refreshed by heartbeats
 *   agents:dept:{dept_id}  set of ids of one department, TTL 600 s
 *   agents:meta            hash id → {agent_id,name,email,department_id,department}, no TTL:
 *                          who is registered as online, kept so that an agent whose key expired
 *                          can still be announced offline with its department. An entry is
 *                          removed by whoever first notices the agent is gone, and only that
 *                          caller publishes agent:offline, so each departure is announced once.
 *
 * Every state change is one Lua script that also PUBLISHes the matching event on
 * SB_PRESENCE_CHANNEL: {"event":"agent:online"|"agent:status"|"agent:offline",
 * "timestamp":ISO, "agent":{record}, "previous_status"? , "reason"?: "explicit"|"expired"}.
 *
 * Three layers, so the async gateway and blocking callers share everything but the I/O:
 *   1. sb_presence_*_cmd(): append ONE command (EVALSHA, or EVAL with SB_SCRIPT_EVAL, or a
 *      plain GET) to an sb_batch_t. The gateway sends it with redisAsyncFormattedCommand; on a
 *      NOSCRIPT error (sb_reply_is_noscript) it builds the same call again with SB_SCRIPT_EVAL.
 *   2. sb_presence_*_reply(): pure functions from the redisReply of that command to results.
 *   3. Blocking wrappers over an sb_redis_t (CLI, agent runtime, tests).
 *
 * Agents whose heartbeats stop: their key expires silently. Two building blocks turn that into
 * agent:offline within a bounded time, without polling every key:
 *   - keyspace notifications: sb_presence_notify_*() add "Ex" to notify-keyspace-events
 *     (keeping the flags already set); the gateway SUBSCRIBEs to sb_presence_expired_channel(),
 *     feeds each message to sb_presence_expired_parse(), and runs sb_presence_expire_cmd() for
 *     the id it yields.
 *   - a sweep (sb_presence_sweep_cmd) over agents:meta, one HSCAN page per call, for when CONFIG
 *     is refused (run every few seconds) and as a slow backstop otherwise.
 * Lists, stats and assign also retire the stale members they meet (and announce them). */
#ifndef SB_PRESENCE_H
#define SB_PRESENCE_H

#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include "switchboard/redis.h"

#define SB_PRESENCE_INDEX_TTL 600
#define SB_PRESENCE_CHANNEL "agent:presence"
#define SB_PRESENCE_PREFIX "agent:online:"
#define SB_PRESENCE_META "agents:meta"
#define SB_PRESENCE_ALL "agents:all"
#define SB_PRESENCE_DEPT_PREFIX "agents:dept:"
#define SB_AGENT_ID_MAX 128
#define SB_PRESENCE_KEY_LEN (sizeof SB_PRESENCE_PREFIX + SB_AGENT_ID_MAX)
#define SB_PRESENCE_DEPT_MAX 128   /* longest department_id */
#define SB_PRESENCE_SWEEP_COUNT 200 /* default agents:meta entries a sweep call looks at */

/* What a heartbeat says about an agent. Strings are borrowed for the call. */
typedef struct {
    const char *agent_id;
    const char *name;
    const char *email;
    const char *department_id; /* NULL or "": belongs to no department */
    const char *department;
    const char *status;        /* online | busy | away; NULL = online */
    int set_chats;             /* 0: keep the stored current_chats (people: assign/release
                                * count them); 1: current_chats below is the truth (workers) */
    int current_chats;
    int max_chats;             /* 0: the context's default */
    const char *extra;         /* NULL, or a JSON object whose members are added to the record
                                * where it has none of that name (workers: host, job_type, pid,
                                * started_at) */
} sb_presence_t;

/* Scripts and settings, shared read-only by every call (one per process is enough). */
typedef struct {
    sb_script_t heartbeat, offline, list, assign, release, expire, sweep;
    int ttl_s;      /* AGENT_STATUS_TTL */
    int max_chats;  /* default capacity of a person agent (MAX_CHATS) */
} sb_presence_ctx_t;

/* Fills ctx (computes the scripts' SHA1s). Nothing to close. */
void sb_presence_init(sb_presence_ctx_t *ctx, int ttl_s, int max_chats);

/* ---- names --------------------------------------------------------------------------------- */

/* 1 if id is a canonical UUID (8-4-4-4-12 hex digits, either case). */
int sb_agent_id_is_uuid(const char *id);
/* 1 if id is a UUID or a worker-style id: 1..128 characters of [A-Za-z0-9._-] that start and
 * end with a letter or digit ({hostname}-{pid}-{random} and AGENT_ID values). Else 0. */
int sb_agent_id_valid(const char *id);
/* 1 if status is online | busy | away. */
int sb_presence_status_valid(const char *s);
/* 1 if a department id is usable in a key: 1..128 chars of [A-Za-z0-9._:-]. */
int sb_presence_dept_valid(const char *dept);
/* The presence key names in use: the SB_PRESENCE_* above, or on Redis Cluster
 * (sb_key_style() == SB_KEYS_CLUSTER, job.h) the same under the hash tag {agents}:
 * {agents}:meta, {agents}:all, {agents}:online:{id}, {agents}:dept:{dept}, so that every presence
 * script touches one slot. Static; valid for the process. */
typedef struct {
    const char *meta, *all, *online, *dept; /* online and dept: prefixes of the id / dept */
} sb_presence_names_t;
const sb_presence_names_t *sb_presence_names(void);
/* "agent:online:{id}" ({agents}:online:{id} on a cluster) into buf; NULL if it does not fit. */
char *sb_presence_key(char *buf, size_t len, const char *agent_id);

/* ---- 1. commands (each appends exactly one command to b) ----------------------------------
 * All return 0, SB_EINVAL (bad id, status or department: nothing appended) or SB_ENOMEM.
 * now_ms stamps last_heartbeat and the events' timestamp. */
/* Heartbeat. Reply: bulk string, the stored record (sb_presence_record_reply). Publishes
 * agent:online when the key did not exist, agent:status when status or department changed. */
int sb_presence_heartbeat_cmd(sb_batch_t *b, const sb_presence_ctx_t *ctx,
                              const sb_presence_t *p, int64_t now_ms, sb_script_mode_t mode);
/* Explicit offline. Reply: integer 1 if the agent was online (agent:offline published), else 0
 * (sb_presence_offline_reply). */
int sb_presence_offline_cmd(sb_batch_t *b, const sb_presence_ctx_t *ctx, const char *agent_id,
                            int64_t now_ms, sb_script_mode_t mode);
/* Online agents, all (department_id NULL or "") or of one department. Reply: array of record
 * texts (sb_presence_list_reply / sb_presence_stats_reply). Stale members are removed. */
int sb_presence_list_cmd(sb_batch_t *b, const sb_presence_ctx_t *ctx, const char *department_id,
                         int64_t now_ms, sb_script_mode_t mode);
/* One agent: a plain GET. Reply: bulk or nil (sb_presence_record_reply → SB_ENOTFOUND). */
int sb_presence_get_cmd(sb_batch_t *b, const char *agent_id);
/* Picks the online agent (status "online", current_chats < max_chats) of the department with
 * the lowest current/max ratio, ties to the smallest id, and adds one chat to it (TTL kept).
 * Reply: the updated record, or nil when nobody has capacity (→ 409). department_id required. */
int sb_presence_assign_cmd(sb_batch_t *b, const sb_presence_ctx_t *ctx,
                           const char *department_id, int64_t now_ms, sb_script_mode_t mode);
/* Takes one chat off an agent (never below 0; TTL kept). Reply: the record, nil if offline. */
int sb_presence_release_cmd(sb_batch_t *b, const sb_presence_ctx_t *ctx, const char *agent_id,
                            sb_script_mode_t mode);
/* After an expiry notification: if agent:online:{id} is really gone, retire the agent and
 * publish agent:offline (reason "expired"). Reply: integer 1 if this call announced it. */
int sb_presence_expire_cmd(sb_batch_t *b, const sb_presence_ctx_t *ctx, const char *agent_id,
                           int64_t now_ms, sb_script_mode_t mode);
/* One page of the fallback sweep: looks at about count entries of agents:meta from cursor
 * ("0" to start) and retires every agent whose key is gone. Reply: [next cursor, number
 * retired] (sb_presence_sweep_reply); a full pass ends when the cursor comes back "0". */
int sb_presence_sweep_cmd(sb_batch_t *b, const sb_presence_ctx_t *ctx, const char *cursor,
                          int count, int64_t now_ms, sb_script_mode_t mode);
/* Keyspace notifications: `CONFIG GET notify-keyspace-events`; then, given its reply,
 * sb_presence_notify_set_cmd appends the CONFIG SET that adds "Ex" and returns 0, returns 1
 * (nothing appended) when expired key events are already on, SB_EPROTO on an unexpected reply
 * (CONFIG refused: fall back to the sweep). */
int sb_presence_notify_get_cmd(sb_batch_t *b);
int sb_presence_notify_set_cmd(sb_batch_t *b, const redisReply *config_get_reply);
/* The flags to set so expired key events reach keyevent subscribers: current plus "E" and "x"
 * unless already implied ("A" implies "x"). Returns 1 and fills out if a change is needed, 0 if
 * not (out untouched), SB_EINVAL if out is too small. */
int sb_presence_notify_flags(const char *current, char *out, size_t outlen);
/* "__keyevent@{db}__:expired" into buf (the channel to SUBSCRIBE to). NULL if it does not fit. */
char *sb_presence_expired_channel(char *buf, size_t len, int db);

/* ---- 2. replies (pure; none frees rep) --------------------------------------------------- */

/* A record reply (heartbeat, get, assign, release). Returns 0 with *out the parsed record
 * (caller cJSON_Deletes; out may be NULL to only check), SB_ENOTFOUND on nil (offline / no
 * agent available), SB_EPROTO on an error reply or anything else. */
int sb_presence_record_reply(const redisReply *rep, cJSON **out);
/* Offline reply: 0 with *was_online set (may be NULL), or SB_EPROTO. */
int sb_presence_offline_reply(const redisReply *rep, int *was_online);
/* List reply → *out, a JSON array of records sorted by department_id then agent_id (caller
 * deletes). Unparseable records are skipped. Returns 0, SB_EPROTO, SB_ENOMEM. */
int sb_presence_list_reply(const redisReply *rep, cJSON **out);
/* Aggregates a record array (as from sb_presence_list_reply) into
 * {"total":N,"by_status":{"online","busy","away"},"departments":[{"department_id",
 * "department","total","online","busy","away","current_chats","max_chats"}...]}
 * (departments sorted by id; "" = no department). Returns NULL on allocation failure. */
cJSON *sb_presence_stats_build(const cJSON *agents);
/* List reply straight to stats. Returns 0, SB_EPROTO, SB_ENOMEM. */
int sb_presence_stats_reply(const redisReply *rep, cJSON **out);
/* Expire reply: 0 with *announced set (may be NULL), or SB_EPROTO. */
int sb_presence_expire_reply(const redisReply *rep, int *announced);
/* Sweep reply: 0 with the next cursor in cursor (cursorlen >= 32) and *retired, or SB_EPROTO. */
int sb_presence_sweep_reply(const redisReply *rep, char *cursor, size_t cursorlen, int *retired);
/* A pub/sub message from the keyevent channel ("message" or "pmessage" array). Returns 1 and
 * copies the agent id into id when it is the expiry of an agent:online:{valid id} key, else 0. */
int sb_presence_expired_parse(const redisReply *msg, char *id, size_t idlen);
/* An event text from SB_PRESENCE_CHANNEL. Returns 0 with *doc the parsed event (caller
 * deletes) and *event pointing into it ("agent:online" | "agent:status" | "agent:offline"),
 * or SB_EINVAL when it is not such an event. */
int sb_presence_event_parse(const char *buf, size_t len, cJSON **doc, const char **event);

/* ---- 3. blocking wrappers ------------------------------------------------------------------
 * Run the command above on r (EVALSHA with EVAL fallback) and parse it. Same returns as the
 * builder and the parser, plus SB_EREDIS when the connection failed (r is then disconnected;
 * nothing is retried). Out parameters may be NULL unless said otherwise. */
int sb_presence_heartbeat(sb_redis_t *r, const sb_presence_ctx_t *ctx, const sb_presence_t *p,
                          int64_t now_ms, cJSON **record);
int sb_presence_offline(sb_redis_t *r, const sb_presence_ctx_t *ctx, const char *agent_id,
                        int64_t now_ms, int *was_online);
int sb_presence_list(sb_redis_t *r, const sb_presence_ctx_t *ctx, const char *department_id,
                     cJSON **agents /* required */);
int sb_presence_get(sb_redis_t *r, const char *agent_id, cJSON **record);
int sb_presence_stats(sb_redis_t *r, const sb_presence_ctx_t *ctx, cJSON **stats /* required */);
int sb_presence_assign(sb_redis_t *r, const sb_presence_ctx_t *ctx, const char *department_id,
                       cJSON **record);
int sb_presence_release(sb_redis_t *r, const sb_presence_ctx_t *ctx, const char *agent_id,
                        cJSON **record);
int sb_presence_expire(sb_redis_t *r, const sb_presence_ctx_t *ctx, const char *agent_id,
                       int *announced);
/* One sweep page; cursor (>= 32 bytes) is read and updated in place. */
int sb_presence_sweep(sb_redis_t *r, const sb_presence_ctx_t *ctx, char *cursor, int count,
                      int *retired);
/* Turns expired key events on (CONFIG GET + SET). 0 when on, SB_EPROTO when CONFIG was refused,
 * SB_EREDIS. */
int sb_presence_notify_enable(sb_redis_t *r);

#endif
