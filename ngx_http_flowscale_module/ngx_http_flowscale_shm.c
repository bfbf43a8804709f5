
/*
 * FlowScale for nginx: the shared memory zone (flowscale_zone) that holds
 * the live view of runs, the key cache and the counters for every worker.
 * It is kept across "nginx -s reload".
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_flowscale_module.h"
#include "ngx_http_flowscale_front.h"


static ngx_int_t ngx_http_flowscale_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_int_t ngx_http_flowscale_add_zone(ngx_conf_t *cf,
    ngx_http_flowscale_main_conf_t *fmcf, ngx_str_t *name, ssize_t size);


/* flowscale_zone NAME:SIZE; */

char *
ngx_http_flowscale_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_flowscale_main_conf_t *fmcf = conf;

    u_char     *p;
    ssize_t     size;
    ngx_str_t  *value, name, s;

    if (fmcf->shm_zone) {
        return "is duplicate";
    }

    value = cf->args->elts;

    p = (u_char *) ngx_strchr(value[1].data, ':');

    if (p == NULL || p == value[1].data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "flowscale_zone \"%V\" must be NAME:SIZE, for "
                           "example flowscale:32m", &value[1]);
        return NGX_CONF_ERROR;
    }

    name.data = value[1].data;
    name.len = p - value[1].data;

    s.data = p + 1;
    s.len = value[1].data + value[1].len - s.data;

    size = ngx_parse_size(&s);

    if (size == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "flowscale_zone \"%V\": invalid size \"%V\"",
                           &value[1], &s);
        return NGX_CONF_ERROR;
    }

    if (size < (ssize_t) (64 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "flowscale_zone \"%V\" is too small: at least "
                           "%uzk", &value[1], (64 * ngx_pagesize) >> 10);
        return NGX_CONF_ERROR;
    }

    if (ngx_http_flowscale_add_zone(cf, fmcf, &name, size) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* deployments without flowscale_zone get "flowscale:32m" */

ngx_int_t
ngx_http_flowscale_zone_default(ngx_conf_t *cf,
    ngx_http_flowscale_main_conf_t *fmcf)
{
    ngx_str_t  name = ngx_string(NGX_HTTP_FLOWSCALE_DEFAULT_ZONE);

    if (fmcf->shm_zone) {
        return NGX_OK;
    }

    return ngx_http_flowscale_add_zone(cf, fmcf, &name,
                                       NGX_HTTP_FLOWSCALE_DEFAULT_ZONE_SIZE);
}


static ngx_int_t
ngx_http_flowscale_add_zone(ngx_conf_t *cf,
    ngx_http_flowscale_main_conf_t *fmcf, ngx_str_t *name, ssize_t size)
{
    ngx_http_flowscale_zone_t  *zone;

    zone = ngx_pcalloc(cf->pool, sizeof(ngx_http_flowscale_zone_t));
    if (zone == NULL) {
        return NGX_ERROR;
    }

    fmcf->shm_zone = ngx_shared_memory_add(cf, name, size,
                                           &ngx_http_flowscale_module);
    if (fmcf->shm_zone == NULL) {
        return NGX_ERROR;
    }

    if (fmcf->shm_zone->data) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "flowscale_zone \"%V\" is already used by another "
                      "module", name);
        return NGX_ERROR;
    }

    fmcf->shm_zone->init = ngx_http_flowscale_init_zone;
    fmcf->shm_zone->data = zone;

    return NGX_OK;
}


static ngx_int_t
ngx_http_flowscale_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_flowscale_zone_t  *ozone = data;

    size_t                      len;
    ngx_http_flowscale_zone_t  *zone;

    zone = shm_zone->data;

    if (ozone) {
        /* a reload: keep the live state of the previous cycle */
        zone->sh = ozone->sh;
        zone->shpool = ozone->shpool;
        zone->sh->generation++;
        return NGX_OK;
    }

    zone->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        zone->sh = zone->shpool->data;
        return NGX_OK;
    }

    zone->sh = ngx_slab_calloc(zone->shpool,
                               sizeof(ngx_http_flowscale_shctx_t));
    if (zone->sh == NULL) {
        return NGX_ERROR;
    }

    zone->shpool->data = zone->sh;

    /* never 0: a deployment's state of generation 0 is "not known yet" */
    zone->sh->generation = 1;

    /* a new life of this nginx among the fronts on its PostgreSQL */
    ngx_http_flowscale_front_new_id(zone->sh->front_id);
    zone->sh->fronts = 1;

    ngx_rbtree_init(&zone->sh->rbtree, &zone->sh->sentinel,
                    ngx_http_flowscale_runs_rbtree_insert);
    ngx_queue_init(&zone->sh->finished);
    ngx_queue_init(&zone->sh->inflight);

    len = sizeof(" in flowscale_zone \"\"") + shm_zone->shm.name.len;

    zone->shpool->log_ctx = ngx_slab_alloc(zone->shpool, len);
    if (zone->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(zone->shpool->log_ctx, " in flowscale_zone \"%V\"%Z",
                &shm_zone->shm.name);

    return NGX_OK;
}
