
/*
 * FlowScale for nginx: the shareable app of a deployment at L/app/
 * (design.md section 7).  `flowscale_app public|on|off`.
 *
 * The page (ui/app.html, app.js, app.css) is compiled into the module
 * (ngx_http_flowscale_ui.h, made from ui/ by ui/embed.sh at configure and
 * build time), so a deployment needs no other file.  It builds its form
 * from L/app/app.json.  With `public` it runs the workflow through
 * L/app/runs..., the very code of POST L, L/runs/ID/events and the
 * outputs, with no key, so its runs count against the same queue bounds;
 * it can only see runs made without a key.  With `on` it asks for a key
 * once and calls the API of L itself with it.  The rest of L/app/ (config,
 * gradio_api/...) is Gradio's protocol: ngx_http_flowscale_gradio.c.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_flowscale_module.h"
#include "ngx_http_flowscale_io.h"
#include "ngx_http_flowscale_ui.h"


ngx_int_t ngx_http_flowscale_gradio_zone(ngx_conf_t *cf);
const char *ngx_http_flowscale_gradio_output_kind(fs_deployment_t *d,
    fs_output_t *out);


static ngx_int_t ngx_http_flowscale_app_static(ngx_http_request_t *r,
    const char *type, u_char *data, size_t len);
static ngx_int_t ngx_http_flowscale_app_json(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf);
static ngx_int_t ngx_http_flowscale_app_runs(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf, ngx_str_t *rest);
static ngx_int_t ngx_http_flowscale_app_redirect(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf);


static ngx_conf_enum_t  ngx_http_flowscale_app_modes[] = {
    { ngx_string("off"), NGX_HTTP_FLOWSCALE_APP_OFF },
    { ngx_string("on"), NGX_HTTP_FLOWSCALE_APP_ON },
    { ngx_string("public"), NGX_HTTP_FLOWSCALE_APP_PUBLIC },
    { ngx_null_string, 0 }
};


char *
ngx_http_flowscale_app_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_flowscale_loc_conf_t *flcf = conf;

    ngx_str_t   *value;
    ngx_uint_t   i;

    if (flcf->app != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    for (i = 0; ngx_http_flowscale_app_modes[i].name.len; i++) {
        if (value[1].len == ngx_http_flowscale_app_modes[i].name.len
            && ngx_strcmp(value[1].data,
                          ngx_http_flowscale_app_modes[i].name.data) == 0)
        {
            flcf->app = ngx_http_flowscale_app_modes[i].value;

            if (flcf->app != NGX_HTTP_FLOWSCALE_APP_OFF
                && ngx_http_flowscale_gradio_zone(cf) != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            return NGX_CONF_OK;
        }
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid value \"%V\" in \"flowscale_app\": it is "
                       "\"public\" (a page anyone may use), \"on\" (the "
                       "page asks for an API key) or \"off\"", &value[1]);

    return NGX_CONF_ERROR;
}


/* rest: "/app" or "/app/..." */

static ngx_str_t  ngx_http_flowscale_app_any = ngx_string("*");


static ngx_int_t
ngx_http_flowscale_app_preflight(ngx_http_request_t *r)
{
    static ngx_str_t  methods = ngx_string("GET, HEAD, POST, OPTIONS");
    static ngx_str_t  headers = ngx_string(
        "Content-Type, Authorization, X-API-Key, x-gradio-user");
    static ngx_str_t  age = ngx_string("86400");

    if (ngx_http_flowscale_add_header(r, "Access-Control-Allow-Methods",
                                      &methods) != NGX_OK
        || ngx_http_flowscale_add_header(r, "Access-Control-Allow-Headers",
                                         &headers) != NGX_OK
        || ngx_http_flowscale_add_header(r, "Access-Control-Max-Age", &age)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->headers_out.status = NGX_HTTP_NO_CONTENT;
    r->headers_out.content_length_n = 0;
    r->header_only = 1;

    return ngx_http_send_header(r);
}


ngx_int_t
ngx_http_flowscale_app(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf, ngx_str_t *rest)
{
    ngx_int_t  rc;
    ngx_str_t  path;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "flowscale app: \"%V\" mode %ui", rest, flcf->app);

    if (flcf->app == NGX_HTTP_FLOWSCALE_APP_OFF
        || flcf->app == NGX_CONF_UNSET_UINT)
    {
        ngx_http_discard_request_body(r);
        return ngx_http_flowscale_problem(r, NGX_HTTP_NOT_FOUND, "not-found",
                   "Not Found", "This deployment has no app "
                   "(flowscale_app off).");
    }

    /*
     * Gradio's browser client may live on another origin: its preflights
     * are answered here, and every answer may be read cross-origin (keys
     * travel in headers, never in cookies).
     */
    if (ngx_http_flowscale_add_header(r, "Access-Control-Allow-Origin",
                                      &ngx_http_flowscale_app_any)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (r->method == NGX_HTTP_OPTIONS) {
        ngx_http_discard_request_body(r);
        return ngx_http_flowscale_app_preflight(r);
    }

    if (rest->len == sizeof("/app") - 1) {
        ngx_http_discard_request_body(r);
        return ngx_http_flowscale_app_redirect(r, flcf);
    }

    path.data = rest->data + sizeof("/app") - 1;
    path.len = rest->len - (sizeof("/app") - 1);

#define ngx_http_flowscale_app_is(s)                                          \
    (path.len == sizeof(s) - 1 && ngx_strncmp(path.data, s, path.len) == 0)

    if (ngx_http_flowscale_app_is("/")
        || ngx_http_flowscale_app_is("/index.html")
        || ngx_http_flowscale_app_is("/app.js")
        || ngx_http_flowscale_app_is("/app.css")
        || ngx_http_flowscale_app_is("/app.json"))
    {
        if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
            ngx_http_discard_request_body(r);
            return NGX_HTTP_NOT_ALLOWED;
        }

        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        if (ngx_http_flowscale_app_is("/app.js")) {
            return ngx_http_flowscale_app_static(r,
                       "text/javascript; charset=utf-8",
                       ngx_http_flowscale_ui_app_js,
                       sizeof(ngx_http_flowscale_ui_app_js));
        }

        if (ngx_http_flowscale_app_is("/app.css")) {
            return ngx_http_flowscale_app_static(r, "text/css; charset=utf-8",
                       ngx_http_flowscale_ui_app_css,
                       sizeof(ngx_http_flowscale_ui_app_css));
        }

        if (ngx_http_flowscale_app_is("/app.json")) {
            return ngx_http_flowscale_app_json(r, flcf);
        }

        return ngx_http_flowscale_app_static(r, "text/html; charset=utf-8",
                   ngx_http_flowscale_ui_app_html,
                   sizeof(ngx_http_flowscale_ui_app_html));
    }

    if (path.len >= sizeof("/runs") - 1
        && ngx_strncmp(path.data, "/runs", sizeof("/runs") - 1) == 0
        && (path.len == sizeof("/runs") - 1 || path.data[5] == '/'))
    {
        return ngx_http_flowscale_app_runs(r, flcf, &path);
    }

#undef ngx_http_flowscale_app_is

    rc = ngx_http_flowscale_gradio(r, flcf, &path);

    if (rc != NGX_DECLINED) {
        return rc;
    }

    ngx_http_discard_request_body(r);

    return ngx_http_flowscale_problem(r, NGX_HTTP_NOT_FOUND, "not-found",
               "Not Found", "No such resource under this app.");
}


static ngx_int_t
ngx_http_flowscale_app_redirect(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf)
{
    u_char           *p;
    size_t            len;
    ngx_table_elt_t  *h;

    len = flcf->location.len + sizeof("/app/") + 1 + r->args.len;

    p = ngx_pnalloc(r->pool, len);
    h = ngx_list_push(&r->headers_out.headers);

    if (p == NULL || h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Location");
    h->value.data = p;

    p = ngx_sprintf(p, "%V/app/", &flcf->location);

    if (r->args.len) {
        p = ngx_sprintf(p, "?%V", &r->args);
    }

    h->value.len = p - h->value.data;

    r->headers_out.location = h;

    return NGX_HTTP_MOVED_PERMANENTLY;
}


static ngx_int_t
ngx_http_flowscale_app_static(ngx_http_request_t *r, const char *type,
    u_char *data, size_t len)
{
    ngx_str_t  body, ct;

    static ngx_str_t  no_cache = ngx_string("no-cache");
    static ngx_str_t  nosniff = ngx_string("nosniff");

    if (ngx_http_flowscale_add_header(r, "Cache-Control", &no_cache) != NGX_OK
        || ngx_http_flowscale_add_header(r, "X-Content-Type-Options",
                                         &nosniff)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    body.data = data;
    body.len = len;
    ct.data = (u_char *) type;
    ct.len = ngx_strlen(type);

    return ngx_http_flowscale_send_json(r, NGX_HTTP_OK, &ct, &body);
}


/* what the page builds its form from */

static ngx_int_t
ngx_http_flowscale_app_json(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf)
{
    char              desc[256];
    size_t            i;
    json_t           *app, *inputs, *outputs, *in, *cur;
    ngx_str_t         ct;
    fs_input_t       *fi;
    fs_deployment_t  *d;

    d = flcf->deployment;

    inputs = json_array();
    outputs = json_array();

    for (i = 0; i < d->ninputs; i++) {
        fi = &d->inputs[i];

        cur = json_object_get(json_object_get(json_object_get(d->workflow,
                                                              fi->node),
                                              "inputs"),
                              fi->input);

        in = json_pack("{s:s, s:s, s:s, s:s?, s:O?, s:O?, s:O?, s:O?, s:b, "
                       "s:b}",
                       "name", fi->name,
                       "label", fi->label ? fi->label : fi->name,
                       "type", fs_type_name(fi->type),
                       "description", fi->description,
                       "default", fi->default_value,
                       "minimum", fi->minimum,
                       "maximum", fi->maximum,
                       "options", fi->options,
                       "required", fi->required,
                       "random", fi->random);

        if (in && cur && !json_is_array(cur) && !fs_type_is_file(fi->type)) {
            json_object_set(in, "value", cur);
        }

        json_array_append_new(inputs, in);
    }

    for (i = 0; i < d->noutputs; i++) {
        json_array_append_new(outputs, json_pack("{s:s, s:s, s:s}",
            "name", d->outputs[i].name,
            "label", d->outputs[i].label ? d->outputs[i].label
                                         : d->outputs[i].name,
            "kind", ngx_http_flowscale_gradio_output_kind(d,
                                                          &d->outputs[i])));
    }

    ngx_snprintf((u_char *) desc, sizeof(desc),
                 "Runs the %V workflow (version %s) on this server's GPUs.%Z",
                 &flcf->name, d->version);

    app = json_pack("{s:s, s:s%, s:s, s:s%, s:s%, s:s, s:o, s:o}",
                    "mode", flcf->app == NGX_HTTP_FLOWSCALE_APP_PUBLIC
                            ? "public" : "on",
                    "deployment", flcf->name.data, flcf->name.len,
                    "version", d->version,
                    "api", flcf->location.data, flcf->location.len,
                    "title", flcf->name.data, flcf->name.len,
                    "description", desc,
                    "inputs", inputs,
                    "outputs", outputs);

    ngx_str_set(&ct, "application/json");

    return ngx_http_flowscale_send_value(r, NGX_HTTP_OK, &ct, app, 0);
}


/*
 * public: POST L/app/runs, GET L/app/runs/ID, .../events,
 * .../outputs/NAME/N, through the code of the API, for runs made
 * without a key.  on: the page calls the API of L with its key.
 */

static ngx_int_t
ngx_http_flowscale_app_runs(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf, ngx_str_t *rest)
{
    u_char                         *p, *last;
    ngx_int_t                       rc;
    ngx_str_t                       id, sub;
    ngx_http_flowscale_zone_t      *z;
    ngx_http_flowscale_run_view_t   view;

    if (flcf->app != NGX_HTTP_FLOWSCALE_APP_PUBLIC) {
        ngx_http_discard_request_body(r);
        return ngx_http_flowscale_problem(r, NGX_HTTP_NOT_FOUND, "not-found",
                   "Not Found", "This app is not public: use the API of "
                   "the deployment with a key.");
    }

    if (rest->len <= sizeof("/runs/") - 1) {
        if (r->method != NGX_HTTP_POST) {
            ngx_http_discard_request_body(r);
            return NGX_HTTP_NOT_ALLOWED;
        }

        return ngx_http_flowscale_create(r, flcf);
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    p = ngx_http_flowscale_route_run_id(rest, &id);
    last = rest->data + rest->len;

    /* only runs without a key: the app's own, never an API caller's */
    z = ngx_http_flowscale_zone_get((ngx_cycle_t *) ngx_cycle);

    rc = ngx_http_flowscale_runs_view(z, id.data, id.len, r->pool, &view);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_OK && view.run.key_id[0] != '\0') {
        return ngx_http_flowscale_problem(r, NGX_HTTP_NOT_FOUND, "not-found",
                   "Run not found", "No run with this id in this app.");
    }

    if (rc == NGX_DECLINED) {
        return ngx_http_flowscale_problem(r, NGX_HTTP_NOT_FOUND, "not-found",
                   "Run not found", "This run is no longer live; the API "
                   "of the deployment has it.");
    }

    if (p == last || p + 1 == last) {
        return ngx_http_flowscale_send_run(r, flcf, &id, NGX_HTTP_OK);
    }

    if ((size_t) (last - p) == sizeof("/events") - 1
        && ngx_strncmp(p, "/events", sizeof("/events") - 1) == 0)
    {
        return ngx_http_flowscale_events(r, flcf, &id);
    }

    if ((size_t) (last - p) > sizeof("/outputs/") - 1
        && ngx_strncmp(p, "/outputs/", sizeof("/outputs/") - 1) == 0)
    {
        sub.data = p + sizeof("/outputs/") - 1;
        sub.len = last - sub.data;

        return ngx_http_flowscale_output(r, flcf, &id, &sub);
    }

    return ngx_http_flowscale_problem(r, NGX_HTTP_NOT_FOUND, "not-found",
               "Not Found", "No such resource under this run.");
}
