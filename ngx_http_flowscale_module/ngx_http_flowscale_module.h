
/*
 * FlowScale for nginx: configuration shared by the module's files.
 */


#ifndef _NGX_HTTP_FLOWSCALE_MODULE_H_INCLUDED_
#define _NGX_HTTP_FLOWSCALE_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <libpq-fe.h>

#include "ngx_http_flowscale_workflow.h"
#include "ngx_http_flowscale_runs.h"


#define NGX_HTTP_FLOWSCALE_DEFAULT_PROJECT  "default"
#define NGX_HTTP_FLOWSCALE_DEFAULT_ZONE     "flowscale"
#define NGX_HTTP_FLOWSCALE_DEFAULT_ZONE_SIZE  (32 * 1024 * 1024)
#define NGX_HTTP_FLOWSCALE_DEFAULT_POOL     4
#define NGX_HTTP_FLOWSCALE_UNPROCESSABLE    422

/* issue 9: flowscale_app off|on|public */
#define NGX_HTTP_FLOWSCALE_APP_OFF        0
#define NGX_HTTP_FLOWSCALE_APP_ON         1
#define NGX_HTTP_FLOWSCALE_APP_PUBLIC     2


/* where a directive was written, for messages given after parsing */
typedef struct {
    ngx_str_t                       directive;
    ngx_str_t                       file;
    ngx_uint_t                      line;
} ngx_http_flowscale_origin_t;


typedef struct {
    ngx_str_t                       conninfo;
    ngx_uint_t                      pool_size;
    ngx_http_flowscale_origin_t    *origin;
} ngx_http_flowscale_db_conf_t;


typedef struct {
    ngx_shm_zone_t                 *shm_zone;
    ngx_http_flowscale_db_conf_t   *db;
    ngx_array_t                     deployments;   /* loc_conf_t * */
    ngx_msec_t                      lease;         /* flowscale_lease */

    /* webhooks (ngx_http_flowscale_webhook.c) */
    ngx_str_t                       webhook_trusted_certificate;
#if (NGX_SSL)
    ngx_ssl_t                      *webhook_ssl;   /* one client context */
#endif
    ngx_uint_t                      webhook_ca_loaded;

    /* issue 8: flowscale_openapi and flowscale_docs locations */
    ngx_array_t                    *openapi;       /* loc_conf_t * */
} ngx_http_flowscale_main_conf_t;


typedef struct {
    /* a deployment: set only in its own location, never inherited */
    ngx_str_t                       name;
    ngx_str_t                       location;
    fs_deployment_t                *deployment;
    ngx_http_flowscale_origin_t    *origin;        /* flowscale_deployment */
    ngx_http_flowscale_origin_t    *workflow_origin;
    ngx_str_t                       descriptor;    /* GET L, pre-rendered */
    ngx_str_t                       descriptor_tail;  /* after "state" */

    /* inherited downwards */
    ngx_str_t                       project;
    ngx_str_t                       backend_name;
    ngx_http_flowscale_origin_t    *backend_origin;
    ngx_http_upstream_srv_conf_t   *backend;
    ngx_uint_t                      backend_depth;
    ngx_msec_t                      max_wait;
    ngx_msec_t                      run_timeout;
    ngx_uint_t                      retries;
    ngx_msec_t                      health_interval;
    ngx_uint_t                      queue_size;

    ngx_http_core_loc_conf_t       *clcf;
    ngx_http_upstream_conf_t        output_upstream;

    /* API keys (ngx_http_flowscale_auth.c), inherited downwards */
    ngx_flag_t                      api_key;        /* flowscale_api_key */
    ngx_uint_t                      key_concurrency; /* 0: unlimited */

    /* webhooks (ngx_http_flowscale_webhook.c), inherited downwards */
    ngx_array_t                    *webhook_allow;     /* of _allow_t */
    ngx_array_t                    *webhook_retry;     /* of ngx_msec_t */
    ngx_msec_t                      webhook_timeout;
    ngx_flag_t                      webhook_ssl_verify;
    ngx_http_core_loc_conf_t       *webhook_clcf;      /* its resolver */
#if (NGX_SSL)
    ngx_ssl_t                      *webhook_ssl;
#endif

    /* issue 9: the app at L/app/ (ngx_http_flowscale_app.c), inherited */
    ngx_uint_t                      app;        /* NGX_HTTP_FLOWSCALE_APP_* */

    /* issue 8: the pre-rendered OpenAPI document or docs page of this
       location (ngx_http_flowscale_openapi.h), never inherited */
    void                           *openapi;
} ngx_http_flowscale_loc_conf_t;


extern ngx_module_t  ngx_http_flowscale_module;


ngx_http_flowscale_origin_t *ngx_http_flowscale_origin(ngx_conf_t *cf);

char *ngx_http_flowscale_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_flowscale_zone_default(ngx_conf_t *cf,
    ngx_http_flowscale_main_conf_t *fmcf);

char *ngx_http_flowscale_database(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_flowscale_least_jobs(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

ngx_int_t ngx_http_flowscale_read_conf_file(ngx_conf_t *cf, ngx_str_t *name,
    ngx_str_t *text);
char *ngx_http_flowscale_deployment_check(ngx_conf_t *cf,
    ngx_http_flowscale_loc_conf_t *flcf);

ngx_int_t ngx_http_flowscale_handler(ngx_http_request_t *r);

ngx_int_t ngx_http_flowscale_send_json(ngx_http_request_t *r,
    ngx_uint_t status, ngx_str_t *content_type, ngx_str_t *body);
ngx_int_t ngx_http_flowscale_problem(ngx_http_request_t *r,
    ngx_uint_t status, const char *type, const char *title,
    const char *detail);
ngx_int_t ngx_http_flowscale_problem_errors(ngx_http_request_t *r,
    ngx_uint_t status, const char *type, const char *title,
    const char *detail, json_t *errors);
ngx_int_t ngx_http_flowscale_unavailable(ngx_http_request_t *r);
void ngx_http_flowscale_finalize(ngx_http_request_t *r, ngx_int_t rc);
ngx_int_t ngx_http_flowscale_send_value(ngx_http_request_t *r,
    ngx_uint_t status, ngx_str_t *content_type, json_t *v,
    ngx_uint_t newline);
ngx_int_t ngx_http_flowscale_sse_start(ngx_http_request_t *r);
ngx_uint_t ngx_http_flowscale_is_run_id(ngx_str_t *id);
u_char *ngx_http_flowscale_route_run_id(ngx_str_t *rest, ngx_str_t *id);
ngx_int_t ngx_http_flowscale_add_header(ngx_http_request_t *r,
    const char *key, ngx_str_t *value);
ngx_table_elt_t *ngx_http_flowscale_header_in(ngx_http_request_t *r,
    const char *name);
ngx_int_t ngx_http_flowscale_too_many(ngx_http_request_t *r, time_t retry,
    const char *detail);

ngx_int_t ngx_http_flowscale_create(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf);
time_t ngx_http_flowscale_queue_full(ngx_http_flowscale_loc_conf_t *flcf);
ngx_int_t ngx_http_flowscale_read_body(ngx_http_request_t *r,
    ngx_str_t *body);
ngx_int_t ngx_http_flowscale_send_run(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf, ngx_str_t *id, ngx_uint_t status);
extern const char *ngx_http_flowscale_run_sql;
void ngx_http_flowscale_pg_view(PGresult *res, int row,
    ngx_http_flowscale_run_view_t *v);
ngx_int_t ngx_http_flowscale_remote_events(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf, ngx_str_t *id);
ngx_int_t ngx_http_flowscale_wait(ngx_http_request_t *r, ngx_str_t *id,
    ngx_msec_t ms);
ngx_int_t ngx_http_flowscale_output(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf, ngx_str_t *id, ngx_str_t *rest);
ngx_int_t ngx_http_flowscale_output_conf(ngx_conf_t *cf,
    ngx_http_upstream_conf_t *conf);
void ngx_http_flowscale_run_ended(ngx_http_flowscale_loc_conf_t *flcf,
    ngx_str_t *id);
ngx_int_t ngx_http_flowscale_render_run(ngx_pool_t *pool,
    ngx_http_flowscale_loc_conf_t *flcf, ngx_http_flowscale_run_view_t *v,
    ngx_str_t *out);
ngx_int_t ngx_http_flowscale_public_event_output(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf, ngx_http_flowscale_run_view_t *v,
    ngx_str_t *in, ngx_str_t *out);
ngx_int_t ngx_http_flowscale_list(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf);
ngx_int_t ngx_http_flowscale_cancel(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf, ngx_str_t *id);
void ngx_http_flowscale_cancel_notify(u_char *payload, size_t len,
    ngx_log_t *log);
void ngx_http_flowscale_cancel_quietly(ngx_http_flowscale_loc_conf_t *flcf,
    ngx_str_t *id, ngx_log_t *log);
ngx_int_t ngx_http_flowscale_events(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf, ngx_str_t *id);
ngx_uint_t ngx_http_flowscale_view_belongs(ngx_http_flowscale_run_view_t *v,
    ngx_http_flowscale_loc_conf_t *flcf);
ngx_msec_t ngx_http_flowscale_health_interval(
    ngx_http_upstream_srv_conf_t *uscf);
fs_input_t *ngx_http_flowscale_find_input(fs_deployment_t *d,
    const char *name);


/* issue 9: the app (ngx_http_flowscale_app.c, _gradio.c) */
typedef ngx_int_t (*ngx_http_flowscale_created_pt)(ngx_http_request_t *r,
    ngx_str_t *id);
ngx_int_t ngx_http_flowscale_create_then(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf,
    ngx_http_flowscale_created_pt created);
char *ngx_http_flowscale_app_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_flowscale_app(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf, ngx_str_t *rest);
ngx_int_t ngx_http_flowscale_gradio(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf, ngx_str_t *rest);


/* issue 8: OpenAPI documents and the docs page (_openapi.c, _docs.c) */
char *ngx_http_flowscale_openapi_directive(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
char *ngx_http_flowscale_docs_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_flowscale_openapi_deployment(ngx_conf_t *cf,
    ngx_http_flowscale_loc_conf_t *flcf);
ngx_int_t ngx_http_flowscale_openapi_init(ngx_conf_t *cf);
ngx_int_t ngx_http_flowscale_openapi_send(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf);


/* API keys: ngx_http_flowscale_auth.h has the rest */
ngx_int_t ngx_http_flowscale_auth_init(ngx_conf_t *cf);
ngx_int_t ngx_http_flowscale_listen_init_process(ngx_cycle_t *cycle);
void ngx_http_flowscale_listen_exit_process(ngx_cycle_t *cycle);


#endif /* _NGX_HTTP_FLOWSCALE_MODULE_H_INCLUDED_ */
