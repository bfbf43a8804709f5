
/*
 * FlowScale for nginx: GET L/runs, the deployment's log.  The caller's
 * project's runs of this deployment, newest first, from PostgreSQL, paged
 * by keyset: run ids are UUIDv7, ordered by creation, so the cursor is the
 * last id of a page (?before=ID&limit=N&status=S).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_flowscale_module.h"
#include "ngx_http_flowscale_pg.h"


#define NGX_HTTP_FLOWSCALE_LIST_DEFAULT  20
#define NGX_HTTP_FLOWSCALE_LIST_MAX      200


typedef struct {
    ngx_http_request_t             *request;
    ngx_http_flowscale_loc_conf_t  *flcf;
    ngx_http_flowscale_pg_query_t  *query;
    ngx_uint_t                      limit;
    ngx_str_t                       status;
} ngx_http_flowscale_list_ctx_t;


static void ngx_http_flowscale_listed(void *data, PGresult *res,
    const char *error);
static ngx_int_t ngx_http_flowscale_list_send(ngx_http_request_t *r,
    ngx_http_flowscale_list_ctx_t *ctx, PGresult *res);
static void ngx_http_flowscale_list_cleanup(void *data);
static ngx_int_t ngx_http_flowscale_arg(ngx_http_request_t *r,
    const char *name, ngx_str_t *value);
static ngx_int_t ngx_http_flowscale_is_uuid(ngx_str_t *s);
static char *ngx_http_flowscale_cstr(ngx_pool_t *pool, ngx_str_t *s);


static ngx_str_t  ngx_http_flowscale_json_type =
    ngx_string("application/json");


ngx_int_t
ngx_http_flowscale_list(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf)
{
    char                           *params[5];
    ngx_int_t                       n;
    ngx_str_t                       limit, before, status;
    ngx_uint_t                      i;
    ngx_pool_cleanup_t             *cln;
    ngx_http_flowscale_list_ctx_t  *ctx;

    static const char  *statuses[] = {
        "queued", "running", "succeeded", "failed", "canceled", NULL
    };

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_flowscale_list_ctx_t));
    cln = ngx_pool_cleanup_add(r->pool, 0);

    if (ctx == NULL || cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->request = r;
    ctx->flcf = flcf;
    ctx->limit = NGX_HTTP_FLOWSCALE_LIST_DEFAULT;

    if (ngx_http_flowscale_arg(r, "limit", &limit) == NGX_OK) {
        n = ngx_atoi(limit.data, limit.len);

        if (n < 1 || n > NGX_HTTP_FLOWSCALE_LIST_MAX) {
            return ngx_http_flowscale_problem(r, NGX_HTTP_BAD_REQUEST,
                       "bad-query", "Bad query",
                       "limit must be a number from 1 to 200.");
        }

        ctx->limit = n;
    }

    ngx_str_null(&before);

    if (ngx_http_flowscale_arg(r, "before", &before) == NGX_OK
        && !ngx_http_flowscale_is_uuid(&before))
    {
        return ngx_http_flowscale_problem(r, NGX_HTTP_BAD_REQUEST,
                   "bad-query", "Bad query",
                   "before must be the next_cursor of a previous page.");
    }

    ngx_str_null(&status);

    if (ngx_http_flowscale_arg(r, "status", &status) == NGX_OK) {
        for (i = 0; statuses[i]; i++) {
            if (status.len == ngx_strlen(statuses[i])
                && ngx_strncmp(status.data, statuses[i], status.len) == 0)
            {
                break;
            }
        }

        if (statuses[i] == NULL) {
            return ngx_http_flowscale_problem(r, NGX_HTTP_BAD_REQUEST,
                       "bad-query", "Bad query",
                       "status must be queued, running, succeeded, failed "
                       "or canceled.");
        }
    }

    ctx->status = status;

    params[0] = (char *) flcf->project.data;
    params[1] = (char *) flcf->name.data;
    params[2] = ngx_http_flowscale_cstr(r->pool, &before);
    params[3] = ngx_http_flowscale_cstr(r->pool, &status);
    params[4] = ngx_pnalloc(r->pool, NGX_INT_T_LEN + 1);

    if (params[4] == NULL || (before.len && params[2] == NULL)
        || (status.len && params[3] == NULL))
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* one more than asked: whether a next page exists */
    ngx_sprintf((u_char *) params[4], "%ui%Z", ctx->limit + 1);

    ctx->query = ngx_http_flowscale_pg_query(
        "SELECT coalesce(json_agg(json_build_object("
        "'id', id, 'deployment', deployment, 'version', version, "
        "'status', status, 'inputs', inputs, "
        "'created_at', flowscale.iso(created_at), "
        "'started_at', flowscale.iso(started_at), "
        "'finished_at', flowscale.iso(finished_at), "
        "'backend', backend, 'error', error, 'key_id', key_id) "
        "ORDER BY id DESC), '[]') FROM ("
        "SELECT * FROM flowscale.runs "
        "WHERE project = $1 AND deployment = $2 "
        "AND ($3::uuid IS NULL OR id < $3::uuid) "
        "AND ($4::text IS NULL OR status = $4) "
        "ORDER BY id DESC LIMIT $5::int) AS page",
        5, (const char *const *) params, NULL, ngx_http_flowscale_listed,
        ctx, r->connection->log);

    if (ctx->query == NULL) {
        return ngx_http_flowscale_unavailable(r);
    }

    cln->handler = ngx_http_flowscale_list_cleanup;
    cln->data = ctx;

    r->main->count++;
    r->read_event_handler = ngx_http_test_reading;

    return NGX_DONE;
}


static void
ngx_http_flowscale_listed(void *data, PGresult *res, const char *error)
{
    ngx_http_flowscale_list_ctx_t *ctx = data;

    ngx_http_request_t  *r;

    /* the reference taken in ngx_http_flowscale_list() is ours */
    r = ctx->request;
    ctx->query = NULL;

    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK
        || PQntuples(res) != 1)
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "flowscale: cannot list runs: %s",
                      res ? PQresultErrorMessage(res) : error);
        ngx_http_flowscale_finalize(r, ngx_http_flowscale_unavailable(r));
        return;
    }

    ngx_http_flowscale_finalize(r, ngx_http_flowscale_list_send(r, ctx, res));
}


/* {"runs": [...], "next_cursor": ID|null} and Link: <...>; rel="next" */

static ngx_int_t
ngx_http_flowscale_list_send(ngx_http_request_t *r,
    ngx_http_flowscale_list_ctx_t *ctx, PGresult *res)
{
    u_char           *p;
    json_t           *runs, *reply;
    const char       *cursor;
    ngx_table_elt_t  *h;

    runs = json_loadb(PQgetvalue(res, 0, 0), PQgetlength(res, 0, 0), 0,
                      NULL);
    if (!json_is_array(runs)) {
        json_decref(runs);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cursor = NULL;

    if (json_array_size(runs) > ctx->limit) {
        json_array_remove(runs, ctx->limit);
        cursor = json_string_value(json_object_get(
                     json_array_get(runs, ctx->limit - 1), "id"));
    }

    reply = json_pack("{s:O, s:s?}", "runs", runs, "next_cursor", cursor);

    if (cursor) {
        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            json_decref(runs);
            json_decref(reply);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        h->value.data = ngx_pnalloc(r->pool, ctx->flcf->location.len + 128
                                             + ctx->status.len);
        if (h->value.data == NULL) {
            json_decref(runs);
            json_decref(reply);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        p = ngx_sprintf(h->value.data, "<%V/runs?before=%s&limit=%ui",
                        &ctx->flcf->location, cursor, ctx->limit);

        if (ctx->status.len) {
            p = ngx_sprintf(p, "&status=%V", &ctx->status);
        }

        p = ngx_sprintf(p, ">; rel=\"next\"");

        h->hash = 1;
        ngx_str_set(&h->key, "Link");
        h->value.len = p - h->value.data;
    }

    json_decref(runs);

    return ngx_http_flowscale_send_value(r, NGX_HTTP_OK,
                                         &ngx_http_flowscale_json_type,
                                         reply, 1);
}


static void
ngx_http_flowscale_list_cleanup(void *data)
{
    ngx_http_flowscale_list_ctx_t *ctx = data;

    if (ctx->query) {
        ngx_http_flowscale_pg_cancel(ctx->query);
    }
}


static ngx_int_t
ngx_http_flowscale_arg(ngx_http_request_t *r, const char *name,
    ngx_str_t *value)
{
    if (ngx_http_arg(r, (u_char *) name, ngx_strlen(name), value) != NGX_OK
        || value->len == 0)
    {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_flowscale_is_uuid(ngx_str_t *s)
{
    ngx_uint_t  i;
    u_char      c;

    if (s->len != NGX_HTTP_FLOWSCALE_RUN_ID_LEN) {
        return 0;
    }

    for (i = 0; i < s->len; i++) {
        c = s->data[i];

        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-') {
                return 0;
            }

        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return 0;
        }
    }

    return 1;
}


/* a query argument as a libpq parameter: NULL when absent */

static char *
ngx_http_flowscale_cstr(ngx_pool_t *pool, ngx_str_t *s)
{
    u_char  *p;

    if (s->len == 0) {
        return NULL;
    }

    p = ngx_pnalloc(pool, s->len + 1);
    if (p) {
        ngx_cpystrn(p, s->data, s->len + 1);
    }

    return (char *) p;
}
