
/*
 * FlowScale for nginx: handing runs to ComfyUI backends and following them.
 *
 * Any worker can hand a run to a backend: a slot is reserved in the shared
 * zone (at most flowscale_backend_depth runs per backend, counted across
 * workers), input files are uploaded, the prompt is submitted with the run
 * id as prompt_id, and the worker follows the run on its own WebSocket to
 * that backend (one per backend and worker, a stable clientId), with
 * /history/ID as the check.  When a run ends the worker records it in
 * PostgreSQL, frees the slot and takes the oldest queued run that fits.
 * Runs that found no room wait in the gateway queue of the zone.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_flowscale_module.h"
#include "ngx_http_flowscale_pg.h"
#include "ngx_http_flowscale_comfy.h"
#include "ngx_http_flowscale_reply.h"
#include "ngx_http_flowscale_dispatch.h"
#include "ngx_http_flowscale_front.h"
#include "ngx_http_flowscale_webhook.h"
#include "ngx_http_flowscale_stats.h"      /* issue 7 */


#define NGX_HTTP_FLOWSCALE_CHECK_INTERVAL   3000   /* history without news */
#define NGX_HTTP_FLOWSCALE_TICK             1000   /* cancel and timeout */
#define NGX_HTTP_FLOWSCALE_LEADER_INTERVAL  250
#define NGX_HTTP_FLOWSCALE_LEADER_TIMEOUT   900
#define NGX_HTTP_FLOWSCALE_COMFY_TIMEOUT    60000
#define NGX_HTTP_FLOWSCALE_RETRY_DELAY      1000
#define NGX_HTTP_FLOWSCALE_LOST_AFTER       3
#define NGX_HTTP_FLOWSCALE_SILENCE          10000  /* then ask its /queue */




typedef enum {
    NGX_HTTP_FLOWSCALE_JOB_WAITING = 0,   /* for the link to open */
    NGX_HTTP_FLOWSCALE_JOB_CLAIMING,      /* recording its backend */
    NGX_HTTP_FLOWSCALE_JOB_UPLOADING,
    NGX_HTTP_FLOWSCALE_JOB_SUBMITTING,
    NGX_HTTP_FLOWSCALE_JOB_FOLLOWING,
    NGX_HTTP_FLOWSCALE_JOB_ATTACHING,           /* after a restart */
    NGX_HTTP_FLOWSCALE_JOB_FINISHING
} ngx_http_flowscale_job_state_e;


typedef struct {
    char                           *input;
    char                           *node;
    char                           *slot;
    ngx_str_t                       filename;
    ngx_str_t                       content_type;
    ngx_str_t                       data;
} ngx_http_flowscale_job_file_t;


struct ngx_http_flowscale_job_s {
    ngx_rbtree_node_t               node;       /* by run id, per worker */
    ngx_queue_t                     queue;      /* waiting for the link */

    ngx_pool_t                     *pool;
    ngx_log_t                      *log;
    ngx_str_t                       id;
    ngx_http_flowscale_loc_conf_t  *flcf;
    ngx_http_flowscale_link_t      *link;

    ngx_str_t                       prompt;     /* JSON text */
    json_t                         *graph;      /* parsed, for uploads */
    ngx_array_t                     files;      /* job_file_t */
    ngx_uint_t                      next_file;

    ngx_http_flowscale_job_state_e  state;
    ngx_http_flowscale_comfy_req_t *req;
    ngx_http_flowscale_pg_query_t  *query;
    ngx_event_t                     check;
    ngx_msec_t                      last_event;

    ngx_http_flowscale_status_e     status;     /* when finishing */
    json_t                         *outputs;
    json_t                         *error;

    fs_file_t                      *owned_files;  /* from a request */
    size_t                          owned_nfiles;

    ngx_http_flowscale_submitted_pt submitted;
    void                           *data;

    ngx_msec_t                      started_msec;
    ngx_msec_t                      progress_saved;
    u_char                          progress[128];  /* JSON, or "" */
    ngx_msec_t                      history_at; /* last look at it */
    ngx_uint_t                      failures;   /* history unanswered */

    unsigned                        started:1;
    unsigned                        done_seen:1;
    unsigned                        attached:1; /* not on the backend */
};




typedef struct {
    ngx_array_t                     links;      /* link_t *, stable */
    ngx_rbtree_t                    jobs;
    ngx_rbtree_node_t               sentinel;
    ngx_event_t                     leader;
    ngx_http_flowscale_zone_t      *zone;
    ngx_http_flowscale_main_conf_t *fmcf;
    ngx_log_t                      *log;
    ngx_uint_t                      turn;       /* next deployment to serve */
    ngx_uint_t                      rr;         /* where backend ties start */
} ngx_http_flowscale_dispatcher_t;


static ngx_int_t ngx_http_flowscale_add_links(ngx_cycle_t *cycle,
    ngx_http_upstream_srv_conf_t *uscf);
static ngx_int_t ngx_http_flowscale_link_slot(ngx_http_flowscale_link_t *link);
static void ngx_http_flowscale_job_backend_lost(ngx_http_flowscale_job_t *job);
static ngx_uint_t ngx_http_flowscale_job_backend_down(
    ngx_http_flowscale_job_t *job);
static ngx_http_flowscale_link_t *ngx_http_flowscale_reserve(
    ngx_http_flowscale_loc_conf_t *flcf, ngx_str_t *id);
static ngx_http_flowscale_link_t *ngx_http_flowscale_reserve_locked(
    ngx_http_flowscale_loc_conf_t *flcf, ngx_http_flowscale_run_t *run);
static void ngx_http_flowscale_release(ngx_http_flowscale_link_t *link);
static ngx_http_flowscale_job_t *ngx_http_flowscale_job_create(
    ngx_http_flowscale_loc_conf_t *flcf, ngx_str_t *id,
    ngx_http_flowscale_link_t *link);
static void ngx_http_flowscale_job_free(ngx_http_flowscale_job_t *job);
static void ngx_http_flowscale_job_start(ngx_http_flowscale_job_t *job);
static void ngx_http_flowscale_link_connect(ngx_http_flowscale_link_t *link);
static void ngx_http_flowscale_link_open(void *data);
static void ngx_http_flowscale_link_message(void *data, u_char *text,
    size_t len);
static void ngx_http_flowscale_link_closed(void *data, ngx_int_t rc);
static void ngx_http_flowscale_link_reconnect(ngx_event_t *ev);
static void ngx_http_flowscale_job_upload(ngx_http_flowscale_job_t *job);
static void ngx_http_flowscale_job_uploaded(void *data, ngx_int_t rc,
    ngx_uint_t status, ngx_str_t *body);
static void ngx_http_flowscale_job_submit(ngx_http_flowscale_job_t *job);
static ngx_int_t ngx_http_flowscale_job_prompt(ngx_http_flowscale_job_t *job,
    const char *text);
static void ngx_http_flowscale_job_submitted(void *data, ngx_int_t rc,
    ngx_uint_t status, ngx_str_t *body);
static void ngx_http_flowscale_job_lost(ngx_http_flowscale_job_t *job,
    const char *why);
static void ngx_http_flowscale_comfy_ignore(void *data, ngx_int_t rc,
    ngx_uint_t status, ngx_str_t *body);
static void ngx_http_flowscale_job_event(ngx_http_flowscale_job_t *job,
    fs_ws_event_t *ev);
static void ngx_http_flowscale_job_check(ngx_event_t *ev);
static void ngx_http_flowscale_job_attached(void *data, ngx_int_t rc,
    ngx_uint_t status, ngx_str_t *body);
static void ngx_http_flowscale_job_recheck(ngx_http_flowscale_job_t *job);
static ngx_uint_t ngx_http_flowscale_job_canceled(
    ngx_http_flowscale_job_t *job);
static void ngx_http_flowscale_job_progress(ngx_http_flowscale_job_t *job,
    fs_ws_event_t *ev);
static void ngx_http_flowscale_job_output(ngx_http_flowscale_job_t *job,
    fs_ws_event_t *ev);
static void ngx_http_flowscale_job_history(void *data, ngx_int_t rc,
    ngx_uint_t status, ngx_str_t *body);
static void ngx_http_flowscale_job_finish(ngx_http_flowscale_job_t *job,
    ngx_http_flowscale_status_e status, json_t *outputs, json_t *error);
static void ngx_http_flowscale_job_record(ngx_http_flowscale_job_t *job);
static void ngx_http_flowscale_job_recorded(void *data, PGresult *res,
    const char *error);
static void ngx_http_flowscale_job_retry_record(ngx_event_t *ev);
static char *ngx_http_flowscale_pstrdup(ngx_pool_t *pool, const char *s);
static void ngx_http_flowscale_job_notify(ngx_http_flowscale_job_t *job,
    ngx_int_t rc, json_t *problem);
static ngx_http_flowscale_job_t *ngx_http_flowscale_job_find(ngx_str_t *id);
static void ngx_http_flowscale_kick(void);
static ngx_int_t ngx_http_flowscale_job_claim(ngx_http_flowscale_job_t *job,
    ngx_uint_t fetch);
static void ngx_http_flowscale_claimed(void *data, PGresult *res,
    const char *error);
static ngx_int_t ngx_http_flowscale_job_read(ngx_http_flowscale_job_t *job,
    PGresult *res);
static void ngx_http_flowscale_backend_full(ngx_http_flowscale_link_t *link,
    ngx_http_flowscale_loc_conf_t *flcf);
static void ngx_http_flowscale_forget(ngx_str_t *id);
static void ngx_http_flowscale_leader(ngx_event_t *ev);
static void ngx_http_flowscale_adopt(void);
static void ngx_http_flowscale_release_named(ngx_str_t *name);
static void ngx_http_flowscale_sql_update(ngx_http_flowscale_job_t *job,
    const char *sql, ngx_uint_t n, const char **params);
static void ngx_http_flowscale_sql_ignore(void *data, PGresult *res,
    const char *error);


static ngx_http_flowscale_dispatcher_t  ngx_http_flowscale_dispatcher;


ngx_int_t
ngx_http_flowscale_dispatch_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                        i;
    ngx_http_flowscale_loc_conf_t   **flcfp;
    ngx_http_flowscale_dispatcher_t  *ds = &ngx_http_flowscale_dispatcher;

    ngx_memzero(ds, sizeof(ngx_http_flowscale_dispatcher_t));

    ds->fmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                                   ngx_http_flowscale_module);
    ds->log = cycle->log;

    if (ds->fmcf == NULL || ds->fmcf->deployments.nelts == 0) {
        return NGX_OK;
    }

    ds->zone = ngx_http_flowscale_zone_get(cycle);

    if (ngx_array_init(&ds->links, cycle->pool, 4,
                       sizeof(ngx_http_flowscale_link_t *))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_rbtree_init(&ds->jobs, &ds->sentinel, ngx_rbtree_insert_value);

    flcfp = ds->fmcf->deployments.elts;

    for (i = 0; i < ds->fmcf->deployments.nelts; i++) {
        if (ngx_http_flowscale_add_links(cycle, flcfp[i]->backend)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    ds->leader.handler = ngx_http_flowscale_leader;
    ds->leader.log = cycle->log;
    ds->leader.data = ds;
    ds->leader.cancelable = 1;

    ngx_add_timer(&ds->leader, NGX_HTTP_FLOWSCALE_LEADER_INTERVAL);

    return NGX_OK;
}


void
ngx_http_flowscale_dispatch_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_flowscale_dispatcher_t  *ds = &ngx_http_flowscale_dispatcher;

    if (ds->zone == NULL) {
        return;
    }

    ngx_http_flowscale_runs_lock(ds->zone);

    if (ds->zone->sh->leader == ngx_pid) {
        ds->zone->sh->leader = 0;
    }

    ngx_http_flowscale_runs_unlock(ds->zone);
}


/* one link per address of every server of the upstream, once per worker */

static ngx_int_t
ngx_http_flowscale_add_links(ngx_cycle_t *cycle,
    ngx_http_upstream_srv_conf_t *uscf)
{
    ngx_uint_t                        i, j;
    ngx_http_flowscale_link_t        *link, **links;
    ngx_http_upstream_server_t       *server;
    ngx_http_flowscale_dispatcher_t  *ds = &ngx_http_flowscale_dispatcher;

    links = ds->links.elts;

    for (i = 0; i < ds->links.nelts; i++) {
        if (links[i]->upstream == uscf) {
            return NGX_OK;
        }
    }

    server = uscf->servers ? uscf->servers->elts : NULL;

    for (i = 0; server && i < uscf->servers->nelts; i++) {

        if (server[i].down || server[i].backup) {
            continue;
        }

        for (j = 0; j < server[i].naddrs; j++) {
            links = ngx_array_push(&ds->links);
            link = ngx_pcalloc(cycle->pool, sizeof(ngx_http_flowscale_link_t));
            if (links == NULL || link == NULL) {
                return NGX_ERROR;
            }

            *links = link;

            link->upstream = uscf;
            link->weight = server[i].weight ? server[i].weight : 1;
            link->max_fails = server[i].max_fails ? server[i].max_fails : 1;
            link->peer.sockaddr = server[i].addrs[j].sockaddr;
            link->peer.socklen = server[i].addrs[j].socklen;
            /* NUL-terminated: it is a libpq parameter too */
            link->peer.name.len = server[i].addrs[j].name.len;
            link->peer.name.data = ngx_pnalloc(cycle->pool,
                                               link->peer.name.len + 1);
            if (link->peer.name.data == NULL) {
                return NGX_ERROR;
            }

            ngx_cpystrn(link->peer.name.data, server[i].addrs[j].name.data,
                        link->peer.name.len + 1);
            ngx_queue_init(&link->waiting);

            link->client_id.data = ngx_pnalloc(cycle->pool, 64);
            link->ws_path.data = ngx_pnalloc(cycle->pool, 96);
            if (link->client_id.data == NULL || link->ws_path.data == NULL) {
                return NGX_ERROR;
            }

            /* stable per worker and backend: a reconnect gets the events */
            link->client_id.len = ngx_sprintf(link->client_id.data,
                                              "flowscale-%P-%ui-%ui", ngx_pid,
                                              (ngx_uint_t) ngx_random(),
                                              ds->links.nelts)
                                  - link->client_id.data;
            link->ws_path.len = ngx_sprintf(link->ws_path.data,
                                            "/ws?clientId=%V",
                                            &link->client_id)
                                - link->ws_path.data;

            link->reconnect.handler = ngx_http_flowscale_link_reconnect;
            link->reconnect.data = link;
            link->reconnect.log = cycle->log;
            link->reconnect.cancelable = 1;

            if (ngx_http_flowscale_link_slot(link) != NGX_OK) {
                ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                              "flowscale: more than %d backends",
                              NGX_HTTP_FLOWSCALE_MAX_BACKENDS);
                return NGX_ERROR;
            }
        }
    }

    return NGX_OK;
}


/* the link's entry among the zone's backends, shared by all workers */

static ngx_int_t
ngx_http_flowscale_link_slot(ngx_http_flowscale_link_t *link)
{
    ngx_http_flowscale_backend_slot_t  *slot;
    ngx_http_flowscale_dispatcher_t    *ds = &ngx_http_flowscale_dispatcher;

    ngx_http_flowscale_runs_lock(ds->zone);
    slot = ngx_http_flowscale_runs_backend(ds->zone, &link->peer.name);
    ngx_http_flowscale_runs_unlock(ds->zone);

    if (slot == NULL) {
        return NGX_ERROR;
    }

    link->slot = slot - ds->zone->sh->backends;

    return NGX_OK;
}


ngx_int_t
ngx_http_flowscale_dispatch_new(ngx_http_flowscale_loc_conf_t *flcf,
    ngx_str_t *id, const char *prompt, fs_file_t *files, size_t nfiles,
    ngx_http_flowscale_submitted_pt submitted, void *data,
    ngx_http_flowscale_job_t **jobp)
{
    size_t                          i;
    ngx_http_flowscale_job_t       *job;
    ngx_http_flowscale_link_t      *link;
    ngx_http_flowscale_job_file_t  *f;
    fs_input_t                     *in;

    *jobp = NULL;

    link = ngx_http_flowscale_reserve(flcf, id);
    if (link == NULL) {
        ngx_http_flowscale_enqueue(id);
        return NGX_OK;
    }

    job = ngx_http_flowscale_job_create(flcf, id, link);
    if (job == NULL) {
        goto requeue;
    }

    if (ngx_http_flowscale_job_prompt(job, prompt) != NGX_OK) {
        ngx_http_flowscale_job_free(job);
        goto requeue;
    }

    for (i = 0; i < nfiles; i++) {
        in = ngx_http_flowscale_find_input(flcf->deployment, files[i].input);

        f = ngx_array_push(&job->files);
        if (f == NULL || in == NULL) {
            ngx_http_flowscale_job_free(job);
            goto requeue;
        }

        /* the job keeps the bytes; the request's copy is freed with it */
        f->input = files[i].input;
        f->node = in->node;
        f->slot = in->input;
        f->filename.data = (u_char *) files[i].filename;
        f->filename.len = ngx_strlen(files[i].filename);
        f->content_type.data = (u_char *) files[i].content_type;
        f->content_type.len = ngx_strlen(files[i].content_type);
        f->data.data = files[i].data;
        f->data.len = files[i].len;
    }

    job->owned_files = files;
    job->owned_nfiles = nfiles;
    job->submitted = submitted;
    job->data = data;
    *jobp = job;

    /*
     * Alone, the zone's count is exact and the backend is recorded once
     * ComfyUI took the prompt; with other fronts about, PostgreSQL checks
     * the depth and records the backend first.
     */
    if (ngx_http_flowscale_fronts() == 1) {
        ngx_http_flowscale_job_start(job);
        return NGX_AGAIN;
    }

    if (ngx_http_flowscale_job_claim(job, 0) != NGX_OK) {
        /* the files stay the request's */
        job->owned_files = NULL;
        job->owned_nfiles = 0;
        job->submitted = NULL;
        ngx_http_flowscale_job_free(job);
        *jobp = NULL;
        goto requeue;
    }

    return NGX_AGAIN;

requeue:

    ngx_http_flowscale_release(link);
    ngx_http_flowscale_requeue(id);

    return NGX_OK;
}


ngx_array_t *
ngx_http_flowscale_dispatch_links(void)
{
    return &ngx_http_flowscale_dispatcher.links;
}


ngx_http_flowscale_peer_t *
ngx_http_flowscale_dispatch_peer(ngx_str_t *name)
{
    ngx_uint_t                        i;
    ngx_http_flowscale_link_t       **link;
    ngx_http_flowscale_dispatcher_t  *ds = &ngx_http_flowscale_dispatcher;

    link = ds->links.elts;

    for (i = 0; i < ds->links.nelts; i++) {
        if (link[i]->peer.name.len == name->len
            && ngx_strncmp(link[i]->peer.name.data, name->data, name->len)
               == 0)
        {
            return &link[i]->peer;
        }
    }

    return NULL;
}


/*
 * After a restart: a run PostgreSQL says was handed to backend NAME.  If
 * the backend still has it, this worker follows it (by /history: its
 * events went to a client that is gone); if it finished there, it is
 * recorded; otherwise it runs again.
 */

ngx_int_t
ngx_http_flowscale_dispatch_attach(ngx_http_flowscale_loc_conf_t *flcf,
    ngx_str_t *id, ngx_str_t *backend, ngx_uint_t counted)
{
    ngx_uint_t                  i;
    ngx_str_t                   path;
    ngx_http_flowscale_run_t   *run;
    ngx_http_flowscale_job_t   *job;
    ngx_http_flowscale_link_t **link, *found;
    ngx_http_flowscale_dispatcher_t  *ds = &ngx_http_flowscale_dispatcher;

    found = NULL;
    link = ds->links.elts;

    for (i = 0; i < ds->links.nelts; i++) {
        if (link[i]->upstream == flcf->backend
            && link[i]->peer.name.len == backend->len
            && ngx_strncmp(link[i]->peer.name.data, backend->data,
                           backend->len) == 0)
        {
            found = link[i];
            break;
        }
    }

    if (found == NULL) {
        /* that backend left the configuration: run it elsewhere */
        ngx_http_flowscale_enqueue(id);
        return NGX_OK;
    }

    ngx_http_flowscale_runs_lock(ds->zone);

    if (!counted) {
        ds->zone->sh->backends[found->slot].outstanding++;
    }

    run = ngx_http_flowscale_runs_find(ds->zone, id->data, id->len);

    if (run) {
        ngx_http_flowscale_runs_flying(ds->zone, run);
        run->owner = ngx_pid;
    }

    ngx_http_flowscale_runs_unlock(ds->zone);

    job = ngx_http_flowscale_job_create(flcf, id, found);
    if (job == NULL) {
        ngx_http_flowscale_release(found);
        ngx_http_flowscale_enqueue(id);
        return NGX_ERROR;
    }

    job->state = NGX_HTTP_FLOWSCALE_JOB_ATTACHING;
    ngx_str_set(&path, "/queue");

    job->req = ngx_http_flowscale_comfy_request(&found->peer, "GET", &path,
                   NULL, NULL, NGX_HTTP_FLOWSCALE_COMFY_TIMEOUT,
                   ngx_http_flowscale_job_attached, job, job->log);

    if (job->req == NULL) {
        ngx_http_flowscale_job_lost(job, "cannot attach");
    }

    return NGX_OK;
}


static void
ngx_http_flowscale_job_recheck(ngx_http_flowscale_job_t *job)
{
    ngx_str_t  path;

    ngx_str_set(&path, "/queue");

    job->state = NGX_HTTP_FLOWSCALE_JOB_ATTACHING;
    job->req = ngx_http_flowscale_comfy_request(&job->link->peer, "GET",
                   &path, NULL, NULL, NGX_HTTP_FLOWSCALE_COMFY_TIMEOUT,
                   ngx_http_flowscale_job_attached, job, job->log);

    if (job->req == NULL) {
        job->state = NGX_HTTP_FLOWSCALE_JOB_FOLLOWING;
        ngx_add_timer(&job->check, NGX_HTTP_FLOWSCALE_TICK);
    }
}


/* {"queue_running": [[number, id, ...]], "queue_pending": [...]} */

static void
ngx_http_flowscale_job_attached(void *data, ngx_int_t rc, ngx_uint_t status,
    ngx_str_t *body)
{
    ngx_http_flowscale_job_t *job = data;

    size_t       i;
    json_t      *queue, *item;
    ngx_uint_t   there;
    const char  *lists[] = { "queue_running", "queue_pending" }, *id;

    job->req = NULL;

    if (rc != NGX_OK || status != NGX_HTTP_OK) {
        ngx_http_flowscale_job_backend_lost(job);
        return;
    }

    queue = json_loadb((char *) body->data, body->len,
                       JSON_DECODE_INT_AS_REAL, NULL);
    there = 0;

    for (i = 0; i < 2 && !there; i++) {
        size_t  j;

        json_array_foreach(json_object_get(queue, lists[i]), j, item) {
            id = json_string_value(json_array_get(item, 1));

            if (id && ngx_strlen(id) == job->id.len
                && ngx_strncmp(id, job->id.data, job->id.len) == 0)
            {
                there = 1;
                break;
            }
        }
    }

    json_decref(queue);

    /* followed by its history: queued or running there, or just ended */
    job->state = NGX_HTTP_FLOWSCALE_JOB_FOLLOWING;
    job->last_event = ngx_current_msec;
    job->done_seen = !there;
    job->attached = !there;

    ngx_http_flowscale_job_check(&job->check);
}


void
ngx_http_flowscale_dispatch_detach(ngx_http_flowscale_job_t *job)
{
    job->submitted = NULL;
    job->data = NULL;
}


/*
 * The capable link with the fewest outstanding runs per weight below the
 * depth; its slot is taken in the zone, so all workers agree.
 */

static ngx_http_flowscale_link_t *
ngx_http_flowscale_reserve(ngx_http_flowscale_loc_conf_t *flcf,
    ngx_str_t *id)
{
    ngx_http_flowscale_run_t         *run;
    ngx_http_flowscale_link_t        *link;
    ngx_http_flowscale_dispatcher_t  *ds = &ngx_http_flowscale_dispatcher;

    ngx_http_flowscale_runs_lock(ds->zone);

    run = ngx_http_flowscale_runs_find(ds->zone, id->data, id->len);
    link = ngx_http_flowscale_reserve_locked(flcf, run);

    ngx_http_flowscale_runs_unlock(ds->zone);

    return link;
}


/* with the zone locked; run may be NULL */

static ngx_http_flowscale_link_t *
ngx_http_flowscale_reserve_locked(ngx_http_flowscale_loc_conf_t *flcf,
    ngx_http_flowscale_run_t *run)
{
    ngx_uint_t                              i, j, n;
    uint64_t                                capable;
    ngx_http_flowscale_link_t             **link, *best;
    ngx_http_flowscale_backend_slot_t      *slot, *best_slot;
    ngx_http_flowscale_deployment_state_t  *dst;
    ngx_http_flowscale_dispatcher_t        *ds = &ngx_http_flowscale_dispatcher;

    best = NULL;
    best_slot = NULL;
    link = ds->links.elts;

    /* only backends known to have every node class and model it needs */
    dst = ngx_http_flowscale_runs_deployment(ds->zone, &flcf->project,
                                             &flcf->name);
    capable = (dst && dst->generation == ds->zone->sh->generation)
              ? dst->capable : 0;

    /* from a rotating start, so that ties take turns */
    n = ds->links.nelts;
    ds->rr++;

    for (j = 0; j < n; j++) {
        i = (ds->rr + j) % n;

        if (link[i]->upstream != flcf->backend
            || !ngx_http_flowscale_health_usable(flcf, link[i], capable))
        {
            continue;
        }

        slot = &ds->zone->sh->backends[link[i]->slot];

        /* with the runs other nginx fronts put there */
        if (slot->outstanding + slot->foreign >= flcf->backend_depth) {
            continue;
        }

        if (best == NULL
            || (slot->outstanding + slot->foreign) * best->weight
               < (best_slot->outstanding + best_slot->foreign)
                 * link[i]->weight)
        {
            best = link[i];
            best_slot = slot;
        }
    }

    if (best) {
        best_slot->outstanding++;

        if (run) {
            ngx_http_flowscale_runs_flying(ds->zone, run);
            run->owner = ngx_pid;
            ngx_cpystrn(run->backend, best->peer.name.data,
                        ngx_min(best->peer.name.len + 1,
                                sizeof(run->backend)));
        }
    }

    return best;
}


static void
ngx_http_flowscale_release_named(ngx_str_t *name)
{
    ngx_http_flowscale_backend_slot_t  *slot;
    ngx_http_flowscale_dispatcher_t    *ds = &ngx_http_flowscale_dispatcher;

    if (name->len == 0) {
        return;
    }

    ngx_http_flowscale_runs_lock(ds->zone);

    slot = ngx_http_flowscale_runs_backend(ds->zone, name);

    if (slot && slot->outstanding > 0) {
        slot->outstanding--;
    }

    ngx_http_flowscale_runs_unlock(ds->zone);
}


static void
ngx_http_flowscale_release(ngx_http_flowscale_link_t *link)
{
    ngx_http_flowscale_release_named(&link->peer.name);
}


/* back to the head of the gateway queue: it was next already */

void
ngx_http_flowscale_requeue(ngx_str_t *id)
{
    ngx_http_flowscale_run_t         *run;
    ngx_http_flowscale_dispatcher_t  *ds = &ngx_http_flowscale_dispatcher;

    ngx_http_flowscale_runs_lock(ds->zone);

    run = ngx_http_flowscale_runs_find(ds->zone, id->data, id->len);

    if (run && run->status == NGX_HTTP_FLOWSCALE_QUEUED && !run->pending) {
        run->submitted = 0;
        run->owner = 0;
        run->backend[0] = '\0';
        ngx_http_flowscale_runs_enqueue(ds->zone, run, 1);
    }

    ngx_http_flowscale_runs_unlock(ds->zone);
}


void
ngx_http_flowscale_enqueue(ngx_str_t *id)
{
    ngx_http_flowscale_run_t         *run;
    ngx_http_flowscale_dispatcher_t  *ds = &ngx_http_flowscale_dispatcher;

    ngx_http_flowscale_runs_lock(ds->zone);

    run = ngx_http_flowscale_runs_find(ds->zone, id->data, id->len);

    if (run) {
        ngx_http_flowscale_runs_enqueue(ds->zone, run, 0);
    }

    ngx_http_flowscale_runs_unlock(ds->zone);
}


static ngx_http_flowscale_job_t *
ngx_http_flowscale_job_create(ngx_http_flowscale_loc_conf_t *flcf,
    ngx_str_t *id, ngx_http_flowscale_link_t *link)
{
    ngx_pool_t                       *pool;
    ngx_http_flowscale_job_t         *job;
    ngx_http_flowscale_dispatcher_t  *ds = &ngx_http_flowscale_dispatcher;

    pool = ngx_create_pool(4096, ds->log);
    if (pool == NULL) {
        return NULL;
    }

    job = ngx_pcalloc(pool, sizeof(ngx_http_flowscale_job_t));
    if (job == NULL) {
        ngx_destroy_pool(pool);
        return NULL;
    }

    job->pool = pool;
    job->log = ds->log;
    job->flcf = flcf;
    job->link = link;
    link->jobs++;

    job->id.len = id->len;
    job->id.data = ngx_pnalloc(pool, id->len + 1);

    if (job->id.data == NULL
        || ngx_array_init(&job->files, pool, 1,
                          sizeof(ngx_http_flowscale_job_file_t))
           != NGX_OK)
    {
        ngx_destroy_pool(pool);
        return NULL;
    }

    ngx_cpystrn(job->id.data, id->data, id->len + 1);

    job->node.key = ngx_murmur_hash2(job->id.data, job->id.len);
    ngx_rbtree_insert(&ds->jobs, &job->node);

    /* a pending check keeps an exiting worker until its runs are done */
    job->check.handler = ngx_http_flowscale_job_check;
    job->check.data = job;
    job->check.log = ds->log;

    return job;
}


static void
ngx_http_flowscale_job_free(ngx_http_flowscale_job_t *job)
{
    ngx_http_flowscale_dispatcher_t  *ds = &ngx_http_flowscale_dispatcher;

    ngx_rbtree_delete(&ds->jobs, &job->node);
    job->link->jobs--;

    if (job->queue.next) {
        ngx_queue_remove(&job->queue);
    }

    if (job->check.timer_set) {
        ngx_del_timer(&job->check);
    }

    if (job->req) {
        ngx_http_flowscale_comfy_cancel(job->req);
    }

    if (job->query) {
        ngx_http_flowscale_pg_cancel(job->query);
    }

    fs_files_free(job->owned_files, job->owned_nfiles);

    json_decref(job->graph);
    json_decref(job->outputs);
    json_decref(job->error);

    ngx_destroy_pool(job->pool);
}


static void
ngx_http_flowscale_job_start(ngx_http_flowscale_job_t *job)
{
    ngx_http_flowscale_link_t  *link = job->link;

    if (!link->open) {
        job->state = NGX_HTTP_FLOWSCALE_JOB_WAITING;
        ngx_queue_insert_tail(&link->waiting, &job->queue);

        if (link->ws == NULL && !link->reconnect.timer_set) {
            ngx_http_flowscale_link_connect(link);
        }

        return;
    }

    job->next_file = 0;
    ngx_http_flowscale_job_upload(job);
}


static void
ngx_http_flowscale_link_connect(ngx_http_flowscale_link_t *link)
{
    link->ws = ngx_http_flowscale_ws_connect(&link->peer, &link->ws_path,
                   5000, ngx_http_flowscale_link_open,
                   ngx_http_flowscale_link_message,
                   ngx_http_flowscale_link_closed, link,
                   ngx_http_flowscale_dispatcher.log);

    if (link->ws == NULL) {
        ngx_http_flowscale_link_closed(link, NGX_ERROR);
    }
}


static void
ngx_http_flowscale_link_open(void *data)
{
    ngx_http_flowscale_link_t *link = data;

    ngx_queue_t               *q;
    ngx_http_flowscale_job_t  *job;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_http_flowscale_dispatcher.log, 0,
                   "flowscale: link to %V open", &link->peer.name);

    link->open = 1;

    while (!ngx_queue_empty(&link->waiting)) {
        q = ngx_queue_head(&link->waiting);
        ngx_queue_remove(q);
        q->next = NULL;

        job = ngx_queue_data(q, ngx_http_flowscale_job_t, queue);
        ngx_http_flowscale_job_start(job);
    }
}


static void
ngx_http_flowscale_link_message(void *data, u_char *text, size_t len)
{
    ngx_str_t                  id;
    fs_ws_event_t              ev;
    ngx_http_flowscale_job_t  *job;

    if (fs_ws_event_parse((char *) text, len, &ev) != 0) {
        return;
    }

    if (ev.prompt_id[0]) {
        id.data = (u_char *) ev.prompt_id;
        id.len = ngx_strlen(ev.prompt_id);

        job = ngx_http_flowscale_job_find(&id);

        if (job && job->state == NGX_HTTP_FLOWSCALE_JOB_FOLLOWING) {
            ngx_http_flowscale_job_event(job, &ev);
        }
    }

    fs_ws_event_clear(&ev);
}


/*
 * The link is gone: jobs waiting for it go back to the queue; jobs on the
 * backend are followed by their /history checks until it is back.
 */

static void
ngx_http_flowscale_link_closed(void *data, ngx_int_t rc)
{
    ngx_http_flowscale_link_t *link = data;

    ngx_queue_t               *q;
    ngx_http_flowscale_job_t  *job;

    ngx_log_error(NGX_LOG_WARN, ngx_http_flowscale_dispatcher.log, 0,
                  "flowscale: backend %V: event stream %s", &link->peer.name,
                  link->open ? "closed" : "cannot be opened");

    link->ws = NULL;
    link->open = 0;

    while (!ngx_queue_empty(&link->waiting)) {
        q = ngx_queue_head(&link->waiting);
        ngx_queue_remove(q);
        q->next = NULL;

        job = ngx_queue_data(q, ngx_http_flowscale_job_t, queue);
        ngx_http_flowscale_job_lost(job, "backend unreachable");
    }

    /* only runs being followed need the stream back; others open it */
    if (link->jobs && !ngx_exiting && !ngx_terminate && !ngx_quit) {
        ngx_add_timer(&link->reconnect, NGX_HTTP_FLOWSCALE_RETRY_DELAY);
    }
}


static void
ngx_http_flowscale_link_reconnect(ngx_event_t *ev)
{
    ngx_http_flowscale_link_t  *link = ev->data;

    if (link->ws == NULL) {
        ngx_http_flowscale_link_connect(link);
    }
}


static void
ngx_http_flowscale_job_upload(ngx_http_flowscale_job_t *job)
{
    ngx_str_t                       path, body, type, subfolder;
    ngx_http_flowscale_job_file_t  *f;

    if (job->next_file == job->files.nelts) {
        ngx_http_flowscale_job_submit(job);
        return;
    }

    job->state = NGX_HTTP_FLOWSCALE_JOB_UPLOADING;

    f = (ngx_http_flowscale_job_file_t *) job->files.elts + job->next_file;

    ngx_str_set(&path, "/upload/image");
    ngx_str_set(&subfolder, "flowscale");

    if (ngx_http_flowscale_comfy_upload_body(job->pool, &f->filename,
                                             &f->content_type, f->data.data,
                                             f->data.len, &subfolder, &body,
                                             &type)
        != NGX_OK)
    {
        ngx_http_flowscale_job_lost(job, "out of memory");
        return;
    }

    job->req = ngx_http_flowscale_comfy_request(&job->link->peer, "POST",
                   &path, &type, &body, NGX_HTTP_FLOWSCALE_COMFY_TIMEOUT,
                   ngx_http_flowscale_job_uploaded, job, job->log);

    if (job->req == NULL) {
        ngx_http_flowscale_job_lost(job, "cannot upload");
    }
}


/* {"name": "in (1).png", "subfolder": "flowscale", "type": "input"} */

static void
ngx_http_flowscale_job_uploaded(void *data, ngx_int_t rc, ngx_uint_t status,
    ngx_str_t *body)
{
    ngx_http_flowscale_job_t *job = data;

    char                           *name;
    json_t                         *reply, *node;
    const char                     *file, *sub;
    ngx_http_flowscale_job_file_t  *f;

    job->req = NULL;

    reply = (rc == NGX_OK && status == NGX_HTTP_OK)
            ? json_loadb((char *) body->data, body->len, 0, NULL) : NULL;

    file = json_string_value(json_object_get(reply, "name"));
    sub = json_string_value(json_object_get(reply, "subfolder"));

    if (file == NULL) {
        json_decref(reply);
        ngx_log_error(NGX_LOG_ERR, job->log, 0, "flowscale: backend %V "
                      "refused the upload of run %V (status %ui)",
                      &job->link->peer.name, &job->id, status);
        ngx_http_flowscale_job_lost(job, "upload refused");
        return;
    }

    f = (ngx_http_flowscale_job_file_t *) job->files.elts + job->next_file;

    /* LoadImage takes "subfolder/name": always the name ComfyUI returned */
    name = ngx_pnalloc(job->pool, ngx_strlen(file) + (sub ? ngx_strlen(sub)
                                                          : 0) + 2);
    if (name == NULL) {
        json_decref(reply);
        ngx_http_flowscale_job_lost(job, "out of memory");
        return;
    }

    if (sub && *sub) {
        ngx_sprintf((u_char *) name, "%s/%s%Z", sub, file);

    } else {
        ngx_sprintf((u_char *) name, "%s%Z", file);
    }

    json_decref(reply);

    /* the graph is parsed only for runs with files */
    if (job->graph == NULL) {
        job->graph = json_loadb((char *) job->prompt.data, job->prompt.len, 0,
                                NULL);
    }

    node = json_object_get(json_object_get(job->graph, f->node), "inputs");

    if (node == NULL
        || json_object_set_new(node, f->slot, json_string(name)) != 0)
    {
        ngx_http_flowscale_job_lost(job, "unreadable prompt");
        return;
    }

    job->next_file++;
    ngx_http_flowscale_job_upload(job);
}


static void
ngx_http_flowscale_job_submit(ngx_http_flowscale_job_t *job)
{
    char       *text;
    ngx_str_t   path, type, body;

    job->state = NGX_HTTP_FLOWSCALE_JOB_SUBMITTING;

    if (job->graph) {
        /* uploaded files changed it */
        text = json_dumps(job->graph, JSON_COMPACT);

        if (text == NULL || ngx_http_flowscale_job_prompt(job, text) != NGX_OK)
        {
            free(text);
            ngx_http_flowscale_job_lost(job, "out of memory");
            return;
        }

        free(text);
    }

    /* ids and the client id are ours: nothing to escape */
    body.len = sizeof("{\"prompt\":,\"client_id\":\"\",\"prompt_id\":\"\"}") - 1
               + job->prompt.len + job->link->client_id.len + job->id.len;
    body.data = ngx_pnalloc(job->pool, body.len);

    if (body.data == NULL) {
        ngx_http_flowscale_job_lost(job, "out of memory");
        return;
    }

    ngx_sprintf(body.data, "{\"prompt\":%V,\"client_id\":\"%V\","
                "\"prompt_id\":\"%V\"}", &job->prompt, &job->link->client_id,
                &job->id);

    ngx_str_set(&path, "/prompt");
    ngx_str_set(&type, "application/json");

    job->req = ngx_http_flowscale_comfy_request(&job->link->peer, "POST",
                   &path, &type, &body, NGX_HTTP_FLOWSCALE_COMFY_TIMEOUT,
                   ngx_http_flowscale_job_submitted, job, job->log);

    if (job->req == NULL) {
        ngx_http_flowscale_job_lost(job, "cannot submit");
    }
}


/* the prompt's JSON text, in the job's pool */

static ngx_int_t
ngx_http_flowscale_job_prompt(ngx_http_flowscale_job_t *job, const char *text)
{
    job->prompt.len = ngx_strlen(text);
    job->prompt.data = ngx_pnalloc(job->pool, job->prompt.len);

    if (job->prompt.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(job->prompt.data, text, job->prompt.len);

    return NGX_OK;
}


static void
ngx_http_flowscale_job_submitted(void *data, ngx_int_t rc, ngx_uint_t status,
    ngx_str_t *body)
{
    ngx_http_flowscale_job_t *job = data;

    int                         accepted;
    long                        number;
    char                       *prompt_id, num[32];
    json_t                     *problem, *error;
    const char                 *params[3];
    ngx_http_flowscale_run_t   *run;
    ngx_http_flowscale_zone_t  *z;

    job->req = NULL;

    if (rc != NGX_OK) {
        ngx_http_flowscale_job_lost(job, "backend unreachable");
        return;
    }

    /* only 200 and 400 speak about the prompt; the rest is the backend's */
    if (status != NGX_HTTP_OK && status != NGX_HTTP_BAD_REQUEST) {
        ngx_log_error(NGX_LOG_WARN, job->log, 0, "flowscale: backend %V "
                      "answered %ui to a prompt", &job->link->peer.name,
                      status);
        ngx_http_flowscale_job_lost(job, "backend error");
        return;
    }

    prompt_id = NULL;
    problem = NULL;
    number = -1;

    accepted = fs_prompt_reply(job->flcf->deployment, (int) status,
                               (char *) body->data, body->len, &prompt_id,
                               &number, &problem) == 0;

    if (!accepted) {
        ngx_log_error(NGX_LOG_WARN, job->log, 0, "flowscale: backend %V "
                      "rejected run %V (status %ui)", &job->link->peer.name,
                      &job->id, status);

        if (prompt_id) {
            /* queued all the same, for outputs nobody asked for: drop it */
            ngx_http_flowscale_backend_drop(&job->link->peer, &job->id,
                                            job->log);
        }

        free(prompt_id);

        error = json_pack("{s:s, s:O?, s:O?}", "type", "rejected",
                          "message", json_object_get(problem, "detail"),
                          "errors", json_object_get(problem, "errors"));

        ngx_http_flowscale_job_notify(job, NGX_DECLINED, problem);
        json_decref(problem);

        ngx_http_flowscale_job_finish(job, NGX_HTTP_FLOWSCALE_FAILED, NULL,
                                      error);
        return;
    }

    free(prompt_id);

    z = ngx_http_flowscale_dispatcher.zone;

    ngx_http_flowscale_runs_lock(z);

    run = ngx_http_flowscale_runs_find(z, job->id.data, job->id.len);
    if (run) {
        run->submitted = 1;
    }

    ngx_http_flowscale_runs_unlock(z);

    job->state = NGX_HTTP_FLOWSCALE_JOB_FOLLOWING;
    job->last_event = ngx_current_msec;
    ngx_add_timer(&job->check, NGX_HTTP_FLOWSCALE_TICK);

    ngx_snprintf((u_char *) num, sizeof(num), "%l%Z", number);

    params[0] = (char *) job->id.data;
    params[1] = (char *) job->link->peer.name.data;
    params[2] = number >= 0 ? num : NULL;

    ngx_http_flowscale_sql_update(job,
        "UPDATE flowscale.runs SET backend = $2, prompt_number = $3 "
        "WHERE id = $1", 3, params);

    ngx_http_flowscale_job_notify(job, NGX_OK, NULL);
}


/*
 * Removes a run from a backend: from its queue, or interrupted if it
 * already started there (by prompt_id, so no other run is touched).
 */

void
ngx_http_flowscale_backend_drop(ngx_http_flowscale_peer_t *peer,
    ngx_str_t *id, ngx_log_t *log)
{
    u_char     buf[160];
    ngx_str_t  path, type, body;

    ngx_str_set(&type, "application/json");
    body.data = buf;

    body.len = ngx_snprintf(buf, sizeof(buf), "{\"delete\": [\"%V\"]}", id)
               - buf;
    ngx_str_set(&path, "/queue");

    (void) ngx_http_flowscale_comfy_request(peer, "POST", &path, &type, &body,
                   NGX_HTTP_FLOWSCALE_COMFY_TIMEOUT,
                   ngx_http_flowscale_comfy_ignore, NULL, log);

    body.len = ngx_snprintf(buf, sizeof(buf), "{\"prompt_id\": \"%V\"}", id)
               - buf;
    ngx_str_set(&path, "/interrupt");

    (void) ngx_http_flowscale_comfy_request(peer, "POST", &path, &type, &body,
                   NGX_HTTP_FLOWSCALE_COMFY_TIMEOUT,
                   ngx_http_flowscale_comfy_ignore, NULL, log);
}


static void
ngx_http_flowscale_comfy_ignore(void *data, ngx_int_t rc, ngx_uint_t status,
    ngx_str_t *body)
{
}


/*
 * The backend failed before the run reached it: the run waits again at
 * the head of the gateway queue, and another backend may take it.
 */

static void
ngx_http_flowscale_job_lost(ngx_http_flowscale_job_t *job, const char *why)
{
    ngx_log_error(NGX_LOG_WARN, job->log, 0, "flowscale: run %V goes back "
                  "to the queue: %s (backend %V)", &job->id, why,
                  &job->link->peer.name);

    ngx_http_flowscale_health_failed(job->link, why);

    ngx_http_flowscale_release(job->link);
    ngx_http_flowscale_requeue(&job->id);

    ngx_http_flowscale_job_notify(job, NGX_ERROR, NULL);
    ngx_http_flowscale_job_free(job);
}


static void
ngx_http_flowscale_job_notify(ngx_http_flowscale_job_t *job, ngx_int_t rc,
    json_t *problem)
{
    ngx_http_flowscale_submitted_pt  submitted;

    submitted = job->submitted;
    job->submitted = NULL;

    if (submitted) {
        submitted(job->data, rc, problem);
    }
}


static void
ngx_http_flowscale_job_event(ngx_http_flowscale_job_t *job,
    fs_ws_event_t *ev)
{
    const char                 *params[1];
    ngx_http_flowscale_run_t   *run;
    ngx_http_flowscale_zone_t  *z;

    z = ngx_http_flowscale_dispatcher.zone;
    job->last_event = ngx_current_msec;

    switch (ev->type) {

    case FS_WS_EXECUTION_START:
    case FS_WS_EXECUTING:
    case FS_WS_EXECUTION_CACHED:
    case FS_WS_PROGRESS:

        ngx_http_flowscale_runs_lock(z);

        run = ngx_http_flowscale_runs_find(z, job->id.data, job->id.len);

        if (run && run->status == NGX_HTTP_FLOWSCALE_QUEUED) {
            run->status = NGX_HTTP_FLOWSCALE_RUNNING;
            run->started = ngx_http_flowscale_now_ms();
            (void) ngx_http_flowscale_runs_event(z, run,
                       NGX_HTTP_FLOWSCALE_EV_STARTED, 0, 0, NULL, NULL, 0);
        }

        if (run && ev->type == FS_WS_PROGRESS) {
            run->progress_value = (int32_t) ev->value;
            run->progress_max = (int32_t) ev->max;
            ngx_cpystrn(run->progress_node, (u_char *) ev->node,
                        sizeof(run->progress_node));
            (void) ngx_http_flowscale_runs_event(z, run,
                       NGX_HTTP_FLOWSCALE_EV_PROGRESS, run->progress_value,
                       run->progress_max, run->progress_node, NULL, 0);
        }

        ngx_http_flowscale_runs_unlock(z);

        if (ev->type == FS_WS_PROGRESS) {
            ngx_http_flowscale_job_progress(job, ev);
        }

        if (!job->started) {
            job->started = 1;
            job->started_msec = ngx_current_msec;
            params[0] = (char *) job->id.data;
            ngx_http_flowscale_sql_update(job,
                "UPDATE flowscale.runs SET status = 'running', "
                "started_at = now() WHERE id = $1 AND status = 'queued'",
                1, params);
        }

        return;

    case FS_WS_EXECUTED:
        ngx_http_flowscale_job_output(job, ev);
        return;

    case FS_WS_DONE:
        /* "executing" with node null: history is written */
        job->done_seen = 1;
        ngx_http_flowscale_job_check(&job->check);
        return;

    default:
        return;
    }
}


/*
 * Progress for the other nginx fronts (GET, event streams): kept as JSON,
 * written to PostgreSQL at most once a second, and with the run's end.
 */

static void
ngx_http_flowscale_job_progress(ngx_http_flowscale_job_t *job,
    fs_ws_event_t *ev)
{
    u_char      *p, *last;
    size_t       len;
    const char  *params[2];

    len = ngx_min(ngx_strlen(ev->node), 16);
    last = job->progress + sizeof(job->progress) - 1;

    p = ngx_slprintf(job->progress, last, "{\"value\":%D,\"max\":%D,"
                     "\"node\":\"", (int32_t) ev->value, (int32_t) ev->max);

    if (last - p < (ssize_t) (6 * len + 2)) {
        job->progress[0] = '\0';
        return;
    }

    p = (u_char *) ngx_escape_json(p, (u_char *) ev->node, len);
    *p++ = '"';
    *p++ = '}';
    *p = '\0';

    if (ngx_current_msec - job->progress_saved < 1000) {
        return;
    }

    job->progress_saved = ngx_current_msec;

    params[0] = (char *) job->id.data;
    params[1] = (char *) job->progress;

    ngx_http_flowscale_sql_update(job,
        "UPDATE flowscale.runs SET progress = $2 WHERE id = $1 "
        "AND status IN ('queued', 'running')", 2, params);
}


/* an output node finished: {"name": ..., "items": [...]} for the stream */

static void
ngx_http_flowscale_job_output(ngx_http_flowscale_job_t *job,
    fs_ws_event_t *ev)
{
    char                       *text;
    json_t                     *items, *data;
    const char                 *name;
    ngx_http_flowscale_run_t   *run;
    ngx_http_flowscale_zone_t  *z;

    name = NULL;
    items = fs_executed_outputs(job->flcf->deployment, ev->node, ev->output,
                                &name);
    if (items == NULL || name == NULL) {
        json_decref(items);
        return;
    }

    data = json_pack("{s:s, s:o}", "name", name, "items", items);
    text = data ? json_dumps(data, JSON_COMPACT) : NULL;
    json_decref(data);

    if (text == NULL) {
        return;
    }

    z = ngx_http_flowscale_dispatcher.zone;

    ngx_http_flowscale_runs_lock(z);

    run = ngx_http_flowscale_runs_find(z, job->id.data, job->id.len);

    if (run) {
        (void) ngx_http_flowscale_runs_event(z, run,
                   NGX_HTTP_FLOWSCALE_EV_OUTPUT, 0, 0, (u_char *) ev->node,
                   (u_char *) text, ngx_strlen(text));
    }

    ngx_http_flowscale_runs_unlock(z);

    free(text);
}


static ngx_uint_t
ngx_http_flowscale_job_backend_down(ngx_http_flowscale_job_t *job)
{
    ngx_uint_t                  down;
    ngx_http_flowscale_zone_t  *z;

    z = ngx_http_flowscale_dispatcher.zone;

    ngx_http_flowscale_runs_lock(z);
    down = z->sh->backends[job->link->slot].down;
    ngx_http_flowscale_runs_unlock(z);

    return down;
}


/*
 * The backend went away with the run on it: it runs again elsewhere, up to
 * flowscale_retries times, then fails as "backend_lost".
 */

static void
ngx_http_flowscale_job_backend_lost(ngx_http_flowscale_job_t *job)
{
    ngx_uint_t                  retry;
    const char                 *params[2];
    ngx_http_flowscale_run_t   *run;
    ngx_http_flowscale_zone_t  *z;

    z = ngx_http_flowscale_dispatcher.zone;
    retry = 0;

    ngx_http_flowscale_runs_lock(z);

    run = ngx_http_flowscale_runs_find(z, job->id.data, job->id.len);

    if (run && run->retries < job->flcf->retries) {
        run->retries++;
        run->status = NGX_HTTP_FLOWSCALE_QUEUED;
        run->started = 0;
        run->progress_max = 0;
        retry = 1;
    }

    ngx_http_flowscale_runs_unlock(z);

    if (!retry) {
        ngx_log_error(NGX_LOG_ERR, job->log, 0, "flowscale: run %V failed: "
                      "backend %V lost", &job->id, &job->link->peer.name);

        ngx_http_flowscale_job_finish(job, NGX_HTTP_FLOWSCALE_FAILED, NULL,
            json_pack("{s:s, s:s}", "type", "backend_lost",
                      "message", "The backend running this run stopped "
                      "answering."));
        return;
    }

    ngx_log_error(NGX_LOG_WARN, job->log, 0, "flowscale: run %V runs again: "
                  "backend %V lost", &job->id, &job->link->peer.name);

    /* only if no newer dispatch has been recorded meanwhile */
    params[0] = (char *) job->id.data;
    params[1] = (char *) job->link->peer.name.data;
    ngx_http_flowscale_sql_update(job,
        "UPDATE flowscale.runs SET status = 'queued', started_at = NULL, "
        "backend = NULL WHERE id = $1 AND status IN ('queued', 'running') "
        "AND backend = $2",
        2, params);

    ngx_http_flowscale_release(job->link);
    ngx_http_flowscale_requeue(&job->id);
    ngx_http_flowscale_job_free(job);

    ngx_http_flowscale_kick();
}


/* DELETE L/runs/ID asked for it, in whatever worker */

static ngx_uint_t
ngx_http_flowscale_job_canceled(ngx_http_flowscale_job_t *job)
{
    ngx_uint_t                  cancel;
    ngx_http_flowscale_run_t   *run;
    ngx_http_flowscale_zone_t  *z;

    z = ngx_http_flowscale_dispatcher.zone;

    ngx_http_flowscale_runs_lock(z);
    run = ngx_http_flowscale_runs_find(z, job->id.data, job->id.len);
    cancel = run ? run->cancel : 0;
    ngx_http_flowscale_runs_unlock(z);

    return cancel;
}


/* /history/ID: the check after "done", and the safety net without events */

static void
ngx_http_flowscale_job_check(ngx_event_t *ev)
{
    ngx_http_flowscale_job_t *job = ev->data;

    u_char     *p;
    ngx_str_t   path;

    if (job->check.timer_set) {
        ngx_del_timer(&job->check);
    }

    if (job->state != NGX_HTTP_FLOWSCALE_JOB_FOLLOWING || job->req) {
        return;
    }

    if (ngx_http_flowscale_job_canceled(job)) {
        ngx_http_flowscale_backend_drop(&job->link->peer, &job->id, job->log);
        ngx_http_flowscale_job_finish(job, NGX_HTTP_FLOWSCALE_CANCELED, NULL,
                                      NULL);
        return;
    }

    if (job->started && job->flcf->run_timeout
        && ngx_current_msec - job->started_msec >= job->flcf->run_timeout)
    {
        ngx_log_error(NGX_LOG_WARN, job->log, 0, "flowscale: run %V timed "
                      "out on backend %V", &job->id, &job->link->peer.name);

        ngx_http_flowscale_backend_drop(&job->link->peer, &job->id, job->log);
        ngx_http_flowscale_job_finish(job, NGX_HTTP_FLOWSCALE_FAILED, NULL,
            json_pack("{s:s, s:s}", "type", "timeout",
                      "message", "The run took longer than this deployment "
                      "allows (flowscale_run_timeout) and was interrupted."));
        return;
    }

    /* news from its events, or a recent look at its history: wait */
    if (!job->done_seen
        && (ngx_current_msec - job->last_event
            < NGX_HTTP_FLOWSCALE_CHECK_INTERVAL
            || ngx_current_msec - job->history_at
               < NGX_HTTP_FLOWSCALE_CHECK_INTERVAL))
    {
        ngx_add_timer(&job->check, NGX_HTTP_FLOWSCALE_TICK);
        return;
    }

    path.data = ngx_pnalloc(job->pool, sizeof("/history/") + job->id.len);
    if (path.data == NULL) {
        ngx_add_timer(&job->check, NGX_HTTP_FLOWSCALE_CHECK_INTERVAL);
        return;
    }

    p = ngx_sprintf(path.data, "/history/%V", &job->id);
    path.len = p - path.data;

    job->req = ngx_http_flowscale_comfy_request(&job->link->peer, "GET",
                   &path, NULL, NULL, NGX_HTTP_FLOWSCALE_COMFY_TIMEOUT,
                   ngx_http_flowscale_job_history, job, job->log);

    if (job->req == NULL) {
        ngx_add_timer(&job->check, NGX_HTTP_FLOWSCALE_CHECK_INTERVAL);
    }
}


static void
ngx_http_flowscale_job_history(void *data, ngx_int_t rc, ngx_uint_t status,
    ngx_str_t *body)
{
    ngx_http_flowscale_job_t *job = data;

    char                 id[NGX_HTTP_FLOWSCALE_RUN_ID_LEN + 1];
    json_t              *outputs, *error;
    fs_history_state_e   state;

    job->req = NULL;

    outputs = NULL;
    error = NULL;
    state = FS_HISTORY_PENDING;

    ngx_cpystrn((u_char *) id, job->id.data, sizeof(id));

    if (rc != NGX_OK) {
        /* the backend does not answer: after a few tries, it is lost */
        ngx_http_flowscale_health_failed(job->link, "history failed");

        if (++job->failures >= NGX_HTTP_FLOWSCALE_LOST_AFTER
            || ngx_http_flowscale_job_backend_down(job))
        {
            ngx_http_flowscale_job_backend_lost(job);
            return;
        }
    }

    if (rc != NGX_OK || status != NGX_HTTP_OK
        || fs_history_parse(job->flcf->deployment, id, (char *) body->data,
                            body->len, &state, &outputs, &error)
           != 0)
    {
        state = FS_HISTORY_PENDING;

    } else {
        job->failures = 0;
    }

    switch (state) {

    case FS_HISTORY_SUCCEEDED:
        ngx_http_flowscale_job_finish(job, NGX_HTTP_FLOWSCALE_SUCCEEDED,
                                      outputs, NULL);
        return;

    case FS_HISTORY_INTERRUPTED:
        if (ngx_http_flowscale_job_canceled(job)) {
            json_decref(error);
            ngx_http_flowscale_job_finish(job, NGX_HTTP_FLOWSCALE_CANCELED,
                                          outputs, NULL);
            return;
        }

        /* fall through */

    case FS_HISTORY_FAILED:
        ngx_http_flowscale_job_finish(job, NGX_HTTP_FLOWSCALE_FAILED, outputs,
                                      error);
        return;

    default:
        json_decref(outputs);
        json_decref(error);

        if (job->attached) {
            /* neither in its queue nor in its history: it never ran */
            ngx_http_flowscale_job_backend_lost(job);
            return;
        }

        if (!job->attached
            && ngx_current_msec - job->last_event
               >= NGX_HTTP_FLOWSCALE_SILENCE)
        {
            /*
             * Silent for long and not in its history: a backend that
             * restarted has forgotten it.  Is it in its queue at all?
             */
            ngx_http_flowscale_job_recheck(job);
            return;
        }

        /* still queued or running there: look again later */
        /* after "done" the history entry is due any moment */
        ngx_add_timer(&job->check, job->done_seen
                                   ? NGX_HTTP_FLOWSCALE_RETRY_DELAY
                                   : NGX_HTTP_FLOWSCALE_TICK);
        job->history_at = ngx_current_msec;
    }
}


/* takes outputs and error */

static void
ngx_http_flowscale_job_finish(ngx_http_flowscale_job_t *job,
    ngx_http_flowscale_status_e status, json_t *outputs, json_t *error)
{
    job->state = NGX_HTTP_FLOWSCALE_JOB_FINISHING;
    job->status = status;
    job->outputs = outputs;
    job->error = error;

    if (job->check.timer_set) {
        ngx_del_timer(&job->check);
    }

    ngx_http_flowscale_job_record(job);
}


/* PostgreSQL first: the live view never shows what is not durable */

static void
ngx_http_flowscale_job_record(ngx_http_flowscale_job_t *job)
{
    char        *outputs, *error;
    const char  *params[6];

    outputs = job->outputs ? json_dumps(job->outputs, JSON_COMPACT) : NULL;
    error = job->error ? json_dumps(job->error, JSON_COMPACT) : NULL;

    params[0] = (char *) job->id.data;
    params[1] = ngx_http_flowscale_status_name(job->status);
    params[2] = outputs;
    params[3] = error;
    params[4] = (char *) job->link->peer.name.data;
    params[5] = job->progress[0] ? (char *) job->progress : NULL;

    /* the backend too: earlier bookkeeping updates may arrive in any order */
    job->query = ngx_http_flowscale_pg_query(
        "UPDATE flowscale.runs SET status = $2, outputs = $3, error = $4, "
        "backend = $5, started_at = coalesce(started_at, now()), "
        "finished_at = now(), progress = coalesce($6::jsonb, progress) "
        "WHERE id = $1", 6, params, NULL,
        ngx_http_flowscale_job_recorded, job, job->log);

    free(outputs);
    free(error);

    if (job->query == NULL) {
        ngx_http_flowscale_job_recorded(job, NULL, "no connection");
    }
}


static void
ngx_http_flowscale_job_recorded(void *data, PGresult *res, const char *error)
{
    ngx_http_flowscale_job_t *job = data;

    char                       *outputs, *err;
    ngx_http_flowscale_run_t   *run;
    ngx_http_flowscale_zone_t  *z;

    job->query = NULL;

    if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK) {
        ngx_log_error(NGX_LOG_ERR, job->log, 0, "flowscale: cannot record "
                      "the end of run %V, retrying: %s", &job->id,
                      res ? PQresultErrorMessage(res) : error);

        /* the check timer brings it back here */
        job->check.handler = ngx_http_flowscale_job_retry_record;
        ngx_add_timer(&job->check, NGX_HTTP_FLOWSCALE_RETRY_DELAY);
        return;
    }

    z = ngx_http_flowscale_dispatcher.zone;

    outputs = job->outputs ? json_dumps(job->outputs, JSON_COMPACT) : NULL;
    err = job->error ? json_dumps(job->error, JSON_COMPACT) : NULL;

    ngx_http_flowscale_runs_lock(z);

    run = ngx_http_flowscale_runs_find(z, job->id.data, job->id.len);

    if (run) {
        if (outputs) {
            (void) ngx_http_flowscale_runs_set_json(z, &run->outputs,
                       (u_char *) outputs, ngx_strlen(outputs));
        }

        if (err) {
            (void) ngx_http_flowscale_runs_set_json(z, &run->error,
                       (u_char *) err, ngx_strlen(err));
        }

        if (run->started == 0) {
            run->started = ngx_http_flowscale_now_ms();
        }

        ngx_http_flowscale_runs_finish(z, run, job->status);
    }

    ngx_http_flowscale_runs_unlock(z);

    free(outputs);
    free(err);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, job->log, 0,
                   "flowscale: run %V %s", &job->id,
                   ngx_http_flowscale_status_name(job->status));

    ngx_http_flowscale_run_ended(job->flcf, &job->id);

    ngx_http_flowscale_release(job->link);
    ngx_http_flowscale_job_free(job);

    ngx_http_flowscale_kick();
}


static void
ngx_http_flowscale_job_retry_record(ngx_event_t *ev)
{
    ngx_http_flowscale_job_record(ev->data);
}


static ngx_http_flowscale_job_t *
ngx_http_flowscale_job_find(ngx_str_t *id)
{
    ngx_rbtree_key_t                  key;
    ngx_rbtree_node_t                *node, *sentinel;
    ngx_http_flowscale_job_t         *job;
    ngx_http_flowscale_dispatcher_t  *ds = &ngx_http_flowscale_dispatcher;

    key = ngx_murmur_hash2(id->data, id->len);

    node = ds->jobs.root;
    sentinel = ds->jobs.sentinel;

    while (node != sentinel) {

        if (key != node->key) {
            node = (key < node->key) ? node->left : node->right;
            continue;
        }

        job = (ngx_http_flowscale_job_t *) node;

        if (job->id.len == id->len
            && ngx_memcmp(job->id.data, id->data, id->len) == 0)
        {
            return job;
        }

        /* equal keys are inserted to the right */
        node = node->right;
    }

    return NULL;
}


/*
 * Hands queued runs to backends with room, oldest first.  Called when a
 * run ends in this worker and by the leader's timer, so a slot freed
 * anywhere is used.
 */

static void
ngx_http_flowscale_kick(void)
{
    ngx_str_t                               id;
    ngx_uint_t                              i, n;
    ngx_http_flowscale_run_t               *run;
    ngx_http_flowscale_job_t               *job;
    ngx_http_flowscale_link_t              *link;
    ngx_http_flowscale_loc_conf_t          *flcf, **flcfp;
    ngx_http_flowscale_deployment_state_t  *dst;
    ngx_http_flowscale_dispatcher_t        *ds = &ngx_http_flowscale_dispatcher;
    u_char                              buf[NGX_HTTP_FLOWSCALE_RUN_ID_LEN + 1];

    if (ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    for ( ;; ) {
        ngx_http_flowscale_runs_lock(ds->zone);

        /* the deployments in turn, so one's backlog cannot hold another */
        run = NULL;
        link = NULL;
        flcfp = ds->fmcf->deployments.elts;
        n = ds->fmcf->deployments.nelts;

        for (i = 0; i < n && link == NULL; i++) {
            flcf = flcfp[(ds->turn + i) % n];
            dst = ngx_http_flowscale_runs_deployment(ds->zone, &flcf->project,
                                                     &flcf->name);

            /* a stopped deployment's runs wait until it starts again */
            run = (dst && dst->state != NGX_HTTP_FLOWSCALE_STOPPED)
                  ? ngx_http_flowscale_runs_next(dst) : NULL;

            if (run == NULL) {
                continue;
            }

            /* no room: that queue stays as it is, untouched */
            link = ngx_http_flowscale_reserve_locked(flcf, run);
        }

        if (link == NULL) {
            ngx_http_flowscale_runs_unlock(ds->zone);
            return;
        }

        ds->turn = (ds->turn + i) % n;

        /* take it out now, so no other worker hands it out too */
        ngx_http_flowscale_runs_take(ds->zone, run);

        ngx_memcpy(buf, run->id, NGX_HTTP_FLOWSCALE_RUN_ID_LEN);
        buf[NGX_HTTP_FLOWSCALE_RUN_ID_LEN] = '\0';

        ngx_http_flowscale_runs_unlock(ds->zone);

        id.data = buf;
        id.len = NGX_HTTP_FLOWSCALE_RUN_ID_LEN;

        job = ngx_http_flowscale_job_create(flcf, &id, link);
        if (job == NULL) {
            ngx_http_flowscale_release(link);
            ngx_http_flowscale_requeue(&id);
            return;
        }

        if (ngx_http_flowscale_job_claim(job, 1) != NGX_OK) {
            ngx_http_flowscale_job_lost(job, "database unavailable");
            return;
        }
    }
}


/*
 * Before a run goes to a backend, PostgreSQL records which one, if the run
 * is still this front's: a front that takes over after this one died
 * knows where each run went, and never sends one twice.  With other fronts
 * about, it also checks the backend's depth across them.  fetch: the
 * prompt and files come back too (a run from the gateway queue).
 */

static ngx_int_t
ngx_http_flowscale_job_claim(ngx_http_flowscale_job_t *job, ngx_uint_t fetch)
{
    u_char       depth[NGX_INT_T_LEN + 1];
    const char  *params[5];

    params[0] = (char *) job->id.data;
    params[1] = ngx_http_flowscale_front_id();
    params[2] = (char *) job->link->peer.name.data;
    params[3] = NULL;
    params[4] = fetch ? "t" : "f";

    if (ngx_http_flowscale_fronts() > 1) {
        ngx_sprintf(depth, "%ui%Z", job->flcf->backend_depth);
        params[3] = (char *) depth;
    }

    job->state = NGX_HTTP_FLOWSCALE_JOB_CLAIMING;
    job->query = ngx_http_flowscale_pg_query(
        "SELECT claimed, prompt, files "
        "FROM flowscale.claim_run($1, $2, $3, $4, $5)",
        5, params, NULL, ngx_http_flowscale_claimed, job, job->log);

    return job->query ? NGX_OK : NGX_ERROR;
}


static void
ngx_http_flowscale_claimed(void *data, PGresult *res, const char *error)
{
    ngx_http_flowscale_job_t *job = data;

    char  *claimed;

    job->query = NULL;

    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK
        || PQntuples(res) != 1)
    {
        ngx_log_error(NGX_LOG_WARN, job->log, 0, "flowscale: cannot claim "
                      "run %V: %s", &job->id,
                      res ? PQresultErrorMessage(res) : error);
        ngx_http_flowscale_job_lost(job, "database unavailable");
        return;
    }

    claimed = PQgetvalue(res, 0, 0);

    if (ngx_strcmp(claimed, "full") == 0
        || ngx_strcmp(claimed, "stopped") == 0)
    {
        if (claimed[0] == 'f') {
            /* other fronts filled it: full here too until the next count */
            ngx_http_flowscale_backend_full(job->link, job->flcf);
        }

        /* a stopped deployment's run waits; the registry stops the queue */
        ngx_http_flowscale_release(job->link);
        ngx_http_flowscale_requeue(&job->id);
        ngx_http_flowscale_job_notify(job, NGX_ERROR, NULL);
        ngx_http_flowscale_job_free(job);
        return;
    }

    if (ngx_strcmp(claimed, "ok") != 0) {
        /*
         * Canceled, finished, or taken over by another front meanwhile:
         * not this front's to run, nor to show.
         */
        ngx_http_flowscale_release(job->link);
        ngx_http_flowscale_forget(&job->id);
        ngx_http_flowscale_job_notify(job, NGX_ERROR, NULL);
        ngx_http_flowscale_job_free(job);
        return;
    }

    if (job->prompt.len == 0
        && ngx_http_flowscale_job_read(job, res) != NGX_OK)
    {
        return;
    }

    ngx_http_flowscale_job_start(job);
}


static void
ngx_http_flowscale_backend_full(ngx_http_flowscale_link_t *link,
    ngx_http_flowscale_loc_conf_t *flcf)
{
    ngx_http_flowscale_backend_slot_t  *slot;
    ngx_http_flowscale_dispatcher_t    *ds = &ngx_http_flowscale_dispatcher;

    ngx_http_flowscale_runs_lock(ds->zone);

    slot = &ds->zone->sh->backends[link->slot];

    if (slot->foreign < flcf->backend_depth) {
        slot->foreign = flcf->backend_depth;
    }

    ngx_http_flowscale_runs_unlock(ds->zone);
}


/* a run this front does not have (any more): GET reads PostgreSQL */

static void
ngx_http_flowscale_forget(ngx_str_t *id)
{
    ngx_http_flowscale_run_t         *run;
    ngx_http_flowscale_dispatcher_t  *ds = &ngx_http_flowscale_dispatcher;

    ngx_http_flowscale_runs_lock(ds->zone);

    run = ngx_http_flowscale_runs_find(ds->zone, id->data, id->len);

    if (run && run->status < NGX_HTTP_FLOWSCALE_SUCCEEDED) {
        ngx_http_flowscale_runs_forget(ds->zone, run);
    }

    ngx_http_flowscale_runs_unlock(ds->zone);
}


/* a queued run's prompt and files, as claim_run() returned them */

static ngx_int_t
ngx_http_flowscale_job_read(ngx_http_flowscale_job_t *job, PGresult *res)
{
    size_t                          i;
    json_t                         *files, *f;
    ngx_str_t                       src;
    ngx_http_flowscale_job_file_t  *jf;

    files = json_loads(PQgetvalue(res, 0, 2), 0, NULL);

    if (PQgetisnull(res, 0, 1) || files == NULL
        || ngx_http_flowscale_job_prompt(job, PQgetvalue(res, 0, 1))
           != NGX_OK)
    {
        json_decref(files);
        ngx_http_flowscale_job_lost(job, "unreadable run");
        return NGX_ERROR;
    }

    json_array_foreach(files, i, f) {
        jf = ngx_array_push(&job->files);
        if (jf == NULL) {
            break;
        }

        jf->input = ngx_http_flowscale_pstrdup(job->pool,
                        json_string_value(json_object_get(f, "input")));
        jf->node = ngx_http_flowscale_pstrdup(job->pool,
                       json_string_value(json_object_get(f, "node")));
        jf->slot = ngx_http_flowscale_pstrdup(job->pool,
                       json_string_value(json_object_get(f, "slot")));

        jf->filename.data = (u_char *) ngx_http_flowscale_pstrdup(job->pool,
                       json_string_value(json_object_get(f, "filename")));
        jf->content_type.data = (u_char *) ngx_http_flowscale_pstrdup(
                       job->pool,
                       json_string_value(json_object_get(f, "content_type")));

        src.data = (u_char *) json_string_value(json_object_get(f, "data"));
        src.len = src.data ? ngx_strlen(src.data) : 0;

        jf->data.data = ngx_pnalloc(job->pool,
                                    ngx_base64_decoded_length(src.len));

        if (jf->input == NULL || jf->node == NULL || jf->slot == NULL
            || jf->filename.data == NULL || jf->content_type.data == NULL
            || jf->data.data == NULL
            || ngx_decode_base64(&jf->data, &src) != NGX_OK)
        {
            break;
        }

        jf->filename.len = ngx_strlen(jf->filename.data);
        jf->content_type.len = ngx_strlen(jf->content_type.data);
    }

    i = json_array_size(files);
    json_decref(files);

    if (job->files.nelts != i) {
        ngx_http_flowscale_job_lost(job, "unreadable run files");
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_http_flowscale_loc_conf_t *
ngx_http_flowscale_find_deployment(u_char *project, u_char *name)
{
    ngx_uint_t                        i;
    ngx_http_flowscale_loc_conf_t   **flcfp;
    ngx_http_flowscale_dispatcher_t  *ds = &ngx_http_flowscale_dispatcher;

    flcfp = ds->fmcf->deployments.elts;

    for (i = 0; i < ds->fmcf->deployments.nelts; i++) {
        if (flcfp[i]->name.len == ngx_strlen(name)
            && ngx_strncmp(flcfp[i]->name.data, name, flcfp[i]->name.len)
               == 0
            && flcfp[i]->project.len == ngx_strlen(project)
            && ngx_strncmp(flcfp[i]->project.data, project,
                           flcfp[i]->project.len) == 0)
        {
            return flcfp[i];
        }
    }

    return NULL;
}


/*
 * One worker leads: it keeps the gateway queue moving when slots were
 * freed elsewhere.  A leader that stops answering is replaced within
 * NGX_HTTP_FLOWSCALE_LEADER_TIMEOUT.
 */

static void
ngx_http_flowscale_leader(ngx_event_t *ev)
{
    ngx_uint_t                        lead;
    ngx_http_flowscale_shctx_t       *sh;
    ngx_http_flowscale_dispatcher_t  *ds = &ngx_http_flowscale_dispatcher;

    if (ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    sh = ds->zone->sh;

    ngx_http_flowscale_runs_lock(ds->zone);

    if (sh->leader == 0 || sh->leader == ngx_pid
        || ngx_current_msec - sh->leader_seen
           > NGX_HTTP_FLOWSCALE_LEADER_TIMEOUT)
    {
        sh->leader = ngx_pid;
        sh->leader_seen = ngx_current_msec;
    }

    lead = (sh->leader == ngx_pid);
    ngx_http_flowscale_runs_unlock(ds->zone);

    if (lead) {
        ngx_http_flowscale_front_tick();
        ngx_http_flowscale_recover();
        ngx_http_flowscale_adopt();
        ngx_http_flowscale_health_tick();
        ngx_http_flowscale_registry_tick();     /* issue 7: registry */
        ngx_http_flowscale_webhook_resume_tick();
        ngx_http_flowscale_kick();
    }

    ngx_add_timer(ev, NGX_HTTP_FLOWSCALE_LEADER_INTERVAL);
}


/*
 * Runs whose worker died (kill -9, a crash) are nobody's: the leader
 * follows those a backend has, and queues again those it never got.
 */

static void
ngx_http_flowscale_adopt(void)
{
    ngx_str_t                         id, backend;
    ngx_uint_t                        n, i, submitted[16];
    ngx_queue_t                      *q;
    ngx_http_flowscale_run_t         *run;
    ngx_http_flowscale_loc_conf_t    *flcf[16];
    ngx_http_flowscale_dispatcher_t  *ds = &ngx_http_flowscale_dispatcher;
    u_char                            ids[16][NGX_HTTP_FLOWSCALE_RUN_ID_LEN];
    u_char                            names[16][64];

    n = 0;

    ngx_http_flowscale_runs_lock(ds->zone);

    for (q = ngx_queue_head(&ds->zone->sh->inflight);
         q != ngx_queue_sentinel(&ds->zone->sh->inflight) && n < 16;
         q = ngx_queue_next(q))
    {
        run = ngx_queue_data(q, ngx_http_flowscale_run_t, flight);

        if (run->owner == 0 || run->owner == ngx_pid
            || kill(run->owner, 0) == 0 || ngx_errno != NGX_ESRCH)
        {
            continue;
        }

        flcf[n] = ngx_http_flowscale_find_deployment(run->project,
                                                     run->deployment);
        if (flcf[n] == NULL) {
            continue;
        }

        ngx_log_error(NGX_LOG_WARN, ds->log, 0, "flowscale: run %*s lost "
                      "its worker %P, taken over",
                      (size_t) NGX_HTTP_FLOWSCALE_RUN_ID_LEN, run->id,
                      run->owner);

        run->owner = ngx_pid;
        submitted[n] = run->submitted;
        ngx_memcpy(ids[n], run->id, NGX_HTTP_FLOWSCALE_RUN_ID_LEN);
        ngx_cpystrn(names[n], run->backend, sizeof(names[n]));
        n++;
    }

    ngx_http_flowscale_runs_unlock(ds->zone);

    for (i = 0; i < n; i++) {
        id.data = ids[i];
        id.len = NGX_HTTP_FLOWSCALE_RUN_ID_LEN;
        backend.data = names[i];
        backend.len = ngx_strlen(names[i]);

        /* its slot is still counted: the dead worker held it */
        if (submitted[i] && backend.len) {
            (void) ngx_http_flowscale_dispatch_attach(flcf[i], &id, &backend,
                                                      1);
            continue;
        }

        ngx_http_flowscale_release_named(&backend);
        ngx_http_flowscale_requeue(&id);
    }
}


/* bookkeeping updates whose failure is only logged */

static void
ngx_http_flowscale_sql_update(ngx_http_flowscale_job_t *job, const char *sql,
    ngx_uint_t n, const char **params)
{
    (void) ngx_http_flowscale_pg_query(sql, (int) n, params, NULL,
                                       ngx_http_flowscale_sql_ignore, NULL,
                                       job->log);
}


static void
ngx_http_flowscale_sql_ignore(void *data, PGresult *res, const char *error)
{
    if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK) {
        ngx_log_error(NGX_LOG_WARN, ngx_http_flowscale_dispatcher.log, 0,
                      "flowscale: run bookkeeping not saved: %s",
                      res ? PQresultErrorMessage(res) : error);
    }
}


static char *
ngx_http_flowscale_pstrdup(ngx_pool_t *pool, const char *s)
{
    size_t   len;
    char    *p;

    if (s == NULL) {
        return NULL;
    }

    len = ngx_strlen(s) + 1;

    p = ngx_pnalloc(pool, len);
    if (p) {
        ngx_memcpy(p, s, len);
    }

    return p;
}
