
/*
 * FlowScale for nginx: declared inputs and outputs of a deployment, their
 * types and their JSON Schema.  Pure C over jansson; shared by the
 * workflow checks and the descriptor.
 */


#ifndef _NGX_HTTP_FLOWSCALE_IO_H_INCLUDED_
#define _NGX_HTTP_FLOWSCALE_IO_H_INCLUDED_


#include "ngx_http_flowscale_workflow.h"


void fs_error(fs_error_t *err, const void *origin, const char *fmt, ...)
#ifdef __GNUC__
    __attribute__ ((format (printf, 3, 4)))
#endif
    ;

int fs_is_link(json_t *value);
const char *fs_node_class(json_t *node);
int fs_compare_node_ids(const void *a, const void *b);

void fs_input_clear(fs_input_t *in);
int fs_input_add_automatic(fs_deployment_t *d, const char *name,
    const char *node, const char *input, fs_type_e type, const char *label);
int fs_output_add_automatic(fs_deployment_t *d, const char *name,
    const char *node, const char *label);
int fs_input_type(fs_input_t *in, json_t *value, const char *class,
    fs_error_t *err);
void fs_name_from_label(const char *label, const char *kind, const char *id,
    char *name, size_t size);
fs_type_e fs_type_of_load_class(const char *class);
int fs_type_is_file(fs_type_e type);
json_t *fs_input_schema_with(const fs_input_t *in, json_t *current);


#endif /* _NGX_HTTP_FLOWSCALE_IO_H_INCLUDED_ */
