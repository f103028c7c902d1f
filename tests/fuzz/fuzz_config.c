/* libFuzzer target for configuration text: Redis URLs, ISO 8601 times, job/agent ids, and
 * HTTP route matching with the API prefixes. All are fed untrusted text (environment, flags,
 * request paths) and must only ever accept or refuse. The same bytes also go to Redis
 * Cluster's parsers (cluster.h): as a server reply read by hiredis (CLUSTER SLOTS, MOVED/ASK),
 * as a command (its key's slot), and as a host:port seed list. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "switchboard/clock.h"
#include "switchboard/cluster.h"
#include "switchboard/fmt.h"
#include "switchboard/config.h"
#include "switchboard/job.h"
#include "switchboard/presence.h"
#include "gateway/router.h"

static const sb_route_t routes[] = {
    {SB_HTTP_POST, "/agent/{type}", NULL},
    {SB_HTTP_GET, "/agent/{type}/jobs", NULL},
    {SB_HTTP_GET, "/agent/{type}/metrics", NULL},
    {SB_HTTP_GET, "/agent/{type}/{jobId}", NULL},
    {SB_HTTP_GET, "/rebalance/{jobId}", NULL},
    {SB_HTTP_GET, "/agent-status/agent/{agent_id}", NULL},
};

/* 1 when no line of data starts an array header ('*') declaring more elements than data has
 * bytes: hiredis 0.14's reader allocates the declared count up front, so such input only
 * measures malloc (replies come from Redis, which never sends one). */
static int fuzz_reply_plausible(const char *data, size_t size) {
    for (size_t i = 0; i < size; i++) {
        if (data[i] != '*' || (i > 0 && data[i - 1] != '\n')) continue;
        unsigned long long n = 0;
        for (size_t j = i + 1; j < size && data[j] >= '0' && data[j] <= '9' && n <= size; j++)
            n = n * 10 + (unsigned)(data[j] - '0');
        if (n > size) return 0;
    }
    return 1;
}

/* The cluster parsers on data: a reply, a command, a seed list. */
static void fuzz_cluster(const char *data, size_t size, const char *text) {
    redisReader *rd = redisReaderCreate();
    void *rep = NULL;
    if (fuzz_reply_plausible(data, size)) redisReaderFeed(rd, data, size);
    if (redisReaderGetReply(rd, &rep) == REDIS_OK && rep) {
        char err[256];
        sb_slotmap_t map;
        sb_redirect_t d;
        if (sb_slotmap_parse(&map, rep, "asked", err, sizeof err) == 0) sb_slotmap_free(&map);
        sb_cluster_redirect_parse(rep, &d);
        freeReplyObject(rep);
    }
    redisReaderFree(rd);
    sb_cluster_cmd_slot(data, size);
    sb_cluster_keyslot(data, size);
    char host[SB_FMT_HOST_MAX], err[256];
    int port;
    for (int i = 0; i < 64 && sb_fmt_hostport_nth(text, i, host, sizeof host, &port, err,
                                                   sizeof err) == 1; i++) {}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *s = malloc(size + 1), err[256];
    if (!s) return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    sb_redis_addr_t a = {0};
    sb_redis_url_parse(s, &a, err, sizeof err);
    free(a.host);
    free(a.unix_path);
    free(a.user);
    free(a.password);
    int64_t ms;
    sb_iso8601_parse(s, &ms);
    sb_job_id_valid(s);
    sb_agent_id_valid(s);
    sb_public_key_valid(s);
    sb_route_match_t m;
    const char *api = sb_route_api_path(s);
    sb_route_match(routes, sizeof routes / sizeof routes[0], SB_HTTP_GET, api ? api : s, &m);
    fuzz_cluster((const char *)data, size, s);
    free(s);
    return 0;
}
