/* Error codes shared by every libswitchboard module.
 *
 * One convention for the whole library: functions return 0 (SB_OK) on success and a negative
 * SB_E* code on failure; sb_strerror() names a code. Functions that can say more write a
 * sentence into a caller-provided buffer (char *err, size_t errlen). */
#ifndef SB_ERROR_H
#define SB_ERROR_H

enum {
    SB_OK = 0,
    SB_ERR = -1,        /* unspecified failure */
    SB_EINVAL = -2,     /* bad argument or bad input */
    SB_ENOMEM = -3,     /* allocation failed */
    SB_EREDIS = -4,     /* Redis unreachable or the connection broke */
    SB_ENOTFOUND = -5,  /* key / record does not exist (or expired) */
    SB_EPROTO = -6,     /* Redis answered something unexpected */
    SB_ETIMEOUT = -7,   /* nothing arrived in time */
    SB_ECANCELED = -8,  /* stopped because shutdown was requested */
};

/* Returns a static string naming code (never NULL). */
const char *sb_strerror(int code);

#include <stddef.h>
/* Writes the sentence fmt... into err (errlen bytes, always NUL-terminated, cut if longer).
 * err NULL or errlen 0: writes nothing. */
void sb_errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
