/* HTTPS and WSS served by the gateway itself (TLS_CERT, TLS_KEY), on libwebsockets over
 * OpenSSL, and their reload on SIGHUP.
 *
 * At start-up the pair is checked with OpenSSL (both readable PEM, the key matches the first
 * certificate of the chain) so that a bad file stops the gateway with one line. On SIGHUP
 * the files are checked again and, only if they are good, lws loads them into the running
 * vhost's SSL_CTX (lws_tls_cert_updated): new connections get the new certificate, open ones
 * keep theirs, and a bad pair changes nothing. Replace the files by rename, then reload. */
#ifndef SB_GW_TLS_H
#define SB_GW_TLS_H

#include <stddef.h>
#include <libwebsockets.h>
#include "cli/settings.h"

/* 1 when cfg asks for TLS (TLS_CERT or TLS_KEY set). */
int sb_gw_tls_wanted(const sb_config_t *cfg);

/* Checks cfg's TLS_CERT and TLS_KEY: both set, both readable PEM, the key matches the
 * certificate. Returns 0, or -1 with one line naming the setting in err. Changes nothing. */
int sb_gw_tls_check(const sb_config_t *cfg, char *err, size_t errlen);

/* Sets the TLS members of an lws context or vhost creation info from cfg (OpenSSL global
 * init, certificate and key paths, ALPN http/1.1 only). Does nothing when TLS is not wanted. */
void sb_gw_tls_info(const sb_config_t *cfg, struct lws_context_creation_info *info);

/* SIGHUP: checks the files again and loads them into every vhost serving them. Returns 0
 * when the new pair is in use, -1 (logged, old certificate kept) otherwise. */
int sb_gw_tls_reload(struct lws_context *lws, const sb_config_t *cfg);

#endif
