
/*
 * FlowScale for nginx: OpenAPI documents and the Swagger UI page
 * (issue 8), shared by ngx_http_flowscale_openapi.c and _docs.c.
 */


#ifndef _NGX_HTTP_FLOWSCALE_OPENAPI_H_INCLUDED_
#define _NGX_HTTP_FLOWSCALE_OPENAPI_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_flowscale_module.h"


#define NGX_HTTP_FLOWSCALE_OA_DEPLOYMENT  1    /* L/openapi.json */
#define NGX_HTTP_FLOWSCALE_OA_SERVER      2    /* flowscale_openapi */
#define NGX_HTTP_FLOWSCALE_OA_DOCS        3    /* flowscale_docs */


/* flcf->openapi: what one location serves */
typedef struct {
    ngx_uint_t                      kind;
    void                          **server;    /* its server{}'s srv_conf */
    ngx_http_core_loc_conf_t       *clcf;
    ngx_http_flowscale_origin_t    *origin;

    /* a document: the text around "servers", filled per request */
    ngx_str_t                       head;
    ngx_str_t                       tail;

    /* flowscale_docs */
    ngx_str_t                       prefix;    /* location, no last "/" */
    ngx_str_t                       url;       /* url=, or found */
    ngx_str_t                       assets;    /* assets=DIR */
    ngx_str_t                       page;      /* index.html */
    ngx_str_t                       script;    /* flowscale-docs.js */
} ngx_http_flowscale_openapi_conf_t;


ngx_http_flowscale_openapi_conf_t *ngx_http_flowscale_openapi_register(
    ngx_conf_t *cf, ngx_http_flowscale_loc_conf_t *flcf, ngx_uint_t kind);
ngx_int_t ngx_http_flowscale_docs_init(ngx_conf_t *cf,
    ngx_http_flowscale_openapi_conf_t *oc, ngx_array_t *locations);


#endif /* _NGX_HTTP_FLOWSCALE_OPENAPI_H_INCLUDED_ */
