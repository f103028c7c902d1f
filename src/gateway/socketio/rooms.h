/* Room membership for Socket.IO fan-out: `user:{publicKey}`, `admins`, any named room.
 *
 * A room is a dense array of (member id, member) entries, found by name in a hash table, so
 * emitting to a room is one sequential walk. Each member (caller-allocated, embedded in the
 * socket's state) keeps the list of (room, position) it is in, so leaving is a swap-remove:
 * O(1) in the room plus a scan of the few rooms of the member whose entry moved. Rooms are
 * created on first join and freed when they empty. Pure data structure: member ids are opaque
 * 64-bit values (sio.c uses Engine.IO session handles). Single-threaded.
 *
 * Memory: 16 bytes per membership in the room + 16 in the member, a member struct of 24 bytes,
 * and per room 48 bytes + its name, which hold its first membership (a one-member room has
 * no separate array). */
#ifndef SB_GATEWAY_ROOMS_H
#define SB_GATEWAY_ROOMS_H

#include <stddef.h>
#include <stdint.h>

#define SB_ROOMS_NAME_MAX 256 /* longest room name accepted (bytes, without NUL) */

typedef struct sb_rooms sb_rooms_t;
struct sb_room;

/* One of a member's rooms and its position in that room's array. */
typedef struct sb_rooms_slot {
    struct sb_room *room;
    uint32_t pos;
} sb_rooms_slot_t;

/* A member: embed it in the owner's struct, zero it (or sb_rooms_member_init) before the
 * first join, and sb_rooms_leave_all() it before freeing the owner. */
typedef struct sb_rooms_member {
    uint64_t id;         /* handed to the fan-out callback */
    sb_rooms_slot_t *in; /* rooms joined (owned here, freed by leave_all) */
    uint32_t n, cap;
} sb_rooms_member_t;

/* Returns an empty set of rooms, or NULL on allocation failure. */
sb_rooms_t *sb_rooms_create(void);
/* Frees the rooms; members still in rooms keep dangling slot arrays, so leave_all every
 * member first. Accepts NULL. */
void sb_rooms_free(sb_rooms_t *r);

void sb_rooms_member_init(sb_rooms_member_t *m, uint64_t id);

/* Adds m to room. Returns 0 (also when already in it), SB_EINVAL for an empty name or one
 * longer than SB_ROOMS_NAME_MAX, or SB_ENOMEM (nothing changed). */
int sb_rooms_join(sb_rooms_t *r, sb_rooms_member_t *m, const char *room);
/* Removes m from room. Returns 0 or SB_ENOTFOUND when it was not in it. */
int sb_rooms_leave(sb_rooms_t *r, sb_rooms_member_t *m, const char *room);
/* Removes m from every room and frees its slot array; m can join again afterwards. */
void sb_rooms_leave_all(sb_rooms_t *r, sb_rooms_member_t *m);

/* 1 when m is in room, else 0. */
int sb_rooms_has(const sb_rooms_t *r, const sb_rooms_member_t *m, const char *room);
/* Members in room (0 when it does not exist); number of non-empty rooms. */
uint32_t sb_rooms_size(const sb_rooms_t *r, const char *room);
uint32_t sb_rooms_count(const sb_rooms_t *r);

/* Calls fn(ud, id) for every member of room; returns how many. fn must not join or leave
 * that room (sio.c defers closes, see sb_eio_batch_begin). */
uint32_t sb_rooms_each(const sb_rooms_t *r, const char *room,
                       void (*fn)(void *ud, uint64_t id), void *ud);
/* Calls fn(ud, name) for every non-empty room whose name starts with prefix ("" for all), in
 * no particular order; returns how many. One walk of the table: O(rooms). fn must not join or
 * leave any room (name is valid only during the call). */
uint32_t sb_rooms_each_name(const sb_rooms_t *r, const char *prefix,
                            void (*fn)(void *ud, const char *name), void *ud);

#endif
