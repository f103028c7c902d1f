/* process_* and build_info for /metrics (see include/switchboard/prom_runtime.h).
 *
 * Sources, as the Prometheus process collector reads them on Linux: /proc/self/statm (pages:
 * size, resident), getrusage (user + system CPU), /proc/self/fd (one entry per open
 * descriptor, the one opendir holds not counted), RLIMIT_NOFILE (soft limit), and the start
 * time = boot time (btime of /proc/stat) + field 22 of /proc/self/stat (clock ticks after
 * boot). */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include "switchboard/prom_runtime.h"
#include "switchboard/version.h"

/* Memory: statm's first two fields are the virtual and resident sizes in pages. */
static void sb_prom_memory(sb_prom_t *p) {
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long size = 0, resident = 0;
    int ok = f && fscanf(f, "%llu %llu", &size, &resident) == 2;
    if (f) fclose(f);
    if (!ok) return;
    double page = (double)sysconf(_SC_PAGESIZE);
    sb_prom_single(p, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
                   (double)resident * page);
    sb_prom_single(p, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.",
                   (double)size * page);
}

static void sb_prom_cpu(sb_prom_t *p) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return;
    double s = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
               (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    sb_prom_single(p, "process_cpu_seconds_total", "counter",
                   "Total user and system CPU time spent in seconds.", s);
}

static void sb_prom_fds(sb_prom_t *p) {
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        long n = 0;
        for (struct dirent *e; (e = readdir(d));)
            if (e->d_name[0] != '.') n++;
        closedir(d);
        sb_prom_single(p, "process_open_fds", "gauge", "Number of open file descriptors.",
                       (double)(n > 0 ? n - 1 : 0)); /* minus the directory's own */
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        sb_prom_single(p, "process_max_fds", "gauge",
                       "Maximum number of open file descriptors.",
                       rl.rlim_cur == RLIM_INFINITY ? -1.0 : (double)rl.rlim_cur);
}

/* The boot time (btime of /proc/stat), or -1. */
static double sb_prom_boot_time(void) {
    FILE *f = fopen("/proc/stat", "r");
    char line[256];
    double bt = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "btime ", 6)) {
            bt = strtod(line + 6, NULL);
            break;
        }
    if (f) fclose(f);
    return bt;
}

/* Field 22 of /proc/self/stat (starttime, in clock ticks after boot), or -1. The second field
 * (the command name) may hold spaces and parentheses: fields are counted after its last ')'. */
static double sb_prom_start_ticks(void) {
    FILE *f = fopen("/proc/self/stat", "r");
    char buf[1024];
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f) fclose(f);
    buf[n] = '\0';
    char *s = strrchr(buf, ')');
    if (!s) return -1;
    int field = 2;
    char *save = NULL;
    for (char *tok = strtok_r(s + 1, " ", &save); tok; tok = strtok_r(NULL, " ", &save))
        if (++field == 22) return strtod(tok, NULL);
    return -1;
}

static void sb_prom_start_time(sb_prom_t *p) {
    double bt = sb_prom_boot_time(), ticks = sb_prom_start_ticks();
    long hz = sysconf(_SC_CLK_TCK);
    if (bt < 0 || ticks < 0 || hz <= 0) return;
    sb_prom_single(p, "process_start_time_seconds", "gauge",
                   "Start time of the process since unix epoch in seconds.",
                   bt + ticks / (double)hz);
}

void sb_prom_runtime(sb_prom_t *p) {
    sb_prom_memory(p);
    sb_prom_cpu(p);
    sb_prom_fds(p);
    sb_prom_start_time(p);
    sb_version_prom(p);
}
