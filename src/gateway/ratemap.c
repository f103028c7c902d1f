/* Keyed token buckets (ratemap.h).
 *
 * A chained hash table (FNV-1a, a power-of-two bucket count about a quarter of max_keys). An
 * entry stores the tokens left and when they were counted; the refill is computed on access.
 * sweep is the next chain the incremental clean-up looks at. */
#include <stdlib.h>
#include <string.h>
#include "gateway/ratemap.h"

#define SB_RATEMAP_DEFAULT_KEYS 65536
#define SB_RATEMAP_SWEEP 2 /* chains cleaned per take */

typedef struct sb_rate_entry {
    struct sb_rate_entry *next;
    double tokens;  /* may be below zero: a debt */
    int64_t at_ms;  /* when tokens was counted */
    char key[];
} sb_rate_entry_t;

struct sb_ratemap {
    double burst;
    double per_ms;       /* refill rate */
    size_t max_keys, nkeys, nbuckets, sweep;
    unsigned long long overflows;
    sb_rate_entry_t **buckets;
};

sb_ratemap_t *sb_ratemap_create(double burst, int64_t period_ms, size_t max_keys) {
    if (period_ms <= 0) return NULL;
    sb_ratemap_t *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->burst = burst;
    m->per_ms = burst / (double)period_ms;
    m->max_keys = max_keys ? max_keys : SB_RATEMAP_DEFAULT_KEYS;
    m->nbuckets = 64;
    while (m->nbuckets < m->max_keys / 4) m->nbuckets *= 2;
    m->buckets = burst > 0 ? calloc(m->nbuckets, sizeof *m->buckets) : NULL;
    if (burst > 0 && !m->buckets) {
        free(m);
        return NULL;
    }
    return m;
}

void sb_ratemap_free(sb_ratemap_t *m) {
    if (!m) return;
    for (size_t i = 0; m->buckets && i < m->nbuckets; i++)
        for (sb_rate_entry_t *e = m->buckets[i], *next; e; e = next) {
            next = e->next;
            free(e);
        }
    free(m->buckets);
    free(m);
}

static size_t sb_ratemap_hash(const char *key, size_t len) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)key[i]) * 1099511628211ULL;
    return (size_t)h;
}

/* Brings e's tokens up to now_ms (capped at burst). */
static void sb_ratemap_refill(const sb_ratemap_t *m, sb_rate_entry_t *e, int64_t now_ms) {
    if (now_ms > e->at_ms) {
        e->tokens += (double)(now_ms - e->at_ms) * m->per_ms;
        if (e->tokens > m->burst) e->tokens = m->burst;
        e->at_ms = now_ms;
    }
}

/* Frees the entries of the next SB_RATEMAP_SWEEP chains whose bucket is full again. */
static void sb_ratemap_sweep(sb_ratemap_t *m, int64_t now_ms) {
    for (int n = 0; n < SB_RATEMAP_SWEEP; n++) {
        sb_rate_entry_t **pp = &m->buckets[m->sweep];
        m->sweep = (m->sweep + 1) & (m->nbuckets - 1);
        while (*pp) {
            sb_rate_entry_t *e = *pp;
            sb_ratemap_refill(m, e, now_ms);
            if (e->tokens < m->burst) {
                pp = &e->next;
                continue;
            }
            *pp = e->next;
            free(e);
            m->nkeys--;
        }
    }
}

/* key's entry, created with a full bucket when absent; NULL when the map is full or on ENOMEM. */
static sb_rate_entry_t *sb_ratemap_entry(sb_ratemap_t *m, const char *key, int64_t now_ms) {
    size_t len = strnlen(key, SB_RATEMAP_KEY_MAX);
    sb_rate_entry_t **head = &m->buckets[sb_ratemap_hash(key, len) & (m->nbuckets - 1)];
    for (sb_rate_entry_t *e = *head; e; e = e->next)
        if (!strncmp(e->key, key, len) && e->key[len] == '\0') return e;
    sb_rate_entry_t *e = m->nkeys < m->max_keys ? malloc(sizeof *e + len + 1) : NULL;
    if (!e) return NULL;
    memcpy(e->key, key, len);
    e->key[len] = '\0';
    e->tokens = m->burst;
    e->at_ms = now_ms;
    e->next = *head;
    *head = e;
    m->nkeys++;
    return e;
}

int sb_ratemap_take(sb_ratemap_t *m, const char *key, double cost, int64_t now_ms) {
    if (!m->buckets) return 1;
    sb_ratemap_sweep(m, now_ms);
    sb_rate_entry_t *e = sb_ratemap_entry(m, key, now_ms);
    if (!e) {
        m->overflows++;
        return 1;
    }
    sb_ratemap_refill(m, e, now_ms);
    if (e->tokens <= 0 || e->tokens < (cost < m->burst ? cost : m->burst)) return 0;
    e->tokens -= cost;
    return 1;
}

void sb_ratemap_charge(sb_ratemap_t *m, const char *key, double cost, int64_t now_ms) {
    if (!m->buckets) return;
    sb_rate_entry_t *e = sb_ratemap_entry(m, key, now_ms);
    if (!e) return;
    sb_ratemap_refill(m, e, now_ms);
    e->tokens -= cost;
    if (e->tokens < -m->burst) e->tokens = -m->burst; /* a debt of one period at most */
}

size_t sb_ratemap_keys(const sb_ratemap_t *m) { return m->nkeys; }
unsigned long long sb_ratemap_overflows(const sb_ratemap_t *m) { return m->overflows; }
