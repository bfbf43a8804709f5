
/*
 * FlowScale for nginx: GET L/runs/ID/outputs/NAME/N streams an output file
 * from the backend that made it (ComfyUI's /view), through nginx's own
 * upstream machinery: nginx streams it, keeps memory bounded, and passes
 * Range through so the backend answers 206 itself.  Text outputs are
 * answered directly.  A run the zone does not hold (evicted, from before a
 * restart, or accepted by another nginx front) is read from PostgreSQL.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_flowscale_module.h"
#include "ngx_http_flowscale_pg.h"
#include "ngx_http_flowscale_comfy.h"
#include "ngx_http_flowscale_dispatch.h"


typedef struct {
    ngx_str_t                       filename;
    ngx_str_t                       subfolder;
    ngx_str_t                       type;
    ngx_str_t                       content_type;
    ngx_http_status_t               status;
    unsigned                        status_done:1;
} ngx_http_flowscale_output_ctx_t;


/* the output asked for, while PostgreSQL is read */
typedef struct {
    ngx_http_request_t             *request;
    ngx_http_flowscale_loc_conf_t  *flcf;
    ngx_http_flowscale_pg_query_t  *query;
    char                            name[FS_NAME_MAX + 1];
    ngx_int_t                       n;
} ngx_http_flowscale_output_read_t;


static ngx_int_t ngx_http_flowscale_output_serve(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf, const char *name, ngx_int_t n,
    ngx_str_t *outputs, ngx_str_t *backend);
static ngx_int_t ngx_http_flowscale_output_read_pg(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf, ngx_str_t *id, const char *name,
    ngx_int_t n);
static void ngx_http_flowscale_output_read(void *data, PGresult *res,
    const char *error);
static void ngx_http_flowscale_output_read_cleanup(void *data);
static ngx_int_t ngx_http_flowscale_output_not_found(ngx_http_request_t *r);
static ngx_int_t ngx_http_flowscale_output_text(ngx_http_request_t *r,
    const char *text);
static ngx_int_t ngx_http_flowscale_output_proxy(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf, ngx_str_t *backend, json_t *item);
static ngx_int_t ngx_http_flowscale_output_create_request(
    ngx_http_request_t *r);
static ngx_int_t ngx_http_flowscale_output_reinit_request(
    ngx_http_request_t *r);
static ngx_int_t ngx_http_flowscale_output_process_header(
    ngx_http_request_t *r);
static ngx_int_t ngx_http_flowscale_output_header(ngx_http_request_t *r,
    ngx_str_t *key, ngx_str_t *value);
static void ngx_http_flowscale_output_abort_request(ngx_http_request_t *r);
static void ngx_http_flowscale_output_finalize_request(ngx_http_request_t *r,
    ngx_int_t rc);
static ngx_int_t ngx_http_flowscale_pool_str(ngx_pool_t *pool, ngx_str_t *s,
    json_t *v, const char *dflt);


/* the files ComfyUI writes; these pass through to the caller */
static ngx_str_t  ngx_http_flowscale_passed_headers[] = {
    ngx_string("Content-Range"),
    ngx_string("Accept-Ranges"),
    ngx_string("Last-Modified"),
    ngx_string("ETag"),
    ngx_null_string
};


static ngx_str_t  ngx_http_flowscale_text_type =
    ngx_string("text/plain; charset=utf-8");


/* rest: "NAME/N" after L/runs/ID/outputs/ */

ngx_int_t
ngx_http_flowscale_output(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf, ngx_str_t *id, ngx_str_t *rest)
{
    u_char                         *slash;
    char                            name[FS_NAME_MAX + 1];
    ngx_int_t                       rc, n;
    ngx_str_t                       backend;
    ngx_http_flowscale_zone_t      *z;
    ngx_http_flowscale_run_view_t   view;

    slash = ngx_strlchr(rest->data, rest->data + rest->len, '/');

    n = slash ? ngx_atoi(slash + 1, rest->data + rest->len - slash - 1)
              : NGX_ERROR;

    if (slash == NULL || n == NGX_ERROR
        || (size_t) (slash - rest->data) > FS_NAME_MAX)
    {
        return ngx_http_flowscale_output_not_found(r);
    }

    ngx_cpystrn((u_char *) name, rest->data, slash - rest->data + 1);

    z = ngx_http_flowscale_zone_get((ngx_cycle_t *) ngx_cycle);

    rc = ngx_http_flowscale_runs_view(z, id->data, id->len, r->pool, &view);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return ngx_http_flowscale_output_read_pg(r, flcf, id, name, n);
    }

    if (!ngx_http_flowscale_view_belongs(&view, flcf)) {
        return ngx_http_flowscale_output_not_found(r);
    }

    backend.data = view.run.backend;
    backend.len = ngx_strlen(view.run.backend);

    return ngx_http_flowscale_output_serve(r, flcf, name, n,
                                           &view.run.outputs, &backend);
}


/* the Nth item of output NAME in a run's outputs JSON */

static ngx_int_t
ngx_http_flowscale_output_serve(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf, const char *name, ngx_int_t n,
    ngx_str_t *outputs, ngx_str_t *backend)
{
    json_t      *all, *item;
    ngx_int_t    rc;
    const char  *kind;

    if (outputs->len == 0) {
        return ngx_http_flowscale_output_not_found(r);
    }

    all = json_loadb((char *) outputs->data, outputs->len, 0, NULL);

    item = json_array_get(json_object_get(all, name), n);

    if (item == NULL) {
        json_decref(all);
        return ngx_http_flowscale_output_not_found(r);
    }

    kind = json_string_value(json_object_get(item, "kind"));

    if (kind && ngx_strcmp(kind, "text") == 0) {
        rc = ngx_http_flowscale_output_text(r,
                 json_string_value(json_object_get(item, "text")));
        json_decref(all);
        return rc;
    }

    rc = ngx_http_flowscale_output_proxy(r, flcf, backend, item);
    json_decref(all);

    return rc;
}


static ngx_int_t
ngx_http_flowscale_output_read_pg(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf, ngx_str_t *id, const char *name,
    ngx_int_t n)
{
    const char                        *params[3];
    ngx_pool_cleanup_t                *cln;
    ngx_http_flowscale_output_read_t  *rd;

    /* a malformed id is simply not found */
    if (!ngx_http_flowscale_is_run_id(id)) {
        return ngx_http_flowscale_output_not_found(r);
    }

    rd = ngx_pcalloc(r->pool, sizeof(ngx_http_flowscale_output_read_t));
    cln = ngx_pool_cleanup_add(r->pool, 0);
    params[0] = ngx_pnalloc(r->pool, id->len + 1);

    if (rd == NULL || cln == NULL || params[0] == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_cpystrn((u_char *) params[0], id->data, id->len + 1);
    params[1] = (char *) flcf->name.data;
    params[2] = (char *) flcf->project.data;

    rd->request = r;
    rd->flcf = flcf;
    rd->n = n;
    ngx_cpystrn((u_char *) rd->name, (u_char *) name, sizeof(rd->name));

    rd->query = ngx_http_flowscale_pg_query(
        "SELECT coalesce(outputs::text, ''), coalesce(backend, '') "
        "FROM flowscale.runs "
        "WHERE id = $1::uuid AND deployment = $2 AND project = $3",
        3, params, NULL, ngx_http_flowscale_output_read, rd,
        r->connection->log);

    if (rd->query == NULL) {
        return ngx_http_flowscale_unavailable(r);
    }

    cln->handler = ngx_http_flowscale_output_read_cleanup;
    cln->data = rd;

    r->main->count++;

    return NGX_DONE;
}


static void
ngx_http_flowscale_output_read(void *data, PGresult *res, const char *error)
{
    ngx_http_flowscale_output_read_t *rd = data;

    ngx_int_t            rc;
    ngx_str_t            outputs, backend;
    ngx_http_request_t  *r;

    /* the reference taken in ngx_http_flowscale_output_read_pg() is ours */
    r = rd->request;
    rd->query = NULL;

    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "flowscale: cannot read a run's outputs: %s",
                      res ? PQresultErrorMessage(res) : error);
        ngx_http_flowscale_finalize(r, ngx_http_flowscale_unavailable(r));
        return;
    }

    if (PQntuples(res) == 0) {
        ngx_http_flowscale_finalize(r, ngx_http_flowscale_output_not_found(r));
        return;
    }

    outputs.data = (u_char *) PQgetvalue(res, 0, 0);
    outputs.len = PQgetlength(res, 0, 0);
    backend.data = (u_char *) PQgetvalue(res, 0, 1);
    backend.len = PQgetlength(res, 0, 1);

    rc = ngx_http_flowscale_output_serve(r, rd->flcf, rd->name, rd->n,
                                         &outputs, &backend);

    ngx_http_flowscale_finalize(r, rc);
}


static void
ngx_http_flowscale_output_read_cleanup(void *data)
{
    ngx_http_flowscale_output_read_t *rd = data;

    if (rd->query) {
        ngx_http_flowscale_pg_cancel(rd->query);
    }
}


static ngx_int_t
ngx_http_flowscale_output_not_found(ngx_http_request_t *r)
{
    return ngx_http_flowscale_problem(r, NGX_HTTP_NOT_FOUND, "not-found",
               "Output not found", "This run has no such output file.");
}


static ngx_int_t
ngx_http_flowscale_output_text(ngx_http_request_t *r, const char *text)
{
    ngx_str_t  body;

    body.len = text ? ngx_strlen(text) : 0;
    body.data = ngx_pnalloc(r->pool, body.len + 1);

    if (body.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(body.data, text ? text : "", body.len);

    return ngx_http_flowscale_send_json(r, NGX_HTTP_OK,
                                        &ngx_http_flowscale_text_type, &body);
}


static ngx_int_t
ngx_http_flowscale_output_proxy(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf, ngx_str_t *backend, json_t *item)
{
    ngx_int_t                         rc;
    ngx_http_upstream_t              *u;
    ngx_http_flowscale_peer_t        *peer;
    ngx_http_upstream_resolved_t     *ur;
    ngx_http_flowscale_output_ctx_t  *ctx;

    peer = ngx_http_flowscale_dispatch_peer(backend);

    if (peer == NULL) {
        return ngx_http_flowscale_problem(r, NGX_HTTP_BAD_GATEWAY,
                   "backend-gone", "Backend not configured",
                   "The backend that made this file is no longer in the "
                   "deployment's upstream.");
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_flowscale_output_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_flowscale_pool_str(r->pool, &ctx->filename,
                                    json_object_get(item, "filename"), NULL)
        != NGX_OK
        || ngx_http_flowscale_pool_str(r->pool, &ctx->subfolder,
                                       json_object_get(item, "subfolder"), "")
           != NGX_OK
        || ngx_http_flowscale_pool_str(r->pool, &ctx->type,
                                       json_object_get(item, "type"),
                                       "output")
           != NGX_OK
        || ngx_http_flowscale_pool_str(r->pool, &ctx->content_type,
                                       json_object_get(item, "content_type"),
                                       "application/octet-stream")
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_set_ctx(r, ctx, ngx_http_flowscale_module);

    if (ngx_http_upstream_create(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    u = r->upstream;

    ngx_str_set(&u->schema, "http://");
    u->output.tag = (ngx_buf_tag_t) &ngx_http_flowscale_module;
    u->conf = &flcf->output_upstream;

    ur = ngx_pcalloc(r->pool, sizeof(ngx_http_upstream_resolved_t));
    if (ur == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ur->sockaddr = peer->sockaddr;
    ur->socklen = peer->socklen;
    ur->name = peer->name;
    ur->host = peer->name;
    ur->port = ngx_inet_get_port(peer->sockaddr);
    ur->naddrs = 1;

    u->resolved = ur;

    u->create_request = ngx_http_flowscale_output_create_request;
    u->reinit_request = ngx_http_flowscale_output_reinit_request;
    u->process_header = ngx_http_flowscale_output_process_header;
    u->abort_request = ngx_http_flowscale_output_abort_request;
    u->finalize_request = ngx_http_flowscale_output_finalize_request;

    r->main->count++;

    ngx_http_upstream_init(r);

    return NGX_DONE;
}


/* GET /view?filename=&subfolder=&type= with the caller's Range */

static ngx_int_t
ngx_http_flowscale_output_create_request(ngx_http_request_t *r)
{
    size_t                            len;
    ngx_buf_t                        *b;
    ngx_chain_t                      *cl;
    ngx_table_elt_t                  *range;
    ngx_http_upstream_t              *u;
    ngx_http_flowscale_output_ctx_t  *ctx;

    u = r->upstream;
    ctx = ngx_http_get_module_ctx(r, ngx_http_flowscale_module);
    range = r->headers_in.range;

#define ngx_http_flowscale_escaped(s)                                        \
    ((s).len + 2 * ngx_escape_uri(NULL, (s).data, (s).len,                   \
                                  NGX_ESCAPE_URI_COMPONENT))

    len = sizeof("GET /view?filename=&subfolder=&type= HTTP/1.0" CRLF) - 1
          + ngx_http_flowscale_escaped(ctx->filename)
          + ngx_http_flowscale_escaped(ctx->subfolder)
          + ngx_http_flowscale_escaped(ctx->type)
          + sizeof("Host: " CRLF) - 1 + u->resolved->name.len
          + sizeof("Connection: close" CRLF CRLF) - 1;

#undef ngx_http_flowscale_escaped

    if (range) {
        len += sizeof("Range: " CRLF) - 1 + range->value.len;
    }

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->last = ngx_cpymem(b->last, "GET /view?filename=",
                         sizeof("GET /view?filename=") - 1);
    b->last = (u_char *) ngx_escape_uri(b->last, ctx->filename.data,
                                        ctx->filename.len,
                                        NGX_ESCAPE_URI_COMPONENT);
    b->last = ngx_cpymem(b->last, "&subfolder=", sizeof("&subfolder=") - 1);
    b->last = (u_char *) ngx_escape_uri(b->last, ctx->subfolder.data,
                                        ctx->subfolder.len,
                                        NGX_ESCAPE_URI_COMPONENT);
    b->last = ngx_cpymem(b->last, "&type=", sizeof("&type=") - 1);
    b->last = (u_char *) ngx_escape_uri(b->last, ctx->type.data,
                                        ctx->type.len,
                                        NGX_ESCAPE_URI_COMPONENT);
    b->last = ngx_sprintf(b->last, " HTTP/1.0" CRLF "Host: %V" CRLF,
                          &u->resolved->name);

    if (range) {
        b->last = ngx_sprintf(b->last, "Range: %V" CRLF, &range->value);
    }

    b->last = ngx_cpymem(b->last, "Connection: close" CRLF CRLF,
                         sizeof("Connection: close" CRLF CRLF) - 1);

    cl = ngx_alloc_chain_link(r->pool);
    if (cl == NULL) {
        return NGX_ERROR;
    }

    cl->buf = b;
    cl->next = NULL;

    u->request_bufs = cl;

    return NGX_OK;
}


static ngx_int_t
ngx_http_flowscale_output_reinit_request(ngx_http_request_t *r)
{
    ngx_http_flowscale_output_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_flowscale_module);

    ngx_memzero(&ctx->status, sizeof(ngx_http_status_t));
    ctx->status_done = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_flowscale_output_process_header(ngx_http_request_t *r)
{
    ngx_int_t                         rc;
    ngx_str_t                         key, value;
    ngx_http_upstream_t              *u;
    ngx_http_flowscale_output_ctx_t  *ctx;

    u = r->upstream;
    ctx = ngx_http_get_module_ctx(r, ngx_http_flowscale_module);

    if (!ctx->status_done) {
        rc = ngx_http_parse_status_line(r, &u->buffer, &ctx->status);

        if (rc == NGX_AGAIN) {
            return NGX_AGAIN;
        }

        if (rc == NGX_ERROR) {
            return NGX_HTTP_UPSTREAM_INVALID_HEADER;
        }

        ctx->status_done = 1;
        u->headers_in.status_n = ctx->status.code;
        u->state->status = ctx->status.code;
    }

    for ( ;; ) {

        rc = ngx_http_parse_header_line(r, &u->buffer, 1);

        if (rc == NGX_OK) {
            key.data = r->header_name_start;
            key.len = r->header_name_end - r->header_name_start;
            value.data = r->header_start;
            value.len = r->header_end - r->header_start;

            if (ngx_http_flowscale_output_header(r, &key, &value) != NGX_OK) {
                return NGX_ERROR;
            }

            continue;
        }

        if (rc == NGX_HTTP_PARSE_HEADER_DONE) {
            break;
        }

        if (rc == NGX_AGAIN) {
            return NGX_AGAIN;
        }

        return NGX_HTTP_UPSTREAM_INVALID_HEADER;
    }

    /* the type recorded with the run, not the backend's guess */
    r->headers_out.content_type = ctx->content_type;
    r->headers_out.content_type_len = ctx->content_type.len;

    return NGX_OK;
}


static ngx_int_t
ngx_http_flowscale_output_header(ngx_http_request_t *r, ngx_str_t *key,
    ngx_str_t *value)
{
    ngx_str_t        *name;
    ngx_table_elt_t  *h;

    if (key->len == sizeof("Content-Length") - 1
        && ngx_strncasecmp(key->data, (u_char *) "Content-Length",
                           key->len) == 0)
    {
        r->upstream->headers_in.content_length_n = ngx_atoof(value->data,
                                                             value->len);
        return NGX_OK;
    }

    for (name = ngx_http_flowscale_passed_headers; name->len; name++) {
        if (name->len == key->len
            && ngx_strncasecmp(name->data, key->data, key->len) == 0)
        {
            break;
        }
    }

    if (name->len == 0) {
        return NGX_OK;
    }

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key = *name;
    h->value.data = ngx_pstrdup(r->pool, value);
    h->value.len = value->len;

    return h->value.data ? NGX_OK : NGX_ERROR;
}


static void
ngx_http_flowscale_output_abort_request(ngx_http_request_t *r)
{
    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "flowscale: abort output request");
}


static void
ngx_http_flowscale_output_finalize_request(ngx_http_request_t *r,
    ngx_int_t rc)
{
    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "flowscale: finalize output request %i", rc);
}


static ngx_int_t
ngx_http_flowscale_pool_str(ngx_pool_t *pool, ngx_str_t *s, json_t *v,
    const char *dflt)
{
    const char  *p;

    p = json_is_string(v) ? json_string_value(v) : dflt;

    if (p == NULL) {
        return NGX_ERROR;
    }

    s->len = ngx_strlen(p);
    s->data = ngx_pnalloc(pool, s->len + 1);

    if (s->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(s->data, p, s->len + 1);

    return NGX_OK;
}


/*
 * The upstream settings of output streaming, the same for every
 * deployment: no retries on another backend (only one has the file).
 */

ngx_int_t
ngx_http_flowscale_output_conf(ngx_conf_t *cf,
    ngx_http_upstream_conf_t *conf)
{
    ngx_hash_init_t   hash;

    static ngx_str_t  hide[] = { ngx_null_string };

    ngx_memzero(conf, sizeof(ngx_http_upstream_conf_t));

    conf->connect_timeout = 10000;
    conf->send_timeout = 60000;
    conf->read_timeout = 60000;
    conf->next_upstream_timeout = 0;
    conf->next_upstream_tries = 1;
    conf->buffer_size = ngx_pagesize * 4;
    conf->buffering = 0;
    conf->request_buffering = 1;
    conf->intercept_errors = 1;
    conf->intercept_404 = 1;
    conf->pass_request_headers = 0;
    conf->pass_request_body = 0;
    conf->local = NULL;
    conf->socket_keepalive = 0;
    conf->next_upstream = NGX_HTTP_UPSTREAM_FT_OFF;

    /* nothing is hidden: only chosen headers reach the caller anyway */
    conf->hide_headers = NGX_CONF_UNSET_PTR;
    conf->pass_headers = NGX_CONF_UNSET_PTR;

    hash.max_size = 64;
    hash.bucket_size = ngx_align(64, ngx_cacheline_size);
    hash.name = "flowscale_output_hide_headers_hash";

    return ngx_http_upstream_hide_headers_hash(cf, conf, conf, hide, &hash)
           == NGX_OK ? NGX_OK : NGX_ERROR;
}
