
/*
 * FlowScale for nginx: the deploy check of one deployment location, run
 * when its configuration is merged: the workflow, every input and output,
 * the backend upstream, and the pre-rendered descriptor of GET L.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_flowscale_module.h"


static void ngx_http_flowscale_deploy_error(ngx_conf_t *cf,
    ngx_http_flowscale_loc_conf_t *flcf,
    ngx_http_flowscale_origin_t *origin, const char *msg);
static ngx_int_t ngx_http_flowscale_find_backend(ngx_conf_t *cf,
    ngx_http_flowscale_loc_conf_t *flcf);
static ngx_int_t ngx_http_flowscale_render_descriptor(ngx_conf_t *cf,
    ngx_http_flowscale_loc_conf_t *flcf);
static ngx_int_t ngx_http_flowscale_error_pages(ngx_conf_t *cf,
    ngx_http_flowscale_loc_conf_t *flcf);


ngx_int_t
ngx_http_flowscale_read_conf_file(ngx_conf_t *cf, ngx_str_t *name,
    ngx_str_t *text)
{
    ssize_t          n;
    ngx_str_t       *value;
    ngx_file_t       file;
    ngx_file_info_t  fi;

    value = cf->args->elts;

    if (ngx_conf_full_name(cf->cycle, name, 1) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_memzero(&file, sizeof(ngx_file_t));

    file.name = *name;
    file.log = cf->log;
    file.fd = ngx_open_file(name->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (file.fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "%V: cannot open \"%V\"", &value[0], name);
        return NGX_ERROR;
    }

    if (ngx_fd_info(file.fd, &fi) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "%V: cannot stat \"%V\"", &value[0], name);
        goto failed;
    }

    text->len = ngx_file_size(&fi);
    text->data = ngx_pnalloc(cf->pool, text->len + 1);
    if (text->data == NULL) {
        goto failed;
    }

    n = ngx_read_file(&file, text->data, text->len, 0);

    if (n != (ssize_t) text->len) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "%V: cannot read \"%V\"", &value[0], name);
        goto failed;
    }

    text->data[text->len] = '\0';

    ngx_close_file(file.fd);

    return NGX_OK;

failed:

    ngx_close_file(file.fd);
    return NGX_ERROR;
}


char *
ngx_http_flowscale_deployment_check(ngx_conf_t *cf,
    ngx_http_flowscale_loc_conf_t *flcf)
{
    fs_error_t  err;

    if (flcf->workflow_origin == NULL) {
        ngx_http_flowscale_deploy_error(cf, flcf, flcf->origin,
            "no workflow: add \"flowscale_workflow FILE.json\" with the "
            "workflow saved by ComfyUI's \"Save (API Format)\"");
        return NGX_CONF_ERROR;
    }

    if (fs_deployment_check(flcf->deployment, &err) != 0) {
        ngx_http_flowscale_deploy_error(cf, flcf,
            (ngx_http_flowscale_origin_t *) err.origin, err.msg);
        return NGX_CONF_ERROR;
    }

    if (ngx_http_flowscale_find_backend(cf, flcf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_flowscale_render_descriptor(cf, flcf) != NGX_OK
        || ngx_http_flowscale_output_conf(cf, &flcf->output_upstream)
           != NGX_OK
        || ngx_http_flowscale_error_pages(cf, flcf) != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, cf->log, 0,
                   "flowscale: deployment \"%V\" at \"%V\" version %s",
                   &flcf->name, &flcf->location, flcf->deployment->version);

    return NGX_CONF_OK;
}


/*
 * One line that names the directive, the deployment, what is wrong and
 * where: checks run after parsing, so the place comes from the origin
 * kept when the directive was read.
 */

static void
ngx_http_flowscale_deploy_error(ngx_conf_t *cf,
    ngx_http_flowscale_loc_conf_t *flcf, ngx_http_flowscale_origin_t *origin,
    const char *msg)
{
    if (origin == NULL) {
        origin = flcf->workflow_origin ? flcf->workflow_origin
                                       : flcf->origin;
    }

    ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                  "%V in deployment \"%V\": %s in %V:%ui",
                  &origin->directive, &flcf->name, msg, &origin->file,
                  origin->line);
}


/* flowscale_backend names an upstream{} block defined anywhere in http{} */

static ngx_int_t
ngx_http_flowscale_find_backend(ngx_conf_t *cf,
    ngx_http_flowscale_loc_conf_t *flcf)
{
    ngx_uint_t                      i;
    ngx_http_upstream_srv_conf_t  **uscfp;
    ngx_http_upstream_main_conf_t  *umcf;

    if (flcf->backend_name.data == NULL) {
        ngx_http_flowscale_deploy_error(cf, flcf, flcf->origin,
            "no backend: add \"flowscale_backend UPSTREAM\" naming the "
            "upstream{} of ComfyUI servers that run this workflow");
        return NGX_ERROR;
    }

    umcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_upstream_module);
    uscfp = umcf->upstreams.elts;

    for (i = 0; i < umcf->upstreams.nelts; i++) {
        if ((uscfp[i]->flags & NGX_HTTP_UPSTREAM_CREATE)
            && uscfp[i]->host.len == flcf->backend_name.len
            && ngx_strncasecmp(uscfp[i]->host.data, flcf->backend_name.data,
                               flcf->backend_name.len) == 0)
        {
            flcf->backend = uscfp[i];
            return NGX_OK;
        }
    }

    ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                  "flowscale_backend in deployment \"%V\": no upstream "
                  "\"%V\" is defined; add \"upstream %V { server HOST:PORT; }\""
                  " with the ComfyUI servers in the http block in %V:%ui",
                  &flcf->name, &flcf->backend_name, &flcf->backend_name,
                  &flcf->backend_origin->file, flcf->backend_origin->line);

    return NGX_ERROR;
}


static ngx_int_t
ngx_http_flowscale_render_descriptor(ngx_conf_t *cf,
    ngx_http_flowscale_loc_conf_t *flcf)
{
    char    *name, *location, *text, *mark, *tail;
    json_t  *desc;

    name = ngx_pnalloc(cf->pool, flcf->name.len + 1);
    location = ngx_pnalloc(cf->pool, flcf->location.len + 1);

    if (name == NULL || location == NULL) {
        return NGX_ERROR;
    }

    ngx_cpystrn((u_char *) name, flcf->name.data, flcf->name.len + 1);
    ngx_cpystrn((u_char *) location, flcf->location.data,
                flcf->location.len + 1);

    /* the state changes at run time: split the text where it goes */
    desc = fs_deployment_describe(flcf->deployment, name, location,
                                  "\x01");
    text = json_dumps(desc, JSON_INDENT(2));
    json_decref(desc);

    mark = text ? ngx_strstr(text, "\"\\u0001\"") : NULL;

    if (mark == NULL) {
        free(text);
        return NGX_ERROR;
    }

    flcf->descriptor.len = mark - text;
    flcf->descriptor.data = ngx_pnalloc(cf->pool, flcf->descriptor.len);

    tail = mark + sizeof("\"\\u0001\"") - 1;
    flcf->descriptor_tail.len = ngx_strlen(tail) + 1;
    flcf->descriptor_tail.data = ngx_pnalloc(cf->pool,
                                             flcf->descriptor_tail.len);

    if (flcf->descriptor.data && flcf->descriptor_tail.data) {
        ngx_memcpy(flcf->descriptor.data, text, flcf->descriptor.len);
        ngx_memcpy(flcf->descriptor_tail.data, tail,
                   flcf->descriptor_tail.len - 1);
        flcf->descriptor_tail.data[flcf->descriptor_tail.len - 1] = '\n';
    }

    free(text);

    return flcf->descriptor.data && flcf->descriptor_tail.data
           ? NGX_OK : NGX_ERROR;
}


fs_input_t *
ngx_http_flowscale_find_input(fs_deployment_t *d, const char *name)
{
    size_t  i;

    for (i = 0; i < d->ninputs; i++) {
        if (ngx_strcmp(d->inputs[i].name, name) == 0) {
            return &d->inputs[i];
        }
    }

    return NULL;
}


/*
 * Errors nginx itself answers inside L (a body over client_max_body_size,
 * a backend failing while a file streams) become problem+json too: they
 * are sent back to L, whose handler answers for r->err_status.  The
 * location's own error_page directives stay first.
 */

static ngx_int_t
ngx_http_flowscale_error_pages(ngx_conf_t *cf,
    ngx_http_flowscale_loc_conf_t *flcf)
{
    ngx_uint_t                         i, j, n;
    ngx_array_t                       *pages;
    ngx_http_err_page_t               *err, *old;
    ngx_http_core_loc_conf_t          *clcf;
    ngx_http_compile_complex_value_t   ccv;

    static ngx_int_t  codes[] = { 400, 403, 404, 413, 502, 504, 0 };

    clcf = flcf->clcf;
    n = clcf->error_pages ? clcf->error_pages->nelts : 0;

    pages = ngx_array_create(cf->pool, n + 6, sizeof(ngx_http_err_page_t));
    if (pages == NULL) {
        return NGX_ERROR;
    }

    old = n ? clcf->error_pages->elts : NULL;

    for (i = 0; i < n; i++) {
        err = ngx_array_push(pages);
        if (err == NULL) {
            return NGX_ERROR;
        }

        *err = old[i];
    }

    for (i = 0; codes[i]; i++) {

        for (j = 0; j < n; j++) {
            if (old[j].status == codes[i]) {
                break;
            }
        }

        if (j < n) {
            continue;
        }

        err = ngx_array_push(pages);
        if (err == NULL) {
            return NGX_ERROR;
        }

        ngx_memzero(err, sizeof(ngx_http_err_page_t));
        err->status = codes[i];
        err->overwrite = -1;

        ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));
        ccv.cf = cf;
        ccv.value = &flcf->location;
        ccv.complex_value = &err->value;

        if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    clcf->error_pages = pages;

    return NGX_OK;
}


/* the probe interval of an upstream: its first deployment's */

ngx_msec_t
ngx_http_flowscale_health_interval(ngx_http_upstream_srv_conf_t *uscf)
{
    ngx_uint_t                        i;
    ngx_http_flowscale_loc_conf_t   **flcfp;
    ngx_http_flowscale_main_conf_t   *fmcf;

    fmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_flowscale_module);
    flcfp = fmcf->deployments.elts;

    for (i = 0; i < fmcf->deployments.nelts; i++) {
        if (flcfp[i]->backend == uscf) {
            return flcfp[i]->health_interval;
        }
    }

    return 5000;
}
