/* Prometheus text exposition (see include/switchboard/prom.h): a growing buffer and the few
 * line shapes the format has — HELP/TYPE comments, samples with escaped labels, histograms. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "switchboard/prom.h"

void sb_prom_init(sb_prom_t *p) { memset(p, 0, sizeof *p); }

void sb_prom_close(sb_prom_t *p) {
    if (!p) return;
    free(p->buf);
    memset(p, 0, sizeof *p);
}

static int sb_prom_reserve(sb_prom_t *p, size_t more) {
    if (p->failed) return -1;
    if (p->len + more + 1 <= p->cap) return 0;
    size_t cap = p->cap ? p->cap : 1024;
    while (cap < p->len + more + 1) cap *= 2;
    char *b = realloc(p->buf, cap);
    if (!b) {
        p->failed = 1;
        return -1;
    }
    p->buf = b;
    p->cap = cap;
    return 0;
}

static void sb_prom_put(sb_prom_t *p, const char *s, size_t n) {
    if (sb_prom_reserve(p, n) != 0) return;
    memcpy(p->buf + p->len, s, n);
    p->len += n;
    p->buf[p->len] = '\0';
}

static void sb_prom_puts(sb_prom_t *p, const char *s) { sb_prom_put(p, s, strlen(s)); }

/* Appends s escaping backslash and newline, and the double quote when in_label. */
static void sb_prom_escaped(sb_prom_t *p, const char *s, int in_label) {
    for (; *s; s++) {
        if (*s == '\\') sb_prom_puts(p, "\\\\");
        else if (*s == '\n') sb_prom_puts(p, "\\n");
        else if (*s == '"' && in_label) sb_prom_puts(p, "\\\"");
        else sb_prom_put(p, s, 1);
    }
}

char *sb_prom_number(double v, char *buf, size_t len) {
    if (isnan(v)) snprintf(buf, len, "NaN");
    else if (isinf(v)) snprintf(buf, len, v > 0 ? "+Inf" : "-Inf");
    else if (v == floor(v) && fabs(v) < 1e15) snprintf(buf, len, "%.0f", v); /* 10, not 1e+01 */
    else
        for (int prec = 1; prec <= 17; prec++) { /* shortest text that reads back exactly */
            snprintf(buf, len, "%.*g", prec, v);
            if (strtod(buf, NULL) == v) break;
        }
    return buf;
}

void sb_prom_family(sb_prom_t *p, const char *name, const char *type, const char *help) {
    sb_prom_puts(p, "# HELP ");
    sb_prom_puts(p, name);
    sb_prom_puts(p, " ");
    sb_prom_escaped(p, help, 0);
    sb_prom_puts(p, "\n# TYPE ");
    sb_prom_puts(p, name);
    sb_prom_puts(p, " ");
    sb_prom_puts(p, type);
    sb_prom_puts(p, "\n");
}

/* name{l1="v1",...,extra="x"} value\n — extra (may be NULL) is the histogram's `le`. */
static void sb_prom_line(sb_prom_t *p, const char *name, const char *suffix,
                         const sb_prom_label_t *labels, size_t n, const sb_prom_label_t *extra,
                         double value) {
    char num[32];
    sb_prom_puts(p, name);
    sb_prom_puts(p, suffix);
    if (n || extra) {
        sb_prom_puts(p, "{");
        for (size_t i = 0; i < n + (extra != NULL); i++) {
            const sb_prom_label_t *l = i < n ? &labels[i] : extra;
            if (i) sb_prom_puts(p, ",");
            sb_prom_puts(p, l->name);
            sb_prom_puts(p, "=\"");
            sb_prom_escaped(p, l->value, 1);
            sb_prom_puts(p, "\"");
        }
        sb_prom_puts(p, "}");
    }
    sb_prom_puts(p, " ");
    sb_prom_puts(p, sb_prom_number(value, num, sizeof num));
    sb_prom_puts(p, "\n");
}

void sb_prom_sample(sb_prom_t *p, const char *name, const sb_prom_label_t *labels, size_t n,
                    double value) {
    sb_prom_line(p, name, "", labels, n, NULL, value);
}

void sb_prom_single(sb_prom_t *p, const char *name, const char *type, const char *help,
                    double value) {
    sb_prom_family(p, name, type, help);
    sb_prom_sample(p, name, NULL, 0, value);
}

void sb_prom_histogram(sb_prom_t *p, const char *name, const sb_prom_label_t *labels, size_t n,
                       const double *bounds, const unsigned long long *cumulative,
                       size_t nbounds, double sum, unsigned long long count) {
    char le[32];
    sb_prom_label_t extra = {"le", le};
    for (size_t i = 0; i < nbounds; i++) {
        sb_prom_number(bounds[i], le, sizeof le);
        sb_prom_line(p, name, "_bucket", labels, n, &extra, (double)cumulative[i]);
    }
    snprintf(le, sizeof le, "+Inf");
    sb_prom_line(p, name, "_bucket", labels, n, &extra, (double)count);
    sb_prom_line(p, name, "_sum", labels, n, NULL, sum);
    sb_prom_line(p, name, "_count", labels, n, NULL, (double)count);
}

const char *sb_prom_text(const sb_prom_t *p, size_t *len) {
    if (p->failed) return NULL;
    if (len) *len = p->len;
    return p->buf ? p->buf : "";
}
