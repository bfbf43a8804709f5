
/*
 * FlowScale for nginx: the OpenAPI 3.1 document of one or more deployments
 * (design.md sections 4 and 5).  Pure C over jansson, like the workflow
 * checks: unit tested in t/unit/test_openapi.c.
 */


#ifndef _NGX_HTTP_FLOWSCALE_OPENAPI_DOC_H_INCLUDED_
#define _NGX_HTTP_FLOWSCALE_OPENAPI_DOC_H_INCLUDED_


#include "ngx_http_flowscale_workflow.h"


/* one deployment as the document shows it */
typedef struct {
    const fs_deployment_t  *deployment;
    const char             *name;        /* flowscale_deployment NAME */
    const char             *location;    /* L, without a trailing slash */
    const char             *base;        /* the path of GET/POST L: L or L/ */
    int                     api_key;     /* run routes need a key */
} fs_openapi_loc_t;


/*
 * The document of the deployments in locs[0..n-1]; "servers" is set to
 * the servers given, which it takes over (the nginx side puts a marker
 * there and fills it per request).  NULL when out of memory.
 */
json_t *fs_openapi_document(const fs_openapi_loc_t *locs, size_t n,
    json_t *servers);

/* the inputs of an example request, from the workflow's current values */
json_t *fs_openapi_example_inputs(const fs_deployment_t *d);


#endif /* _NGX_HTTP_FLOWSCALE_OPENAPI_DOC_H_INCLUDED_ */
