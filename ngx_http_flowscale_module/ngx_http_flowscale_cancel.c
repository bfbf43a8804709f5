
/*
 * FlowScale for nginx: DELETE L/runs/ID cancels a run.  A run waiting in
 * the gateway queue leaves it once PostgreSQL records it canceled.  A run
 * handed to a backend is marked in the zone and removed from ComfyUI's
 * queue or interrupted there by its prompt_id (never a bare interrupt
 * that would stop another run); the worker that follows it records the
 * end.  The answer is the canceled run; a finished run is a 409.
 *
 * A run another nginx front has is canceled in PostgreSQL if it was
 * queued; either way that front is told (NOTIFY on "flowscale_runs") and
 * ends it, and this front reads PostgreSQL until the run has ended.  A
 * running run is also flagged (cancel_requested), for a front that takes
 * it over from one that died before it heard.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_flowscale_module.h"
#include "ngx_http_flowscale_pg.h"
#include "ngx_http_flowscale_dispatch.h"


#define NGX_HTTP_FLOWSCALE_CANCEL_WAIT  10000
#define NGX_HTTP_FLOWSCALE_CANCEL_POLL  250


/*
 * Canceled if still queued; else its status says why not.  The front
 * that has an unfinished run hears of it (at commit).
 * $1 id, $2 project, $3 deployment.
 */
static const char  *ngx_http_flowscale_cancel_sql =
    "WITH r AS (SELECT status FROM flowscale.runs WHERE id = $1::uuid "
    "AND project = $2 AND deployment = $3), "
    "c AS (UPDATE flowscale.runs SET status = 'canceled', "
    "finished_at = now() WHERE id = $1::uuid AND project = $2 "
    "AND deployment = $3 AND status = 'queued' RETURNING backend), "
    "f AS (UPDATE flowscale.runs SET cancel_requested = true "
    "WHERE id = $1::uuid AND project = $2 AND deployment = $3 "
    "AND status = 'running' RETURNING status) "
    "SELECT (SELECT count(*) FROM c), (SELECT status FROM r), "
    "(SELECT pg_notify('flowscale_runs', 'cancel:' || $1) FROM r "
    "WHERE r.status IN ('queued', 'running')), (SELECT count(*) FROM f), "
    "(SELECT coalesce(backend, '') FROM c)";


typedef struct {
    ngx_http_request_t             *request;
    ngx_http_flowscale_loc_conf_t  *flcf;
    ngx_http_flowscale_pg_query_t  *query;
    ngx_str_t                       id;
    ngx_event_t                     poll;       /* a run of another front */
    ngx_msec_t                      deadline;
} ngx_http_flowscale_cancel_ctx_t;


static ngx_int_t ngx_http_flowscale_cancel_queued(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf, ngx_str_t *id);
static void ngx_http_flowscale_cancel_recorded(void *data, PGresult *res,
    const char *error);
static ngx_int_t ngx_http_flowscale_cancel_finished(ngx_http_request_t *r,
    ngx_http_flowscale_status_e status);
static void ngx_http_flowscale_cancel_cleanup(void *data);
static void ngx_http_flowscale_cancel_quiet_done(void *data, PGresult *res,
    const char *error);
static ngx_int_t ngx_http_flowscale_cancel_flying(ngx_http_request_t *r,
    ngx_str_t *id);
static void ngx_http_flowscale_cancel_drop(PGresult *res, ngx_str_t *id,
    ngx_log_t *log);
static void ngx_http_flowscale_cancel_poll(ngx_event_t *ev);
static void ngx_http_flowscale_cancel_polled(void *data, PGresult *res,
    const char *error);


ngx_int_t
ngx_http_flowscale_cancel(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf, ngx_str_t *id)
{
    ngx_int_t                       rc;
    ngx_str_t                       backend;
    ngx_http_flowscale_run_t       *run;
    ngx_http_flowscale_zone_t      *z;
    ngx_http_flowscale_peer_t      *peer;
    ngx_http_flowscale_run_view_t   view;
    ngx_http_flowscale_status_e     status;
    u_char                          name[64];

    z = ngx_http_flowscale_zone_get((ngx_cycle_t *) ngx_cycle);

    ngx_http_flowscale_runs_lock(z);

    run = ngx_http_flowscale_runs_find(z, id->data, id->len);

    if (run) {
        view.run = *run;
    }

    if (run == NULL) {
        /* not live here: PostgreSQL decides */
        ngx_http_flowscale_runs_unlock(z);
        return ngx_http_flowscale_cancel_queued(r, flcf, id);
    }

    if (!ngx_http_flowscale_view_belongs(&view, flcf)) {
        ngx_http_flowscale_runs_unlock(z);
        return ngx_http_flowscale_problem(r, NGX_HTTP_NOT_FOUND, "not-found",
                   "Run not found", "No run with this id in this "
                   "deployment.");
    }

    status = run->status;

    if (status >= NGX_HTTP_FLOWSCALE_SUCCEEDED) {
        ngx_http_flowscale_runs_unlock(z);
        return ngx_http_flowscale_cancel_finished(r, status);
    }

    if (run->pending) {
        ngx_http_flowscale_runs_unlock(z);
        return ngx_http_flowscale_cancel_queued(r, flcf, id);
    }

    /* on its way to a backend or there: its follower ends it */
    run->cancel = 1;
    ngx_http_flowscale_runs_touch(z, run);

    ngx_cpystrn(name, run->backend, sizeof(name));

    ngx_http_flowscale_runs_unlock(z);

    backend.data = name;
    backend.len = ngx_strlen(name);

    peer = backend.len ? ngx_http_flowscale_dispatch_peer(&backend) : NULL;

    if (peer) {
        ngx_http_flowscale_backend_drop(peer, id, r->connection->log);
    }

    rc = ngx_http_flowscale_wait(r, id, NGX_HTTP_FLOWSCALE_CANCEL_WAIT);

    if (rc == NGX_DONE) {
        /* held until the waiter finalizes it */
        r->main->count++;
    }

    return rc;
}


static ngx_int_t
ngx_http_flowscale_cancel_finished(ngx_http_request_t *r,
    ngx_http_flowscale_status_e status)
{
    u_char  detail[128];

    ngx_snprintf(detail, sizeof(detail), "The run has already %s.%Z",
                 status == NGX_HTTP_FLOWSCALE_CANCELED ? "been canceled"
                 : status == NGX_HTTP_FLOWSCALE_SUCCEEDED ? "succeeded"
                 : "failed");

    return ngx_http_flowscale_problem(r, NGX_HTTP_CONFLICT, "run-finished",
                                      "Run already finished",
                                      (char *) detail);
}


/* PostgreSQL first: a run it still has as queued is not gone */

static ngx_int_t
ngx_http_flowscale_cancel_queued(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf, ngx_str_t *id)
{
    const char                       *params[3];
    ngx_pool_cleanup_t               *cln;
    ngx_http_flowscale_cancel_ctx_t  *ctx;

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_flowscale_cancel_ctx_t));
    cln = ngx_pool_cleanup_add(r->pool, 0);

    if (ctx == NULL || cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->request = r;
    ctx->flcf = flcf;
    ctx->id.len = id->len;
    ctx->id.data = ngx_pnalloc(r->pool, id->len + 1);

    if (ctx->id.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_cpystrn(ctx->id.data, id->data, id->len + 1);

    if (!ngx_http_flowscale_is_run_id(id)) {
        return ngx_http_flowscale_problem(r, NGX_HTTP_NOT_FOUND,
                   "not-found", "Run not found",
                   "No run with this id in this deployment.");
    }

    params[0] = (char *) ctx->id.data;
    params[1] = (char *) flcf->project.data;
    params[2] = (char *) flcf->name.data;

    ctx->query = ngx_http_flowscale_pg_query(ngx_http_flowscale_cancel_sql,
                     3, params, NULL, ngx_http_flowscale_cancel_recorded, ctx,
                     r->connection->log);

    if (ctx->query == NULL) {
        return ngx_http_flowscale_unavailable(r);
    }

    cln->handler = ngx_http_flowscale_cancel_cleanup;
    cln->data = ctx;

    r->main->count++;

    return NGX_DONE;
}


static void
ngx_http_flowscale_cancel_recorded(void *data, PGresult *res,
    const char *error)
{
    ngx_http_flowscale_cancel_ctx_t *ctx = data;

    char                       *status;
    ngx_int_t                   rc;
    ngx_uint_t                  ended;
    ngx_http_request_t         *r;
    ngx_http_flowscale_run_t   *run;
    ngx_http_flowscale_zone_t  *z;

    /* the reference taken in ngx_http_flowscale_cancel_queued() is ours */
    r = ctx->request;
    ctx->query = NULL;

    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK
        || PQntuples(res) != 1 || PQnfields(res) != 5)
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "flowscale: cannot cancel run %V: %s", &ctx->id,
                      res ? PQresultErrorMessage(res) : error);
        ngx_http_flowscale_finalize(r, ngx_http_flowscale_unavailable(r));
        return;
    }

    status = PQgetisnull(res, 0, 1) ? "" : PQgetvalue(res, 0, 1);

    if (*status == '\0') {
        ngx_http_flowscale_finalize(r,
            ngx_http_flowscale_problem(r, NGX_HTTP_NOT_FOUND, "not-found",
                "Run not found", "No run with this id in this deployment."));
        return;
    }

    if (PQgetvalue(res, 0, 0)[0] == '0'
        && (ngx_strcmp(status, "queued") == 0
            || ngx_strcmp(status, "running") == 0))
    {
        /* on its way to a backend or there, here or on another front */
        rc = ngx_http_flowscale_cancel_flying(r, &ctx->id);

        if (rc == NGX_DECLINED) {
            ctx->deadline = ngx_current_msec + NGX_HTTP_FLOWSCALE_CANCEL_WAIT;
            ctx->poll.handler = ngx_http_flowscale_cancel_poll;
            ctx->poll.data = ctx;
            ctx->poll.log = r->connection->log;
            ngx_add_timer(&ctx->poll, NGX_HTTP_FLOWSCALE_CANCEL_POLL);
            return;
        }

        if (rc != NGX_DONE) {
            ngx_http_flowscale_finalize(r, rc);
        }

        return;
    }

    if (PQgetvalue(res, 0, 0)[0] == '0') {
        ngx_http_flowscale_finalize(r,
            ngx_http_flowscale_cancel_finished(r,
                ngx_strcmp(status, "succeeded") == 0
                ? NGX_HTTP_FLOWSCALE_SUCCEEDED
                : ngx_strcmp(status, "canceled") == 0
                ? NGX_HTTP_FLOWSCALE_CANCELED : NGX_HTTP_FLOWSCALE_FAILED));
        return;
    }

    z = ngx_http_flowscale_zone_get((ngx_cycle_t *) ngx_cycle);

    ngx_http_flowscale_runs_lock(z);

    run = ngx_http_flowscale_runs_find(z, ctx->id.data, ctx->id.len);

    ended = 0;

    if (run && run->pending) {
        ngx_http_flowscale_runs_finish(z, run, NGX_HTTP_FLOWSCALE_CANCELED);
        ended = 1;

    } else if (run && run->status < NGX_HTTP_FLOWSCALE_SUCCEEDED) {
        /* a worker took it meanwhile: it finds no queued row and stops */
        run->cancel = 1;
        ngx_http_flowscale_runs_touch(z, run);
    }

    ngx_http_flowscale_runs_unlock(z);

    if (ended) {
        ngx_http_flowscale_run_ended(ctx->flcf, &ctx->id);
    }

    if (run == NULL) {
        /*
         * Queued on another front, or only in PostgreSQL: done.  If that
         * front had handed it to a backend already, the backend drops it
         * (that front does too, if it is alive to hear of it).
         */
        ngx_http_flowscale_cancel_drop(res, &ctx->id, r->connection->log);
        ngx_http_flowscale_finalize(r,
            ngx_http_flowscale_send_run(r, ctx->flcf, &ctx->id, NGX_HTTP_OK));
        return;
    }

    rc = ngx_http_flowscale_wait(r, &ctx->id, NGX_HTTP_FLOWSCALE_CANCEL_WAIT);

    if (rc != NGX_DONE) {
        ngx_http_flowscale_finalize(r, rc);
    }
}


/*
 * A run PostgreSQL has as queued or running and no longer as queued:
 * NGX_DONE when this front has it (marked; its follower ends it, and the
 * request waits for that), NGX_DECLINED when another front does.
 */

static ngx_int_t
ngx_http_flowscale_cancel_flying(ngx_http_request_t *r, ngx_str_t *id)
{
    ngx_uint_t                  here;
    ngx_http_flowscale_run_t   *run;
    ngx_http_flowscale_zone_t  *z;

    z = ngx_http_flowscale_zone_get((ngx_cycle_t *) ngx_cycle);

    ngx_http_flowscale_runs_lock(z);

    run = ngx_http_flowscale_runs_find(z, id->data, id->len);
    here = (run != NULL);

    if (run && run->status < NGX_HTTP_FLOWSCALE_SUCCEEDED) {
        run->cancel = 1;
        ngx_http_flowscale_runs_touch(z, run);
    }

    ngx_http_flowscale_runs_unlock(z);

    if (!here) {
        return NGX_DECLINED;
    }

    return ngx_http_flowscale_wait(r, id, NGX_HTTP_FLOWSCALE_CANCEL_WAIT);
}


/* column 4 of the cancel statement: the backend a queued run had */

static void
ngx_http_flowscale_cancel_drop(PGresult *res, ngx_str_t *id, ngx_log_t *log)
{
    ngx_str_t                   name;
    ngx_http_flowscale_peer_t  *peer;

    name.data = (u_char *) PQgetvalue(res, 0, 4);
    name.len = PQgetlength(res, 0, 4);

    peer = name.len ? ngx_http_flowscale_dispatch_peer(&name) : NULL;

    if (peer) {
        ngx_http_flowscale_backend_drop(peer, id, log);
    }
}


static void
ngx_http_flowscale_cancel_poll(ngx_event_t *ev)
{
    ngx_http_flowscale_cancel_ctx_t *ctx = ev->data;

    const char  *params[1];

    params[0] = (char *) ctx->id.data;

    ctx->query = ngx_http_flowscale_pg_query(
        "SELECT status IN ('queued', 'running') FROM flowscale.runs "
        "WHERE id = $1::uuid", 1, params, NULL,
        ngx_http_flowscale_cancel_polled, ctx, ev->log);

    if (ctx->query == NULL) {
        ngx_http_flowscale_cancel_polled(ctx, NULL, "no connection");
    }
}


/* ended (or the wait is over): the run as PostgreSQL has it */

static void
ngx_http_flowscale_cancel_polled(void *data, PGresult *res, const char *error)
{
    ngx_http_flowscale_cancel_ctx_t *ctx = data;

    ngx_http_request_t  *r;

    ctx->query = NULL;
    r = ctx->request;

    if (res && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1
        && PQgetvalue(res, 0, 0)[0] == 't'
        && (ngx_msec_int_t) (ctx->deadline - ngx_current_msec) > 0)
    {
        ngx_add_timer(&ctx->poll, NGX_HTTP_FLOWSCALE_CANCEL_POLL);
        return;
    }

    ngx_http_flowscale_finalize(r,
        ngx_http_flowscale_send_run(r, ctx->flcf, &ctx->id, NGX_HTTP_OK));
}


static void
ngx_http_flowscale_cancel_cleanup(void *data)
{
    ngx_http_flowscale_cancel_ctx_t *ctx = data;

    if (ctx->query) {
        ngx_http_flowscale_pg_cancel(ctx->query);
    }

    if (ctx->poll.timer_set) {
        ngx_del_timer(&ctx->poll);
    }
}


/*
 * "cancel:ID" from another front's DELETE: a run this front has leaves
 * the gateway queue (PostgreSQL has it canceled already), or is ended by
 * its follower.
 */

void
ngx_http_flowscale_cancel_notify(u_char *payload, size_t len, ngx_log_t *log)
{
    ngx_str_t                       id;
    ngx_uint_t                      ended;
    ngx_http_flowscale_run_t       *run;
    ngx_http_flowscale_zone_t      *z;
    ngx_http_flowscale_loc_conf_t  *flcf;

    if (len != sizeof("cancel:") - 1 + NGX_HTTP_FLOWSCALE_RUN_ID_LEN
        || ngx_strncmp(payload, "cancel:", sizeof("cancel:") - 1) != 0)
    {
        return;
    }

    id.data = payload + sizeof("cancel:") - 1;
    id.len = NGX_HTTP_FLOWSCALE_RUN_ID_LEN;

    z = ngx_http_flowscale_zone_get((ngx_cycle_t *) ngx_cycle);
    flcf = NULL;
    ended = 0;

    ngx_http_flowscale_runs_lock(z);

    run = ngx_http_flowscale_runs_find(z, id.data, id.len);

    if (run && run->pending) {
        flcf = ngx_http_flowscale_find_deployment(run->project,
                                                  run->deployment);
        ngx_http_flowscale_runs_finish(z, run, NGX_HTTP_FLOWSCALE_CANCELED);
        ended = 1;

    } else if (run && run->status < NGX_HTTP_FLOWSCALE_SUCCEEDED
               && !run->cancel)
    {
        run->cancel = 1;
        ngx_http_flowscale_runs_touch(z, run);
    }

    ngx_http_flowscale_runs_unlock(z);

    if (ended) {
        ngx_log_error(NGX_LOG_INFO, log, 0, "flowscale: run %V canceled "
                      "through another nginx front", &id);

        if (flcf) {
            ngx_http_flowscale_run_ended(flcf, &id);
        }
    }
}


/*
 * issue 9: Gradio's cancel names its event, which is the run: the same
 * cancel as DELETE L/runs/ID, without an answer to wait for.  The NOTIFY
 * of the statement reaches the front (this one too) that has the run.
 */

void
ngx_http_flowscale_cancel_quietly(ngx_http_flowscale_loc_conf_t *flcf,
    ngx_str_t *id, ngx_log_t *log)
{
    u_char       buf[NGX_HTTP_FLOWSCALE_RUN_ID_LEN + 1];
    const char  *params[3];

    if (!ngx_http_flowscale_is_run_id(id)) {
        return;
    }

    ngx_cpystrn(buf, id->data, sizeof(buf));

    params[0] = (char *) buf;
    params[1] = (char *) flcf->project.data;
    params[2] = (char *) flcf->name.data;

    if (ngx_http_flowscale_pg_query(ngx_http_flowscale_cancel_sql, 3, params,
                                    NULL, ngx_http_flowscale_cancel_quiet_done,
                                    NULL, log)
        == NULL)
    {
        ngx_log_error(NGX_LOG_WARN, log, 0, "flowscale: cannot cancel run "
                      "%V: no database connection", id);
    }
}


static void
ngx_http_flowscale_cancel_quiet_done(void *data, PGresult *res,
    const char *error)
{
    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "flowscale: cannot cancel a run: %s",
                      res ? PQresultErrorMessage(res) : error);
    }
}

