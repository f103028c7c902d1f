/* JSON text writer (jsonw.h): appends to a fixed or a growing buffer with sticky errors.
 *
 * Byte compatibility with cJSON_PrintUnformatted (cJSON 1.7.15, Debian 12) is the point of
 * the details below: strings are escaped as print_string_ptr does, and numbers are printed as
 * print_number does ("%1.15g", or "%1.17g" when that does not round-trip). Whole numbers of
 * fewer than 16 digits, which "%1.15g" prints as plain digits, take a digit loop instead of
 * printf and sscanf; every other number is handed to cJSON itself. */
#include "switchboard/jsonw.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "switchboard/fmt.h"


#define SB_JW_FIRST_CAP 256

void sb_jw_init_fixed(sb_jw_t *w, char *buf, size_t cap) {
    *w = (sb_jw_t){.buf = buf, .cap = cap, .failed = cap == 0};
}

void sb_jw_init(sb_jw_t *w) { *w = (sb_jw_t){.grows = 1}; }

void sb_jw_close(sb_jw_t *w) {
    if (w->grows) free(w->buf);
    *w = (sb_jw_t){.grows = w->grows};
}

/* Makes room for n more bytes and the NUL. Returns 0 when there is room. */
static int sb_jw_room(sb_jw_t *w, size_t n) {
    if (w->failed) return -1;
    if (w->cap - w->len > n) return 0;
    size_t cap = w->cap ? w->cap : SB_JW_FIRST_CAP;
    while (w->grows && cap - w->len <= n && cap < SIZE_MAX / 2) cap *= 2;
    char *buf = w->grows && cap - w->len > n ? realloc(w->buf, cap) : NULL;
    if (!buf) {
        w->failed = 1;
        return -1;
    }
    w->buf = buf;
    w->cap = cap;
    return 0;
}

void sb_jw_raw(sb_jw_t *w, const char *s, size_t n) {
    if (sb_jw_room(w, n) != 0) return;
    memcpy(w->buf + w->len, s, n);
    w->len += n;
}

/* The escape of one byte that needs one: the two-character forms for " \ \b \f \n \r \t,
 * \u00xx for the other control characters. Returns its length. */
static size_t sb_jw_escape(unsigned char c, char esc[6]) {
    static const char hex[] = "0123456789abcdef";
    esc[0] = '\\';
    switch (c) {
    case '"': esc[1] = '"'; return 2;
    case '\\': esc[1] = '\\'; return 2;
    case '\b': esc[1] = 'b'; return 2;
    case '\f': esc[1] = 'f'; return 2;
    case '\n': esc[1] = 'n'; return 2;
    case '\r': esc[1] = 'r'; return 2;
    case '\t': esc[1] = 't'; return 2;
    default: break;
    }
    memcpy(esc + 1, "u00", 3);
    esc[4] = hex[c >> 4];
    esc[5] = hex[c & 15];
    return 6;
}

void sb_jw_str(sb_jw_t *w, const char *s) {
    sb_jw_lit(w, "\"");
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p && !w->failed; p++) {
        const char *run = (const char *)p; /* bytes that need no escape, copied at once */
        while (*p >= 0x20 && *p != '"' && *p != '\\') p++;
        sb_jw_raw(w, run, (size_t)((const char *)p - run));
        if (!*p) break;
        char esc[6];
        sb_jw_raw(w, esc, sb_jw_escape(*p, esc));
    }
    sb_jw_lit(w, "\"");
}

void sb_jw_int(sb_jw_t *w, long long v) {
    char digits[SB_FMT_INT_LEN];
    sb_jw_raw(w, digits, sb_fmt_ll(digits, v));
}

/* A number as cJSON prints it. */
static void sb_jw_number(sb_jw_t *w, const cJSON *v) {
    double d = v->valuedouble;
    if (isfinite(d) && d == floor(d) && fabs(d) < 1e15 && !(d == 0 && signbit(d))) {
        sb_jw_int(w, (long long)d);
        return;
    }
    char text[64];
    if (!cJSON_PrintPreallocated((cJSON *)v, text, (int)sizeof text, 0)) {
        w->failed = 1;
        return;
    }
    sb_jw_raw(w, text, strlen(text));
}

static void sb_jw_value_at(sb_jw_t *w, const cJSON *v, int depth);

/* The children of an object or array between open and close ("{}" / "[]"). */
static void sb_jw_children(sb_jw_t *w, const cJSON *v, int depth, int object) {
    if (depth >= SB_JW_MAX_DEPTH) {
        w->failed = 1;
        return;
    }
    sb_jw_raw(w, object ? "{" : "[", 1);
    for (const cJSON *c = v->child; c && !w->failed; c = c->next) {
        if (c != v->child) sb_jw_lit(w, ",");
        if (object) {
            sb_jw_str(w, c->string);
            sb_jw_lit(w, ":");
        }
        sb_jw_value_at(w, c, depth + 1);
    }
    sb_jw_raw(w, object ? "}" : "]", 1);
}

static void sb_jw_value_at(sb_jw_t *w, const cJSON *v, int depth) {
    switch (v ? v->type & 0xFF : cJSON_NULL) {
    case cJSON_NULL: sb_jw_lit(w, "null"); break;
    case cJSON_False: sb_jw_lit(w, "false"); break;
    case cJSON_True: sb_jw_lit(w, "true"); break;
    case cJSON_Number: sb_jw_number(w, v); break;
    case cJSON_String: sb_jw_str(w, v->valuestring); break;
    case cJSON_Raw:
        if (v->valuestring) sb_jw_raw(w, v->valuestring, strlen(v->valuestring));
        else w->failed = 1;
        break;
    case cJSON_Array: sb_jw_children(w, v, depth, 0); break;
    case cJSON_Object: sb_jw_children(w, v, depth, 1); break;
    default: w->failed = 1; break; /* cJSON_Invalid: cJSON refuses to print it too */
    }
}

void sb_jw_value(sb_jw_t *w, const cJSON *v) { sb_jw_value_at(w, v, 0); }

const char *sb_jw_finish(sb_jw_t *w, size_t *len) {
    if (sb_jw_room(w, 0) != 0) return NULL;
    w->buf[w->len] = '\0';
    if (len) *len = w->len;
    return w->buf;
}

char *sb_jw_take(sb_jw_t *w, size_t *len) {
    char *text = sb_jw_finish(w, len) ? w->buf : NULL;
    if (text) *w = (sb_jw_t){.grows = w->grows};
    else sb_jw_close(w);
    return text;
}
