/* Jobs: ids, Redis key names, job records and status messages (SPEC §2).
 *
 * Every key of a job type derives from `agent:{type}`; sb_key() formats them from one table so
 * that the names exist in exactly one place, and sb_key_prefix() gives the prefix the Lua
 * scripts build the others from. On Redis Cluster (sb_key_style_set(SB_KEYS_CLUSTER)) the
 * type is a hash tag, `agent:{rebalance}:jobs`, so that every key of a type lives in one slot
 * and each script touches one slot; the pub/sub channels keep their names (a PUBLISH reaches
 * every node).
 *
 * Queue shards (QUEUE_SHARDS=N, sb_queue_shards_set): one type spread over N queues, each a
 * "queue name" that takes the type's place in every key: shard 0 is the type itself (so N = 1
 * is exactly the unsharded layout and a type's existing keys stay shard 0), shard s > 0 is
 * `type.s` (`agent:rebalance.3:jobs`, cluster `agent:{rebalance.3}:jobs`: the shards of a type
 * spread over the cluster's slots). A user's jobs all go to shard crc16(publicKey) % N, and a
 * job id names its shard: `{ms}-{8 hex}s{s}` for s > 0, no suffix for shard 0. sb_key() and
 * sb_key_prefix() take a type or a queue name; the channels (status, events) always carry the
 * base type. Records and status messages are read as cJSON
 * documents (a new record is written as text directly);
 * the sb_job_t / sb_status_t views point into a parsed document and live as long as it does. */
#ifndef SB_JOB_H
#define SB_JOB_H

#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include "switchboard/random.h"

#define SB_JOB_ID_LEN 64      /* buffer for any valid job id (max 16+1+32 chars) + NUL */
#define SB_KEY_LEN 512        /* buffer for any key sb_key() formats */
#define SB_TYPE_MAX 32        /* longest job type name */
#define SB_PUBKEY_MAX 128     /* longest user publicKey accepted */
#define SB_JOB_TTL 86400      /* seconds a record and a user's job index live */
#define SB_DEAD_RETENTION 604800 /* default seconds a failed job's record lives (DEAD_RETENTION) */
#define SB_DEAD_MAX 10000     /* default bound of the dead list (DEAD_MAX) */
#define SB_HISTORY_MAXLEN 100 /* entries kept in a job's history (about; jobctl_lua.h) */

/* Creates `{unix ms}-{8 lowercase hex}` from pool (random.h; NULL: getrandom). Returns 0 or
 * SB_ERR. */
int sb_job_id_new(char out[SB_JOB_ID_LEN], sb_rand_t *pool);
/* 1 if id matches ^[0-9]{1,16}-[0-9a-z]{1,32}$ (what lookups accept), else 0. */
int sb_job_id_valid(const char *id);
/* 1 if type matches ^[a-z][a-z0-9_-]{0,31}$, else 0. */
int sb_job_type_valid(const char *type);
/* 1 if a user publicKey is 1..SB_PUBKEY_MAX printable non-space ASCII characters. */
int sb_public_key_valid(const char *pk);

/* ---- queue shards ------------------------------------------------------------------------ */
#define SB_SHARDS_MAX 256            /* most shards of a type (QUEUE_SHARDS) */
#define SB_QUEUE_LEN (SB_TYPE_MAX + 5) /* buffer for a queue name: type + ".255" + NUL */

/* The deployment's shard count, 1..SB_SHARDS_MAX (others are clamped). Process-wide like the
 * key style: set once at start, before any thread runs; the default is 1. */
void sb_queue_shards_set(int n);
int sb_queue_shards(void);
/* The queue name of shard s of type into buf: type for s = 0, else "type.s". Returns buf, or
 * NULL (buf "") when type is not a valid type or s is out of 0..SB_SHARDS_MAX-1. */
char *sb_queue_name(char buf[SB_QUEUE_LEN], const char *type, int s);
/* Splits a queue name (or a plain type) into its type and shard. Returns 0, or SB_EINVAL for
 * anything sb_queue_name does not write. */
int sb_queue_parse(const char *queue, char type[SB_TYPE_MAX + 1], int *shard);
/* The shard of a user's jobs among n: crc16(publicKey) % n (the cluster's CRC16); 0 when
 * n <= 1. */
int sb_queue_shard_of_user(const char *public_key, int n);
/* The queue of public_key's jobs of type (or queue name: its type is used) with the current
 * shard count, into buf. Returns buf, or NULL (buf "") on a bad type. */
char *sb_queue_of_user(char buf[SB_QUEUE_LEN], const char *type, const char *public_key);
/* The shard a job id names: 0 without an `s{digits}` suffix, else the digits; -1 when the id
 * is not a valid id or the shard is not below n. */
int sb_job_id_shard(const char *id, int n);
/* The queue holding job id of type (or queue name) with the current shard count, into buf.
 * Returns buf, or NULL (buf "") on a bad type or an id of no shard of this deployment (such a
 * job is not found). */
char *sb_queue_of_job(char buf[SB_QUEUE_LEN], const char *type, const char *id);
/* A new id of shard s: sb_job_id_new's, with "s{s}" appended for s > 0. Returns 0 or SB_ERR. */
int sb_job_id_new_in(char out[SB_JOB_ID_LEN], sb_rand_t *pool, int s);
/* A new id of a job of public_key: in the user's shard with the current shard count. */
int sb_job_id_new_for(char out[SB_JOB_ID_LEN], sb_rand_t *pool, const char *public_key);

typedef enum {
    SB_KEY_JOBS,        /* agent:{type}:jobs              list of pending ids */
    SB_KEY_JOB,         /* agent:{type}:job:{id}          record (JSON string) */
    SB_KEY_PROCESSING,  /* agent:{type}:processing:{agent} list of taken ids */
    SB_KEY_DEAD,        /* agent:{type}:dead              ids that failed for good */
    SB_KEY_USER,        /* agent:{type}:user:{publicKey}  zset of the user's ids */
    SB_KEY_STATUS,      /* agent:{type}:status            pub/sub channel */
    SB_KEY_EVENTS,      /* agent:{type}:events            pub/sub channel of gateway events
                           ({"event","room","data"}, e.g. {type}:created) for every gateway */
    SB_KEY_INDEX,       /* agent:{type}:index             zset of every id by creation ms */
    SB_KEY_DONE,        /* agent:{type}:done              zset of done ids by finish ms */
    SB_KEY_CANCELLED,   /* agent:{type}:cancelled         zset of cancelled ids by cancel ms */
    SB_KEY_HISTORY,     /* agent:{type}:hist:{id}         list: the job's status history, four
                           elements per entry (status, by, at, detail); before 2026-12 a
                           stream agent:{type}:history:{id}, still read and deleted */
    SB_KEY_PAUSED,      /* agent:{type}:paused            exists while the type is paused */
    SB_KEY_CANCEL,      /* agent:{type}:cancel:{agent}    set of held ids to stop (jobctl.h) */
    SB_KEY_LEASES,      /* agent:{type}:leases            zset agent id -> lease deadline */
} sb_key_kind_t;

/* How key names are written: the seed-compatible names (single Redis, Sentinel, Upstash) or
 * with the type as a hash tag (Redis Cluster). Process-wide, like the log level: set once at
 * start, before any thread runs; the default is SB_KEYS_PLAIN. */
typedef enum { SB_KEYS_PLAIN = 0, SB_KEYS_CLUSTER = 1 } sb_key_style_t;
void sb_key_style_set(sb_key_style_t style);
sb_key_style_t sb_key_style(void);
/* The prefix of every key of type (or queue name), "agent:rebalance:" or "agent:{rebalance}:"
 * (cluster), into
 * buf. Returns buf, or NULL if it does not fit (buf is then an empty string). */
char *sb_key_prefix(char *buf, size_t len, const char *type);

/* Formats the key into buf. type is a type or a queue name (the channels SB_KEY_STATUS and
 * SB_KEY_EVENTS drop the shard). arg is the id / agent id / publicKey (ignored when the kind takes
 * none). Returns buf, or NULL if it does not fit (buf is then an empty string). */
char *sb_key(char *buf, size_t len, sb_key_kind_t kind, const char *type, const char *arg);

/* ---- job records ------------------------------------------------------------------------ */
typedef struct {
    const char *public_key; /* required: routes status to room user:{publicKey} */
    const char *id;         /* optional user id (token `sub`) */
} sb_user_t;

/* The JSON text of a new record {jobId,type,status:"queued",user:{publicKey,id?},payload,
 * attempts:0,createdAt,updatedAt}, written directly (jsonw.h: the bytes cJSON would print for
 * the same object). payload may be NULL ({}). Returns malloc'd text the caller frees, or NULL
 * on ENOMEM or a payload nested deeper than SB_JW_MAX_DEPTH (jsonw.h; none that
 * sb_json_parse accepts is). */
char *sb_job_record_text(const char *type, const char *job_id, const sb_user_t *user,
                         const cJSON *payload, int64_t now_ms);

/* A parsed record. Pointers are views into root. */
typedef struct {
    cJSON *root;
    const char *job_id;
    const char *type;
    const char *status;
    const char *public_key; /* user.publicKey */
    const cJSON *payload;
    int attempts;
} sb_job_t;

/* Parses a record; requires jobId, user.publicKey and payload. Returns 0, or SB_EINVAL with a
 * reason in err (job->root is then NULL). Free with sb_job_close. */
int sb_job_parse(const char *json, size_t len, sb_job_t *job, char *err, size_t errlen);
void sb_job_close(sb_job_t *job);
/* Sets status and updatedAt (and refreshes the views). Returns 0 or SB_ENOMEM. */
int sb_job_set_status(sb_job_t *job, const char *status, int64_t now_ms);
int sb_job_set_attempts(sb_job_t *job, int attempts);

/* ---- status messages -------------------------------------------------------------------- */
typedef struct {
    const char *job_id;     /* required */
    const char *status;     /* required: processing | done | error | cancelled */
    const char *user_id;    /* required: owner's publicKey */
    const char *timestamp;  /* optional (sb_status_build fills "now" when NULL) */
    const cJSON *result;    /* optional */
    const char *error;      /* optional */
    const char *details;    /* optional */
    int attempts;           /* optional: < 0 when absent */
} sb_status_t;

/* 1 if s is processing | done | error | cancelled. */
int sb_status_valid(const char *s);
/* The JSON text of a status message {jobId,status,userId,timestamp,result?,error?,details?,
 * attempts?,recorded:true}, written directly (jsonw.h); malloc'd, caller frees. NULL on ENOMEM.
 * "recorded":true tells gateways the publisher wrote this state into the job record itself
 * (the agent does, before publishing); a message without it makes them move the record
 * forward (src/gateway/interop.h): only publish what you recorded. */
char *sb_status_build(const sb_status_t *st);
/* Parses and validates a status message. On success returns 0 and *root_out owns the
 * document st points into (caller cJSON_Delete()s it). On failure returns SB_EINVAL with a
 * reason in err and *root_out NULL. */
int sb_status_parse(const char *buf, size_t len, cJSON **root_out, sb_status_t *st,
                    char *err, size_t errlen);

#endif
