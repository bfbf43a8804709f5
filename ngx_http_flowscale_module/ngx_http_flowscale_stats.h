
/*
 * FlowScale for nginx: monitoring (issue 7).  Counters in the shared zone,
 * the Prometheus page (flowscale_metrics), the JSON status page
 * (flowscale_status), the $flowscale_* variables, and the deployment
 * registry in PostgreSQL with stop_deployment()/start_deployment().
 */


#ifndef _NGX_HTTP_FLOWSCALE_STATS_H_INCLUDED_
#define _NGX_HTTP_FLOWSCALE_STATS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <libpq-fe.h>

#include "ngx_http_flowscale_module.h"


/* configuration (ngx_http_flowscale_module.c) */
ngx_int_t ngx_http_flowscale_stats_preconfiguration(ngx_conf_t *cf);
ngx_int_t ngx_http_flowscale_stats_postconfiguration(ngx_conf_t *cf);
char *ngx_http_flowscale_stats_page_directive(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
ngx_int_t ngx_http_flowscale_metrics_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_flowscale_status_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_flowscale_stats_init_process(ngx_cycle_t *cycle);
void ngx_http_flowscale_stats_exit_process(ngx_cycle_t *cycle);

/* where things happen */

/* a run ended: with the zone locked, from ngx_http_flowscale_runs_finish() */
void ngx_http_flowscale_stats_run_end(ngx_http_flowscale_zone_t *z,
    ngx_http_flowscale_deployment_state_t *ds, ngx_http_flowscale_run_t *run);

/* a run was accepted (committed) by POST L; takes the lock */
void ngx_http_flowscale_stats_run_accepted(
    ngx_http_flowscale_loc_conf_t *flcf);

/* a query completed (res NULL: the database could not be reached) */
void ngx_http_flowscale_stats_db_result(PGresult *res);

/* the leader's tick (ngx_http_flowscale_registry.c) */
void ngx_http_flowscale_registry_tick(void);

/* stop_deployment(): new runs are refused with 503 */
ngx_uint_t ngx_http_flowscale_registry_stopped(
    ngx_http_flowscale_loc_conf_t *flcf);

/* ngx_http_flowscale_create.c: the run id of POST L, or NULL */
ngx_str_t *ngx_http_flowscale_create_run_id(ngx_http_request_t *r);


/* shared between ngx_http_flowscale_stats.c and _registry.c */

#define NGX_HTTP_FLOWSCALE_WAIT_BUCKETS      15
#define NGX_HTTP_FLOWSCALE_DURATION_BUCKETS  15
#define NGX_HTTP_FLOWSCALE_CODES             16
#define NGX_HTTP_FLOWSCALE_STATS_WORKERS     64


typedef struct {
    uint64_t                        bucket[16];     /* not cumulative */
    uint64_t                        sum_ms;
    uint64_t                        count;
} ngx_http_flowscale_histogram_t;


typedef struct {
    uint32_t                        code;
    uint64_t                        n;
} ngx_http_flowscale_code_count_t;


/* per deployments[] entry of the zone, same index */
typedef struct {
    uint64_t                        runs[5];        /* by final status */
    uint64_t                        accepted;
    ngx_http_flowscale_histogram_t  wait;
    ngx_http_flowscale_histogram_t  duration;
    ngx_http_flowscale_code_count_t codes[NGX_HTTP_FLOWSCALE_CODES];
    uint64_t                        codes_other;

    /* the registry */
    unsigned                        stopped:1;
    ngx_http_flowscale_state_e      saved_state;    /* before stop */
    ngx_int_t                       recorded_state; /* in PG; -1 unknown */
} ngx_http_flowscale_dstats_t;


typedef struct {
    ngx_pid_t                       pid;
    int64_t                         seen;           /* ms */
    uint32_t                        pool;
    uint32_t                        up;
} ngx_http_flowscale_wstats_t;


typedef struct {
    ngx_atomic_t                    db_errors;
    uint64_t                        backend_failures[NGX_HTTP_FLOWSCALE_MAX_BACKENDS];
    ngx_uint_t                      backend_fails_seen[NGX_HTTP_FLOWSCALE_MAX_BACKENDS];
    ngx_http_flowscale_wstats_t     workers[NGX_HTTP_FLOWSCALE_STATS_WORKERS];

    ngx_uint_t                      registered;     /* generation */
    ngx_uint_t                      flags_read;     /* stopped flags known */
    int64_t                         flags_at;       /* last poll, ms */

    ngx_http_flowscale_dstats_t     deployments[NGX_HTTP_FLOWSCALE_MAX_DEPLOYMENTS];
} ngx_http_flowscale_stats_sh_t;


/* with the lock held; allocated on first use, NULL if the zone is full */
ngx_http_flowscale_stats_sh_t *ngx_http_flowscale_stats_sh(
    ngx_http_flowscale_zone_t *z);

/* the index of a deployment of this configuration in the zone, or -1 */
ngx_int_t ngx_http_flowscale_stats_index(ngx_http_flowscale_loc_conf_t *flcf);

/* this worker's generation of the configuration (zone's at start) */
extern ngx_uint_t  ngx_http_flowscale_stats_generation;


#endif /* _NGX_HTTP_FLOWSCALE_STATS_H_INCLUDED_ */
