/* The gateway's TLS certificate: check, lws set-up, reload (see tls.h). The check loads the
 * pair into a scratch SSL_CTX exactly as lws will (certificate chain file, private key file),
 * so whatever it accepts lws accepts too; OpenSSL's own error text goes in the message. */
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "gateway/tls.h"
#include "switchboard/log.h"

int sb_gw_tls_wanted(const sb_config_t *cfg) {
    return (cfg->tls_cert && *cfg->tls_cert) || (cfg->tls_key && *cfg->tls_key);
}

/* OpenSSL's latest error as text, or fallback when its queue is empty. */
static const char *sb_gw_tls_why(char *buf, size_t len, const char *fallback) {
    unsigned long e = ERR_peek_last_error();
    if (!e) return fallback;
    ERR_error_string_n(e, buf, len);
    ERR_clear_error();
    return buf;
}

/* The private key in path, or NULL. */
static EVP_PKEY *sb_gw_tls_read_key(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    return k;
}

int sb_gw_tls_check(const sb_config_t *cfg, char *err, size_t errlen) {
    const char *cert = cfg->tls_cert, *key = cfg->tls_key;
    if (!cert || !*cert || !key || !*key) {
        snprintf(err, errlen, "bad setting %s: TLS_CERT and TLS_KEY go together",
                 cert && *cert ? "TLS_KEY" : "TLS_CERT");
        return -1;
    }
    const char *unreadable = access(cert, R_OK) ? "TLS_CERT" : access(key, R_OK) ? "TLS_KEY" : NULL;
    if (unreadable) {
        snprintf(err, errlen, "bad setting %s='%s': %s", unreadable,
                 unreadable[4] == 'C' ? cert : key, strerror(errno));
        return -1;
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    EVP_PKEY *pkey = NULL;
    char why[256];
    int rc = -1;
    ERR_clear_error();
    if (!ctx)
        snprintf(err, errlen, "TLS: %s", sb_gw_tls_why(why, sizeof why, "out of memory"));
    else if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
        snprintf(err, errlen, "bad setting TLS_CERT='%s': not a PEM certificate chain (%s)", cert,
                 sb_gw_tls_why(why, sizeof why, "unreadable"));
    else if (!(pkey = sb_gw_tls_read_key(key)))
        snprintf(err, errlen, "bad setting TLS_KEY='%s': not a PEM private key (%s)", key,
                 sb_gw_tls_why(why, sizeof why, "unreadable"));
    else if (SSL_CTX_use_PrivateKey(ctx, pkey) != 1 || SSL_CTX_check_private_key(ctx) != 1)
        snprintf(err, errlen, "bad setting TLS_KEY='%s': it does not match TLS_CERT (%s)", key,
                 sb_gw_tls_why(why, sizeof why, "key mismatch"));
    else
        rc = 0;
    ERR_clear_error();
    EVP_PKEY_free(pkey);
    SSL_CTX_free(ctx);
    return rc;
}

void sb_gw_tls_info(const sb_config_t *cfg, struct lws_context_creation_info *info) {
    if (!sb_gw_tls_wanted(cfg)) return;
    info->options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info->ssl_cert_filepath = cfg->tls_cert;
    info->ssl_private_key_filepath = cfg->tls_key;
    info->alpn = "http/1.1"; /* lws could offer h2, which the gateway's HTTP code is not for */
}

int sb_gw_tls_reload(struct lws_context *lws, const sb_config_t *cfg) {
    char err[512];
    if (!sb_gw_tls_wanted(cfg)) {
        sb_info("gateway", "SIGHUP: no TLS_CERT/TLS_KEY, nothing to reload");
        return -1;
    }
    if (sb_gw_tls_check(cfg, err, sizeof err) != 0) {
        sb_error("gateway", "SIGHUP: certificate not reloaded, the old one stays: %s", err);
        return -1;
    }
    lws_tls_cert_updated(lws, cfg->tls_cert, cfg->tls_key, NULL, 0, NULL, 0);
    sb_info("gateway", "SIGHUP: reloaded the TLS certificate from %s", cfg->tls_cert);
    return 0;
}
