/* sb_version(): the version cmake/version.cmake derived from git (see version.h). The
 * generated header lives in the build tree, so this file is the only one rebuilt when the
 * version changes. */
#include "switchboard/version.h"
#include "sb_build_version.h"
#include "switchboard/log.h"
#include "switchboard/prom.h"

const char *sb_version(void) { return SB_BUILD_VERSION; }

void sb_version_prom(sb_prom_t *p) {
    sb_prom_label_t v[3] = {{"version", SB_BUILD_VERSION}, {"instance_id", sb_log_instance()},
                            {"commit", SB_BUILD_COMMIT}};
    sb_prom_family(p, "switchboard_build_info", "gauge",
                   "Always 1; the labels are the release and commit this process runs, and the "
                   "instance id its log lines carry.");
    sb_prom_sample(p, "switchboard_build_info", v, SB_BUILD_COMMIT[0] ? 3 : 2, 1);
}
