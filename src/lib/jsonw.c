/* JSON text writer (jsonw.h): appends to a fixed or a growing buffer with sticky errors.
 *
 * Strings are escaped as cJSON_PrintUnformatted (cJSON 1.7.15, Debian 12) escapes them
 * (print_string_ptr), byte for byte. Numbers are written so that they read back exactly:
 * whole numbers below 2^63 in magnitude as plain digits (a digit loop, no printf: the exact
 * value, so a reader that has integers reads one), every other finite number with the fewest
 * of 15, 16 or 17 significant digits ("%.15g", "%.16g", "%.17g") that strtod reads back as the
 * very same double, as JavaScript's shortest round trip does; NaN and infinities as null.
 * That is cJSON's text wherever cJSON's is exact, except that cJSON writes whole numbers from
 * 1e15 in exponent form ("1e+15"). It departs where cJSON's is not: cJSON keeps its 15 digits
 * when they read back
 * merely close (within its compare_double tolerance), which changes the value stored:
 * 0.30000000000000004 became 0.3, 9007199254740993 (read as 9007199254740992) became
 * 9.00719925474099e+15, and 1.7976931348623157e308 became 1.79769313486232e+308, which reads
 * back as infinity. */
#include "switchboard/jsonw.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
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

/* d with the fewest significant digits (15 to 17) that read back as d itself. */
static void sb_jw_double(sb_jw_t *w, double d) {
    char text[32];
    int n = 0;
    for (int digits = 15; digits <= 17; digits++) {
        n = snprintf(text, sizeof text, "%.*g", digits, d);
        if (n > 0 && (size_t)n < sizeof text && strtod(text, NULL) == d) break;
    }
    if (n <= 0 || (size_t)n >= sizeof text) { /* cannot happen: 17 digits and an exponent fit */
        w->failed = 1;
        return;
    }
    sb_jw_raw(w, text, (size_t)n);
}

/* A number that reads back exactly (see the top of this file). */
static void sb_jw_number(sb_jw_t *w, const cJSON *v) {
    double d = v->valuedouble;
    if (!isfinite(d)) sb_jw_lit(w, "null"); /* as cJSON: JSON has no NaN or infinity */
    else if (d == floor(d) && fabs(d) < 0x1p63 && !(d == 0 && signbit(d)))
        sb_jw_int(w, (long long)d);
    else sb_jw_double(w, d); /* -0 too: "-0", as cJSON */
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
