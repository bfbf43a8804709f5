
/*
 * FlowScale for nginx: flowscale_least_jobs, an upstream balancer like
 * least_conn, where a server's load is the number of FlowScale runs it has
 * (counted by all workers in the zone) rather than this worker's
 * connections.  The module's own dispatcher picks backends the same way;
 * this lets nginx's proxying to the same upstream (ComfyUI's own page, a
 * custom location) agree with it.  Round-robin's weight, down, backup,
 * max_fails and fail_timeout keep their meaning; keepalive wraps it.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_flowscale_module.h"


static ngx_int_t ngx_http_flowscale_init_least_jobs(ngx_conf_t *cf,
    ngx_http_upstream_srv_conf_t *us);
static ngx_int_t ngx_http_flowscale_init_least_jobs_peer(
    ngx_http_request_t *r, ngx_http_upstream_srv_conf_t *us);
static ngx_int_t ngx_http_flowscale_get_least_jobs_peer(
    ngx_peer_connection_t *pc, void *data);
static ngx_uint_t ngx_http_flowscale_jobs_of(ngx_http_flowscale_zone_t *z,
    ngx_str_t *name);


char *
ngx_http_flowscale_least_jobs(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_upstream_srv_conf_t  *uscf;

    uscf = ngx_http_conf_get_module_srv_conf(cf, ngx_http_upstream_module);

    if (uscf->peer.init_upstream) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "load balancing method redefined");
    }

    uscf->peer.init_upstream = ngx_http_flowscale_init_least_jobs;

    uscf->flags = NGX_HTTP_UPSTREAM_CREATE
                  |NGX_HTTP_UPSTREAM_WEIGHT
                  |NGX_HTTP_UPSTREAM_MAX_CONNS
                  |NGX_HTTP_UPSTREAM_MAX_FAILS
                  |NGX_HTTP_UPSTREAM_FAIL_TIMEOUT
                  |NGX_HTTP_UPSTREAM_DOWN
                  |NGX_HTTP_UPSTREAM_BACKUP;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_flowscale_init_least_jobs(ngx_conf_t *cf,
    ngx_http_upstream_srv_conf_t *us)
{
    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, cf->log, 0,
                   "flowscale: init least jobs");

    if (ngx_http_upstream_init_round_robin(cf, us) != NGX_OK) {
        return NGX_ERROR;
    }

    us->peer.init = ngx_http_flowscale_init_least_jobs_peer;

    return NGX_OK;
}


static ngx_int_t
ngx_http_flowscale_init_least_jobs_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us)
{
    if (ngx_http_upstream_init_round_robin_peer(r, us) != NGX_OK) {
        return NGX_ERROR;
    }

    r->upstream->peer.get = ngx_http_flowscale_get_least_jobs_peer;

    return NGX_OK;
}


/*
 * The usable primary server with the fewest runs per weight; ties and the
 * backup servers go to round-robin.
 */

static ngx_int_t
ngx_http_flowscale_get_least_jobs_peer(ngx_peer_connection_t *pc, void *data)
{
    ngx_http_upstream_rr_peer_data_t  *rrp = data;

    time_t                         now;
    uintptr_t                      m;
    ngx_int_t                      total;
    ngx_uint_t                     i, n, p, jobs, best_jobs;
    ngx_http_upstream_rr_peer_t   *peer, *best;
    ngx_http_upstream_rr_peers_t  *peers;
    ngx_http_flowscale_zone_t     *z;

    z = ngx_http_flowscale_zone_get((ngx_cycle_t *) ngx_cycle);

    if (rrp->peers->single || z == NULL) {
        return ngx_http_upstream_get_round_robin_peer(pc, rrp);
    }

    pc->cached = 0;
    pc->connection = NULL;

    now = ngx_time();
    peers = rrp->peers;

    best = NULL;
    best_jobs = 0;
    total = 0;
    p = 0;

    ngx_http_upstream_rr_peers_wlock(peers);
    ngx_http_flowscale_runs_lock(z);

    for (peer = peers->peer, i = 0; peer; peer = peer->next, i++) {

        n = i / (8 * sizeof(uintptr_t));
        m = (uintptr_t) 1 << i % (8 * sizeof(uintptr_t));

        if ((rrp->tried[n] & m) || peer->down
            || (peer->max_fails && peer->fails >= peer->max_fails
                && now - peer->checked <= peer->fail_timeout)
            || (peer->max_conns && peer->conns >= peer->max_conns))
        {
            continue;
        }

        jobs = ngx_http_flowscale_jobs_of(z, &peer->name);

        /* ties go to smooth weighted round-robin, as in least_conn */
        peer->current_weight += peer->effective_weight;
        total += peer->effective_weight;

        if (peer->effective_weight < peer->weight) {
            peer->effective_weight++;
        }

        if (best == NULL
            || jobs * best->weight < best_jobs * peer->weight
            || (jobs * best->weight == best_jobs * peer->weight
                && peer->current_weight > best->current_weight))
        {
            best = peer;
            best_jobs = jobs;
            p = i;
        }
    }

    ngx_http_flowscale_runs_unlock(z);

    if (best == NULL) {
        ngx_http_upstream_rr_peers_unlock(peers);

        /* every primary is out: the backups, by round-robin */
        return ngx_http_upstream_get_round_robin_peer(pc, rrp);
    }

    best->current_weight -= total;

    if (now - best->checked > best->fail_timeout) {
        best->checked = now;
    }

    pc->sockaddr = best->sockaddr;
    pc->socklen = best->socklen;
    pc->name = &best->name;

    best->conns++;
    rrp->current = best;

    n = p / (8 * sizeof(uintptr_t));
    m = (uintptr_t) 1 << p % (8 * sizeof(uintptr_t));
    rrp->tried[n] |= m;

    ngx_http_upstream_rr_peers_unlock(peers);

    return NGX_OK;
}


/* with the zone locked: runs a backend has, by its address */

static ngx_uint_t
ngx_http_flowscale_jobs_of(ngx_http_flowscale_zone_t *z, ngx_str_t *name)
{
    ngx_uint_t                          i;
    ngx_http_flowscale_backend_slot_t  *slot;

    for (i = 0; i < z->sh->nbackends; i++) {
        slot = &z->sh->backends[i];

        if (ngx_strlen(slot->name) == name->len
            && ngx_strncmp(slot->name, name->data, name->len) == 0)
        {
            return slot->outstanding;
        }
    }

    return 0;
}
