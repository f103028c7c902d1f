/* The version of this build of Switchboard. */
#ifndef SB_VERSION_H
#define SB_VERSION_H

#include "switchboard/prom.h"

/* The release this build comes from: the nearest git tag vX.Y.Z without its "v" ("0.2.0", or
 * "0.2.0-3-gabc1234" three commits after it, "-dirty" with uncommitted changes), or SB_VERSION
 * (project() VERSION in CMakeLists.txt) when built without git or tags. A static string:
 * never NULL, never freed. */
const char *sb_version(void);

/* Appends the family switchboard_build_info (gauge) with the one sample
 * switchboard_build_info{version="<sb_version()>",instance_id="<sb_log_instance()>",
 * commit="<12 hex digits>"} 1 (no commit label when built without git), what the gateway's and the agent's
 * /metrics show so that a dashboard can tell which release runs where. */
void sb_version_prom(sb_prom_t *p);

#endif
