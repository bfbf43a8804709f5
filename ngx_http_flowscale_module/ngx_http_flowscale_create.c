
/*
 * FlowScale for nginx: POST L creates a run.
 *
 * The body (JSON, multipart or urlencoded) is checked against the declared
 * inputs; nothing is written for a rejected request.  The run is accepted
 * only once flowscale.accept_run() has committed it in PostgreSQL; then it
 * goes to the shared zone and to a backend with room, or waits in the
 * gateway queue.  A run that a backend takes at once is answered after
 * ComfyUI accepted its prompt, so a rejection is a 502 of this request.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <openssl/rand.h>
#include <openssl/evp.h>

#include "ngx_http_flowscale_module.h"
#include "ngx_http_flowscale_pg.h"
#include "ngx_http_flowscale_form.h"
#include "ngx_http_flowscale_inputs.h"
#include "ngx_http_flowscale_dispatch.h"
#include "ngx_http_flowscale_front.h"
#include "ngx_http_flowscale_auth.h"
#include "ngx_http_flowscale_webhook.h"
#include "ngx_http_flowscale_stats.h"      /* issue 7 */


typedef enum {
    NGX_HTTP_FLOWSCALE_BODY_NONE = 0,
    NGX_HTTP_FLOWSCALE_BODY_JSON,
    NGX_HTTP_FLOWSCALE_BODY_MULTIPART,
    NGX_HTTP_FLOWSCALE_BODY_FORM
} ngx_http_flowscale_body_e;


typedef struct {
    ngx_http_request_t             *request;
    ngx_http_flowscale_loc_conf_t  *flcf;
    ngx_http_flowscale_body_e       format;
    ngx_http_flowscale_pg_query_t  *query;
    ngx_http_flowscale_job_t       *job;

    json_t                         *values;
    char                           *inputs;     /* values as JSON text */
    char                           *prompt;     /* JSON text */
    fs_file_t                      *files;
    size_t                          nfiles;

    ngx_str_t                       id;
    ngx_msec_t                      wait;
    ngx_int_t                       rc;         /* of a refusal */

    ngx_str_t                       idempotency_key;
    u_char                          request_hash[65];
    ngx_str_t                       webhook;

    ngx_str_t                      *key;        /* NULL: a public API */
    unsigned                        key_counted:1;

    ngx_http_flowscale_created_pt   created;    /* issue 9: the app */
} ngx_http_flowscale_create_ctx_t;


/*
 * What a committed run needs to reach the zone and a backend, whether the
 * client is still there or not.
 */
typedef struct {
    ngx_http_flowscale_loc_conf_t  *flcf;
    ngx_str_t                      *id;
    char                           *inputs;     /* JSON text */
    char                           *prompt;
    fs_file_t                     **files;      /* taken by a backend */
    size_t                         *nfiles;
    ngx_str_t                      *key;
    ngx_uint_t                      key_counted;
    ngx_str_t                      *webhook;
} ngx_http_flowscale_admission_t;


/* a copy of the request's run that outlives a client that went away */
typedef struct {
    ngx_http_flowscale_loc_conf_t  *flcf;
    ngx_str_t                       id;
    char                           *inputs;
    char                           *prompt;
    fs_file_t                      *files;
    size_t                          nfiles;
    ngx_str_t                       key;
    ngx_uint_t                      key_counted;
    ngx_str_t                       webhook;
    u_char                          data[1];    /* id, key, webhook */
} ngx_http_flowscale_orphan_t;


static void ngx_http_flowscale_create_body(ngx_http_request_t *r);
static ngx_int_t ngx_http_flowscale_create_parse(ngx_http_request_t *r,
    ngx_http_flowscale_create_ctx_t *ctx, ngx_str_t *body);
static ngx_int_t ngx_http_flowscale_parse_json(ngx_http_request_t *r,
    ngx_http_flowscale_create_ctx_t *ctx, ngx_str_t *body, json_t **given);
static ngx_int_t ngx_http_flowscale_accept(ngx_http_request_t *r,
    ngx_http_flowscale_create_ctx_t *ctx);
static ngx_int_t ngx_http_flowscale_stopped(ngx_http_request_t *r);
static void ngx_http_flowscale_accepted(void *data, PGresult *res,
    const char *error);
static void ngx_http_flowscale_submitted(void *data, ngx_int_t rc,
    json_t *problem);
static void ngx_http_flowscale_create_respond(ngx_http_request_t *r,
    ngx_http_flowscale_create_ctx_t *ctx);
static void ngx_http_flowscale_create_cleanup(void *data);
static ngx_int_t ngx_http_flowscale_admit(ngx_http_flowscale_admission_t *a,
    ngx_http_flowscale_submitted_pt submitted, void *data,
    ngx_http_flowscale_job_t **job);
static void ngx_http_flowscale_orphan(ngx_http_flowscale_create_ctx_t *ctx);
static void ngx_http_flowscale_orphan_accepted(void *data, PGresult *res,
    const char *error);
static void ngx_http_flowscale_key_end(ngx_str_t *key, ngx_uint_t counted);
static uint64_t ngx_http_flowscale_rng(void *data);
static ngx_int_t ngx_http_flowscale_uuid7(ngx_pool_t *pool, ngx_str_t *id);
static ngx_msec_t ngx_http_flowscale_prefer_wait(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf);
static ngx_int_t ngx_http_flowscale_request_hash(
    ngx_http_flowscale_create_ctx_t *ctx, json_t *given, fs_part_t *files,
    size_t nfiles);


static ngx_str_t  ngx_http_flowscale_accept_sql = ngx_string(
    "SELECT run_id, created FROM flowscale.accept_run($1, $2, $3, $4, $5, "
    "$6, $7, $8, $9, $10, $11, $12)");


ngx_int_t
ngx_http_flowscale_create(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf)
{
    return ngx_http_flowscale_create_then(r, flcf, NULL);
}


/*
 * issue 9: the same path for the app's Gradio queue/join, whose body is
 * already read (and replaced by {"inputs": ...}); created() answers
 * instead of the run once it is accepted.
 */

ngx_int_t
ngx_http_flowscale_create_then(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf, ngx_http_flowscale_created_pt created)
{
    u_char                           *p, reason[160], detail[200];
    time_t                            retry;
    ngx_int_t                         rc;
    ngx_str_t                        *type;
    ngx_table_elt_t                  *h;
    ngx_pool_cleanup_t               *cln;
    ngx_http_flowscale_create_ctx_t  *ctx;

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_flowscale_create_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_flowscale_create_cleanup;
    cln->data = ctx;

    ctx->request = r;
    ctx->flcf = flcf;
    ctx->created = created;
    ngx_http_set_ctx(r, ctx, ngx_http_flowscale_module);

    type = r->headers_in.content_type ? &r->headers_in.content_type->value
                                      : NULL;

#define ngx_http_flowscale_type_is(t)                                       \
    (type->len >= sizeof(t) - 1                                             \
     && ngx_strncasecmp(type->data, (u_char *) t, sizeof(t) - 1) == 0       \
     && (type->len == sizeof(t) - 1 || type->data[sizeof(t) - 1] == ';'     \
         || type->data[sizeof(t) - 1] == ' '))

    if (type == NULL || type->len == 0) {
        ctx->format = NGX_HTTP_FLOWSCALE_BODY_NONE;

    } else if (ngx_http_flowscale_type_is("application/json")) {
        ctx->format = NGX_HTTP_FLOWSCALE_BODY_JSON;

    } else if (ngx_http_flowscale_type_is("multipart/form-data")) {
        ctx->format = NGX_HTTP_FLOWSCALE_BODY_MULTIPART;

    } else if (ngx_http_flowscale_type_is(
                   "application/x-www-form-urlencoded"))
    {
        ctx->format = NGX_HTTP_FLOWSCALE_BODY_FORM;

    } else {
        ngx_http_discard_request_body(r);
        return ngx_http_flowscale_problem(r,
                   NGX_HTTP_UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type",
                   "Unsupported Media Type",
                   "Send the inputs as application/json ({\"inputs\": "
                   "{...}}), multipart/form-data or "
                   "application/x-www-form-urlencoded.");
    }

#undef ngx_http_flowscale_type_is

    ctx->wait = ngx_http_flowscale_prefer_wait(r, flcf);

    /* issue 7: flowscale.stop_deployment() */
    if (ngx_http_flowscale_registry_stopped(flcf)) {
        ngx_http_discard_request_body(r);
        return ngx_http_flowscale_stopped(r);
    }

    retry = ngx_http_flowscale_queue_full(flcf);

    if (retry) {
        ngx_http_discard_request_body(r);
        return ngx_http_flowscale_too_many(r, retry,
                   "The queue of this deployment is full "
                   "(flowscale_queue_size); retry later.");
    }

    if (ngx_http_flowscale_deployment_state(flcf, reason, sizeof(reason))
        == NGX_HTTP_FLOWSCALE_FAILED_STATE)
    {
        ngx_http_discard_request_body(r);
        ngx_snprintf(detail, sizeof(detail), "No backend can run this "
                     "deployment: %s.%Z", reason);
        return ngx_http_flowscale_problem(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                   "no-capable-backend", "No capable backend",
                   (char *) detail);
    }

    h = ngx_http_flowscale_header_in(r, "Idempotency-Key");

    if (h) {
        for (p = h->value.data; p < h->value.data + h->value.len; p++) {
            if (*p < 0x21 || *p > 0x7e) {
                break;
            }
        }

        if (h->value.len == 0 || h->value.len > 255
            || p < h->value.data + h->value.len)
        {
            ngx_http_discard_request_body(r);
            return ngx_http_flowscale_problem(r, NGX_HTTP_BAD_REQUEST,
                       "bad-idempotency-key", "Bad Idempotency-Key",
                       "An Idempotency-Key is 1 to 255 visible ASCII "
                       "characters.");
        }

        ctx->idempotency_key = h->value;
    }

    rc = ngx_http_read_client_request_body(r, ngx_http_flowscale_create_body);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


static void
ngx_http_flowscale_create_body(ngx_http_request_t *r)
{
    ngx_int_t                         rc;
    ngx_str_t                         body;
    ngx_http_flowscale_create_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_flowscale_module);

    if (ngx_http_flowscale_read_body(r, &body) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    if (ngx_http_flowscale_create_parse(r, ctx, &body) != NGX_OK) {
        /* refused: ctx->rc is what sending the problem returned */
        ngx_http_finalize_request(r, ctx->rc);
        return;
    }

    /* flowscale_key_concurrency: counted until the run ends */
    ctx->key = ngx_http_flowscale_auth_key_id(r);

    if (ctx->key && ctx->flcf->key_concurrency) {
        rc = ngx_http_flowscale_key_run_start(ctx->key,
                                              ctx->flcf->key_concurrency);
        if (rc == NGX_BUSY) {
            ngx_http_finalize_request(r,
                ngx_http_flowscale_key_limited(r, ctx->flcf->key_concurrency));
            return;
        }

        if (rc != NGX_OK) {
            ngx_http_finalize_request(r, ngx_http_flowscale_unavailable(r));
            return;
        }

        ctx->key_counted = 1;
    }

    rc = ngx_http_flowscale_accept(r, ctx);

    if (rc != NGX_OK) {
        ngx_http_flowscale_key_end(ctx->key, ctx->key_counted);
        ctx->key_counted = 0;
        ngx_http_finalize_request(r, rc);
        return;
    }

    /* finalized when PostgreSQL answers */
}


/* the whole body in one piece of memory, also when nginx spilled it */

ngx_int_t
ngx_http_flowscale_read_body(ngx_http_request_t *r, ngx_str_t *body)
{
    size_t        len;
    u_char       *p;
    ssize_t       n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    body->len = 0;
    body->data = (u_char *) "";

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        return NGX_OK;
    }

    len = 0;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;
        len += b->in_file ? (size_t) (b->file_last - b->file_pos)
                          : (size_t) (b->last - b->pos);
    }

    p = ngx_pnalloc(r->pool, len + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    body->data = p;
    body->len = len;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (!b->in_file) {
            p = ngx_cpymem(p, b->pos, b->last - b->pos);
            continue;
        }

        n = ngx_read_file(b->file, p, b->file_last - b->file_pos,
                          b->file_pos);

        if (n != b->file_last - b->file_pos) {
            return NGX_ERROR;
        }

        p += n;
    }

    *p = '\0';

    return NGX_OK;
}


static ngx_int_t
ngx_http_flowscale_create_parse(ngx_http_request_t *r,
    ngx_http_flowscale_create_ctx_t *ctx, ngx_str_t *body)
{
    int          rc, form;
    char         err[256], *type;
    const char  *why;
    json_t      *given, *errors;
    size_t       nparts, nfiles;
    fs_part_t   *parts;
    ngx_int_t    status;

    given = NULL;
    parts = NULL;
    nparts = 0;
    nfiles = 0;
    form = 0;
    err[0] = '\0';

    switch (ctx->format) {

    case NGX_HTTP_FLOWSCALE_BODY_JSON:
    case NGX_HTTP_FLOWSCALE_BODY_NONE:
        if (body->len || ctx->format == NGX_HTTP_FLOWSCALE_BODY_JSON) {
            /* a body without a type: JSON is what the API speaks */
            status = ngx_http_flowscale_parse_json(r, ctx, body, &given);

        } else {
            status = NGX_OK;
            given = json_object();
        }

        if (given == NULL) {
            ctx->rc = status;
            return NGX_DECLINED;
        }

        break;

    default:
        form = 1;

        if (ctx->format == NGX_HTTP_FLOWSCALE_BODY_MULTIPART) {
            type = ngx_pnalloc(r->pool,
                               r->headers_in.content_type->value.len + 1);
            if (type == NULL) {
                ctx->rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
                return NGX_DECLINED;
            }

            ngx_cpystrn((u_char *) type, r->headers_in.content_type->value.data,
                        r->headers_in.content_type->value.len + 1);

            rc = fs_multipart_parse(type, body->data, body->len, &parts,
                                    &nparts, err, sizeof(err));

        } else {
            rc = fs_urlencoded_parse(body->data, body->len, &parts, &nparts,
                                     err, sizeof(err));
        }

        if (rc == 0) {
            rc = fs_form_split(parts, nparts, &given, &nfiles, err,
                               sizeof(err));
        }

        if (rc != 0) {
            fs_parts_free(parts, nparts);
            ctx->rc = ngx_http_flowscale_problem(r, NGX_HTTP_BAD_REQUEST,
                          "malformed-body", "Malformed body", err);
            return NGX_DECLINED;
        }
    }

    if (ctx->idempotency_key.len
        && ngx_http_flowscale_request_hash(ctx, given, parts, nfiles)
           != NGX_OK)
    {
        json_decref(given);
        fs_parts_free(parts, nparts);
        ctx->rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        return NGX_DECLINED;
    }

    errors = NULL;

    rc = fs_inputs_validate(ctx->flcf->deployment, given, form, parts,
                            nfiles, ngx_http_flowscale_rng, NULL,
                            &ctx->values, &ctx->files, &ctx->nfiles,
                            &errors);

    json_decref(given);
    fs_parts_free(parts, nparts);

    why = ctx->webhook.len
          ? ngx_http_flowscale_webhook_check(ctx->flcf, &ctx->webhook) : NULL;

    if (why) {
        if (errors == NULL) {
            errors = json_array();
        }

        json_array_append_new(errors, json_pack("{s:s, s:s, s:s}",
                                                "input", "webhook",
                                                "code", "webhook",
                                                "message", why));
        rc = -1;
    }

    if (rc != 0 && errors == NULL) {
        ctx->rc = NGX_HTTP_INTERNAL_SERVER_ERROR;           /* ENOMEM */
        return NGX_DECLINED;
    }

    if (rc != 0) {
        ctx->rc = ngx_http_flowscale_problem_errors(r,
                      NGX_HTTP_FLOWSCALE_UNPROCESSABLE, "invalid-inputs",
                      "Invalid inputs",
                      "Some inputs do not fit the deployment; see errors.",
                      errors);
        json_decref(errors);
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/* {"inputs": {...}, "webhook": "..."}: anything else is a mistake */

static ngx_int_t
ngx_http_flowscale_parse_json(ngx_http_request_t *r,
    ngx_http_flowscale_create_ctx_t *ctx, ngx_str_t *body, json_t **given)
{
    char          detail[300];
    json_t       *root, *inputs, *value;
    const char   *key;
    json_error_t  jerr;

    *given = NULL;

    root = json_loadb((char *) body->data, body->len, JSON_REJECT_DUPLICATES,
                      &jerr);

    if (root == NULL) {
        ngx_snprintf((u_char *) detail, sizeof(detail),
                     "The body is not valid JSON: %s (line %d, column %d)%Z",
                     jerr.text, jerr.line, jerr.column);
        return ngx_http_flowscale_problem(r, NGX_HTTP_BAD_REQUEST,
                   "malformed-body", "Malformed body", detail);
    }

    if (!json_is_object(root)) {
        json_decref(root);
        return ngx_http_flowscale_problem(r, NGX_HTTP_BAD_REQUEST,
                   "malformed-body", "Malformed body",
                   "The body must be a JSON object: {\"inputs\": {...}}.");
    }

    json_object_foreach(root, key, value) {
        if (ngx_strcmp(key, "inputs") != 0 && ngx_strcmp(key, "webhook") != 0)
        {
            ngx_snprintf((u_char *) detail, sizeof(detail),
                         "Unknown field \"%s\" in the body; the inputs go "
                         "in \"inputs\".%Z", key);
            json_decref(root);
            return ngx_http_flowscale_problem(r, NGX_HTTP_BAD_REQUEST,
                       "malformed-body", "Malformed body", detail);
        }
    }

    value = json_object_get(root, "webhook");

    if (value && !json_is_null(value)) {
        if (!json_is_string(value) || json_string_length(value) == 0
            || json_string_length(value) > 2048)
        {
            json_decref(root);
            return ngx_http_flowscale_problem(r, NGX_HTTP_BAD_REQUEST,
                       "malformed-body", "Malformed body",
                       "\"webhook\" must be a URL string.");
        }

        ctx->webhook.len = json_string_length(value);
        ctx->webhook.data = ngx_pnalloc(r->pool, ctx->webhook.len + 1);

        if (ctx->webhook.data == NULL) {
            json_decref(root);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_memcpy(ctx->webhook.data, json_string_value(value),
                   ctx->webhook.len + 1);
    }

    inputs = json_object_get(root, "inputs");

    if (inputs == NULL) {
        *given = json_object();

    } else if (json_is_object(inputs)) {
        *given = json_incref(inputs);

    } else {
        json_decref(root);
        return ngx_http_flowscale_problem(r, NGX_HTTP_BAD_REQUEST,
                   "malformed-body", "Malformed body",
                   "\"inputs\" must be an object of input names and values.");
    }

    json_decref(root);

    return *given ? NGX_OK : NGX_HTTP_INTERNAL_SERVER_ERROR;   /* ENOMEM */
}


/*
 * flowscale.accept_run(id, project, deployment, version, key_id, inputs,
 * prompt, files, webhook, idempotency key, request hash, front): one
 * statement, one transaction.
 */

static ngx_int_t
ngx_http_flowscale_accept(ngx_http_request_t *r,
    ngx_http_flowscale_create_ctx_t *ctx)
{
    size_t                          i;
    char                           *files, prefix[64];
    char                           *key;
    json_t                         *list;
    ngx_str_t                       src, dst;
    const char                     *params[12];
    fs_deployment_t                *d;
    ngx_http_flowscale_loc_conf_t  *flcf;

    flcf = ctx->flcf;
    d = flcf->deployment;

    if (ngx_http_flowscale_uuid7(r->pool, &ctx->id) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_snprintf((u_char *) prefix, sizeof(prefix), "flowscale/%V%Z",
                 &ctx->id);

    ctx->prompt = fs_prompt_text(d, ctx->values, prefix);
    ctx->inputs = json_dumps(ctx->values, JSON_COMPACT);

    if (ctx->prompt == NULL || ctx->inputs == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    list = json_array();

    for (i = 0; i < ctx->nfiles; i++) {
        fs_input_t  *in = ngx_http_flowscale_find_input(d,
                                                        ctx->files[i].input);

        src.data = ctx->files[i].data;
        src.len = ctx->files[i].len;

        dst.len = ngx_base64_encoded_length(src.len);
        dst.data = ngx_pnalloc(r->pool, dst.len + 1);
        if (dst.data == NULL || in == NULL) {
            json_decref(list);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_encode_base64(&dst, &src);
        dst.data[dst.len] = '\0';

        json_array_append_new(list, json_pack("{s:s, s:s, s:s, s:s, s:s, "
                                              "s:s}",
                              "input", ctx->files[i].input,
                              "node", in->node,
                              "slot", in->input,
                              "filename", ctx->files[i].filename,
                              "content_type", ctx->files[i].content_type,
                              "data", (char *) dst.data));
    }

    key = NULL;

    if (ctx->key) {
        key = ngx_pnalloc(r->pool, ctx->key->len + 1);
        if (key == NULL) {
            json_decref(list);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_cpystrn((u_char *) key, ctx->key->data, ctx->key->len + 1);
    }

    files = json_dumps(list, JSON_COMPACT);
    json_decref(list);

    params[0] = (char *) ctx->id.data;
    params[1] = (char *) flcf->project.data;
    params[2] = (char *) flcf->name.data;
    params[3] = d->version;
    params[4] = key;
    params[5] = ctx->inputs;
    params[6] = ctx->prompt;
    params[7] = files;
    params[8] = ctx->webhook.len ? (char *) ctx->webhook.data : NULL;
    params[9] = NULL;
    params[10] = NULL;
    params[11] = ngx_http_flowscale_front_id();

    if (ctx->idempotency_key.len) {
        params[9] = ngx_pnalloc(r->pool, ctx->idempotency_key.len + 1);
        if (params[9] == NULL) {
            free(files);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_cpystrn((u_char *) params[9], ctx->idempotency_key.data,
                    ctx->idempotency_key.len + 1);
        params[10] = (char *) ctx->request_hash;
    }

    if (files) {
        ctx->query = ngx_http_flowscale_pg_query(
                         (char *) ngx_http_flowscale_accept_sql.data, 12,
                         params, NULL, ngx_http_flowscale_accepted, ctx,
                         r->connection->log);
    }

    free(files);

    if (ctx->query == NULL) {
        return ngx_http_flowscale_unavailable(r);
    }

    /* the request stays open while PostgreSQL works */
    r->main->count++;

    return NGX_OK;
}


static void
ngx_http_flowscale_accepted(void *data, PGresult *res, const char *error)
{
    ngx_http_flowscale_create_ctx_t *ctx = data;

    char                            *state;
    ngx_int_t                        rc;
    ngx_http_request_t              *r;
    ngx_http_flowscale_admission_t   a;

    r = ctx->request;
    ctx->query = NULL;

    state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK
        || PQntuples(res) != 1 || PQgetvalue(res, 0, 1)[0] == 'f')
    {
        /* not created: no run counts against the key */
        ngx_http_flowscale_key_end(ctx->key, ctx->key_counted);
        ctx->key_counted = 0;
    }

    r->main->count--;

    if (state && ngx_strcmp(state, "FS503") == 0) {
        /* stopped before this nginx polled the flag */
        ngx_http_flowscale_finalize(r, ngx_http_flowscale_stopped(r));
        return;
    }

    if (state && ngx_strcmp(state, "FS422") == 0) {
        ngx_http_flowscale_finalize(r,
            ngx_http_flowscale_problem(r, NGX_HTTP_FLOWSCALE_UNPROCESSABLE,
                "idempotency-key-reused", "Idempotency-Key reused",
                "This Idempotency-Key was used in the last 24 hours with "
                "another request."));
        return;
    }

    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK
        || PQntuples(res) != 1)
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "flowscale: run not accepted: %s",
                      res ? PQresultErrorMessage(res) : error);

        ngx_http_flowscale_finalize(r, ngx_http_flowscale_unavailable(r));
        return;
    }

    if (PQgetvalue(res, 0, 1)[0] == 'f') {
        /* the same request again: the original run answers */
        ngx_memcpy(ctx->id.data, PQgetvalue(res, 0, 0),
                   NGX_HTTP_FLOWSCALE_RUN_ID_LEN);

        ngx_http_flowscale_create_respond(r, ctx);
        return;
    }

    /* committed: from here on the run exists, whatever happens */

    a.flcf = ctx->flcf;
    a.id = &ctx->id;
    a.inputs = ctx->inputs;
    a.prompt = ctx->prompt;
    a.files = &ctx->files;
    a.nfiles = &ctx->nfiles;
    a.key = ctx->key;
    a.key_counted = ctx->key_counted;
    a.webhook = &ctx->webhook;

    ctx->key_counted = 0;

    rc = ngx_http_flowscale_admit(&a, ngx_http_flowscale_submitted, ctx,
                                  &ctx->job);

    if (rc == NGX_AGAIN) {
        /* a backend took it: the answer waits for ComfyUI's */
        r->main->count++;
        return;
    }

    /* queued at the gateway */
    ngx_http_flowscale_create_respond(r, ctx);
}


/*
 * A committed run goes into the zone (with its key and webhook) and to a
 * backend with room, or into the gateway queue.  NGX_AGAIN: a backend
 * took it, and submitted() will tell (the job took the files).
 */

static ngx_int_t
ngx_http_flowscale_admit(ngx_http_flowscale_admission_t *a,
    ngx_http_flowscale_submitted_pt submitted, void *data,
    ngx_http_flowscale_job_t **job)
{
    ngx_int_t                   rc;
    ngx_str_t                   json, version;
    ngx_http_flowscale_zone_t  *z;
    ngx_http_flowscale_run_t   *run;

    static ngx_str_t  no_key = ngx_null_string;

    ngx_http_flowscale_stats_run_accepted(a->flcf);   /* issue 7 */

    z = ngx_http_flowscale_zone_get((ngx_cycle_t *) ngx_cycle);

    version.data = (u_char *) a->flcf->deployment->version;
    version.len = ngx_strlen(version.data);

    json.data = (u_char *) a->inputs;
    json.len = ngx_strlen(a->inputs);

    ngx_http_flowscale_runs_lock(z);

    run = ngx_http_flowscale_runs_insert(z, a->id, &json);

    if (run) {
        (void) ngx_http_flowscale_runs_label(z, run, &a->flcf->project,
                                             &a->flcf->name, &version,
                                             a->key ? a->key : &no_key,
                                             a->webhook);
        run->key_counted = a->key ? a->key_counted : 0;
    }

    ngx_http_flowscale_runs_unlock(z);

    if (run == NULL) {
        /* PostgreSQL has it: the next start reads it back */
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "flowscale: the zone is full; run %V waits in "
                      "PostgreSQL", a->id);

        ngx_http_flowscale_key_end(a->key, a->key_counted);
        return NGX_DECLINED;
    }

    rc = ngx_http_flowscale_dispatch_new(a->flcf, a->id, a->prompt,
                                         *a->files, *a->nfiles, submitted,
                                         data, job);

    if (rc == NGX_AGAIN) {
        *a->files = NULL;
        *a->nfiles = 0;
    }

    return rc;
}


/*
 * The client left while PostgreSQL was committing its run: the run is
 * kept and sent on all the same, from a copy that does not live in the
 * request.
 */

static void
ngx_http_flowscale_orphan(ngx_http_flowscale_create_ctx_t *ctx)
{
    u_char                       *p;
    size_t                        len;
    ngx_http_flowscale_orphan_t  *o;

    len = sizeof(ngx_http_flowscale_orphan_t) + ctx->id.len
          + (ctx->key ? ctx->key->len : 0) + ctx->webhook.len;

    o = ngx_calloc(len, ngx_cycle->log);
    if (o == NULL) {
        ngx_http_flowscale_pg_cancel(ctx->query);
        return;
    }

    p = o->data;

    o->flcf = ctx->flcf;
    o->id.data = p;
    o->id.len = ctx->id.len;
    p = ngx_cpymem(p, ctx->id.data, ctx->id.len);

    if (ctx->key) {
        o->key.data = p;
        o->key.len = ctx->key->len;
        p = ngx_cpymem(p, ctx->key->data, ctx->key->len);
    }

    o->webhook.data = p;
    o->webhook.len = ctx->webhook.len;
    ngx_memcpy(p, ctx->webhook.data, ctx->webhook.len);

    /* the copy takes these over */
    o->inputs = ctx->inputs;
    o->prompt = ctx->prompt;
    o->files = ctx->files;
    o->nfiles = ctx->nfiles;
    o->key_counted = ctx->key_counted;

    ctx->inputs = NULL;
    ctx->prompt = NULL;
    ctx->files = NULL;
    ctx->nfiles = 0;
    ctx->key_counted = 0;

    ngx_http_flowscale_pg_rebind(ctx->query,
                                 ngx_http_flowscale_orphan_accepted, o);
    ctx->query = NULL;
}


static void
ngx_http_flowscale_orphan_accepted(void *data, PGresult *res,
    const char *error)
{
    ngx_http_flowscale_orphan_t *o = data;

    ngx_http_flowscale_job_t        *job;
    ngx_http_flowscale_admission_t   a;

    if (res && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1
        && PQgetvalue(res, 0, 1)[0] == 't')
    {
        a.flcf = o->flcf;
        a.id = &o->id;
        a.inputs = o->inputs;
        a.prompt = o->prompt;
        a.files = &o->files;
        a.nfiles = &o->nfiles;
        a.key = o->key.len ? &o->key : NULL;
        a.key_counted = o->key_counted;
        a.webhook = &o->webhook;

        (void) ngx_http_flowscale_admit(&a, NULL, NULL, &job);

    } else {
        ngx_http_flowscale_key_end(o->key.len ? &o->key : NULL,
                                   o->key_counted);
    }

    free(o->inputs);
    free(o->prompt);
    fs_files_free(o->files, o->nfiles);
    ngx_free(o);
}


static ngx_int_t
ngx_http_flowscale_stopped(ngx_http_request_t *r)
{
    return ngx_http_flowscale_problem(r, NGX_HTTP_SERVICE_UNAVAILABLE,
               "deployment-stopped", "Deployment stopped",
               "This deployment is stopped (flowscale.stop_deployment); it "
               "takes runs again after flowscale.start_deployment.");
}


static void
ngx_http_flowscale_key_end(ngx_str_t *key, ngx_uint_t counted)
{
    if (key && counted) {
        ngx_http_flowscale_key_run_end(key);
    }
}


static void
ngx_http_flowscale_submitted(void *data, ngx_int_t rc, json_t *problem)
{
    ngx_http_flowscale_create_ctx_t *ctx = data;

    ngx_int_t            status;
    ngx_http_request_t  *r;

    r = ctx->request;
    ctx->job = NULL;
    r->main->count--;

    if (rc != NGX_DECLINED) {
        /* accepted by ComfyUI, or back in the gateway queue */
        ngx_http_flowscale_create_respond(r, ctx);
        return;
    }

    status = ngx_http_flowscale_problem_errors(r, NGX_HTTP_BAD_GATEWAY,
                 "backend-rejected", "The backend rejected the prompt",
                 json_string_value(json_object_get(problem, "detail")),
                 json_object_get(problem, "errors"));

    ngx_http_flowscale_finalize(r, status);
}


/* 202 with the run, or wait for it to finish when Prefer: wait asks */

static void
ngx_http_flowscale_create_respond(ngx_http_request_t *r,
    ngx_http_flowscale_create_ctx_t *ctx)
{
    ngx_int_t  rc;

    if (ctx->created) {
        ngx_http_flowscale_finalize(r, ctx->created(r, &ctx->id));
        return;
    }

    if (ctx->wait) {
        rc = ngx_http_flowscale_wait(r, &ctx->id, ctx->wait);

        if (rc == NGX_DONE) {
            return;
        }

        ngx_http_flowscale_finalize(r, rc);
        return;
    }

    ngx_http_flowscale_finalize(r,
        ngx_http_flowscale_send_run(r, ctx->flcf, &ctx->id,
                                    NGX_HTTP_ACCEPTED));
}


static void
ngx_http_flowscale_create_cleanup(void *data)
{
    ngx_http_flowscale_create_ctx_t *ctx = data;

    if (ctx->query) {
        /* the client left: the run may be committed, and must go on */
        ngx_http_flowscale_orphan(ctx);
    }

    ngx_http_flowscale_key_end(ctx->key, ctx->key_counted);

    if (ctx->job) {
        /* the run goes on; only the answer is not wanted any more */
        ngx_http_flowscale_dispatch_detach(ctx->job);
    }

    json_decref(ctx->values);
    free(ctx->inputs);
    free(ctx->prompt);
    fs_files_free(ctx->files, ctx->nfiles);
}


static uint64_t
ngx_http_flowscale_rng(void *data)
{
    uint64_t  v;

    if (RAND_bytes((unsigned char *) &v, sizeof(v)) != 1) {
        v = ((uint64_t) ngx_random() << 32) ^ (uint64_t) ngx_random();
    }

    return v;
}


/*
 * UUIDv7 (RFC 9562): 48 bits of milliseconds then random bits, so ids sort
 * by creation time, which suits the runs index and keyset pagination.
 */

static ngx_int_t
ngx_http_flowscale_uuid7(ngx_pool_t *pool, ngx_str_t *id)
{
    u_char    b[16];
    uint64_t  ms;

    ms = (uint64_t) ngx_http_flowscale_now_ms();

    if (RAND_bytes(b + 6, 10) != 1) {
        return NGX_ERROR;
    }

    b[0] = (u_char) (ms >> 40);
    b[1] = (u_char) (ms >> 32);
    b[2] = (u_char) (ms >> 24);
    b[3] = (u_char) (ms >> 16);
    b[4] = (u_char) (ms >> 8);
    b[5] = (u_char) ms;
    b[6] = (b[6] & 0x0f) | 0x70;
    b[8] = (b[8] & 0x3f) | 0x80;

    id->len = NGX_HTTP_FLOWSCALE_RUN_ID_LEN;
    id->data = ngx_pnalloc(pool, id->len + 1);
    if (id->data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(id->data, "%*xs-%*xs-%*xs-%*xs-%*xs%Z",
                (size_t) 4, b, (size_t) 2, b + 4, (size_t) 2, b + 6,
                (size_t) 2, b + 8, (size_t) 6, b + 10);

    return NGX_OK;
}


/* Prefer: wait=N (RFC 7240), capped by flowscale_max_wait */

static ngx_msec_t
ngx_http_flowscale_prefer_wait(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf)
{
    u_char           *p, *last;
    ngx_int_t         n;
    ngx_table_elt_t  *h;

    h = ngx_http_flowscale_header_in(r, "Prefer");
    if (h == NULL) {
        return 0;
    }

    p = ngx_strcasestrn(h->value.data, "wait=", 5 - 1);
    if (p == NULL) {
        return 0;
    }

    p += 5;
    last = p;

    while (last < h->value.data + h->value.len && *last >= '0' && *last <= '9')
    {
        last++;
    }

    n = ngx_atoi(p, last - p);

    return n > 0 ? ngx_min((ngx_msec_t) n * 1000, flcf->max_wait) : 0;
}


/*
 * What makes two requests "the same" for Idempotency-Key: the inputs as
 * given (key order and multipart boundaries do not matter), the files'
 * bytes and the webhook.
 */

static ngx_int_t
ngx_http_flowscale_request_hash(ngx_http_flowscale_create_ctx_t *ctx,
    json_t *given, fs_part_t *files, size_t nfiles)
{
    char          *text;
    size_t         i;
    ngx_int_t      rc;
    unsigned int   len;
    EVP_MD_CTX    *md;
    unsigned char  digest[EVP_MAX_MD_SIZE];

    text = json_dumps(given, JSON_SORT_KEYS | JSON_COMPACT);
    md = EVP_MD_CTX_new();

    rc = NGX_ERROR;

    if (text == NULL || md == NULL
        || !EVP_DigestInit_ex(md, EVP_sha256(), NULL)
        || !EVP_DigestUpdate(md, text, ngx_strlen(text) + 1)
        || !EVP_DigestUpdate(md, ctx->webhook.data, ctx->webhook.len))
    {
        goto done;
    }

    for (i = 0; i < nfiles; i++) {
        if (!EVP_DigestUpdate(md, files[i].name,
                              ngx_strlen(files[i].name) + 1)
            || !EVP_DigestUpdate(md, files[i].data, files[i].len))
        {
            goto done;
        }
    }

    if (EVP_DigestFinal_ex(md, digest, &len)) {
        ngx_hex_dump(ctx->request_hash, digest, len)[0] = '\0';
        rc = NGX_OK;
    }

done:

    EVP_MD_CTX_free(md);
    free(text);

    return rc;
}


/*
 * 0 when the deployment's gateway queue has room, else the seconds after
 * which a retry may find some: the runs ahead, at the pace runs have
 * recently gone through its backends.
 */

time_t
ngx_http_flowscale_queue_full(ngx_http_flowscale_loc_conf_t *flcf)
{
    time_t                                  retry;
    uint64_t                                capable;
    ngx_uint_t                              queued, n;
    int64_t                                 run_ms;
    ngx_http_flowscale_zone_t              *z;
    ngx_http_flowscale_deployment_state_t  *ds;

    z = ngx_http_flowscale_zone_get((ngx_cycle_t *) ngx_cycle);

    ngx_http_flowscale_runs_lock(z);

    ds = ngx_http_flowscale_runs_deployment(z, &flcf->project, &flcf->name);
    queued = ds ? ds->queued : 0;
    run_ms = ds ? ds->run_ms : 0;
    capable = ds ? ds->capable : 0;

    ngx_http_flowscale_runs_unlock(z);

    if (queued < flcf->queue_size) {
        return 0;
    }

    for (n = 0; capable; capable &= capable - 1) {
        n++;
    }

    if (run_ms == 0 || n == 0) {
        return 30;
    }

    retry = (time_t) (queued * run_ms / (n * flcf->backend_depth) / 1000);

    return ngx_max(1, ngx_min(retry, 3600));
}


/* issue 7: the run id of POST L, for $flowscale_run_id (NULL if none) */

ngx_str_t *
ngx_http_flowscale_create_run_id(ngx_http_request_t *r)
{
    ngx_http_flowscale_create_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_flowscale_module);

    return (ctx && ctx->id.len) ? &ctx->id : NULL;
}
