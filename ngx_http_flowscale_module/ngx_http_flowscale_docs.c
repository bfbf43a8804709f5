
/*
 * FlowScale for nginx: the API docs page (issue 8).
 *
 *     location /docs/ { flowscale_docs [url=URL] [assets=DIR]; }
 *
 * Swagger UI pointed at the server's document (its flowscale_openapi
 * location; without one, a list of its deployments' L/openapi.json), or at
 * url=.  Swagger UI's own files come from the swagger-ui-dist npm package,
 * a folder on this machine (assets=DIR, default "swagger-ui" beside
 * nginx.conf), served by this handler under the location: no CDN, works
 * offline.  "Try it out" calls the real API on the same origin; the key
 * entered under "Authorize" is kept by the browser (persistAuthorization).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_flowscale_module.h"
#include "ngx_http_flowscale_openapi.h"


#define NGX_HTTP_FLOWSCALE_DOCS_ASSETS  "swagger-ui"
#define NGX_HTTP_FLOWSCALE_DOCS_SCRIPT  "flowscale-docs.js"


typedef struct {
    ngx_str_t   name;
    ngx_str_t   type;
} ngx_http_flowscale_docs_file_t;


static ngx_int_t ngx_http_flowscale_docs_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_flowscale_docs_send_file(ngx_http_request_t *r,
    ngx_http_flowscale_openapi_conf_t *oc,
    ngx_http_flowscale_docs_file_t *f);
static ngx_int_t ngx_http_flowscale_docs_text(ngx_http_request_t *r,
    ngx_str_t *type, ngx_str_t *body);
static ngx_int_t ngx_http_flowscale_docs_copy(ngx_conf_t *cf,
    ngx_str_t *to, const char *text);


/* the files of swagger-ui-dist the page uses, and nothing else */
static ngx_http_flowscale_docs_file_t  ngx_http_flowscale_docs_files[] = {
    { ngx_string("swagger-ui.css"), ngx_string("text/css") },
    { ngx_string("swagger-ui-bundle.js"),
      ngx_string("application/javascript") },
    { ngx_string("swagger-ui-standalone-preset.js"),
      ngx_string("application/javascript") },
    { ngx_string("favicon-32x32.png"), ngx_string("image/png") },
    { ngx_string("favicon-16x16.png"), ngx_string("image/png") },
    { ngx_null_string, ngx_null_string }
};

static ngx_str_t  ngx_http_flowscale_docs_html =
    ngx_string("text/html; charset=utf-8");
static ngx_str_t  ngx_http_flowscale_docs_js =
    ngx_string("application/javascript; charset=utf-8");


char *
ngx_http_flowscale_docs_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_flowscale_loc_conf_t *flcf = conf;

    u_char                             *p;
    ngx_str_t                          *value, bundle;
    ngx_uint_t                          i;
    ngx_file_info_t                     fi;
    ngx_http_core_loc_conf_t           *clcf;
    ngx_http_flowscale_openapi_conf_t  *oc;

    if (flcf->openapi || flcf->name.data) {
        return "is duplicate, or in a location that already serves "
               "something else";
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->named || clcf->noname || clcf->exact_match
#if (NGX_PCRE)
        || clcf->regex
#endif
        )
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "flowscale_docs must be in a plain prefix "
                           "location such as \"location /docs/\": the page "
                           "serves Swagger UI's files under it");
        return NGX_CONF_ERROR;
    }

    oc = ngx_http_flowscale_openapi_register(cf, flcf,
                                             NGX_HTTP_FLOWSCALE_OA_DOCS);
    if (oc == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "url=", 4) == 0
            && value[i].len > 4)
        {
            oc->url.data = value[i].data + 4;
            oc->url.len = value[i].len - 4;
            continue;
        }

        if (ngx_strncmp(value[i].data, "assets=", 7) == 0
            && value[i].len > 7)
        {
            oc->assets.data = value[i].data + 7;
            oc->assets.len = value[i].len - 7;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "flowscale_docs: unknown parameter \"%V\"; use "
                           "url=URL (the OpenAPI document) or assets=DIR "
                           "(the swagger-ui-dist folder)", &value[i]);
        return NGX_CONF_ERROR;
    }

    if (oc->assets.data == NULL) {
        ngx_str_set(&oc->assets, NGX_HTTP_FLOWSCALE_DOCS_ASSETS);
    }

    /* relative to nginx's configuration folder, like workflows */
    if (ngx_conf_full_name(cf->cycle, &oc->assets, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    while (oc->assets.len > 1
           && oc->assets.data[oc->assets.len - 1] == '/')
    {
        oc->assets.len--;
    }

    bundle.len = oc->assets.len + sizeof("/swagger-ui-bundle.js") - 1;
    bundle.data = ngx_pnalloc(cf->pool, bundle.len + 1);
    if (bundle.data == NULL) {
        return NGX_CONF_ERROR;
    }

    p = ngx_cpymem(bundle.data, oc->assets.data, oc->assets.len);
    ngx_memcpy(p, "/swagger-ui-bundle.js", sizeof("/swagger-ui-bundle.js"));

    if (ngx_file_info(bundle.data, &fi) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "flowscale_docs: no Swagger UI in \"%V\" (%s "
                           "is missing); copy the files of the npm package "
                           "swagger-ui-dist there (\"npm install "
                           "swagger-ui-dist\" on any machine, or \"make "
                           "deps\": build/npm/node_modules/swagger-ui-dist)"
                           " or give their folder as assets=DIR",
                           &oc->assets, bundle.data);
        return NGX_CONF_ERROR;
    }

    /* the location's name without its last "/": the page's base */
    oc->prefix = clcf->name;

    while (oc->prefix.len > 1
           && oc->prefix.data[oc->prefix.len - 1] == '/')
    {
        oc->prefix.len--;
    }

    if (oc->prefix.len == 1) {
        oc->prefix.len = 0;
    }

    /* "/docs" redirects to "/docs/", as with proxy_pass */
    clcf->auto_redirect = 1;
    clcf->handler = ngx_http_flowscale_docs_handler;

    return NGX_CONF_OK;
}


/*
 * After every location is read: which document the page shows, then the
 * page and its script.
 */

ngx_int_t
ngx_http_flowscale_docs_init(ngx_conf_t *cf,
    ngx_http_flowscale_openapi_conf_t *oc, ngx_array_t *locations)
{
    char                                *text, *quoted;
    size_t                               len;
    json_t                              *config, *urls;
    ngx_uint_t                           i, n;
    ngx_http_flowscale_loc_conf_t      **flcfp;
    ngx_http_flowscale_main_conf_t      *fmcf;
    ngx_http_flowscale_openapi_conf_t   *other;

    config = json_pack("{s:b, s:b, s:b, s:b, s:s, s:i}",
                       "deepLinking", 1,
                       "persistAuthorization", 1,
                       "displayRequestDuration", 1,
                       "tryItOutEnabled", 0,
                       "docExpansion", "list",
                       "defaultModelsExpandDepth", 0);
    if (config == NULL) {
        return NGX_ERROR;
    }

    urls = NULL;

    if (oc->url.len == 0) {

        /* the server's own document */
        flcfp = locations->elts;

        for (i = 0; i < locations->nelts; i++) {
            other = flcfp[i]->openapi;

            if (other->kind == NGX_HTTP_FLOWSCALE_OA_SERVER
                && other->server == oc->server)
            {
                oc->url = other->clcf->name;
                break;
            }
        }
    }

    if (oc->url.len == 0) {

        /* no server document: each deployment's, in a list */
        fmcf = ngx_http_conf_get_module_main_conf(cf,
                                                  ngx_http_flowscale_module);
        flcfp = fmcf->deployments.elts;
        urls = json_array();
        n = 0;

        for (i = 0; i < fmcf->deployments.nelts; i++) {
            other = flcfp[i]->openapi;

            if (other == NULL || other->server != oc->server) {
                continue;
            }

            text = ngx_pnalloc(cf->temp_pool,
                               flcfp[i]->location.len
                               + sizeof("/openapi.json"));
            if (text == NULL) {
                json_decref(urls);
                json_decref(config);
                return NGX_ERROR;
            }

            ngx_sprintf((u_char *) text, "%V/openapi.json%Z",
                        &flcfp[i]->location);

            json_array_append_new(urls, json_pack("{s:s, s:s%}",
                                  "url", text,
                                  "name", flcfp[i]->name.data,
                                  flcfp[i]->name.len));
            n++;
        }

        if (n == 0) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "flowscale_docs: this server block has neither a "
                          "\"flowscale_openapi\" location nor a deployment; "
                          "add one, or give the document as url=URL in "
                          "%V:%ui", &oc->origin->file, oc->origin->line);
            json_decref(urls);
            json_decref(config);
            return NGX_ERROR;
        }

        if (n == 1) {
            json_object_set(config, "url",
                            json_object_get(json_array_get(urls, 0), "url"));
            json_decref(urls);
            urls = NULL;

        } else {
            json_object_set_new(config, "urls", urls);
        }

    } else {
        json_object_set_new(config, "url",
                            json_stringn((char *) oc->url.data, oc->url.len));
    }

    quoted = json_dumps(config, JSON_COMPACT);
    json_decref(config);

    if (quoted == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "flowscale_docs: url=\"%V\" is not valid UTF-8 in "
                      "%V:%ui", &oc->url, &oc->origin->file,
                      oc->origin->line);
        return NGX_ERROR;
    }

    /* the script: Swagger UI with the document and its options */
    len = ngx_strlen(quoted) + 1024;
    text = ngx_pnalloc(cf->temp_pool, len);
    if (text == NULL) {
        free(quoted);
        return NGX_ERROR;
    }

    ngx_snprintf((u_char *) text, len,
        "/* FlowScale API docs: Swagger UI, see flowscale_docs */\n"
        "window.ui = SwaggerUIBundle(Object.assign(%s, {\n"
        "  dom_id: \"#swagger-ui\",\n"
        "  presets: [SwaggerUIBundle.presets.apis, "
        "SwaggerUIStandalonePreset],\n"
        "  plugins: [SwaggerUIBundle.plugins.DownloadUrl],\n"
        "  layout: \"%s\"\n"
        "}));\n%Z",
        quoted, urls ? "StandaloneLayout" : "BaseLayout");

    free(quoted);

    if (ngx_http_flowscale_docs_copy(cf, &oc->script, text) != NGX_OK) {
        return NGX_ERROR;
    }

    /* the page: Swagger UI's files, from this location */
    len = 5 * oc->prefix.len + 1024;
    text = ngx_pnalloc(cf->temp_pool, len);
    if (text == NULL) {
        return NGX_ERROR;
    }

    ngx_snprintf((u_char *) text, len,
        "<!DOCTYPE html>\n"
        "<html lang=\"en\">\n"
        "<head>\n"
        "<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, "
        "initial-scale=1\">\n"
        "<title>API docs</title>\n"
        "<link rel=\"stylesheet\" href=\"%V/swagger-ui.css\">\n"
        "<link rel=\"icon\" type=\"image/png\" href=\"%V/favicon-32x32.png\""
        " sizes=\"32x32\">\n"
        "<style>body { margin: 0; }</style>\n"
        "</head>\n"
        "<body>\n"
        "<div id=\"swagger-ui\"></div>\n"
        "<script src=\"%V/swagger-ui-bundle.js\"></script>\n"
        "<script src=\"%V/swagger-ui-standalone-preset.js\"></script>\n"
        "<script src=\"%V/" NGX_HTTP_FLOWSCALE_DOCS_SCRIPT "\"></script>\n"
        "</body>\n"
        "</html>\n%Z",
        &oc->prefix, &oc->prefix, &oc->prefix, &oc->prefix, &oc->prefix);

    return ngx_http_flowscale_docs_copy(cf, &oc->page, text);
}


static ngx_int_t
ngx_http_flowscale_docs_copy(ngx_conf_t *cf, ngx_str_t *to, const char *text)
{
    to->len = ngx_strlen(text);
    to->data = ngx_pnalloc(cf->pool, to->len);

    if (to->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(to->data, text, to->len);

    return NGX_OK;
}


static ngx_int_t
ngx_http_flowscale_docs_handler(ngx_http_request_t *r)
{
    ngx_int_t                           rc;
    ngx_str_t                           rest;
    ngx_http_flowscale_docs_file_t     *f;
    ngx_http_flowscale_loc_conf_t      *flcf;
    ngx_http_flowscale_openapi_conf_t  *oc;

    flcf = ngx_http_get_module_loc_conf(r, ngx_http_flowscale_module);
    oc = flcf->openapi;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (oc == NULL || r->uri.len < oc->prefix.len) {
        return NGX_HTTP_NOT_FOUND;
    }

    rest.data = r->uri.data + oc->prefix.len;
    rest.len = r->uri.len - oc->prefix.len;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "flowscale: docs \"%V\"", &rest);

    if (rest.len == 0 || (rest.len == 1 && rest.data[0] == '/')
        || (rest.len == sizeof("/index.html") - 1
            && ngx_strncmp(rest.data, "/index.html", rest.len) == 0))
    {
        return ngx_http_flowscale_docs_text(r, &ngx_http_flowscale_docs_html,
                                            &oc->page);
    }

    if (rest.data[0] != '/') {
        return NGX_HTTP_NOT_FOUND;
    }

    rest.data++;
    rest.len--;

    if (rest.len == sizeof(NGX_HTTP_FLOWSCALE_DOCS_SCRIPT) - 1
        && ngx_strncmp(rest.data, NGX_HTTP_FLOWSCALE_DOCS_SCRIPT, rest.len)
           == 0)
    {
        return ngx_http_flowscale_docs_text(r, &ngx_http_flowscale_docs_js,
                                            &oc->script);
    }

    for (f = ngx_http_flowscale_docs_files; f->name.len; f++) {
        if (rest.len == f->name.len
            && ngx_strncmp(rest.data, f->name.data, rest.len) == 0)
        {
            return ngx_http_flowscale_docs_send_file(r, oc, f);
        }
    }

    return NGX_HTTP_NOT_FOUND;
}


static ngx_int_t
ngx_http_flowscale_docs_text(ngx_http_request_t *r, ngx_str_t *type,
    ngx_str_t *body)
{
    return ngx_http_flowscale_send_json(r, NGX_HTTP_OK, type, body);
}


/* one of Swagger UI's files, the way nginx's static module sends files */

static ngx_int_t
ngx_http_flowscale_docs_send_file(ngx_http_request_t *r,
    ngx_http_flowscale_openapi_conf_t *oc, ngx_http_flowscale_docs_file_t *f)
{
    u_char                    *p;
    ngx_int_t                  rc;
    ngx_str_t                  path;
    ngx_buf_t                 *b;
    ngx_chain_t                out;
    ngx_open_file_info_t       of;
    ngx_http_core_loc_conf_t  *clcf;

    path.len = oc->assets.len + 1 + f->name.len;
    path.data = ngx_pnalloc(r->pool, path.len + 1);
    if (path.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(path.data, oc->assets.data, oc->assets.len);
    *p++ = '/';
    p = ngx_cpymem(p, f->name.data, f->name.len);
    *p = '\0';

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    ngx_memzero(&of, sizeof(ngx_open_file_info_t));

    of.read_ahead = clcf->read_ahead;
    of.directio = clcf->directio;
    of.valid = clcf->open_file_cache_valid;
    of.min_uses = clcf->open_file_cache_min_uses;
    of.errors = clcf->open_file_cache_errors;
    of.events = clcf->open_file_cache_events;

    if (ngx_open_cached_file(clcf->open_file_cache, &path, &of, r->pool)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, of.err,
                      "flowscale_docs: %s \"%V\" failed", of.failed,
                      &path);
        return NGX_HTTP_NOT_FOUND;
    }

    if (!of.is_file) {
        return NGX_HTTP_NOT_FOUND;
    }

    r->root_tested = !r->error_page;
    r->allow_ranges = 1;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = of.size;
    r->headers_out.last_modified_time = of.mtime;
    r->headers_out.content_type = f->type;
    r->headers_out.content_type_len = f->type.len;

    if (ngx_http_set_etag(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->file = ngx_pcalloc(r->pool, sizeof(ngx_file_t));
    if (b->file == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b->file_pos = 0;
    b->file_last = of.size;

    b->in_file = b->file_last ? 1 : 0;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;
    b->sync = (b->last_buf || b->in_file) ? 0 : 1;

    b->file->fd = of.fd;
    b->file->name = path;
    b->file->log = r->connection->log;
    b->file->directio = of.is_directio;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}
