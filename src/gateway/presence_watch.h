/* Live presence on the gateway (SPEC §5): admins' sockets get agent:online, agent:status and
 * agent:offline, including for agents whose heartbeats stopped.
 *
 * - Forwarding: the presence scripts PUBLISH every change on agent:presence; this module
 *   watches that channel on the process's one SUBSCRIBE connection (subscriber.c) and emits
 *   each event, as published, to room `admins` under its name. An event holding bytes that are
 *   not UTF-8 (a name or e-mail written straight into Redis, or given to a C agent) is
 *   forwarded repaired, each invalid sequence replaced by U+FFFD (sio.h), not dropped: dropping
 *   it would hide a real change (an agent that went offline would stay online on every
 *   dashboard); it is counted and logged at warn.
 * - Expiry: each time the command connection comes up it turns expired-key events on
 *   (sb_presence_notify_*: CONFIG GET, then CONFIG SET adding "Ex" when missing) and watches
 *   __keyevent@{db}__:expired; an expired agent:online:{id} runs the expire script, which
 *   announces agent:offline (reason "expired") once, whichever gateway gets there first.
 * - Sweep: a libuv timer runs a full pass of the sweep script over agents:meta (one HSCAN
 *   page per call) every SB_PRESENCE_BACKSTOP_MS while notifications are on — Redis deletes
 *   expired keys lazily and by sampling, and the sweep's EXISTS forces the expiry, so an
 *   agent is announced at most about TTL + that period after its last heartbeat — and every
 *   SB_PRESENCE_FALLBACK_MS when CONFIG is refused (managed Redis), when it is the only way.
 * Everything runs on the loop thread; commands go out on the gateway's command connection. */
#ifndef SB_GATEWAY_PRESENCE_WATCH_H
#define SB_GATEWAY_PRESENCE_WATCH_H

#include "switchboard/prom.h"

#define SB_PRESENCE_BACKSTOP_MS 5000
#define SB_PRESENCE_FALLBACK_MS 2000

struct sb_gateway;
typedef struct sb_presence_watch sb_presence_watch_t;

/* Starts on gw: needs gw->redis and gw->sio (the subscriber) to exist; installs the command
 * connection's on-up hook and the subscriber's watches, and starts the sweep timer. Returns
 * NULL on allocation failure (nothing left behind). */
sb_presence_watch_t *sb_presence_watch_create(struct sb_gateway *gw);
/* Shutdown, first stage: stops the timer (its handle closes during the rest of uv_run),
 * removes the on-up hook and ends the watches, and sends nothing more. Call after the command
 * connection was closed. Accepts NULL. */
void sb_presence_watch_stop(sb_presence_watch_t *pw);
/* Frees pw once uv_run has returned. Accepts NULL. */
void sb_presence_watch_free(sb_presence_watch_t *pw);

/* Appends the presence families (events forwarded, expiries, announcements, notification
 * mode) to p. Accepts NULL pw (nothing appended). */
void sb_presence_watch_render(const sb_presence_watch_t *pw, sb_prom_t *p);

#endif
