
/*
 * FlowScale for nginx: the deployment registry (issue 7).
 *
 * The leader records every deployment of the configuration in
 * flowscale.deployments once per configuration generation (a reload with
 * a changed workflow or I/O is a new version: a new row), keeps each row's
 * state in step with the zone, and reads the "stopped" flags that
 * flowscale.stop_deployment() and start_deployment() set, every 500 ms,
 * into the zone: a stopped deployment answers new runs with 503 while the
 * runs it has go on.  The flags live in PostgreSQL, so they survive
 * restarts and reach every nginx in front of the same database.
 *
 * Polling, rather than a LISTEN channel: one small query every 500 ms from
 * one worker, no second notification connection to keep healthy, and the
 * same code path after a restart, a reload or a missed notification.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_flowscale_module.h"
#include "ngx_http_flowscale_stats.h"
#include "ngx_http_flowscale_pg.h"


#define NGX_HTTP_FLOWSCALE_FLAGS_INTERVAL     500
#define NGX_HTTP_FLOWSCALE_REGISTER_RETRY     2000


typedef struct {
    ngx_int_t                       index;      /* in the zone */
    ngx_http_flowscale_state_e      state;
    u_char                          reason[160];
} ngx_http_flowscale_state_update_t;


static void ngx_http_flowscale_register_all(ngx_http_flowscale_zone_t *z);
static void ngx_http_flowscale_registered(void *data, PGresult *res,
    const char *error);
static void ngx_http_flowscale_poll_flags(void);
static void ngx_http_flowscale_flags_read(void *data, PGresult *res,
    const char *error);
static void ngx_http_flowscale_state_saved(void *data, PGresult *res,
    const char *error);
static void ngx_http_flowscale_apply_stopped(ngx_http_flowscale_zone_t *z,
    ngx_http_flowscale_stats_sh_t *st, ngx_int_t i, ngx_uint_t stopped);
static ngx_http_flowscale_state_e ngx_http_flowscale_effective_state(
    ngx_http_flowscale_zone_t *z, ngx_http_flowscale_stats_sh_t *st,
    ngx_int_t i);


static ngx_uint_t  ngx_http_flowscale_registering;
static ngx_uint_t  ngx_http_flowscale_register_failed;
static ngx_msec_t  ngx_http_flowscale_register_next;
static ngx_uint_t  ngx_http_flowscale_polling;
static ngx_uint_t  ngx_http_flowscale_poll_failed;

static ngx_http_flowscale_state_update_t
                   ngx_http_flowscale_updates[NGX_HTTP_FLOWSCALE_MAX_DEPLOYMENTS];


void
ngx_http_flowscale_registry_tick(void)
{
    int64_t                           now;
    ngx_int_t                         k;
    ngx_uint_t                        i, n, fails, todo_register, todo_poll;
    const char                       *params[5];
    ngx_http_flowscale_zone_t        *z;
    ngx_http_flowscale_dstats_t      *d;
    ngx_http_flowscale_stats_sh_t    *st;
    ngx_http_flowscale_loc_conf_t   **flcfp;
    ngx_http_flowscale_main_conf_t   *fmcf;
    ngx_http_flowscale_state_e        state;
    ngx_http_flowscale_state_update_t  *u;

    z = ngx_http_flowscale_zone_get((ngx_cycle_t *) ngx_cycle);
    fmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_flowscale_module);

    if (z == NULL || fmcf == NULL || fmcf->db == NULL
        || ngx_http_flowscale_stats_generation != z->sh->generation)
    {
        /* a worker of an older configuration: the new ones register */
        return;
    }

    flcfp = fmcf->deployments.elts;
    now = ngx_http_flowscale_now_ms();
    n = 0;

    ngx_http_flowscale_runs_lock(z);

    st = ngx_http_flowscale_stats_sh(z);

    if (st == NULL) {
        ngx_http_flowscale_runs_unlock(z);
        return;
    }

    /* backend failures: each new failure the slots counted since */
    for (i = 0; i < z->sh->nbackends; i++) {
        fails = z->sh->backends[i].fails;

        if (fails > st->backend_fails_seen[i]) {
            st->backend_failures[i] += fails - st->backend_fails_seen[i];

        } else if (fails < st->backend_fails_seen[i]) {
            /* a success reset the count, and these failed since */
            st->backend_failures[i] += fails;
        }

        st->backend_fails_seen[i] = fails;
    }

    todo_register = (st->registered != z->sh->generation);

    todo_poll = !ngx_http_flowscale_polling
                && now - st->flags_at
                   >= NGX_HTTP_FLOWSCALE_FLAGS_INTERVAL - 50;

    if (todo_poll) {
        st->flags_at = now;
    }

    /* states that changed since they were recorded */
    for (i = 0; !todo_register && i < fmcf->deployments.nelts; i++) {
        k = ngx_http_flowscale_stats_index(flcfp[i]);
        if (k < 0) {
            continue;
        }

        d = &st->deployments[k];
        state = ngx_http_flowscale_effective_state(z, st, k);

        if (d->recorded_state == (ngx_int_t) state) {
            continue;
        }

        d->recorded_state = state;

        u = &ngx_http_flowscale_updates[n++];
        u->index = i;
        u->state = state;
        ngx_cpystrn(u->reason, z->sh->deployments[k].reason,
                    sizeof(u->reason));
    }

    ngx_http_flowscale_runs_unlock(z);

    if (todo_register && !ngx_http_flowscale_registering
        && (ngx_msec_int_t) (ngx_current_msec
                             - ngx_http_flowscale_register_next) >= 0)
    {
        ngx_http_flowscale_register_all(z);
    }

    if (todo_poll) {
        ngx_http_flowscale_poll_flags();
    }

    for (i = 0; i < n; i++) {
        u = &ngx_http_flowscale_updates[i];

        params[0] = (char *) flcfp[u->index]->project.data;
        params[1] = (char *) flcfp[u->index]->name.data;
        params[2] = flcfp[u->index]->deployment->version;
        params[3] = ngx_http_flowscale_state_name(u->state);
        params[4] = (u->state == NGX_HTTP_FLOWSCALE_FAILED_STATE
                     && u->reason[0]) ? (char *) u->reason : NULL;

        if (ngx_http_flowscale_pg_query(
                "UPDATE flowscale.deployments SET state = $4, reason = $5, "
                "updated_at = now() "
                "WHERE project = $1 AND name = $2 AND version = $3",
                5, params, NULL, ngx_http_flowscale_state_saved,
                (void *) (uintptr_t) u->index, ngx_cycle->log)
            == NULL)
        {
            ngx_http_flowscale_state_saved((void *) (uintptr_t) u->index,
                                           NULL, "no database connection");
        }
    }
}


/* the state GET L shows, and stopped above all */

static ngx_http_flowscale_state_e
ngx_http_flowscale_effective_state(ngx_http_flowscale_zone_t *z,
    ngx_http_flowscale_stats_sh_t *st, ngx_int_t i)
{
    ngx_http_flowscale_deployment_state_t  *ds;

    ds = &z->sh->deployments[i];

    if (st->deployments[i].stopped) {
        return NGX_HTTP_FLOWSCALE_STOPPED;
    }

    if (ds->generation != z->sh->generation) {
        return NGX_HTTP_FLOWSCALE_DEPLOYING;
    }

    return ds->state;
}


static void
ngx_http_flowscale_state_saved(void *data, PGresult *res, const char *error)
{
    ngx_int_t                         k;
    ngx_uint_t                        i = (uintptr_t) data;
    ngx_http_flowscale_zone_t        *z;
    ngx_http_flowscale_stats_sh_t    *st;
    ngx_http_flowscale_loc_conf_t   **flcfp;
    ngx_http_flowscale_main_conf_t   *fmcf;

    if (res && PQresultStatus(res) == PGRES_COMMAND_OK) {
        return;
    }

    ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                  "flowscale: deployment state not recorded, will retry: %s",
                  res ? PQresultErrorMessage(res) : error);

    /* the next tick tries again */
    z = ngx_http_flowscale_zone_get((ngx_cycle_t *) ngx_cycle);
    fmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_flowscale_module);
    flcfp = fmcf->deployments.elts;
    k = ngx_http_flowscale_stats_index(flcfp[i]);

    if (z == NULL || k < 0) {
        return;
    }

    ngx_http_flowscale_runs_lock(z);

    st = ngx_http_flowscale_stats_sh(z);
    if (st) {
        st->deployments[k].recorded_state = -1;
    }

    ngx_http_flowscale_runs_unlock(z);
}


/*
 * Every deployment of this configuration: upserted with its workflow and
 * its descriptor; the answer says whether the deployment is stopped.
 */

static void
ngx_http_flowscale_register_all(ngx_http_flowscale_zone_t *z)
{
    char                             *workflow, *io, *location;
    json_t                           *desc;
    ngx_int_t                         k;
    ngx_uint_t                        i;
    const char                       *params[7];
    ngx_http_flowscale_stats_sh_t    *st;
    ngx_http_flowscale_loc_conf_t   **flcfp, *flcf;
    ngx_http_flowscale_main_conf_t   *fmcf;
    ngx_http_flowscale_state_e        state;

    fmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_flowscale_module);
    flcfp = fmcf->deployments.elts;

    ngx_http_flowscale_register_failed = 0;
    ngx_http_flowscale_registering = 1;     /* held until the loop ends */

    for (i = 0; i < fmcf->deployments.nelts; i++) {
        flcf = flcfp[i];
        k = ngx_http_flowscale_stats_index(flcf);

        state = NGX_HTTP_FLOWSCALE_PREPARING;

        if (k >= 0) {
            ngx_http_flowscale_runs_lock(z);
            st = ngx_http_flowscale_stats_sh(z);
            if (st) {
                state = ngx_http_flowscale_effective_state(z, st, k);
            }
            ngx_http_flowscale_runs_unlock(z);
        }

        location = ngx_alloc(flcf->location.len + 1, ngx_cycle->log);
        if (location == NULL) {
            ngx_http_flowscale_register_failed = 1;
            continue;
        }

        ngx_cpystrn((u_char *) location, flcf->location.data,
                    flcf->location.len + 1);

        desc = fs_deployment_describe(flcf->deployment,
                                      (char *) flcf->name.data, location,
                                      ngx_http_flowscale_state_name(state));
        ngx_free(location);

        workflow = json_dumps(flcf->deployment->workflow,
                              JSON_COMPACT | JSON_SORT_KEYS);
        io = desc ? json_dumps(desc, JSON_COMPACT) : NULL;
        json_decref(desc);

        params[0] = (char *) flcf->project.data;
        params[1] = (char *) flcf->name.data;
        params[2] = flcf->deployment->version;
        params[3] = workflow;
        params[4] = io;
        params[5] = ngx_http_flowscale_state_name(state);
        params[6] = NULL;

        if (workflow == NULL || io == NULL
            || ngx_http_flowscale_pg_query(
                   "SELECT flowscale.register_deployment($1, $2, $3, "
                   "$4::jsonb, $5::jsonb, $6, $7)",
                   7, params, NULL, ngx_http_flowscale_registered,
                   (void *) (uintptr_t) (i << 8 | state), ngx_cycle->log)
               == NULL)
        {
            ngx_http_flowscale_register_failed = 1;

        } else {
            ngx_http_flowscale_registering++;
        }

        free(workflow);
        free(io);
    }

    /* the loop's own hold */
    ngx_http_flowscale_registered(NULL, NULL, NULL);
}


static void
ngx_http_flowscale_registered(void *data, PGresult *res, const char *error)
{
    ngx_int_t                         k;
    ngx_uint_t                        i;
    ngx_http_flowscale_zone_t        *z;
    ngx_http_flowscale_dstats_t      *d;
    ngx_http_flowscale_stats_sh_t    *st;
    ngx_http_flowscale_loc_conf_t   **flcfp;
    ngx_http_flowscale_main_conf_t   *fmcf;

    z = ngx_http_flowscale_zone_get((ngx_cycle_t *) ngx_cycle);
    fmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_flowscale_module);
    flcfp = fmcf->deployments.elts;

    if (res || error) {
        /* the deployment, and the state the row was given */
        i = (uintptr_t) data >> 8;

        if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK
            || PQntuples(res) != 1)
        {
            if (!ngx_http_flowscale_register_failed) {
                ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                              "flowscale: deployment \"%V\" not recorded in "
                              "flowscale.deployments, will retry: %s",
                              &flcfp[i]->name,
                              res ? PQresultErrorMessage(res) : error);
            }

            ngx_http_flowscale_register_failed = 1;

        } else {
            k = ngx_http_flowscale_stats_index(flcfp[i]);

            if (k >= 0) {
                ngx_http_flowscale_runs_lock(z);

                st = ngx_http_flowscale_stats_sh(z);
                if (st) {
                    d = &st->deployments[k];
                    ngx_http_flowscale_apply_stopped(z, st, k,
                        PQgetvalue(res, 0, 0)[0] == 't');
                    st->deployments[k].recorded_state =
                        d->stopped ? NGX_HTTP_FLOWSCALE_STOPPED
                                   : (ngx_int_t) ((uintptr_t) data & 0xff);
                }

                ngx_http_flowscale_runs_unlock(z);
            }
        }
    }

    if (--ngx_http_flowscale_registering) {
        return;
    }

    if (ngx_http_flowscale_register_failed) {
        ngx_http_flowscale_register_next = ngx_current_msec
                                           + NGX_HTTP_FLOWSCALE_REGISTER_RETRY;
        return;
    }

    ngx_http_flowscale_runs_lock(z);

    st = ngx_http_flowscale_stats_sh(z);
    if (st && ngx_http_flowscale_stats_generation == z->sh->generation) {
        st->registered = z->sh->generation;
    }

    ngx_http_flowscale_runs_unlock(z);

    ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                  "flowscale: %ui deployments recorded in "
                  "flowscale.deployments", fmcf->deployments.nelts);
}


/* stop_deployment() and start_deployment(), at most 500 ms late */

static void
ngx_http_flowscale_poll_flags(void)
{
    ngx_http_flowscale_polling = 1;

    if (ngx_http_flowscale_pg_query(
            "SELECT project, name FROM flowscale.deployments "
            "WHERE stopped GROUP BY project, name",
            0, NULL, NULL, ngx_http_flowscale_flags_read, NULL,
            ngx_cycle->log)
        == NULL)
    {
        ngx_http_flowscale_polling = 0;
    }
}


static void
ngx_http_flowscale_flags_read(void *data, PGresult *res, const char *error)
{
    int                               row, n;
    ngx_int_t                         k;
    ngx_uint_t                        i, stopped;
    ngx_http_flowscale_zone_t        *z;
    ngx_http_flowscale_stats_sh_t    *st;
    ngx_http_flowscale_loc_conf_t   **flcfp, *flcf;
    ngx_http_flowscale_main_conf_t   *fmcf;

    ngx_http_flowscale_polling = 0;

    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        if (!ngx_http_flowscale_poll_failed) {
            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                          "flowscale: cannot read stopped deployments, "
                          "keeping the last known flags: %s",
                          res ? PQresultErrorMessage(res) : error);
        }

        ngx_http_flowscale_poll_failed = 1;
        return;
    }

    ngx_http_flowscale_poll_failed = 0;

    z = ngx_http_flowscale_zone_get((ngx_cycle_t *) ngx_cycle);
    fmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_flowscale_module);
    flcfp = fmcf->deployments.elts;
    n = PQntuples(res);

    ngx_http_flowscale_runs_lock(z);

    st = ngx_http_flowscale_stats_sh(z);

    for (i = 0; st && i < fmcf->deployments.nelts; i++) {
        flcf = flcfp[i];
        k = ngx_http_flowscale_stats_index(flcf);

        if (k < 0) {
            continue;
        }

        stopped = 0;

        for (row = 0; row < n; row++) {
            if ((size_t) PQgetlength(res, row, 0) == flcf->project.len
                && (size_t) PQgetlength(res, row, 1) == flcf->name.len
                && ngx_strncmp(PQgetvalue(res, row, 0), flcf->project.data,
                               flcf->project.len) == 0
                && ngx_strncmp(PQgetvalue(res, row, 1), flcf->name.data,
                               flcf->name.len) == 0)
            {
                stopped = 1;
                break;
            }
        }

        ngx_http_flowscale_apply_stopped(z, st, k, stopped);
    }

    if (st) {
        st->flags_read = 1;
    }

    ngx_http_flowscale_runs_unlock(z);
}


/* with the lock held */

static void
ngx_http_flowscale_apply_stopped(ngx_http_flowscale_zone_t *z,
    ngx_http_flowscale_stats_sh_t *st, ngx_int_t i, ngx_uint_t stopped)
{
    ngx_http_flowscale_dstats_t            *d;
    ngx_http_flowscale_deployment_state_t  *ds;

    d = &st->deployments[i];
    ds = &z->sh->deployments[i];

    if (stopped) {
        if (!d->stopped) {
            ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                          "flowscale: deployment \"%s\" of project \"%s\" "
                          "is stopped", ds->name, ds->project);
        }

        if (ds->state != NGX_HTTP_FLOWSCALE_STOPPED) {
            d->saved_state = ds->state;
            ds->state = NGX_HTTP_FLOWSCALE_STOPPED;
        }

        d->stopped = 1;
        return;
    }

    if (!d->stopped) {
        return;
    }

    d->stopped = 0;

    if (ds->state == NGX_HTTP_FLOWSCALE_STOPPED) {
        /* the health checks kept what the backends can do */
        ds->state = ds->capable ? NGX_HTTP_FLOWSCALE_READY
                    : (d->saved_state == NGX_HTTP_FLOWSCALE_STOPPED
                       ? NGX_HTTP_FLOWSCALE_DEPLOYING : d->saved_state);
    }

    ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                  "flowscale: deployment \"%s\" of project \"%s\" is "
                  "started again", ds->name, ds->project);
}


ngx_uint_t
ngx_http_flowscale_registry_stopped(ngx_http_flowscale_loc_conf_t *flcf)
{
    ngx_int_t                       k;
    ngx_uint_t                      stopped;
    ngx_http_flowscale_zone_t      *z;
    ngx_http_flowscale_stats_sh_t  *st;

    k = ngx_http_flowscale_stats_index(flcf);
    z = ngx_http_flowscale_zone_get((ngx_cycle_t *) ngx_cycle);

    if (k < 0 || z == NULL) {
        return 0;
    }

    ngx_http_flowscale_runs_lock(z);

    st = ngx_http_flowscale_stats_sh(z);
    stopped = st ? st->deployments[k].stopped : 0;

    ngx_http_flowscale_runs_unlock(z);

    return stopped;
}
