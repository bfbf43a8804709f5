
/*
 * FlowScale for nginx: loading an API-format ComfyUI workflow, finding
 * FlowScale's own I/O nodes in it, checking every declared input and
 * output against it, and the deployment version.
 *
 * Pure C over jansson (see ngx_http_flowscale_workflow.h).
 */


#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ctype.h>
#include <openssl/evp.h>

#include "ngx_http_flowscale_workflow.h"
#include "ngx_http_flowscale_io.h"
#include "ngx_http_flowscale_inputs.h"


static int fs_workflow_check_node(const char *name, const char *id,
    json_t *node, fs_error_t *err);
static void fs_discover(fs_deployment_t *d);
static void fs_discover_node(fs_deployment_t *d, const char *id,
    json_t *node);
static int fs_check_input(fs_deployment_t *d, fs_input_t *in,
    fs_error_t *err);
static int fs_check_output(fs_deployment_t *d, fs_output_t *out,
    fs_error_t *err);
static int fs_check_unique_slots(fs_deployment_t *d, fs_error_t *err);
static void fs_list_keys(json_t *obj, char *buf, size_t size);
static void fs_list_output_nodes(json_t *workflow, char *buf, size_t size);
static void fs_version(fs_deployment_t *d);


/* value inputs of FSLoad* nodes, in the order they are looked for */
static const char *fs_load_slots[] = {
    "default_value", "image", "video", "audio", "file", "value", "text",
    NULL
};


fs_deployment_t *
fs_deployment_new(void)
{
    return calloc(1, sizeof(fs_deployment_t));
}


void
fs_deployment_free(fs_deployment_t *d)
{
    size_t  i;

    if (d == NULL) {
        return;
    }

    for (i = 0; i < d->ninputs; i++) {
        fs_input_clear(&d->inputs[i]);
    }

    for (i = 0; i < d->noutputs; i++) {
        free(d->outputs[i].name);
        free(d->outputs[i].node);
        free(d->outputs[i].label);
    }

    free(d->inputs);
    free(d->outputs);
    fs_prompt_template_free(d->prompt_template);
    free(d->workflow_name);
    json_decref(d->workflow);
    free(d);
}


void
fs_error(fs_error_t *err, const void *origin, const char *fmt, ...)
{
    va_list  args;

    if (err == NULL) {
        return;
    }

    va_start(args, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, args);
    va_end(args);

    err->origin = origin;
}


int
fs_workflow_load(fs_deployment_t *d, const char *name, const char *text,
    size_t len, fs_error_t *err)
{
    json_t        *wf, *node;
    const char    *id;
    json_error_t   jerr;

    wf = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);

    if (wf == NULL) {
        fs_error(err, NULL, "workflow \"%s\" is not valid JSON (%s, "
                 "line %d, column %d); export it from ComfyUI with "
                 "\"Save (API Format)\"", name, jerr.text, jerr.line,
                 jerr.column);
        return -1;
    }

    if (!json_is_object(wf)) {
        fs_error(err, NULL, "workflow \"%s\" is not an API-format workflow: "
                 "its top level is not an object of nodes; export it from "
                 "ComfyUI with \"Save (API Format)\"", name);
        goto failed;
    }

    if (json_is_array(json_object_get(wf, "nodes"))
        && json_object_get(wf, "links") != NULL)
    {
        fs_error(err, NULL, "workflow \"%s\" is in ComfyUI's UI format "
                 "(it has \"nodes\" and \"links\"), which /prompt does not "
                 "accept; export it with \"Save (API Format)\" instead",
                 name);
        goto failed;
    }

    if (json_object_size(wf) == 0) {
        fs_error(err, NULL, "workflow \"%s\" has no nodes", name);
        goto failed;
    }

    json_object_foreach(wf, id, node) {
        if (fs_workflow_check_node(name, id, node, err) != 0) {
            goto failed;
        }
    }

    /* links may point forwards, so they are checked once all nodes exist */
    json_object_foreach(wf, id, node) {
        const char  *input;
        json_t      *value, *target;

        json_object_foreach(json_object_get(node, "inputs"), input, value) {
            if (!fs_is_link(value)) {
                continue;
            }

            target = json_array_get(value, 0);

            if (json_object_get(wf, json_string_value(target)) == NULL) {
                fs_error(err, NULL, "workflow \"%s\": node \"%s\" (%s) input "
                         "\"%s\" links to node \"%s\", which is not in the "
                         "workflow; export the workflow again", name, id,
                         fs_node_class(node), input,
                         json_string_value(target));
                goto failed;
            }
        }
    }

    free(d->workflow_name);
    json_decref(d->workflow);

    d->workflow_name = strdup(name);
    d->workflow = wf;

    return d->workflow_name ? 0 : -1;

failed:

    json_decref(wf);
    return -1;
}


static int
fs_workflow_check_node(const char *name, const char *id, json_t *node,
    fs_error_t *err)
{
    json_t  *class;

    if (!json_is_object(node)) {
        fs_error(err, NULL, "workflow \"%s\": node \"%s\" is not an object; "
                 "this is not an API-format workflow, export it with "
                 "\"Save (API Format)\"", name, id);
        return -1;
    }

    class = json_object_get(node, "class_type");

    if (!json_is_string(class) || json_string_length(class) == 0) {
        fs_error(err, NULL, "workflow \"%s\": node \"%s\" has no "
                 "\"class_type\"; this is not an API-format workflow, export "
                 "it with \"Save (API Format)\"", name, id);
        return -1;
    }

    if (!json_is_object(json_object_get(node, "inputs"))) {
        fs_error(err, NULL, "workflow \"%s\": node \"%s\" (%s) has no "
                 "\"inputs\" object; export the workflow with "
                 "\"Save (API Format)\"", name, id, json_string_value(class));
        return -1;
    }

    return 0;
}


int
fs_is_link(json_t *value)
{
    return json_is_array(value)
           && json_array_size(value) == 2
           && json_is_string(json_array_get(value, 0))
           && json_is_integer(json_array_get(value, 1));
}


const char *
fs_node_class(json_t *node)
{
    return json_string_value(json_object_get(node, "class_type"));
}


int
fs_deployment_check(fs_deployment_t *d, fs_error_t *err)
{
    size_t  i;
    char    nodes[256];

    if (d->workflow == NULL) {
        fs_error(err, NULL, "no workflow: add \"flowscale_workflow FILE\"");
        return -1;
    }

    fs_discover(d);

    for (i = 0; i < d->ninputs; i++) {
        if (fs_check_input(d, &d->inputs[i], err) != 0) {
            return -1;
        }
    }

    for (i = 0; i < d->noutputs; i++) {
        if (fs_check_output(d, &d->outputs[i], err) != 0) {
            return -1;
        }
    }

    if (d->noutputs == 0) {
        fs_list_output_nodes(d->workflow, nodes, sizeof(nodes));
        fs_error(err, NULL, "workflow \"%s\" has no declared output; add "
                 "\"flowscale_output NAME NODE\" for the node whose files "
                 "the API returns (%s)", d->workflow_name, nodes);
        return -1;
    }

    if (fs_check_unique_slots(d, err) != 0) {
        return -1;
    }

    fs_version(d);

    /* without a template (out of memory), runs take the slow path */
    (void) fs_prompt_prepare(d);

    return 0;
}


/*
 * FSLoad* and FSSave* nodes are inputs and outputs by themselves, named
 * from their "label", unless a directive already declares that node.
 */

static void
fs_discover(fs_deployment_t *d)
{
    size_t        n, i;
    const char  **ids;
    const char   *id;
    json_t       *node;

    n = json_object_size(d->workflow);
    ids = malloc(n * sizeof(char *));
    if (ids == NULL) {
        return;
    }

    i = 0;
    json_object_foreach(d->workflow, id, node) {
        ids[i++] = id;
    }

    /* numeric node order, so names and order do not depend on the file */
    qsort(ids, n, sizeof(char *), fs_compare_node_ids);

    for (i = 0; i < n; i++) {
        fs_discover_node(d, ids[i], json_object_get(d->workflow, ids[i]));
    }

    free(ids);
}


static void
fs_discover_node(fs_deployment_t *d, const char *id, json_t *node)
{
    size_t       i;
    json_t      *inputs;
    const char  *class, *label, **slot;
    char         name[FS_NAME_MAX + 1];

    class = fs_node_class(node);
    inputs = json_object_get(node, "inputs");
    label = json_string_value(json_object_get(inputs, "label"));

    if (strncmp(class, "FSSave", 6) == 0) {
        for (i = 0; i < d->noutputs; i++) {
            if (strcmp(d->outputs[i].node, id) == 0) {
                return;
            }
        }

        fs_name_from_label(label, "output", id, name, sizeof(name));
        fs_output_add_automatic(d, name, id, label);
        return;
    }

    if (strncmp(class, "FSLoad", 6) != 0) {
        return;
    }

    for (slot = fs_load_slots; *slot; slot++) {
        if (json_object_get(inputs, *slot) != NULL) {
            break;
        }
    }

    if (*slot == NULL) {
        return;
    }

    for (i = 0; i < d->ninputs; i++) {
        if (strcmp(d->inputs[i].node, id) == 0
            && strcmp(d->inputs[i].input, *slot) == 0)
        {
            return;
        }
    }

    fs_name_from_label(label, "input", id, name, sizeof(name));
    fs_input_add_automatic(d, name, id, *slot, fs_type_of_load_class(class),
                           label);
}


static int
fs_check_input(fs_deployment_t *d, fs_input_t *in, fs_error_t *err)
{
    json_t  *node, *value;
    char     keys[512];

    node = json_object_get(d->workflow, in->node);

    if (node == NULL) {
        fs_list_keys(d->workflow, keys, sizeof(keys));
        fs_error(err, in->origin, "input \"%s\": workflow \"%s\" has no node "
                 "\"%s\" (its nodes: %s); use NODE.INPUT with a node id "
                 "from the API-format file", in->name, d->workflow_name,
                 in->node, keys);
        return -1;
    }

    value = json_object_get(json_object_get(node, "inputs"), in->input);

    if (value == NULL) {
        fs_list_keys(json_object_get(node, "inputs"), keys, sizeof(keys));
        fs_error(err, in->origin, "input \"%s\": node \"%s\" (%s) of workflow "
                 "\"%s\" has no input \"%s\" (its inputs: %s)", in->name,
                 in->node, fs_node_class(node), d->workflow_name, in->input,
                 keys);
        return -1;
    }

    if (fs_is_link(value)) {
        fs_error(err, in->origin, "input \"%s\": %s.%s (%s) is a link from "
                 "node \"%s\", not a value; declare the input on a value of "
                 "node \"%s\" instead (for example a Primitive node)",
                 in->name, in->node, in->input, fs_node_class(node),
                 json_string_value(json_array_get(value, 0)),
                 json_string_value(json_array_get(value, 0)));
        return -1;
    }

    return fs_input_type(in, value, fs_node_class(node), err);
}


static int
fs_check_output(fs_deployment_t *d, fs_output_t *out, fs_error_t *err)
{
    char  nodes[256];

    if (json_object_get(d->workflow, out->node) != NULL) {
        return 0;
    }

    fs_list_output_nodes(d->workflow, nodes, sizeof(nodes));
    fs_error(err, out->origin, "output \"%s\": workflow \"%s\" has no node "
             "\"%s\"; name a node that saves files (%s)", out->name,
             d->workflow_name, out->node, nodes);
    return -1;
}


static int
fs_check_unique_slots(fs_deployment_t *d, fs_error_t *err)
{
    size_t       i, j;
    fs_input_t  *a, *b;

    for (i = 0; i < d->ninputs; i++) {
        for (j = i + 1; j < d->ninputs; j++) {
            a = &d->inputs[i];
            b = &d->inputs[j];

            if (strcmp(a->name, b->name) == 0) {
                fs_error(err, b->automatic ? a->origin : b->origin,
                         "input \"%s\" is declared twice (node \"%s\" and "
                         "node \"%s\"); give each input its own name",
                         a->name, a->node, b->node);
                return -1;
            }

            if (strcmp(a->node, b->node) == 0
                && strcmp(a->input, b->input) == 0)
            {
                fs_error(err, b->origin, "inputs \"%s\" and \"%s\" both "
                         "write %s.%s; declare each NODE.INPUT once",
                         a->name, b->name, a->node, a->input);
                return -1;
            }
        }
    }

    for (i = 0; i < d->noutputs; i++) {
        for (j = i + 1; j < d->noutputs; j++) {
            if (strcmp(d->outputs[i].name, d->outputs[j].name) == 0) {
                fs_error(err, d->outputs[j].origin, "output \"%s\" is "
                         "declared twice; give each output its own name",
                         d->outputs[i].name);
                return -1;
            }
        }
    }

    return 0;
}


/*
 * Numeric ids first, by value, then the others by strcmp(): a total order,
 * so the result does not depend on the order of the keys in the file.
 */

int
fs_compare_node_ids(const void *a, const void *b)
{
    int          kx, ky;
    const char  *x = *(const char **) a;
    const char  *y = *(const char **) b;
    char        *ex, *ey;
    long long    nx, ny;

    nx = strtoll(x, &ex, 10);
    ny = strtoll(y, &ey, 10);

    kx = (*ex == '\0' && ex != x);
    ky = (*ey == '\0' && ey != y);

    if (kx != ky) {
        return kx ? -1 : 1;
    }

    if (kx && nx != ny) {
        return nx < ny ? -1 : 1;
    }

    return strcmp(x, y);
}


static void
fs_list_keys(json_t *obj, char *buf, size_t size)
{
    size_t       n, i, len;
    const char  *key, **keys;
    json_t      *value;

    buf[0] = '\0';
    n = json_object_size(obj);
    keys = malloc((n + 1) * sizeof(char *));
    if (keys == NULL) {
        return;
    }

    i = 0;
    json_object_foreach(obj, key, value) {
        keys[i++] = key;
    }

    qsort(keys, n, sizeof(char *), fs_compare_node_ids);

    len = 0;
    for (i = 0; i < n && len + 8 < size; i++) {
        len += snprintf(buf + len, size - len, "%s%s", i ? ", " : "",
                        keys[i]);
    }

    if (i < n && size > 4) {
        strcpy(buf + (len < size - 4 ? len : size - 4), "...");
    }

    free(keys);
}


/* nodes that look like they save something, to suggest in messages */

static void
fs_list_output_nodes(json_t *workflow, char *buf, size_t size)
{
    size_t       len;
    const char  *id, *class;
    json_t      *node;

    len = 0;
    buf[0] = '\0';

    json_object_foreach(workflow, id, node) {
        class = fs_node_class(node);

        if (strstr(class, "Save") == NULL && strstr(class, "Preview") == NULL)
        {
            continue;
        }

        /* ", node \"\" is " and the terminating NUL */
        if (len + strlen(id) + strlen(class) + 16 >= size) {
            break;
        }

        len += snprintf(buf + len, size - len, "%snode \"%s\" is %s",
                        len ? ", " : "", id, class);
    }

    if (len == 0) {
        snprintf(buf, size, "the workflow has no Save or Preview node");
    }
}


/*
 * The version is a short SHA-256 of the canonical workflow and of the
 * canonical declarations: a changed graph or I/O makes a new version.
 */

static void
fs_version(fs_deployment_t *d)
{
    char           *wf, *io;
    json_t         *desc;
    unsigned int    len, i;
    EVP_MD_CTX     *ctx;
    unsigned char   md[EVP_MAX_MD_SIZE];

    d->version[0] = '\0';

    wf = json_dumps(d->workflow, JSON_SORT_KEYS | JSON_COMPACT);
    desc = fs_deployment_describe(d, "", "", "");
    io = json_dumps(desc, JSON_SORT_KEYS | JSON_COMPACT);
    json_decref(desc);

    ctx = EVP_MD_CTX_new();
    len = 0;

    if (ctx && wf && io
        && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)
        && EVP_DigestUpdate(ctx, wf, strlen(wf))
        && EVP_DigestUpdate(ctx, "\n", 1)
        && EVP_DigestUpdate(ctx, io, strlen(io))
        && EVP_DigestFinal_ex(ctx, md, &len))
    {
        for (i = 0; i < FS_VERSION_LEN / 2 && i < len; i++) {
            snprintf(d->version + 2 * i, 3, "%02x", md[i]);
        }
    }

    EVP_MD_CTX_free(ctx);
    free(wf);
    free(io);
}
