/* The operator console's live feed (issue 19): what the admin sockets that asked for it (handshake
 * auth {"console": true}: room SB_SOCKETIO_ROOM_CONSOLE, socketio.h) get over Socket.IO besides
 * the presence events every admin gets, at a bounded rate however many jobs move.
 *
 *   admin:jobs    {"changes":[{"type","jobId","status","userId"}...],"more":N}
 *                 every job change this gateway forwarded (each status message, each created
 *                 event as "queued") of every user, coalesced: sent at most every
 *                 SB_ADMIN_FEED_FLUSH_MS, at most SB_ADMIN_FEED_CHANGES changes each (the
 *                 first ones of the window); "more" counts the changes left out (the console
 *                 then reads the list it shows again).
 *   admin:queues  {"queues":[counts... as GET /admin/queues],"rates":{type: finished jobs/s},
 *                 "at": unix ms} every SB_ADMIN_FEED_TICK_MS while admins are connected (read
 *                 on libuv's thread pool, admin_views.h), and at once after an admin action.
 *   admin:action  {"action","type","jobId"?,"previousState"?,"count"? (retry-dead),
 *                 "changed"? (pause, resume),"by"} after each
 *                 successful admin action on this gateway (retry, retry-dead, cancel, delete,
 *                 pause, resume).
 * Whether admins are connected is learnt from the emits themselves (how many sockets each
 * reached): with none, the queue counters are read only every SB_ADMIN_FEED_IDLE_MS. */
#ifndef SB_GATEWAY_ADMIN_FEED_H
#define SB_GATEWAY_ADMIN_FEED_H

#define SB_ADMIN_FEED_FLUSH_MS 500
#define SB_ADMIN_FEED_TICK_MS 1000
#define SB_ADMIN_FEED_IDLE_MS 5000
#define SB_ADMIN_FEED_CHANGES 200

struct sb_gateway;
typedef struct sb_admin_feed sb_admin_feed_t;

/* Starts the feed on gw (its Socket.IO subscriber and admin pool must exist). NULL on
 * allocation failure (the console then updates by polling). */
sb_admin_feed_t *sb_admin_feed_create(struct sb_gateway *gw);
/* Stops the timers (shutdown); a read in flight completes. NULL is fine. */
void sb_admin_feed_stop(sb_admin_feed_t *f);
/* Frees it once the loop has ended. NULL is fine. */
void sb_admin_feed_free(sb_admin_feed_t *f);

/* Sends admin:action with json (an object's text) now, and the queue counters at the next
 * tick whatever the admins seen. NULL f is fine. */
void sb_admin_feed_action(sb_admin_feed_t *f, const char *json, size_t len);

#endif
