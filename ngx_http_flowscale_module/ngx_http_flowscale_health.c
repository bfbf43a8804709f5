
/*
 * FlowScale for nginx: backend health and capability.
 *
 * The leader probes every backend (GET /system_stats) every
 * flowscale_health_interval; failures seen in traffic count too, and a
 * backend with max_fails failures is down until a probe succeeds.  Once
 * per configuration (and when a backend comes back) the leader reads each
 * backend's /object_info and decides which deployments it can run; a
 * deployment is "deploying" until that is known, then "ready", or
 * "failed" with the reason when no backend can run it.  Everything lands
 * in the zone, so all workers dispatch alike.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_flowscale_module.h"
#include "ngx_http_flowscale_dispatch.h"
#include "ngx_http_flowscale_capability.h"


#define NGX_HTTP_FLOWSCALE_PROBE_TIMEOUT  3000
#define NGX_HTTP_FLOWSCALE_INFO_TIMEOUT   30000


static void ngx_http_flowscale_probe(ngx_http_flowscale_link_t *link);
static void ngx_http_flowscale_probed(void *data, ngx_int_t rc,
    ngx_uint_t status, ngx_str_t *body);
static void ngx_http_flowscale_read_info(ngx_http_flowscale_link_t *link);
static void ngx_http_flowscale_info(void *data, ngx_int_t rc,
    ngx_uint_t status, ngx_str_t *body);
static void ngx_http_flowscale_update_states(void);
static ngx_http_flowscale_backend_slot_t *ngx_http_flowscale_slot(
    ngx_http_flowscale_link_t *link);


void
ngx_http_flowscale_health_tick(void)
{
    ngx_uint_t                   i;
    ngx_array_t                 *links;
    ngx_http_flowscale_link_t  **link;

    links = ngx_http_flowscale_dispatch_links();
    link = links->elts;

    for (i = 0; i < links->nelts; i++) {
        if (link[i]->probe == NULL
            && (ngx_msec_int_t) (ngx_current_msec - link[i]->next_probe) >= 0)
        {
            ngx_http_flowscale_probe(link[i]);
        }
    }
}


static ngx_http_flowscale_backend_slot_t *
ngx_http_flowscale_slot(ngx_http_flowscale_link_t *link)
{
    ngx_http_flowscale_zone_t  *z;

    z = ngx_http_flowscale_zone_get((ngx_cycle_t *) ngx_cycle);

    return &z->sh->backends[link->slot];
}


static void
ngx_http_flowscale_probe(ngx_http_flowscale_link_t *link)
{
    ngx_str_t  path;

    ngx_str_set(&path, "/system_stats");

    link->probe = ngx_http_flowscale_comfy_request(&link->peer, "GET", &path,
                      NULL, NULL, NGX_HTTP_FLOWSCALE_PROBE_TIMEOUT,
                      ngx_http_flowscale_probed, link, ngx_cycle->log);
}


static void
ngx_http_flowscale_probed(void *data, ngx_int_t rc, ngx_uint_t status,
    ngx_str_t *body)
{
    ngx_http_flowscale_link_t *link = data;

    json_t                             *stats;
    ngx_uint_t                          was_down, read_info;
    const char                         *version;
    ngx_http_flowscale_zone_t          *z;
    ngx_http_flowscale_backend_slot_t  *slot;

    link->probe = NULL;
    link->next_probe = ngx_current_msec + ngx_http_flowscale_health_interval(
                                              link->upstream);

    if (rc != NGX_OK || status != NGX_HTTP_OK) {
        ngx_http_flowscale_health_failed(link, rc == NGX_OK
                                               ? "probe answered an error"
                                               : "probe failed");
        return;
    }

    stats = json_loadb((char *) body->data, body->len, 0, NULL);
    version = json_string_value(json_object_get(
                  json_object_get(stats, "system"), "comfyui_version"));

    z = ngx_http_flowscale_zone_get((ngx_cycle_t *) ngx_cycle);

    ngx_http_flowscale_runs_lock(z);

    slot = ngx_http_flowscale_slot(link);
    was_down = slot->down || !slot->probed;

    slot->probed = 1;
    slot->down = 0;
    slot->fails = 0;
    slot->error[0] = '\0';
    slot->last_seen = ngx_http_flowscale_now_ms();

    if (version) {
        ngx_cpystrn(slot->version, (u_char *) version, sizeof(slot->version));
    }

    /* a new configuration, or a server that may have been replaced */
    read_info = was_down || slot->info_generation != z->sh->generation;

    ngx_http_flowscale_runs_unlock(z);

    json_decref(stats);

    if (was_down) {
        ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                      "flowscale: backend %V is up", &link->peer.name);
    }

    if (read_info) {
        ngx_http_flowscale_read_info(link);
    }
}


void
ngx_http_flowscale_health_failed(ngx_http_flowscale_link_t *link,
    const char *why)
{
    ngx_http_flowscale_zone_t          *z;
    ngx_http_flowscale_backend_slot_t  *slot;

    z = ngx_http_flowscale_zone_get((ngx_cycle_t *) ngx_cycle);

    ngx_http_flowscale_runs_lock(z);

    slot = ngx_http_flowscale_slot(link);

    slot->probed = 1;
    slot->fails++;
    ngx_cpystrn(slot->error, (u_char *) why, sizeof(slot->error));

    if (slot->fails >= link->max_fails && !slot->down) {
        slot->down = 1;

        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "flowscale: backend %V is down: %s", &link->peer.name,
                      why);
    }

    ngx_http_flowscale_runs_unlock(z);
}


static void
ngx_http_flowscale_read_info(ngx_http_flowscale_link_t *link)
{
    ngx_str_t  path;

    ngx_str_set(&path, "/object_info");

    link->probe = ngx_http_flowscale_comfy_request(&link->peer, "GET", &path,
                      NULL, NULL, NGX_HTTP_FLOWSCALE_INFO_TIMEOUT,
                      ngx_http_flowscale_info, link, ngx_cycle->log);
}


/* which deployments of this backend's upstream it can run */

static void
ngx_http_flowscale_info(void *data, ngx_int_t rc, ngx_uint_t status,
    ngx_str_t *body)
{
    ngx_http_flowscale_link_t *link = data;

    char                                    reason[160];
    json_t                                 *info;
    uint64_t                                bit;
    ngx_uint_t                              i, capable;
    ngx_http_flowscale_zone_t              *z;
    ngx_http_flowscale_loc_conf_t         **flcfp;
    ngx_http_flowscale_main_conf_t         *fmcf;
    ngx_http_flowscale_deployment_state_t  *ds;

    link->probe = NULL;

    /* limits such as 2^64-1 overflow jansson's integers: read them as reals */
    info = (rc == NGX_OK && status == NGX_HTTP_OK)
           ? json_loadb((char *) body->data, body->len,
                        JSON_DECODE_INT_AS_REAL, NULL)
           : NULL;

    if (!json_is_object(info)) {
        json_decref(info);
        ngx_http_flowscale_health_failed(link, "cannot read /object_info");
        return;
    }

    fmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_flowscale_module);
    z = ngx_http_flowscale_zone_get((ngx_cycle_t *) ngx_cycle);
    flcfp = fmcf->deployments.elts;
    bit = (uint64_t) 1 << link->slot;

    for (i = 0; i < fmcf->deployments.nelts; i++) {
        if (flcfp[i]->backend != link->upstream) {
            continue;
        }

        reason[0] = '\0';
        capable = fs_capable(flcfp[i]->deployment, info, reason,
                             sizeof(reason));

        ngx_http_flowscale_runs_lock(z);

        ds = ngx_http_flowscale_runs_deployment(z, &flcfp[i]->project,
                                                &flcfp[i]->name);
        if (ds) {
            if (ds->generation != z->sh->generation) {
                /* a reload: what was known is about another workflow */
                ds->generation = z->sh->generation;
                ds->capable = 0;
                ds->known = 0;
            }

            ds->known |= bit;
            ds->capable = capable ? (ds->capable | bit) : (ds->capable & ~bit);

            if (!capable) {
                ngx_cpystrn(ds->reason, (u_char *) reason,
                            sizeof(ds->reason));
            }
        }

        ngx_http_flowscale_runs_unlock(z);

        if (!capable) {
            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                          "flowscale: backend %V cannot run deployment "
                          "\"%V\": %s", &link->peer.name, &flcfp[i]->name,
                          reason);
        }
    }

    json_decref(info);

    ngx_http_flowscale_runs_lock(z);
    z->sh->backends[link->slot].info_generation = z->sh->generation;
    ngx_http_flowscale_runs_unlock(z);

    ngx_http_flowscale_update_states();
}


/*
 * ready: a backend can run it; deploying: some backend is not read yet;
 * failed: every backend was read and none can.
 */

static void
ngx_http_flowscale_update_states(void)
{
    uint64_t                                all;
    ngx_uint_t                              i, j;
    ngx_array_t                            *links;
    ngx_http_flowscale_link_t             **link;
    ngx_http_flowscale_zone_t              *z;
    ngx_http_flowscale_loc_conf_t         **flcfp;
    ngx_http_flowscale_main_conf_t         *fmcf;
    ngx_http_flowscale_deployment_state_t  *ds;
    u_char                                  reason[160];

    fmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_flowscale_module);
    z = ngx_http_flowscale_zone_get((ngx_cycle_t *) ngx_cycle);
    links = ngx_http_flowscale_dispatch_links();
    link = links->elts;
    flcfp = fmcf->deployments.elts;

    ngx_http_flowscale_runs_lock(z);

    for (i = 0; i < fmcf->deployments.nelts; i++) {
        ds = ngx_http_flowscale_runs_deployment(z, &flcfp[i]->project,
                                                &flcfp[i]->name);
        if (ds == NULL || ds->generation != z->sh->generation) {
            continue;
        }

        all = 0;

        for (j = 0; j < links->nelts; j++) {
            if (link[j]->upstream == flcfp[i]->backend) {
                all |= (uint64_t) 1 << link[j]->slot;
            }
        }

        if (ds->state == NGX_HTTP_FLOWSCALE_STOPPED) {
            continue;
        }

        if (ds->capable & all) {
            ds->state = NGX_HTTP_FLOWSCALE_READY;

        } else if ((ds->known & all) != all) {
            ds->state = NGX_HTTP_FLOWSCALE_DEPLOYING;

        } else {
            ds->state = NGX_HTTP_FLOWSCALE_FAILED_STATE;

            if (ngx_strncmp(ds->reason, "no node class ", 14) == 0) {
                ngx_snprintf(reason, sizeof(reason),
                             "no backend has node class %s%Z",
                             ds->reason + 14);

            } else {
                ngx_snprintf(reason, sizeof(reason), "%s on all backends%Z",
                             ds->reason);
            }

            ngx_cpystrn(ds->reason, reason, sizeof(ds->reason));
        }
    }

    ngx_http_flowscale_runs_unlock(z);
}


/* with the zone locked: may this link take a run of this deployment? */

ngx_uint_t
ngx_http_flowscale_health_usable(ngx_http_flowscale_loc_conf_t *flcf,
    ngx_http_flowscale_link_t *link, uint64_t capable)
{
    ngx_http_flowscale_backend_slot_t  *slot;

    slot = ngx_http_flowscale_slot(link);

    return !slot->down && (capable & ((uint64_t) 1 << link->slot));
}


/* the state GET L and POST L see; reason is set when it failed */

ngx_http_flowscale_state_e
ngx_http_flowscale_deployment_state(ngx_http_flowscale_loc_conf_t *flcf,
    u_char *reason, size_t size)
{
    ngx_http_flowscale_zone_t              *z;
    ngx_http_flowscale_state_e              state;
    ngx_http_flowscale_deployment_state_t  *ds;

    z = ngx_http_flowscale_zone_get((ngx_cycle_t *) ngx_cycle);

    ngx_http_flowscale_runs_lock(z);

    ds = ngx_http_flowscale_runs_deployment(z, &flcf->project, &flcf->name);

    if (ds == NULL || ds->generation != z->sh->generation) {
        state = NGX_HTTP_FLOWSCALE_DEPLOYING;

    } else {
        state = ds->state;

        if (reason) {
            ngx_cpystrn(reason, ds->reason, size);
        }
    }

    ngx_http_flowscale_runs_unlock(z);

    return state;
}
