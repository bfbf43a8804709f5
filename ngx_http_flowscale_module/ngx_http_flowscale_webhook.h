
/*
 * FlowScale for nginx: webhooks.  When a run ends, its JSON is POSTed to
 * the URL the caller gave, signed per Standard Webhooks with the project's
 * secret, retried with backoff, every attempt recorded in PostgreSQL.  Only
 * hosts that flowscale_webhook_allow names are called.
 */


#ifndef _NGX_HTTP_FLOWSCALE_WEBHOOK_H_INCLUDED_
#define _NGX_HTTP_FLOWSCALE_WEBHOOK_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_flowscale_module.h"


#define NGX_HTTP_FLOWSCALE_WEBHOOK_MAX_URL   2048

#define NGX_HTTP_FLOWSCALE_WEBHOOK_CA  "/etc/ssl/certs/ca-certificates.crt"


/* one flowscale_webhook_allow entry */

#define NGX_HTTP_FLOWSCALE_WEBHOOK_ANY      0   /* "*": any public host */
#define NGX_HTTP_FLOWSCALE_WEBHOOK_HOST     1   /* "hooks.example.com" */
#define NGX_HTTP_FLOWSCALE_WEBHOOK_DOMAIN   2   /* "*.example.com" */
#define NGX_HTTP_FLOWSCALE_WEBHOOK_CIDR     3   /* "10.1.0.0/16", "::1" */

typedef struct {
    ngx_uint_t                      type;
    ngx_str_t                       name;   /* lower case; ".example.com" */
    ngx_cidr_t                      cidr;
} ngx_http_flowscale_webhook_allow_t;


/* directives (ngx_http_flowscale_module.c lists them) */
char *ngx_http_flowscale_webhook_allow(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_flowscale_webhook_retry(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_flowscale_webhook_merge(ngx_conf_t *cf,
    ngx_http_flowscale_loc_conf_t *prev, ngx_http_flowscale_loc_conf_t *conf);

ngx_int_t ngx_http_flowscale_webhook_init_process(ngx_cycle_t *cycle);
void ngx_http_flowscale_webhook_exit_process(ngx_cycle_t *cycle);

/*
 * POST time: NULL if the URL may be used, else a plain message naming what
 * is wrong (valid until the next call).
 */
const char *ngx_http_flowscale_webhook_check(
    ngx_http_flowscale_loc_conf_t *flcf, ngx_str_t *url);

/*
 * A run ended (called in the worker that recorded it): delivers body (the
 * run JSON) to url.  Copies what it needs, retries on its own timers,
 * records every attempt.  Never fails the caller: problems are logged.
 * attempts: how many were made before (a delivery that a restart or a
 * reload left behind, resumed), 0 for a new one.
 */
void ngx_http_flowscale_webhook_deliver(ngx_http_flowscale_loc_conf_t *flcf,
    ngx_str_t *run_id, ngx_str_t *project, ngx_str_t *url, ngx_str_t *body,
    ngx_uint_t attempts);

/* webhook_resume.c: the leader's timer */
void ngx_http_flowscale_webhook_resume_tick(void);


#endif /* _NGX_HTTP_FLOWSCALE_WEBHOOK_H_INCLUDED_ */
