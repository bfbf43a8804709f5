
/*
 * FlowScale for nginx: reading a run.  GET L/runs/ID answers from the
 * shared zone, and from PostgreSQL when the zone no longer (or never) held
 * the run.  Prefer: wait parks a request, at no CPU cost, until its run
 * ends or the deadline passes.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_flowscale_module.h"
#include "ngx_http_flowscale_pg.h"
#include "ngx_http_flowscale_webhook.h"


#define NGX_HTTP_FLOWSCALE_WAIT_POLL  10


typedef struct {
    ngx_queue_t                     queue;
    ngx_http_request_t             *request;
    ngx_http_flowscale_loc_conf_t  *flcf;
    ngx_str_t                       id;
    ngx_msec_t                      deadline;
} ngx_http_flowscale_waiter_t;


typedef struct {
    ngx_http_request_t             *request;
    ngx_http_flowscale_loc_conf_t  *flcf;
    ngx_http_flowscale_pg_query_t  *query;
    ngx_uint_t                      status;
} ngx_http_flowscale_read_ctx_t;


static json_t *ngx_http_flowscale_public_outputs(
    ngx_http_flowscale_loc_conf_t *flcf, ngx_str_t *id, ngx_str_t *outputs);
static json_t *ngx_http_flowscale_public_items(
    ngx_http_flowscale_loc_conf_t *flcf, ngx_str_t *id, const char *name,
    json_t *items);
static ngx_int_t ngx_http_flowscale_dump(ngx_pool_t *pool, json_t *v,
    ngx_str_t *out);
static u_char *ngx_http_flowscale_time(u_char *p, int64_t ms);
static json_t *ngx_http_flowscale_json_or_null(ngx_str_t *s);
static ngx_int_t ngx_http_flowscale_send_view(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf, ngx_http_flowscale_run_view_t *v,
    ngx_uint_t status);
static ngx_int_t ngx_http_flowscale_read_pg(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf, ngx_str_t *id, ngx_uint_t status);
static void ngx_http_flowscale_read_done(void *data, PGresult *res,
    const char *error);
static void ngx_http_flowscale_read_cleanup(void *data);
static void ngx_http_flowscale_wait_poll(ngx_event_t *ev);
static void ngx_http_flowscale_wait_cleanup(void *data);
static ngx_uint_t ngx_http_flowscale_is_finished(
    ngx_http_flowscale_status_e s);


static ngx_queue_t   ngx_http_flowscale_waiters;
static ngx_event_t   ngx_http_flowscale_wait_event;

/* timers log their event's connection: give this one a harmless one */
static ngx_connection_t  ngx_http_flowscale_wait_dummy = { .fd = -1 };
static ngx_atomic_uint_t  ngx_http_flowscale_seen_changes;

static ngx_str_t  ngx_http_flowscale_json_type =
    ngx_string("application/json");


/* a run in PostgreSQL, as ngx_http_flowscale_pg_view() reads it */
const char  *ngx_http_flowscale_run_sql =
    "SELECT id, deployment, version, status, inputs, outputs, error, "
    "(extract(epoch FROM created_at) * 1000)::bigint, "
    "coalesce((extract(epoch FROM started_at) * 1000)::bigint, 0), "
    "coalesce((extract(epoch FROM finished_at) * 1000)::bigint, 0), "
    "project, progress "
    "FROM flowscale.runs "
    "WHERE id = $1::uuid AND deployment = $2 AND project = $3";


static ngx_uint_t
ngx_http_flowscale_is_finished(ngx_http_flowscale_status_e s)
{
    return s >= NGX_HTTP_FLOWSCALE_SUCCEEDED;
}


/* a run of another deployment or project is not found here */

ngx_uint_t
ngx_http_flowscale_view_belongs(ngx_http_flowscale_run_view_t *v,
    ngx_http_flowscale_loc_conf_t *flcf)
{
    return ngx_strlen(v->run.deployment) == flcf->name.len
           && ngx_strncmp(v->run.deployment, flcf->name.data,
                          flcf->name.len) == 0
           && ngx_strlen(v->run.project) == flcf->project.len
           && ngx_strncmp(v->run.project, flcf->project.data,
                          flcf->project.len) == 0;
}


/* the run answered with status; Location for a 202 */

ngx_int_t
ngx_http_flowscale_send_run(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf, ngx_str_t *id, ngx_uint_t status)
{
    ngx_int_t                      rc;
    ngx_http_flowscale_zone_t     *z;
    ngx_http_flowscale_run_view_t  view;

    z = ngx_http_flowscale_zone_get((ngx_cycle_t *) ngx_cycle);

    rc = ngx_http_flowscale_runs_view(z, id->data, id->len, r->pool, &view);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return ngx_http_flowscale_read_pg(r, flcf, id, status);
    }

    if (!ngx_http_flowscale_view_belongs(&view, flcf)) {
        return ngx_http_flowscale_problem(r, NGX_HTTP_NOT_FOUND, "not-found",
                   "Run not found", "No run with this id in this "
                   "deployment.");
    }

    if (status == NGX_HTTP_OK
        && !ngx_http_flowscale_is_finished(view.run.status))
    {
        status = NGX_HTTP_ACCEPTED;
    }

    return ngx_http_flowscale_send_view(r, flcf, &view, status);
}


static ngx_int_t
ngx_http_flowscale_send_view(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf, ngx_http_flowscale_run_view_t *v,
    ngx_uint_t status)
{
    u_char           *p;
    ngx_str_t         body;
    ngx_table_elt_t  *h;

    if (ngx_http_flowscale_render_run(r->pool, flcf, v, &body) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (status == NGX_HTTP_ACCEPTED) {
        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        h->value.data = ngx_pnalloc(r->pool, flcf->location.len
                                    + sizeof("/runs/")
                                    + NGX_HTTP_FLOWSCALE_RUN_ID_LEN);
        if (h->value.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        p = ngx_sprintf(h->value.data, "%V/runs/%*s", &flcf->location,
                        (size_t) NGX_HTTP_FLOWSCALE_RUN_ID_LEN, v->run.id);

        h->hash = 1;
        ngx_str_set(&h->key, "Location");
        h->value.len = p - h->value.data;
    }

    return ngx_http_flowscale_send_json(r, status,
                                        &ngx_http_flowscale_json_type, &body);
}


/*
 * {"id", "deployment", "version", "status", "inputs", "queue_position",
 *  "progress", "created_at", "started_at", "finished_at", "outputs",
 *  "error"}
 */

ngx_int_t
ngx_http_flowscale_render_run(ngx_pool_t *pool,
    ngx_http_flowscale_loc_conf_t *flcf, ngx_http_flowscale_run_view_t *v,
    ngx_str_t *out)
{
    char                      *outputs;
    size_t                     len, dlen, nlen;
    json_t                    *pub;
    u_char                    *p;
    ngx_str_t                  id, inputs, error;
    ngx_http_flowscale_run_t  *rn;

    rn = &v->run;

    id.data = rn->id;
    id.len = NGX_HTTP_FLOWSCALE_RUN_ID_LEN;

    /*
     * Written directly: inputs and error are JSON texts already (ours, or
     * PostgreSQL's), only outputs need rewriting into public URLs.
     */
    outputs = NULL;

    if (rn->outputs.len) {
        pub = ngx_http_flowscale_public_outputs(flcf, &id, &rn->outputs);
        outputs = pub ? json_dumps(pub, JSON_COMPACT) : NULL;
        json_decref(pub);

        if (outputs == NULL) {
            return NGX_ERROR;
        }
    }

    ngx_str_set(&inputs, "null");
    ngx_str_set(&error, "null");

    if (rn->inputs.len) {
        inputs = rn->inputs;
    }

    if (rn->error.len) {
        error = rn->error;
    }

    dlen = ngx_strlen(rn->deployment);
    nlen = ngx_strlen(rn->progress_node);

    len = sizeof("{\"id\":\"\",\"deployment\":\"\",\"version\":\"\","
                 "\"status\":\"succeeded\",\"inputs\":,\"queue_position\":,"
                 "\"progress\":{\"value\":,\"max\":,\"node\":\"\"},"
                 "\"created_at\":,\"started_at\":,\"finished_at\":,"
                 "\"outputs\":{},\"error\":}\n")
          + id.len + dlen + ngx_escape_json(NULL, rn->deployment, dlen)
          + ngx_strlen(rn->version) + inputs.len + NGX_INT_T_LEN
          + 2 * NGX_INT32_LEN + nlen + ngx_escape_json(NULL,
                                                         rn->progress_node,
                                                         nlen)
          + 3 * sizeof("\"2026-11-29T23:20:21.123Z\"")
          + (outputs ? ngx_strlen(outputs) : 0) + error.len;

    out->data = ngx_pnalloc(pool, len);

    if (out->data == NULL) {
        free(outputs);
        return NGX_ERROR;
    }

    p = ngx_sprintf(out->data, "{\"id\":\"%V\",\"deployment\":\"", &id);
    p = (u_char *) ngx_escape_json(p, rn->deployment, dlen);
    p = ngx_sprintf(p, "\",\"version\":\"%s\",\"status\":\"%s\","
                    "\"inputs\":%V,\"queue_position\":",
                    rn->version, ngx_http_flowscale_status_name(rn->status),
                    &inputs);

    p = v->position ? ngx_sprintf(p, "%ui", v->position)
                    : ngx_cpymem(p, "null", 4);

    if (rn->progress_max > 0) {
        p = ngx_sprintf(p, ",\"progress\":{\"value\":%D,\"max\":%D,"
                        "\"node\":\"", rn->progress_value, rn->progress_max);
        p = (u_char *) ngx_escape_json(p, rn->progress_node, nlen);
        p = ngx_cpymem(p, "\"}", 2);

    } else {
        p = ngx_cpymem(p, ",\"progress\":null", sizeof(",\"progress\":null") - 1);
    }

    p = ngx_cpymem(p, ",\"created_at\":", sizeof(",\"created_at\":") - 1);
    p = ngx_http_flowscale_time(p, rn->created);
    p = ngx_cpymem(p, ",\"started_at\":", sizeof(",\"started_at\":") - 1);
    p = ngx_http_flowscale_time(p, rn->started);
    p = ngx_cpymem(p, ",\"finished_at\":", sizeof(",\"finished_at\":") - 1);
    p = ngx_http_flowscale_time(p, rn->finished);

    p = ngx_sprintf(p, ",\"outputs\":%s,\"error\":%V}\n",
                    outputs ? outputs : "{}", &error);

    free(outputs);

    out->len = p - out->data;

    return NGX_OK;
}


/*
 * Outputs as callers see them: files by URL under L (the backend's names
 * and folders stay inside), text as it is.
 */

static json_t *
ngx_http_flowscale_public_outputs(ngx_http_flowscale_loc_conf_t *flcf,
    ngx_str_t *id, ngx_str_t *outputs)
{
    json_t      *all, *pub, *items;
    const char  *name;

    all = ngx_http_flowscale_json_or_null(outputs);

    if (!json_is_object(all)) {
        json_decref(all);
        return json_object();
    }

    pub = json_object();

    json_object_foreach(all, name, items) {
        json_object_set_new(pub, name,
                            ngx_http_flowscale_public_items(flcf, id, name,
                                                            items));
    }

    json_decref(all);

    return pub;
}


static json_t *
ngx_http_flowscale_public_items(ngx_http_flowscale_loc_conf_t *flcf,
    ngx_str_t *id, const char *name, json_t *items)
{
    char         url[1024];
    size_t       i;
    json_t      *list, *item;
    const char  *kind;

    list = json_array();

    json_array_foreach(items, i, item) {
        kind = json_string_value(json_object_get(item, "kind"));

        if (kind && ngx_strcmp(kind, "text") == 0) {
            json_array_append_new(list, json_pack("{s:s, s:O}",
                                  "kind", "text",
                                  "text", json_object_get(item, "text")));
            continue;
        }

        ngx_snprintf((u_char *) url, sizeof(url),
                     "%V/runs/%V/outputs/%s/%uz%Z", &flcf->location, id,
                     name, i);

        json_array_append_new(list, json_pack("{s:s, s:s, s:O, s:O}",
                              "kind", kind ? kind : "images",
                              "url", url,
                              "filename", json_object_get(item, "filename"),
                              "content_type",
                              json_object_get(item, "content_type")));
    }

    return list;
}


/* an "output" event as callers see it: {"name", "items" with URLs} */

ngx_int_t
ngx_http_flowscale_public_event_output(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf, ngx_http_flowscale_run_view_t *v,
    ngx_str_t *in, ngx_str_t *out)
{
    json_t      *data, *pub;
    ngx_int_t    rc;
    ngx_str_t    id;
    const char  *name;

    data = ngx_http_flowscale_json_or_null(in);
    name = json_string_value(json_object_get(data, "name"));

    if (name == NULL) {
        json_decref(data);
        ngx_str_set(out, "{}");
        return NGX_OK;
    }

    id.data = v->run.id;
    id.len = NGX_HTTP_FLOWSCALE_RUN_ID_LEN;

    pub = json_pack("{s:s, s:o}", "name", name,
                    "items", ngx_http_flowscale_public_items(flcf, &id, name,
                                 json_object_get(data, "items")));

    rc = ngx_http_flowscale_dump(r->pool, pub, out);

    json_decref(pub);
    json_decref(data);

    return rc;
}


static ngx_int_t
ngx_http_flowscale_dump(ngx_pool_t *pool, json_t *v, ngx_str_t *out)
{
    char  *text;

    text = v ? json_dumps(v, JSON_COMPACT) : NULL;
    if (text == NULL) {
        return NGX_ERROR;
    }

    out->len = ngx_strlen(text);
    out->data = ngx_pnalloc(pool, out->len);

    if (out->data) {
        ngx_memcpy(out->data, text, out->len);
    }

    free(text);

    return out->data ? NGX_OK : NGX_ERROR;
}


/* a time in ms since the epoch as a JSON string, or null */

static u_char *
ngx_http_flowscale_time(u_char *p, int64_t ms)
{
    ngx_tm_t  tm;

    if (ms <= 0) {
        return ngx_cpymem(p, "null", 4);
    }

    ngx_gmtime((time_t) (ms / 1000), &tm);

    return ngx_sprintf(p, "\"%4d-%02d-%02dT%02d:%02d:%02d.%03dZ\"",
                       tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                       tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec,
                       (int) (ms % 1000));
}


static json_t *
ngx_http_flowscale_json_or_null(ngx_str_t *s)
{
    json_t  *v;

    if (s->len == 0) {
        return json_null();
    }

    v = json_loadb((char *) s->data, s->len, JSON_DECODE_ANY, NULL);

    return v ? v : json_null();
}


/* from PostgreSQL: the zone evicted it, or it ran before a restart */

static ngx_int_t
ngx_http_flowscale_read_pg(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf, ngx_str_t *id, ngx_uint_t status)
{
    const char                     *params[3];
    ngx_pool_cleanup_t             *cln;
    ngx_http_flowscale_read_ctx_t  *ctx;

    /* a malformed id is simply not found */
    if (!ngx_http_flowscale_is_run_id(id)) {
        return ngx_http_flowscale_problem(r, NGX_HTTP_NOT_FOUND, "not-found",
                   "Run not found", "No run with this id in this "
                   "deployment.");
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_flowscale_read_ctx_t));
    cln = ngx_pool_cleanup_add(r->pool, 0);

    if (ctx == NULL || cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->request = r;
    ctx->flcf = flcf;
    ctx->status = status;

    params[0] = ngx_pnalloc(r->pool, id->len + 1);
    params[1] = (char *) flcf->name.data;
    params[2] = (char *) flcf->project.data;

    if (params[0] == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_cpystrn((u_char *) params[0], id->data, id->len + 1);

    ctx->query = ngx_http_flowscale_pg_query(ngx_http_flowscale_run_sql, 3,
                     params, NULL, ngx_http_flowscale_read_done, ctx,
                     r->connection->log);

    if (ctx->query == NULL) {
        return ngx_http_flowscale_unavailable(r);
    }

    cln->handler = ngx_http_flowscale_read_cleanup;
    cln->data = ctx;

    r->main->count++;
    r->read_event_handler = ngx_http_test_reading;

    return NGX_DONE;
}


static void
ngx_http_flowscale_read_done(void *data, PGresult *res, const char *error)
{
    ngx_http_flowscale_read_ctx_t *ctx = data;

    ngx_int_t                       rc;
    ngx_http_request_t             *r;
    ngx_http_flowscale_run_view_t   v;

    /* the reference taken in ngx_http_flowscale_read_pg() is ours */
    r = ctx->request;
    ctx->query = NULL;

    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "flowscale: cannot read a run: %s",
                      res ? PQresultErrorMessage(res) : error);
        ngx_http_flowscale_finalize(r, ngx_http_flowscale_unavailable(r));
        return;
    }

    if (PQntuples(res) == 0) {
        ngx_http_flowscale_finalize(r,
            ngx_http_flowscale_problem(r, NGX_HTTP_NOT_FOUND, "not-found",
                "Run not found", "No run with this id in this deployment."));
        return;
    }

    ngx_http_flowscale_pg_view(res, 0, &v);

    if (ctx->status == NGX_HTTP_OK
        && !ngx_http_flowscale_is_finished(v.run.status))
    {
        ctx->status = NGX_HTTP_ACCEPTED;
    }

    /* res lives until we return: render now */
    rc = ngx_http_flowscale_send_view(r, ctx->flcf, &v, ctx->status);

    ngx_http_flowscale_finalize(r, rc);
}


/*
 * A row with the columns of ngx_http_flowscale_run_sql as a view (res must
 * outlive it).
 */

void
ngx_http_flowscale_pg_view(PGresult *res, int row,
    ngx_http_flowscale_run_view_t *v)
{
    char                         *s;
    json_t                       *progress;
    ngx_uint_t                    i;
    const char                   *node;
    ngx_http_flowscale_status_e   st;

    ngx_memzero(v, sizeof(ngx_http_flowscale_run_view_t));

    ngx_memcpy(v->run.id, PQgetvalue(res, row, 0),
               NGX_HTTP_FLOWSCALE_RUN_ID_LEN);
    ngx_cpystrn(v->run.deployment, (u_char *) PQgetvalue(res, row, 1),
                sizeof(v->run.deployment));
    ngx_cpystrn(v->run.version, (u_char *) PQgetvalue(res, row, 2),
                sizeof(v->run.version));
    ngx_cpystrn(v->run.project, (u_char *) PQgetvalue(res, row, 10),
                sizeof(v->run.project));

    s = PQgetvalue(res, row, 3);
    st = NGX_HTTP_FLOWSCALE_QUEUED;

    for (i = NGX_HTTP_FLOWSCALE_QUEUED; i <= NGX_HTTP_FLOWSCALE_CANCELED; i++)
    {
        if (ngx_strcmp(s, ngx_http_flowscale_status_name(i)) == 0) {
            st = i;
        }
    }

    v->run.status = st;

#define ngx_http_flowscale_pg_str(f, col)                                    \
    if (!PQgetisnull(res, row, col)) {                                         \
        (f).data = (u_char *) PQgetvalue(res, row, col);                       \
        (f).len = PQgetlength(res, row, col);                                  \
    }

    ngx_http_flowscale_pg_str(v->run.inputs, 4);
    ngx_http_flowscale_pg_str(v->run.outputs, 5);
    ngx_http_flowscale_pg_str(v->run.error, 6);

#undef ngx_http_flowscale_pg_str

    v->run.created = ngx_atoof((u_char *) PQgetvalue(res, row, 7),
                               PQgetlength(res, row, 7));
    v->run.started = ngx_atoof((u_char *) PQgetvalue(res, row, 8),
                               PQgetlength(res, row, 8));
    v->run.finished = ngx_atoof((u_char *) PQgetvalue(res, row, 9),
                                PQgetlength(res, row, 9));

    /* {"value", "max", "node"}, as the front that follows the run saw it */
    if (!PQgetisnull(res, row, 11)) {
        progress = json_loadb(PQgetvalue(res, row, 11),
                              PQgetlength(res, row, 11), 0, NULL);

        v->run.progress_value = (int32_t) json_integer_value(
                                    json_object_get(progress, "value"));
        v->run.progress_max = (int32_t) json_integer_value(
                                  json_object_get(progress, "max"));
        node = json_string_value(json_object_get(progress, "node"));

        if (node) {
            ngx_cpystrn(v->run.progress_node, (u_char *) node,
                        sizeof(v->run.progress_node));
        }

        json_decref(progress);
    }
}


static void
ngx_http_flowscale_read_cleanup(void *data)
{
    ngx_http_flowscale_read_ctx_t *ctx = data;

    if (ctx->query) {
        ngx_http_flowscale_pg_cancel(ctx->query);
    }
}


/*
 * Prefer: wait.  Waiting requests of a worker are checked together, only
 * when the zone says something changed; a request costs nothing else.
 * NGX_DONE: parked, and finalized once when the wait ends; a content
 * handler holds a reference (r->main->count) for that.
 */

ngx_int_t
ngx_http_flowscale_wait(ngx_http_request_t *r, ngx_str_t *id, ngx_msec_t ms)
{
    ngx_pool_cleanup_t           *cln;
    ngx_http_flowscale_waiter_t  *w;

    w = ngx_pcalloc(r->pool, sizeof(ngx_http_flowscale_waiter_t));
    cln = ngx_pool_cleanup_add(r->pool, 0);

    if (w == NULL || cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_flowscale_waiters.next == NULL) {
        ngx_queue_init(&ngx_http_flowscale_waiters);
        ngx_http_flowscale_wait_event.handler = ngx_http_flowscale_wait_poll;
        ngx_http_flowscale_wait_event.data = &ngx_http_flowscale_wait_dummy;
        ngx_http_flowscale_wait_event.log = ngx_cycle->log;
        ngx_http_flowscale_wait_event.cancelable = 1;
    }

    w->request = r;
    w->flcf = ngx_http_get_module_loc_conf(r, ngx_http_flowscale_module);
    w->id = *id;
    w->deadline = ngx_current_msec + ms;

    ngx_queue_insert_tail(&ngx_http_flowscale_waiters, &w->queue);

    cln->handler = ngx_http_flowscale_wait_cleanup;
    cln->data = w;

    r->read_event_handler = ngx_http_test_reading;

    if (!ngx_http_flowscale_wait_event.timer_set) {
        ngx_add_timer(&ngx_http_flowscale_wait_event,
                      NGX_HTTP_FLOWSCALE_WAIT_POLL);
    }

    return NGX_DONE;
}


static void
ngx_http_flowscale_wait_poll(ngx_event_t *ev)
{
    ngx_uint_t                    changed, finished;
    ngx_queue_t                  *q, *next;
    ngx_atomic_uint_t             changes;
    ngx_http_request_t           *r;
    ngx_http_flowscale_run_t     *run;
    ngx_http_flowscale_zone_t    *z;
    ngx_http_flowscale_waiter_t  *w;

    z = ngx_http_flowscale_zone_get((ngx_cycle_t *) ngx_cycle);

    changes = z->sh->changes;
    changed = (changes != ngx_http_flowscale_seen_changes);
    ngx_http_flowscale_seen_changes = changes;

    for (q = ngx_queue_head(&ngx_http_flowscale_waiters);
         q != ngx_queue_sentinel(&ngx_http_flowscale_waiters);
         q = next)
    {
        next = ngx_queue_next(q);
        w = ngx_queue_data(q, ngx_http_flowscale_waiter_t, queue);

        finished = 0;

        if (changed) {
            ngx_http_flowscale_runs_lock(z);
            run = ngx_http_flowscale_runs_find(z, w->id.data, w->id.len);
            finished = (run == NULL
                        || ngx_http_flowscale_is_finished(run->status));
            ngx_http_flowscale_runs_unlock(z);
        }

        if (!finished && (ngx_msec_int_t) (w->deadline - ngx_current_msec) > 0)
        {
            continue;
        }

        ngx_queue_remove(q);
        q->next = NULL;

        r = w->request;

        ngx_http_flowscale_finalize(r,
            ngx_http_flowscale_send_run(r, w->flcf, &w->id, NGX_HTTP_OK));
    }

    if (!ngx_queue_empty(&ngx_http_flowscale_waiters)) {
        ngx_add_timer(ev, NGX_HTTP_FLOWSCALE_WAIT_POLL);
    }
}


static void
ngx_http_flowscale_wait_cleanup(void *data)
{
    ngx_http_flowscale_waiter_t *w = data;

    if (w->queue.next) {
        ngx_queue_remove(&w->queue);
        w->queue.next = NULL;
    }
}


/*
 * A run has ended (recorded in PostgreSQL and in the zone): when its
 * caller asked for a webhook, the run as GET L/runs/ID shows it goes
 * there.
 */

void
ngx_http_flowscale_run_ended(ngx_http_flowscale_loc_conf_t *flcf,
    ngx_str_t *id)
{
    ngx_str_t                       body, url, project;
    ngx_pool_t                     *pool;
    ngx_http_flowscale_zone_t      *z;
    ngx_http_flowscale_run_view_t   view;

    z = ngx_http_flowscale_zone_get((ngx_cycle_t *) ngx_cycle);

    pool = ngx_create_pool(4096, ngx_cycle->log);
    if (pool == NULL) {
        return;
    }

    if (ngx_http_flowscale_runs_view(z, id->data, id->len, pool, &view)
        != NGX_OK
        || view.run.webhook.len == 0
        || ngx_http_flowscale_render_run(pool, flcf, &view, &body) != NGX_OK)
    {
        ngx_destroy_pool(pool);
        return;
    }

    url = view.run.webhook;
    project.data = view.run.project;
    project.len = ngx_strlen(view.run.project);
    body.len--;                                 /* its newline */

    ngx_http_flowscale_webhook_deliver(flcf, id, &project, &url, &body, 0);

    ngx_destroy_pool(pool);
}
