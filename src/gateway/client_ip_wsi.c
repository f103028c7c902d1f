/* sb_gw_client_ip() and sb_gw_client_proto() for a live lws connection (see client_ip.h):
 * the peer from the socket, the forwarded headers from the request, the rules from
 * client_ip.c (kept free of lws so that the unit tests and fuzzers link it alone). */
#include <libwebsockets.h>
#include "gateway/client_ip.h"
#include "gateway/gateway.h"

const char *sb_gw_client_ip(const sb_gateway_t *gw, struct lws *wsi, char *out, size_t outlen) {
    char peer[SB_CLIENT_IP_MAX] = "", xff[1024];
    if (!lws_get_peer_simple(wsi, peer, sizeof peer)) peer[0] = '\0';
    int have = sb_proxies_trusted(&gw->proxies, peer) &&
               lws_hdr_copy(wsi, xff, sizeof xff, WSI_TOKEN_X_FORWARDED_FOR) > 0;
    return sb_client_ip_resolve(&gw->proxies, peer, have ? xff : NULL, out, outlen);
}

const char *sb_gw_client_proto(const sb_gateway_t *gw, struct lws *wsi) {
    char peer[SB_CLIENT_IP_MAX] = "", xfp[16];
    if (!lws_get_peer_simple(wsi, peer, sizeof peer)) peer[0] = '\0';
    int have = sb_proxies_trusted(&gw->proxies, peer) &&
               lws_hdr_custom_copy(wsi, xfp, sizeof xfp, "x-forwarded-proto:", 18) > 0;
    return sb_client_proto_resolve(&gw->proxies, peer, have ? xfp : NULL, lws_is_ssl(wsi));
}
