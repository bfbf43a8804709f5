
/*
 * FlowScale for nginx: can a ComfyUI backend run a deployment?  Pure C
 * over jansson: read against the backend's /object_info.
 */


#ifndef _NGX_HTTP_FLOWSCALE_CAPABILITY_H_INCLUDED_
#define _NGX_HTTP_FLOWSCALE_CAPABILITY_H_INCLUDED_


#include "ngx_http_flowscale_workflow.h"


/*
 * 1 when the backend has every node class the workflow uses and every
 * file (model, LoRA, ...) it names; else 0 with reason ("no node class
 * IPAdapterApply", "model sdxl.safetensors missing (node 4,
 * CheckpointLoaderSimple)").  Values the caller sends (declared inputs)
 * and uploaded images are not checked: they change per run.
 */
int fs_capable(const fs_deployment_t *d, json_t *object_info, char *reason,
    size_t size);


#endif /* _NGX_HTTP_FLOWSCALE_CAPABILITY_H_INCLUDED_ */
