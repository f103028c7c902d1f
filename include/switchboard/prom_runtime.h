/* The families every Switchboard process shows on its /metrics beside its own: the standard
 * Prometheus process metrics and the build.
 *
 * process_resident_memory_bytes, process_virtual_memory_bytes, process_cpu_seconds_total,
 * process_open_fds, process_max_fds, process_start_time_seconds — the names and meanings of
 * the official clients' process collector, read from /proc/self on each call (a few small
 * reads; a file that cannot be read leaves its family out) — and switchboard_build_info
 * {version, commit} 1 (version.h). Safe to call from any thread. */
#ifndef SB_PROM_RUNTIME_H
#define SB_PROM_RUNTIME_H

#include "switchboard/prom.h"

/* Appends the process families, then switchboard_build_info. */
void sb_prom_runtime(sb_prom_t *p);

#endif
