/* libFuzzer target for configuration text: Redis URLs, ISO 8601 times, job/agent ids, and
 * HTTP route matching with the API prefixes. All are fed untrusted text (environment, flags,
 * request paths) and must only ever accept or refuse. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "switchboard/clock.h"
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
    free(s);
    return 0;
}
