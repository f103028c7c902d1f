/* Token buckets keyed by a string, in the gateway process: how often a user or a client
 * address may open Socket.IO connections, and how many replay bytes a user may cost
 * (socketio.c, replay.c). No Redis round trip: each gateway limits what reaches it.
 *
 * Each key has a bucket of `burst` tokens refilled at burst / period_ms per ms. A take is
 * allowed while the bucket holds its cost (at most burst) and more than zero tokens; it then
 * removes its cost. A take of 0 asks only for a positive bucket, and a cost known only
 * afterwards (the bytes a replay read) is charged in full with sb_ratemap_charge, which may
 * take the bucket below zero: a debt paid back by the refill. A refused take removes nothing.
 *
 * Memory: one entry per key whose bucket is not full, in a chained hash table. A full bucket
 * is the same as no entry, so each take also sweeps two chains and frees the entries that have
 * refilled: keys seen once do not pile up. At most max_keys entries live; a new key beyond that
 * is allowed without an entry (failing open: a flood of distinct keys must not lock out the
 * users who are well behaved) and counted in sb_ratemap_overflows. Single-threaded. */
#ifndef SB_GATEWAY_RATEMAP_H
#define SB_GATEWAY_RATEMAP_H

#include <stddef.h>
#include <stdint.h>

#define SB_RATEMAP_KEY_MAX 256 /* longer keys are cut to this many bytes */

typedef struct sb_ratemap sb_ratemap_t;

/* A map whose buckets hold burst tokens and refill completely in period_ms (burst <= 0 means
 * no limit: every take is allowed and nothing is stored). max_keys bounds the entries (0:
 * 65536). Returns NULL on ENOMEM or period_ms <= 0. */
sb_ratemap_t *sb_ratemap_create(double burst, int64_t period_ms, size_t max_keys);
void sb_ratemap_free(sb_ratemap_t *m); /* NULL ok */

/* Takes cost (>= 0) tokens from key's bucket at now_ms (a monotonic clock). Returns 1 when
 * allowed (the bucket held min(cost, burst) tokens and more than zero; cost removed), 0 when
 * refused (nothing changed). */
int sb_ratemap_take(sb_ratemap_t *m, const char *key, double cost, int64_t now_ms);
/* Removes cost more from key's bucket without asking (a cost learned after an allowed take);
 * no effect for an unlimited map or when the map is full. */
void sb_ratemap_charge(sb_ratemap_t *m, const char *key, double cost, int64_t now_ms);

size_t sb_ratemap_keys(const sb_ratemap_t *m);                    /* entries held */
unsigned long long sb_ratemap_overflows(const sb_ratemap_t *m);   /* takes allowed unbucketed */

#endif
