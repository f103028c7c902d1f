/* `switchboard token`: mints a development JWT (HS256 with JWT_SECRET) for the gateway, with
 * the claims given as flags, and prints it on stdout. */
#include <stdio.h>
#include <stdlib.h>
#include "cli/cli.h"
#include "switchboard/clock.h"
#include "switchboard/jwt.h"

int sb_cmd_token(sb_config_t *cfg) {
    char err[256];
    int64_t now = sb_now_ms() / 1000;
    sb_claims_t c = {
        .sub = cfg->sub ? cfg->sub : cfg->public_key,
        .public_key = cfg->public_key,
        .role = sb_role_parse(cfg->role),
        .name = cfg->name,
        .email = cfg->email,
        .department_id = cfg->department_id,
        .department = cfg->department,
        .exp = now + cfg->ttl,
    };
    if (c.role == SB_ROLE_NONE) {
        fprintf(stderr, "switchboard token: bad setting --role='%s': expected user, agent or "
                        "admin\n", cfg->role ? cfg->role : "");
        return SB_EXIT_USAGE;
    }
    if (!cfg->public_key && c.role != SB_ROLE_AGENT) {
        fprintf(stderr, "switchboard token: --public-key is required for role %s\n", cfg->role);
        return SB_EXIT_USAGE;
    }
    char *token = sb_jwt_mint(&c, cfg->jwt_secret, now, err, sizeof err);
    if (!token) {
        fprintf(stderr, "switchboard token: %s\n", err);
        return SB_EXIT_USAGE;
    }
    printf("%s\n", token);
    free(token);
    return SB_EXIT_OK;
}
