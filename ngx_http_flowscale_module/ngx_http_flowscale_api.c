
/*
 * FlowScale for nginx: the HTTP API of a deployment at location L
 * (design.md section 5).  This file routes L's URIs; each route's work
 * lives in the file of its concern.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_flowscale_module.h"
#include "ngx_http_flowscale_dispatch.h"


static ngx_int_t ngx_http_flowscale_describe(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf);
static ngx_int_t ngx_http_flowscale_not_allowed(ngx_http_request_t *r,
    const char *allow);
static ngx_int_t ngx_http_flowscale_error_status(ngx_http_request_t *r);
static ngx_int_t ngx_http_flowscale_run_routes(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf, ngx_str_t *rest);


static ngx_str_t  ngx_http_flowscale_json_type =
    ngx_string("application/json");


/* the pre-rendered descriptor with the deployment's state of the moment */

static ngx_int_t
ngx_http_flowscale_send_descriptor(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf)
{
    u_char                      *p, reason[160];
    json_t                      *why;
    size_t                       len;
    char                        *quoted;
    ngx_str_t                    body;
    const char                  *state;
    ngx_http_flowscale_state_e   st;

    reason[0] = '\0';
    st = ngx_http_flowscale_deployment_state(flcf, reason, sizeof(reason));
    state = ngx_http_flowscale_state_name(st);

    quoted = NULL;

    if (st == NGX_HTTP_FLOWSCALE_FAILED_STATE) {
        why = json_string((char *) reason);
        quoted = why ? json_dumps(why, JSON_ENCODE_ANY) : NULL;
        json_decref(why);
    }

    len = flcf->descriptor.len + sizeof("\"\",\n  \"reason\": ") - 1
          + ngx_strlen(state) + (quoted ? ngx_strlen(quoted) : 0)
          + flcf->descriptor_tail.len;

    body.data = ngx_pnalloc(r->pool, len);
    if (body.data == NULL) {
        free(quoted);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(body.data, flcf->descriptor.data, flcf->descriptor.len);
    p = ngx_sprintf(p, "\"%s\"", state);

    if (quoted) {
        p = ngx_sprintf(p, ",\n  \"reason\": %s", quoted);
        free(quoted);
    }

    p = ngx_cpymem(p, flcf->descriptor_tail.data, flcf->descriptor_tail.len);
    body.len = p - body.data;

    return ngx_http_flowscale_send_json(r, NGX_HTTP_OK,
                                        &ngx_http_flowscale_json_type, &body);
}


ngx_int_t
ngx_http_flowscale_handler(ngx_http_request_t *r)
{
    ngx_str_t                       rest;
    ngx_http_flowscale_loc_conf_t  *flcf;

    flcf = ngx_http_get_module_loc_conf(r, ngx_http_flowscale_module);

    if (r->err_status) {
        /* nginx's own error inside L, sent here by error_page */
        return ngx_http_flowscale_error_status(r);
    }

    if (r->uri.len < flcf->location.len) {
        /* "location /v1/x/" asked as "/v1/x" cannot reach here */
        return NGX_HTTP_NOT_FOUND;
    }

    rest.data = r->uri.data + flcf->location.len;
    rest.len = r->uri.len - flcf->location.len;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "flowscale: deployment \"%V\" %V \"%V\"",
                   &flcf->name, &r->method_name, &rest);

    /* issue 9: the app; L/app redirects to L/app/ */
    if (rest.len >= sizeof("/app") - 1
        && ngx_strncmp(rest.data, "/app", sizeof("/app") - 1) == 0
        && (rest.len == sizeof("/app") - 1 || rest.data[4] == '/'))
    {
        return ngx_http_flowscale_app(r, flcf, &rest);
    }

    /* issue 8: the deployment's OpenAPI document, needs no key */
    if (rest.len == sizeof("/openapi.json") - 1
        && ngx_strncmp(rest.data, "/openapi.json", rest.len) == 0)
    {
        if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
            return ngx_http_flowscale_not_allowed(r, "GET, HEAD");
        }

        return ngx_http_flowscale_openapi_send(r, flcf);
    }

    if (rest.len == 0 || (rest.len == 1 && rest.data[0] == '/')) {

        if (r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)) {
            return ngx_http_flowscale_describe(r, flcf);
        }

        if (r->method == NGX_HTTP_POST) {
            return ngx_http_flowscale_create(r, flcf);
        }

        return ngx_http_flowscale_not_allowed(r, "GET, HEAD, POST");
    }

    if ((rest.len == sizeof("/runs") - 1 || rest.len == sizeof("/runs/") - 1)
        && ngx_strncmp(rest.data, "/runs", sizeof("/runs") - 1) == 0)
    {
        if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
            return ngx_http_flowscale_not_allowed(r, "GET, HEAD");
        }

        ngx_http_discard_request_body(r);

        return ngx_http_flowscale_list(r, flcf);
    }

    if (rest.len > sizeof("/runs/") - 1
        && ngx_strncmp(rest.data, "/runs/", sizeof("/runs/") - 1) == 0)
    {
        return ngx_http_flowscale_run_routes(r, flcf, &rest);
    }

    ngx_http_discard_request_body(r);

    return ngx_http_flowscale_problem(r, NGX_HTTP_NOT_FOUND, "not-found",
               "Not Found", "No such resource under this deployment.");
}


/* L/runs/ID, L/runs/ID/outputs/NAME/N */

static ngx_int_t
ngx_http_flowscale_run_routes(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf, ngx_str_t *rest)
{
    u_char     *p, *last;
    ngx_int_t   rc;
    ngx_str_t   id;

    p = ngx_http_flowscale_route_run_id(rest, &id);
    last = rest->data + rest->len;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (p == last || (p + 1 == last)) {
        if (r->method == NGX_HTTP_DELETE) {
            return ngx_http_flowscale_cancel(r, flcf, &id);
        }

        if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
            return ngx_http_flowscale_not_allowed(r, "GET, HEAD, DELETE");
        }

        return ngx_http_flowscale_send_run(r, flcf, &id, NGX_HTTP_OK);
    }

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return ngx_http_flowscale_not_allowed(r, "GET, HEAD");
    }

    if ((size_t) (last - p) == sizeof("/events") - 1
        && ngx_strncmp(p, "/events", sizeof("/events") - 1) == 0)
    {
        return ngx_http_flowscale_events(r, flcf, &id);
    }

    if ((size_t) (last - p) > sizeof("/outputs/") - 1
        && ngx_strncmp(p, "/outputs/", sizeof("/outputs/") - 1) == 0)
    {
        rest->data = p + sizeof("/outputs/") - 1;
        rest->len = last - rest->data;

        return ngx_http_flowscale_output(r, flcf, &id, rest);
    }

    return ngx_http_flowscale_problem(r, NGX_HTTP_NOT_FOUND, "not-found",
               "Not Found", "No such resource under this run.");
}


static ngx_int_t
ngx_http_flowscale_error_status(ngx_http_request_t *r)
{
    ngx_uint_t  status;

    status = r->err_status;
    r->err_status = 0;

    switch (status) {

    case NGX_HTTP_REQUEST_ENTITY_TOO_LARGE:
        return ngx_http_flowscale_problem(r, status, "too-large",
                   "Payload Too Large",
                   "The body is larger than this deployment accepts "
                   "(client_max_body_size).");

    case NGX_HTTP_NOT_FOUND:
        return ngx_http_flowscale_problem(r, status, "not-found",
                   "Not Found", "The backend no longer has this file.");

    case NGX_HTTP_BAD_GATEWAY:
    case NGX_HTTP_GATEWAY_TIME_OUT:
        return ngx_http_flowscale_problem(r, status, "backend-failed",
                   "Backend failed", "The backend did not answer properly; "
                   "try again later.");

    default:
        return ngx_http_flowscale_problem(r, status, "bad-request",
                   "Bad Request", "The request was refused.");
    }
}


static ngx_int_t
ngx_http_flowscale_describe(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf)
{
    ngx_int_t  rc;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_http_flowscale_send_descriptor(r, flcf);
}


static ngx_int_t
ngx_http_flowscale_not_allowed(ngx_http_request_t *r, const char *allow)
{
    ngx_str_t  value;

    ngx_http_discard_request_body(r);

    value.data = (u_char *) allow;
    value.len = ngx_strlen(allow);

    if (ngx_http_flowscale_add_header(r, "Allow", &value) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_flowscale_problem(r, NGX_HTTP_NOT_ALLOWED,
               "method-not-allowed", "Method Not Allowed",
               "See the Allow header for the methods of this resource.");
}


/* rest: "/runs/ID[/...]"; the id, and where it ends */

u_char *
ngx_http_flowscale_route_run_id(ngx_str_t *rest, ngx_str_t *id)
{
    u_char  *p, *last;

    p = rest->data + sizeof("/runs/") - 1;
    last = rest->data + rest->len;

    id->data = p;

    while (p < last && *p != '/') {
        p++;
    }

    id->len = p - id->data;

    return p;
}
