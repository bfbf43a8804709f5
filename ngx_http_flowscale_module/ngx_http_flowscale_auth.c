
/*
 * FlowScale for nginx: API keys (design.md sections 5 and 8).
 *
 * Every run route of a deployment (POST L, L/runs...) asks for
 * "Authorization: Bearer KEY" or "X-API-Key: KEY", a key of the location's
 * project (flowscale_project).  GET/HEAD L, L/openapi.json, L/docs and
 * L/app describe the API and are left alone; flowscale_api_key off or
 * set_project_auth(project, false) make the API public.
 *
 * Keys look like fs_<key_id>_<secret>; PostgreSQL keeps only their
 * SHA-256.  Judgements are made from a cache in the shared zone: an rbtree
 * of keys (key_id -> project, hash, revoked) and projects (auth_required),
 * with positive entries for a minute, negative ones for a few seconds, and
 * LRU eviction.  A miss marks the entry pending and sends one query through
 * the pool; every other request for it, in any worker, parks (like
 * auth_request: NGX_AGAIN from the access phase, resumed by
 * ngx_http_core_run_phases) until the entry is resolved.  The worker that
 * sent the query wakes its own waiters at once; the others poll the zone
 * every few milliseconds.  A database that cannot answer makes the entry
 * "down" for a second: 503 with Retry-After, never 401, never a hang.
 *
 * Changes made in PostgreSQL reach the cache through LISTEN/NOTIFY
 * (ngx_http_flowscale_listen.c); any invalidation bumps an epoch, and a
 * lookup answered across an invalidation is used once, not cached.
 *
 * The secret never reaches a log: only key ids are logged, and a key found
 * in the query string is masked in the request line before anything else
 * can log it (nginx's own debug log of headers is outside our reach).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <openssl/sha.h>
#include <openssl/crypto.h>

#include "ngx_http_flowscale_module.h"
#include "ngx_http_flowscale_pg.h"
#include "ngx_http_flowscale_auth.h"


#define NGX_HTTP_FLOWSCALE_AUTH_TTL          60000  /* a known key */
#define NGX_HTTP_FLOWSCALE_AUTH_NEGATIVE_TTL  5000  /* an unknown key */
#define NGX_HTTP_FLOWSCALE_AUTH_DOWN_TTL      1000  /* the database failed */
#define NGX_HTTP_FLOWSCALE_AUTH_WAIT          3000  /* a request waits */
#define NGX_HTTP_FLOWSCALE_AUTH_POLL            10
#define NGX_HTTP_FLOWSCALE_AUTH_STALE        35000  /* a lost lookup */
#define NGX_HTTP_FLOWSCALE_AUTH_KEY_MAX        256
#define NGX_HTTP_FLOWSCALE_AUTH_EVICT            8

#define NGX_HTTP_FLOWSCALE_AUTH_KEY        'k'
#define NGX_HTTP_FLOWSCALE_AUTH_PROJECT    'p'


typedef enum {
    NGX_HTTP_FLOWSCALE_ENTRY_PENDING = 0,
    NGX_HTTP_FLOWSCALE_ENTRY_READY,
    NGX_HTTP_FLOWSCALE_ENTRY_ABSENT,          /* no such key or project */
    NGX_HTTP_FLOWSCALE_ENTRY_DOWN             /* the lookup failed */
} ngx_http_flowscale_entry_state_e;


typedef enum {
    NGX_HTTP_FLOWSCALE_AUTH_ALLOW = 0,
    NGX_HTTP_FLOWSCALE_AUTH_PUBLIC,
    NGX_HTTP_FLOWSCALE_AUTH_MISSING,
    NGX_HTTP_FLOWSCALE_AUTH_IN_QUERY,
    NGX_HTTP_FLOWSCALE_AUTH_INVALID,
    NGX_HTTP_FLOWSCALE_AUTH_FORBIDDEN,
    NGX_HTTP_FLOWSCALE_AUTH_REVOKED,
    NGX_HTTP_FLOWSCALE_AUTH_UNAVAILABLE,
    NGX_HTTP_FLOWSCALE_AUTH_WAIT_FOR,
    NGX_HTTP_FLOWSCALE_AUTH_LOOKUP
} ngx_http_flowscale_verdict_e;


/* in the zone */

typedef struct {
    ngx_rbtree_node_t               node;       /* key: crc32 of kind+name */
    ngx_queue_t                     lru;        /* most recent first */

    int64_t                         expires;    /* ms */
    int64_t                         since;      /* pending since, ms */
    ngx_pid_t                       owner;      /* the worker asking */

    u_char                          kind;
    u_char                          state;
    u_char                          revoked;
    u_char                          auth_required;
    u_char                          len;
    u_char                          project_len;
    u_char                          name[FS_NAME_MAX];
    u_char                          project[FS_NAME_MAX];  /* of a key */
    u_char                          hash[SHA256_DIGEST_LENGTH];
} ngx_http_flowscale_auth_entry_t;


typedef struct {
    ngx_rbtree_node_t               node;       /* key: crc32 of key id */
    ngx_uint_t                      runs;
    size_t                          len;
    u_char                          key_id[NGX_HTTP_FLOWSCALE_KEY_ID_MAX];
} ngx_http_flowscale_key_counter_t;


typedef struct {
    ngx_rbtree_t                    rbtree;
    ngx_rbtree_node_t               sentinel;
    ngx_queue_t                     lru;
    ngx_uint_t                      nentries;
    ngx_uint_t                      max_entries;

    ngx_rbtree_t                    counters;
    ngx_rbtree_node_t               counters_sentinel;

    ngx_uint_t                      epoch;      /* bumped by invalidations */

    ngx_http_flowscale_auth_stats_t stats;
} ngx_http_flowscale_auth_sh_t;


/* per request; found through its pool cleanup (the module's ctx slot
 * belongs to the route handlers) */

typedef struct {
    ngx_http_request_t             *request;
    ngx_queue_t                     queue;      /* parked in this worker */
    ngx_msec_t                      deadline;

    ngx_str_t                       project;
    ngx_str_t                       key_id;     /* once allowed */
    u_char                          hash[SHA256_DIGEST_LENGTH];

    unsigned                        started:1;  /* key read, hashed */
    unsigned                        has_key:1;
    unsigned                        well_formed:1;
    unsigned                        in_query:1;
    unsigned                        parked:1;
    unsigned                        done:1;
    unsigned                        allowed:1;
} ngx_http_flowscale_auth_ctx_t;


/* one query in flight, owned by the worker, not by a request */

typedef struct {
    ngx_uint_t                      epoch;
    u_char                          kind;       /* of the pending entry */
    size_t                          key_len;
    size_t                          project_len;
    u_char                          key_id[NGX_HTTP_FLOWSCALE_KEY_ID_MAX + 1];
    u_char                          project[FS_NAME_MAX + 1];
} ngx_http_flowscale_auth_lookup_t;


static ngx_int_t ngx_http_flowscale_auth_handler(ngx_http_request_t *r);
static ngx_uint_t ngx_http_flowscale_auth_route(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf);
static ngx_http_flowscale_auth_ctx_t *ngx_http_flowscale_auth_get_ctx(
    ngx_http_request_t *r);
static ngx_int_t ngx_http_flowscale_auth_start(ngx_http_request_t *r,
    ngx_http_flowscale_auth_ctx_t *ctx);
static ngx_uint_t ngx_http_flowscale_auth_header_key(ngx_http_request_t *r,
    ngx_str_t *key);
static ngx_uint_t ngx_http_flowscale_auth_parse_key(ngx_str_t *key,
    ngx_str_t *id);
static ngx_uint_t ngx_http_flowscale_auth_query_key(ngx_http_request_t *r);
static void ngx_http_flowscale_auth_mask(ngx_str_t *where, u_char *value,
    size_t len);
static ngx_http_flowscale_verdict_e ngx_http_flowscale_auth_judge(
    ngx_http_flowscale_auth_ctx_t *ctx,
    ngx_http_flowscale_auth_lookup_t *lk);
static ngx_http_flowscale_verdict_e ngx_http_flowscale_auth_judge_key(
    ngx_http_flowscale_auth_ctx_t *ctx, ngx_http_flowscale_auth_entry_t *k);
static ngx_int_t ngx_http_flowscale_auth_lookup(ngx_http_request_t *r,
    ngx_http_flowscale_auth_lookup_t *lk);
static void ngx_http_flowscale_auth_looked_up(void *data, PGresult *res,
    const char *error);
static void ngx_http_flowscale_auth_fail(ngx_http_flowscale_auth_lookup_t *lk);
static void ngx_http_flowscale_auth_park(ngx_http_request_t *r,
    ngx_http_flowscale_auth_ctx_t *ctx);
static void ngx_http_flowscale_auth_wake_all(void);
static void ngx_http_flowscale_auth_resume(ngx_http_request_t *r);
static void ngx_http_flowscale_auth_cleanup(void *data);
static ngx_int_t ngx_http_flowscale_auth_refuse(ngx_http_request_t *r,
    ngx_http_flowscale_auth_ctx_t *ctx, ngx_http_flowscale_verdict_e v);
static ngx_int_t ngx_http_flowscale_auth_header(ngx_http_request_t *r,
    const char *name, const char *value);

static ngx_http_flowscale_auth_sh_t *ngx_http_flowscale_auth_sh(
    ngx_http_flowscale_zone_t *z);
static ngx_http_flowscale_auth_entry_t *ngx_http_flowscale_auth_find(
    ngx_http_flowscale_auth_sh_t *sh, u_char kind, u_char *name, size_t len);
static ngx_http_flowscale_auth_entry_t *ngx_http_flowscale_auth_add(
    ngx_http_flowscale_zone_t *z, ngx_http_flowscale_auth_sh_t *sh,
    u_char kind, u_char *name, size_t len);
static void ngx_http_flowscale_auth_delete(ngx_http_flowscale_zone_t *z,
    ngx_http_flowscale_auth_sh_t *sh, ngx_http_flowscale_auth_entry_t *e);
static ngx_uint_t ngx_http_flowscale_auth_evict(ngx_http_flowscale_zone_t *z,
    ngx_http_flowscale_auth_sh_t *sh, ngx_uint_t n);
static uint32_t ngx_http_flowscale_auth_hash(u_char kind, u_char *name,
    size_t len);
static void ngx_http_flowscale_auth_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static void ngx_http_flowscale_counter_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static ngx_http_flowscale_key_counter_t *ngx_http_flowscale_counter_find(
    ngx_http_flowscale_auth_sh_t *sh, ngx_str_t *key_id);
static ngx_int_t ngx_http_flowscale_auth_unhex(u_char *dst, u_char *src,
    size_t len);


static ngx_queue_t  ngx_http_flowscale_auth_waiters;

static const char  ngx_http_flowscale_auth_sql[] =
    "SELECT * FROM flowscale.lookup_api_key($1, $2)";


ngx_int_t
ngx_http_flowscale_auth_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_flowscale_auth_handler;

    /* once: a reload without a master keeps the requests parked so far */
    if (ngx_http_flowscale_auth_waiters.next == NULL) {
        ngx_queue_init(&ngx_http_flowscale_auth_waiters);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_flowscale_auth_handler(ngx_http_request_t *r)
{
    ngx_uint_t                         tries;
    ngx_pool_cleanup_t                *cln;
    ngx_http_flowscale_auth_ctx_t     *ctx;
    ngx_http_flowscale_verdict_e       v;
    ngx_http_flowscale_loc_conf_t     *flcf;
    ngx_http_flowscale_auth_lookup_t   lk;

    flcf = ngx_http_get_module_loc_conf(r, ngx_http_flowscale_module);

    if (flcf->name.data == NULL || !flcf->api_key || r != r->main) {
        return NGX_DECLINED;
    }

    if (!ngx_http_flowscale_auth_route(r, flcf)) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_flowscale_auth_get_ctx(r);

    if (ctx && ctx->parked) {
        /* woken by something else than the lookup: keep waiting */
        return NGX_AGAIN;
    }

    if (ctx && ctx->done
        && ctx->project.len == flcf->project.len
        && ngx_strncmp(ctx->project.data, flcf->project.data,
                       flcf->project.len) == 0)
    {
        /* checked already, before an internal redirect */
        return ctx->allowed ? NGX_OK : NGX_DECLINED;
    }

    if (ctx == NULL) {
        ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_flowscale_auth_ctx_t));
        if (ctx == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        cln = ngx_pool_cleanup_add(r->pool, 0);
        if (cln == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        cln->handler = ngx_http_flowscale_auth_cleanup;
        cln->data = ctx;

        ctx->request = r;
        ctx->deadline = ngx_current_msec + NGX_HTTP_FLOWSCALE_AUTH_WAIT;
    }

    if (!ctx->started
        || ctx->project.len != flcf->project.len
        || ngx_strncmp(ctx->project.data, flcf->project.data,
                       flcf->project.len) != 0)
    {
        ctx->project = flcf->project;
        ctx->done = 0;
        ctx->allowed = 0;

        if (ngx_http_flowscale_auth_start(r, ctx) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    for (tries = 0; tries < 3; tries++) {

        v = ngx_http_flowscale_auth_judge(ctx, &lk);

        switch (v) {

        case NGX_HTTP_FLOWSCALE_AUTH_LOOKUP:
            if (ngx_http_flowscale_auth_lookup(r, &lk) != NGX_OK) {
                ngx_http_flowscale_auth_fail(&lk);
                ngx_http_flowscale_auth_wake_all();
                v = NGX_HTTP_FLOWSCALE_AUTH_UNAVAILABLE;
                break;
            }

            /* the answer may have come already */
            continue;

        case NGX_HTTP_FLOWSCALE_AUTH_WAIT_FOR:
            if ((ngx_msec_int_t) (ngx_current_msec - ctx->deadline) >= 0) {
                ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                              "flowscale: API key check of project \"%V\" "
                              "gave up waiting for the database",
                              &ctx->project);
                v = NGX_HTTP_FLOWSCALE_AUTH_UNAVAILABLE;
                break;
            }

            ngx_http_flowscale_auth_park(r, ctx);
            return NGX_AGAIN;

        default:
            break;
        }

        break;
    }

    if (v == NGX_HTTP_FLOWSCALE_AUTH_LOOKUP
        || v == NGX_HTTP_FLOWSCALE_AUTH_WAIT_FOR)
    {
        ngx_http_flowscale_auth_park(r, ctx);
        return NGX_AGAIN;
    }

    ctx->done = 1;

    if (v == NGX_HTTP_FLOWSCALE_AUTH_PUBLIC) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "flowscale auth: project \"%V\" is public",
                       &ctx->project);
        return NGX_DECLINED;
    }

    if (v == NGX_HTTP_FLOWSCALE_AUTH_ALLOW) {
        ctx->allowed = 1;

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "flowscale auth: key %V allowed", &ctx->key_id);
        return NGX_OK;
    }

    return ngx_http_flowscale_auth_refuse(r, ctx, v);
}


/*
 * The run routes: POST L and everything under L/runs.  GET/HEAD L, the
 * OpenAPI document, the docs and the app describe the API and need no key;
 * a method L does not have (405) or a path it does not serve (404) tells
 * nothing either, so those answers are left to the handler.
 */

static ngx_uint_t
ngx_http_flowscale_auth_route(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf)
{
    ngx_str_t  rest;

    if (r->uri.len < flcf->location.len || r->method == NGX_HTTP_OPTIONS) {
        /* preflights carry no key */
        return 0;
    }

    rest.data = r->uri.data + flcf->location.len;
    rest.len = r->uri.len - flcf->location.len;

    if (rest.len == 0 || (rest.len == 1 && rest.data[0] == '/')) {
        return r->method == NGX_HTTP_POST;
    }

#define ngx_http_flowscale_gradio_api  "/app/gradio_api/"

    /*
     * flowscale_app on: the Gradio protocol creates and reads runs, so it
     * needs a key as the API does; only its description stays open.
     */
    if (flcf->app == NGX_HTTP_FLOWSCALE_APP_ON
        && rest.len > sizeof(ngx_http_flowscale_gradio_api) - 1
        && ngx_strncmp(rest.data, ngx_http_flowscale_gradio_api,
                       sizeof(ngx_http_flowscale_gradio_api) - 1) == 0)
    {
        rest.data += sizeof(ngx_http_flowscale_gradio_api) - 1;
        rest.len -= sizeof(ngx_http_flowscale_gradio_api) - 1;

        return !(rest.len >= 4 && ngx_strncmp(rest.data, "info", 4) == 0);
    }

#undef ngx_http_flowscale_gradio_api

    return rest.len >= sizeof("/runs") - 1
           && ngx_strncmp(rest.data, "/runs", sizeof("/runs") - 1) == 0
           && (rest.len == sizeof("/runs") - 1
               || rest.data[sizeof("/runs") - 1] == '/');
}


static ngx_http_flowscale_auth_ctx_t *
ngx_http_flowscale_auth_get_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t  *cln;

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_flowscale_auth_cleanup) {
            return cln->data;
        }
    }

    return NULL;
}


ngx_str_t *
ngx_http_flowscale_auth_key_id(ngx_http_request_t *r)
{
    ngx_http_flowscale_auth_ctx_t  *ctx;

    ctx = ngx_http_flowscale_auth_get_ctx(r->main);

    if (ctx == NULL || !ctx->allowed || ctx->key_id.len == 0) {
        return NULL;
    }

    return &ctx->key_id;
}


/* reads the key once: which one, well formed or not, and its SHA-256 */

static ngx_int_t
ngx_http_flowscale_auth_start(ngx_http_request_t *r,
    ngx_http_flowscale_auth_ctx_t *ctx)
{
    ngx_str_t  key, id;

    ctx->started = 1;
    ctx->in_query = ngx_http_flowscale_auth_query_key(r);
    ctx->has_key = ngx_http_flowscale_auth_header_key(r, &key);

    if (!ctx->has_key) {
        return NGX_OK;
    }

    ctx->well_formed = ngx_http_flowscale_auth_parse_key(&key, &id);

    if (!ctx->well_formed) {
        return NGX_OK;
    }

    ctx->key_id.len = id.len;
    ctx->key_id.data = ngx_pnalloc(r->pool, id.len);
    if (ctx->key_id.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(ctx->key_id.data, id.data, id.len);

    SHA256(key.data, key.len, ctx->hash);

    return NGX_OK;
}


/* Authorization: Bearer KEY, else X-API-Key: KEY */

static ngx_uint_t
ngx_http_flowscale_auth_header_key(ngx_http_request_t *r, ngx_str_t *key)
{
    u_char           *p, *last;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    h = r->headers_in.authorization;

    if (h && h->value.len > sizeof("Bearer ") - 1
        && ngx_strncasecmp(h->value.data, (u_char *) "Bearer ",
                           sizeof("Bearer ") - 1) == 0)
    {
        p = h->value.data + sizeof("Bearer ") - 1;
        last = h->value.data + h->value.len;

        while (p < last && *p == ' ') {
            p++;
        }

        while (last > p && last[-1] == ' ') {
            last--;
        }

        key->data = p;
        key->len = last - p;

        return 1;
    }

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].hash == 0 || h[i].key.len != sizeof("X-API-Key") - 1
            || ngx_strncasecmp(h[i].key.data, (u_char *) "X-API-Key",
                               sizeof("X-API-Key") - 1) != 0)
        {
            continue;
        }

        p = h[i].value.data;
        last = p + h[i].value.len;

        while (last > p && last[-1] == ' ') {
            last--;
        }

        key->data = p;
        key->len = last - p;

        return 1;
    }

    return 0;
}


/*
 * fs_<key_id>_<secret>: key_id 1-32 letters and digits, the secret
 * base64url.  Anything else is an unknown key, never a database query.
 */

static ngx_uint_t
ngx_http_flowscale_auth_parse_key(ngx_str_t *key, ngx_str_t *id)
{
    u_char  *p, *last, c;

    if (key->len < sizeof("fs_x_y") - 1
        || key->len > NGX_HTTP_FLOWSCALE_AUTH_KEY_MAX
        || ngx_strncmp(key->data, "fs_", 3) != 0)
    {
        return 0;
    }

    p = key->data + 3;
    last = key->data + key->len;
    id->data = p;

    while (p < last && *p != '_') {
        c = *p;

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9')))
        {
            return 0;
        }

        p++;
    }

    id->len = p - id->data;

    if (id->len == 0 || id->len > NGX_HTTP_FLOWSCALE_KEY_ID_MAX
        || p + 1 >= last)
    {
        return 0;
    }

    for (p++; p < last; p++) {
        c = *p;

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '='))
        {
            return 0;
        }
    }

    return 1;
}


/*
 * A key in the query string is never accepted, and it is masked in the
 * request line and the arguments right away so that no log line of this
 * request can show it ($request in the access log included): the key id
 * stays visible, so the owner knows which key to revoke.
 */

static ngx_uint_t
ngx_http_flowscale_auth_query_key(ngx_http_request_t *r)
{
    u_char      *p, *last, *name, *value, *end;
    size_t       nlen;
    ngx_str_t    key, id;
    ngx_uint_t   found;

    if (r->args.len == 0) {
        return 0;
    }

    found = 0;
    p = r->args.data;
    last = p + r->args.len;

    while (p < last) {
        name = p;

        end = ngx_strlchr(p, last, '&');
        if (end == NULL) {
            end = last;
        }

        value = ngx_strlchr(p, end, '=');
        value = value ? value + 1 : end;
        nlen = (value == end && (end == name || end[-1] != '='))
               ? (size_t) (end - name) : (size_t) (value - 1 - name);

        p = end + 1;

#define ngx_http_flowscale_name_is(s)                                        \
    (nlen == sizeof(s) - 1 && ngx_strncasecmp(name, (u_char *) s, nlen) == 0)

        if (!(ngx_http_flowscale_name_is("api_key")
              || ngx_http_flowscale_name_is("apikey")
              || ngx_http_flowscale_name_is("api-key")
              || ngx_http_flowscale_name_is("x-api-key")
              || ngx_http_flowscale_name_is("key")
              || ngx_http_flowscale_name_is("token")
              || ngx_http_flowscale_name_is("access_token")
              || ngx_http_flowscale_name_is("authorization")
              || (end - value > 3 && ngx_strncmp(value, "fs_", 3) == 0)))
        {
            continue;
        }

#undef ngx_http_flowscale_name_is

        if (value == end) {
            continue;
        }

        found = 1;

        key.data = value;
        key.len = end - value;

        if (ngx_http_flowscale_auth_parse_key(&key, &id)) {
            /* keep fs_<key_id>_ */
            value = id.data + id.len + 1;
        }

        ngx_http_flowscale_auth_mask(&r->request_line, value, end - value);
        ngx_http_flowscale_auth_mask(&r->unparsed_uri, value, end - value);
        ngx_memset(value, '*', end - value);
    }

    return found;
}


/* masks a copy of the value in where, unless where holds the value itself */

static void
ngx_http_flowscale_auth_mask(ngx_str_t *where, u_char *value, size_t len)
{
    u_char  *p;

    if (where->data == NULL || len == 0) {
        return;
    }

    if (value >= where->data && value + len <= where->data + where->len) {
        return;                           /* the same memory: masked below */
    }

    for (p = where->data; p + len <= where->data + where->len; p++) {
        if (ngx_memcmp(p, value, len) == 0) {
            ngx_memset(p, '*', len);
            return;
        }
    }
}


/*
 * The decision, from the zone alone.  NGX_HTTP_FLOWSCALE_AUTH_LOOKUP: this
 * request's worker now owns a pending entry and lk says what to ask.
 */

static ngx_http_flowscale_verdict_e
ngx_http_flowscale_auth_judge(ngx_http_flowscale_auth_ctx_t *ctx,
    ngx_http_flowscale_auth_lookup_t *lk)
{
    int64_t                           now;
    ngx_str_t                        *name;
    ngx_uint_t                        p_usable, k_usable;
    ngx_http_flowscale_zone_t        *z;
    ngx_http_flowscale_verdict_e      v, missing;
    ngx_http_flowscale_auth_sh_t     *sh;
    ngx_http_flowscale_auth_entry_t  *p, *k, *e;

    z = ngx_http_flowscale_zone_get((ngx_cycle_t *) ngx_cycle);
    if (z == NULL) {
        return NGX_HTTP_FLOWSCALE_AUTH_UNAVAILABLE;
    }

    now = ngx_http_flowscale_now_ms();
    v = NGX_HTTP_FLOWSCALE_AUTH_UNAVAILABLE;

    missing = ctx->in_query ? NGX_HTTP_FLOWSCALE_AUTH_IN_QUERY
                            : NGX_HTTP_FLOWSCALE_AUTH_MISSING;

    ngx_http_flowscale_runs_lock(z);

    sh = ngx_http_flowscale_auth_sh(z);
    if (sh == NULL) {
        goto done;
    }

#define ngx_http_flowscale_usable(e)                                         \
    ((e) && ((e)->state == NGX_HTTP_FLOWSCALE_ENTRY_READY                    \
             || (e)->state == NGX_HTTP_FLOWSCALE_ENTRY_ABSENT)               \
     && (e)->expires > now)

    p = ngx_http_flowscale_auth_find(sh, NGX_HTTP_FLOWSCALE_AUTH_PROJECT,
                                     ctx->project.data, ctx->project.len);
    p_usable = ngx_http_flowscale_usable(p);
    k = NULL;

    if (p_usable) {
        ngx_queue_remove(&p->lru);
        ngx_queue_insert_head(&sh->lru, &p->lru);

        if (p->state == NGX_HTTP_FLOWSCALE_ENTRY_READY && !p->auth_required) {
            v = NGX_HTTP_FLOWSCALE_AUTH_PUBLIC;
            goto done;
        }
    }

    if (!ctx->has_key || !ctx->well_formed) {
        if (p_usable) {
            v = ctx->has_key ? NGX_HTTP_FLOWSCALE_AUTH_INVALID : missing;
            goto done;
        }

        lk->kind = NGX_HTTP_FLOWSCALE_AUTH_PROJECT;

    } else {
        k = ngx_http_flowscale_auth_find(sh, NGX_HTTP_FLOWSCALE_AUTH_KEY,
                                         ctx->key_id.data, ctx->key_id.len);
        k_usable = ngx_http_flowscale_usable(k);

        if (k_usable) {
            ngx_queue_remove(&k->lru);
            ngx_queue_insert_head(&sh->lru, &k->lru);

            (void) ngx_atomic_fetch_add(&sh->stats.cache_hits, 1);

            v = ngx_http_flowscale_auth_judge_key(ctx, k);

            /* a good key of the project does not need to know more */
            if (p_usable || v == NGX_HTTP_FLOWSCALE_AUTH_ALLOW) {
                goto done;
            }

            lk->kind = NGX_HTTP_FLOWSCALE_AUTH_PROJECT;

        } else {
            lk->kind = NGX_HTTP_FLOWSCALE_AUTH_KEY;
        }
    }

#undef ngx_http_flowscale_usable

    /* the entry to look up: its lookup may be under way already */

    if (lk->kind == NGX_HTTP_FLOWSCALE_AUTH_KEY) {
        e = k;
        name = &ctx->key_id;

    } else {
        e = p;
        name = &ctx->project;
    }

    if (e == NULL) {
        e = ngx_http_flowscale_auth_add(z, sh, lk->kind, name->data,
                                        name->len);
        if (e == NULL) {
            v = NGX_HTTP_FLOWSCALE_AUTH_UNAVAILABLE;
            goto done;
        }

    } else if (e->state == NGX_HTTP_FLOWSCALE_ENTRY_DOWN
               && e->expires > now)
    {
        v = NGX_HTTP_FLOWSCALE_AUTH_UNAVAILABLE;
        goto done;

    } else if (e->state == NGX_HTTP_FLOWSCALE_ENTRY_PENDING
               && now - e->since < NGX_HTTP_FLOWSCALE_AUTH_STALE)
    {
        v = NGX_HTTP_FLOWSCALE_AUTH_WAIT_FOR;
        goto done;
    }

    e->state = NGX_HTTP_FLOWSCALE_ENTRY_PENDING;
    e->owner = ngx_pid;
    e->since = now;
    e->expires = 0;

    lk->epoch = sh->epoch;

    lk->project_len = ctx->project.len;
    ngx_memcpy(lk->project, ctx->project.data, ctx->project.len);
    lk->project[lk->project_len] = '\0';

    lk->key_len = (ctx->has_key && ctx->well_formed) ? ctx->key_id.len : 0;
    ngx_memcpy(lk->key_id, ctx->key_id.data, lk->key_len);
    lk->key_id[lk->key_len] = '\0';

    v = NGX_HTTP_FLOWSCALE_AUTH_LOOKUP;

done:

    ngx_http_flowscale_runs_unlock(z);

    if (sh) {
        switch (v) {
        case NGX_HTTP_FLOWSCALE_AUTH_ALLOW:
            (void) ngx_atomic_fetch_add(&sh->stats.ok, 1);
            break;
        case NGX_HTTP_FLOWSCALE_AUTH_PUBLIC:
            (void) ngx_atomic_fetch_add(&sh->stats.open, 1);
            break;
        case NGX_HTTP_FLOWSCALE_AUTH_MISSING:
        case NGX_HTTP_FLOWSCALE_AUTH_IN_QUERY:
            (void) ngx_atomic_fetch_add(&sh->stats.missing, 1);
            break;
        case NGX_HTTP_FLOWSCALE_AUTH_INVALID:
            (void) ngx_atomic_fetch_add(&sh->stats.invalid, 1);
            break;
        case NGX_HTTP_FLOWSCALE_AUTH_FORBIDDEN:
            (void) ngx_atomic_fetch_add(&sh->stats.forbidden, 1);
            break;
        case NGX_HTTP_FLOWSCALE_AUTH_REVOKED:
            (void) ngx_atomic_fetch_add(&sh->stats.revoked, 1);
            break;
        case NGX_HTTP_FLOWSCALE_AUTH_UNAVAILABLE:
            (void) ngx_atomic_fetch_add(&sh->stats.unavailable, 1);
            break;
        case NGX_HTTP_FLOWSCALE_AUTH_LOOKUP:
            (void) ngx_atomic_fetch_add(&sh->stats.lookups, 1);
            break;
        default:
            break;
        }
    }

    return v;
}


/* a cached key against this request's key and project */

static ngx_http_flowscale_verdict_e
ngx_http_flowscale_auth_judge_key(ngx_http_flowscale_auth_ctx_t *ctx,
    ngx_http_flowscale_auth_entry_t *k)
{
    if (k->state != NGX_HTTP_FLOWSCALE_ENTRY_READY) {
        return NGX_HTTP_FLOWSCALE_AUTH_INVALID;
    }

    /* constant time: the hash of a guess tells nothing by its timing */
    if (CRYPTO_memcmp(k->hash, ctx->hash, SHA256_DIGEST_LENGTH) != 0) {
        return NGX_HTTP_FLOWSCALE_AUTH_INVALID;
    }

    if (k->revoked) {
        return NGX_HTTP_FLOWSCALE_AUTH_REVOKED;
    }

    if (k->project_len != ctx->project.len
        || ngx_memcmp(k->project, ctx->project.data, ctx->project.len) != 0)
    {
        return NGX_HTTP_FLOWSCALE_AUTH_FORBIDDEN;
    }

    return NGX_HTTP_FLOWSCALE_AUTH_ALLOW;
}


static ngx_int_t
ngx_http_flowscale_auth_lookup(ngx_http_request_t *r,
    ngx_http_flowscale_auth_lookup_t *lk)
{
    const char                        *params[2];
    ngx_http_flowscale_auth_lookup_t  *q;

    q = ngx_alloc(sizeof(ngx_http_flowscale_auth_lookup_t), ngx_cycle->log);
    if (q == NULL) {
        return NGX_ERROR;
    }

    *q = *lk;

    params[0] = (char *) q->project;
    params[1] = q->key_len ? (char *) q->key_id : NULL;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "flowscale auth: looking up project \"%s\" key \"%s\"",
                   q->project, q->key_id);

    if (ngx_http_flowscale_pg_query(ngx_http_flowscale_auth_sql, 2, params,
                                    NULL, ngx_http_flowscale_auth_looked_up,
                                    q, ngx_cycle->log)
        == NULL)
    {
        ngx_free(q);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* the answer of flowscale.lookup_api_key(), or none */

static void
ngx_http_flowscale_auth_looked_up(void *data, PGresult *res,
    const char *error)
{
    ngx_http_flowscale_auth_lookup_t  *lk = data;

    char                             *v;
    int64_t                           now, expires;
    ngx_uint_t                        fresh;
    ngx_http_flowscale_zone_t        *z;
    ngx_http_flowscale_auth_sh_t     *sh;
    ngx_http_flowscale_auth_entry_t  *p, *k;

    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK
        || PQntuples(res) != 1 || PQnfields(res) != 5)
    {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "flowscale: API key lookup of project \"%s\" "
                      "failed: %s", lk->project,
                      res ? PQresultErrorMessage(res)
                          : (error ? error : "no answer"));

        ngx_http_flowscale_auth_fail(lk);
        goto wake;
    }

    z = ngx_http_flowscale_zone_get((ngx_cycle_t *) ngx_cycle);
    if (z == NULL) {
        goto wake;
    }

    now = ngx_http_flowscale_now_ms();

    ngx_http_flowscale_runs_lock(z);

    sh = ngx_http_flowscale_auth_sh(z);
    if (sh == NULL) {
        ngx_http_flowscale_runs_unlock(z);
        goto wake;
    }

    /* an invalidation came while we asked: use the answer once only */
    fresh = (sh->epoch == lk->epoch);

    p = ngx_http_flowscale_auth_find(sh, NGX_HTTP_FLOWSCALE_AUTH_PROJECT,
                                     lk->project, lk->project_len);
    if (p == NULL) {
        p = ngx_http_flowscale_auth_add(z, sh, NGX_HTTP_FLOWSCALE_AUTH_PROJECT,
                                        lk->project, lk->project_len);
    }

    if (p) {
        v = PQgetvalue(res, 0, 0);
        p->state = (v[0] == 't') ? NGX_HTTP_FLOWSCALE_ENTRY_READY
                                 : NGX_HTTP_FLOWSCALE_ENTRY_ABSENT;
        v = PQgetvalue(res, 0, 1);
        p->auth_required = (v[0] != 'f');
        p->expires = fresh ? now + NGX_HTTP_FLOWSCALE_AUTH_TTL : now + 1;
    }

    if (lk->key_len) {
        k = ngx_http_flowscale_auth_find(sh, NGX_HTTP_FLOWSCALE_AUTH_KEY,
                                         lk->key_id, lk->key_len);
        if (k == NULL) {
            k = ngx_http_flowscale_auth_add(z, sh, NGX_HTTP_FLOWSCALE_AUTH_KEY,
                                            lk->key_id, lk->key_len);
        }

        if (k) {
            expires = NGX_HTTP_FLOWSCALE_AUTH_TTL;

            if (PQgetisnull(res, 0, 2) || PQgetisnull(res, 0, 3)
                || PQgetlength(res, 0, 2) > FS_NAME_MAX
                || PQgetlength(res, 0, 3) != 2 * SHA256_DIGEST_LENGTH
                || ngx_http_flowscale_auth_unhex(k->hash,
                       (u_char *) PQgetvalue(res, 0, 3),
                       2 * SHA256_DIGEST_LENGTH)
                   != NGX_OK)
            {
                k->state = NGX_HTTP_FLOWSCALE_ENTRY_ABSENT;
                expires = NGX_HTTP_FLOWSCALE_AUTH_NEGATIVE_TTL;

            } else {
                k->state = NGX_HTTP_FLOWSCALE_ENTRY_READY;
                k->project_len = PQgetlength(res, 0, 2);
                ngx_memcpy(k->project, PQgetvalue(res, 0, 2),
                           k->project_len);
                v = PQgetvalue(res, 0, 4);
                k->revoked = (v[0] == 't');
            }

            k->expires = fresh ? now + expires : now + 1;
        }
    }

    ngx_http_flowscale_runs_unlock(z);

wake:

    ngx_free(lk);

    ngx_http_flowscale_auth_wake_all();
}


/* the lookup could not be made or failed: "down" for a moment */

static void
ngx_http_flowscale_auth_fail(ngx_http_flowscale_auth_lookup_t *lk)
{
    ngx_http_flowscale_zone_t        *z;
    ngx_http_flowscale_auth_sh_t     *sh;
    ngx_http_flowscale_auth_entry_t  *e;

    z = ngx_http_flowscale_zone_get((ngx_cycle_t *) ngx_cycle);
    if (z == NULL) {
        return;
    }

    ngx_http_flowscale_runs_lock(z);

    sh = ngx_http_flowscale_auth_sh(z);

    if (sh) {
        (void) ngx_atomic_fetch_add(&sh->stats.db_errors, 1);

        if (lk->kind == NGX_HTTP_FLOWSCALE_AUTH_KEY) {
            e = ngx_http_flowscale_auth_find(sh, lk->kind, lk->key_id,
                                             lk->key_len);
        } else {
            e = ngx_http_flowscale_auth_find(sh, lk->kind, lk->project,
                                             lk->project_len);
        }

        if (e && e->state == NGX_HTTP_FLOWSCALE_ENTRY_PENDING
            && e->owner == ngx_pid)
        {
            e->state = NGX_HTTP_FLOWSCALE_ENTRY_DOWN;
            e->expires = ngx_http_flowscale_now_ms()
                         + NGX_HTTP_FLOWSCALE_AUTH_DOWN_TTL;
        }
    }

    ngx_http_flowscale_runs_unlock(z);
}


/*
 * Parks a request like limit_req's delay: its write event carries a short
 * timer (poll the zone: the lookup may be another worker's), and a lookup
 * of this worker wakes it at once.  A client that goes away is noticed.
 */

static void
ngx_http_flowscale_auth_park(ngx_http_request_t *r,
    ngx_http_flowscale_auth_ctx_t *ctx)
{
    ngx_event_t  *wev;

    if (!ctx->parked) {
        ngx_queue_insert_tail(&ngx_http_flowscale_auth_waiters, &ctx->queue);
        ctx->parked = 1;
    }

    r->read_event_handler = ngx_http_test_reading;
    r->write_event_handler = ngx_http_flowscale_auth_resume;

    wev = r->connection->write;
    wev->delayed = 1;
    ngx_add_timer(wev, NGX_HTTP_FLOWSCALE_AUTH_POLL);
}


static void
ngx_http_flowscale_auth_wake_all(void)
{
    ngx_queue_t                    *q;
    ngx_event_t                    *wev;
    ngx_http_flowscale_auth_ctx_t  *ctx;

    for (q = ngx_queue_head(&ngx_http_flowscale_auth_waiters);
         q != ngx_queue_sentinel(&ngx_http_flowscale_auth_waiters);
         q = ngx_queue_next(q))
    {
        ctx = ngx_queue_data(q, ngx_http_flowscale_auth_ctx_t, queue);
        wev = ctx->request->connection->write;

        if (wev->timer_set) {
            ngx_del_timer(wev);
        }

        wev->delayed = 0;
        ngx_post_event(wev, &ngx_posted_events);
    }
}


static void
ngx_http_flowscale_auth_resume(ngx_http_request_t *r)
{
    ngx_event_t                    *wev;
    ngx_connection_t               *c;
    ngx_http_flowscale_auth_ctx_t  *ctx;

    wev = r->connection->write;

    if (wev->delayed) {
        /* the socket became writable, not our turn yet */
        if (ngx_handle_write_event(wev, 0) != NGX_OK) {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        }

        return;
    }

    ctx = ngx_http_flowscale_auth_get_ctx(r);

    if (ctx && ctx->parked) {
        ngx_queue_remove(&ctx->queue);
        ctx->parked = 0;
    }

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "flowscale auth: resumed");

    r->read_event_handler = ngx_http_block_reading;
    r->write_event_handler = ngx_http_core_run_phases;

    c = r->connection;

    ngx_http_core_run_phases(r);

    /* resumed from a timer or PostgreSQL, not from nginx's request handler */
    ngx_http_run_posted_requests(c);
}


static void
ngx_http_flowscale_auth_cleanup(void *data)
{
    ngx_http_flowscale_auth_ctx_t  *ctx = data;

    if (ctx->parked) {
        ngx_queue_remove(&ctx->queue);
        ctx->parked = 0;
    }
}


static ngx_int_t
ngx_http_flowscale_auth_refuse(ngx_http_request_t *r,
    ngx_http_flowscale_auth_ctx_t *ctx, ngx_http_flowscale_verdict_e v)
{
    ngx_int_t   rc;
    ngx_uint_t  status;
    const char *type, *title, *detail, *challenge;

    rc = ngx_http_discard_request_body(r);

    if (rc != NGX_OK) {
        ngx_http_finalize_request(r, rc);
        return NGX_DONE;
    }

    challenge = NULL;
    status = NGX_HTTP_UNAUTHORIZED;
    title = "Unauthorized";

    switch (v) {

    case NGX_HTTP_FLOWSCALE_AUTH_IN_QUERY:
        type = "key-in-query";
        detail = "API keys are not accepted in the query string (URLs end "
                 "up in logs); send \"Authorization: Bearer KEY\" or "
                 "\"X-API-Key: KEY\". Consider that key leaked.";
        challenge = "Bearer realm=\"flowscale\"";
        break;

    case NGX_HTTP_FLOWSCALE_AUTH_INVALID:
        type = "invalid-key";
        detail = "The API key is not valid.";
        challenge = "Bearer realm=\"flowscale\", error=\"invalid_token\"";
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "flowscale: invalid API key%s%V for project \"%V\"",
                      ctx->well_formed ? " id " : "",
                      ctx->well_formed ? &ctx->key_id : &ctx->project,
                      &ctx->project);
        break;

    case NGX_HTTP_FLOWSCALE_AUTH_FORBIDDEN:
        status = NGX_HTTP_FORBIDDEN;
        type = "wrong-project";
        title = "Forbidden";
        detail = "This API key belongs to another project.";
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "flowscale: API key %V is not of project \"%V\"",
                      &ctx->key_id, &ctx->project);
        break;

    case NGX_HTTP_FLOWSCALE_AUTH_REVOKED:
        status = NGX_HTTP_FORBIDDEN;
        type = "key-revoked";
        title = "Forbidden";
        detail = "This API key has been revoked.";
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "flowscale: revoked API key %V", &ctx->key_id);
        break;

    case NGX_HTTP_FLOWSCALE_AUTH_UNAVAILABLE:
        ngx_http_finalize_request(r, ngx_http_flowscale_unavailable(r));
        return NGX_DONE;

    default: /* NGX_HTTP_FLOWSCALE_AUTH_MISSING */
        type = "unauthorized";
        detail = "An API key is needed: send \"Authorization: Bearer KEY\" "
                 "or \"X-API-Key: KEY\".";
        challenge = "Bearer realm=\"flowscale\"";
        break;
    }

    if (challenge
        && ngx_http_flowscale_auth_header(r, "WWW-Authenticate", challenge)
           != NGX_OK)
    {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return NGX_DONE;
    }

    ngx_http_finalize_request(r,
        ngx_http_flowscale_problem(r, status, type, title, detail));

    return NGX_DONE;
}


static ngx_int_t
ngx_http_flowscale_auth_header(ngx_http_request_t *r, const char *name,
    const char *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) name;
    h->key.len = ngx_strlen(name);
    h->value.data = (u_char *) value;
    h->value.len = ngx_strlen(value);

    return NGX_OK;
}


ngx_int_t
ngx_http_flowscale_key_limited(ngx_http_request_t *r, ngx_uint_t limit)
{
    u_char                        *detail;
    ngx_http_flowscale_zone_t     *z;
    ngx_http_flowscale_auth_sh_t  *sh;

    z = ngx_http_flowscale_zone_get((ngx_cycle_t *) ngx_cycle);

    if (z) {
        ngx_http_flowscale_runs_lock(z);
        sh = ngx_http_flowscale_auth_sh(z);
        ngx_http_flowscale_runs_unlock(z);

        if (sh) {
            (void) ngx_atomic_fetch_add(&sh->stats.limited, 1);
        }
    }

    detail = ngx_pnalloc(r->pool, 160);
    if (detail == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_snprintf(detail, 160, "This API key already has %ui unfinished "
                 "runs (flowscale_key_concurrency); retry when one has "
                 "finished.%Z", limit);

    if (ngx_http_flowscale_auth_header(r, "Retry-After", "2") != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_flowscale_problem(r, NGX_HTTP_TOO_MANY_REQUESTS,
                                      "key-concurrency", "Too Many Requests",
                                      (char *) detail);
}


/* ------------------------------------------------------------------------
 * the cache in the zone; everything below runs with the zone locked
 */

static ngx_http_flowscale_auth_sh_t *
ngx_http_flowscale_auth_sh(ngx_http_flowscale_zone_t *z)
{
    size_t                         size;
    ngx_http_flowscale_auth_sh_t  *sh;

    if (z->sh->auth) {
        return z->sh->auth;
    }

    sh = ngx_slab_calloc_locked(z->shpool,
                                sizeof(ngx_http_flowscale_auth_sh_t));
    if (sh == NULL) {
        return NULL;
    }

    ngx_rbtree_init(&sh->rbtree, &sh->sentinel,
                    ngx_http_flowscale_auth_rbtree_insert);
    ngx_rbtree_init(&sh->counters, &sh->counters_sentinel,
                    ngx_http_flowscale_counter_rbtree_insert);
    ngx_queue_init(&sh->lru);

    /* the cache takes at most a quarter of the zone: runs come first */
    size = z->shpool->end - (u_char *) z->shpool;
    sh->max_entries = ngx_max(size / 4
                              / sizeof(ngx_http_flowscale_auth_entry_t), 16);

    z->sh->auth = sh;

    return sh;
}


static uint32_t
ngx_http_flowscale_auth_hash(u_char kind, u_char *name, size_t len)
{
    uint32_t  crc;

    ngx_crc32_init(crc);
    ngx_crc32_update(&crc, &kind, 1);
    ngx_crc32_update(&crc, name, len);
    ngx_crc32_final(crc);

    return crc;
}


static ngx_http_flowscale_auth_entry_t *
ngx_http_flowscale_auth_find(ngx_http_flowscale_auth_sh_t *sh, u_char kind,
    u_char *name, size_t len)
{
    ngx_int_t                         rc;
    ngx_rbtree_key_t                  hash;
    ngx_rbtree_node_t                *node, *sentinel;
    ngx_http_flowscale_auth_entry_t  *e;

    if (len == 0 || len > FS_NAME_MAX) {
        return NULL;
    }

    hash = ngx_http_flowscale_auth_hash(kind, name, len);

    node = sh->rbtree.root;
    sentinel = sh->rbtree.sentinel;

    while (node != sentinel) {

        if (hash < node->key) {
            node = node->left;
            continue;
        }

        if (hash > node->key) {
            node = node->right;
            continue;
        }

        e = (ngx_http_flowscale_auth_entry_t *) node;

        rc = (ngx_int_t) kind - (ngx_int_t) e->kind;
        if (rc == 0) {
            rc = ngx_memn2cmp(name, e->name, len, e->len);
        }

        if (rc == 0) {
            return e;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


static ngx_http_flowscale_auth_entry_t *
ngx_http_flowscale_auth_add(ngx_http_flowscale_zone_t *z,
    ngx_http_flowscale_auth_sh_t *sh, u_char kind, u_char *name, size_t len)
{
    ngx_http_flowscale_auth_entry_t  *e;

    if (len == 0 || len > FS_NAME_MAX) {
        return NULL;
    }

    if (sh->nentries >= sh->max_entries) {
        (void) ngx_http_flowscale_auth_evict(z, sh,
                                             NGX_HTTP_FLOWSCALE_AUTH_EVICT);
    }

    e = ngx_slab_alloc_locked(z->shpool,
                              sizeof(ngx_http_flowscale_auth_entry_t));

    if (e == NULL
        && ngx_http_flowscale_auth_evict(z, sh, NGX_HTTP_FLOWSCALE_AUTH_EVICT))
    {
        e = ngx_slab_alloc_locked(z->shpool,
                                  sizeof(ngx_http_flowscale_auth_entry_t));
    }

    if (e == NULL) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "flowscale: the zone has no room for the API key "
                      "cache; raise the size of flowscale_zone");
        return NULL;
    }

    ngx_memzero(e, sizeof(ngx_http_flowscale_auth_entry_t));

    e->kind = kind;
    e->len = len;
    ngx_memcpy(e->name, name, len);

    e->node.key = ngx_http_flowscale_auth_hash(kind, name, len);
    ngx_rbtree_insert(&sh->rbtree, &e->node);
    ngx_queue_insert_head(&sh->lru, &e->lru);
    sh->nentries++;

    return e;
}


static void
ngx_http_flowscale_auth_delete(ngx_http_flowscale_zone_t *z,
    ngx_http_flowscale_auth_sh_t *sh, ngx_http_flowscale_auth_entry_t *e)
{
    ngx_rbtree_delete(&sh->rbtree, &e->node);
    ngx_queue_remove(&e->lru);
    sh->nentries--;

    ngx_slab_free_locked(z->shpool, e);
}


/* the least recently used entries go; pending ones have waiters */

static ngx_uint_t
ngx_http_flowscale_auth_evict(ngx_http_flowscale_zone_t *z,
    ngx_http_flowscale_auth_sh_t *sh, ngx_uint_t n)
{
    ngx_uint_t                        freed;
    ngx_queue_t                      *q, *prev;
    ngx_http_flowscale_auth_entry_t  *e;

    freed = 0;

    for (q = ngx_queue_last(&sh->lru);
         q != ngx_queue_sentinel(&sh->lru) && freed < n;
         q = prev)
    {
        prev = ngx_queue_prev(q);
        e = ngx_queue_data(q, ngx_http_flowscale_auth_entry_t, lru);

        if (e->state == NGX_HTTP_FLOWSCALE_ENTRY_PENDING) {
            continue;
        }

        ngx_http_flowscale_auth_delete(z, sh, e);
        freed++;
    }

    return freed;
}


static void
ngx_http_flowscale_auth_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_int_t                         rc;
    ngx_rbtree_node_t               **p;
    ngx_http_flowscale_auth_entry_t  *e, *t;

    for ( ;; ) {

        if (node->key < temp->key) {
            p = &temp->left;

        } else if (node->key > temp->key) {
            p = &temp->right;

        } else {
            e = (ngx_http_flowscale_auth_entry_t *) node;
            t = (ngx_http_flowscale_auth_entry_t *) temp;

            rc = (ngx_int_t) e->kind - (ngx_int_t) t->kind;
            if (rc == 0) {
                rc = ngx_memn2cmp(e->name, t->name, e->len, t->len);
            }

            p = (rc < 0) ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


static ngx_int_t
ngx_http_flowscale_auth_unhex(u_char *dst, u_char *src, size_t len)
{
    u_char      c;
    ngx_uint_t  i, n;

    for (i = 0; i < len; i++) {
        c = src[i];

        if (c >= '0' && c <= '9') {
            n = c - '0';

        } else if (c >= 'a' && c <= 'f') {
            n = c - 'a' + 10;

        } else if (c >= 'A' && c <= 'F') {
            n = c - 'A' + 10;

        } else {
            return NGX_ERROR;
        }

        if (i % 2 == 0) {
            dst[i / 2] = (u_char) (n << 4);

        } else {
            dst[i / 2] |= (u_char) n;
        }
    }

    return NGX_OK;
}


/* ------------------------------------------------------------------------
 * invalidation (LISTEN/NOTIFY, reconnects)
 */

void
ngx_http_flowscale_auth_flush(ngx_log_t *log)
{
    ngx_uint_t                        n;
    ngx_queue_t                      *q, *prev;
    ngx_http_flowscale_zone_t        *z;
    ngx_http_flowscale_auth_sh_t     *sh;
    ngx_http_flowscale_auth_entry_t  *e;

    z = ngx_http_flowscale_zone_get((ngx_cycle_t *) ngx_cycle);
    if (z == NULL) {
        return;
    }

    n = 0;

    ngx_http_flowscale_runs_lock(z);

    sh = ngx_http_flowscale_auth_sh(z);

    if (sh) {
        sh->epoch++;

        for (q = ngx_queue_last(&sh->lru);
             q != ngx_queue_sentinel(&sh->lru);
             q = prev)
        {
            prev = ngx_queue_prev(q);
            e = ngx_queue_data(q, ngx_http_flowscale_auth_entry_t, lru);

            if (e->state != NGX_HTTP_FLOWSCALE_ENTRY_PENDING) {
                ngx_http_flowscale_auth_delete(z, sh, e);
                n++;
            }
        }
    }

    ngx_http_flowscale_runs_unlock(z);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, log, 0,
                   "flowscale auth: cache flushed, %ui entries", n);
}


/* "key:<key_id>", "project:<name>" or "flush" on channel flowscale_keys */

void
ngx_http_flowscale_auth_notify(u_char *payload, size_t len, ngx_log_t *log)
{
    u_char                           *name;
    size_t                            nlen;
    ngx_queue_t                      *q, *prev;
    ngx_http_flowscale_zone_t        *z;
    ngx_http_flowscale_auth_sh_t     *sh;
    ngx_http_flowscale_auth_entry_t  *e;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, log, 0,
                   "flowscale auth: notification \"%*s\"", len, payload);

    if (len == sizeof("flush") - 1
        && ngx_strncmp(payload, "flush", len) == 0)
    {
        ngx_http_flowscale_auth_flush(log);
        return;
    }

    z = ngx_http_flowscale_zone_get((ngx_cycle_t *) ngx_cycle);
    if (z == NULL) {
        return;
    }

    ngx_http_flowscale_runs_lock(z);

    sh = ngx_http_flowscale_auth_sh(z);
    if (sh == NULL) {
        goto done;
    }

    sh->epoch++;

    if (len > 4 && ngx_strncmp(payload, "key:", 4) == 0) {
        e = ngx_http_flowscale_auth_find(sh, NGX_HTTP_FLOWSCALE_AUTH_KEY,
                                         payload + 4, len - 4);

        if (e && e->state != NGX_HTTP_FLOWSCALE_ENTRY_PENDING) {
            ngx_http_flowscale_auth_delete(z, sh, e);
        }

        goto done;
    }

    if (len > 8 && ngx_strncmp(payload, "project:", 8) == 0) {
        name = payload + 8;
        nlen = len - 8;

        /* the project and every key of it */
        for (q = ngx_queue_last(&sh->lru);
             q != ngx_queue_sentinel(&sh->lru);
             q = prev)
        {
            prev = ngx_queue_prev(q);
            e = ngx_queue_data(q, ngx_http_flowscale_auth_entry_t, lru);

            if (e->state == NGX_HTTP_FLOWSCALE_ENTRY_PENDING) {
                continue;
            }

            if ((e->kind == NGX_HTTP_FLOWSCALE_AUTH_PROJECT
                 && e->len == nlen && ngx_memcmp(e->name, name, nlen) == 0)
                || (e->kind == NGX_HTTP_FLOWSCALE_AUTH_KEY
                    && e->project_len == nlen
                    && ngx_memcmp(e->project, name, nlen) == 0))
            {
                ngx_http_flowscale_auth_delete(z, sh, e);
            }
        }

        goto done;
    }

    /* unknown: be safe */
    ngx_http_flowscale_runs_unlock(z);
    ngx_http_flowscale_auth_flush(log);
    return;

done:

    ngx_http_flowscale_runs_unlock(z);
}


void
ngx_http_flowscale_auth_stats(ngx_http_flowscale_auth_stats_t *out)
{
    ngx_http_flowscale_zone_t     *z;
    ngx_http_flowscale_auth_sh_t  *sh;

    ngx_memzero(out, sizeof(ngx_http_flowscale_auth_stats_t));

    z = ngx_http_flowscale_zone_get((ngx_cycle_t *) ngx_cycle);
    if (z == NULL) {
        return;
    }

    ngx_http_flowscale_runs_lock(z);

    sh = ngx_http_flowscale_auth_sh(z);
    if (sh) {
        *out = sh->stats;
    }

    ngx_http_flowscale_runs_unlock(z);
}


/* ------------------------------------------------------------------------
 * flowscale_key_concurrency: unfinished runs per key, in the zone
 */

static ngx_http_flowscale_key_counter_t *
ngx_http_flowscale_counter_find(ngx_http_flowscale_auth_sh_t *sh,
    ngx_str_t *key_id)
{
    ngx_int_t                          rc;
    ngx_rbtree_key_t                   hash;
    ngx_rbtree_node_t                 *node, *sentinel;
    ngx_http_flowscale_key_counter_t  *c;

    hash = ngx_crc32_short(key_id->data, key_id->len);

    node = sh->counters.root;
    sentinel = sh->counters.sentinel;

    while (node != sentinel) {

        if (hash < node->key) {
            node = node->left;
            continue;
        }

        if (hash > node->key) {
            node = node->right;
            continue;
        }

        c = (ngx_http_flowscale_key_counter_t *) node;

        rc = ngx_memn2cmp(key_id->data, c->key_id, key_id->len, c->len);

        if (rc == 0) {
            return c;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


static void
ngx_http_flowscale_counter_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t                **p;
    ngx_http_flowscale_key_counter_t  *c, *t;

    for ( ;; ) {

        if (node->key < temp->key) {
            p = &temp->left;

        } else if (node->key > temp->key) {
            p = &temp->right;

        } else {
            c = (ngx_http_flowscale_key_counter_t *) node;
            t = (ngx_http_flowscale_key_counter_t *) temp;

            p = (ngx_memn2cmp(c->key_id, t->key_id, c->len, t->len) < 0)
                ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


ngx_int_t
ngx_http_flowscale_key_run_start_locked(ngx_http_flowscale_zone_t *z,
    ngx_str_t *key_id, ngx_uint_t limit)
{
    ngx_http_flowscale_auth_sh_t      *sh;
    ngx_http_flowscale_key_counter_t  *c;

    if (key_id == NULL || key_id->len == 0
        || key_id->len > NGX_HTTP_FLOWSCALE_KEY_ID_MAX)
    {
        return NGX_OK;                    /* public: nothing to count */
    }

    sh = ngx_http_flowscale_auth_sh(z);
    if (sh == NULL) {
        return limit ? NGX_ERROR : NGX_OK;
    }

    c = ngx_http_flowscale_counter_find(sh, key_id);

    if (c && limit && c->runs >= limit) {
        return NGX_BUSY;
    }

    if (c == NULL) {
        c = ngx_slab_alloc_locked(z->shpool,
                                  sizeof(ngx_http_flowscale_key_counter_t));

        if (c == NULL
            && ngx_http_flowscale_auth_evict(z, sh,
                                             NGX_HTTP_FLOWSCALE_AUTH_EVICT))
        {
            c = ngx_slab_alloc_locked(z->shpool,
                                      sizeof(ngx_http_flowscale_key_counter_t));
        }

        if (c == NULL) {
            /* not counted; key_run_end will find nothing to release */
            return limit ? NGX_ERROR : NGX_OK;
        }

        c->runs = 0;
        c->len = key_id->len;
        ngx_memcpy(c->key_id, key_id->data, key_id->len);
        c->node.key = ngx_crc32_short(key_id->data, key_id->len);

        ngx_rbtree_insert(&sh->counters, &c->node);
    }

    c->runs++;

    return NGX_OK;
}


void
ngx_http_flowscale_key_run_end_locked(ngx_http_flowscale_zone_t *z,
    ngx_str_t *key_id)
{
    ngx_http_flowscale_auth_sh_t      *sh;
    ngx_http_flowscale_key_counter_t  *c;

    if (key_id == NULL || key_id->len == 0
        || key_id->len > NGX_HTTP_FLOWSCALE_KEY_ID_MAX)
    {
        return;
    }

    sh = ngx_http_flowscale_auth_sh(z);
    if (sh == NULL) {
        return;
    }

    c = ngx_http_flowscale_counter_find(sh, key_id);
    if (c == NULL) {
        return;
    }

    if (c->runs > 1) {
        c->runs--;
        return;
    }

    ngx_rbtree_delete(&sh->counters, &c->node);
    ngx_slab_free_locked(z->shpool, c);
}


ngx_int_t
ngx_http_flowscale_key_run_start(ngx_str_t *key_id, ngx_uint_t limit)
{
    ngx_int_t                   rc;
    ngx_http_flowscale_zone_t  *z;

    z = ngx_http_flowscale_zone_get((ngx_cycle_t *) ngx_cycle);
    if (z == NULL) {
        return NGX_OK;
    }

    ngx_http_flowscale_runs_lock(z);
    rc = ngx_http_flowscale_key_run_start_locked(z, key_id, limit);
    ngx_http_flowscale_runs_unlock(z);

    return rc;
}


void
ngx_http_flowscale_key_run_end(ngx_str_t *key_id)
{
    ngx_http_flowscale_zone_t  *z;

    z = ngx_http_flowscale_zone_get((ngx_cycle_t *) ngx_cycle);
    if (z == NULL) {
        return;
    }

    ngx_http_flowscale_runs_lock(z);
    ngx_http_flowscale_key_run_end_locked(z, key_id);
    ngx_http_flowscale_runs_unlock(z);
}


ngx_uint_t
ngx_http_flowscale_key_runs(ngx_str_t *key_id)
{
    ngx_uint_t                         n;
    ngx_http_flowscale_zone_t         *z;
    ngx_http_flowscale_auth_sh_t      *sh;
    ngx_http_flowscale_key_counter_t  *c;

    z = ngx_http_flowscale_zone_get((ngx_cycle_t *) ngx_cycle);
    if (z == NULL || key_id == NULL || key_id->len == 0) {
        return 0;
    }

    n = 0;

    ngx_http_flowscale_runs_lock(z);

    sh = ngx_http_flowscale_auth_sh(z);
    c = sh ? ngx_http_flowscale_counter_find(sh, key_id) : NULL;

    if (c) {
        n = c->runs;
    }

    ngx_http_flowscale_runs_unlock(z);

    return n;
}
