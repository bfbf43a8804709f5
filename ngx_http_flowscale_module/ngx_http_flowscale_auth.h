
/*
 * FlowScale for nginx: API keys.  The access phase of deployment routes,
 * a cache of keys and projects in the shared zone, PostgreSQL lookups on a
 * miss, per-key run counters, and the LISTEN connection that keeps the
 * cache honest.
 */


#ifndef _NGX_HTTP_FLOWSCALE_AUTH_H_INCLUDED_
#define _NGX_HTTP_FLOWSCALE_AUTH_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_flowscale_runs.h"


#define NGX_HTTP_FLOWSCALE_KEY_ID_MAX     32


/* counters for the metrics (design.md section 8) */
typedef struct {
    ngx_atomic_t                    ok;         /* a key of the project */
    ngx_atomic_t                    open;       /* public: no key needed */
    ngx_atomic_t                    missing;    /* 401 without a key */
    ngx_atomic_t                    invalid;    /* 401 unknown key */
    ngx_atomic_t                    forbidden;  /* 403 another project */
    ngx_atomic_t                    revoked;    /* 403 revoked */
    ngx_atomic_t                    unavailable; /* 503 */
    ngx_atomic_t                    cache_hits;
    ngx_atomic_t                    lookups;    /* queries sent */
    ngx_atomic_t                    db_errors;
    ngx_atomic_t                    limited;    /* 429 per-key limit */
} ngx_http_flowscale_auth_stats_t;


/* from postconfiguration: the access phase handler */
ngx_int_t ngx_http_flowscale_auth_init(ngx_conf_t *cf);

/*
 * The key id (the public part of fs_<key_id>_<secret>) that authenticated
 * this request, or NULL when the API is public (flowscale_api_key off,
 * set_project_auth(project, false)) or the request was not checked.
 */
ngx_str_t *ngx_http_flowscale_auth_key_id(ngx_http_request_t *r);

/*
 * flowscale_key_concurrency: a run of the key was accepted (limit 0 is
 * unlimited).  NGX_OK: counted; NGX_BUSY: the key already has limit
 * unfinished runs, nothing counted.  Every NGX_OK must be matched by one
 * key_run_end when the run finishes.  The _locked forms are for callers
 * that hold ngx_http_flowscale_runs_lock (the zone's one mutex).
 */
ngx_int_t ngx_http_flowscale_key_run_start(ngx_str_t *key_id,
    ngx_uint_t limit);
void ngx_http_flowscale_key_run_end(ngx_str_t *key_id);
ngx_int_t ngx_http_flowscale_key_run_start_locked(
    ngx_http_flowscale_zone_t *z, ngx_str_t *key_id, ngx_uint_t limit);
void ngx_http_flowscale_key_run_end_locked(ngx_http_flowscale_zone_t *z,
    ngx_str_t *key_id);
ngx_uint_t ngx_http_flowscale_key_runs(ngx_str_t *key_id);

/* 429 problem+json with Retry-After, for a key at its limit */
ngx_int_t ngx_http_flowscale_key_limited(ngx_http_request_t *r,
    ngx_uint_t limit);

/* cache maintenance (the LISTEN connection) */
void ngx_http_flowscale_auth_flush(ngx_log_t *log);
void ngx_http_flowscale_auth_notify(u_char *payload, size_t len,
    ngx_log_t *log);

void ngx_http_flowscale_auth_stats(ngx_http_flowscale_auth_stats_t *out);

/* ngx_http_flowscale_listen.c */
ngx_int_t ngx_http_flowscale_listen_init_process(ngx_cycle_t *cycle);
void ngx_http_flowscale_listen_exit_process(ngx_cycle_t *cycle);


#endif /* _NGX_HTTP_FLOWSCALE_AUTH_H_INCLUDED_ */
