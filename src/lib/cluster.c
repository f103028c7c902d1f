/* Redis Cluster's rules as pure functions (cluster.h): the key slot (CRC16 with hash tags),
 * which argument of a command is its first key, the MOVED/ASK redirect, and the slot map read
 * from CLUSTER SLOTS. The client that applies them is cluster_client.c.
 *
 * Finding the key: most commands take it as argv[1]; the exceptions we send are a table
 * (keyless commands, EVAL-style "numkeys then keys", XREAD-style "STREAMS then keys",
 * subcommands whose key is argv[2]). A RESP-written command is read back into its arguments
 * by a walk of its one shape, an array of bulk strings (sb_cluster_cmd_slot). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "switchboard/cluster.h"
#include "switchboard/error.h"
#include "switchboard/fmt.h"

/* ---- key slots ------------------------------------------------------------------------------ */

uint16_t sb_cluster_crc16(const char *buf, size_t len) {
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)((unsigned char)buf[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = (uint16_t)(crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1);
    }
    return crc;
}

int sb_cluster_keyslot(const char *key, size_t len) {
    const char *open = memchr(key, '{', len);
    if (open) {
        size_t from = (size_t)(open - key) + 1;
        const char *close = memchr(open + 1, '}', len - from);
        if (close && close > open + 1) { /* a non-empty tag: only it is hashed */
            key = open + 1;
            len = (size_t)(close - key);
        }
    }
    return sb_cluster_crc16(key, len) & (SB_CLUSTER_SLOTS - 1);
}

/* ---- the key of a command ------------------------------------------------------------------ */

typedef enum {
    SB_KEY_NONE,     /* no key */
    SB_KEY_SECOND,   /* argv[2] (a subcommand first) */
    SB_KEY_NUMKEYS,  /* argv[2] is the key count, keys from argv[3] (EVAL, FCALL) */
    SB_KEY_STREAMS,  /* the first argument after STREAMS (XREAD, XREADGROUP) */
    SB_KEY_MATCH,    /* SCAN: its MATCH pattern when that has a hash tag (all its keys are in
                        that tag's slot), else none */
} sb_key_rule_t;

static const struct {
    const char *name;
    sb_key_rule_t rule;
} sb_key_rules[] = {
    {"PING", SB_KEY_NONE},        {"ECHO", SB_KEY_NONE},        {"AUTH", SB_KEY_NONE},
    {"HELLO", SB_KEY_NONE},       {"SELECT", SB_KEY_NONE},      {"INFO", SB_KEY_NONE},
    {"CLUSTER", SB_KEY_NONE},     {"CONFIG", SB_KEY_NONE},      {"CLIENT", SB_KEY_NONE},
    {"SCRIPT", SB_KEY_NONE},      {"FUNCTION", SB_KEY_NONE},    {"COMMAND", SB_KEY_NONE},
    {"MULTI", SB_KEY_NONE},       {"EXEC", SB_KEY_NONE},        {"DISCARD", SB_KEY_NONE},
    {"SUBSCRIBE", SB_KEY_NONE},   {"UNSUBSCRIBE", SB_KEY_NONE}, {"PSUBSCRIBE", SB_KEY_NONE},
    {"PUNSUBSCRIBE", SB_KEY_NONE}, {"PUBLISH", SB_KEY_NONE},    {"PUBSUB", SB_KEY_NONE},
    {"TIME", SB_KEY_NONE},        {"DBSIZE", SB_KEY_NONE},      {"SCAN", SB_KEY_MATCH},
    {"KEYS", SB_KEY_NONE},        {"FLUSHALL", SB_KEY_NONE},    {"FLUSHDB", SB_KEY_NONE},
    {"ROLE", SB_KEY_NONE},        {"WAIT", SB_KEY_NONE},        {"ASKING", SB_KEY_NONE},
    {"READONLY", SB_KEY_NONE},    {"SLOWLOG", SB_KEY_NONE},     {"LATENCY", SB_KEY_NONE},
    {"SAVE", SB_KEY_NONE},        {"BGSAVE", SB_KEY_NONE},      {"LASTSAVE", SB_KEY_NONE},
    {"DEBUG", SB_KEY_NONE},       {"QUIT", SB_KEY_NONE},        {"RANDOMKEY", SB_KEY_NONE},
    {"EVAL", SB_KEY_NUMKEYS},     {"EVALSHA", SB_KEY_NUMKEYS},  {"EVAL_RO", SB_KEY_NUMKEYS},
    {"EVALSHA_RO", SB_KEY_NUMKEYS}, {"FCALL", SB_KEY_NUMKEYS},  {"FCALL_RO", SB_KEY_NUMKEYS},
    {"XREAD", SB_KEY_STREAMS},    {"XREADGROUP", SB_KEY_STREAMS}, {"XGROUP", SB_KEY_SECOND},
    {"XINFO", SB_KEY_SECOND},     {"OBJECT", SB_KEY_SECOND},    {"MEMORY", SB_KEY_SECOND},
};

/* The rule of command name (argv[0]); commands not in the table take argv[1]. */
static int sb_key_rule(const char *name, size_t len, sb_key_rule_t *rule) {
    for (size_t i = 0; i < sizeof sb_key_rules / sizeof sb_key_rules[0]; i++)
        if (strlen(sb_key_rules[i].name) == len && !strncasecmp(sb_key_rules[i].name, name, len)) {
            *rule = sb_key_rules[i].rule;
            return 1;
        }
    return 0;
}

/* 1 when pattern has a non-empty hash tag free of glob characters: every key it matches then
 * hashes to the tag's slot. */
static int sb_key_tagged_pattern(const char *p, size_t len) {
    const char *open = memchr(p, '{', len);
    if (!open) return 0;
    const char *close = memchr(open + 1, '}', len - (size_t)(open + 1 - p));
    if (!close || close == open + 1) return 0;
    for (const char *c = p; c < close; c++)
        if (*c == '*' || *c == '?' || *c == '[' || *c == '\\') return 0;
    return 1;
}

/* argv[i], a decimal number of keys, as a count; -1 when it is not one. */
static long sb_key_count(const char *s, size_t len) {
    char buf[24];
    long v;
    if (len == 0 || len >= sizeof buf) return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    return sb_fmt_parse_long(buf, 0, 1L << 30, &v) == SB_OK ? v : -1;
}

int sb_cluster_key_index(int argc, const char *const *argv, const size_t *lens) {
    sb_key_rule_t rule;
    if (argc < 1) return -1;
    if (!sb_key_rule(argv[0], lens[0], &rule)) return argc > 1 ? 1 : -1;
    switch (rule) {
    case SB_KEY_NONE: return -1;
    case SB_KEY_SECOND: return argc > 2 ? 2 : -1;
    case SB_KEY_NUMKEYS: return argc > 3 && sb_key_count(argv[2], lens[2]) > 0 ? 3 : -1;
    case SB_KEY_STREAMS:
        for (int i = 1; i + 1 < argc; i++)
            if (lens[i] == 7 && !strncasecmp(argv[i], "STREAMS", 7)) return i + 1;
        return -1;
    case SB_KEY_MATCH:
        for (int i = 2; i + 1 < argc; i++)
            if (lens[i] == 5 && !strncasecmp(argv[i], "MATCH", 5))
                return sb_key_tagged_pattern(argv[i + 1], lens[i + 1]) ? i + 1 : -1;
        return -1;
    }
    return -1;
}

/* Reads the decimal header of a RESP line starting at resp[*at] with marker ('*' or '$'):
 * "<marker><digits>\r\n", at most max. Moves *at past it. Returns the number, -1 if malformed. */
static long sb_cluster_resp_header(const char *resp, size_t len, size_t *at, char marker,
                                   long max) {
    size_t i = *at;
    if (i >= len || resp[i++] != marker) return -1;
    long n = 0;
    size_t digits = 0;
    for (; i < len && resp[i] >= '0' && resp[i] <= '9'; i++, digits++) {
        n = n * 10 + (resp[i] - '0');
        if (n > max) return -1;
    }
    if (!digits || i + 2 > len || resp[i] != '\r' || resp[i + 1] != '\n') return -1;
    *at = i + 2;
    return n;
}

/* The command is walked here rather than by hiredis's reader: the reader allocates whatever
 * element count a header declares (a few bytes could ask for gigabytes), and a command has
 * one shape only, an array of at most 4096 bulk strings. */
int sb_cluster_cmd_slot(const char *resp, size_t len) {
    size_t at = 0;
    long argc = sb_cluster_resp_header(resp, len, &at, '*', 4096);
    if (argc < 1) return SB_EINVAL;
    const char *argv[argc];
    size_t lens[argc];
    for (long i = 0; i < argc; i++) {
        long n = sb_cluster_resp_header(resp, len, &at, '$', (long)(len - at));
        if (n < 0 || at + (size_t)n + 2 > len || resp[at + n] != '\r' || resp[at + n + 1] != '\n')
            return SB_EINVAL;
        argv[i] = resp + at;
        lens[i] = (size_t)n;
        at += (size_t)n + 2;
    }
    if (at != len) return SB_EINVAL; /* one command, nothing after it */
    int k = sb_cluster_key_index((int)argc, argv, lens);
    return k < 0 ? -1 : sb_cluster_keyslot(argv[k], lens[k]);
}

sb_redis_addr_t sb_cluster_node_addr(const sb_redis_addr_t *tmpl, char *host, int port) {
    sb_redis_addr_t a = *tmpl;
    a.host = host;
    a.port = port;
    a.unix_path = NULL;
    a.cluster = NULL;
    a.sentinels = a.sentinel_master = NULL;
    return a;
}

/* ---- redirects ------------------------------------------------------------------------------ */

sb_redirect_kind_t sb_cluster_redirect_parse(const redisReply *reply, sb_redirect_t *out) {
    memset(out, 0, sizeof *out);
    if (!reply || reply->type != REDIS_REPLY_ERROR || !reply->str) return SB_REDIRECT_NONE;
    sb_redirect_kind_t kind = !strncmp(reply->str, "MOVED ", 6) ? SB_REDIRECT_MOVED
                              : !strncmp(reply->str, "ASK ", 4) ? SB_REDIRECT_ASK
                                                                : SB_REDIRECT_NONE;
    if (kind == SB_REDIRECT_NONE) return kind;
    char word[8], where[300], extra;
    long slot, port;
    if (sscanf(reply->str, "%7s %ld %299s %c", word, &slot, where, &extra) != 3) return 0;
    char *colon = strrchr(where, ':');
    if (slot < 0 || slot >= SB_CLUSTER_SLOTS || !colon || colon == where ||
        (size_t)(colon - where) >= sizeof out->host ||
        sb_fmt_parse_long(colon + 1, 1, 65535, &port) != SB_OK)
        return SB_REDIRECT_NONE;
    memcpy(out->host, where, (size_t)(colon - where));
    out->host[colon - where] = '\0';
    out->kind = kind;
    out->slot = (int)slot;
    out->port = (int)port;
    return kind;
}

/* ---- the slot map --------------------------------------------------------------------------- */

void sb_slotmap_free(sb_slotmap_t *map) {
    if (!map) return;
    free(map->nodes);
    map->nodes = NULL;
    map->nnodes = 0;
}

/* The index of host:port among map's nodes, added when new. -1 on allocation failure. */
static int sb_slotmap_node(sb_slotmap_t *map, const char *host, int port) {
    for (size_t i = 0; i < map->nnodes; i++)
        if (map->nodes[i].port == port && !strcmp(map->nodes[i].host, host)) return (int)i;
    if (map->nnodes >= SB_CLUSTER_NO_NODE) return -1;
    sb_cluster_endpoint_t *n = realloc(map->nodes, (map->nnodes + 1) * sizeof *n);
    if (!n) return -1;
    map->nodes = n;
    snprintf(n[map->nnodes].host, sizeof n->host, "%s", host);
    n[map->nnodes].port = port;
    return (int)map->nnodes++;
}

/* One range [start, end, [host, port, ...], ...] into map. 0, SB_EINVAL (err), SB_ENOMEM. */
static int sb_slotmap_range(sb_slotmap_t *map, const redisReply *e, const char *asked_host,
                            char *err, size_t errlen) {
    if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
        e->element[0]->type != REDIS_REPLY_INTEGER || e->element[1]->type != REDIS_REPLY_INTEGER ||
        e->element[2]->type != REDIS_REPLY_ARRAY || e->element[2]->elements < 2 ||
        e->element[2]->element[0]->type != REDIS_REPLY_STRING ||
        e->element[2]->element[1]->type != REDIS_REPLY_INTEGER) {
        snprintf(err, errlen, "CLUSTER SLOTS: unexpected reply shape");
        return SB_EINVAL;
    }
    long long from = e->element[0]->integer, to = e->element[1]->integer;
    const redisReply *m = e->element[2];
    long long port = m->element[1]->integer;
    if (from < 0 || to < from || to >= SB_CLUSTER_SLOTS || port < 1 || port > 65535) {
        snprintf(err, errlen, "CLUSTER SLOTS: bad range %lld-%lld or port %lld", from, to, port);
        return SB_EINVAL;
    }
    const char *host = m->element[0]->len && strcmp(m->element[0]->str, "?")
                           ? m->element[0]->str : asked_host;
    int idx = sb_slotmap_node(map, host, (int)port);
    if (idx < 0) return SB_ENOMEM;
    for (long long s = from; s <= to; s++) map->owner[s] = (uint16_t)idx;
    return SB_OK;
}

int sb_slotmap_parse(sb_slotmap_t *map, const redisReply *reply, const char *asked_host,
                     char *err, size_t errlen) {
    memset(map, 0, sizeof *map);
    for (int s = 0; s < SB_CLUSTER_SLOTS; s++) map->owner[s] = SB_CLUSTER_NO_NODE;
    int rc = SB_OK;
    if (!reply || reply->type != REDIS_REPLY_ARRAY) {
        snprintf(err, errlen, "CLUSTER SLOTS: %s",
                 reply && reply->type == REDIS_REPLY_ERROR ? reply->str : "not an array");
        rc = SB_EINVAL;
    }
    for (size_t i = 0; rc == SB_OK && i < reply->elements; i++)
        rc = sb_slotmap_range(map, reply->element[i], asked_host, err, errlen);
    for (int s = 0; rc == SB_OK && s < SB_CLUSTER_SLOTS; s++)
        if (map->owner[s] == SB_CLUSTER_NO_NODE) {
            snprintf(err, errlen, "CLUSTER SLOTS: slot %d is served by no node "
                     "(cluster_state not ok?)", s);
            rc = SB_EINVAL;
        }
    if (rc == SB_ENOMEM) snprintf(err, errlen, "out of memory");
    if (rc != SB_OK) sb_slotmap_free(map);
    return rc;
}
