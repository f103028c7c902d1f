/* The backoff of the gateway's retries of reads Redis refused for now (LOADING, BUSY...:
 * sb_reply_is_transient) or whose reply was lost: the wait starts at SB_BACKOFF_MIN_MS and
 * doubles with each retry up to SB_BACKOFF_MAX_MS; back to the minimum once Redis answered.
 * Used by the catch-up (catchup.c) and the sockets' replays (replay.c). A plain value, owned
 * by its user; no allocation. */
#ifndef SB_GATEWAY_BACKOFF_H
#define SB_GATEWAY_BACKOFF_H

#define SB_BACKOFF_MIN_MS 100
#define SB_BACKOFF_MAX_MS 5000

typedef struct {
    int next_ms; /* the next wait; 0 before the first */
} sb_backoff_t;

/* The wait before the next retry (milliseconds); doubles the one after, up to the cap. */
static inline int sb_backoff_next(sb_backoff_t *b) {
    int ms = b->next_ms ? b->next_ms : SB_BACKOFF_MIN_MS;
    b->next_ms = ms * 2 > SB_BACKOFF_MAX_MS ? SB_BACKOFF_MAX_MS : ms * 2;
    return ms;
}

/* Redis answered: the next wait is the minimum again. */
static inline void sb_backoff_reset(sb_backoff_t *b) { b->next_ms = 0; }

#endif
