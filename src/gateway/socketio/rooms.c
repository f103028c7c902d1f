/* Room membership: a chained hash of rooms by name, each room a dense array of members, each
 * member a small array of (room, position) back-references for O(1) swap-remove. See rooms.h.
 * A room's first member is kept inside the room (most rooms are one user's one socket), so
 * emitting to such a room reads no separate array; a second member moves the array to the
 * heap. */
#include "gateway/socketio/rooms.h"

#include <stdlib.h>
#include <string.h>

#include "switchboard/error.h"

typedef struct sb_room_entry {
    uint64_t id;
    sb_rooms_member_t *member;
} sb_room_entry_t;

typedef struct sb_room {
    struct sb_room *next; /* hash chain */
    uint32_t hash;
    uint32_t n, cap;      /* members, capacity of m */
    sb_room_entry_t *m;   /* &one, or malloc'd once a second member joins */
    sb_room_entry_t one;  /* the members while there is room for only one */
    char name[];
} sb_room_t;

struct sb_rooms {
    sb_room_t **buckets;
    uint32_t nbuckets; /* power of 2 */
    uint32_t count;    /* rooms */
};

static uint32_t sb_rooms_hash(const char *s, size_t n) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

static void sb_rooms_room_free(sb_room_t *room) {
    if (room->m != &room->one) free(room->m);
    free(room);
}

sb_rooms_t *sb_rooms_create(void) {
    sb_rooms_t *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->nbuckets = 64;
    r->buckets = calloc(r->nbuckets, sizeof *r->buckets);
    if (!r->buckets) {
        free(r);
        return NULL;
    }
    return r;
}

void sb_rooms_free(sb_rooms_t *r) {
    if (!r) return;
    for (uint32_t i = 0; i < r->nbuckets; i++) {
        sb_room_t *room = r->buckets[i];
        while (room) {
            sb_room_t *next = room->next;
            sb_rooms_room_free(room);
            room = next;
        }
    }
    free(r->buckets);
    free(r);
}

void sb_rooms_member_init(sb_rooms_member_t *m, uint64_t id) {
    *m = (sb_rooms_member_t){.id = id};
}

static sb_room_t *sb_rooms_find(const sb_rooms_t *r, const char *name, size_t len,
                                uint32_t hash) {
    for (sb_room_t *room = r->buckets[hash & (r->nbuckets - 1)]; room; room = room->next)
        if (room->hash == hash && strncmp(room->name, name, len + 1) == 0) return room;
    return NULL;
}

static sb_room_t *sb_rooms_lookup(const sb_rooms_t *r, const char *name) {
    size_t len = strnlen(name, SB_ROOMS_NAME_MAX + 1);
    if (len == 0 || len > SB_ROOMS_NAME_MAX) return NULL;
    return sb_rooms_find(r, name, len, sb_rooms_hash(name, len));
}

static void sb_rooms_rehash(sb_rooms_t *r) {
    uint32_t n = r->nbuckets * 2;
    sb_room_t **b = calloc(n, sizeof *b);
    if (!b) return; /* keep the longer chains */
    for (uint32_t i = 0; i < r->nbuckets; i++) {
        sb_room_t *room = r->buckets[i];
        while (room) {
            sb_room_t *next = room->next;
            room->next = b[room->hash & (n - 1)];
            b[room->hash & (n - 1)] = room;
            room = next;
        }
    }
    free(r->buckets);
    r->buckets = b;
    r->nbuckets = n;
}

static sb_room_t *sb_rooms_add(sb_rooms_t *r, const char *name, size_t len, uint32_t hash) {
    sb_room_t *room = calloc(1, sizeof *room + len + 1);
    if (!room) return NULL;
    memcpy(room->name, name, len);
    room->hash = hash;
    room->m = &room->one;
    room->cap = 1;
    if (r->count >= r->nbuckets) sb_rooms_rehash(r);
    room->next = r->buckets[hash & (r->nbuckets - 1)];
    r->buckets[hash & (r->nbuckets - 1)] = room;
    r->count++;
    return room;
}

static void sb_rooms_drop(sb_rooms_t *r, sb_room_t *room) {
    sb_room_t **link = &r->buckets[room->hash & (r->nbuckets - 1)];
    while (*link != room) link = &(*link)->next;
    *link = room->next;
    r->count--;
    sb_rooms_room_free(room);
}

/* Makes room for one more element in an array of elem-sized items. */
static int sb_rooms_reserve(void **arr, uint32_t n, uint32_t *cap, size_t elem) {
    if (n < *cap) return SB_OK;
    uint32_t c = *cap ? *cap * 2 : 2;
    void *p = realloc(*arr, c * elem);
    if (!p) return SB_ENOMEM;
    *arr = p;
    *cap = c;
    return SB_OK;
}

/* Makes room for one more member in room (the inline entry moves to the heap). */
static int sb_rooms_room_reserve(sb_room_t *room) {
    if (room->n < room->cap) return SB_OK;
    uint32_t c = room->cap * 2;
    sb_room_entry_t *m = room->m == &room->one ? malloc(c * sizeof *m)
                                               : realloc(room->m, c * sizeof *m);
    if (!m) return SB_ENOMEM;
    if (room->m == &room->one) m[0] = room->one;
    room->m = m;
    room->cap = c;
    return SB_OK;
}

static int sb_rooms_index(const sb_rooms_member_t *m, const sb_room_t *room) {
    for (uint32_t i = 0; i < m->n; i++)
        if (m->in[i].room == room) return (int)i;
    return -1;
}

int sb_rooms_join(sb_rooms_t *r, sb_rooms_member_t *m, const char *name) {
    size_t len = strnlen(name, SB_ROOMS_NAME_MAX + 1);
    if (len == 0 || len > SB_ROOMS_NAME_MAX) return SB_EINVAL;
    uint32_t hash = sb_rooms_hash(name, len);
    sb_room_t *room = sb_rooms_find(r, name, len, hash);
    if (room && sb_rooms_index(m, room) >= 0) return SB_OK;
    if (sb_rooms_reserve((void **)&m->in, m->n, &m->cap, sizeof *m->in)) return SB_ENOMEM;
    if (!room && !(room = sb_rooms_add(r, name, len, hash))) return SB_ENOMEM;
    if (sb_rooms_room_reserve(room)) {
        if (room->n == 0) sb_rooms_drop(r, room);
        return SB_ENOMEM;
    }
    room->m[room->n] = (sb_room_entry_t){m->id, m};
    m->in[m->n++] = (sb_rooms_slot_t){room, room->n++};
    return SB_OK;
}

/* Removes the i-th room of m from both sides. */
static void sb_rooms_unlink(sb_rooms_t *r, sb_rooms_member_t *m, uint32_t i) {
    sb_room_t *room = m->in[i].room;
    uint32_t pos = m->in[i].pos;
    m->in[i] = m->in[--m->n];
    if (pos != --room->n) { /* move the last entry into the hole, fix its back-reference */
        room->m[pos] = room->m[room->n];
        sb_rooms_member_t *moved = room->m[pos].member;
        moved->in[sb_rooms_index(moved, room)].pos = pos;
    }
    if (room->n == 0) sb_rooms_drop(r, room);
}

int sb_rooms_leave(sb_rooms_t *r, sb_rooms_member_t *m, const char *name) {
    sb_room_t *room = sb_rooms_lookup(r, name);
    int i = room ? sb_rooms_index(m, room) : -1;
    if (i < 0) return SB_ENOTFOUND;
    sb_rooms_unlink(r, m, (uint32_t)i);
    return SB_OK;
}

void sb_rooms_leave_all(sb_rooms_t *r, sb_rooms_member_t *m) {
    while (m->n) sb_rooms_unlink(r, m, m->n - 1);
    free(m->in);
    m->in = NULL;
    m->cap = 0;
}

int sb_rooms_has(const sb_rooms_t *r, const sb_rooms_member_t *m, const char *name) {
    sb_room_t *room = sb_rooms_lookup(r, name);
    return room && sb_rooms_index(m, room) >= 0;
}

uint32_t sb_rooms_size(const sb_rooms_t *r, const char *name) {
    sb_room_t *room = sb_rooms_lookup(r, name);
    return room ? room->n : 0;
}

uint32_t sb_rooms_count(const sb_rooms_t *r) { return r->count; }

uint32_t sb_rooms_each(const sb_rooms_t *r, const char *name,
                       void (*fn)(void *ud, uint64_t id), void *ud) {
    sb_room_t *room = sb_rooms_lookup(r, name);
    if (!room) return 0;
    uint32_t n = room->n;
    for (uint32_t i = 0; i < n; i++) fn(ud, room->m[i].id);
    return n;
}

uint32_t sb_rooms_each_name(const sb_rooms_t *r, const char *prefix,
                            void (*fn)(void *ud, const char *name), void *ud) {
    size_t plen = strlen(prefix);
    uint32_t n = 0;
    for (uint32_t i = 0; i < r->nbuckets; i++)
        for (const sb_room_t *room = r->buckets[i]; room; room = room->next)
            if (strncmp(room->name, prefix, plen) == 0) {
                fn(ud, room->name);
                n++;
            }
    return n;
}
