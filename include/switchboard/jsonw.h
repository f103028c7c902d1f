/* JSON text writer: appends JSON text straight to a buffer, for the documents written on every
 * request or status message (job records, gateway events, audit data, status payloads),
 * where building a cJSON tree only to print and free it was most of their cost.
 *
 * Its output is what cJSON_PrintUnformatted prints for the same values (strings escaped the
 * same way, numbers in the same notation), except for numbers cJSON prints inexactly: every
 * number is written so that it reads back as exactly the same double (the fewest of 15-17
 * significant digits that do, as JavaScript does; see jsonw.c), where cJSON keeps 15 digits
 * that read back only approximately (0.30000000000000004 as 0.3, 1.7976931348623157e308 as
 * 1.79769313486232e+308, which is infinity). tests/unit/test_core.c and the records fuzzer
 * check both: cJSON's bytes where cJSON is exact, the exact value everywhere.
 *
 * Errors are sticky: an append that does not fit (fixed buffer) or cannot allocate (growing
 * buffer) marks the writer failed and every later append is a no-op, so a caller checks once,
 * at sb_jw_finish / sb_jw_take. Separators are the caller's: it writes `{"name":` and `,` with
 * sb_jw_lit, which keeps the document's shape readable at the call site. */
#ifndef SB_JSONW_H
#define SB_JSONW_H

#include <stddef.h>
#include <cjson/cJSON.h>

/* Nesting the writer follows before it gives up (it recurses): well above what it is given —
 * documents parsed with at most SB_JSON_MAX_DEPTH levels, wrapped in a few levels of ours. */
#define SB_JW_MAX_DEPTH 256

typedef struct {
    char *buf;
    size_t len, cap; /* bytes written; size of buf (one byte is always kept for the NUL) */
    int grows;       /* buf is the writer's own heap buffer, grown on demand */
    int failed;      /* an append did not fit or could not allocate: the text is unusable */
} sb_jw_t;

/* Writes into the caller's buf of cap bytes; never allocates. */
void sb_jw_init_fixed(sb_jw_t *w, char *buf, size_t cap);
/* Writes into a heap buffer the writer owns (first allocation on the first append). Hand it
 * over with sb_jw_take, or release it with sb_jw_close. */
void sb_jw_init(sb_jw_t *w);
/* Frees a growing writer's buffer (not a fixed one's); the writer is empty afterwards. */
void sb_jw_close(sb_jw_t *w);

void sb_jw_raw(sb_jw_t *w, const char *s, size_t n); /* n bytes as they are */
#define sb_jw_lit(w, s) sb_jw_raw((w), "" s, sizeof(s) - 1) /* a string literal as it is */
void sb_jw_str(sb_jw_t *w, const char *s);           /* s as a JSON string literal */
/* A literal (separators and the quoted member name, e.g. ",\"type\":"), then s as a string. */
#define sb_jw_member(w, lit, s) (sb_jw_lit((w), lit), sb_jw_str((w), (s)))
void sb_jw_int(sb_jw_t *w, long long v);             /* a whole number */
/* Any cJSON value (objects and arrays recursively, at most SB_JW_MAX_DEPTH deep: deeper marks
 * the writer failed). NULL writes null. */
void sb_jw_value(sb_jw_t *w, const cJSON *v);

/* NUL-terminates and returns the text (its length in *len when len is not NULL), or NULL when
 * the writer failed. A fixed writer's text lives in the caller's buffer; a growing writer's
 * stays the writer's until sb_jw_take or sb_jw_close. */
const char *sb_jw_finish(sb_jw_t *w, size_t *len);
/* A growing writer's text, NUL-terminated, now the caller's to free(); NULL when the writer
 * failed (its buffer is then freed). The writer is empty afterwards. */
char *sb_jw_take(sb_jw_t *w, size_t *len);

#endif
