/* The dashboard's static files: loading, lookup, ETags (see static.h).
 *
 * Loading reads each candidate with open(O_NOFOLLOW) + fstat, so a symlink or a non-regular
 * file in WEB_DIR is skipped rather than followed, and a file is read whole up to its fstat
 * size (a file that grows meanwhile is cut there, never overflows). Names must be
 * [A-Za-z0-9._-] without a leading dot. The ETag is FNV-1a 64 of the bytes plus the length. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "gateway/static.h"
#include "switchboard/log.h"

struct sb_static {
    sb_static_file_t files[SB_STATIC_FILES_MAX];
    size_t n;
    size_t total; /* bytes loaded */
};

static const struct {
    const char *ext;
    const char *type;
} sb_static_types[] = {
    {".html", "text/html; charset=utf-8"},      {".js", "text/javascript; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},        {".svg", "image/svg+xml"},
    {".png", "image/png"},                      {".ico", "image/x-icon"},
    {".txt", "text/plain; charset=utf-8"},
};

/* The content type for name's extension, or NULL when the extension is not served. */
static const char *sb_static_type(const char *name) {
    const char *dot = strrchr(name, '.');
    if (!dot) return NULL;
    for (size_t i = 0; i < sizeof sb_static_types / sizeof sb_static_types[0]; i++)
        if (!strcmp(dot, sb_static_types[i].ext)) return sb_static_types[i].type;
    return NULL;
}

static int sb_static_name_ok(const char *name) {
    if (!*name || *name == '.' || strlen(name) > 64) return 0;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '.' || *p == '_' || *p == '-'))
            return 0;
    return 1;
}

int sb_static_path_ok(const char *path) {
    size_t len = strlen(path);
    return path[0] == '/' && len < sizeof(((sb_static_file_t *)0)->url) && !strstr(path, "..") &&
           !strchr(path, '%') && !strchr(path, '\\') && !strstr(path, "//");
}

static void sb_static_etag(sb_static_file_t *f) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < f->len; i++) {
        h ^= (unsigned char)f->data[i];
        h *= 1099511628211ULL;
    }
    snprintf(f->etag, sizeof f->etag, "\"%016llx-%zx\"", (unsigned long long)h, f->len);
}

/* Reads a regular file (not through a symlink) of at most SB_STATIC_FILE_MAX bytes into a
 * malloc'd buffer. Returns 0, or -1 with a reason in why. */
static int sb_static_read(const char *path, char **data, size_t *len, const char **why) {
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    *data = NULL;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        *why = fd < 0 ? strerror(errno) : "not a regular file";
        if (fd >= 0) close(fd);
        return -1;
    }
    if ((size_t)st.st_size > SB_STATIC_FILE_MAX) {
        *why = "larger than the 2 MiB cap";
        close(fd);
        return -1;
    }
    size_t want = (size_t)st.st_size, got = 0;
    *data = malloc(want ? want : 1);
    while (*data && got < want) {
        ssize_t n = read(fd, *data + got, want - got);
        if (n <= 0) break;
        got += (size_t)n;
    }
    close(fd);
    if (!*data) {
        *why = "out of memory";
        return -1;
    }
    *len = got;
    return 0;
}

/* Loads file path under URL url. Returns 0 (loaded or skipped with a warning), -1 on ENOMEM. */
static int sb_static_add(sb_static_t *s, const char *path, const char *url, const char *type) {
    const char *why = NULL;
    char *data = NULL;
    size_t len = 0;
    if (s->n == SB_STATIC_FILES_MAX) why = "too many files";
    else if (sb_static_read(path, &data, &len, &why) == 0 && s->total + len > SB_STATIC_TOTAL_MAX) {
        free(data);
        why = "over the total size cap";
    }
    if (why) {
        sb_warn("gateway", "dashboard: skipping %s: %s", path, why);
        return strcmp(why, "out of memory") ? 0 : -1;
    }
    sb_static_file_t *f = &s->files[s->n++];
    snprintf(f->url, sizeof f->url, "%s", url);
    f->content_type = type;
    f->data = data;
    f->len = len;
    s->total += len;
    sb_static_etag(f);
    return 0;
}

static int sb_static_scan(sb_static_t *s, const char *dir) {
    DIR *d = opendir(dir);
    if (!d) {
        sb_warn("gateway", "dashboard: cannot open WEB_DIR %s: %s (the page will answer 404)",
                dir, strerror(errno));
        return 0;
    }
    int rc = 0;
    for (struct dirent *e; rc == 0 && (e = readdir(d));) {
        const char *type = sb_static_type(e->d_name);
        char path[PATH_MAX], url[96];
        if (!type || !sb_static_name_ok(e->d_name)) continue;
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path) continue;
        if (snprintf(url, sizeof url, "/web/%.64s", e->d_name) >= (int)sizeof url) continue;
        rc = sb_static_add(s, path, url, type);
        if (rc == 0 && !strcmp(e->d_name, "index.html"))
            rc = sb_static_add(s, path, "/", type);
    }
    closedir(d);
    return rc;
}

sb_static_t *sb_static_load(const char *dir) {
    sb_static_t *s = calloc(1, sizeof *s);
    char path[PATH_MAX];
    if (!s) return NULL;
    int rc = sb_static_scan(s, dir);
    if (rc == 0 && snprintf(path, sizeof path, "%s/%s", dir, SB_STATIC_VENDOR_SIO) < (int)sizeof path) {
        if (access(path, R_OK) == 0)
            rc = sb_static_add(s, path, "/vendor/socket.io.min.js", sb_static_type(path));
        else
            sb_warn("gateway", "dashboard: %s missing (run npm ci in web/): no live updates",
                    path);
    }
    if (rc != 0) {
        sb_static_free(s);
        return NULL;
    }
    return s;
}

void sb_static_free(sb_static_t *s) {
    if (!s) return;
    for (size_t i = 0; i < s->n; i++) free(s->files[i].data);
    free(s);
}

const sb_static_file_t *sb_static_find(const sb_static_t *s, const char *path) {
    if (!s || !sb_static_path_ok(path)) return NULL;
    for (size_t i = 0; i < s->n; i++)
        if (!strcmp(s->files[i].url, path)) return &s->files[i];
    return NULL;
}

size_t sb_static_count(const sb_static_t *s) { return s ? s->n : 0; }

int sb_static_has_index(const sb_static_t *s) { return sb_static_find(s, "/") != NULL; }

#ifndef SB_WEB_DIR
#define SB_WEB_DIR "/usr/share/switchboard/web"
#endif

char *sb_static_default_dir(char *buf, size_t len) {
    static const char *const rel[] = {"/../web", "/../share/switchboard/web", "/../../web"};
    const size_t nrel = sizeof rel / sizeof rel[0];
    char exe[PATH_MAX], probe[PATH_MAX + 64];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return NULL;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash) *slash = '\0';
    size_t pick = 0; /* none has an index.html: report the first */
    for (size_t i = 0; i < nrel; i++) {
        snprintf(probe, sizeof probe, "%s%s/index.html", exe, rel[i]);
        if (access(probe, R_OK) == 0) {
            pick = i;
            break;
        }
        if (i + 1 == nrel && access(SB_WEB_DIR "/index.html", R_OK) == 0) {
            snprintf(buf, len, "%s", SB_WEB_DIR); /* installed, binary elsewhere */
            return buf;
        }
    }
    snprintf(probe, sizeof probe, "%s%s", exe, rel[pick]);
    char real[PATH_MAX];
    snprintf(buf, len, "%s", realpath(probe, real) ? real : probe);
    return buf;
}
