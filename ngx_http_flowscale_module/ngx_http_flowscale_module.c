
/*
 * FlowScale for nginx: directives, configuration structures and merging.
 *
 * A deployed workflow is a plain prefix location with flowscale_deployment
 * and flowscale_workflow; its inputs and outputs come from flowscale_input,
 * flowscale_output, flowscale_io and FlowScale's own I/O nodes.  Everything
 * is checked when the configuration is loaded, so "nginx -t" is the deploy
 * check.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_flowscale_module.h"
#include "ngx_http_flowscale_pg.h"
#include "ngx_http_flowscale_dispatch.h"
#include "ngx_http_flowscale_webhook.h"    /* webhooks */
#include "ngx_http_flowscale_stats.h"      /* issue 7: monitoring */


#define NGX_HTTP_FLOWSCALE_DEFAULT_DEPTH     2
#define NGX_HTTP_FLOWSCALE_DEFAULT_MAX_WAIT  60000
#define NGX_HTTP_FLOWSCALE_DEFAULT_RUN_TIMEOUT  3600000
#define NGX_HTTP_FLOWSCALE_DEFAULT_RETRIES   2
#define NGX_HTTP_FLOWSCALE_DEFAULT_QUEUE     1000
#define NGX_HTTP_FLOWSCALE_DEFAULT_HEALTH    5000


static void *ngx_http_flowscale_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_flowscale_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_flowscale_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_flowscale_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static ngx_int_t ngx_http_flowscale_postconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_flowscale_init_process(ngx_cycle_t *cycle);
static void ngx_http_flowscale_exit_process(ngx_cycle_t *cycle);

static char *ngx_http_flowscale_deployment(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_flowscale_workflow(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_flowscale_input(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_flowscale_output_directive(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_flowscale_io(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_flowscale_backend(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_flowscale_project(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

static fs_deployment_t *ngx_http_flowscale_get_deployment(ngx_conf_t *cf,
    ngx_http_flowscale_loc_conf_t *flcf);
static char *ngx_http_flowscale_declared(ngx_conf_t *cf, int rc,
    fs_error_t *err);
static char **ngx_http_flowscale_cstrings(ngx_conf_t *cf, ngx_str_t *args,
    ngx_uint_t n);
static void ngx_http_flowscale_deployment_cleanup(void *data);
static ngx_int_t ngx_http_flowscale_check_name(ngx_conf_t *cf,
    ngx_str_t *value, const char *what);


static ngx_conf_num_bounds_t  ngx_http_flowscale_depth_bounds = {
    ngx_conf_check_num_bounds, 1, 1000
};


static char *ngx_http_flowscale_check_lease(ngx_conf_t *cf, void *post,
    void *data);

static ngx_conf_post_t  ngx_http_flowscale_lease_post = {
    ngx_http_flowscale_check_lease
};


static ngx_command_t  ngx_http_flowscale_commands[] = {

    { ngx_string("flowscale_least_jobs"),
      NGX_HTTP_UPS_CONF|NGX_CONF_NOARGS,
      ngx_http_flowscale_least_jobs,
      0,
      0,
      NULL },

    { ngx_string("flowscale_backend_depth"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_flowscale_loc_conf_t, backend_depth),
      &ngx_http_flowscale_depth_bounds },

    { ngx_string("flowscale_run_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_flowscale_loc_conf_t, run_timeout),
      NULL },

    { ngx_string("flowscale_queue_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_flowscale_loc_conf_t, queue_size),
      NULL },

    { ngx_string("flowscale_retries"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_flowscale_loc_conf_t, retries),
      NULL },

    { ngx_string("flowscale_health_interval"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_flowscale_loc_conf_t, health_interval),
      NULL },

    { ngx_string("flowscale_max_wait"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_flowscale_loc_conf_t, max_wait),
      NULL },

    { ngx_string("flowscale_database"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE12,
      ngx_http_flowscale_database,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("flowscale_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_flowscale_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("flowscale_project"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_flowscale_project,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_flowscale_loc_conf_t, project),
      NULL },

    { ngx_string("flowscale_backend"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_flowscale_backend,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("flowscale_deployment"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_flowscale_deployment,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("flowscale_workflow"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_flowscale_workflow,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("flowscale_input"),
      NGX_HTTP_LOC_CONF|NGX_CONF_2MORE,
      ngx_http_flowscale_input,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("flowscale_output"),
      NGX_HTTP_LOC_CONF|NGX_CONF_2MORE,
      ngx_http_flowscale_output_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("flowscale_io"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_flowscale_io,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    /* API keys (ngx_http_flowscale_auth.c) */

    { ngx_string("flowscale_api_key"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_flowscale_loc_conf_t, api_key),
      NULL },

    { ngx_string("flowscale_key_concurrency"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_flowscale_loc_conf_t, key_concurrency),
      NULL },

    /* issue 9: the app at L/app/ (ngx_http_flowscale_app.c) */

    { ngx_string("flowscale_app"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_flowscale_app_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_flowscale_loc_conf_t, app),
      NULL },

    /* webhooks (ngx_http_flowscale_webhook.c) */

    { ngx_string("flowscale_webhook_allow"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_flowscale_webhook_allow,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("flowscale_webhook_retry"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_flowscale_webhook_retry,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("flowscale_webhook_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_flowscale_loc_conf_t, webhook_timeout),
      NULL },

    { ngx_string("flowscale_webhook_ssl_verify"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_flowscale_loc_conf_t, webhook_ssl_verify),
      NULL },

    /* several nginx fronts on one PostgreSQL (ngx_http_flowscale_front.c) */

    { ngx_string("flowscale_lease"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_flowscale_main_conf_t, lease),
      &ngx_http_flowscale_lease_post },

    { ngx_string("flowscale_webhook_ssl_trusted_certificate"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_flowscale_main_conf_t, webhook_trusted_certificate),
      NULL },

    /* issue 7: monitoring pages (ngx_http_flowscale_stats.c) */

    { ngx_string("flowscale_metrics"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_flowscale_stats_page_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      ngx_http_flowscale_metrics_handler },

    { ngx_string("flowscale_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_flowscale_stats_page_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      ngx_http_flowscale_status_handler },

    /* issue 8: OpenAPI documents and the docs page (_openapi.c, _docs.c) */

    { ngx_string("flowscale_openapi"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_flowscale_openapi_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("flowscale_docs"),
      NGX_HTTP_LOC_CONF|NGX_CONF_ANY,
      ngx_http_flowscale_docs_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_flowscale_module_ctx = {
    ngx_http_flowscale_stats_preconfiguration,  /* preconfiguration:
                                                   issue 7, variables */
    ngx_http_flowscale_postconfiguration,  /* postconfiguration */

    ngx_http_flowscale_create_main_conf,   /* create main configuration */
    ngx_http_flowscale_init_main_conf,     /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_flowscale_create_loc_conf,    /* create location configuration */
    ngx_http_flowscale_merge_loc_conf      /* merge location configuration */
};


ngx_module_t  ngx_http_flowscale_module = {
    NGX_MODULE_V1,
    &ngx_http_flowscale_module_ctx,        /* module context */
    ngx_http_flowscale_commands,           /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_flowscale_init_process,       /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_flowscale_exit_process,       /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static void *
ngx_http_flowscale_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_flowscale_main_conf_t  *fmcf;

    fmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_flowscale_main_conf_t));
    if (fmcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     fmcf->shm_zone = NULL;
     *     fmcf->db = NULL;
     */

    fmcf->lease = NGX_CONF_UNSET_MSEC;

    if (ngx_array_init(&fmcf->deployments, cf->pool, 4,
                       sizeof(ngx_http_flowscale_loc_conf_t *))
        != NGX_OK)
    {
        return NULL;
    }

    return fmcf;
}


static char *
ngx_http_flowscale_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_flowscale_main_conf_t *fmcf = conf;

    ngx_conf_init_msec_value(fmcf->lease, 10000);

    return NGX_CONF_OK;
}


/* a lease renewed every second must outlive a few missed beats */

static char *
ngx_http_flowscale_check_lease(ngx_conf_t *cf, void *post, void *data)
{
    ngx_msec_t  *lease = data;

    if (*lease < 3000) {
        return "must be at least 3s: the lease is renewed every second";
    }

    return NGX_CONF_OK;
}


static void *
ngx_http_flowscale_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_flowscale_loc_conf_t  *flcf;

    flcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_flowscale_loc_conf_t));
    if (flcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     flcf->name = { 0, NULL };
     *     flcf->deployment = NULL;
     *     flcf->project = { 0, NULL };
     *     flcf->backend_name = { 0, NULL };
     *     flcf->backend = NULL;
     */

    flcf->backend_depth = NGX_CONF_UNSET_UINT;
    flcf->max_wait = NGX_CONF_UNSET_MSEC;

    /* API keys */
    flcf->api_key = NGX_CONF_UNSET;
    flcf->app = NGX_CONF_UNSET_UINT;                    /* issue 9 */
    flcf->key_concurrency = NGX_CONF_UNSET_UINT;
    flcf->run_timeout = NGX_CONF_UNSET_MSEC;
    flcf->retries = NGX_CONF_UNSET_UINT;
    flcf->queue_size = NGX_CONF_UNSET_UINT;
    flcf->health_interval = NGX_CONF_UNSET_MSEC;

    /* webhooks */
    flcf->webhook_allow = NGX_CONF_UNSET_PTR;
    flcf->webhook_retry = NGX_CONF_UNSET_PTR;
    flcf->webhook_timeout = NGX_CONF_UNSET_MSEC;
    flcf->webhook_ssl_verify = NGX_CONF_UNSET;

    return flcf;
}


static char *
ngx_http_flowscale_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_flowscale_loc_conf_t *prev = parent;
    ngx_http_flowscale_loc_conf_t *conf = child;

    ngx_http_flowscale_main_conf_t  *fmcf;
    ngx_http_flowscale_loc_conf_t  **deployment;

    ngx_conf_merge_str_value(conf->project, prev->project,
                             NGX_HTTP_FLOWSCALE_DEFAULT_PROJECT);
    ngx_conf_merge_uint_value(conf->backend_depth, prev->backend_depth,
                              NGX_HTTP_FLOWSCALE_DEFAULT_DEPTH);
    ngx_conf_merge_msec_value(conf->max_wait, prev->max_wait,
                              NGX_HTTP_FLOWSCALE_DEFAULT_MAX_WAIT);

    /* API keys */
    ngx_conf_merge_value(conf->api_key, prev->api_key, 1);
    ngx_conf_merge_uint_value(conf->app, prev->app,          /* issue 9 */
                              NGX_HTTP_FLOWSCALE_APP_OFF);
    ngx_conf_merge_uint_value(conf->key_concurrency, prev->key_concurrency,
                              0);
    ngx_conf_merge_msec_value(conf->run_timeout, prev->run_timeout,
                              NGX_HTTP_FLOWSCALE_DEFAULT_RUN_TIMEOUT);
    ngx_conf_merge_uint_value(conf->retries, prev->retries,
                              NGX_HTTP_FLOWSCALE_DEFAULT_RETRIES);
    ngx_conf_merge_uint_value(conf->queue_size, prev->queue_size,
                              NGX_HTTP_FLOWSCALE_DEFAULT_QUEUE);
    ngx_conf_merge_msec_value(conf->health_interval, prev->health_interval,
                              NGX_HTTP_FLOWSCALE_DEFAULT_HEALTH);

    if (conf->health_interval < 100) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "flowscale_health_interval must be at least "
                           "100ms");
        return NGX_CONF_ERROR;
    }

    if (conf->backend_name.data == NULL) {
        conf->backend_name = prev->backend_name;
        conf->backend_origin = prev->backend_origin;
    }

    /* webhooks */
    if (ngx_http_flowscale_webhook_merge(cf, prev, conf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    if (conf->name.data == NULL) {
        return NGX_CONF_OK;
    }

    if (ngx_http_flowscale_deployment_check(cf, conf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    /* issue 8: L/openapi.json, pre-rendered */
    if (ngx_http_flowscale_openapi_deployment(cf, conf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    fmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_flowscale_module);

    deployment = ngx_array_push(&fmcf->deployments);
    if (deployment == NULL) {
        return NGX_CONF_ERROR;
    }

    *deployment = conf;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_flowscale_postconfiguration(ngx_conf_t *cf)
{
    ngx_http_flowscale_main_conf_t  *fmcf;

    fmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_flowscale_module);

    /* issue 8: the server documents and docs pages */
    if (ngx_http_flowscale_openapi_init(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (fmcf->deployments.nelts == 0) {
        return NGX_OK;
    }

    if (fmcf->db == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "flowscale_deployment needs \"flowscale_database\" "
                      "in the http block: every run is recorded in "
                      "PostgreSQL");
        return NGX_ERROR;
    }

    /* API keys: the access phase of deployment routes */
    if (ngx_http_flowscale_auth_init(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    /* issue 7: responses by deployment and code, in the log phase */
    if (ngx_http_flowscale_stats_postconfiguration(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_flowscale_zone_default(cf, fmcf);
}


static ngx_int_t
ngx_http_flowscale_init_process(ngx_cycle_t *cycle)
{
    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    if (ngx_http_flowscale_pg_init_process(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    /* API keys: the LISTEN connection for key changes */
    if (ngx_http_flowscale_listen_init_process(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    /* webhooks */
    if (ngx_http_flowscale_webhook_init_process(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    /* issue 7: counters in the zone */
    if (ngx_http_flowscale_stats_init_process(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_flowscale_dispatch_init_process(cycle);
}


static void
ngx_http_flowscale_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_flowscale_dispatch_exit_process(cycle);
    ngx_http_flowscale_stats_exit_process(cycle);     /* issue 7 */
    ngx_http_flowscale_webhook_exit_process(cycle);   /* webhooks */
    ngx_http_flowscale_listen_exit_process(cycle);    /* API keys */
    ngx_http_flowscale_pg_exit_process(cycle);
}


ngx_http_flowscale_origin_t *
ngx_http_flowscale_origin(ngx_conf_t *cf)
{
    ngx_str_t                    *value;
    ngx_http_flowscale_origin_t  *o;

    o = ngx_palloc(cf->pool, sizeof(ngx_http_flowscale_origin_t));
    if (o == NULL) {
        return NULL;
    }

    value = cf->args->elts;

    o->directive = value[0];
    o->file = cf->conf_file->file.name;
    o->line = cf->conf_file->line;

    return o;
}


static char *
ngx_http_flowscale_deployment(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_flowscale_loc_conf_t *flcf = conf;

    ngx_str_t                 *value;
    ngx_http_core_loc_conf_t  *clcf;

    value = cf->args->elts;

    if (flcf->name.data) {
        return "is duplicate";
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->named || clcf->noname || clcf->exact_match
#if (NGX_PCRE)
        || clcf->regex
#endif
        )
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "flowscale_deployment \"%V\" must be in a plain "
                           "prefix location such as \"location /v1/%V\", "
                           "not in \"location %s%V\": its runs, outputs and "
                           "documents live under that prefix",
                           &value[1], &value[1],
                           clcf->named ? "" : clcf->exact_match ? "= "
                           : clcf->noname ? "(if or limit_except) " : "~ ",
                           &clcf->name);
        return NGX_CONF_ERROR;
    }

    if (ngx_http_flowscale_check_name(cf, &value[1], "flowscale_deployment")
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    flcf->name = value[1];
    flcf->location = clcf->name;
    flcf->clcf = clcf;

    /* "location /v1/x/" answers at /v1/x/ and its runs at /v1/x/runs */
    while (flcf->location.len > 1
           && flcf->location.data[flcf->location.len - 1] == '/')
    {
        flcf->location.len--;
    }

    flcf->origin = ngx_http_flowscale_origin(cf);
    if (flcf->origin == NULL) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_flowscale_get_deployment(cf, flcf) == NULL) {
        return NGX_CONF_ERROR;
    }

    clcf->handler = ngx_http_flowscale_handler;

    return NGX_CONF_OK;
}


static fs_deployment_t *
ngx_http_flowscale_get_deployment(ngx_conf_t *cf,
    ngx_http_flowscale_loc_conf_t *flcf)
{
    ngx_pool_cleanup_t  *cln;

    if (flcf->deployment) {
        return flcf->deployment;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    flcf->deployment = fs_deployment_new();
    if (flcf->deployment == NULL) {
        return NULL;
    }

    cln->handler = ngx_http_flowscale_deployment_cleanup;
    cln->data = flcf->deployment;

    return flcf->deployment;
}


static void
ngx_http_flowscale_deployment_cleanup(void *data)
{
    fs_deployment_free(data);
}


static char *
ngx_http_flowscale_workflow(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_flowscale_loc_conf_t *flcf = conf;

    ngx_str_t        *value, name, text;
    fs_error_t        err;
    fs_deployment_t  *d;

    value = cf->args->elts;

    if (flcf->workflow_origin) {
        return "is duplicate";
    }

    d = ngx_http_flowscale_get_deployment(cf, flcf);
    if (d == NULL) {
        return NGX_CONF_ERROR;
    }

    flcf->workflow_origin = ngx_http_flowscale_origin(cf);
    if (flcf->workflow_origin == NULL) {
        return NGX_CONF_ERROR;
    }

    name = value[1];

    if (ngx_http_flowscale_read_conf_file(cf, &name, &text) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return ngx_http_flowscale_declared(cf,
               fs_workflow_load(d, (char *) name.data, (char *) text.data,
                                text.len, &err),
               &err);
}


static char *
ngx_http_flowscale_input(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_flowscale_loc_conf_t *flcf = conf;

    char                        **args;
    ngx_uint_t                    n;
    fs_error_t                    err;
    fs_deployment_t              *d;
    ngx_http_flowscale_origin_t  *origin;

    d = ngx_http_flowscale_get_deployment(cf, flcf);
    origin = ngx_http_flowscale_origin(cf);

    n = cf->args->nelts;
    args = ngx_http_flowscale_cstrings(cf, cf->args->elts, n);

    if (d == NULL || origin == NULL || args == NULL) {
        return NGX_CONF_ERROR;
    }

    return ngx_http_flowscale_declared(cf,
               fs_input_declare(d, args[1], args[2], n - 3, &args[3], origin,
                                &err),
               &err);
}


static char *
ngx_http_flowscale_output_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_flowscale_loc_conf_t *flcf = conf;

    char                        **args;
    ngx_uint_t                    n;
    fs_error_t                    err;
    fs_deployment_t              *d;
    ngx_http_flowscale_origin_t  *origin;

    d = ngx_http_flowscale_get_deployment(cf, flcf);
    origin = ngx_http_flowscale_origin(cf);

    n = cf->args->nelts;
    args = ngx_http_flowscale_cstrings(cf, cf->args->elts, n);

    if (d == NULL || origin == NULL || args == NULL) {
        return NGX_CONF_ERROR;
    }

    return ngx_http_flowscale_declared(cf,
               fs_output_declare(d, args[1], args[2], n - 3, &args[3], origin,
                                 &err),
               &err);
}


static char *
ngx_http_flowscale_io(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_flowscale_loc_conf_t *flcf = conf;

    ngx_str_t                    *value, name, text;
    fs_error_t                    err;
    fs_deployment_t              *d;
    ngx_http_flowscale_origin_t  *origin;

    value = cf->args->elts;

    d = ngx_http_flowscale_get_deployment(cf, flcf);
    origin = ngx_http_flowscale_origin(cf);

    if (d == NULL || origin == NULL) {
        return NGX_CONF_ERROR;
    }

    name = value[1];

    if (ngx_http_flowscale_read_conf_file(cf, &name, &text) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return ngx_http_flowscale_declared(cf,
               fs_io_load(d, (char *) name.data, (char *) text.data,
                          text.len, origin, &err),
               &err);
}


/* a declaration's own mistakes are reported at its own line, right away */

static char *
ngx_http_flowscale_declared(ngx_conf_t *cf, int rc, fs_error_t *err)
{
    ngx_str_t  *value;

    if (rc == 0) {
        return NGX_CONF_OK;
    }

    value = cf->args->elts;

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "%V: %s", &value[0], err->msg);

    return NGX_CONF_ERROR;
}


static char **
ngx_http_flowscale_cstrings(ngx_conf_t *cf, ngx_str_t *args, ngx_uint_t n)
{
    char       **s;
    ngx_uint_t   i;

    s = ngx_palloc(cf->pool, n * sizeof(char *));
    if (s == NULL) {
        return NULL;
    }

    /* configuration arguments are already NUL-terminated by the parser */
    for (i = 0; i < n; i++) {
        s[i] = (char *) args[i].data;
    }

    return s;
}


static char *
ngx_http_flowscale_backend(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_flowscale_loc_conf_t *flcf = conf;

    ngx_str_t  *value;

    if (flcf->backend_name.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    flcf->backend_name = value[1];
    flcf->backend_origin = ngx_http_flowscale_origin(cf);

    if (flcf->backend_origin == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_flowscale_project(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_str_t  *value;
    char       *rv;

    rv = ngx_conf_set_str_slot(cf, cmd, conf);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    value = cf->args->elts;

    if (ngx_http_flowscale_check_name(cf, &value[1], "flowscale_project")
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* deployment and project names: they appear in URLs, SQL rows and metrics */

static ngx_int_t
ngx_http_flowscale_check_name(ngx_conf_t *cf, ngx_str_t *value,
    const char *what)
{
    u_char  *p, c;

    for (p = value->data; p < value->data + value->len; p++) {
        c = *p;

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.'))
        {
            break;
        }
    }

    if (value->len == 0 || value->len > FS_NAME_MAX
        || p < value->data + value->len)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "%s name \"%V\" is invalid: use 1 to %d letters, "
                           "digits, \"_\", \"-\" and \".\"", what, value,
                           FS_NAME_MAX);
        return NGX_ERROR;
    }

    return NGX_OK;
}
