
/*
 * FlowScale for nginx: the live view of runs in the shared zone, for every
 * worker and across reloads.  PostgreSQL stays the system of record; this
 * is what GET L/runs/ID, waiting requests and the dispatcher read.
 */


#ifndef _NGX_HTTP_FLOWSCALE_RUNS_H_INCLUDED_
#define _NGX_HTTP_FLOWSCALE_RUNS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


#define NGX_HTTP_FLOWSCALE_RUN_ID_LEN     36
#define NGX_HTTP_FLOWSCALE_MAX_BACKENDS   64
#define NGX_HTTP_FLOWSCALE_EVENT_RING     64
#define NGX_HTTP_FLOWSCALE_CHANGE_LOG     1024
#define NGX_HTTP_FLOWSCALE_MAX_DEPLOYMENTS  256


typedef enum {
    NGX_HTTP_FLOWSCALE_QUEUED = 0,
    NGX_HTTP_FLOWSCALE_RUNNING,
    NGX_HTTP_FLOWSCALE_SUCCEEDED,
    NGX_HTTP_FLOWSCALE_FAILED,
    NGX_HTTP_FLOWSCALE_CANCELED
} ngx_http_flowscale_status_e;


typedef enum {
    NGX_HTTP_FLOWSCALE_EV_STARTED = 1,
    NGX_HTTP_FLOWSCALE_EV_PROGRESS,
    NGX_HTTP_FLOWSCALE_EV_OUTPUT,
    NGX_HTTP_FLOWSCALE_EV_END                   /* succeeded, failed... */
} ngx_http_flowscale_event_e;


/*
 * A deployment's gateway queue is a ring of lanes, one per API key, served
 * in turn: one key's burst cannot starve another.
 */
typedef struct {
    ngx_queue_t                     link;       /* in the ring; head: next */
    ngx_queue_t                     runs;       /* oldest first */
    ngx_uint_t                      n;
    int64_t                         head_ticket;
    int64_t                         tail_ticket;
    u_char                          key_id[33];
} ngx_http_flowscale_lane_t;


/* what happened to a run, kept so an event stream can resume by id */
typedef struct {
    uint32_t                        id;
    uint32_t                        type;
    int32_t                         value;
    int32_t                         max;
    u_char                          node[24];
    ngx_str_t                       data;       /* JSON, in the zone */
} ngx_http_flowscale_event_t;


typedef struct {
    ngx_rbtree_node_t               node;       /* key: hash of the id */
    ngx_queue_t                     queue;      /* pending, or finished */
    ngx_queue_t                     flight;     /* handed to a backend */

    u_char                          id[NGX_HTTP_FLOWSCALE_RUN_ID_LEN];
    u_char                          project[65];
    u_char                          deployment[65];
    u_char                          version[9];
    u_char                          backend[64];
    u_char                          progress_node[32];

    ngx_http_flowscale_status_e     status;
    unsigned                        pending:1;  /* in the gateway queue */
    unsigned                        submitted:1;
    unsigned                        cancel:1;   /* asked for, not done */
    unsigned                        key_counted:1;  /* key_concurrency */
    ngx_uint_t                      retries;    /* after backend losses */
    int64_t                         ticket;     /* grows along its lane */
    ngx_http_flowscale_lane_t      *lane;       /* when pending */
    u_char                          key_id[33];
    ngx_str_t                       webhook;    /* URL, in the zone */

    ngx_pid_t                       owner;      /* follows it on a backend */

    int64_t                         created;    /* ms since the epoch */
    int64_t                         started;
    int64_t                         finished;

    int32_t                         progress_value;
    int32_t                         progress_max;

    ngx_str_t                       inputs;     /* JSON, in the zone */
    ngx_str_t                       outputs;
    ngx_str_t                       error;

    uint32_t                        nevents;    /* id of the last event */
    ngx_http_flowscale_event_t     *events;     /* ring, in the zone */
} ngx_http_flowscale_run_t;


typedef struct {
    u_char                          name[64];
    ngx_uint_t                      outstanding;
    ngx_uint_t                      foreign;    /* put there by other fronts */

    /* health, written by the leader and by failures seen in traffic */
    unsigned                        probed:1;   /* up/down is known */
    unsigned                        down:1;
    ngx_uint_t                      fails;
    int64_t                         last_seen;  /* ms since the epoch */
    u_char                          version[32];
    u_char                          error[128];
    ngx_uint_t                      info_generation;  /* of /object_info */
} ngx_http_flowscale_backend_slot_t;


typedef enum {
    NGX_HTTP_FLOWSCALE_PREPARING = 0,
    NGX_HTTP_FLOWSCALE_DEPLOYING,
    NGX_HTTP_FLOWSCALE_READY,
    NGX_HTTP_FLOWSCALE_FAILED_STATE,
    NGX_HTTP_FLOWSCALE_STOPPED
} ngx_http_flowscale_state_e;




/* what the backends can do for one deployment (by project and name) */
typedef struct {
    u_char                          project[65];
    u_char                          name[65];
    ngx_uint_t                      generation; /* computed for */
    ngx_http_flowscale_state_e      state;
    uint64_t                        capable;    /* bit i: backends[i] */
    uint64_t                        known;      /* bit i: backends[i] read */
    u_char                          reason[160];

    ngx_queue_t                     lanes;      /* its gateway queue */
    ngx_uint_t                      queued;     /* runs in it */
    int64_t                         run_ms;     /* moving average */
} ngx_http_flowscale_deployment_state_t;


typedef struct {
    ngx_rbtree_t                    rbtree;
    ngx_rbtree_node_t               sentinel;
    ngx_queue_t                     finished;   /* oldest first, evictable */
    ngx_queue_t                     inflight;   /* runs with an owner */

    ngx_atomic_t                    changes;    /* bumped on every change */

    uint64_t                        queue_seq;  /* a gateway queue moved */

    /* which runs changed, so workers wake only what watches them */
    uint64_t                        change_seq;
    u_char                          change_log[NGX_HTTP_FLOWSCALE_CHANGE_LOG]
                                              [NGX_HTTP_FLOWSCALE_RUN_ID_LEN];

    ngx_uint_t                      generation; /* bumped on every reload */

    ngx_uint_t                      recovered;  /* runs read back from PG */
    ngx_pid_t                       leader;     /* runs background work */
    ngx_msec_t                      leader_seen;

    /* this nginx among others on one PostgreSQL (..._front.c) */
    u_char                          front_id[NGX_HTTP_FLOWSCALE_RUN_ID_LEN + 1];
    ngx_uint_t                      fronts;     /* holding a lease */
    unsigned                        front_registered:1;
    unsigned                        front_ready:1;  /* took over at start */

    ngx_uint_t                      nbackends;
    ngx_http_flowscale_backend_slot_t  backends[NGX_HTTP_FLOWSCALE_MAX_BACKENDS];

    ngx_uint_t                      ndeployments;
    ngx_http_flowscale_deployment_state_t
                        deployments[NGX_HTTP_FLOWSCALE_MAX_DEPLOYMENTS];

    /* API keys: the key cache and per-key counters, allocated on first use
     * by ngx_http_flowscale_auth.c */
    void                           *auth;

    /* issue 7: counters and the registry's flags, allocated on first use
     * by ngx_http_flowscale_stats.c */
    void                           *stats;
} ngx_http_flowscale_shctx_t;


typedef struct {
    ngx_http_flowscale_shctx_t     *sh;
    ngx_slab_pool_t                *shpool;
} ngx_http_flowscale_zone_t;


/* a copy of a run taken under the lock, safe to render afterwards */
typedef struct {
    ngx_http_flowscale_run_t        run;
    ngx_uint_t                      position;   /* 1-based, when pending */
} ngx_http_flowscale_run_view_t;


ngx_http_flowscale_zone_t *ngx_http_flowscale_zone_get(ngx_cycle_t *cycle);
void ngx_http_flowscale_runs_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);

void ngx_http_flowscale_runs_lock(ngx_http_flowscale_zone_t *z);
void ngx_http_flowscale_runs_unlock(ngx_http_flowscale_zone_t *z);

/* with the lock held */
ngx_http_flowscale_run_t *ngx_http_flowscale_runs_insert(
    ngx_http_flowscale_zone_t *z, ngx_str_t *id, ngx_str_t *inputs);
ngx_http_flowscale_run_t *ngx_http_flowscale_runs_find(
    ngx_http_flowscale_zone_t *z, u_char *id, size_t len);
ngx_int_t ngx_http_flowscale_runs_set_json(ngx_http_flowscale_zone_t *z,
    ngx_str_t *field, u_char *data, size_t len);
void ngx_http_flowscale_runs_finish(ngx_http_flowscale_zone_t *z,
    ngx_http_flowscale_run_t *run, ngx_http_flowscale_status_e status);
ngx_int_t ngx_http_flowscale_runs_label(ngx_http_flowscale_zone_t *z,
    ngx_http_flowscale_run_t *run, ngx_str_t *project,
    ngx_str_t *deployment, ngx_str_t *version, ngx_str_t *key_id,
    ngx_str_t *webhook);
void ngx_http_flowscale_runs_forget(ngx_http_flowscale_zone_t *z,
    ngx_http_flowscale_run_t *run);
void ngx_http_flowscale_runs_changed(ngx_http_flowscale_zone_t *z);
void ngx_http_flowscale_runs_touch(ngx_http_flowscale_zone_t *z,
    ngx_http_flowscale_run_t *run);
ngx_int_t ngx_http_flowscale_runs_event(ngx_http_flowscale_zone_t *z,
    ngx_http_flowscale_run_t *run, ngx_http_flowscale_event_e type,
    int32_t value, int32_t max, u_char *node, u_char *data, size_t len);
ngx_http_flowscale_backend_slot_t *ngx_http_flowscale_runs_backend(
    ngx_http_flowscale_zone_t *z, ngx_str_t *name);

/* takes the lock itself; copies JSON fields into pool */
ngx_int_t ngx_http_flowscale_runs_view(ngx_http_flowscale_zone_t *z,
    u_char *id, size_t len, ngx_pool_t *pool,
    ngx_http_flowscale_run_view_t *view);

void ngx_http_flowscale_runs_flying(ngx_http_flowscale_zone_t *z,
    ngx_http_flowscale_run_t *run);
void ngx_http_flowscale_runs_landed(ngx_http_flowscale_run_t *run);
ngx_uint_t ngx_http_flowscale_runs_position(ngx_http_flowscale_zone_t *z,
    ngx_http_flowscale_run_t *run);
ngx_int_t ngx_http_flowscale_runs_events(ngx_http_flowscale_zone_t *z,
    u_char *id, ngx_pool_t *pool, ngx_http_flowscale_event_t *events);

ngx_http_flowscale_deployment_state_t *ngx_http_flowscale_runs_deployment(
    ngx_http_flowscale_zone_t *z, ngx_str_t *project, ngx_str_t *name);
ngx_http_flowscale_deployment_state_t *ngx_http_flowscale_runs_deployment_of(
    ngx_http_flowscale_zone_t *z, ngx_http_flowscale_run_t *run);
void ngx_http_flowscale_runs_enqueue(ngx_http_flowscale_zone_t *z,
    ngx_http_flowscale_run_t *run, ngx_uint_t head);
void ngx_http_flowscale_runs_dequeue(ngx_http_flowscale_zone_t *z,
    ngx_http_flowscale_run_t *run);
ngx_http_flowscale_run_t *ngx_http_flowscale_runs_next(
    ngx_http_flowscale_deployment_state_t *ds);
void ngx_http_flowscale_runs_take(ngx_http_flowscale_zone_t *z,
    ngx_http_flowscale_run_t *run);
const char *ngx_http_flowscale_state_name(ngx_http_flowscale_state_e s);

const char *ngx_http_flowscale_status_name(ngx_http_flowscale_status_e s);
int64_t ngx_http_flowscale_now_ms(void);


#endif /* _NGX_HTTP_FLOWSCALE_RUNS_H_INCLUDED_ */
