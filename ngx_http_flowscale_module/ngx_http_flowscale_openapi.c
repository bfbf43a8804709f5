
/*
 * FlowScale for nginx: the OpenAPI 3.1 documents (issue 8, design.md
 * sections 4 and 5).
 *
 * GET L/openapi.json is the document of one deployment; flowscale_openapi
 * in a location serves one document for every deployment of its server
 * block.  Both are rendered once, when the configuration is loaded
 * (ngx_http_flowscale_openapi_doc.c builds them), and kept as the text
 * before and after "servers", which is filled per request from the
 * request's own scheme and host.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_flowscale_module.h"
#include "ngx_http_flowscale_openapi.h"
#include "ngx_http_flowscale_openapi_doc.h"


#define NGX_HTTP_FLOWSCALE_OA_MARK  "\"\\u0002\""


static ngx_int_t ngx_http_flowscale_openapi_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_flowscale_openapi_write(ngx_http_request_t *r,
    ngx_http_flowscale_openapi_conf_t *oc);
static ngx_int_t ngx_http_flowscale_openapi_loc(ngx_conf_t *cf,
    ngx_http_flowscale_loc_conf_t *flcf, fs_openapi_loc_t *loc);
static ngx_int_t ngx_http_flowscale_openapi_render(ngx_conf_t *cf,
    ngx_http_flowscale_openapi_conf_t *oc, fs_openapi_loc_t *locs,
    size_t n);
static ngx_int_t ngx_http_flowscale_openapi_server_doc(ngx_conf_t *cf,
    ngx_http_flowscale_openapi_conf_t *oc, ngx_array_t *deployments);


static ngx_str_t  ngx_http_flowscale_openapi_type =
    ngx_string("application/json");


/* a location that serves a document or the docs page */

ngx_http_flowscale_openapi_conf_t *
ngx_http_flowscale_openapi_register(ngx_conf_t *cf,
    ngx_http_flowscale_loc_conf_t *flcf, ngx_uint_t kind)
{
    ngx_http_conf_ctx_t                 *ctx;
    ngx_http_flowscale_loc_conf_t      **p;
    ngx_http_flowscale_main_conf_t      *fmcf;
    ngx_http_flowscale_openapi_conf_t   *oc;

    oc = ngx_pcalloc(cf->pool, sizeof(ngx_http_flowscale_openapi_conf_t));
    if (oc == NULL) {
        return NULL;
    }

    /*
     * while a location is read or merged, cf->ctx->srv_conf is its
     * server's: documents gather the deployments of the same server{}
     */
    ctx = cf->ctx;

    oc->kind = kind;
    oc->server = ctx->srv_conf;
    oc->clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    flcf->openapi = oc;

    if (kind == NGX_HTTP_FLOWSCALE_OA_DEPLOYMENT) {
        return oc;
    }

    oc->origin = ngx_http_flowscale_origin(cf);
    if (oc->origin == NULL) {
        return NULL;
    }

    fmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_flowscale_module);

    if (fmcf->openapi == NULL) {
        fmcf->openapi = ngx_array_create(cf->pool, 2,
                                      sizeof(ngx_http_flowscale_loc_conf_t *));
        if (fmcf->openapi == NULL) {
            return NULL;
        }
    }

    p = ngx_array_push(fmcf->openapi);
    if (p == NULL) {
        return NULL;
    }

    *p = flcf;

    return oc;
}


/* flowscale_openapi: every deployment of this server block */

char *
ngx_http_flowscale_openapi_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_flowscale_loc_conf_t *flcf = conf;

    ngx_http_core_loc_conf_t  *clcf;

    if (flcf->openapi || flcf->name.data) {
        return "is duplicate, or in a location that already serves "
               "something else (a deployment has its own L/openapi.json)";
    }

    if (ngx_http_flowscale_openapi_register(cf, flcf,
                                            NGX_HTTP_FLOWSCALE_OA_SERVER)
        == NULL)
    {
        return NGX_CONF_ERROR;
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_flowscale_openapi_handler;

    return NGX_CONF_OK;
}


/* a deployment's own document, when its location is merged */

ngx_int_t
ngx_http_flowscale_openapi_deployment(ngx_conf_t *cf,
    ngx_http_flowscale_loc_conf_t *flcf)
{
    fs_openapi_loc_t                    loc;
    ngx_http_flowscale_openapi_conf_t  *oc;

    oc = ngx_http_flowscale_openapi_register(cf, flcf,
                                             NGX_HTTP_FLOWSCALE_OA_DEPLOYMENT);

    if (oc == NULL
        || ngx_http_flowscale_openapi_loc(cf, flcf, &loc) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_flowscale_openapi_render(cf, oc, &loc, 1);
}


/*
 * After every location is merged: the documents of flowscale_openapi
 * locations, and the docs pages, which point at them.
 */

ngx_int_t
ngx_http_flowscale_openapi_init(ngx_conf_t *cf)
{
    ngx_uint_t                           i;
    ngx_http_flowscale_loc_conf_t      **flcfp;
    ngx_http_flowscale_main_conf_t      *fmcf;
    ngx_http_flowscale_openapi_conf_t   *oc;

    fmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_flowscale_module);

    if (fmcf->openapi == NULL) {
        return NGX_OK;
    }

    flcfp = fmcf->openapi->elts;

    for (i = 0; i < fmcf->openapi->nelts; i++) {
        oc = flcfp[i]->openapi;

        if (oc->kind == NGX_HTTP_FLOWSCALE_OA_SERVER
            && ngx_http_flowscale_openapi_server_doc(cf, oc,
                                                     &fmcf->deployments)
               != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    for (i = 0; i < fmcf->openapi->nelts; i++) {
        oc = flcfp[i]->openapi;

        if (oc->kind == NGX_HTTP_FLOWSCALE_OA_DOCS
            && ngx_http_flowscale_docs_init(cf, oc, fmcf->openapi) != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_flowscale_openapi_server_doc(ngx_conf_t *cf,
    ngx_http_flowscale_openapi_conf_t *oc, ngx_array_t *deployments)
{
    size_t                               n;
    ngx_uint_t                           i;
    fs_openapi_loc_t                    *locs;
    ngx_http_flowscale_loc_conf_t      **d;
    ngx_http_flowscale_openapi_conf_t   *doc;

    d = deployments->elts;

    locs = ngx_pcalloc(cf->temp_pool,
                       (deployments->nelts + 1) * sizeof(fs_openapi_loc_t));
    if (locs == NULL) {
        return NGX_ERROR;
    }

    n = 0;

    for (i = 0; i < deployments->nelts; i++) {
        doc = d[i]->openapi;

        if (doc == NULL || doc->server != oc->server) {
            continue;
        }

        if (ngx_http_flowscale_openapi_loc(cf, d[i], &locs[n]) != NGX_OK) {
            return NGX_ERROR;
        }

        n++;
    }

    if (n == 0) {
        ngx_log_error(NGX_LOG_WARN, cf->log, 0,
                      "flowscale_openapi: this server block has no "
                      "deployment, so the document has no path in %V:%ui",
                      &oc->origin->file, oc->origin->line);
    }

    return ngx_http_flowscale_openapi_render(cf, oc, locs, n);
}


static ngx_int_t
ngx_http_flowscale_openapi_loc(ngx_conf_t *cf,
    ngx_http_flowscale_loc_conf_t *flcf, fs_openapi_loc_t *loc)
{
    char       *name, *location, *base;
    ngx_str_t  *b;

    b = &flcf->clcf->name;

    /* "location /v1/x/" answers GET and POST at /v1/x/ */
    if (!(b->len > 1 && b->data[b->len - 1] == '/')) {
        b = &flcf->location;
    }

    name = ngx_pnalloc(cf->pool, flcf->name.len + 1);
    location = ngx_pnalloc(cf->pool, flcf->location.len + 1);
    base = ngx_pnalloc(cf->pool, b->len + 1);

    if (name == NULL || location == NULL || base == NULL) {
        return NGX_ERROR;
    }

    ngx_cpystrn((u_char *) name, flcf->name.data, flcf->name.len + 1);
    ngx_cpystrn((u_char *) location, flcf->location.data,
                flcf->location.len + 1);
    ngx_cpystrn((u_char *) base, b->data, b->len + 1);

    loc->deployment = flcf->deployment;
    loc->name = name;
    loc->location = location;
    loc->base = base;
    loc->api_key = flcf->api_key ? 1 : 0;

    return NGX_OK;
}


/* the document as text, split where the per-request "servers" goes */

static ngx_int_t
ngx_http_flowscale_openapi_render(ngx_conf_t *cf,
    ngx_http_flowscale_openapi_conf_t *oc, fs_openapi_loc_t *locs,
    size_t n)
{
    char    *text, *mark;
    json_t  *doc;
    size_t   len;

    doc = fs_openapi_document(locs, n, json_string("\x02"));
    text = doc ? json_dumps(doc, JSON_INDENT(2)) : NULL;
    json_decref(doc);

    mark = text ? ngx_strstr(text, NGX_HTTP_FLOWSCALE_OA_MARK) : NULL;

    if (mark == NULL) {
        free(text);
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "flowscale: the OpenAPI document could not be built "
                      "(out of memory)");
        return NGX_ERROR;
    }

    len = ngx_strlen(text);

    oc->head.len = mark - text;
    oc->head.data = ngx_pnalloc(cf->pool, len + 1);

    if (oc->head.data == NULL) {
        free(text);
        return NGX_ERROR;
    }

    /* one allocation: head, then tail with a final newline */
    ngx_memcpy(oc->head.data, text, oc->head.len);

    oc->tail.data = oc->head.data + oc->head.len;
    oc->tail.len = len - oc->head.len - (sizeof(NGX_HTTP_FLOWSCALE_OA_MARK)
                                         - 1);
    ngx_memcpy(oc->tail.data, mark + sizeof(NGX_HTTP_FLOWSCALE_OA_MARK) - 1,
               oc->tail.len);
    oc->tail.data[oc->tail.len++] = '\n';

    free(text);

    return NGX_OK;
}


static ngx_int_t
ngx_http_flowscale_openapi_handler(ngx_http_request_t *r)
{
    ngx_http_flowscale_loc_conf_t  *flcf;

    flcf = ngx_http_get_module_loc_conf(r, ngx_http_flowscale_module);

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "flowscale: server OpenAPI document");

    return ngx_http_flowscale_openapi_send(r, flcf);
}


/* GET L/openapi.json, and flowscale_openapi locations */

ngx_int_t
ngx_http_flowscale_openapi_send(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf)
{
    ngx_int_t  rc;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (flcf->openapi == NULL) {
        return NGX_HTTP_NOT_FOUND;
    }

    return ngx_http_flowscale_openapi_write(r, flcf->openapi);
}


static ngx_int_t
ngx_http_flowscale_openapi_write(ngx_http_request_t *r,
    ngx_http_flowscale_openapi_conf_t *oc)
{
    char             *servers;
    json_t           *v;
    ngx_int_t         rc;
    ngx_buf_t        *b[3];
    ngx_str_t         host, url;
    ngx_uint_t        i, https;
    ngx_chain_t       out[3];
    ngx_table_elt_t  *h;

    /* the scheme and host the caller used, so "Try it out" reaches us */
    https = 0;

#if (NGX_HTTP_SSL)
    https = r->connection->ssl ? 1 : 0;
#endif

    h = ngx_http_flowscale_header_in(r, "X-Forwarded-Proto");

    if (h && h->value.len == 5
        && ngx_strncasecmp(h->value.data, (u_char *) "https", 5) == 0)
    {
        https = 1;
    }

    ngx_str_null(&host);

    if (r->headers_in.host) {
        host = r->headers_in.host->value;
    }

    servers = NULL;

    if (host.len) {
        url.len = sizeof("https://") - 1 + host.len;
        url.data = ngx_pnalloc(r->pool, url.len);
        if (url.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        url.len = ngx_sprintf(url.data, "%s://%V", https ? "https" : "http",
                              &host) - url.data;

        /* NULL when the host is not UTF-8: then the relative "/" */
        v = json_pack("[{s:s%}]", "url", (char *) url.data, url.len);
        servers = v ? json_dumps(v, JSON_COMPACT) : NULL;
        json_decref(v);
    }

    url.len = servers ? ngx_strlen(servers) : sizeof("[{\"url\":\"/\"}]") - 1;
    url.data = ngx_pnalloc(r->pool, url.len);

    if (url.data == NULL) {
        free(servers);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(url.data, servers ? servers : "[{\"url\":\"/\"}]", url.len);
    free(servers);

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_type = ngx_http_flowscale_openapi_type;
    r->headers_out.content_type_len = ngx_http_flowscale_openapi_type.len;
    r->headers_out.content_length_n = oc->head.len + url.len + oc->tail.len;

    if (r->method == NGX_HTTP_HEAD) {
        r->header_only = 1;
        return ngx_http_send_header(r);
    }

    for (i = 0; i < 3; i++) {
        b[i] = ngx_calloc_buf(r->pool);
        if (b[i] == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        b[i]->memory = 1;
        out[i].buf = b[i];
        out[i].next = i < 2 ? &out[i + 1] : NULL;
    }

    b[0]->pos = oc->head.data;
    b[0]->last = oc->head.data + oc->head.len;
    b[1]->pos = url.data;
    b[1]->last = url.data + url.len;
    b[2]->pos = oc->tail.data;
    b[2]->last = oc->tail.data + oc->tail.len;
    b[2]->last_buf = (r == r->main) ? 1 : 0;
    b[2]->last_in_chain = 1;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    return ngx_http_output_filter(r, out);
}


