/* A byte stream to Redis over a socket, plain or TLS (see conn.h for the design).
 *
 * The socket is non-blocking from socket() on: connect() returns EINPROGRESS, the connect
 * result is read from SO_ERROR once the fd is writable, then (TLS) SSL_connect runs until it
 * stops asking for WANT_READ / WANT_WRITE. Each connection owns its SSL_CTX (the CA file is
 * read once per connection attempt: reconnects are rare, and nothing is shared between
 * threads). SSL_MODE_ENABLE_PARTIAL_WRITE and SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER let the
 * event loop hand SSL_write a buffer that grows (and moves) between a WANT_WRITE and the
 * retry, which is what an output buffer does. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include "switchboard/clock.h"
#include "switchboard/conn.h"
#include "switchboard/error.h"

typedef enum { SB_CONN_CONNECTING, SB_CONN_TLS, SB_CONN_UP } sb_conn_state_t;

struct sb_conn {
    int fd;
    sb_conn_state_t state;
    SSL_CTX *ctx;     /* NULL for plain sockets */
    SSL *ssl;         /* NULL for plain sockets */
    char where[300];  /* host:port, for messages */
    int cert_asked;   /* the server asked for a client certificate and we had none */
    char err[256];    /* why the last read/write failed */
};

/* ---- sockets ------------------------------------------------------------------------------ */

static void sb_conn_tcp_options(int fd) {
    int on = 1, idle = 15, intvl = 5, cnt = 3;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
}

/* A non-blocking socket connecting to sa. Returns the fd, or -1 with errno set. */
static int sb_conn_socket(int family, const struct sockaddr *sa, socklen_t salen) {
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (family != AF_UNIX) sb_conn_tcp_options(fd);
    if (connect(fd, sa, salen) == 0 || errno == EINPROGRESS) return fd;
    int e = errno;
    close(fd);
    errno = e;
    return -1;
}

static int sb_conn_unix(const char *path, char *err, size_t errlen) {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path) {
        snprintf(err, errlen, "socket path too long");
        return -1;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = sb_conn_socket(AF_UNIX, (struct sockaddr *)&sa, sizeof sa);
    if (fd < 0) snprintf(err, errlen, "%s", strerror(errno));
    return fd;
}

/* Tries each address of host until a connect starts (hiredis does the same). */
static int sb_conn_tcp(const char *host, int port, char *err, size_t errlen) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res, *ai;
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    int rc = getaddrinfo(host, service, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(rc));
        return -1;
    }
    int fd = -1, e = 0;
    for (ai = res; ai && fd < 0; ai = ai->ai_next)
        if ((fd = sb_conn_socket(ai->ai_family, ai->ai_addr, ai->ai_addrlen)) < 0) e = errno;
    freeaddrinfo(res);
    if (fd < 0) snprintf(err, errlen, "%s", strerror(e));
    return fd;
}

/* ---- TLS set-up ---------------------------------------------------------------------------- */

/* The first queued OpenSSL error as text ("" when none), and the queue emptied. */
static const char *sb_ssl_errstr(char *buf, size_t len) {
    unsigned long e = ERR_peek_error();
    const char *reason = e ? ERR_reason_error_string(e) : NULL;
    snprintf(buf, len, "%s", reason ? reason : e ? "unknown TLS error" : "");
    ERR_clear_error();
    return buf;
}

/* Loads the trust anchors and the client certificate into ctx. 0, or -1 with err. */
static int sb_tls_ctx_files(SSL_CTX *ctx, const sb_redis_tls_t *t, char *err, size_t errlen) {
    char why[160];
    if (t->ca_file ? SSL_CTX_load_verify_locations(ctx, t->ca_file, NULL) != 1
                   : SSL_CTX_set_default_verify_paths(ctx) != 1) {
        snprintf(err, errlen, "TLS: cannot load the CA file %s: %s",
                 t->ca_file ? t->ca_file : "(system)", sb_ssl_errstr(why, sizeof why));
        return -1;
    }
    if (!t->cert_file) return 0;
    if (SSL_CTX_use_certificate_chain_file(ctx, t->cert_file) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, t->key_file, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, errlen, "TLS: cannot load the client certificate %s / key %s: %s",
                 t->cert_file, t->key_file ? t->key_file : "(none)",
                 sb_ssl_errstr(why, sizeof why));
        return -1;
    }
    return 0;
}

static int sb_is_ip(const char *name) {
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, name, buf) == 1 || inet_pton(AF_INET6, name, buf) == 1;
}

/* The name to send (SNI) and check: an IP literal is checked as an IP and not sent. */
static int sb_tls_name(SSL *ssl, const char *name) {
    X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (sb_is_ip(name)) return X509_VERIFY_PARAM_set1_ip_asc(param, name) == 1 ? 0 : -1;
    if (SSL_set_tlsext_host_name(ssl, name) != 1) return -1;
    return X509_VERIFY_PARAM_set1_host(param, name, 0) == 1 ? 0 : -1;
}

/* Called by OpenSSL when the server asks for a client certificate and none is configured:
 * we send none, and remember it, because a TLS 1.3 server refuses us only after the
 * handshake, with an alert that a reset often swallows. */
static int sb_tls_no_client_cert(SSL *ssl, X509 **x509, EVP_PKEY **pkey) {
    (void)x509;
    (void)pkey;
    sb_conn_t *c = SSL_get_app_data(ssl);
    c->cert_asked = 1;
    return 0;
}

static int sb_conn_tls_init(sb_conn_t *c, const sb_redis_addr_t *a, char *err, size_t errlen) {
    const sb_redis_tls_t *t = &a->tls;
    c->ctx = SSL_CTX_new(TLS_client_method());
    if (!c->ctx) {
        snprintf(err, errlen, "TLS: cannot create a context");
        return -1;
    }
    SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(c->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_verify(c->ctx, t->insecure ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, NULL);
    if (sb_tls_ctx_files(c->ctx, t, err, errlen) != 0) return -1;
    if (!t->cert_file) SSL_CTX_set_client_cert_cb(c->ctx, sb_tls_no_client_cert);
    c->ssl = SSL_new(c->ctx);
    if (c->ssl) SSL_set_app_data(c->ssl, c);
    const char *name = t->sni ? t->sni : a->host ? a->host : SB_REDIS_DEFAULT_HOST;
    if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1 || sb_tls_name(c->ssl, name) != 0) {
        snprintf(err, errlen, "TLS: cannot set up the session for %s", name);
        return -1;
    }
    return 0;
}

/* ---- life cycle ---------------------------------------------------------------------------- */

sb_conn_t *sb_conn_open(const sb_redis_addr_t *a, char *err, size_t errlen) {
    sb_conn_t *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    sb_redis_addr_str(a, c->where, sizeof c->where);
    const char *host = a->host ? a->host : SB_REDIS_DEFAULT_HOST;
    c->fd = a->unix_path ? sb_conn_unix(a->unix_path, err, errlen)
                         : sb_conn_tcp(host, a->port, err, errlen);
    if (c->fd < 0 || (a->tls.enabled && sb_conn_tls_init(c, a, err, errlen) != 0)) {
        sb_conn_free(c);
        return NULL;
    }
    return c;
}

void sb_conn_free(sb_conn_t *c) {
    if (!c) return;
    SSL_free(c->ssl); /* no close_notify: Redis does not wait for one */
    SSL_CTX_free(c->ctx);
    if (c->fd >= 0) close(c->fd);
    free(c);
}

int sb_conn_fd(const sb_conn_t *c) { return c->fd; }
int sb_conn_is_tls(const sb_conn_t *c) { return c->ssl != NULL; }

/* The TCP connect's result, once the fd is writable. 0, 1 (still going) or SB_EREDIS. */
static int sb_conn_connected(sb_conn_t *c, int *want, char *err, size_t errlen) {
    struct pollfd p = {.fd = c->fd, .events = POLLOUT};
    if (poll(&p, 1, 0) == 0) {
        *want = SB_CONN_WANT_WRITE;
        return 1;
    }
    int e = 0;
    socklen_t len = sizeof e;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &len) != 0) e = errno;
    if (e) {
        snprintf(err, errlen, "%s", strerror(e));
        return SB_EREDIS;
    }
    c->state = c->ssl ? SB_CONN_TLS : SB_CONN_UP;
    return SB_OK;
}

/* Why a handshake failed: the certificate check's verdict first, then OpenSSL's reason. */
static void sb_tls_handshake_error(sb_conn_t *c, int rc, char *err, size_t errlen) {
    long vr = SSL_get_verify_result(c->ssl);
    char why[160];
    int e = errno;
    if (vr != X509_V_OK)
        snprintf(err, errlen, "TLS: certificate verify failed: %s",
                 X509_verify_cert_error_string(vr));
    else if (SSL_get_error(c->ssl, rc) == SSL_ERROR_SYSCALL && !ERR_peek_error())
        snprintf(err, errlen, "TLS handshake: %s", rc == 0 || !e ? "connection closed by server"
                                                                 : strerror(e));
    else
        snprintf(err, errlen, "TLS handshake failed: %s", sb_ssl_errstr(why, sizeof why));
    ERR_clear_error();
}

static int sb_conn_tls_step(sb_conn_t *c, int *want, char *err, size_t errlen) {
    ERR_clear_error();
    errno = 0;
    int rc = SSL_connect(c->ssl);
    if (rc == 1) {
        c->state = SB_CONN_UP;
        return SB_OK;
    }
    int e = SSL_get_error(c->ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        *want = e == SSL_ERROR_WANT_READ ? SB_CONN_WANT_READ : SB_CONN_WANT_WRITE;
        return 1;
    }
    sb_tls_handshake_error(c, rc, err, errlen);
    return SB_EREDIS;
}

int sb_conn_handshake(sb_conn_t *c, int *want, char *err, size_t errlen) {
    *want = 0;
    int rc = SB_OK;
    if (c->state == SB_CONN_CONNECTING) rc = sb_conn_connected(c, want, err, errlen);
    if (rc == SB_OK && c->state == SB_CONN_TLS) rc = sb_conn_tls_step(c, want, err, errlen);
    return rc;
}

sb_conn_t *sb_conn_connect(const sb_redis_addr_t *a, int timeout_ms, char *err, size_t errlen) {
    sb_conn_t *c = sb_conn_open(a, err, errlen);
    int64_t deadline = sb_mono_ms() + timeout_ms;
    int want, rc = SB_OK;
    while (c && (rc = sb_conn_handshake(c, &want, err, errlen)) == 1) {
        struct pollfd p = {.fd = c->fd, .events = want == SB_CONN_WANT_READ ? POLLIN : POLLOUT};
        int64_t left = deadline - sb_mono_ms();
        if (left <= 0) {
            snprintf(err, errlen, "%s", c->state == SB_CONN_TLS ? "TLS handshake timed out"
                                                                : "timed out connecting");
            rc = SB_ETIMEOUT;
            break;
        }
        poll(&p, 1, (int)left); /* readiness or not, the next step finds out */
    }
    if (c && rc != SB_OK) {
        sb_conn_free(c);
        c = NULL;
    }
    return c;
}

int sb_conn_set_blocking(sb_conn_t *c, int timeout_ms) {
    int flags = fcntl(c->fd, F_GETFL);
    if (flags < 0 || fcntl(c->fd, F_SETFL, flags & ~O_NONBLOCK) < 0) return SB_ERR;
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    if (setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 ||
        setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0)
        return SB_ERR;
    return SB_OK;
}

/* ---- bytes --------------------------------------------------------------------------------- */

/* Result of a plain read()/write(): n, or 0 with *want on EAGAIN, or -1 with the reason. */
static ssize_t sb_conn_plain_result(sb_conn_t *c, ssize_t n, int is_read, int *want) {
    if (n > 0) return n;
    if (n == 0 && is_read) {
        snprintf(c->err, sizeof c->err, "connection closed by server");
        return -1;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        *want = is_read ? SB_CONN_WANT_READ : SB_CONN_WANT_WRITE;
        return 0;
    }
    snprintf(c->err, sizeof c->err, "%s", strerror(errno));
    return -1;
}

static void sb_conn_explain(sb_conn_t *c);

/* Result of SSL_read()/SSL_write(), the same contract. */
static ssize_t sb_conn_ssl_result(sb_conn_t *c, int n) {
    if (n > 0) return n;
    char why[160];
    int e = SSL_get_error(c->ssl, n), sys = errno;
    if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && !ERR_peek_error() && !sys))
        snprintf(c->err, sizeof c->err, "connection closed by server");
    else if (e == SSL_ERROR_SYSCALL && !ERR_peek_error())
        snprintf(c->err, sizeof c->err, "%s", strerror(sys));
    else
        snprintf(c->err, sizeof c->err, "TLS: %s", sb_ssl_errstr(why, sizeof why));
    ERR_clear_error();
    sb_conn_explain(c);
    return -1;
}

/* 1 with *want set when an SSL call must be repeated after that readiness (OpenSSL's socket
 * BIO turns EAGAIN and EINTR into these). */
static int sb_conn_ssl_again(sb_conn_t *c, int n, int *want) {
    int e = SSL_get_error(c->ssl, n);
    if (e == SSL_ERROR_WANT_READ) *want = SB_CONN_WANT_READ;
    else if (e == SSL_ERROR_WANT_WRITE) *want = SB_CONN_WANT_WRITE;
    else return 0;
    return 1;
}

ssize_t sb_conn_read(sb_conn_t *c, void *buf, size_t len, int *want) {
    *want = 0;
    if (!c->ssl) return sb_conn_plain_result(c, read(c->fd, buf, len), 1, want);
    ERR_clear_error();
    errno = 0;
    int n = SSL_read(c->ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
    if (n <= 0 && sb_conn_ssl_again(c, n, want)) return 0;
    return sb_conn_ssl_result(c, n);
}

ssize_t sb_conn_write(sb_conn_t *c, const void *buf, size_t len, int *want) {
    *want = 0;
    if (!c->ssl) return sb_conn_plain_result(c, write(c->fd, buf, len), 0, want);
    ERR_clear_error();
    errno = 0;
    int n = SSL_write(c->ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
    if (n <= 0 && sb_conn_ssl_again(c, n, want)) return 0;
    return sb_conn_ssl_result(c, n);
}

size_t sb_conn_pending(const sb_conn_t *c) {
    return c->ssl ? (size_t)SSL_pending(c->ssl) : 0;
}

const char *sb_conn_error(const sb_conn_t *c) { return c->err[0] ? c->err : "unknown error"; }

/* Adds the likely cause to a TLS connection's failure: a client certificate it did not have. */
static void sb_conn_explain(sb_conn_t *c) {
    size_t n = strlen(c->err);
    if (c->cert_asked && n < sizeof c->err)
        snprintf(c->err + n, sizeof c->err - n,
                 " (the server requires a client certificate: mutual TLS)");
}
