
/*
 * FlowScale for nginx: sending JSON bodies and RFC 9457 problem details.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_flowscale_module.h"


#define NGX_HTTP_FLOWSCALE_PROBLEM_BASE  "urn:flowscale:problem:"


static ngx_str_t  ngx_http_flowscale_problem_type =
    ngx_string("application/problem+json");


ngx_int_t
ngx_http_flowscale_send_json(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *content_type, ngx_str_t *body)
{
    ngx_int_t    rc;
    ngx_buf_t   *b;
    ngx_chain_t  out;

    r->headers_out.status = status;
    r->headers_out.content_type = *content_type;
    r->headers_out.content_type_len = content_type->len;
    r->headers_out.content_length_n = body->len;

    if (r->method == NGX_HTTP_HEAD || body->len == 0) {
        r->header_only = 1;
        return ngx_http_send_header(r);
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->pos = body->data;
    b->last = body->data + body->len;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    return ngx_http_output_filter(r, &out);
}


/*
 * A JSON value as the whole answer, compact; it takes v (NULL: out of
 * memory).  newline: a final "\n", for people reading it with curl.
 */

ngx_int_t
ngx_http_flowscale_send_value(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *content_type, json_t *v, ngx_uint_t newline)
{
    char       *text;
    ngx_str_t   body;

    text = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_decref(v);

    if (text == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    body.len = ngx_strlen(text);
    body.data = ngx_pnalloc(r->pool, body.len + 1);

    if (body.data == NULL) {
        free(text);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(body.data, text, body.len);
    free(text);

    if (newline) {
        body.data[body.len++] = '\n';
    }

    return ngx_http_flowscale_send_json(r, status, content_type, &body);
}


/*
 * {"type": "urn:flowscale:problem:SLUG", "title": ..., "status": ...,
 *  "detail": ..., "instance": URI}
 */

ngx_int_t
ngx_http_flowscale_problem(ngx_http_request_t *r, ngx_uint_t status,
    const char *type, const char *title, const char *detail)
{
    return ngx_http_flowscale_problem_errors(r, status, type, title, detail,
                                             NULL);
}


/* the same with an "errors" list: one entry per input at fault */

ngx_int_t
ngx_http_flowscale_problem_errors(ngx_http_request_t *r, ngx_uint_t status,
    const char *type, const char *title, const char *detail, json_t *errors)
{
    json_t  *problem;

    problem = json_pack("{s:s+, s:s, s:i, s:s, s:s%}",
                        "type", NGX_HTTP_FLOWSCALE_PROBLEM_BASE, type,
                        "title", title,
                        "status", (int) status,
                        "detail", detail ? detail : title,
                        "instance", r->uri.data, r->uri.len);
    if (problem == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (errors) {
        json_object_set(problem, "errors", errors);
    }

    return ngx_http_flowscale_send_value(r, status,
                                         &ngx_http_flowscale_problem_type,
                                         problem, 1);
}


/* 503: PostgreSQL is down; the caller may retry, nothing was recorded */

ngx_int_t
ngx_http_flowscale_unavailable(ngx_http_request_t *r)
{
    static ngx_str_t  retry = ngx_string("5");

    if (ngx_http_flowscale_add_header(r, "Retry-After", &retry) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_flowscale_problem(r, NGX_HTTP_SERVICE_UNAVAILABLE,
               "database-unavailable", "Service Unavailable",
               "The database is unavailable; nothing was recorded. Retry "
               "later.");
}


/* 429 with Retry-After: a queue or a per-key limit is full */

ngx_int_t
ngx_http_flowscale_too_many(ngx_http_request_t *r, time_t retry,
    const char *detail)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->value.data = ngx_pnalloc(r->pool, NGX_TIME_T_LEN);
    if (h->value.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Retry-After");
    h->value.len = ngx_sprintf(h->value.data, "%T", retry) - h->value.data;

    return ngx_http_flowscale_problem(r, NGX_HTTP_TOO_MANY_REQUESTS,
                                      "too-many-runs", "Too Many Requests",
                                      detail);
}


/*
 * Finalizes a request from an event of the module's own (PostgreSQL, a
 * backend, a timer): nginx runs posted requests only from its own request
 * handlers, so a request terminated here needs them run too.
 */

void
ngx_http_flowscale_finalize(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_connection_t  *c;

    c = r->connection;

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


/* an output header; the value must live as long as the request */

ngx_int_t
ngx_http_flowscale_add_header(ngx_http_request_t *r, const char *key,
    ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) key;
    h->key.len = ngx_strlen(key);
    h->value = *value;

    return NGX_OK;
}


/* a request header by name, or NULL */

ngx_table_elt_t *
ngx_http_flowscale_header_in(ngx_http_request_t *r, const char *name)
{
    size_t            len;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    len = ngx_strlen(name);
    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == len
            && ngx_strncasecmp(h[i].key.data, (u_char *) name, len) == 0)
        {
            return &h[i];
        }
    }
}


/*
 * The headers of a Server-Sent Events stream, sent: proxies in front must
 * pass events on at once.  As ngx_http_send_header().
 */

ngx_int_t
ngx_http_flowscale_sse_start(ngx_http_request_t *r)
{
    static ngx_str_t  type = ngx_string("text/event-stream");
    static ngx_str_t  no_cache = ngx_string("no-cache");
    static ngx_str_t  no = ngx_string("no");

    if (ngx_http_flowscale_add_header(r, "Cache-Control", &no_cache) != NGX_OK
        || ngx_http_flowscale_add_header(r, "X-Accel-Buffering", &no)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_type = type;
    r->headers_out.content_type_len = type.len;
    r->headers_out.content_length_n = -1;

    return ngx_http_send_header(r);
}


/* what a run id looks like: a UUID in lower-case hex */

ngx_uint_t
ngx_http_flowscale_is_run_id(ngx_str_t *id)
{
    u_char  *p;

    if (id->len != NGX_HTTP_FLOWSCALE_RUN_ID_LEN) {
        return 0;
    }

    for (p = id->data; p < id->data + id->len; p++) {
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')
              || *p == '-'))
        {
            return 0;
        }
    }

    return 1;
}
