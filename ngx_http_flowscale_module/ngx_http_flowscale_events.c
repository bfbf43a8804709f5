
/*
 * FlowScale for nginx: GET L/runs/ID/events, a Server-Sent Events stream
 * of a run.  Events stored with the run in the zone carry ids, so a client
 * resumes with Last-Event-ID without losing or repeating any; queue
 * positions are state, sent without an id whenever they move.  A worker
 * wakes only the streams of runs that changed (the zone's change log), so
 * idle streams cost memory, not CPU.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_flowscale_module.h"


#define NGX_HTTP_FLOWSCALE_EVENTS_POLL       10
#define NGX_HTTP_FLOWSCALE_HEARTBEAT         15000


/* the streams of one run in this worker */
typedef struct {
    ngx_rbtree_node_t               node;       /* by run id */
    u_char                          id[NGX_HTTP_FLOWSCALE_RUN_ID_LEN];
    ngx_queue_t                     streams;
} ngx_http_flowscale_watch_t;


typedef struct {
    ngx_queue_t                     queue;      /* in its watch */
    ngx_http_flowscale_watch_t     *watch;
    ngx_http_request_t             *request;
    ngx_http_flowscale_loc_conf_t  *flcf;
    u_char                          id[NGX_HTTP_FLOWSCALE_RUN_ID_LEN];
    uint32_t                        sent;       /* last event id sent */
    ngx_uint_t                      position;   /* last position sent */
    ngx_event_t                     heartbeat;
    unsigned                        done:1;
} ngx_http_flowscale_stream_t;


static ngx_int_t ngx_http_flowscale_stream_pump(
    ngx_http_flowscale_stream_t *st);
static ngx_int_t ngx_http_flowscale_stream_add(ngx_http_flowscale_stream_t *st,
    ngx_chain_t ***last, ngx_uint_t id, const char *name, ngx_str_t *data);
static ngx_int_t ngx_http_flowscale_stream_event(
    ngx_http_flowscale_stream_t *st, ngx_chain_t ***last,
    ngx_http_flowscale_event_t *ev, ngx_http_flowscale_run_view_t *view);
static ngx_int_t ngx_http_flowscale_stream_send(ngx_http_request_t *r,
    ngx_chain_t *out);
static void ngx_http_flowscale_stream_finish(ngx_http_flowscale_stream_t *st);
static void ngx_http_flowscale_stream_heartbeat(ngx_event_t *ev);
static void ngx_http_flowscale_stream_cleanup(void *data);
static void ngx_http_flowscale_streams_poll(ngx_event_t *ev);
static void ngx_http_flowscale_streams_wake(u_char *id);
static void ngx_http_flowscale_watch_wake(ngx_http_flowscale_watch_t *w);
static ngx_http_flowscale_watch_t *ngx_http_flowscale_watch(u_char *id,
    ngx_uint_t create);
static uint32_t ngx_http_flowscale_last_event_id(ngx_http_request_t *r);


static ngx_rbtree_t          ngx_http_flowscale_streams;
static ngx_rbtree_node_t     ngx_http_flowscale_streams_sentinel;
static ngx_uint_t            ngx_http_flowscale_nstreams;
static ngx_event_t           ngx_http_flowscale_streams_event;
static uint64_t              ngx_http_flowscale_streams_seq;
static uint64_t              ngx_http_flowscale_streams_queue_seq;
static ngx_connection_t      ngx_http_flowscale_streams_dummy = { .fd = -1 };


static const char  *ngx_http_flowscale_event_names[] = {
    "", "started", "progress", "output", ""
};


ngx_int_t
ngx_http_flowscale_events(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf, ngx_str_t *id)
{
    ngx_int_t                       rc;
    ngx_pool_cleanup_t             *cln;
    ngx_http_flowscale_zone_t      *z;
    ngx_http_flowscale_stream_t    *st;
    ngx_http_flowscale_run_view_t   view;

    z = ngx_http_flowscale_zone_get((ngx_cycle_t *) ngx_cycle);

    rc = ngx_http_flowscale_runs_view(z, id->data, id->len, r->pool, &view);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        /* not live here: followed in PostgreSQL */
        return ngx_http_flowscale_remote_events(r, flcf, id);
    }

    if (!ngx_http_flowscale_view_belongs(&view, flcf)) {
        return ngx_http_flowscale_problem(r, NGX_HTTP_NOT_FOUND, "not-found",
                   "Run not found", "No run with this id in this "
                   "deployment.");
    }

    st = ngx_pcalloc(r->pool, sizeof(ngx_http_flowscale_stream_t));
    cln = ngx_pool_cleanup_add(r->pool, 0);

    if (st == NULL || cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_flowscale_sse_start(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    st->request = r;
    st->flcf = flcf;
    st->sent = ngx_http_flowscale_last_event_id(r);
    ngx_memcpy(st->id, id->data, NGX_HTTP_FLOWSCALE_RUN_ID_LEN);

    cln->handler = ngx_http_flowscale_stream_cleanup;
    cln->data = st;

    st->heartbeat.handler = ngx_http_flowscale_stream_heartbeat;
    st->heartbeat.data = r->connection;
    st->heartbeat.log = r->connection->log;
    st->heartbeat.cancelable = 1;

    if (ngx_http_flowscale_streams.root == NULL) {
        ngx_rbtree_init(&ngx_http_flowscale_streams,
                        &ngx_http_flowscale_streams_sentinel,
                        ngx_rbtree_insert_value);

        ngx_http_flowscale_streams_event.handler =
                                               ngx_http_flowscale_streams_poll;
        ngx_http_flowscale_streams_event.data =
                                             &ngx_http_flowscale_streams_dummy;
        ngx_http_flowscale_streams_event.log = ngx_cycle->log;
        ngx_http_flowscale_streams_event.cancelable = 1;
    }

    if (ngx_http_flowscale_nstreams == 0) {
        ngx_http_flowscale_streams_seq = z->sh->change_seq;
        ngx_http_flowscale_streams_queue_seq = z->sh->queue_seq;
    }

    st->watch = ngx_http_flowscale_watch(st->id, 1);
    if (st->watch == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_queue_insert_tail(&st->watch->streams, &st->queue);
    ngx_http_flowscale_nstreams++;

    if (!ngx_http_flowscale_streams_event.timer_set) {
        ngx_add_timer(&ngx_http_flowscale_streams_event,
                      NGX_HTTP_FLOWSCALE_EVENTS_POLL);
    }

    ngx_add_timer(&st->heartbeat, NGX_HTTP_FLOWSCALE_HEARTBEAT);

    r->read_event_handler = ngx_http_test_reading;
    r->main->count++;

    /* the current state, or what was missed since Last-Event-ID */
    if (ngx_http_flowscale_stream_pump(st) != NGX_OK || st->done) {
        ngx_http_flowscale_stream_finish(st);
    }

    return NGX_DONE;
}


/*
 * Sends what the stream has not seen yet.  The run is copied under the
 * lock, then rendered and sent without it.
 */

static ngx_int_t
ngx_http_flowscale_stream_pump(ngx_http_flowscale_stream_t *st)
{
    u_char                         buf[32];
    uint32_t                       first, i;
    ngx_str_t                      data;
    ngx_chain_t                   *out, **last;
    ngx_http_request_t            *r;
    ngx_http_flowscale_zone_t     *z;
    ngx_http_flowscale_event_t    *events;
    ngx_http_flowscale_run_view_t  view;

    r = st->request;
    z = ngx_http_flowscale_zone_get((ngx_cycle_t *) ngx_cycle);

    if (ngx_http_flowscale_runs_view(z, st->id, NGX_HTTP_FLOWSCALE_RUN_ID_LEN,
                                     r->pool, &view)
        != NGX_OK)
    {
        /* evicted: it has ended, the final state is in PostgreSQL */
        st->done = 1;
        return NGX_OK;
    }

    out = NULL;
    last = &out;

    if (view.position && view.position != st->position) {
        st->position = view.position;
        data.data = buf;
        data.len = ngx_sprintf(buf, "{\"position\":%ui}", view.position)
                   - buf;

        if (ngx_http_flowscale_stream_add(st, &last, 0, "queued", &data)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (view.run.nevents > st->sent) {
        events = ngx_palloc(r->pool, NGX_HTTP_FLOWSCALE_EVENT_RING
                                     * sizeof(ngx_http_flowscale_event_t));
        if (events == NULL) {
            return NGX_ERROR;
        }

        if (ngx_http_flowscale_runs_events(z, st->id, r->pool, events)
            != NGX_OK)
        {
            st->done = 1;
            return NGX_OK;
        }

        /* events older than the ring were overwritten: go on from there */
        first = st->sent + 1;
        if (view.run.nevents - st->sent > NGX_HTTP_FLOWSCALE_EVENT_RING) {
            first = view.run.nevents - NGX_HTTP_FLOWSCALE_EVENT_RING + 1;
        }

        for (i = first; i <= view.run.nevents; i++) {
            if (ngx_http_flowscale_stream_event(st, &last,
                    &events[i % NGX_HTTP_FLOWSCALE_EVENT_RING], &view)
                != NGX_OK)
            {
                return NGX_ERROR;
            }
        }

        st->sent = view.run.nevents;
    }

    if (view.run.status >= NGX_HTTP_FLOWSCALE_SUCCEEDED) {
        st->done = 1;
    }

    if (out == NULL) {
        return NGX_OK;
    }

    return ngx_http_flowscale_stream_send(r, out);
}


static ngx_int_t
ngx_http_flowscale_stream_event(ngx_http_flowscale_stream_t *st,
    ngx_chain_t ***last, ngx_http_flowscale_event_t *ev,
    ngx_http_flowscale_run_view_t *view)
{
    u_char      buf[128];
    ngx_str_t   data;

    switch (ev->type) {

    case NGX_HTTP_FLOWSCALE_EV_STARTED:
        ngx_str_set(&data, "{\"status\":\"running\"}");
        break;

    case NGX_HTTP_FLOWSCALE_EV_PROGRESS:
        data.data = buf;
        data.len = ngx_sprintf(buf, "{\"value\":%D,\"max\":%D,\"node\":\"%s\"}",
                               ev->value, ev->max, ev->node)
                   - buf;
        break;

    case NGX_HTTP_FLOWSCALE_EV_OUTPUT:
        if (ngx_http_flowscale_public_event_output(st->request, st->flcf,
                                                   view, &ev->data, &data)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
        break;

    default:
        /* the end: the run as GET L/runs/ID shows it */
        if (ngx_http_flowscale_render_run(st->request->pool, st->flcf, view,
                                          &data)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        data.len--;                             /* its newline */

        return ngx_http_flowscale_stream_add(st, last, ev->id,
                   ngx_http_flowscale_status_name(view->run.status), &data);
    }

    return ngx_http_flowscale_stream_add(st, last, ev->id,
                                         ngx_http_flowscale_event_names[
                                             ev->type], &data);
}


/* "id: N\nevent: NAME\ndata: JSON\n\n"; no id for state-only events */

static ngx_int_t
ngx_http_flowscale_stream_add(ngx_http_flowscale_stream_t *st,
    ngx_chain_t ***last, ngx_uint_t id, const char *name, ngx_str_t *data)
{
    size_t        len;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    len = sizeof("id: \nevent: \ndata: \n\n") - 1 + NGX_INT_T_LEN
          + ngx_strlen(name) + data->len;

    b = ngx_create_temp_buf(st->request->pool, len);
    cl = ngx_alloc_chain_link(st->request->pool);

    if (b == NULL || cl == NULL) {
        return NGX_ERROR;
    }

    if (id) {
        b->last = ngx_sprintf(b->last, "id: %ui\n", id);
    }

    b->last = ngx_sprintf(b->last, "event: %s\ndata: %V\n\n", name, data);

    cl->buf = b;
    cl->next = NULL;

    **last = cl;
    *last = &cl->next;

    return NGX_OK;
}


static ngx_int_t
ngx_http_flowscale_stream_send(ngx_http_request_t *r, ngx_chain_t *out)
{
    ngx_chain_t  *cl;

    for (cl = out; cl->next; cl = cl->next) { /* void */ }

    cl->buf->flush = 1;

    return ngx_http_output_filter(r, out) == NGX_ERROR ? NGX_ERROR : NGX_OK;
}


static void
ngx_http_flowscale_stream_finish(ngx_http_flowscale_stream_t *st)
{
    ngx_http_request_t  *r;

    r = st->request;

    ngx_http_flowscale_stream_cleanup(st);

    ngx_http_flowscale_finalize(r, ngx_http_send_special(r, NGX_HTTP_LAST));
}


static void
ngx_http_flowscale_stream_heartbeat(ngx_event_t *ev)
{
    ngx_buf_t                    *b;
    ngx_chain_t                   out;
    ngx_connection_t             *c;
    ngx_http_request_t           *r;

    c = ev->data;
    r = c->data;

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return;
    }

    /* a comment line keeps proxies from cutting a quiet stream */
    b->pos = (u_char *) ": heartbeat\n\n";
    b->last = b->pos + sizeof(": heartbeat\n\n") - 1;
    b->memory = 1;
    b->flush = 1;

    out.buf = b;
    out.next = NULL;

    (void) ngx_http_output_filter(r, &out);

    ngx_add_timer(ev, NGX_HTTP_FLOWSCALE_HEARTBEAT);
}


static void
ngx_http_flowscale_stream_cleanup(void *data)
{
    ngx_http_flowscale_stream_t *st = data;

    if (st->heartbeat.timer_set) {
        ngx_del_timer(&st->heartbeat);
    }

    if (st->watch == NULL) {
        return;
    }

    ngx_queue_remove(&st->queue);
    ngx_http_flowscale_nstreams--;

    if (ngx_queue_empty(&st->watch->streams)) {
        ngx_rbtree_delete(&ngx_http_flowscale_streams, &st->watch->node);
        ngx_free(st->watch);
    }

    st->watch = NULL;
}


static ngx_http_flowscale_watch_t *
ngx_http_flowscale_watch(u_char *id, ngx_uint_t create)
{
    ngx_rbtree_key_t             key;
    ngx_rbtree_node_t           *node, *sentinel;
    ngx_http_flowscale_watch_t  *w;

    key = ngx_murmur_hash2(id, NGX_HTTP_FLOWSCALE_RUN_ID_LEN);

    node = ngx_http_flowscale_streams.root;
    sentinel = ngx_http_flowscale_streams.sentinel;

    while (node != sentinel) {

        if (key != node->key) {
            node = (key < node->key) ? node->left : node->right;
            continue;
        }

        w = (ngx_http_flowscale_watch_t *) node;

        if (ngx_memcmp(w->id, id, NGX_HTTP_FLOWSCALE_RUN_ID_LEN) == 0) {
            return w;
        }

        /* equal keys go to the right (ngx_rbtree_insert_value) */
        node = node->right;
    }

    if (!create) {
        return NULL;
    }

    w = ngx_alloc(sizeof(ngx_http_flowscale_watch_t), ngx_cycle->log);
    if (w == NULL) {
        return NULL;
    }

    w->node.key = key;
    ngx_memcpy(w->id, id, NGX_HTTP_FLOWSCALE_RUN_ID_LEN);
    ngx_queue_init(&w->streams);

    ngx_rbtree_insert(&ngx_http_flowscale_streams, &w->node);

    return w;
}


/*
 * Reads the zone's change log since the last look and wakes the streams of
 * the runs in it; when the gateway queue moved, queued runs' streams too.
 */

static void
ngx_http_flowscale_streams_poll(ngx_event_t *ev)
{
    u_char                      ids[NGX_HTTP_FLOWSCALE_CHANGE_LOG]
                                   [NGX_HTTP_FLOWSCALE_RUN_ID_LEN];
    uint64_t                    seq, queue_seq, from, i, n;
    ngx_http_flowscale_zone_t  *z;

    if (ngx_http_flowscale_nstreams == 0) {
        return;
    }

    z = ngx_http_flowscale_zone_get((ngx_cycle_t *) ngx_cycle);

    n = 0;

    ngx_http_flowscale_runs_lock(z);

    seq = z->sh->change_seq;
    queue_seq = z->sh->queue_seq;
    from = ngx_http_flowscale_streams_seq;

    if (seq - from <= NGX_HTTP_FLOWSCALE_CHANGE_LOG) {
        for (i = from; i < seq; i++) {
            ngx_memcpy(ids[n++],
                       z->sh->change_log[i % NGX_HTTP_FLOWSCALE_CHANGE_LOG],
                       NGX_HTTP_FLOWSCALE_RUN_ID_LEN);
        }
    }

    ngx_http_flowscale_runs_unlock(z);

    if (seq - from > NGX_HTTP_FLOWSCALE_CHANGE_LOG
        || queue_seq != ngx_http_flowscale_streams_queue_seq)
    {
        /* too much happened to tell, or positions moved: look at all */
        ngx_http_flowscale_streams_wake(NULL);

    } else {
        for (i = 0; i < n; i++) {
            ngx_http_flowscale_streams_wake(ids[i]);
        }
    }

    ngx_http_flowscale_streams_seq = seq;
    ngx_http_flowscale_streams_queue_seq = queue_seq;

    if (ngx_http_flowscale_nstreams) {
        ngx_add_timer(ev, NGX_HTTP_FLOWSCALE_EVENTS_POLL);
    }
}


static void
ngx_http_flowscale_streams_wake(u_char *id)
{
    ngx_rbtree_node_t           *node, *next, *sentinel;
    ngx_http_flowscale_watch_t  *w;

    if (id) {
        w = ngx_http_flowscale_watch(id, 0);

        if (w) {
            ngx_http_flowscale_watch_wake(w);
        }

        return;
    }

    sentinel = ngx_http_flowscale_streams.sentinel;

    if (ngx_http_flowscale_streams.root == sentinel) {
        return;
    }

    node = ngx_rbtree_min(ngx_http_flowscale_streams.root, sentinel);

    while (node) {
        /* the watch may go away while its streams are woken */
        next = ngx_rbtree_next(&ngx_http_flowscale_streams, node);
        ngx_http_flowscale_watch_wake((ngx_http_flowscale_watch_t *) node);
        node = next;
    }
}


static void
ngx_http_flowscale_watch_wake(ngx_http_flowscale_watch_t *w)
{
    ngx_queue_t                  *q, *next;
    ngx_http_flowscale_stream_t  *st;

    for (q = ngx_queue_head(&w->streams); q != ngx_queue_sentinel(&w->streams);
         q = next)
    {
        next = ngx_queue_next(q);
        st = ngx_queue_data(q, ngx_http_flowscale_stream_t, queue);

        if (ngx_http_flowscale_stream_pump(st) != NGX_OK || st->done) {
            /* its cleanup may free w: stop when it was the last one */
            if (next == ngx_queue_sentinel(&w->streams)) {
                ngx_http_flowscale_stream_finish(st);
                return;
            }

            ngx_http_flowscale_stream_finish(st);
        }
    }
}


static uint32_t
ngx_http_flowscale_last_event_id(ngx_http_request_t *r)
{
    ngx_int_t         n;
    ngx_table_elt_t  *h;

    h = ngx_http_flowscale_header_in(r, "Last-Event-ID");
    n = h ? ngx_atoi(h->value.data, h->value.len) : 0;

    return n > 0 ? (uint32_t) n : 0;
}
