
/*
 * FlowScale for nginx: runs in the shared zone.  An rbtree by id for
 * lookups from any worker, a FIFO of runs waiting for a backend, and a
 * queue of finished runs that are evicted oldest first when the zone is
 * full (PostgreSQL still has them).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_flowscale_module.h"
#include "ngx_http_flowscale_auth.h"
#include "ngx_http_flowscale_stats.h"      /* issue 7 */


static ngx_int_t ngx_http_flowscale_runs_evict(ngx_http_flowscale_zone_t *z);
static void ngx_http_flowscale_runs_free(ngx_http_flowscale_zone_t *z,
    ngx_http_flowscale_run_t *run);
static void *ngx_http_flowscale_runs_alloc(ngx_http_flowscale_zone_t *z,
    size_t size);


static const char  *ngx_http_flowscale_status_names[] = {
    "queued", "running", "succeeded", "failed", "canceled"
};


const char *
ngx_http_flowscale_status_name(ngx_http_flowscale_status_e s)
{
    return ngx_http_flowscale_status_names[s];
}


int64_t
ngx_http_flowscale_now_ms(void)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    return (int64_t) tp->sec * 1000 + tp->msec;
}


ngx_http_flowscale_zone_t *
ngx_http_flowscale_zone_get(ngx_cycle_t *cycle)
{
    ngx_http_flowscale_main_conf_t  *fmcf;

    fmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_flowscale_module);

    if (fmcf == NULL || fmcf->shm_zone == NULL) {
        return NULL;
    }

    return fmcf->shm_zone->data;
}


void
ngx_http_flowscale_runs_lock(ngx_http_flowscale_zone_t *z)
{
    ngx_shmtx_lock(&z->shpool->mutex);
}


void
ngx_http_flowscale_runs_unlock(ngx_http_flowscale_zone_t *z)
{
    ngx_shmtx_unlock(&z->shpool->mutex);
}


void
ngx_http_flowscale_runs_changed(ngx_http_flowscale_zone_t *z)
{
    ngx_atomic_fetch_add(&z->sh->changes, 1);
}


/* a change of one run: waiting requests and event streams look at it */

void
ngx_http_flowscale_runs_touch(ngx_http_flowscale_zone_t *z,
    ngx_http_flowscale_run_t *run)
{
    ngx_memcpy(z->sh->change_log[z->sh->change_seq
                                 % NGX_HTTP_FLOWSCALE_CHANGE_LOG],
               run->id, NGX_HTTP_FLOWSCALE_RUN_ID_LEN);
    z->sh->change_seq++;

    ngx_http_flowscale_runs_changed(z);
}


/* with the lock held; data is copied into the zone */

ngx_int_t
ngx_http_flowscale_runs_event(ngx_http_flowscale_zone_t *z,
    ngx_http_flowscale_run_t *run, ngx_http_flowscale_event_e type,
    int32_t value, int32_t max, u_char *node, u_char *data, size_t len)
{
    ngx_http_flowscale_event_t  *ev;

    if (run->events == NULL) {
        run->events = ngx_http_flowscale_runs_alloc(z,
                          NGX_HTTP_FLOWSCALE_EVENT_RING
                          * sizeof(ngx_http_flowscale_event_t));
        if (run->events == NULL) {
            return NGX_ERROR;
        }

        ngx_memzero(run->events, NGX_HTTP_FLOWSCALE_EVENT_RING
                                 * sizeof(ngx_http_flowscale_event_t));
    }

    /* event N lives in slot N % RING */
    ev = &run->events[(run->nevents + 1) % NGX_HTTP_FLOWSCALE_EVENT_RING];

    /* the slot's older event is overwritten: a late reader resumes later */
    if (ngx_http_flowscale_runs_set_json(z, &ev->data, data, len) != NGX_OK) {
        return NGX_ERROR;
    }

    ev->id = ++run->nevents;
    ev->type = type;
    ev->value = value;
    ev->max = max;

    if (node) {
        ngx_cpystrn(ev->node, node, sizeof(ev->node));

    } else {
        ev->node[0] = '\0';
    }

    ngx_http_flowscale_runs_touch(z, run);

    return NGX_OK;
}


void
ngx_http_flowscale_runs_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t         **p;
    ngx_http_flowscale_run_t   *run, *t;

    for ( ;; ) {

        if (node->key < temp->key) {
            p = &temp->left;

        } else if (node->key > temp->key) {
            p = &temp->right;

        } else {
            run = (ngx_http_flowscale_run_t *) node;
            t = (ngx_http_flowscale_run_t *) temp;

            p = (ngx_memcmp(run->id, t->id, NGX_HTTP_FLOWSCALE_RUN_ID_LEN)
                 < 0) ? &temp->left : &temp->right;
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


ngx_http_flowscale_run_t *
ngx_http_flowscale_runs_find(ngx_http_flowscale_zone_t *z, u_char *id,
    size_t len)
{
    ngx_int_t                  rc;
    ngx_rbtree_key_t           key;
    ngx_rbtree_node_t         *node, *sentinel;
    ngx_http_flowscale_run_t  *run;

    if (len != NGX_HTTP_FLOWSCALE_RUN_ID_LEN) {
        return NULL;
    }

    key = ngx_murmur_hash2(id, len);

    node = z->sh->rbtree.root;
    sentinel = z->sh->rbtree.sentinel;

    while (node != sentinel) {

        if (key != node->key) {
            node = (key < node->key) ? node->left : node->right;
            continue;
        }

        run = (ngx_http_flowscale_run_t *) node;
        rc = ngx_memcmp(id, run->id, NGX_HTTP_FLOWSCALE_RUN_ID_LEN);

        if (rc == 0) {
            return run;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


ngx_http_flowscale_run_t *
ngx_http_flowscale_runs_insert(ngx_http_flowscale_zone_t *z, ngx_str_t *id,
    ngx_str_t *inputs)
{
    ngx_http_flowscale_run_t  *run;

    if (id->len != NGX_HTTP_FLOWSCALE_RUN_ID_LEN) {
        return NULL;
    }

    run = ngx_http_flowscale_runs_alloc(z, sizeof(ngx_http_flowscale_run_t));
    if (run == NULL) {
        return NULL;
    }

    ngx_memzero(run, sizeof(ngx_http_flowscale_run_t));
    ngx_memcpy(run->id, id->data, NGX_HTTP_FLOWSCALE_RUN_ID_LEN);

    if (ngx_http_flowscale_runs_set_json(z, &run->inputs, inputs->data,
                                         inputs->len)
        != NGX_OK)
    {
        ngx_slab_free_locked(z->shpool, run);
        return NULL;
    }

    run->node.key = ngx_murmur_hash2(run->id, NGX_HTTP_FLOWSCALE_RUN_ID_LEN);
    run->created = ngx_http_flowscale_now_ms();
    run->status = NGX_HTTP_FLOWSCALE_QUEUED;

    ngx_rbtree_insert(&z->sh->rbtree, &run->node);
    ngx_queue_init(&run->queue);
    ngx_queue_init(&run->flight);

    ngx_http_flowscale_runs_changed(z);

    return run;
}


ngx_int_t
ngx_http_flowscale_runs_set_json(ngx_http_flowscale_zone_t *z,
    ngx_str_t *field, u_char *data, size_t len)
{
    u_char  *p;

    p = NULL;

    if (len) {
        p = ngx_http_flowscale_runs_alloc(z, len);
        if (p == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(p, data, len);
    }

    if (field->data) {
        ngx_slab_free_locked(z->shpool, field->data);
    }

    field->data = p;
    field->len = len;

    return NGX_OK;
}


/* a worker follows the run on a backend: if that worker dies, it is seen */

void
ngx_http_flowscale_runs_flying(ngx_http_flowscale_zone_t *z,
    ngx_http_flowscale_run_t *run)
{
    if (ngx_queue_empty(&run->flight)) {
        ngx_queue_insert_tail(&z->sh->inflight, &run->flight);
    }
}


void
ngx_http_flowscale_runs_landed(ngx_http_flowscale_run_t *run)
{
    if (!ngx_queue_empty(&run->flight)) {
        ngx_queue_remove(&run->flight);
        ngx_queue_init(&run->flight);
    }
}


/*
 * The gateway queue, with the count of each deployment's runs in it for
 * flowscale_queue_size.  With the lock held.
 */

void
ngx_http_flowscale_runs_enqueue(ngx_http_flowscale_zone_t *z,
    ngx_http_flowscale_run_t *run, ngx_uint_t head)
{
    ngx_queue_t                            *q;
    ngx_http_flowscale_lane_t              *lane;
    ngx_http_flowscale_deployment_state_t  *ds;

    ds = ngx_http_flowscale_runs_deployment_of(z, run);

    if (run->pending || ds == NULL) {
        return;
    }

    lane = NULL;

    for (q = ngx_queue_head(&ds->lanes);
         q != ngx_queue_sentinel(&ds->lanes);
         q = ngx_queue_next(q))
    {
        lane = ngx_queue_data(q, ngx_http_flowscale_lane_t, link);

        if (ngx_strcmp(lane->key_id, run->key_id) == 0) {
            break;
        }

        lane = NULL;
    }

    if (lane == NULL) {
        lane = ngx_http_flowscale_runs_alloc(z,
                                         sizeof(ngx_http_flowscale_lane_t));
        if (lane == NULL) {
            ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                          "flowscale: the zone is full; run %*s waits in "
                          "PostgreSQL", (size_t) NGX_HTTP_FLOWSCALE_RUN_ID_LEN,
                          run->id);
            return;
        }

        ngx_memzero(lane, sizeof(ngx_http_flowscale_lane_t));
        ngx_queue_init(&lane->runs);
        ngx_cpystrn(lane->key_id, run->key_id, sizeof(lane->key_id));
        ngx_queue_insert_tail(&ds->lanes, &lane->link);
    }

    ngx_http_flowscale_runs_landed(run);

    if (head) {
        /* it was next: its lane is served first again */
        ngx_queue_insert_head(&lane->runs, &run->queue);
        run->ticket = --lane->head_ticket;

        ngx_queue_remove(&lane->link);
        ngx_queue_insert_head(&ds->lanes, &lane->link);

    } else {
        ngx_queue_insert_tail(&lane->runs, &run->queue);
        run->ticket = ++lane->tail_ticket;
    }

    run->lane = lane;
    run->pending = 1;
    lane->n++;
    ds->queued++;

    z->sh->queue_seq++;
    ngx_http_flowscale_runs_touch(z, run);
}


void
ngx_http_flowscale_runs_dequeue(ngx_http_flowscale_zone_t *z,
    ngx_http_flowscale_run_t *run)
{
    ngx_http_flowscale_lane_t              *lane;
    ngx_http_flowscale_deployment_state_t  *ds;

    if (!run->pending) {
        return;
    }

    lane = run->lane;

    ngx_queue_remove(&run->queue);
    ngx_queue_init(&run->queue);
    run->pending = 0;
    run->lane = NULL;

    if (--lane->n == 0) {
        ngx_queue_remove(&lane->link);
        ngx_slab_free_locked(z->shpool, lane);
    }

    ds = ngx_http_flowscale_runs_deployment_of(z, run);
    if (ds && ds->queued) {
        ds->queued--;
    }

    z->sh->queue_seq++;
    ngx_http_flowscale_runs_touch(z, run);
}


/* the run to serve next: the oldest of the lane whose turn it is */

ngx_http_flowscale_run_t *
ngx_http_flowscale_runs_next(ngx_http_flowscale_deployment_state_t *ds)
{
    ngx_http_flowscale_lane_t  *lane;

    if (ngx_queue_empty(&ds->lanes)) {
        return NULL;
    }

    lane = ngx_queue_data(ngx_queue_head(&ds->lanes),
                          ngx_http_flowscale_lane_t, link);

    return ngx_queue_data(ngx_queue_head(&lane->runs),
                          ngx_http_flowscale_run_t, queue);
}


/* the next run goes to a backend: its lane waits for the others' turn */

void
ngx_http_flowscale_runs_take(ngx_http_flowscale_zone_t *z,
    ngx_http_flowscale_run_t *run)
{
    ngx_http_flowscale_lane_t              *lane;
    ngx_http_flowscale_deployment_state_t  *ds;

    lane = run->lane;
    ds = ngx_http_flowscale_runs_deployment_of(z, run);

    if (lane && lane->n > 1 && ds) {
        ngx_queue_remove(&lane->link);
        ngx_queue_insert_tail(&ds->lanes, &lane->link);
    }

    ngx_http_flowscale_runs_dequeue(z, run);
}


ngx_http_flowscale_deployment_state_t *
ngx_http_flowscale_runs_deployment_of(ngx_http_flowscale_zone_t *z,
    ngx_http_flowscale_run_t *run)
{
    ngx_str_t  project, name;

    project.data = run->project;
    project.len = ngx_strlen(run->project);
    name.data = run->deployment;
    name.len = ngx_strlen(run->deployment);

    return ngx_http_flowscale_runs_deployment(z, &project, &name);
}


/* a finished run leaves the gateway queue and becomes evictable */

void
ngx_http_flowscale_runs_finish(ngx_http_flowscale_zone_t *z,
    ngx_http_flowscale_run_t *run, ngx_http_flowscale_status_e status)
{
    ngx_str_t                               key;
    ngx_http_flowscale_deployment_state_t  *ds;

    if (run->pending) {
        ngx_http_flowscale_runs_dequeue(z, run);

    } else if (!ngx_queue_empty(&run->queue)) {
        ngx_queue_remove(&run->queue);
    }

    ngx_http_flowscale_runs_landed(run);

    run->status = status;
    run->finished = ngx_http_flowscale_now_ms();

    if (run->key_counted) {
        key.data = run->key_id;
        key.len = ngx_strlen(run->key_id);
        ngx_http_flowscale_key_run_end_locked(z, &key);
        run->key_counted = 0;
    }

    /* how long runs take here, for the Retry-After of a full queue */
    ds = ngx_http_flowscale_runs_deployment_of(z, run);

    if (ds && status == NGX_HTTP_FLOWSCALE_SUCCEEDED && run->started) {
        ds->run_ms = ds->run_ms
                     ? (ds->run_ms * 7 + (run->finished - run->started)) / 8
                     : run->finished - run->started;
    }
    ngx_http_flowscale_stats_run_end(z, ds, run);   /* issue 7: metrics */
    run->owner = 0;
    run->cancel = 0;

    /* before it becomes evictable: the event may allocate */
    (void) ngx_http_flowscale_runs_event(z, run, NGX_HTTP_FLOWSCALE_EV_END,
                                         0, 0, NULL, NULL, 0);

    ngx_queue_insert_tail(&z->sh->finished, &run->queue);
}


/*
 * Whose a new run is, with the lock held: key_id and webhook may be empty.
 * NGX_ERROR only when the zone has no room for the webhook.
 */

ngx_int_t
ngx_http_flowscale_runs_label(ngx_http_flowscale_zone_t *z,
    ngx_http_flowscale_run_t *run, ngx_str_t *project,
    ngx_str_t *deployment, ngx_str_t *version, ngx_str_t *key_id,
    ngx_str_t *webhook)
{
    ngx_cpystrn(run->project, project->data,
                ngx_min(project->len + 1, sizeof(run->project)));
    ngx_cpystrn(run->deployment, deployment->data,
                ngx_min(deployment->len + 1, sizeof(run->deployment)));
    ngx_cpystrn(run->version, version->data,
                ngx_min(version->len + 1, sizeof(run->version)));
    ngx_cpystrn(run->key_id, key_id->data,
                ngx_min(key_id->len + 1, sizeof(run->key_id)));

    if (webhook->len == 0) {
        return NGX_OK;
    }

    return ngx_http_flowscale_runs_set_json(z, &run->webhook, webhook->data,
                                            webhook->len);
}


/*
 * A run that is not this nginx's any more (another front took it over):
 * it leaves the zone, and readers find it in PostgreSQL.
 */

void
ngx_http_flowscale_runs_forget(ngx_http_flowscale_zone_t *z,
    ngx_http_flowscale_run_t *run)
{
    ngx_str_t  key;

    if (run->pending) {
        ngx_http_flowscale_runs_dequeue(z, run);
    }

    ngx_http_flowscale_runs_landed(run);

    if (run->key_counted) {
        key.data = run->key_id;
        key.len = ngx_strlen(run->key_id);
        ngx_http_flowscale_key_run_end_locked(z, &key);
    }

    ngx_http_flowscale_runs_touch(z, run);
    ngx_http_flowscale_runs_free(z, run);
}


ngx_http_flowscale_backend_slot_t *
ngx_http_flowscale_runs_backend(ngx_http_flowscale_zone_t *z,
    ngx_str_t *name)
{
    ngx_uint_t                          i;
    ngx_http_flowscale_backend_slot_t  *b;

    for (i = 0; i < z->sh->nbackends; i++) {
        b = &z->sh->backends[i];

        if (ngx_strlen(b->name) == name->len
            && ngx_strncmp(b->name, name->data, name->len) == 0)
        {
            return b;
        }
    }

    if (z->sh->nbackends == NGX_HTTP_FLOWSCALE_MAX_BACKENDS
        || name->len >= sizeof(b->name))
    {
        return NULL;
    }

    b = &z->sh->backends[z->sh->nbackends++];
    ngx_memzero(b, sizeof(ngx_http_flowscale_backend_slot_t));
    ngx_memcpy(b->name, name->data, name->len);

    return b;
}


ngx_int_t
ngx_http_flowscale_runs_view(ngx_http_flowscale_zone_t *z, u_char *id,
    size_t len, ngx_pool_t *pool, ngx_http_flowscale_run_view_t *view)
{
    u_char                    *copy;
    ngx_str_t                 *f, *fields[4];
    ngx_uint_t                 i;
    ngx_http_flowscale_run_t  *run;

    ngx_http_flowscale_runs_lock(z);

    run = ngx_http_flowscale_runs_find(z, id, len);

    if (run == NULL) {
        ngx_http_flowscale_runs_unlock(z);
        return NGX_DECLINED;
    }

    view->run = *run;
    view->position = 0;

    if (run->pending) {
        view->position = ngx_http_flowscale_runs_position(z, run);
    }

    fields[0] = &view->run.inputs;
    fields[1] = &view->run.outputs;
    fields[2] = &view->run.error;
    fields[3] = &view->run.webhook;

    for (i = 0; i < 4; i++) {
        f = fields[i];

        if (f->len == 0) {
            continue;
        }

        copy = ngx_pnalloc(pool, f->len);
        if (copy == NULL) {
            ngx_http_flowscale_runs_unlock(z);
            return NGX_ERROR;
        }

        ngx_memcpy(copy, f->data, f->len);
        f->data = copy;
    }

    ngx_http_flowscale_runs_unlock(z);

    return NGX_OK;
}


static void *
ngx_http_flowscale_runs_alloc(ngx_http_flowscale_zone_t *z, size_t size)
{
    void  *p;

    for ( ;; ) {
        p = ngx_slab_alloc_locked(z->shpool, size);
        if (p) {
            return p;
        }

        if (ngx_http_flowscale_runs_evict(z) != NGX_OK) {
            return NULL;
        }
    }
}


static ngx_int_t
ngx_http_flowscale_runs_evict(ngx_http_flowscale_zone_t *z)
{
    ngx_queue_t               *q;
    ngx_http_flowscale_run_t  *run;

    if (ngx_queue_empty(&z->sh->finished)) {
        return NGX_DECLINED;
    }

    q = ngx_queue_head(&z->sh->finished);
    run = ngx_queue_data(q, ngx_http_flowscale_run_t, queue);

    ngx_http_flowscale_runs_free(z, run);

    return NGX_OK;
}


static void
ngx_http_flowscale_runs_free(ngx_http_flowscale_zone_t *z,
    ngx_http_flowscale_run_t *run)
{
    ngx_uint_t  i;

    ngx_queue_remove(&run->queue);
    ngx_rbtree_delete(&z->sh->rbtree, &run->node);

    if (run->inputs.data) {
        ngx_slab_free_locked(z->shpool, run->inputs.data);
    }

    if (run->outputs.data) {
        ngx_slab_free_locked(z->shpool, run->outputs.data);
    }

    if (run->error.data) {
        ngx_slab_free_locked(z->shpool, run->error.data);
    }

    if (run->webhook.data) {
        ngx_slab_free_locked(z->shpool, run->webhook.data);
    }

    if (run->events) {
        for (i = 0; i < NGX_HTTP_FLOWSCALE_EVENT_RING; i++) {
            if (run->events[i].data.data) {
                ngx_slab_free_locked(z->shpool, run->events[i].data.data);
            }
        }

        ngx_slab_free_locked(z->shpool, run->events);
    }

    ngx_slab_free_locked(z->shpool, run);
}


/*
 * The exact queue position, counted from the nearer end of the queue:
 * tickets grow from head to tail, so they tell which end that is.  A run
 * just queued, the usual question, costs one step.
 */

ngx_uint_t
ngx_http_flowscale_runs_position(ngx_http_flowscale_zone_t *z,
    ngx_http_flowscale_run_t *run)
{
    ngx_uint_t                              k, n, ahead, position;
    ngx_queue_t                            *q;
    ngx_http_flowscale_lane_t              *lane, *other;
    ngx_http_flowscale_deployment_state_t  *ds;

    lane = run->lane;
    ds = ngx_http_flowscale_runs_deployment_of(z, run);

    if (lane == NULL || ds == NULL) {
        return 0;
    }

    /* k: its place in its lane, counted from the nearer end */
    n = 0;

    if (run->ticket - lane->head_ticket <= lane->tail_ticket - run->ticket) {
        for (q = ngx_queue_head(&lane->runs); q != &run->queue;
             q = ngx_queue_next(q))
        {
            n++;
        }

        k = n + 1;

    } else {
        for (q = ngx_queue_last(&lane->runs); q != &run->queue;
             q = ngx_queue_prev(q))
        {
            n++;
        }

        k = lane->n - n;
    }

    /*
     * Lanes are served in turn from the head of the ring: before the run
     * go k - 1 runs of every lane (or all of a shorter one), and the k-th
     * run of each lane ahead of its own.
     */
    position = 1;
    ahead = 1;

    for (q = ngx_queue_head(&ds->lanes);
         q != ngx_queue_sentinel(&ds->lanes);
         q = ngx_queue_next(q))
    {
        other = ngx_queue_data(q, ngx_http_flowscale_lane_t, link);

        if (other == lane) {
            position += k - 1;
            ahead = 0;
            continue;
        }

        position += ngx_min(other->n, k - 1);

        if (ahead && other->n >= k) {
            position++;
        }
    }

    return position;
}


/* a copy of the run's event ring, its JSON in pool */

ngx_int_t
ngx_http_flowscale_runs_events(ngx_http_flowscale_zone_t *z, u_char *id,
    ngx_pool_t *pool, ngx_http_flowscale_event_t *events)
{
    u_char                    *copy;
    ngx_uint_t                 i;
    ngx_http_flowscale_run_t  *run;

    ngx_http_flowscale_runs_lock(z);

    run = ngx_http_flowscale_runs_find(z, id, NGX_HTTP_FLOWSCALE_RUN_ID_LEN);

    if (run == NULL || run->events == NULL) {
        ngx_http_flowscale_runs_unlock(z);
        return NGX_DECLINED;
    }

    ngx_memcpy(events, run->events,
               NGX_HTTP_FLOWSCALE_EVENT_RING
               * sizeof(ngx_http_flowscale_event_t));

    for (i = 0; i < NGX_HTTP_FLOWSCALE_EVENT_RING; i++) {
        if (events[i].data.len == 0) {
            continue;
        }

        copy = ngx_pnalloc(pool, events[i].data.len);
        if (copy == NULL) {
            ngx_http_flowscale_runs_unlock(z);
            return NGX_ERROR;
        }

        ngx_memcpy(copy, events[i].data.data, events[i].data.len);
        events[i].data.data = copy;
    }

    ngx_http_flowscale_runs_unlock(z);

    return NGX_OK;
}


static const char  *ngx_http_flowscale_state_names[] = {
    "preparing", "deploying", "ready", "failed", "stopped"
};


const char *
ngx_http_flowscale_state_name(ngx_http_flowscale_state_e s)
{
    return ngx_http_flowscale_state_names[s];
}


/* with the lock held; created on first use */

ngx_http_flowscale_deployment_state_t *
ngx_http_flowscale_runs_deployment(ngx_http_flowscale_zone_t *z,
    ngx_str_t *project, ngx_str_t *name)
{
    ngx_uint_t                              i;
    ngx_http_flowscale_deployment_state_t  *ds;

    for (i = 0; i < z->sh->ndeployments; i++) {
        ds = &z->sh->deployments[i];

        if (ngx_strlen(ds->name) == name->len
            && ngx_strncmp(ds->name, name->data, name->len) == 0
            && ngx_strlen(ds->project) == project->len
            && ngx_strncmp(ds->project, project->data, project->len) == 0)
        {
            return ds;
        }
    }

    if (z->sh->ndeployments == NGX_HTTP_FLOWSCALE_MAX_DEPLOYMENTS
        || name->len >= sizeof(ds->name) || project->len >= sizeof(ds->project))
    {
        return NULL;
    }

    ds = &z->sh->deployments[z->sh->ndeployments++];
    ngx_memzero(ds, sizeof(ngx_http_flowscale_deployment_state_t));
    ngx_memcpy(ds->name, name->data, name->len);
    ngx_memcpy(ds->project, project->data, project->len);
    ngx_queue_init(&ds->lanes);

    return ds;
}
