
/*
 * FlowScale for nginx: webhook delivery.
 *
 * When a run ends, the worker that recorded it POSTs the run JSON to the
 * URL the caller gave, signed per Standard Webhooks (webhook-id,
 * webhook-timestamp, webhook-signature "v1,<base64 HMAC-SHA256 of
 * id.timestamp.body>" keyed by the decoded bytes of the project's
 * "whsec_..." secret from PostgreSQL).
 *
 * The client runs on nginx connections, events and timers, like the
 * ComfyUI client (ngx_http_flowscale_comfy.c): the host is resolved with
 * the location's "resolver" (ngx_resolve_name), https goes through nginx's
 * SSL layer (ngx_ssl_create_connection, ngx_ssl_handshake, SNI, the peer
 * verified against flowscale_webhook_ssl_trusted_certificate), redirects
 * are not followed and only the status line of the answer is read.
 *
 * Where a webhook may go: flowscale_webhook_allow lists host names,
 * "*.domain" suffixes, "*" (any public host) and CIDRs; nothing is allowed
 * by default.  Loopback, private, link-local, multicast and reserved
 * addresses are refused unless a CIDR covers them or the URL's host is
 * named exactly.  The URL is checked when the run is created and every
 * resolved address again before each attempt (a public name that resolves
 * to 127.0.0.1 is refused).
 *
 * Attempts: 2xx is delivered; 3xx and 4xx other than 408 and 429 give up
 * at once; anything else (5xx, 408, 429, timeouts, connection and TLS
 * errors) is retried after the flowscale_webhook_retry delays (5s 30s 2m
 * 10m 30m by default), then given up.  Each attempt is recorded in
 * flowscale.webhook_attempts, the run's webhook_status and webhook_next_at
 * say where its delivery stands.
 *
 * Life cycle: an attempt in flight holds a non-cancelable timer (its
 * timeout), so a worker that shuts down finishes it; a retry waits on a
 * cancelable timer, so pending retries never keep an old worker alive
 * (their next_at is in PostgreSQL for a later resume).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/hmac.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "ngx_http_flowscale_module.h"
#include "ngx_http_flowscale_pg.h"
#include "ngx_http_flowscale_webhook.h"


#define NGX_HTTP_FLOWSCALE_WEBHOOK_TIMEOUT    10000
#define NGX_HTTP_FLOWSCALE_WEBHOOK_POOL       1024
#define NGX_HTTP_FLOWSCALE_WEBHOOK_IN         1024
#define NGX_HTTP_FLOWSCALE_WEBHOOK_MAX_LIVE   4096
#define NGX_HTTP_FLOWSCALE_WEBHOOK_MAX_RETRY  32
#define NGX_HTTP_FLOWSCALE_WEBHOOK_ERRLEN     256

/* how an attempt ended, besides an HTTP status */
#define NGX_HTTP_FLOWSCALE_WEBHOOK_RETRY      0
#define NGX_HTTP_FLOWSCALE_WEBHOOK_GIVE_UP    1


typedef struct {
    ngx_uint_t                          ssl;
    ngx_uint_t                          ip;        /* host is an address */
    ngx_uint_t                          slash;     /* path lacks its "/" */
    ngx_str_t                           host;      /* no brackets */
    ngx_str_t                           authority; /* Host: */
    ngx_str_t                           path;      /* with query */
    in_port_t                           port;
    ngx_sockaddr_t                      sockaddr;  /* when ip */
    socklen_t                           socklen;
} ngx_http_flowscale_webhook_url_t;


typedef struct {
    ngx_queue_t                         queue;
    ngx_pool_t                         *pool;
    ngx_log_t                           log;

    ngx_http_flowscale_loc_conf_t      *flcf;
    ngx_str_t                           run_id;
    ngx_str_t                           project;
    ngx_str_t                           url;
    ngx_str_t                           body;
    ngx_str_t                           msg_id;     /* "msg_<run id>" */
    u_char                             *host;       /* NUL-terminated */
    ngx_http_flowscale_webhook_url_t    u;

    u_char                             *key;        /* decoded secret */
    size_t                              key_len;

    ngx_uint_t                          attempt;
    ngx_event_t                         timer;

    ngx_http_flowscale_pg_query_t      *query;
    ngx_resolver_ctx_t                 *resolving;

    /* one attempt */
    ngx_pool_t                         *apool;
    ngx_peer_connection_t               peer;
    ngx_str_t                           address;
    ngx_buf_t                          *out;
    ngx_buf_t                          *in;

    u_char                              error[NGX_HTTP_FLOWSCALE_WEBHOOK_ERRLEN];
    size_t                              error_len;

    ngx_uint_t                          secret_how;

    unsigned                            connected:1;
    unsigned                            waiting:1;   /* for the secret */
} ngx_http_flowscale_webhook_t;


static const char *ngx_http_flowscale_webhook_parse(ngx_str_t *url,
    ngx_http_flowscale_webhook_url_t *u);
static ngx_int_t ngx_http_flowscale_webhook_valid_name(u_char *p, size_t len);
static void ngx_http_flowscale_webhook_unmap(struct sockaddr *sa,
    struct sockaddr_in *sin);
static const char *ngx_http_flowscale_webhook_special(struct sockaddr *sa);
static ngx_uint_t ngx_http_flowscale_webhook_cidr_match(ngx_array_t *allow,
    struct sockaddr *sa);
static ngx_int_t ngx_http_flowscale_webhook_name_match(ngx_array_t *allow,
    ngx_str_t *host);
static ngx_uint_t ngx_http_flowscale_webhook_has_resolver(
    ngx_http_flowscale_loc_conf_t *flcf);

static void ngx_http_flowscale_webhook_fetch_secret(
    ngx_http_flowscale_webhook_t *wh);
static void ngx_http_flowscale_webhook_secret_done(void *data, PGresult *res,
    const char *error);
static void ngx_http_flowscale_webhook_secret_next(ngx_event_t *ev);
static void ngx_http_flowscale_webhook_attempt(
    ngx_http_flowscale_webhook_t *wh);
static ngx_int_t ngx_http_flowscale_webhook_request(
    ngx_http_flowscale_webhook_t *wh);
static void ngx_http_flowscale_webhook_resolved(ngx_resolver_ctx_t *ctx);
static void ngx_http_flowscale_webhook_connect(
    ngx_http_flowscale_webhook_t *wh, struct sockaddr *sa, socklen_t len);
static void ngx_http_flowscale_webhook_handler(ngx_event_t *ev);
#if (NGX_SSL)
static void ngx_http_flowscale_webhook_ssl_init(
    ngx_http_flowscale_webhook_t *wh);
static void ngx_http_flowscale_webhook_ssl_handshake(ngx_connection_t *c);
static ngx_int_t ngx_http_flowscale_webhook_ssl_verify(
    ngx_http_flowscale_webhook_t *wh, ngx_connection_t *c);
#endif
static void ngx_http_flowscale_webhook_process(
    ngx_http_flowscale_webhook_t *wh);
static ngx_int_t ngx_http_flowscale_webhook_status(ngx_buf_t *b,
    ngx_uint_t *status);
static void ngx_http_flowscale_webhook_timeout(ngx_event_t *ev);
static void ngx_http_flowscale_webhook_retry_handler(ngx_event_t *ev);
static void ngx_http_flowscale_webhook_fail(ngx_http_flowscale_webhook_t *wh,
    ngx_uint_t how, const char *fmt, ...);
static void ngx_http_flowscale_webhook_finish(
    ngx_http_flowscale_webhook_t *wh, ngx_uint_t status, ngx_uint_t how);
static void ngx_http_flowscale_webhook_record(
    ngx_http_flowscale_webhook_t *wh, ngx_uint_t status, ngx_msec_t next,
    const char *final);
static void ngx_http_flowscale_webhook_recorded(void *data, PGresult *res,
    const char *error);
static void ngx_http_flowscale_webhook_end_attempt(
    ngx_http_flowscale_webhook_t *wh);
static void ngx_http_flowscale_webhook_free(ngx_http_flowscale_webhook_t *wh);
static u_char *ngx_http_flowscale_webhook_log_error(ngx_log_t *log,
    u_char *buf, size_t len);


static ngx_msec_t  ngx_http_flowscale_webhook_default_retry[] = {
    5000, 30000, 120000, 600000, 1800000
};

static ngx_queue_t  ngx_http_flowscale_webhooks;
static ngx_uint_t   ngx_http_flowscale_webhooks_live;
static ngx_uint_t   ngx_http_flowscale_webhooks_ready;

/* the message returned by ngx_http_flowscale_webhook_check() */
static u_char  ngx_http_flowscale_webhook_msg[512];


/* configuration */


char *
ngx_http_flowscale_webhook_allow(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_flowscale_loc_conf_t *flcf = conf;

    u_char                              *p;
    ngx_int_t                            rc;
    ngx_str_t                           *value, v;
    ngx_uint_t                           i;
    ngx_http_flowscale_webhook_allow_t  *a;

    value = cf->args->elts;

    if (flcf->webhook_allow == NGX_CONF_UNSET_PTR) {
        flcf->webhook_allow = ngx_array_create(cf->pool, 4,
                                   sizeof(ngx_http_flowscale_webhook_allow_t));
        if (flcf->webhook_allow == NULL) {
            return NGX_CONF_ERROR;
        }

    } else if (flcf->webhook_allow->nelts == 0) {
        return "is duplicate: \"off\" was already given at this level";
    }

    if (cf->args->nelts == 2
        && ngx_strcmp(value[1].data, "off") == 0)
    {
        if (flcf->webhook_allow->nelts) {
            return "\"off\" cannot follow entries at the same level";
        }

        /* an empty list: nothing allowed here, whatever is inherited */
        return NGX_CONF_OK;
    }

    for (i = 1; i < cf->args->nelts; i++) {
        v = value[i];

        a = ngx_array_push(flcf->webhook_allow);
        if (a == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memzero(a, sizeof(ngx_http_flowscale_webhook_allow_t));

        if (v.len == 3 && ngx_strncmp(v.data, "off", 3) == 0) {
            /* "off" stands alone */
            goto invalid;
        }

        if (v.len == 1 && v.data[0] == '*') {
            a->type = NGX_HTTP_FLOWSCALE_WEBHOOK_ANY;
            continue;
        }

        if (v.len > 2 && v.data[0] == '*' && v.data[1] == '.') {

            if (ngx_http_flowscale_webhook_valid_name(v.data + 2, v.len - 2)
                != NGX_OK)
            {
                goto invalid;
            }

            a->type = NGX_HTTP_FLOWSCALE_WEBHOOK_DOMAIN;
            a->name.len = v.len - 1;                    /* ".example.com" */
            a->name.data = ngx_pnalloc(cf->pool, a->name.len);
            if (a->name.data == NULL) {
                return NGX_CONF_ERROR;
            }

            ngx_strlow(a->name.data, v.data + 1, a->name.len);
            continue;
        }

        if (ngx_strlchr(v.data, v.data + v.len, '*')) {
            goto invalid;
        }

        if (ngx_strlchr(v.data, v.data + v.len, '/')
            || ngx_strlchr(v.data, v.data + v.len, ':')
            || ngx_inet_addr(v.data, v.len) != INADDR_NONE)
        {
            rc = ngx_ptocidr(&v, &a->cidr);

            if (rc == NGX_ERROR) {
                goto invalid;
            }

            if (rc == NGX_DONE) {
                ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                                   "low address bits of %V are meaningless",
                                   &value[i]);
            }

            a->type = NGX_HTTP_FLOWSCALE_WEBHOOK_CIDR;
            continue;
        }

        if (ngx_http_flowscale_webhook_valid_name(v.data, v.len) != NGX_OK) {
            goto invalid;
        }

        a->type = NGX_HTTP_FLOWSCALE_WEBHOOK_HOST;
        a->name.len = v.len;

        if (v.data[v.len - 1] == '.') {
            a->name.len--;
        }

        p = ngx_pnalloc(cf->pool, a->name.len);
        if (p == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_strlow(p, v.data, a->name.len);
        a->name.data = p;
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "flowscale_webhook_allow: invalid entry \"%V\": use a "
                       "host name (hooks.example.com), \"*.DOMAIN\", \"*\" "
                       "(any public host), an address or a CIDR "
                       "(10.0.0.0/8, ::1), without scheme or port",
                       &value[i]);

    return NGX_CONF_ERROR;
}


char *
ngx_http_flowscale_webhook_retry(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_flowscale_loc_conf_t *flcf = conf;

    ngx_str_t   *value;
    ngx_msec_t  *delay;
    ngx_uint_t   i;

    if (flcf->webhook_retry != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    flcf->webhook_retry = ngx_array_create(cf->pool, cf->args->nelts,
                                           sizeof(ngx_msec_t));
    if (flcf->webhook_retry == NULL) {
        return NGX_CONF_ERROR;
    }

    if (cf->args->nelts == 2 && ngx_strcmp(value[1].data, "off") == 0) {
        /* one attempt only */
        return NGX_CONF_OK;
    }

    if (cf->args->nelts - 1 > NGX_HTTP_FLOWSCALE_WEBHOOK_MAX_RETRY) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "flowscale_webhook_retry: at most %d delays",
                           NGX_HTTP_FLOWSCALE_WEBHOOK_MAX_RETRY);
        return NGX_CONF_ERROR;
    }

    for (i = 1; i < cf->args->nelts; i++) {
        delay = ngx_array_push(flcf->webhook_retry);
        if (delay == NULL) {
            return NGX_CONF_ERROR;
        }

        *delay = ngx_parse_time(&value[i], 0);

        if (*delay == (ngx_msec_t) NGX_ERROR || *delay == 0
            || *delay > 24 * 3600 * 1000)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "flowscale_webhook_retry: invalid delay "
                               "\"%V\": use times such as 5s 30s 2m 10m, "
                               "each above 0 and at most 24h, or \"off\"",
                               &value[i]);
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


char *
ngx_http_flowscale_webhook_merge(ngx_conf_t *cf,
    ngx_http_flowscale_loc_conf_t *prev, ngx_http_flowscale_loc_conf_t *conf)
{
#if (NGX_SSL)
    ngx_str_t                        ca;
    ngx_pool_cleanup_t              *cln;
    ngx_http_flowscale_main_conf_t  *fmcf;
#endif

    ngx_conf_merge_ptr_value(conf->webhook_allow, prev->webhook_allow, NULL);
    ngx_conf_merge_ptr_value(conf->webhook_retry, prev->webhook_retry, NULL);
    ngx_conf_merge_msec_value(conf->webhook_timeout, prev->webhook_timeout,
                              NGX_HTTP_FLOWSCALE_WEBHOOK_TIMEOUT);
    ngx_conf_merge_value(conf->webhook_ssl_verify, prev->webhook_ssl_verify,
                         1);

    /* the resolver of the location (or server) being merged */
    conf->webhook_clcf = ngx_http_conf_get_module_loc_conf(cf,
                                                        ngx_http_core_module);

    if (conf->webhook_allow == NULL || conf->webhook_allow->nelts == 0) {
        return NGX_CONF_OK;
    }

#if (NGX_SSL)

    fmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_flowscale_module);

    if (fmcf->webhook_ssl == NULL) {
        fmcf->webhook_ssl = ngx_pcalloc(cf->pool, sizeof(ngx_ssl_t));
        if (fmcf->webhook_ssl == NULL) {
            return NGX_CONF_ERROR;
        }

        fmcf->webhook_ssl->log = cf->log;

        if (ngx_ssl_create(fmcf->webhook_ssl,
                           NGX_SSL_TLSv1_2|NGX_SSL_TLSv1_3, NULL)
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }

        cln = ngx_pool_cleanup_add(cf->pool, 0);
        if (cln == NULL) {
            ngx_ssl_cleanup_ctx(fmcf->webhook_ssl);
            return NGX_CONF_ERROR;
        }

        cln->handler = ngx_ssl_cleanup_ctx;
        cln->data = fmcf->webhook_ssl;
    }

    if (conf->webhook_ssl_verify && !fmcf->webhook_ca_loaded) {

        if (fmcf->webhook_trusted_certificate.data == NULL) {
            ngx_str_set(&fmcf->webhook_trusted_certificate,
                        NGX_HTTP_FLOWSCALE_WEBHOOK_CA);
        }

        /* ngx_ssl_trusted_certificate() rewrites the name in place */
        ca = fmcf->webhook_trusted_certificate;

        if (ngx_ssl_trusted_certificate(cf, fmcf->webhook_ssl, &ca, 9)
            != NGX_OK)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "flowscale_webhook_allow: cannot load the CA "
                               "certificates \"%V\" that verify https "
                               "webhooks (install ca-certificates, set "
                               "flowscale_webhook_ssl_trusted_certificate, "
                               "or \"flowscale_webhook_ssl_verify off\")",
                               &fmcf->webhook_trusted_certificate);
            return NGX_CONF_ERROR;
        }

        fmcf->webhook_ca_loaded = 1;
    }

    conf->webhook_ssl = fmcf->webhook_ssl;

#endif

    return NGX_CONF_OK;
}


/* URLs and addresses */


/*
 * http[s]://host[:port][/path][?query][#fragment], host a name, an IPv4
 * address or [IPv6]; no user information.  NULL or what is wrong.  The
 * strings in u point into url.
 */

static const char *
ngx_http_flowscale_webhook_parse(ngx_str_t *url,
    ngx_http_flowscale_webhook_url_t *u)
{
    u_char     *p, *last, *start, *end, *colon;
    in_addr_t   addr;
    ngx_int_t   port;

    ngx_memzero(u, sizeof(ngx_http_flowscale_webhook_url_t));

    if (url->len == 0) {
        return "is empty";
    }

    if (url->len > NGX_HTTP_FLOWSCALE_WEBHOOK_MAX_URL) {
        return "is longer than 2048 bytes";
    }

    p = url->data;
    last = p + url->len;

    for ( /* void */ ; p < last; p++) {
        if (*p <= ' ' || *p >= 0x7f) {
            return "contains spaces, control or non-ASCII characters "
                   "(percent-encode them)";
        }
    }

    p = url->data;

    if (url->len > 7 && ngx_strncasecmp(p, (u_char *) "http://", 7) == 0) {
        u->port = 80;
        p += 7;

    } else if (url->len > 8
               && ngx_strncasecmp(p, (u_char *) "https://", 8) == 0)
    {
        u->ssl = 1;
        u->port = 443;
        p += 8;

    } else {
        return "must be an http:// or https:// URL";
    }

    start = p;

    while (p < last && *p != '/' && *p != '?' && *p != '#') {
        p++;
    }

    u->authority.data = start;
    u->authority.len = p - start;

    if (ngx_strlchr(start, p, '@')) {
        return "must not contain a user name or password";
    }

    end = p;

    if (start < end && *start == '[') {
        p = ngx_strlchr(start, end, ']');
        if (p == NULL) {
            return "has an invalid IPv6 address";
        }

        u->host.data = start + 1;
        u->host.len = p - start - 1;
        colon = (p + 1 < end) ? p + 1 : NULL;

        if (colon && *colon != ':') {
            return "has an invalid IPv6 address";
        }

#if (NGX_HAVE_INET6)
        if (ngx_inet6_addr(u->host.data, u->host.len,
                           u->sockaddr.sockaddr_in6.sin6_addr.s6_addr)
            != NGX_OK)
        {
            return "has an invalid IPv6 address";
        }

        u->sockaddr.sockaddr_in6.sin6_family = AF_INET6;
        u->socklen = sizeof(struct sockaddr_in6);
        u->ip = 1;
#else
        return "has an IPv6 address, which this nginx does not support";
#endif

    } else {
        colon = ngx_strlchr(start, end, ':');

        u->host.data = start;
        u->host.len = (colon ? colon : end) - start;
    }

    if (colon) {
        port = ngx_atoi(colon + 1, end - colon - 1);

        if (port < 1 || port > 65535) {
            return "has an invalid port";
        }

        u->port = (in_port_t) port;
    }

    if (u->host.len == 0) {
        return "has no host";
    }

    if (!u->ip) {
        addr = ngx_inet_addr(u->host.data, u->host.len);

        if (addr != INADDR_NONE) {
            u->sockaddr.sockaddr_in.sin_family = AF_INET;
            u->sockaddr.sockaddr_in.sin_addr.s_addr = addr;
            u->socklen = sizeof(struct sockaddr_in);
            u->ip = 1;

        } else if (ngx_http_flowscale_webhook_valid_name(u->host.data,
                                                         u->host.len)
                   != NGX_OK)
        {
            return "has an invalid host name";
        }
    }

    if (u->ip) {
        ngx_inet_set_port(&u->sockaddr.sockaddr, u->port);
    }

    /* the fragment stays with the caller */

    u->path.data = end;
    u->path.len = (ngx_strlchr(end, last, '#') ? ngx_strlchr(end, last, '#')
                                               : last) - end;
    u->slash = (u->path.len == 0 || u->path.data[0] != '/');

    return NULL;
}


/* letters, digits, "-" and "." in non-empty labels; one trailing dot */

static ngx_int_t
ngx_http_flowscale_webhook_valid_name(u_char *p, size_t len)
{
    u_char   c, *last;
    size_t   label;

    if (len && p[len - 1] == '.') {
        len--;
    }

    if (len == 0 || len > 253) {
        return NGX_ERROR;
    }

    label = 0;

    for (last = p + len; p < last; p++) {
        c = *p;

        if (c == '.') {
            if (label == 0) {
                return NGX_ERROR;
            }

            label = 0;
            continue;
        }

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9') || c == '-' || c == '_'))
        {
            return NGX_ERROR;
        }

        if (++label > 63) {
            return NGX_ERROR;
        }
    }

    return (label == 0) ? NGX_ERROR : NGX_OK;
}


/* an IPv4-mapped or NAT64 IPv6 address as the IPv4 address it carries */

static void
ngx_http_flowscale_webhook_unmap(struct sockaddr *sa, struct sockaddr_in *sin)
{
#if (NGX_HAVE_INET6)
    u_char               *a;
    struct sockaddr_in6  *sin6;

    static u_char  nat64[12] = { 0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0 };

    if (sa->sa_family != AF_INET6) {
        return;
    }

    sin6 = (struct sockaddr_in6 *) sa;
    a = sin6->sin6_addr.s6_addr;

    if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)
        || ngx_memcmp(a, nat64, 12) == 0)
    {
        ngx_memzero(sin, sizeof(struct sockaddr_in));
        sin->sin_family = AF_INET;
        ngx_memcpy(&sin->sin_addr.s_addr, a + 12, 4);
        sin->sin_port = sin6->sin6_port;
    }
#endif
}


/* "a loopback" and so on, or NULL for an address on the public Internet */

static const char *
ngx_http_flowscale_webhook_special(struct sockaddr *sa)
{
    in_addr_t             a;
    struct sockaddr_in    sin;
#if (NGX_HAVE_INET6)
    u_char               *b;
    struct sockaddr_in6  *sin6;
#endif

    sin.sin_family = AF_UNSPEC;
    ngx_http_flowscale_webhook_unmap(sa, &sin);

    if (sin.sin_family == AF_INET) {
        sa = (struct sockaddr *) &sin;
    }

    switch (sa->sa_family) {

    case AF_INET:
        a = ntohl(((struct sockaddr_in *) sa)->sin_addr.s_addr);

        if ((a >> 24) == 0) {
            return "an unspecified";
        }

        if ((a >> 24) == 127) {
            return "a loopback";
        }

        if ((a >> 24) == 10
            || (a & 0xfff00000) == 0xac100000         /* 172.16.0.0/12 */
            || (a & 0xffff0000) == 0xc0a80000         /* 192.168.0.0/16 */
            || (a & 0xffc00000) == 0x64400000)        /* 100.64.0.0/10 */
        {
            return "a private";
        }

        if ((a & 0xffff0000) == 0xa9fe0000) {         /* 169.254.0.0/16 */
            return "a link-local";
        }

        if ((a & 0xf0000000) == 0xe0000000) {         /* 224.0.0.0/4 */
            return "a multicast";
        }

        if ((a & 0xf0000000) == 0xf0000000            /* 240.0.0.0/4 */
            || (a & 0xffffff00) == 0xc0000000         /* 192.0.0.0/24 */
            || (a & 0xfffe0000) == 0xc6120000)        /* 198.18.0.0/15 */
        {
            return "a reserved";
        }

        return NULL;

#if (NGX_HAVE_INET6)
    case AF_INET6:
        sin6 = (struct sockaddr_in6 *) sa;
        b = sin6->sin6_addr.s6_addr;

        if (IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr)) {
            return "an unspecified";
        }

        if (IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr)) {
            return "a loopback";
        }

        if (b[0] == 0xff) {
            return "a multicast";
        }

        if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) {  /* fe80::/10 */
            return "a link-local";
        }

        if ((b[0] & 0xfe) == 0xfc                     /* fc00::/7 */
            || (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0))  /* fec0::/10 */
        {
            return "a private";
        }

        if (IN6_IS_ADDR_V4COMPAT(&sin6->sin6_addr)
            || (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d
                && b[3] == 0xb8))                     /* 2001:db8::/32 */
        {
            return "a reserved";
        }

        return NULL;
#endif

    default:
        return "an unsupported";
    }
}


static ngx_uint_t
ngx_http_flowscale_webhook_cidr_match(ngx_array_t *allow, struct sockaddr *sa)
{
    in_addr_t                            a;
    ngx_uint_t                           i;
    struct sockaddr_in                   sin;
    ngx_http_flowscale_webhook_allow_t  *e;
#if (NGX_HAVE_INET6)
    ngx_uint_t                           n;
    struct sockaddr_in6                 *sin6;
#endif

    if (allow == NULL) {
        return 0;
    }

    sin.sin_family = AF_UNSPEC;
    ngx_http_flowscale_webhook_unmap(sa, &sin);

    e = allow->elts;

    for (i = 0; i < allow->nelts; i++) {

        if (e[i].type != NGX_HTTP_FLOWSCALE_WEBHOOK_CIDR) {
            continue;
        }

        switch (e[i].cidr.family) {

        case AF_INET:
            if (sa->sa_family == AF_INET) {
                a = ((struct sockaddr_in *) sa)->sin_addr.s_addr;

            } else if (sin.sin_family == AF_INET) {
                a = sin.sin_addr.s_addr;

            } else {
                continue;
            }

            if ((a & e[i].cidr.u.in.mask) == e[i].cidr.u.in.addr) {
                return 1;
            }

            break;

#if (NGX_HAVE_INET6)
        case AF_INET6:
            if (sa->sa_family != AF_INET6) {
                continue;
            }

            sin6 = (struct sockaddr_in6 *) sa;

            for (n = 0; n < 16; n++) {
                if ((sin6->sin6_addr.s6_addr[n]
                     & e[i].cidr.u.in6.mask.s6_addr[n])
                    != e[i].cidr.u.in6.addr.s6_addr[n])
                {
                    break;
                }
            }

            if (n == 16) {
                return 1;
            }

            break;
#endif
        }
    }

    return 0;
}


/*
 * NGX_HTTP_FLOWSCALE_WEBHOOK_HOST when an entry names the host exactly (its
 * addresses may then be private), _DOMAIN or _ANY when a wildcard covers it
 * (public addresses only), NGX_DECLINED when nothing does
 */

static ngx_int_t
ngx_http_flowscale_webhook_name_match(ngx_array_t *allow, ngx_str_t *host)
{
    size_t                               len;
    ngx_int_t                            rc;
    ngx_uint_t                           i;
    ngx_http_flowscale_webhook_allow_t  *e;

    if (allow == NULL) {
        return NGX_DECLINED;
    }

    len = host->len;

    if (len && host->data[len - 1] == '.') {
        len--;
    }

    rc = NGX_DECLINED;
    e = allow->elts;

    for (i = 0; i < allow->nelts; i++) {

        switch (e[i].type) {

        case NGX_HTTP_FLOWSCALE_WEBHOOK_HOST:
            if (e[i].name.len == len
                && ngx_strncasecmp(e[i].name.data, host->data, len) == 0)
            {
                return NGX_HTTP_FLOWSCALE_WEBHOOK_HOST;
            }

            break;

        case NGX_HTTP_FLOWSCALE_WEBHOOK_DOMAIN:
            if (len > e[i].name.len
                && ngx_strncasecmp(e[i].name.data,
                                   host->data + len - e[i].name.len,
                                   e[i].name.len)
                   == 0)
            {
                rc = NGX_HTTP_FLOWSCALE_WEBHOOK_DOMAIN;
            }

            break;

        case NGX_HTTP_FLOWSCALE_WEBHOOK_ANY:
            rc = NGX_HTTP_FLOWSCALE_WEBHOOK_ANY;
            break;
        }
    }

    return rc;
}


static ngx_uint_t
ngx_http_flowscale_webhook_has_resolver(ngx_http_flowscale_loc_conf_t *flcf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = flcf->webhook_clcf ? flcf->webhook_clcf : flcf->clcf;

    return clcf && clcf->resolver && clcf->resolver->connections.nelts;
}


const char *
ngx_http_flowscale_webhook_check(ngx_http_flowscale_loc_conf_t *flcf,
    ngx_str_t *url)
{
    u_char                            *p, *last;
    ngx_uint_t                         i, any;
    const char                        *err;
    ngx_http_flowscale_webhook_url_t   u;
    ngx_http_flowscale_webhook_allow_t *e;

    p = ngx_http_flowscale_webhook_msg;
    last = p + sizeof(ngx_http_flowscale_webhook_msg) - 1;

    err = ngx_http_flowscale_webhook_parse(url, &u);

    if (err) {
        p = ngx_snprintf(p, last - p, "The webhook URL %s.", err);
        goto message;
    }

    if (flcf->webhook_allow == NULL || flcf->webhook_allow->nelts == 0) {
        p = ngx_snprintf(p, last - p,
                         "Webhooks are not enabled for this deployment: no "
                         "flowscale_webhook_allow entry covers it (by "
                         "default no host is allowed).");
        goto message;
    }

#if !(NGX_SSL)
    if (u.ssl) {
        p = ngx_snprintf(p, last - p, "This nginx has no TLS support: use "
                         "an http:// webhook URL.");
        goto message;
    }
#endif

    if (u.ip) {
        if (ngx_http_flowscale_webhook_cidr_match(flcf->webhook_allow,
                                                  &u.sockaddr.sockaddr))
        {
            return NULL;
        }

        err = ngx_http_flowscale_webhook_special(&u.sockaddr.sockaddr);

        if (err) {
            p = ngx_snprintf(p, last - p,
                             "The webhook host %V is %s address, which is "
                             "refused unless a flowscale_webhook_allow CIDR "
                             "covers it.", &u.host, err);
            goto message;
        }

        any = 0;
        e = flcf->webhook_allow->elts;

        for (i = 0; i < flcf->webhook_allow->nelts; i++) {
            if (e[i].type == NGX_HTTP_FLOWSCALE_WEBHOOK_ANY) {
                any = 1;
            }
        }

        if (any) {
            return NULL;
        }

        p = ngx_snprintf(p, last - p, "The webhook host %V is not allowed "
                         "by flowscale_webhook_allow.", &u.host);
        goto message;
    }

    if (ngx_http_flowscale_webhook_name_match(flcf->webhook_allow, &u.host)
        == NGX_DECLINED)
    {
        p = ngx_snprintf(p, last - p, "The webhook host %V is not allowed "
                         "by flowscale_webhook_allow.", &u.host);
        goto message;
    }

    if (!ngx_http_flowscale_webhook_has_resolver(flcf)) {
        p = ngx_snprintf(p, last - p,
                         "The webhook host %V cannot be looked up: no "
                         "\"resolver\" is configured for this deployment "
                         "(configure one, or use an IP address).", &u.host);
        goto message;
    }

    return NULL;

message:

    *p = '\0';

    return (const char *) ngx_http_flowscale_webhook_msg;
}


/* delivery */


void
ngx_http_flowscale_webhook_deliver(ngx_http_flowscale_loc_conf_t *flcf,
    ngx_str_t *run_id, ngx_str_t *project, ngx_str_t *url, ngx_str_t *body,
    ngx_uint_t attempts)
{
    u_char                        *p;
    size_t                         len;
    ngx_pool_t                    *pool;
    const char                    *err;
    ngx_http_flowscale_webhook_t  *wh;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "flowscale webhook deliver: run %V to \"%V\"",
                   run_id, url);

    if (!ngx_http_flowscale_webhooks_ready) {
        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                      "flowscale: webhook of run %V outside a worker",
                      run_id);
        return;
    }

    err = ngx_http_flowscale_webhook_check(flcf, url);

    if (err) {
        /* the configuration changed since the run was created */
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "flowscale: webhook of run %V to \"%V\" not sent: %s",
                      run_id, url, err);
        return;
    }

    if (ngx_http_flowscale_webhooks_live
        >= NGX_HTTP_FLOWSCALE_WEBHOOK_MAX_LIVE)
    {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "flowscale: webhook of run %V to \"%V\" not sent: "
                      "%d deliveries are already pending in this worker",
                      run_id, url, NGX_HTTP_FLOWSCALE_WEBHOOK_MAX_LIVE);
        return;
    }

    pool = ngx_create_pool(NGX_HTTP_FLOWSCALE_WEBHOOK_POOL, ngx_cycle->log);
    if (pool == NULL) {
        return;
    }

    wh = ngx_pcalloc(pool, sizeof(ngx_http_flowscale_webhook_t));
    if (wh == NULL) {
        goto failed;
    }

    wh->pool = pool;
    wh->flcf = flcf;
    wh->attempt = attempts;

    len = run_id->len + project->len + url->len + body->len
          + sizeof("msg_") - 1 + run_id->len + url->len + 1;

    p = ngx_pnalloc(pool, len);
    if (p == NULL) {
        goto failed;
    }

    wh->run_id.data = p;
    wh->run_id.len = run_id->len;
    p = ngx_cpymem(p, run_id->data, run_id->len);

    wh->project.data = p;
    wh->project.len = project->len;
    p = ngx_cpymem(p, project->data, project->len);

    wh->url.data = p;
    wh->url.len = url->len;
    p = ngx_cpymem(p, url->data, url->len);

    wh->body.data = p;
    wh->body.len = body->len;
    p = ngx_cpymem(p, body->data, body->len);

    wh->msg_id.data = p;
    wh->msg_id.len = sizeof("msg_") - 1 + run_id->len;
    p = ngx_cpymem(p, "msg_", sizeof("msg_") - 1);
    p = ngx_cpymem(p, run_id->data, run_id->len);

    (void) ngx_http_flowscale_webhook_parse(&wh->url, &wh->u);

    /* for SNI, resolution and certificate checks */
    wh->host = p;
    p = ngx_cpymem(p, wh->u.host.data, wh->u.host.len);
    *p = '\0';

    wh->log = *ngx_cycle->log;
    wh->log.handler = ngx_http_flowscale_webhook_log_error;
    wh->log.data = wh;
    wh->log.action = NULL;
    pool->log = &wh->log;

    wh->timer.log = &wh->log;
    wh->timer.data = wh;

    ngx_queue_insert_tail(&ngx_http_flowscale_webhooks, &wh->queue);
    ngx_http_flowscale_webhooks_live++;

    ngx_http_flowscale_webhook_fetch_secret(wh);

    return;

failed:

    ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                  "flowscale: webhook of run %V not sent: out of memory",
                  run_id);

    ngx_destroy_pool(pool);
}


/*
 * The project's secret, created on first use, and the run marked
 * "pending" so that a delivery cut short by a restart can be found.
 */

static void
ngx_http_flowscale_webhook_fetch_secret(ngx_http_flowscale_webhook_t *wh)
{
    int                             lengths[2];
    const char                     *params[2];
    ngx_http_flowscale_pg_query_t  *q;

    params[0] = (const char *) wh->run_id.data;
    lengths[0] = (int) wh->run_id.len;
    params[1] = (const char *) wh->project.data;
    lengths[1] = (int) wh->project.len;

    wh->log.action = "reading the webhook secret";
    wh->waiting = 1;

    /* the answer may come inside the call: secret_done then runs there */
    q = ngx_http_flowscale_pg_query("SELECT flowscale.webhook_start($1, $2)",
                                    2, params, lengths,
                                    ngx_http_flowscale_webhook_secret_done,
                                    wh, &wh->log);

    if (q == NULL) {
        wh->waiting = 0;
        wh->attempt++;
        ngx_http_flowscale_webhook_fail(wh, NGX_HTTP_FLOWSCALE_WEBHOOK_RETRY,
                                        "database unavailable");
        return;
    }

    if (wh->waiting) {
        wh->query = q;
    }
}


/* takes the secret; the delivery goes on from the event loop */

static void
ngx_http_flowscale_webhook_secret_done(void *data, PGresult *res,
    const char *error)
{
    ngx_http_flowscale_webhook_t *wh = data;

    u_char     *s;
    size_t      len;
    ngx_str_t   src, dst;

    wh->query = NULL;
    wh->waiting = 0;
    wh->secret_how = NGX_HTTP_FLOWSCALE_WEBHOOK_RETRY;

    wh->timer.handler = ngx_http_flowscale_webhook_secret_next;
    wh->timer.cancelable = 0;
    ngx_add_timer(&wh->timer, 0);

    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK
        || PQntuples(res) != 1 || PQgetisnull(res, 0, 0))
    {
        wh->error_len = ngx_snprintf(wh->error, sizeof(wh->error),
                                     "cannot read the webhook secret: %s",
                                     res ? PQresultErrorMessage(res) : error)
                        - wh->error;
        return;
    }

    s = (u_char *) PQgetvalue(res, 0, 0);
    len = PQgetlength(res, 0, 0);

    if (len > sizeof("whsec_") - 1
        && ngx_strncmp(s, "whsec_", sizeof("whsec_") - 1) == 0)
    {
        s += sizeof("whsec_") - 1;
        len -= sizeof("whsec_") - 1;
    }

    src.data = s;
    src.len = len;

    dst.data = ngx_pnalloc(wh->pool, ngx_base64_decoded_length(len));
    if (dst.data == NULL) {
        wh->error_len = ngx_snprintf(wh->error, sizeof(wh->error),
                                     "out of memory") - wh->error;
        return;
    }

    if (ngx_decode_base64(&dst, &src) != NGX_OK || dst.len == 0) {
        wh->secret_how = NGX_HTTP_FLOWSCALE_WEBHOOK_GIVE_UP;
        wh->error_len = ngx_snprintf(wh->error, sizeof(wh->error),
                                     "the project's webhook secret is not "
                                     "\"whsec_\" and base64") - wh->error;
        return;
    }

    wh->key = dst.data;
    wh->key_len = dst.len;
}


static void
ngx_http_flowscale_webhook_secret_next(ngx_event_t *ev)
{
    ngx_http_flowscale_webhook_t *wh = ev->data;

    if (wh->key == NULL) {
        wh->attempt++;
        ngx_http_flowscale_webhook_finish(wh, 0, wh->secret_how);
        return;
    }

    ngx_http_flowscale_webhook_attempt(wh);
}


static void
ngx_http_flowscale_webhook_attempt(ngx_http_flowscale_webhook_t *wh)
{
    ngx_int_t                  rc;
    ngx_resolver_ctx_t        *ctx;
    ngx_http_core_loc_conf_t  *clcf;

    wh->attempt++;
    wh->error_len = 0;
    wh->connected = 0;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, &wh->log, 0,
                   "flowscale webhook attempt %ui", wh->attempt);

    wh->apool = ngx_create_pool(NGX_HTTP_FLOWSCALE_WEBHOOK_POOL, &wh->log);
    if (wh->apool == NULL) {
        ngx_http_flowscale_webhook_fail(wh, NGX_HTTP_FLOWSCALE_WEBHOOK_RETRY,
                                        "out of memory");
        return;
    }

    if (ngx_http_flowscale_webhook_request(wh) != NGX_OK) {
        ngx_http_flowscale_webhook_fail(wh, NGX_HTTP_FLOWSCALE_WEBHOOK_RETRY,
                                        "out of memory");
        return;
    }

    /* not cancelable: a worker that shuts down finishes the attempt */
    wh->timer.handler = ngx_http_flowscale_webhook_timeout;
    wh->timer.cancelable = 0;
    ngx_add_timer(&wh->timer, wh->flcf->webhook_timeout);

    if (wh->u.ip) {
        ngx_http_flowscale_webhook_connect(wh, &wh->u.sockaddr.sockaddr,
                                           wh->u.socklen);
        return;
    }

    clcf = wh->flcf->webhook_clcf ? wh->flcf->webhook_clcf : wh->flcf->clcf;

    wh->log.action = "resolving the webhook host";

    ctx = ngx_resolve_start(clcf->resolver, NULL);

    if (ctx == NULL) {
        ngx_http_flowscale_webhook_fail(wh, NGX_HTTP_FLOWSCALE_WEBHOOK_RETRY,
                                        "out of memory");
        return;
    }

    if (ctx == NGX_NO_RESOLVER) {
        ngx_http_flowscale_webhook_fail(wh,
                                        NGX_HTTP_FLOWSCALE_WEBHOOK_GIVE_UP,
                                        "no resolver is configured to look "
                                        "up %V", &wh->u.host);
        return;
    }

    ctx->name = wh->u.host;
    ctx->handler = ngx_http_flowscale_webhook_resolved;
    ctx->data = wh;
    ctx->timeout = clcf->resolver_timeout;
    ctx->cancelable = 1;

    wh->resolving = ctx;

    /* the handler may run inside, with a cached answer */
    rc = ngx_resolve_name(ctx);

    if (rc != NGX_OK) {
        /* the resolver freed ctx */
        wh->resolving = NULL;
        ngx_http_flowscale_webhook_fail(wh, NGX_HTTP_FLOWSCALE_WEBHOOK_RETRY,
                                        "cannot resolve %V", &wh->u.host);
    }
}


/* the request bytes, signed with the time of this attempt */

static ngx_int_t
ngx_http_flowscale_webhook_request(ngx_http_flowscale_webhook_t *wh)
{
    u_char        *p, *content, md[EVP_MAX_MD_SIZE];
    size_t         len, clen;
    time_t         now;
    ngx_str_t      mac, sig;
    ngx_buf_t     *b;
    unsigned int   mdlen;

    now = ngx_time();

    /* "msg_<id>.<timestamp>.<body>" */

    clen = wh->msg_id.len + 1 + NGX_TIME_T_LEN + 1 + wh->body.len;

    content = ngx_pnalloc(wh->apool, clen);
    if (content == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(content, "%V.%T.", &wh->msg_id, now);
    p = ngx_cpymem(p, wh->body.data, wh->body.len);
    clen = p - content;

    if (HMAC(EVP_sha256(), wh->key, (int) wh->key_len, content, clen, md,
             &mdlen)
        == NULL)
    {
        ngx_log_error(NGX_LOG_ERR, &wh->log, 0, "HMAC() failed");
        return NGX_ERROR;
    }

    mac.data = md;
    mac.len = mdlen;

    sig.data = ngx_pnalloc(wh->apool, ngx_base64_encoded_length(mdlen));
    if (sig.data == NULL) {
        return NGX_ERROR;
    }

    ngx_encode_base64(&sig, &mac);

    ngx_pfree(wh->apool, content);

    len = sizeof("POST / HTTP/1.1" CRLF) - 1 + wh->u.path.len
          + sizeof("Host: " CRLF) - 1 + wh->u.authority.len
          + sizeof("User-Agent: FlowScale-nginx" CRLF) - 1
          + sizeof("Content-Type: application/json" CRLF) - 1
          + sizeof("Content-Length: " CRLF) - 1 + NGX_SIZE_T_LEN
          + sizeof("webhook-id: " CRLF) - 1 + wh->msg_id.len
          + sizeof("webhook-timestamp: " CRLF) - 1 + NGX_TIME_T_LEN
          + sizeof("webhook-signature: v1," CRLF) - 1 + sig.len
          + sizeof("Connection: close" CRLF CRLF) - 1
          + wh->body.len;

    b = ngx_create_temp_buf(wh->apool, len);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->last = ngx_sprintf(b->last,
                          "POST %s%V HTTP/1.1" CRLF
                          "Host: %V" CRLF
                          "User-Agent: FlowScale-nginx" CRLF
                          "Content-Type: application/json" CRLF
                          "Content-Length: %uz" CRLF
                          "webhook-id: %V" CRLF
                          "webhook-timestamp: %T" CRLF
                          "webhook-signature: v1,%V" CRLF
                          "Connection: close" CRLF CRLF,
                          wh->u.slash ? "/" : "", &wh->u.path,
                          &wh->u.authority, wh->body.len, &wh->msg_id, now,
                          &sig);

    b->last = ngx_cpymem(b->last, wh->body.data, wh->body.len);

    wh->out = b;

    wh->in = ngx_create_temp_buf(wh->apool, NGX_HTTP_FLOWSCALE_WEBHOOK_IN);
    if (wh->in == NULL) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_http_flowscale_webhook_resolved(ngx_resolver_ctx_t *ctx)
{
    ngx_http_flowscale_webhook_t *wh = ctx->data;

    u_char                 text[NGX_SOCKADDR_STRLEN];
    ngx_int_t              match;
    ngx_str_t              refused;
    ngx_uint_t             i, naddrs;
    socklen_t              len;
    const char            *special, *why;
    struct sockaddr       *sa;

    if (ctx->state) {
        wh->resolving = NULL;
        ngx_resolve_name_done(ctx);

        ngx_http_flowscale_webhook_fail(wh, NGX_HTTP_FLOWSCALE_WEBHOOK_RETRY,
                                        "%V could not be resolved (%i: %s)",
                                        &wh->u.host, ctx->state,
                                        ngx_resolver_strerror(ctx->state));
        return;
    }

    match = ngx_http_flowscale_webhook_name_match(wh->flcf->webhook_allow,
                                                  &wh->u.host);
    sa = NULL;
    len = 0;
    why = NULL;
    refused.len = 0;
    refused.data = text;

    for (i = 0; i < ctx->naddrs; i++) {
        special = ngx_http_flowscale_webhook_special(ctx->addrs[i].sockaddr);

        if (ngx_http_flowscale_webhook_cidr_match(wh->flcf->webhook_allow,
                                                  ctx->addrs[i].sockaddr)
            || match == NGX_HTTP_FLOWSCALE_WEBHOOK_HOST
            || (special == NULL && match != NGX_DECLINED))
        {
            len = ctx->addrs[i].socklen;
            sa = ngx_palloc(wh->apool, len);

            if (sa) {
                ngx_memcpy(sa, ctx->addrs[i].sockaddr, len);
                ngx_inet_set_port(sa, wh->u.port);
            }

            break;
        }

        if (refused.len == 0) {
            refused.len = ngx_sock_ntop(ctx->addrs[i].sockaddr,
                                        ctx->addrs[i].socklen, text,
                                        NGX_SOCKADDR_STRLEN, 0);
            why = special ? special : "a not allowed";
        }
    }

    naddrs = ctx->naddrs;

    wh->resolving = NULL;
    ngx_resolve_name_done(ctx);

    if (sa == NULL && i < naddrs) {
        ngx_http_flowscale_webhook_fail(wh, NGX_HTTP_FLOWSCALE_WEBHOOK_RETRY,
                                        "out of memory");
        return;
    }

    if (sa == NULL) {
        ngx_http_flowscale_webhook_fail(wh,
                                        NGX_HTTP_FLOWSCALE_WEBHOOK_GIVE_UP,
                                        "%V resolves to %V, %s address, "
                                        "which flowscale_webhook_allow does "
                                        "not cover", &wh->u.host, &refused,
                                        why ? why : "an unknown");
        return;
    }

    ngx_http_flowscale_webhook_connect(wh, sa, len);
}


static void
ngx_http_flowscale_webhook_connect(ngx_http_flowscale_webhook_t *wh,
    struct sockaddr *sa, socklen_t len)
{
    ngx_int_t          rc;
    ngx_connection_t  *c;

    wh->address.data = ngx_pnalloc(wh->apool, NGX_SOCKADDR_STRLEN);
    if (wh->address.data == NULL) {
        ngx_http_flowscale_webhook_fail(wh, NGX_HTTP_FLOWSCALE_WEBHOOK_RETRY,
                                        "out of memory");
        return;
    }

    wh->address.len = ngx_sock_ntop(sa, len, wh->address.data,
                                    NGX_SOCKADDR_STRLEN, 1);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, &wh->log, 0,
                   "flowscale webhook connect to %V", &wh->address);

    ngx_memzero(&wh->peer, sizeof(ngx_peer_connection_t));

    wh->peer.sockaddr = sa;
    wh->peer.socklen = len;
    wh->peer.name = &wh->address;
    wh->peer.get = ngx_event_get_peer;
    wh->peer.log = &wh->log;
    wh->peer.log_error = NGX_ERROR_ERR;
    wh->peer.tries = 1;

    wh->log.action = "connecting to the webhook receiver";

    rc = ngx_event_connect_peer(&wh->peer);

    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        wh->peer.connection = NULL;
        ngx_http_flowscale_webhook_fail(wh, NGX_HTTP_FLOWSCALE_WEBHOOK_RETRY,
                                        "cannot connect to %V",
                                        &wh->address);
        return;
    }

    c = wh->peer.connection;

    c->data = wh;
    c->pool = wh->apool;
    c->read->handler = ngx_http_flowscale_webhook_handler;
    c->write->handler = ngx_http_flowscale_webhook_handler;

    wh->log.connection = c->number;

    if (rc == NGX_OK) {
        ngx_post_event(c->write, &ngx_posted_events);
    }
}


static void
ngx_http_flowscale_webhook_handler(ngx_event_t *ev)
{
    int                            err;
    socklen_t                      len;
    ngx_connection_t              *c;
    ngx_http_flowscale_webhook_t  *wh;
    u_char                         text[NGX_MAX_ERROR_STR];

    c = ev->data;
    wh = c->data;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, &wh->log, 0,
                   "flowscale webhook %s event", ev->write ? "write" : "read");

    if (!wh->connected) {
        err = 0;
        len = sizeof(int);

        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (void *) &err, &len)
            == -1)
        {
            err = ngx_socket_errno;
        }

        if (err) {
            *ngx_strerror(err, text, sizeof(text) - 1) = '\0';
            ngx_http_flowscale_webhook_fail(wh,
                                            NGX_HTTP_FLOWSCALE_WEBHOOK_RETRY,
                                            "connect() to %V failed: %s",
                                            &wh->address, text);
            return;
        }

        wh->connected = 1;

#if (NGX_SSL)
        if (wh->u.ssl) {
            ngx_http_flowscale_webhook_ssl_init(wh);
            return;
        }
#endif
    }

    ngx_http_flowscale_webhook_process(wh);
}


#if (NGX_SSL)

static void
ngx_http_flowscale_webhook_ssl_init(ngx_http_flowscale_webhook_t *wh)
{
    ngx_int_t          rc;
    ngx_connection_t  *c;

    c = wh->peer.connection;

    if (wh->flcf->webhook_ssl == NULL
        || ngx_ssl_create_connection(wh->flcf->webhook_ssl, c,
                                     NGX_SSL_BUFFER|NGX_SSL_CLIENT)
           != NGX_OK)
    {
        ngx_http_flowscale_webhook_fail(wh, NGX_HTTP_FLOWSCALE_WEBHOOK_RETRY,
                                        "cannot start TLS");
        return;
    }

    c->sendfile = 0;

    /* SNI: as per RFC 6066, never for a literal address */

    if (!wh->u.ip
        && SSL_set_tlsext_host_name(c->ssl->connection, (char *) wh->host)
           == 0)
    {
        ngx_ssl_error(NGX_LOG_ERR, &wh->log, 0,
                      "SSL_set_tlsext_host_name(\"%s\") failed", wh->host);
        ngx_http_flowscale_webhook_fail(wh, NGX_HTTP_FLOWSCALE_WEBHOOK_RETRY,
                                        "cannot start TLS");
        return;
    }

    wh->log.action = "TLS handshaking with the webhook receiver";

    rc = ngx_ssl_handshake(c);

    if (rc == NGX_AGAIN) {
        c->ssl->handler = ngx_http_flowscale_webhook_ssl_handshake;
        return;
    }

    ngx_http_flowscale_webhook_ssl_handshake(c);
}


static void
ngx_http_flowscale_webhook_ssl_handshake(ngx_connection_t *c)
{
    ngx_http_flowscale_webhook_t  *wh;

    wh = c->data;

    if (!c->ssl->handshaked) {
        ngx_http_flowscale_webhook_fail(wh, NGX_HTTP_FLOWSCALE_WEBHOOK_RETRY,
                                        "TLS handshake with %V failed",
                                        &wh->address);
        return;
    }

    if (wh->flcf->webhook_ssl_verify
        && ngx_http_flowscale_webhook_ssl_verify(wh, c) != NGX_OK)
    {
        return;
    }

    c->read->handler = ngx_http_flowscale_webhook_handler;
    c->write->handler = ngx_http_flowscale_webhook_handler;

    ngx_http_flowscale_webhook_process(wh);
}


static ngx_int_t
ngx_http_flowscale_webhook_ssl_verify(ngx_http_flowscale_webhook_t *wh,
    ngx_connection_t *c)
{
    long   rc;
    X509  *cert;

    rc = SSL_get_verify_result(c->ssl->connection);

    if (rc != X509_V_OK) {
        ngx_http_flowscale_webhook_fail(wh, NGX_HTTP_FLOWSCALE_WEBHOOK_RETRY,
                                        "the certificate of %V cannot be "
                                        "verified: %s (%l)", &wh->u.host,
                                        X509_verify_cert_error_string(rc),
                                        rc);
        return NGX_ERROR;
    }

    if (!wh->u.ip) {
        if (ngx_ssl_check_host(c, &wh->u.host) == NGX_OK) {
            return NGX_OK;
        }

    } else {
        cert = SSL_get1_peer_certificate(c->ssl->connection);

        if (cert) {
            rc = X509_check_ip_asc(cert, (char *) wh->host, 0);
            X509_free(cert);

            if (rc == 1) {
                return NGX_OK;
            }
        }
    }

    ngx_http_flowscale_webhook_fail(wh, NGX_HTTP_FLOWSCALE_WEBHOOK_RETRY,
                                    "the certificate does not match %V",
                                    &wh->u.host);
    return NGX_ERROR;
}

#endif


/* sends the request, then reads until the status line is complete */

static void
ngx_http_flowscale_webhook_process(ngx_http_flowscale_webhook_t *wh)
{
    ssize_t            n;
    ngx_int_t          rc;
    ngx_buf_t         *b;
    ngx_uint_t         status;
    ngx_connection_t  *c;

    c = wh->peer.connection;
    b = wh->out;

    if (b->pos < b->last) {
        wh->log.action = "sending the webhook";

        while (b->pos < b->last) {
            n = c->send(c, b->pos, b->last - b->pos);

            if (n == NGX_ERROR) {
                ngx_http_flowscale_webhook_fail(wh,
                                            NGX_HTTP_FLOWSCALE_WEBHOOK_RETRY,
                                            "cannot send to %V",
                                            &wh->address);
                return;
            }

            if (n == NGX_AGAIN || n == 0) {
                if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
                    ngx_http_flowscale_webhook_fail(wh,
                                            NGX_HTTP_FLOWSCALE_WEBHOOK_RETRY,
                                            "cannot send to %V",
                                            &wh->address);
                }

                return;
            }

            b->pos += n;
        }
    }

    wh->log.action = "reading the webhook receiver's answer";

    b = wh->in;

    for ( ;; ) {
        n = c->recv(c, b->last, b->end - b->last);

        if (n == NGX_AGAIN) {
            if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
                ngx_http_flowscale_webhook_fail(wh,
                                            NGX_HTTP_FLOWSCALE_WEBHOOK_RETRY,
                                            "cannot read from %V",
                                            &wh->address);
            }

            return;
        }

        if (n == NGX_ERROR || n == 0) {
            ngx_http_flowscale_webhook_fail(wh,
                                            NGX_HTTP_FLOWSCALE_WEBHOOK_RETRY,
                                            "%V closed the connection "
                                            "without an HTTP answer",
                                            &wh->address);
            return;
        }

        b->last += n;

        rc = ngx_http_flowscale_webhook_status(b, &status);

        if (rc == NGX_AGAIN) {
            if (b->last == b->end) {
                rc = NGX_ERROR;

            } else {
                continue;
            }
        }

        if (rc == NGX_ERROR) {
            ngx_http_flowscale_webhook_fail(wh,
                                            NGX_HTTP_FLOWSCALE_WEBHOOK_RETRY,
                                            "%V sent an invalid HTTP answer",
                                            &wh->address);
            return;
        }

        ngx_http_flowscale_webhook_finish(wh, status,
                                          NGX_HTTP_FLOWSCALE_WEBHOOK_RETRY);
        return;
    }
}


/* "HTTP/1.x NNN ...": NGX_OK, NGX_AGAIN (no line end yet), NGX_ERROR */

static ngx_int_t
ngx_http_flowscale_webhook_status(ngx_buf_t *b, ngx_uint_t *status)
{
    u_char  *p, *lf;

    lf = ngx_strlchr(b->pos, b->last, LF);

    if (lf == NULL) {
        return NGX_AGAIN;
    }

    p = b->pos;

    if (lf - p < 12
        || ngx_strncmp(p, "HTTP/", 5) != 0
        || p[5] < '0' || p[5] > '9' || p[6] != '.'
        || p[7] < '0' || p[7] > '9' || p[8] != ' '
        || p[9] < '1' || p[9] > '5'
        || p[10] < '0' || p[10] > '9' || p[11] < '0' || p[11] > '9')
    {
        return NGX_ERROR;
    }

    *status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');

    return NGX_OK;
}


static void
ngx_http_flowscale_webhook_timeout(ngx_event_t *ev)
{
    ngx_http_flowscale_webhook_t *wh = ev->data;

    ngx_http_flowscale_webhook_fail(wh, NGX_HTTP_FLOWSCALE_WEBHOOK_RETRY,
                                    "timed out after %M ms %s",
                                    wh->flcf->webhook_timeout,
                                    wh->log.action ? wh->log.action : "");
}


static void
ngx_http_flowscale_webhook_retry_handler(ngx_event_t *ev)
{
    ngx_http_flowscale_webhook_t *wh = ev->data;

    if (wh->key == NULL) {
        ngx_http_flowscale_webhook_fetch_secret(wh);
        return;
    }

    ngx_http_flowscale_webhook_attempt(wh);
}


/* an attempt ended without an HTTP answer: the reason goes on record */

static void
ngx_http_flowscale_webhook_fail(ngx_http_flowscale_webhook_t *wh,
    ngx_uint_t how, const char *fmt, ...)
{
    u_char   *p;
    va_list   args;

    va_start(args, fmt);
    p = ngx_vslprintf(wh->error, wh->error + sizeof(wh->error), fmt, args);
    va_end(args);

    wh->error_len = p - wh->error;

    ngx_http_flowscale_webhook_finish(wh, 0, how);
}


/*
 * The end of an attempt: status is the receiver's answer, or 0 with the
 * reason in wh->error.  Records it, then retries later or lets go.
 */

static void
ngx_http_flowscale_webhook_finish(ngx_http_flowscale_webhook_t *wh,
    ngx_uint_t status, ngx_uint_t how)
{
    ngx_uint_t    n;
    ngx_msec_t    next, *delays;
    const char   *final;

    ngx_http_flowscale_webhook_end_attempt(wh);

    final = NULL;
    next = 0;

    if (status >= 200 && status < 300) {
        final = "delivered";

    } else if (status) {
        wh->error_len = ngx_snprintf(wh->error, sizeof(wh->error),
                                     "%V answered %ui%s", &wh->u.host,
                                     status,
                                     (status >= 300 && status < 400)
                                     ? " (redirects are not followed)" : "")
                        - wh->error;

        if (status < 500 && status != 408 && status != 429) {
            how = NGX_HTTP_FLOWSCALE_WEBHOOK_GIVE_UP;
        }
    }

    if (final == NULL) {
        if (wh->flcf->webhook_retry) {
            delays = wh->flcf->webhook_retry->elts;
            n = wh->flcf->webhook_retry->nelts;

        } else {
            delays = ngx_http_flowscale_webhook_default_retry;
            n = sizeof(ngx_http_flowscale_webhook_default_retry)
                / sizeof(ngx_msec_t);
        }

        if (how == NGX_HTTP_FLOWSCALE_WEBHOOK_GIVE_UP || wh->attempt > n) {
            final = "failed";

        } else {
            next = delays[wh->attempt - 1];
        }
    }

    if (final && final[0] == 'd') {
        ngx_log_error(NGX_LOG_INFO, &wh->log, 0,
                      "flowscale: webhook delivered: %ui", status);

    } else if (final) {
        ngx_log_error(NGX_LOG_ERR, &wh->log, 0,
                      "flowscale: webhook given up: %*s",
                      wh->error_len, wh->error);

    } else {
        ngx_log_error(NGX_LOG_WARN, &wh->log, 0,
                      "flowscale: webhook attempt failed, next in %M ms: %*s",
                      next, wh->error_len, wh->error);
    }

    ngx_http_flowscale_webhook_record(wh, status, next, final);

    if (final || ngx_exiting || ngx_terminate || ngx_quit) {
        /* an exiting worker leaves a retry to a later resume (next_at) */
        ngx_http_flowscale_webhook_free(wh);
        return;
    }

    /* cancelable: a pending retry never keeps a worker from exiting */
    wh->timer.handler = ngx_http_flowscale_webhook_retry_handler;
    wh->timer.cancelable = 1;
    ngx_add_timer(&wh->timer, next);
}


static void
ngx_http_flowscale_webhook_record(ngx_http_flowscale_webhook_t *wh,
    ngx_uint_t status, ngx_msec_t next, const char *final)
{
    u_char       attempt[NGX_INT_T_LEN + 1], code[NGX_INT_T_LEN + 1];
    u_char       in[NGX_INT_T_LEN + 1], error[sizeof(wh->error) + 1];
    int          lengths[7];
    const char  *params[7];

    *ngx_sprintf(attempt, "%ui", wh->attempt) = '\0';
    *ngx_sprintf(code, "%ui", status) = '\0';
    *ngx_sprintf(in, "%M", next) = '\0';
    *ngx_cpymem(error, wh->error, wh->error_len) = '\0';

    params[0] = (const char *) wh->run_id.data;
    lengths[0] = (int) wh->run_id.len;
    params[1] = (const char *) attempt;
    lengths[1] = (int) ngx_strlen(attempt);
    params[2] = (const char *) wh->url.data;
    lengths[2] = (int) wh->url.len;
    params[3] = status ? (const char *) code : NULL;
    lengths[3] = (int) ngx_strlen(code);
    params[4] = wh->error_len ? (const char *) error : NULL;
    lengths[4] = (int) wh->error_len;
    params[5] = (final == NULL) ? (const char *) in : NULL;
    lengths[5] = (int) ngx_strlen(in);
    params[6] = final;
    lengths[6] = final ? (int) ngx_strlen(final) : 0;

    /* fire and forget: nothing else waits for the record */
    if (ngx_http_flowscale_pg_query(
            "SELECT flowscale.record_webhook_attempt($1, $2, $3, $4, $5, "
            "$6, $7)", 7, params, lengths,
            ngx_http_flowscale_webhook_recorded, NULL, ngx_cycle->log)
        == NULL)
    {
        ngx_log_error(NGX_LOG_ERR, &wh->log, 0,
                      "flowscale: webhook attempt not recorded: database "
                      "unavailable");
    }
}


static void
ngx_http_flowscale_webhook_recorded(void *data, PGresult *res,
    const char *error)
{
    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "flowscale: webhook attempt not recorded: %s",
                      res ? PQresultErrorMessage(res) : error);
    }
}


/* closes what one attempt opened; the delivery itself stays */

static void
ngx_http_flowscale_webhook_end_attempt(ngx_http_flowscale_webhook_t *wh)
{
    ngx_connection_t  *c;

    if (wh->timer.timer_set) {
        ngx_del_timer(&wh->timer);
    }

    if (wh->query) {
        ngx_http_flowscale_pg_cancel(wh->query);
        wh->query = NULL;
    }

    if (wh->resolving) {
        ngx_resolve_name_done(wh->resolving);
        wh->resolving = NULL;
    }

    c = wh->peer.connection;

    if (c) {
#if (NGX_SSL)
        if (c->ssl) {
            c->ssl->no_wait_shutdown = 1;
            c->ssl->no_send_shutdown = 1;
            (void) ngx_ssl_shutdown(c);
        }
#endif
        ngx_close_connection(c);
        wh->peer.connection = NULL;
    }

    if (wh->apool) {
        ngx_destroy_pool(wh->apool);
        wh->apool = NULL;
    }

    wh->log.action = NULL;
    wh->log.connection = 0;
}


static void
ngx_http_flowscale_webhook_free(ngx_http_flowscale_webhook_t *wh)
{
    ngx_http_flowscale_webhook_end_attempt(wh);

    ngx_queue_remove(&wh->queue);
    ngx_http_flowscale_webhooks_live--;

    ngx_destroy_pool(wh->pool);
}


static u_char *
ngx_http_flowscale_webhook_log_error(ngx_log_t *log, u_char *buf, size_t len)
{
    u_char                        *p;
    ngx_http_flowscale_webhook_t  *wh;

    p = buf;

    if (log->action) {
        p = ngx_snprintf(buf, len, " while %s", log->action);
        len -= p - buf;
        buf = p;
    }

    wh = log->data;

    return ngx_snprintf(buf, len, ", webhook of run %V to \"%V\", attempt %ui",
                        &wh->run_id, &wh->url, wh->attempt);
}


/* process life */


ngx_int_t
ngx_http_flowscale_webhook_init_process(ngx_cycle_t *cycle)
{
    ngx_queue_init(&ngx_http_flowscale_webhooks);
    ngx_http_flowscale_webhooks_live = 0;
    ngx_http_flowscale_webhooks_ready = 1;

    return NGX_OK;
}


void
ngx_http_flowscale_webhook_exit_process(ngx_cycle_t *cycle)
{
    ngx_queue_t                   *q;
    ngx_http_flowscale_webhook_t  *wh;

    if (!ngx_http_flowscale_webhooks_ready) {
        return;
    }

    /* pending retries: their next_at is in PostgreSQL */

    while (!ngx_queue_empty(&ngx_http_flowscale_webhooks)) {
        q = ngx_queue_head(&ngx_http_flowscale_webhooks);
        wh = ngx_queue_data(q, ngx_http_flowscale_webhook_t, queue);

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, cycle->log, 0,
                       "flowscale webhook of run %V left pending",
                       &wh->run_id);

        ngx_http_flowscale_webhook_free(wh);
    }

    ngx_http_flowscale_webhooks_ready = 0;
}
