/* Presence (SPEC §5): who is online. An agent is online while agent:online:{id} lives (TTL
 * AGENT_STATUS_TTL); agents:all and agents:dept:{department} index the ids (TTL 600 s,
 * refreshed by heartbeats). Readers drop stale index members they meet. */
#ifndef SB_PRESENCE_H
#define SB_PRESENCE_H

#include <stdint.h>
#include "switchboard/redis.h"

#define SB_PRESENCE_INDEX_TTL 600
#define SB_AGENT_ID_MAX 128

typedef struct {
    const char *agent_id;
    const char *name;
    const char *email;
    const char *department_id; /* NULL or "": belongs to no department */
    const char *department;
    const char *status;        /* online | busy | away */
    int current_chats;
    int max_chats;
} sb_presence_t;

/* 1 if id is 1..128 chars of [A-Za-z0-9._:-] (UUIDs and {host}-{pid}-{rand} both fit). */
int sb_agent_id_valid(const char *id);
/* 1 if status is online | busy | away. */
int sb_presence_status_valid(const char *s);
/* "agent:online:{id}" into buf; NULL if it does not fit. */
char *sb_presence_key(char *buf, size_t len, const char *agent_id);

/* Appends SET agent:online:{id} EX ttl, SADD/EXPIRE agents:all and the department set.
 * Returns 0, SB_EINVAL (bad id), SB_ENOMEM. */
int sb_presence_heartbeat(sb_batch_t *b, const sb_presence_t *p, int ttl_s, int64_t now_ms);
/* Appends DEL agent:online:{id} and SREMs from the index sets. */
int sb_presence_offline(sb_batch_t *b, const char *agent_id, const char *department_id);

#endif
