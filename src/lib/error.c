/* sb_strerror: names for the SB_E* codes of error.h; sb_errf: the error sentence writer. */
#include <stdarg.h>
#include <stdio.h>
#include "switchboard/error.h"

const char *sb_strerror(int code) {
    switch (code) {
    case SB_OK: return "ok";
    case SB_EINVAL: return "invalid input";
    case SB_ENOMEM: return "out of memory";
    case SB_EREDIS: return "redis unavailable";
    case SB_ENOTFOUND: return "not found";
    case SB_EPROTO: return "unexpected reply from redis";
    case SB_ETIMEOUT: return "timed out";
    case SB_ECANCELED: return "canceled";
    default: return "error";
    }
}

void sb_errf(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}
