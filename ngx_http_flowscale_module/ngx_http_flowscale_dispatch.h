
/*
 * FlowScale for nginx: handing runs to ComfyUI backends and following them
 * to the end.
 */


#ifndef _NGX_HTTP_FLOWSCALE_DISPATCH_H_INCLUDED_
#define _NGX_HTTP_FLOWSCALE_DISPATCH_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_flowscale_module.h"
#include "ngx_http_flowscale_inputs.h"
#include "ngx_http_flowscale_comfy.h"


typedef struct ngx_http_flowscale_job_s  ngx_http_flowscale_job_t;


/* a ComfyUI server of an upstream, as one worker talks to it */
typedef struct {
    ngx_http_flowscale_peer_t       peer;
    ngx_http_upstream_srv_conf_t   *upstream;
    ngx_uint_t                      weight;
    ngx_uint_t                      max_fails;
    ngx_uint_t                      slot;       /* in the zone's backends */

    ngx_http_flowscale_ws_t        *ws;
    ngx_uint_t                      open;
    ngx_queue_t                     waiting;
    ngx_event_t                     reconnect;
    ngx_str_t                       client_id;
    ngx_str_t                       ws_path;
    ngx_uint_t                      jobs;       /* of this worker on it */

    /* the leader's health checks */
    ngx_http_flowscale_comfy_req_t *probe;
    ngx_msec_t                      next_probe;
} ngx_http_flowscale_link_t;

/*
 * rc NGX_OK: ComfyUI accepted the prompt; NGX_DECLINED: it rejected it
 * (problem: {"detail", "errors"}), and the run has failed; NGX_ERROR: the
 * backend could not be reached, and the run went back to the queue.
 */
typedef void (*ngx_http_flowscale_submitted_pt)(void *data, ngx_int_t rc,
    json_t *problem);


ngx_int_t ngx_http_flowscale_dispatch_init_process(ngx_cycle_t *cycle);
void ngx_http_flowscale_dispatch_exit_process(ngx_cycle_t *cycle);

/*
 * A new, committed run: NGX_AGAIN when a backend with room takes it now
 * (submitted is called later, unless detached; the job owns files), NGX_OK
 * when it waits in the gateway queue.
 */
ngx_int_t ngx_http_flowscale_dispatch_new(
    ngx_http_flowscale_loc_conf_t *flcf, ngx_str_t *id, const char *prompt,
    fs_file_t *files, size_t nfiles, ngx_http_flowscale_submitted_pt submitted,
    void *data, ngx_http_flowscale_job_t **job);
void ngx_http_flowscale_dispatch_detach(ngx_http_flowscale_job_t *job);
ngx_int_t ngx_http_flowscale_dispatch_attach(
    ngx_http_flowscale_loc_conf_t *flcf, ngx_str_t *id, ngx_str_t *backend,
    ngx_uint_t counted);
ngx_http_flowscale_loc_conf_t *ngx_http_flowscale_find_deployment(
    u_char *project, u_char *name);

/* recover.c: once per start, by the leader */
void ngx_http_flowscale_recover(void);

/* every link of this worker (ngx_http_flowscale_link_t *) */
ngx_array_t *ngx_http_flowscale_dispatch_links(void);

/* the address of a backend by its name, as recorded on a run */
ngx_http_flowscale_peer_t *ngx_http_flowscale_dispatch_peer(ngx_str_t *name);

void ngx_http_flowscale_backend_drop(ngx_http_flowscale_peer_t *peer,
    ngx_str_t *id, ngx_log_t *log);

/* the gateway queue in the zone: at the tail, or back at the head */
void ngx_http_flowscale_enqueue(ngx_str_t *id);
void ngx_http_flowscale_requeue(ngx_str_t *id);


/* health.c: run by the leader; failures seen in traffic count too */
void ngx_http_flowscale_health_tick(void);
void ngx_http_flowscale_health_failed(ngx_http_flowscale_link_t *link,
    const char *why);
ngx_uint_t ngx_http_flowscale_health_usable(
    ngx_http_flowscale_loc_conf_t *flcf, ngx_http_flowscale_link_t *link,
    uint64_t capable);
ngx_http_flowscale_state_e ngx_http_flowscale_deployment_state(
    ngx_http_flowscale_loc_conf_t *flcf, u_char *reason, size_t size);


#endif /* _NGX_HTTP_FLOWSCALE_DISPATCH_H_INCLUDED_ */
