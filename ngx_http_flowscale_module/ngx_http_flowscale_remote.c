
/*
 * FlowScale for nginx: the event stream of a run this nginx does not hold
 * (accepted by another nginx front, or evicted from the zone).  It follows
 * the run in PostgreSQL, once a second, and sends "queued", "started",
 * "progress" (as that front saves it, at most once a second) and the final
 * event carrying the run, as the front that has the run would; per-output
 * events only that front sends.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_flowscale_module.h"
#include "ngx_http_flowscale_pg.h"


#define NGX_HTTP_FLOWSCALE_REMOTE_POLL       1000
#define NGX_HTTP_FLOWSCALE_REMOTE_HEARTBEAT  15     /* polls */


typedef struct {
    ngx_http_request_t             *request;
    ngx_http_flowscale_loc_conf_t  *flcf;
    ngx_http_flowscale_pg_query_t  *query;
    ngx_event_t                     poll;
    u_char                          id[NGX_HTTP_FLOWSCALE_RUN_ID_LEN + 1];
    ngx_uint_t                      quiet;      /* polls without news */
    int32_t                         value;      /* progress told */
    int32_t                         max;
    unsigned                        streaming:1;
    unsigned                        queued:1;   /* told */
    unsigned                        started:1;  /* told */
} ngx_http_flowscale_remote_t;


static void ngx_http_flowscale_remote_poll(ngx_event_t *ev);
static void ngx_http_flowscale_remote_read(void *data, PGresult *res,
    const char *error);
static ngx_int_t ngx_http_flowscale_remote_tell(
    ngx_http_flowscale_remote_t *rs, ngx_http_flowscale_run_view_t *v);
static ngx_int_t ngx_http_flowscale_remote_progress(ngx_http_request_t *r,
    ngx_http_flowscale_run_view_t *v);
static ngx_int_t ngx_http_flowscale_remote_send(ngx_http_request_t *r,
    const char *name, ngx_str_t *data, ngx_uint_t last);
static void ngx_http_flowscale_remote_cleanup(void *data);


ngx_int_t
ngx_http_flowscale_remote_events(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf, ngx_str_t *id)
{
    ngx_pool_cleanup_t           *cln;
    ngx_http_flowscale_remote_t  *rs;

    if (!ngx_http_flowscale_is_run_id(id)) {
        return ngx_http_flowscale_problem(r, NGX_HTTP_NOT_FOUND, "not-found",
                   "Run not found", "No run with this id in this "
                   "deployment.");
    }

    rs = ngx_pcalloc(r->pool, sizeof(ngx_http_flowscale_remote_t));
    cln = ngx_pool_cleanup_add(r->pool, 0);

    if (rs == NULL || cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rs->request = r;
    rs->flcf = flcf;
    ngx_cpystrn(rs->id, id->data, sizeof(rs->id));

    rs->poll.handler = ngx_http_flowscale_remote_poll;
    rs->poll.data = rs;
    rs->poll.log = r->connection->log;
    rs->poll.cancelable = 1;

    cln->handler = ngx_http_flowscale_remote_cleanup;
    cln->data = rs;

    r->read_event_handler = ngx_http_test_reading;
    r->main->count++;

    ngx_http_flowscale_remote_poll(&rs->poll);

    return NGX_DONE;
}


static void
ngx_http_flowscale_remote_poll(ngx_event_t *ev)
{
    ngx_http_flowscale_remote_t *rs = ev->data;

    const char  *params[3];

    params[0] = (char *) rs->id;
    params[1] = (char *) rs->flcf->name.data;
    params[2] = (char *) rs->flcf->project.data;

    rs->query = ngx_http_flowscale_pg_query(ngx_http_flowscale_run_sql, 3,
                    params, NULL, ngx_http_flowscale_remote_read, rs,
                    ev->log);

    if (rs->query == NULL) {
        ngx_http_flowscale_remote_read(rs, NULL, "no database connection");
    }
}


static void
ngx_http_flowscale_remote_read(void *data, PGresult *res, const char *error)
{
    ngx_http_flowscale_remote_t *rs = data;

    ngx_int_t                       rc;
    ngx_http_request_t             *r;
    ngx_http_flowscale_run_view_t   v;

    r = rs->request;
    rs->query = NULL;

    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "flowscale: cannot read a run: %s",
                      res ? PQresultErrorMessage(res) : error);

        if (!rs->streaming) {
            ngx_http_flowscale_finalize(r, ngx_http_flowscale_unavailable(r));
            return;
        }

        /* a stream already open waits for the database to come back */
        ngx_add_timer(&rs->poll, NGX_HTTP_FLOWSCALE_REMOTE_POLL);
        return;
    }

    if (PQntuples(res) == 0) {
        ngx_http_flowscale_finalize(r,
            rs->streaming ? ngx_http_send_special(r, NGX_HTTP_LAST)
            : ngx_http_flowscale_problem(r, NGX_HTTP_NOT_FOUND, "not-found",
                  "Run not found", "No run with this id in this "
                  "deployment."));
        return;
    }

    if (!rs->streaming) {
        rs->streaming = 1;
        rc = ngx_http_flowscale_sse_start(r);

        if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
            ngx_http_flowscale_finalize(r, rc);
            return;
        }
    }

    /* res lives until we return: render now */
    ngx_http_flowscale_pg_view(res, 0, &v);

    rc = ngx_http_flowscale_remote_tell(rs, &v);

    if (rc == NGX_ERROR) {
        ngx_http_flowscale_finalize(r, NGX_ERROR);
        return;
    }

    if (rc == NGX_DONE) {
        /* the final event went out with the last buffer */
        ngx_http_flowscale_finalize(r, NGX_OK);
        return;
    }

    ngx_add_timer(&rs->poll, NGX_HTTP_FLOWSCALE_REMOTE_POLL);
}


/* what changed since the last look; NGX_DONE after the final event */

static ngx_int_t
ngx_http_flowscale_remote_tell(ngx_http_flowscale_remote_t *rs,
    ngx_http_flowscale_run_view_t *v)
{
    ngx_str_t            data;
    ngx_http_request_t  *r = rs->request;

    if (v->run.status >= NGX_HTTP_FLOWSCALE_SUCCEEDED) {
        if (ngx_http_flowscale_render_run(r->pool, rs->flcf, v, &data)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        data.len--;                             /* its newline */

        if (ngx_http_flowscale_remote_send(r,
                ngx_http_flowscale_status_name(v->run.status), &data, 1)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        return NGX_DONE;
    }

    if (v->run.status == NGX_HTTP_FLOWSCALE_QUEUED && !rs->queued) {
        rs->queued = 1;
        rs->quiet = 0;
        ngx_str_set(&data, "{\"position\":null}");
        return ngx_http_flowscale_remote_send(r, "queued", &data, 0);
    }

    if (v->run.status == NGX_HTTP_FLOWSCALE_RUNNING && !rs->started) {
        rs->started = 1;
        rs->quiet = 0;
        ngx_str_set(&data, "{\"status\":\"running\"}");

        if (ngx_http_flowscale_remote_send(r, "started", &data, 0) != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (v->run.status == NGX_HTTP_FLOWSCALE_RUNNING
        && v->run.progress_max > 0
        && (v->run.progress_value != rs->value
            || v->run.progress_max != rs->max))
    {
        rs->value = v->run.progress_value;
        rs->max = v->run.progress_max;
        rs->quiet = 0;

        return ngx_http_flowscale_remote_progress(r, v);
    }

    if (++rs->quiet % NGX_HTTP_FLOWSCALE_REMOTE_HEARTBEAT == 0) {
        /* a comment line keeps proxies from cutting a quiet stream */
        return ngx_http_flowscale_remote_send(r, NULL, NULL, 0);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_flowscale_remote_progress(ngx_http_request_t *r,
    ngx_http_flowscale_run_view_t *v)
{
    size_t      len;
    ngx_str_t   data;

    len = ngx_strlen(v->run.progress_node);

    data.data = ngx_pnalloc(r->pool, sizeof("{\"value\":,\"max\":,\"node\":\"\"}")
                                     + 2 * NGX_INT32_LEN + len
                                     + ngx_escape_json(NULL,
                                                       v->run.progress_node,
                                                       len));
    if (data.data == NULL) {
        return NGX_ERROR;
    }

    data.len = ngx_sprintf(data.data, "{\"value\":%D,\"max\":%D,\"node\":\"",
                           v->run.progress_value, v->run.progress_max)
               - data.data;
    data.len = (u_char *) ngx_escape_json(data.data + data.len,
                                          v->run.progress_node, len)
               - data.data;
    data.data[data.len++] = '"';
    data.data[data.len++] = '}';

    return ngx_http_flowscale_remote_send(r, "progress", &data, 0);
}


/* "event: NAME\ndata: JSON\n\n", or a heartbeat comment without a name */

static ngx_int_t
ngx_http_flowscale_remote_send(ngx_http_request_t *r, const char *name,
    ngx_str_t *data, ngx_uint_t last)
{
    size_t        len;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    len = name ? sizeof("event: \ndata: \n\n") - 1 + ngx_strlen(name)
                 + data->len
               : sizeof(": heartbeat\n\n") - 1;

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NGX_ERROR;
    }

    if (name) {
        b->last = ngx_sprintf(b->last, "event: %s\ndata: %V\n\n", name, data);

    } else {
        b->last = ngx_cpymem(b->last, ": heartbeat\n\n",
                             sizeof(": heartbeat\n\n") - 1);
    }

    b->flush = 1;
    b->last_buf = last;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out) == NGX_ERROR ? NGX_ERROR : NGX_OK;
}


static void
ngx_http_flowscale_remote_cleanup(void *data)
{
    ngx_http_flowscale_remote_t *rs = data;

    if (rs->query) {
        ngx_http_flowscale_pg_cancel(rs->query);
        rs->query = NULL;
    }

    if (rs->poll.timer_set) {
        ngx_del_timer(&rs->poll);
    }
}
