/* The dashboard's static files (SPEC §8), read once at start-up and served from memory.
 *
 * sb_static_load() reads the top level of WEB_DIR (files with a known extension, a safe name
 * and a size under the cap) plus the vendored socket.io client
 * (WEB_DIR/node_modules/socket.io-client/dist/socket.io.min.js), and gives each a URL path:
 * "/web/{name}", "/" for index.html, "/vendor/socket.io.min.js" for the client. Serving is an
 * exact lookup of the request path in that set, so no request can name a file that was not
 * loaded (no directory traversal by construction); paths with "..", '%', '\\' or a NUL are
 * refused before the lookup anyway. Nothing is ever served under /socket.io/ (the Engine.IO
 * endpoint). Each file has a strong ETag (content hash); answers carry
 * `cache-control: no-cache` so browsers revalidate and get 304 while the file is unchanged.
 * The set is immutable after loading: changing a file needs a gateway restart. */
#ifndef SB_GATEWAY_STATIC_H
#define SB_GATEWAY_STATIC_H

#include <stddef.h>

#define SB_STATIC_FILE_MAX (2u << 20)   /* bigger files are skipped (logged) */
#define SB_STATIC_TOTAL_MAX (16u << 20) /* stop loading beyond this */
#define SB_STATIC_FILES_MAX 64
#define SB_STATIC_VENDOR_SIO "node_modules/socket.io-client/dist/socket.io.min.js"

typedef struct {
    char url[96];              /* "/web/app.js", "/" ... */
    const char *content_type;  /* static string */
    char *data;                /* file bytes (owned) */
    size_t len;
    char etag[40];             /* quoted: "\"<hash>-<len>\"" */
} sb_static_file_t;

typedef struct sb_static sb_static_t;

/* Loads the files of dir (see above). Returns a set (possibly empty, e.g. when dir does not
 * exist: each problem is logged as a warning) or NULL when out of memory. Caller frees. */
sb_static_t *sb_static_load(const char *dir);
void sb_static_free(sb_static_t *s); /* NULL is fine */

/* The file served at URL path, or NULL (unknown, or a path that is refused). */
const sb_static_file_t *sb_static_find(const sb_static_t *s, const char *path);
/* Number of files loaded; 1 when index.html ("/") is among them (has_index). */
size_t sb_static_count(const sb_static_t *s);
int sb_static_has_index(const sb_static_t *s);

/* 1 if path may be looked up: starts with '/', at most 95 bytes, no "..", '%', '\\', "//". */
int sb_static_path_ok(const char *path);

/* The default WEB_DIR: the first of <exe dir>/../web (build tree: build/switchboard),
 * <exe dir>/../share/switchboard/web (installed), <exe dir>/../../web and the compiled-in
 * SB_WEB_DIR (<prefix>/share/switchboard/web: a binary copied elsewhere) that has an
 * index.html, else the first.
 * Writes it into buf; returns buf, or NULL when /proc/self/exe cannot be read. */
char *sb_static_default_dir(char *buf, size_t len);

#endif
