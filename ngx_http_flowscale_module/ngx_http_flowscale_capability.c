
/*
 * FlowScale for nginx: a backend is capable of a deployment when its
 * /object_info has every node class of the workflow, and every literal the
 * workflow gives to a list-valued input (a model file, a sampler) is one
 * the backend offers.  Pure C over jansson.
 */


#include <stdio.h>
#include <string.h>

#include "ngx_http_flowscale_workflow.h"
#include "ngx_http_flowscale_io.h"
#include "ngx_http_flowscale_capability.h"


static json_t *fs_input_spec(json_t *info, const char *input);
static json_t *fs_spec_options(json_t *spec);
static int fs_is_declared(const fs_deployment_t *d, const char *node,
    const char *input);
static int fs_looks_like_file(const char *value);


int
fs_capable(const fs_deployment_t *d, json_t *object_info, char *reason,
    size_t size)
{
    size_t       i;
    json_t      *node, *info, *inputs, *value, *spec, *options, *option;
    const char  *id, *class, *input, *v;

    json_object_foreach(d->workflow, id, node) {
        class = fs_node_class(node);
        info = json_object_get(object_info, class);

        if (!json_is_object(info)) {
            snprintf(reason, size, "no node class %s", class);
            return 0;
        }

        inputs = json_object_get(node, "inputs");

        json_object_foreach(inputs, input, value) {
            if (!json_is_string(value) || fs_is_declared(d, id, input)) {
                continue;
            }

            spec = fs_input_spec(info, input);
            options = fs_spec_options(spec);

            /* image_upload lists the backend's input folder: uploads */
            if (options == NULL
                || json_is_true(json_object_get(json_array_get(spec, 1),
                                                "image_upload")))
            {
                continue;
            }

            v = json_string_value(value);

            json_array_foreach(options, i, option) {
                if (json_is_string(option)
                    && strcmp(json_string_value(option), v) == 0)
                {
                    break;
                }
            }

            if (i < json_array_size(options)) {
                continue;
            }

            snprintf(reason, size, "%s %s missing (node %s, %s)",
                     fs_looks_like_file(v) ? "model" : "option", v, id,
                     class);
            return 0;
        }
    }

    return 1;
}


/* ["INT", {...}] or [["a", "b"], {...}] from "required" or "optional" */

static json_t *
fs_input_spec(json_t *info, const char *input)
{
    json_t  *spec;

    spec = json_object_get(json_object_get(json_object_get(info, "input"),
                                           "required"), input);
    if (spec == NULL) {
        spec = json_object_get(json_object_get(json_object_get(info, "input"),
                                               "optional"), input);
    }

    return json_is_array(spec) ? spec : NULL;
}


/* the list of a combo input: the old form, or ["COMBO", {"options"}] */

static json_t *
fs_spec_options(json_t *spec)
{
    json_t  *type;

    type = json_array_get(spec, 0);

    if (json_is_array(type)) {
        return type;
    }

    if (json_is_string(type) && strcmp(json_string_value(type), "COMBO") == 0)
    {
        type = json_object_get(json_array_get(spec, 1), "options");
        return json_is_array(type) ? type : NULL;
    }

    return NULL;
}


static int
fs_is_declared(const fs_deployment_t *d, const char *node, const char *input)
{
    size_t  i;

    for (i = 0; i < d->ninputs; i++) {
        if (strcmp(d->inputs[i].node, node) == 0
            && strcmp(d->inputs[i].input, input) == 0)
        {
            return 1;
        }
    }

    return 0;
}


static int
fs_looks_like_file(const char *value)
{
    const char  *dot;

    dot = strrchr(value, '.');

    return dot != NULL && dot[1] != '\0' && strlen(dot) <= 12;
}
