/* libswitchboard: everything a C agent or producer needs. Include this one header. */
#ifndef SWITCHBOARD_H
#define SWITCHBOARD_H

#include "switchboard/error.h"
#include "switchboard/fmt.h"
#include "switchboard/log.h"
#include "switchboard/clock.h"
#include "switchboard/json.h"
#include "switchboard/jsonw.h"
#include "switchboard/config.h"
#include "switchboard/redis.h"
#include "switchboard/job.h"
#include "switchboard/queue.h"
#include "switchboard/metrics.h"
#include "switchboard/presence.h"
#include "switchboard/proc.h"
#include "switchboard/events.h"
#include "switchboard/ratelimit.h"
#include "switchboard/submit.h"
#include "switchboard/jwt.h"
#include "switchboard/random.h"
#include "switchboard/prom.h"
#include "switchboard/prom_http.h"
#include "switchboard/prom_runtime.h"
#include "switchboard/utf8.h"
#include "switchboard/version.h"

/* The version of the API in these headers; sb_version() is the build's (from its git tag). */
#define SB_VERSION "0.1.0"

#endif
