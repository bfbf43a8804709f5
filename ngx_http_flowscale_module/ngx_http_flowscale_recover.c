
/*
 * FlowScale for nginx: after nginx starts (not after a reload, whose zone
 * lives on), and whenever this front took over runs of another
 * (ngx_http_flowscale_front.c), the leader reads this front's unfinished
 * runs from PostgreSQL: runs never handed to a backend wait in the gateway
 * queue again, oldest first; runs a backend had are re-attached to it.
 * Runs the zone already holds are left alone.  Nothing accepted is lost
 * to a restart.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_flowscale_module.h"
#include "ngx_http_flowscale_pg.h"
#include "ngx_http_flowscale_dispatch.h"
#include "ngx_http_flowscale_front.h"


#define NGX_HTTP_FLOWSCALE_RECOVER_PAGE  "1000"


static void ngx_http_flowscale_recover_page(const char *after_created,
    const char *after_id);
static void ngx_http_flowscale_recovered(void *data, PGresult *res,
    const char *error);
static void ngx_http_flowscale_recover_run(PGresult *res, int row);
static ngx_str_t *ngx_http_flowscale_pg_str(PGresult *res, int row, int col,
    ngx_str_t *s);


static ngx_uint_t  ngx_http_flowscale_recovering;


void
ngx_http_flowscale_recover(void)
{
    ngx_uint_t                  todo;
    ngx_http_flowscale_zone_t  *z;

    if (ngx_http_flowscale_recovering) {
        return;
    }

    z = ngx_http_flowscale_zone_get((ngx_cycle_t *) ngx_cycle);

    ngx_http_flowscale_runs_lock(z);

    /* not before this front knows which runs are its own */
    todo = z->sh->front_ready && !z->sh->recovered;

    if (todo) {
        z->sh->recovered = 1;
    }

    ngx_http_flowscale_runs_unlock(z);

    if (!todo) {
        return;
    }

    ngx_http_flowscale_recovering = 1;

    ngx_http_flowscale_recover_page("-infinity",
                                    "00000000-0000-0000-0000-000000000000");
}


/* keyset pages, oldest first, so the queue keeps its order */

static void
ngx_http_flowscale_recover_page(const char *after_created,
    const char *after_id)
{
    const char  *params[3];

    params[0] = after_created;
    params[1] = after_id;
    params[2] = ngx_http_flowscale_front_id();

    if (ngx_http_flowscale_pg_query(
            "SELECT id, project, deployment, version, inputs, "
            "coalesce(backend, ''), "
            "(extract(epoch FROM created_at) * 1000)::bigint, created_at, "
            "cancel_requested, coalesce(webhook, ''), coalesce(key_id, '') "
            "FROM flowscale.runs "
            "WHERE status IN ('queued', 'running') AND front = $3 "
            "AND (created_at, id) > ($1::timestamptz, $2::uuid) "
            "ORDER BY created_at, id LIMIT " NGX_HTTP_FLOWSCALE_RECOVER_PAGE,
            3, params, NULL, ngx_http_flowscale_recovered, NULL,
            ngx_cycle->log)
        == NULL)
    {
        ngx_http_flowscale_recovered(NULL, NULL, "no database connection");
    }
}


static void
ngx_http_flowscale_recovered(void *data, PGresult *res, const char *error)
{
    int                         i, n;
    ngx_http_flowscale_zone_t  *z;

    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "flowscale: cannot read unfinished runs, will retry: "
                      "%s", res ? PQresultErrorMessage(res) : error);

        /* the next leader tick tries again */
        z = ngx_http_flowscale_zone_get((ngx_cycle_t *) ngx_cycle);

        ngx_http_flowscale_runs_lock(z);
        z->sh->recovered = 0;
        ngx_http_flowscale_runs_unlock(z);

        ngx_http_flowscale_recovering = 0;
        return;
    }

    n = PQntuples(res);

    for (i = 0; i < n; i++) {
        ngx_http_flowscale_recover_run(res, i);
    }

    if (n == ngx_atoi((u_char *) NGX_HTTP_FLOWSCALE_RECOVER_PAGE,
                      sizeof(NGX_HTTP_FLOWSCALE_RECOVER_PAGE) - 1))
    {
        ngx_http_flowscale_recover_page(PQgetvalue(res, n - 1, 7),
                                        PQgetvalue(res, n - 1, 0));
        return;
    }

    if (n) {
        ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                      "flowscale: unfinished runs read back from PostgreSQL");
    }

    ngx_http_flowscale_recovering = 0;
}


static void
ngx_http_flowscale_recover_run(PGresult *res, int row)
{
    ngx_str_t                       id, inputs, backend, project;
    ngx_str_t                       deployment, version, key_id, webhook;
    ngx_uint_t                      known;
    ngx_http_flowscale_run_t       *run;
    ngx_http_flowscale_zone_t      *z;
    ngx_http_flowscale_loc_conf_t  *flcf;

    id.data = (u_char *) PQgetvalue(res, row, 0);
    id.len = PQgetlength(res, row, 0);
    inputs.data = (u_char *) PQgetvalue(res, row, 4);
    inputs.len = PQgetlength(res, row, 4);
    backend.data = (u_char *) PQgetvalue(res, row, 5);
    backend.len = PQgetlength(res, row, 5);

    flcf = ngx_http_flowscale_find_deployment(
               (u_char *) PQgetvalue(res, row, 1),
               (u_char *) PQgetvalue(res, row, 2));

    if (flcf == NULL) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "flowscale: run %V waits for deployment \"%s\", which "
                      "this configuration does not have", &id,
                      PQgetvalue(res, row, 2));
        return;
    }

    z = ngx_http_flowscale_zone_get((ngx_cycle_t *) ngx_cycle);

    ngx_http_flowscale_runs_lock(z);

    run = ngx_http_flowscale_runs_find(z, id.data, id.len);
    known = (run != NULL);

    if (run == NULL) {
        run = ngx_http_flowscale_runs_insert(z, &id, &inputs);
    }

    if (run && !known) {
        run->created = ngx_atoof((u_char *) PQgetvalue(res, row, 6),
                                 PQgetlength(res, row, 6));

        /* DELETE reached a front that was gone: its follower ends it */
        run->cancel = (PQgetvalue(res, row, 8)[0] == 't');

        /* for its webhook and the fair share of its key */
        if (ngx_http_flowscale_runs_label(z, run,
                ngx_http_flowscale_pg_str(res, row, 1, &project),
                ngx_http_flowscale_pg_str(res, row, 2, &deployment),
                ngx_http_flowscale_pg_str(res, row, 3, &version),
                ngx_http_flowscale_pg_str(res, row, 10, &key_id),
                ngx_http_flowscale_pg_str(res, row, 9, &webhook))
            != NGX_OK)
        {
            ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                          "flowscale: the zone is full; the webhook of run "
                          "%V is not sent", &id);
        }
    }

    ngx_http_flowscale_runs_unlock(z);

    if (run == NULL || known) {
        /* a full zone, or a run this nginx already follows */
        return;
    }

    if (backend.len == 0) {
        ngx_http_flowscale_enqueue(&id);
        return;
    }

    (void) ngx_http_flowscale_dispatch_attach(flcf, &id, &backend, 0);
}


static ngx_str_t *
ngx_http_flowscale_pg_str(PGresult *res, int row, int col, ngx_str_t *s)
{
    s->data = (u_char *) PQgetvalue(res, row, col);
    s->len = PQgetlength(res, row, col);

    return s;
}
