
/*
 * FlowScale for nginx: monitoring (design.md section 8, issue 7).
 *
 * Counters live in the shared zone, next to the live view of runs, so
 * every worker adds to and reads the same numbers: runs by deployment and
 * final status, histograms of queue wait and execution time, HTTP
 * responses by deployment and code (a log-phase handler, like
 * nginx-module-vts), backend failures, database errors and the pool of
 * each worker.  The pages copy what they need under one lock pass and
 * render it afterwards into one buffer sized first:
 *
 *     location = /metrics          { flowscale_metrics; }   Prometheus
 *     location = /flowscale/status { flowscale_status; }    JSON
 *
 * Both are ordinary content handlers, so allow/deny and auth protect them.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <time.h>

#include "ngx_http_flowscale_module.h"
#include "ngx_http_flowscale_stats.h"
#include "ngx_http_flowscale_front.h"
#include "ngx_http_flowscale_auth.h"
#include "ngx_http_flowscale_pg.h"


#define NGX_HTTP_FLOWSCALE_POOL_TICK   1000
#define NGX_HTTP_FLOWSCALE_WORKER_STALE  5000


/* what the pages render, copied out of the zone under the lock */
typedef struct {
    ngx_uint_t                              generation;
    ngx_pid_t                               leader;
    ngx_uint_t                              ndeployments;
    ngx_uint_t                              nbackends;
    ngx_http_flowscale_deployment_state_t  *ds;
    ngx_http_flowscale_dstats_t            *st;
    ngx_http_flowscale_backend_slot_t      *backends;
    uint64_t                                failures[NGX_HTTP_FLOWSCALE_MAX_BACKENDS];
    uint64_t                                db_errors;
    ngx_uint_t                              workers;
    ngx_uint_t                              pool;
    ngx_uint_t                              up;
} ngx_http_flowscale_snapshot_t;


static ngx_int_t ngx_http_flowscale_stats_log(ngx_http_request_t *r);
static ngx_int_t ngx_http_flowscale_snapshot(ngx_pool_t *pool,
    ngx_http_flowscale_snapshot_t *s);
static void ngx_http_flowscale_observe(ngx_http_flowscale_histogram_t *h,
    const int64_t *bounds, ngx_uint_t n, int64_t ms);
static void ngx_http_flowscale_pool_tick(ngx_event_t *ev);
static void ngx_http_flowscale_pool_publish(ngx_uint_t leaving);
static u_char *ngx_http_flowscale_prom_escape(u_char *p, u_char *s,
    size_t len);
static u_char *ngx_http_flowscale_json_escape(u_char *p, u_char *s,
    size_t len);
static u_char *ngx_http_flowscale_seconds(u_char *p, uint64_t ms);
static ngx_int_t ngx_http_flowscale_stats_send(ngx_http_request_t *r,
    ngx_str_t *type, u_char *start, u_char *end);

static ngx_int_t ngx_http_flowscale_var_run_id(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_flowscale_var_deployment(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_flowscale_var_backend(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_flowscale_var_key_id(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_flowscale_var_queue_time(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


/* bucket bounds in ms, and as Prometheus writes them */

static const int64_t  ngx_http_flowscale_wait_ms[] = {
    5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000,
    300000, 1800000
};

static const char  *ngx_http_flowscale_wait_le[] = {
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5",
    "10", "30", "60", "300", "1800", "+Inf"
};

static const int64_t  ngx_http_flowscale_duration_ms[] = {
    100, 250, 500, 1000, 2000, 5000, 10000, 20000, 30000, 60000, 120000,
    300000, 600000, 1800000, 3600000
};

static const char  *ngx_http_flowscale_duration_le[] = {
    "0.1", "0.25", "0.5", "1", "2", "5", "10", "20", "30", "60", "120",
    "300", "600", "1800", "3600", "+Inf"
};


static ngx_http_variable_t  ngx_http_flowscale_vars[] = {

    { ngx_string("flowscale_run_id"), NULL, ngx_http_flowscale_var_run_id,
      0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("flowscale_deployment"), NULL,
      ngx_http_flowscale_var_deployment, 0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("flowscale_backend"), NULL, ngx_http_flowscale_var_backend,
      0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("flowscale_key_id"), NULL, ngx_http_flowscale_var_key_id,
      0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("flowscale_queue_time"), NULL,
      ngx_http_flowscale_var_queue_time, 0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


ngx_uint_t                                ngx_http_flowscale_stats_generation;

static ngx_http_flowscale_stats_sh_t     *ngx_http_flowscale_stats_cached;
static ngx_int_t                         *ngx_http_flowscale_stats_slots;
static ngx_event_t                        ngx_http_flowscale_pool_ev;
static ngx_connection_t                   ngx_http_flowscale_stats_dummy;


/* ------------------------------------------------------------------------
 * configuration
 */

ngx_int_t
ngx_http_flowscale_stats_preconfiguration(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_flowscale_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_flowscale_stats_postconfiguration(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_flowscale_stats_log;

    return NGX_OK;
}


/*
 * flowscale_metrics and flowscale_status: both make the location a page
 * served from the zone; the command's post field names the page handler.
 */

char *
ngx_http_flowscale_stats_page_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = (ngx_http_handler_pt) cmd->post;

    return NGX_CONF_OK;
}


/* ------------------------------------------------------------------------
 * the counters in the zone
 */

ngx_http_flowscale_stats_sh_t *
ngx_http_flowscale_stats_sh(ngx_http_flowscale_zone_t *z)
{
    ngx_uint_t                      i;
    ngx_http_flowscale_stats_sh_t  *st;

    if (z->sh->stats) {
        return z->sh->stats;
    }

    st = ngx_slab_calloc_locked(z->shpool,
                                sizeof(ngx_http_flowscale_stats_sh_t));
    if (st == NULL) {
        return NULL;
    }

    for (i = 0; i < NGX_HTTP_FLOWSCALE_MAX_DEPLOYMENTS; i++) {
        st->deployments[i].recorded_state = -1;
    }

    z->sh->stats = st;

    return st;
}


/* the index of a deployment of this configuration in the zone, or -1 */

ngx_int_t
ngx_http_flowscale_stats_index(ngx_http_flowscale_loc_conf_t *flcf)
{
    ngx_uint_t                        i;
    ngx_http_flowscale_loc_conf_t   **flcfp;
    ngx_http_flowscale_main_conf_t   *fmcf;

    if (ngx_http_flowscale_stats_slots == NULL || flcf->name.len == 0) {
        return -1;
    }

    fmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_flowscale_module);
    flcfp = fmcf->deployments.elts;

    for (i = 0; i < fmcf->deployments.nelts; i++) {
        if (flcfp[i] == flcf) {
            return ngx_http_flowscale_stats_slots[i];
        }
    }

    return -1;
}


ngx_int_t
ngx_http_flowscale_stats_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                              i;
    ngx_http_flowscale_zone_t              *z;
    ngx_http_flowscale_loc_conf_t         **flcfp;
    ngx_http_flowscale_main_conf_t         *fmcf;
    ngx_http_flowscale_deployment_state_t  *ds;

    ngx_http_flowscale_stats_cached = NULL;
    ngx_http_flowscale_stats_slots = NULL;

    fmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_flowscale_module);
    z = ngx_http_flowscale_zone_get(cycle);

    if (fmcf == NULL || z == NULL) {
        return NGX_OK;
    }

    ngx_http_flowscale_stats_slots = ngx_pcalloc(cycle->pool,
        (fmcf->deployments.nelts + 1) * sizeof(ngx_int_t));
    if (ngx_http_flowscale_stats_slots == NULL) {
        return NGX_ERROR;
    }

    flcfp = fmcf->deployments.elts;

    ngx_http_flowscale_runs_lock(z);

    ngx_http_flowscale_stats_generation = z->sh->generation;
    ngx_http_flowscale_stats_cached = ngx_http_flowscale_stats_sh(z);

    for (i = 0; i < fmcf->deployments.nelts; i++) {
        ds = ngx_http_flowscale_runs_deployment(z, &flcfp[i]->project,
                                                &flcfp[i]->name);
        ngx_http_flowscale_stats_slots[i] = ds ? ds - z->sh->deployments
                                               : -1;
    }

    ngx_http_flowscale_runs_unlock(z);

    if (ngx_http_flowscale_stats_cached == NULL) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                      "flowscale: no room for counters in flowscale_zone; "
                      "metrics are not counted");
    }

    if (fmcf->db) {
        ngx_http_flowscale_stats_dummy.fd = (ngx_socket_t) -1;
        ngx_http_flowscale_pool_ev.handler = ngx_http_flowscale_pool_tick;
        ngx_http_flowscale_pool_ev.log = cycle->log;
        ngx_http_flowscale_pool_ev.data = &ngx_http_flowscale_stats_dummy;
        ngx_http_flowscale_pool_ev.cancelable = 1;

        ngx_add_timer(&ngx_http_flowscale_pool_ev, 10);
    }

    return NGX_OK;
}


void
ngx_http_flowscale_stats_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_flowscale_pool_publish(1);
}


static void
ngx_http_flowscale_pool_tick(ngx_event_t *ev)
{
    ngx_http_flowscale_pool_publish(0);

    if (!ngx_exiting && !ngx_terminate && !ngx_quit) {
        ngx_add_timer(ev, NGX_HTTP_FLOWSCALE_POOL_TICK);
    }
}


/* this worker's pool, for the pages of every worker */

static void
ngx_http_flowscale_pool_publish(ngx_uint_t leaving)
{
    int64_t                          now;
    ngx_uint_t                       i;
    ngx_http_flowscale_zone_t       *z;
    ngx_http_flowscale_wstats_t     *w, *free;
    ngx_http_flowscale_stats_sh_t   *st;
    ngx_http_flowscale_main_conf_t  *fmcf;

    st = ngx_http_flowscale_stats_cached;
    z = ngx_http_flowscale_zone_get((ngx_cycle_t *) ngx_cycle);
    fmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_flowscale_module);

    if (st == NULL || z == NULL || fmcf == NULL || fmcf->db == NULL) {
        return;
    }

    now = ngx_http_flowscale_now_ms();
    free = NULL;

    ngx_http_flowscale_runs_lock(z);

    for (i = 0; i < NGX_HTTP_FLOWSCALE_STATS_WORKERS; i++) {
        w = &st->workers[i];

        if (w->pid == ngx_pid) {
            free = w;
            break;
        }

        if (free == NULL
            && (w->pid == 0
                || now - w->seen > NGX_HTTP_FLOWSCALE_WORKER_STALE))
        {
            free = w;
        }
    }

    if (free) {
        if (leaving) {
            if (free->pid == ngx_pid) {
                ngx_memzero(free, sizeof(ngx_http_flowscale_wstats_t));
            }

        } else {
            free->pid = ngx_pid;
            free->seen = now;
            free->pool = fmcf->db->pool_size;
            free->up = ngx_http_flowscale_pg_available();
        }
    }

    ngx_http_flowscale_runs_unlock(z);
}


static void
ngx_http_flowscale_observe(ngx_http_flowscale_histogram_t *h,
    const int64_t *bounds, ngx_uint_t n, int64_t ms)
{
    ngx_uint_t  i;

    if (ms < 0) {
        ms = 0;
    }

    for (i = 0; i < n && ms > bounds[i]; i++) { /* void */ }

    h->bucket[i]++;
    h->sum_ms += ms;
    h->count++;
}


void
ngx_http_flowscale_stats_run_end(ngx_http_flowscale_zone_t *z,
    ngx_http_flowscale_deployment_state_t *ds, ngx_http_flowscale_run_t *run)
{
    ngx_http_flowscale_dstats_t    *d;
    ngx_http_flowscale_stats_sh_t  *st;

    if (ds == NULL) {
        return;
    }

    st = ngx_http_flowscale_stats_sh(z);
    if (st == NULL) {
        return;
    }

    d = &st->deployments[ds - z->sh->deployments];

    if ((ngx_uint_t) run->status < 5) {
        d->runs[run->status]++;
    }

    if (run->started) {
        ngx_http_flowscale_observe(&d->wait, ngx_http_flowscale_wait_ms,
                                   NGX_HTTP_FLOWSCALE_WAIT_BUCKETS,
                                   run->started - run->created);
        ngx_http_flowscale_observe(&d->duration,
                                   ngx_http_flowscale_duration_ms,
                                   NGX_HTTP_FLOWSCALE_DURATION_BUCKETS,
                                   (run->finished ? run->finished
                                                  : run->started)
                                   - run->started);
    }
}


void
ngx_http_flowscale_stats_run_accepted(ngx_http_flowscale_loc_conf_t *flcf)
{
    ngx_int_t                   i;
    ngx_http_flowscale_zone_t  *z;

    i = ngx_http_flowscale_stats_index(flcf);
    z = ngx_http_flowscale_zone_get((ngx_cycle_t *) ngx_cycle);

    if (i < 0 || z == NULL || ngx_http_flowscale_stats_cached == NULL) {
        return;
    }

    ngx_http_flowscale_runs_lock(z);
    ngx_http_flowscale_stats_cached->deployments[i].accepted++;
    ngx_http_flowscale_runs_unlock(z);
}


/*
 * A failed query: the database could not be reached, timed out, or
 * refused the statement.  Exceptions raised on purpose by our own SQL
 * functions (SQLSTATE class FS, P0001) are answers, not errors.
 */

void
ngx_http_flowscale_stats_db_result(PGresult *res)
{
    char  *state;

    if (ngx_http_flowscale_stats_cached == NULL) {
        return;
    }

    if (res) {
        if (PQresultStatus(res) != PGRES_FATAL_ERROR
            && PQresultStatus(res) != PGRES_BAD_RESPONSE)
        {
            return;
        }

        state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

        if (state && (ngx_strncmp(state, "FS", 2) == 0
                      || ngx_strcmp(state, "P0001") == 0))
        {
            return;
        }
    }

    (void) ngx_atomic_fetch_add(&ngx_http_flowscale_stats_cached->db_errors,
                                1);
}


/* responses of deployment locations by code, in the log phase */

static ngx_int_t
ngx_http_flowscale_stats_log(ngx_http_request_t *r)
{
    ngx_int_t                        i;
    ngx_uint_t                       j, status;
    ngx_http_flowscale_zone_t       *z;
    ngx_http_flowscale_dstats_t     *d;
    ngx_http_flowscale_loc_conf_t   *flcf;

    flcf = ngx_http_get_module_loc_conf(r, ngx_http_flowscale_module);

    if (flcf == NULL || flcf->name.len == 0
        || ngx_http_flowscale_stats_cached == NULL)
    {
        return NGX_OK;
    }

    i = ngx_http_flowscale_stats_index(flcf);
    if (i < 0) {
        return NGX_OK;
    }

    status = r->err_status ? r->err_status : r->headers_out.status;

    if (status == 0) {
        /* the client left before an answer: as nginx logs it */
        status = 499;
    }

    z = ngx_http_flowscale_zone_get((ngx_cycle_t *) ngx_cycle);
    d = &ngx_http_flowscale_stats_cached->deployments[i];

    ngx_http_flowscale_runs_lock(z);

    for (j = 0; j < NGX_HTTP_FLOWSCALE_CODES; j++) {
        if (d->codes[j].code == status || d->codes[j].code == 0) {
            d->codes[j].code = status;
            d->codes[j].n++;
            break;
        }
    }

    if (j == NGX_HTTP_FLOWSCALE_CODES) {
        d->codes_other++;
    }

    ngx_http_flowscale_runs_unlock(z);

    return NGX_OK;
}


/* ------------------------------------------------------------------------
 * the pages
 */

static ngx_int_t
ngx_http_flowscale_snapshot(ngx_pool_t *pool,
    ngx_http_flowscale_snapshot_t *s)
{
    int64_t                          now;
    ngx_uint_t                       i, nd, nb, f, seen;
    ngx_http_flowscale_zone_t       *z;
    ngx_http_flowscale_wstats_t     *w;
    ngx_http_flowscale_stats_sh_t   *st;

    ngx_memzero(s, sizeof(ngx_http_flowscale_snapshot_t));

    z = ngx_http_flowscale_zone_get((ngx_cycle_t *) ngx_cycle);
    if (z == NULL) {
        return NGX_OK;
    }

    /* sized for the most there can be, so the copy needs no second pass */
    s->ds = ngx_palloc(pool, NGX_HTTP_FLOWSCALE_MAX_DEPLOYMENTS
                       * sizeof(ngx_http_flowscale_deployment_state_t));
    s->st = ngx_pcalloc(pool, NGX_HTTP_FLOWSCALE_MAX_DEPLOYMENTS
                        * sizeof(ngx_http_flowscale_dstats_t));
    s->backends = ngx_palloc(pool, NGX_HTTP_FLOWSCALE_MAX_BACKENDS
                             * sizeof(ngx_http_flowscale_backend_slot_t));

    if (s->ds == NULL || s->st == NULL || s->backends == NULL) {
        return NGX_ERROR;
    }

    now = ngx_http_flowscale_now_ms();

    ngx_http_flowscale_runs_lock(z);

    st = ngx_http_flowscale_stats_sh(z);

    s->generation = z->sh->generation;
    s->leader = z->sh->leader;

    nd = z->sh->ndeployments;
    nb = z->sh->nbackends;
    s->ndeployments = nd;
    s->nbackends = nb;

    ngx_memcpy(s->ds, z->sh->deployments,
               nd * sizeof(ngx_http_flowscale_deployment_state_t));
    ngx_memcpy(s->backends, z->sh->backends,
               nb * sizeof(ngx_http_flowscale_backend_slot_t));

    if (st) {
        ngx_memcpy(s->st, st->deployments,
                   nd * sizeof(ngx_http_flowscale_dstats_t));
        ngx_memcpy(s->failures, st->backend_failures,
                   nb * sizeof(uint64_t));

        /* failures since the leader last counted them */
        for (i = 0; i < nb; i++) {
            f = z->sh->backends[i].fails;
            seen = st->backend_fails_seen[i];
            s->failures[i] += (f > seen) ? f - seen : (f < seen) ? f : 0;
        }
        s->db_errors = st->db_errors;

        for (i = 0; i < NGX_HTTP_FLOWSCALE_STATS_WORKERS; i++) {
            w = &st->workers[i];

            if (w->pid && now - w->seen <= NGX_HTTP_FLOWSCALE_WORKER_STALE) {
                s->workers++;
                s->pool += w->pool;
                s->up += w->up;
            }
        }
    }

    ngx_http_flowscale_runs_unlock(z);

    return NGX_OK;
}


/* a Prometheus label value: \ " and newline escaped */

static u_char *
ngx_http_flowscale_prom_escape(u_char *p, u_char *s, size_t len)
{
    u_char  *last;

    for (last = s + len; s < last; s++) {
        switch (*s) {
        case '\\':
            *p++ = '\\'; *p++ = '\\';
            break;
        case '"':
            *p++ = '\\'; *p++ = '"';
            break;
        case '\n':
            *p++ = '\\'; *p++ = 'n';
            break;
        default:
            *p++ = *s;
        }
    }

    return p;
}


/* a JSON string's contents (at most 6 bytes for each byte) */

static u_char *
ngx_http_flowscale_json_escape(u_char *p, u_char *s, size_t len)
{
    u_char         *last;
    static u_char   hex[] = "0123456789abcdef";

    for (last = s + len; s < last; s++) {
        switch (*s) {
        case '\\':
            *p++ = '\\'; *p++ = '\\';
            break;
        case '"':
            *p++ = '\\'; *p++ = '"';
            break;
        case '\n':
            *p++ = '\\'; *p++ = 'n';
            break;
        case '\r':
            *p++ = '\\'; *p++ = 'r';
            break;
        case '\t':
            *p++ = '\\'; *p++ = 't';
            break;
        default:
            if (*s < 0x20 || *s == 0x7f) {
                p = ngx_cpymem(p, "\\u00", 4);
                *p++ = hex[*s >> 4];
                *p++ = hex[*s & 0xf];

            } else {
                *p++ = *s;
            }
        }
    }

    return p;
}


static u_char *
ngx_http_flowscale_seconds(u_char *p, uint64_t ms)
{
    return ngx_sprintf(p, "%uL.%03uL", ms / 1000, ms % 1000);
}


static double
ngx_http_flowscale_clock(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return ts.tv_sec + ts.tv_nsec / 1e9;
}


static ngx_int_t
ngx_http_flowscale_stats_send(ngx_http_request_t *r, ngx_str_t *type,
    u_char *start, u_char *end)
{
    ngx_str_t  body;

    body.data = start;
    body.len = end - start;

    r->headers_out.last_modified_time = -1;

    return ngx_http_flowscale_send_json(r, NGX_HTTP_OK, type, &body);
}


#define ngx_http_flowscale_cpy(p, s)  ngx_cpymem(p, s, sizeof(s) - 1)


static ngx_int_t
ngx_http_flowscale_page_request(ngx_http_request_t *r)
{
    ngx_int_t  rc;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);

    return rc;
}


/* flowscale_metrics: the Prometheus text exposition format 0.0.4 */

ngx_int_t
ngx_http_flowscale_metrics_handler(ngx_http_request_t *r)
{
    u_char                           *buf, *p, *lp, **labels;
    size_t                            len, *llen;
    double                            t0;
    uint64_t                          cum;
    ngx_int_t                         rc;
    ngx_uint_t                        i, j, up;
    ngx_http_flowscale_dstats_t      *d;
    ngx_http_flowscale_snapshot_t     s;
    ngx_http_flowscale_histogram_t   *h;
    ngx_http_flowscale_auth_stats_t   a;
    const char                      **le;

    static ngx_str_t  type =
        ngx_string("text/plain; version=0.0.4; charset=utf-8");

    static const char  *status_names[] = {
        "queued", "running", "succeeded", "failed", "canceled"
    };

    rc = ngx_http_flowscale_page_request(r);
    if (rc != NGX_OK) {
        return rc;
    }

    t0 = ngx_http_flowscale_clock();

    if (ngx_http_flowscale_snapshot(r->pool, &s) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* its own lock pass; never inside ours */
    ngx_http_flowscale_auth_stats(&a);

    /* each deployment's labels, escaped once */
    labels = ngx_palloc(r->pool, (s.ndeployments + 1) * sizeof(u_char *));
    llen = ngx_palloc(r->pool, (s.ndeployments + 1) * sizeof(size_t));
    if (labels == NULL || llen == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    len = 8192;

    for (i = 0; i < s.ndeployments; i++) {
        labels[i] = ngx_pnalloc(r->pool, sizeof("project=\"\",deployment=\"\"")
                                + 2 * sizeof(s.ds[i].project)
                                + 2 * sizeof(s.ds[i].name));
        if (labels[i] == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        lp = ngx_http_flowscale_cpy(labels[i], "project=\"");
        lp = ngx_http_flowscale_prom_escape(lp, s.ds[i].project,
                                            ngx_strlen(s.ds[i].project));
        lp = ngx_http_flowscale_cpy(lp, "\",deployment=\"");
        lp = ngx_http_flowscale_prom_escape(lp, s.ds[i].name,
                                            ngx_strlen(s.ds[i].name));
        *lp++ = '"';
        llen[i] = lp - labels[i];

        /* 5 + 1 + 2 + 2 * 18 + 17 lines at most, each the labels + 96 */
        len += 61 * (llen[i] + 96);
    }

    len += s.nbackends * 3 * (sizeof(s.backends[0].name) * 2 + 96);

    buf = ngx_pnalloc(r->pool, len);
    if (buf == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = buf;

    /* runs */

    p = ngx_http_flowscale_cpy(p,
            "# HELP flowscale_runs_total Runs that ended, by final status.\n"
            "# TYPE flowscale_runs_total counter\n");

    for (i = 0; i < s.ndeployments; i++) {
        for (j = NGX_HTTP_FLOWSCALE_SUCCEEDED; j <= NGX_HTTP_FLOWSCALE_CANCELED;
             j++)
        {
            p = ngx_sprintf(p, "flowscale_runs_total{%*s,status=\"%s\"} %uL\n",
                            llen[i], labels[i], status_names[j],
                            s.st[i].runs[j]);
        }
    }

    p = ngx_http_flowscale_cpy(p,
            "# HELP flowscale_runs_accepted_total Runs accepted (committed "
            "in PostgreSQL).\n"
            "# TYPE flowscale_runs_accepted_total counter\n");

    for (i = 0; i < s.ndeployments; i++) {
        p = ngx_sprintf(p, "flowscale_runs_accepted_total{%*s} %uL\n",
                        llen[i], labels[i], s.st[i].accepted);
    }

    p = ngx_http_flowscale_cpy(p,
            "# HELP flowscale_queue_depth Runs waiting in the gateway "
            "queue.\n"
            "# TYPE flowscale_queue_depth gauge\n");

    for (i = 0; i < s.ndeployments; i++) {
        p = ngx_sprintf(p, "flowscale_queue_depth{%*s} %ui\n",
                        llen[i], labels[i], s.ds[i].queued);
    }

    p = ngx_http_flowscale_cpy(p,
            "# HELP flowscale_deployment_state The deployment's state "
            "(1 for the current one).\n"
            "# TYPE flowscale_deployment_state gauge\n");

    for (i = 0; i < s.ndeployments; i++) {
        p = ngx_sprintf(p, "flowscale_deployment_state{%*s,state=\"%s\"} 1\n",
                        llen[i], labels[i],
                        s.st[i].stopped ? "stopped"
                        : s.ds[i].generation != s.generation ? "deploying"
                        : ngx_http_flowscale_state_name(s.ds[i].state));
    }

    /* histograms */

    for (j = 0; j < 2; j++) {
        if (j == 0) {
            p = ngx_http_flowscale_cpy(p,
                    "# HELP flowscale_queue_wait_seconds Time from "
                    "acceptance to the start on a backend.\n"
                    "# TYPE flowscale_queue_wait_seconds histogram\n");
            le = ngx_http_flowscale_wait_le;

        } else {
            p = ngx_http_flowscale_cpy(p,
                    "# HELP flowscale_run_duration_seconds Execution time "
                    "on the backend.\n"
                    "# TYPE flowscale_run_duration_seconds histogram\n");
            le = ngx_http_flowscale_duration_le;
        }

        for (i = 0; i < s.ndeployments; i++) {
            d = &s.st[i];
            h = j ? &d->duration : &d->wait;
            cum = 0;

            for (up = 0; up < 16; up++) {
                cum += h->bucket[up];
                p = ngx_sprintf(p, "%s_bucket{%*s,le=\"%s\"} %uL\n",
                                j ? "flowscale_run_duration_seconds"
                                  : "flowscale_queue_wait_seconds",
                                llen[i], labels[i], le[up], cum);
            }

            p = ngx_sprintf(p, "%s_sum{%*s} ",
                            j ? "flowscale_run_duration_seconds"
                              : "flowscale_queue_wait_seconds",
                            llen[i], labels[i]);
            p = ngx_http_flowscale_seconds(p, h->sum_ms);
            p = ngx_sprintf(p, "\n%s_count{%*s} %uL\n",
                            j ? "flowscale_run_duration_seconds"
                              : "flowscale_queue_wait_seconds",
                            llen[i], labels[i], h->count);
        }
    }

    /* HTTP */

    p = ngx_http_flowscale_cpy(p,
            "# HELP flowscale_http_responses_total Responses of deployment "
            "locations, by status code.\n"
            "# TYPE flowscale_http_responses_total counter\n");

    for (i = 0; i < s.ndeployments; i++) {
        d = &s.st[i];

        for (up = 0; up < NGX_HTTP_FLOWSCALE_CODES && d->codes[up].code;
             up++)
        {
            p = ngx_sprintf(p, "flowscale_http_responses_total{%*s,"
                            "code=\"%uD\"} %uL\n", llen[i], labels[i],
                            d->codes[up].code, d->codes[up].n);
        }

        if (d->codes_other) {
            p = ngx_sprintf(p, "flowscale_http_responses_total{%*s,"
                            "code=\"other\"} %uL\n", llen[i], labels[i],
                            d->codes_other);
        }
    }

    /* backends */

    p = ngx_http_flowscale_cpy(p,
            "# HELP flowscale_backend_up Whether the ComfyUI backend "
            "answers its health probe.\n"
            "# TYPE flowscale_backend_up gauge\n");

    for (i = 0; i < s.nbackends; i++) {
        p = ngx_http_flowscale_cpy(p, "flowscale_backend_up{backend=\"");
        p = ngx_http_flowscale_prom_escape(p, s.backends[i].name,
                                           ngx_strlen(s.backends[i].name));
        p = ngx_sprintf(p, "\"} %d\n",
                        s.backends[i].probed && !s.backends[i].down);
    }

    p = ngx_http_flowscale_cpy(p,
            "# HELP flowscale_backend_outstanding Runs handed to the "
            "backend and not finished.\n"
            "# TYPE flowscale_backend_outstanding gauge\n");

    for (i = 0; i < s.nbackends; i++) {
        p = ngx_http_flowscale_cpy(p,
                                   "flowscale_backend_outstanding{backend=\"");
        p = ngx_http_flowscale_prom_escape(p, s.backends[i].name,
                                           ngx_strlen(s.backends[i].name));
        p = ngx_sprintf(p, "\"} %ui\n", s.backends[i].outstanding);
    }

    p = ngx_http_flowscale_cpy(p,
            "# HELP flowscale_backend_failures_total Failed probes and "
            "requests to the backend.\n"
            "# TYPE flowscale_backend_failures_total counter\n");

    for (i = 0; i < s.nbackends; i++) {
        p = ngx_http_flowscale_cpy(p,
                                 "flowscale_backend_failures_total{backend=\"");
        p = ngx_http_flowscale_prom_escape(p, s.backends[i].name,
                                           ngx_strlen(s.backends[i].name));
        p = ngx_sprintf(p, "\"} %uL\n", s.failures[i]);
    }

    /* API keys */

    p = ngx_sprintf(p,
            "# HELP flowscale_key_checks_total API key checks, by result.\n"
            "# TYPE flowscale_key_checks_total counter\n"
            "flowscale_key_checks_total{result=\"ok\"} %uA\n"
            "flowscale_key_checks_total{result=\"public\"} %uA\n"
            "flowscale_key_checks_total{result=\"missing\"} %uA\n"
            "flowscale_key_checks_total{result=\"invalid\"} %uA\n"
            "flowscale_key_checks_total{result=\"forbidden\"} %uA\n"
            "flowscale_key_checks_total{result=\"revoked\"} %uA\n"
            "flowscale_key_checks_total{result=\"unavailable\"} %uA\n"
            "# HELP flowscale_key_cache_hits_total Key checks answered from "
            "the cache in the shared zone.\n"
            "# TYPE flowscale_key_cache_hits_total counter\n"
            "flowscale_key_cache_hits_total %uA\n"
            "# HELP flowscale_key_lookups_total Key lookups sent to "
            "PostgreSQL.\n"
            "# TYPE flowscale_key_lookups_total counter\n"
            "flowscale_key_lookups_total %uA\n"
            "# HELP flowscale_key_limited_total Runs refused by "
            "flowscale_key_concurrency.\n"
            "# TYPE flowscale_key_limited_total counter\n"
            "flowscale_key_limited_total %uA\n",
            a.ok, a.open, a.missing, a.invalid, a.forbidden, a.revoked,
            a.unavailable, a.cache_hits, a.lookups, a.limited);

    /* the database */

    p = ngx_sprintf(p,
            "# HELP flowscale_db_errors_total PostgreSQL queries that "
            "failed (unreachable, timed out or refused).\n"
            "# TYPE flowscale_db_errors_total counter\n"
            "flowscale_db_errors_total %uL\n"
            "# HELP flowscale_db_pool_size PostgreSQL connections the "
            "workers may open.\n"
            "# TYPE flowscale_db_pool_size gauge\n"
            "flowscale_db_pool_size %ui\n"
            "# HELP flowscale_db_connections_up PostgreSQL connections open "
            "or opening.\n"
            "# TYPE flowscale_db_connections_up gauge\n"
            "flowscale_db_connections_up %ui\n"
            "# HELP flowscale_fronts nginx fronts holding a lease on this "
            "PostgreSQL at the last beat.\n"
            "# TYPE flowscale_fronts gauge\n"
            "flowscale_fronts %ui\n",
            s.db_errors, s.pool, s.up, ngx_http_flowscale_fronts());

    p = ngx_sprintf(p,
            "# HELP flowscale_metrics_render_seconds Time this page took to "
            "render.\n"
            "# TYPE flowscale_metrics_render_seconds gauge\n"
            "flowscale_metrics_render_seconds %.6f\n",
            ngx_http_flowscale_clock() - t0);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "flowscale metrics: %uz of %uz bytes", p - buf, len);

    return ngx_http_flowscale_stats_send(r, &type, buf, p);
}


/* flowscale_status: JSON of deployments, backends and the database */

ngx_int_t
ngx_http_flowscale_status_handler(ngx_http_request_t *r)
{
    u_char                                 *buf, *p;
    size_t                                  len;
    double                                  t0;
    uint64_t                                bits;
    ngx_int_t                               rc, k;
    ngx_uint_t                              i, j, first, nconf;
    ngx_tm_t                                tm;
    const char                             *state, *id;
    ngx_http_flowscale_dstats_t            *d, zero;
    ngx_http_flowscale_snapshot_t           s;
    ngx_http_flowscale_loc_conf_t         **flcfp, *flcf;
    ngx_http_flowscale_main_conf_t         *fmcf;
    ngx_http_flowscale_backend_slot_t      *b;
    ngx_http_flowscale_deployment_state_t  *ds, none;

    static ngx_str_t  type = ngx_string("application/json");

    rc = ngx_http_flowscale_page_request(r);
    if (rc != NGX_OK) {
        return rc;
    }

    t0 = ngx_http_flowscale_clock();

    if (ngx_http_flowscale_snapshot(r->pool, &s) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    fmcf = ngx_http_get_module_main_conf(r, ngx_http_flowscale_module);
    flcfp = fmcf->deployments.elts;
    nconf = fmcf->deployments.nelts;

    ngx_memzero(&zero, sizeof(zero));
    ngx_memzero(&none, sizeof(none));

    len = 1024;

    for (i = 0; i < nconf; i++) {
        len += 2048 + 6 * (flcfp[i]->project.len + flcfp[i]->name.len
                           + flcfp[i]->location.len + sizeof(none.reason))
               + s.nbackends * (2 * sizeof(s.backends[0].name) + 8);
    }

    len += s.nbackends * (512 + 6 * (sizeof(s.backends[0].name)
                                     + sizeof(s.backends[0].version)
                                     + sizeof(s.backends[0].error)));

    buf = ngx_pnalloc(r->pool, len);
    if (buf == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_sprintf(buf, "{\"generation\":%ui,\"leader\":%P,"
                    "\"deployments\":[", s.generation, s.leader);

    for (i = 0; i < nconf; i++) {
        flcf = flcfp[i];
        k = ngx_http_flowscale_stats_index(flcf);

        if (k >= 0 && (ngx_uint_t) k < s.ndeployments) {
            ds = &s.ds[k];
            d = &s.st[k];

        } else {
            ds = &none;
            d = &zero;
        }

        if (d->stopped || ds->state == NGX_HTTP_FLOWSCALE_STOPPED) {
            state = "stopped";

        } else if (ds->generation != s.generation) {
            state = "deploying";

        } else {
            state = ngx_http_flowscale_state_name(ds->state);
        }

        if (i) {
            *p++ = ',';
        }

        p = ngx_http_flowscale_cpy(p, "\n{\"name\":\"");
        p = ngx_http_flowscale_json_escape(p, flcf->name.data, flcf->name.len);
        p = ngx_http_flowscale_cpy(p, "\",\"project\":\"");
        p = ngx_http_flowscale_json_escape(p, flcf->project.data,
                                           flcf->project.len);
        p = ngx_http_flowscale_cpy(p, "\",\"location\":\"");
        p = ngx_http_flowscale_json_escape(p, flcf->location.data,
                                           flcf->location.len);
        p = ngx_sprintf(p, "\",\"version\":\"%s\",\"state\":\"%s\","
                        "\"reason\":", flcf->deployment->version, state);

        if (ngx_strcmp(state, "failed") == 0 && ds->reason[0]) {
            *p++ = '"';
            p = ngx_http_flowscale_json_escape(p, ds->reason,
                                               ngx_strlen(ds->reason));
            *p++ = '"';

        } else if (d->stopped) {
            p = ngx_http_flowscale_cpy(p,
                    "\"stopped with flowscale.stop_deployment()\"");

        } else {
            p = ngx_http_flowscale_cpy(p, "null");
        }

        p = ngx_sprintf(p, ",\"stopped\":%s,\"capable_backends\":[",
                        d->stopped ? "true" : "false");

        bits = (ds->generation == s.generation) ? ds->capable : 0;
        first = 1;

        for (j = 0; j < s.nbackends && j < 64; j++) {
            if (!(bits & ((uint64_t) 1 << j))) {
                continue;
            }

            if (!first) {
                *p++ = ',';
            }

            *p++ = '"';
            p = ngx_http_flowscale_json_escape(p, s.backends[j].name,
                                          ngx_strlen(s.backends[j].name));
            *p++ = '"';
            first = 0;
        }

        p = ngx_sprintf(p, "],\"queue_depth\":%ui,\"runs\":{\"accepted\":%uL,"
                        "\"succeeded\":%uL,\"failed\":%uL,\"canceled\":%uL},"
                        "\"queue_wait_seconds\":{\"count\":%uL,\"sum\":",
                        ds->queued, d->accepted,
                        d->runs[NGX_HTTP_FLOWSCALE_SUCCEEDED],
                        d->runs[NGX_HTTP_FLOWSCALE_FAILED],
                        d->runs[NGX_HTTP_FLOWSCALE_CANCELED], d->wait.count);
        p = ngx_http_flowscale_seconds(p, d->wait.sum_ms);
        p = ngx_sprintf(p, "},\"run_duration_seconds\":{\"count\":%uL,"
                        "\"sum\":", d->duration.count);
        p = ngx_http_flowscale_seconds(p, d->duration.sum_ms);
        p = ngx_http_flowscale_cpy(p, "},\"http_responses\":{");

        for (j = 0; j < NGX_HTTP_FLOWSCALE_CODES && d->codes[j].code; j++) {
            p = ngx_sprintf(p, "%s\"%uD\":%uL", j ? "," : "",
                            d->codes[j].code, d->codes[j].n);
        }

        p = ngx_http_flowscale_cpy(p, "}}");
    }

    p = ngx_http_flowscale_cpy(p, "],\n\"backends\":[");

    for (i = 0; i < s.nbackends; i++) {
        b = &s.backends[i];

        if (i) {
            *p++ = ',';
        }

        p = ngx_http_flowscale_cpy(p, "\n{\"name\":\"");
        p = ngx_http_flowscale_json_escape(p, b->name, ngx_strlen(b->name));
        p = ngx_sprintf(p, "\",\"up\":%s,\"probed\":%s,\"outstanding\":%ui,"
                        "\"failures\":%uL,\"comfyui_version\":",
                        b->probed && !b->down ? "true" : "false",
                        b->probed ? "true" : "false", b->outstanding,
                        s.failures[i]);

        if (b->version[0]) {
            *p++ = '"';
            p = ngx_http_flowscale_json_escape(p, b->version,
                                               ngx_strlen(b->version));
            *p++ = '"';

        } else {
            p = ngx_http_flowscale_cpy(p, "null");
        }

        p = ngx_http_flowscale_cpy(p, ",\"last_error\":");

        if (b->error[0]) {
            *p++ = '"';
            p = ngx_http_flowscale_json_escape(p, b->error,
                                               ngx_strlen(b->error));
            *p++ = '"';

        } else {
            p = ngx_http_flowscale_cpy(p, "null");
        }

        p = ngx_http_flowscale_cpy(p, ",\"last_seen\":");

        if (b->last_seen) {
            ngx_gmtime((time_t) (b->last_seen / 1000), &tm);
            p = ngx_sprintf(p, "\"%4d-%02d-%02dT%02d:%02d:%02d.%03dZ\"}",
                            tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                            tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec,
                            (int) (b->last_seen % 1000));

        } else {
            p = ngx_http_flowscale_cpy(p, "null}");
        }
    }

    id = ngx_http_flowscale_front_id();

    p = ngx_sprintf(p, "],\n\"database\":{\"configured\":%s,"
                    "\"pool_size\":%ui,\"workers\":%ui,\"connections\":%ui,"
                    "\"connections_up\":%ui,\"errors\":%uL},\n"
                    "\"front\":{\"id\":%s%s%s,\"fronts\":%ui},\n"
                    "\"render_seconds\":%.6f}\n",
                    fmcf->db ? "true" : "false",
                    fmcf->db ? fmcf->db->pool_size : 0, s.workers, s.pool,
                    s.up, s.db_errors, id[0] ? "\"" : "", id[0] ? id : "null",
                    id[0] ? "\"" : "", ngx_http_flowscale_fronts(),
                    ngx_http_flowscale_clock() - t0);

    return ngx_http_flowscale_stats_send(r, &type, buf, p);
}


/* ------------------------------------------------------------------------
 * variables
 */

/* the run this request is about: POST L's new run, or L/runs/ID... */

static ngx_int_t
ngx_http_flowscale_request_run(ngx_http_request_t *r, ngx_str_t *id)
{
    ngx_str_t                      *created, rest;
    ngx_uint_t                      status;
    ngx_http_flowscale_loc_conf_t  *flcf;

    flcf = ngx_http_get_module_loc_conf(r, ngx_http_flowscale_module);

    if (flcf == NULL || flcf->name.len == 0
        || r->uri.len < flcf->location.len)
    {
        return NGX_DECLINED;
    }

    rest.data = r->uri.data + flcf->location.len;
    rest.len = r->uri.len - flcf->location.len;

    if (rest.len <= 1 && r->method == NGX_HTTP_POST) {
        /* a run exists for these answers only */
        status = r->err_status ? r->err_status : r->headers_out.status;

        if (status != NGX_HTTP_OK && status != NGX_HTTP_ACCEPTED
            && status != NGX_HTTP_BAD_GATEWAY)
        {
            return NGX_DECLINED;
        }

        created = ngx_http_flowscale_create_run_id(r);

        if (created == NULL
            || created->len != NGX_HTTP_FLOWSCALE_RUN_ID_LEN)
        {
            return NGX_DECLINED;
        }

        *id = *created;
        return NGX_OK;
    }

    if (rest.len < sizeof("/runs/") - 1 + NGX_HTTP_FLOWSCALE_RUN_ID_LEN
        || ngx_strncmp(rest.data, "/runs/", sizeof("/runs/") - 1) != 0)
    {
        return NGX_DECLINED;
    }

    (void) ngx_http_flowscale_route_run_id(&rest, id);

    return ngx_http_flowscale_is_run_id(id) ? NGX_OK : NGX_DECLINED;
}


/* with the zone's copy of the run: its backend and queue wait */

static ngx_int_t
ngx_http_flowscale_request_run_info(ngx_http_request_t *r, u_char *backend,
    size_t size, int64_t *wait)
{
    ngx_str_t                   id;
    ngx_http_flowscale_zone_t  *z;
    ngx_http_flowscale_run_t   *run;

    if (ngx_http_flowscale_request_run(r, &id) != NGX_OK) {
        return NGX_DECLINED;
    }

    z = ngx_http_flowscale_zone_get((ngx_cycle_t *) ngx_cycle);
    if (z == NULL) {
        return NGX_DECLINED;
    }

    ngx_http_flowscale_runs_lock(z);

    run = ngx_http_flowscale_runs_find(z, id.data, id.len);

    if (run) {
        ngx_cpystrn(backend, run->backend, size);
        *wait = run->started ? run->started - run->created : -1;
    }

    ngx_http_flowscale_runs_unlock(z);

    return run ? NGX_OK : NGX_DECLINED;
}


static ngx_int_t
ngx_http_flowscale_var_set(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, u_char *data, size_t len, ngx_uint_t copy)
{
    if (len == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    if (copy) {
        v->data = ngx_pnalloc(r->pool, len);
        if (v->data == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(v->data, data, len);

    } else {
        v->data = data;
    }

    v->len = len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_flowscale_var_run_id(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t  id;

    if (ngx_http_flowscale_request_run(r, &id) != NGX_OK) {
        v->not_found = 1;
        return NGX_OK;
    }

    return ngx_http_flowscale_var_set(r, v, id.data, id.len, 0);
}


static ngx_int_t
ngx_http_flowscale_var_deployment(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_flowscale_loc_conf_t  *flcf;

    flcf = ngx_http_get_module_loc_conf(r, ngx_http_flowscale_module);

    if (flcf == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    return ngx_http_flowscale_var_set(r, v, flcf->name.data, flcf->name.len,
                                      0);
}


static ngx_int_t
ngx_http_flowscale_var_backend(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    int64_t  wait;
    u_char   backend[64];

    backend[0] = '\0';

    if (ngx_http_flowscale_request_run_info(r, backend, sizeof(backend),
                                            &wait)
        != NGX_OK)
    {
        v->not_found = 1;
        return NGX_OK;
    }

    return ngx_http_flowscale_var_set(r, v, backend, ngx_strlen(backend), 1);
}


static ngx_int_t
ngx_http_flowscale_var_key_id(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t                      *key;
    ngx_http_flowscale_loc_conf_t  *flcf;

    flcf = ngx_http_get_module_loc_conf(r, ngx_http_flowscale_module);

    if (flcf == NULL || flcf->name.len == 0) {
        /* the key check runs in deployment locations only */
        v->not_found = 1;
        return NGX_OK;
    }

    key = ngx_http_flowscale_auth_key_id(r);

    if (key == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    return ngx_http_flowscale_var_set(r, v, key->data, key->len, 0);
}


static ngx_int_t
ngx_http_flowscale_var_queue_time(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char   *p, backend[64];
    int64_t   wait;

    if (ngx_http_flowscale_request_run_info(r, backend, sizeof(backend),
                                            &wait)
        != NGX_OK
        || wait < 0)
    {
        v->not_found = 1;
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, NGX_INT64_LEN + 5);
    if (p == NULL) {
        return NGX_ERROR;
    }

    return ngx_http_flowscale_var_set(r, v, p,
               ngx_http_flowscale_seconds(p, (uint64_t) wait) - p, 0);
}
