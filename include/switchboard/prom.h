/* Prometheus text exposition format 0.0.4, written by hand (Debian has no C client).
 *
 * An sb_prom_t is a growing text buffer. Write each metric family with sb_prom_family()
 * (# HELP and # TYPE lines), then its samples. Label values and help text are escaped as
 * the format requires (\\, \", \n), numbers are printed in the shortest form that reads back
 * exactly, and infinities as +Inf / -Inf. An allocation failure is sticky: later calls do
 * nothing and sb_prom_text() returns NULL. */
#ifndef SB_PROM_H
#define SB_PROM_H

#include <stddef.h>

#define SB_PROM_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

typedef struct {
    char *buf;
    size_t len, cap;
    int failed; /* an allocation failed: the text is incomplete */
} sb_prom_t;

typedef struct {
    const char *name;
    const char *value;
} sb_prom_label_t;

void sb_prom_init(sb_prom_t *p);
void sb_prom_close(sb_prom_t *p); /* frees the buffer */

/* `# HELP name help` and `# TYPE name type` (counter | gauge | histogram | summary | untyped). */
void sb_prom_family(sb_prom_t *p, const char *name, const char *type, const char *help);
/* `name{labels} value`; labels may be NULL when n is 0. */
void sb_prom_sample(sb_prom_t *p, const char *name, const sb_prom_label_t *labels, size_t n,
                    double value);
/* A family with one unlabelled sample: sb_prom_family() then `name value`. */
void sb_prom_single(sb_prom_t *p, const char *name, const char *type, const char *help,
                    double value);
/* A histogram's samples: name_bucket{labels,le="b"} for each bound (cumulative counts), the
 * +Inf bucket (= count), name_sum and name_count. bounds are ascending and finite. */
void sb_prom_histogram(sb_prom_t *p, const char *name, const sb_prom_label_t *labels, size_t n,
                       const double *bounds, const unsigned long long *cumulative,
                       size_t nbounds, double sum, unsigned long long count);

/* The NUL-terminated text so far (owned by p), or NULL after an allocation failure. */
const char *sb_prom_text(const sb_prom_t *p, size_t *len);

/* Writes v in the exposition format's number syntax into buf (≥ 32 bytes). Returns buf. */
char *sb_prom_number(double v, char *buf, size_t len);

#endif
