
/*
 * FlowScale for nginx: Gradio 6's client protocol ("sse_v3", gradio.md) at
 * L/app/, so Client.connect("http://host/L/app") and predict("/predict")
 * of the official clients run the deployment.
 *
 * One endpoint, /predict: its parameters are the declared inputs in
 * declaration order, its returns the declared outputs.  queue/join goes
 * through the very path of POST L (validation, PostgreSQL, the gateway
 * queue, queue bounds) by ngx_http_flowscale_create_then(); the event id
 * is the run id.  Sessions (which runs a session_hash waits for) live in a
 * small shared zone of their own, so join and queue/data may reach
 * different workers.  The queue/data stream polls the runs' live view in
 * the flowscale zone and turns it into estimation, process_starts,
 * progress and process_completed, then close_stream once nothing is
 * pending for the session.  Files go out as FileData whose path names the
 * run, the output and its index, and come back through file=PATH, served
 * like L/runs/ID/outputs/NAME/N: nothing is ever mapped onto a filesystem.
 * Uploads are kept in client_body_temp_path under random names for an
 * hour, and feed file inputs as data: URLs.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <openssl/rand.h>
#include <dirent.h>
#include <ctype.h>

#include "ngx_http_flowscale_module.h"
#include "ngx_http_flowscale_form.h"
#include "ngx_http_flowscale_inputs.h"
#include "ngx_http_flowscale_io.h"


#define NGX_HTTP_FLOWSCALE_GR_SESSIONS     512
#define NGX_HTTP_FLOWSCALE_GR_EVENTS       16
#define NGX_HTTP_FLOWSCALE_GR_HASH_MAX     64
#define NGX_HTTP_FLOWSCALE_GR_POLL         100
#define NGX_HTTP_FLOWSCALE_GR_HEARTBEAT    15000
#define NGX_HTTP_FLOWSCALE_GR_IDLE         (10 * 60 * 1000)
#define NGX_HTTP_FLOWSCALE_GR_UNCLAIMED    (60 * 60 * 1000)
#define NGX_HTTP_FLOWSCALE_GR_UPLOAD_TTL   3600
#define NGX_HTTP_FLOWSCALE_GR_ZONE_SIZE    (1024 * 1024)


typedef struct {
    u_char                          run[NGX_HTTP_FLOWSCALE_RUN_ID_LEN];
    unsigned                        used:1;
} ngx_http_flowscale_gr_event_t;


typedef struct {
    u_char                          hash[NGX_HTTP_FLOWSCALE_GR_HASH_MAX + 1];
    int64_t                         touched;
    ngx_uint_t                      nevents;
    ngx_http_flowscale_gr_event_t   ev[NGX_HTTP_FLOWSCALE_GR_EVENTS];
} ngx_http_flowscale_gr_session_t;


typedef struct {
    ngx_uint_t                      app_id;
    ngx_http_flowscale_gr_session_t s[NGX_HTTP_FLOWSCALE_GR_SESSIONS];
} ngx_http_flowscale_gr_sh_t;


/* what a queue/data stream already told about one event */
typedef struct {
    u_char                          run[NGX_HTTP_FLOWSCALE_RUN_ID_LEN];
    ngx_uint_t                      rank;       /* position sent + 1 */
    int32_t                         progress;
    unsigned                        used:1;
    unsigned                        estimated:1;
    unsigned                        started:1;
} ngx_http_flowscale_gr_seen_t;


typedef struct {
    ngx_http_request_t             *request;
    ngx_http_flowscale_loc_conf_t  *flcf;
    u_char                          hash[NGX_HTTP_FLOWSCALE_GR_HASH_MAX + 1];
    ngx_event_t                     poll;
    ngx_msec_t                      last_sent;
    ngx_uint_t                      heartbeat;  /* heartbeat/ID: ALIVE */
    ngx_http_flowscale_gr_seen_t    seen[NGX_HTTP_FLOWSCALE_GR_EVENTS];
} ngx_http_flowscale_gr_stream_t;


typedef struct {
    ngx_http_flowscale_loc_conf_t  *flcf;
    u_char                          hash[NGX_HTTP_FLOWSCALE_GR_HASH_MAX + 1];
} ngx_http_flowscale_gr_join_t;


static ngx_int_t ngx_http_flowscale_gr_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_int_t ngx_http_flowscale_gr_config(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf);
static ngx_int_t ngx_http_flowscale_gr_info(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf);
static ngx_int_t ngx_http_flowscale_gr_read(ngx_http_request_t *r,
    ngx_http_client_body_handler_pt handler);
static void ngx_http_flowscale_gr_join_body(ngx_http_request_t *r);
static ngx_int_t ngx_http_flowscale_gr_joined(ngx_http_request_t *r,
    ngx_str_t *id);
static void ngx_http_flowscale_gr_join_cleanup(void *data);
static void ngx_http_flowscale_gr_upload_body(ngx_http_request_t *r);
static void ngx_http_flowscale_gr_cancel_body(ngx_http_request_t *r);
static ngx_int_t ngx_http_flowscale_gr_stream(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf, ngx_str_t *hash,
    ngx_uint_t heartbeat);
static void ngx_http_flowscale_gr_poll(ngx_event_t *ev);
static ngx_int_t ngx_http_flowscale_gr_pump(
    ngx_http_flowscale_gr_stream_t *st, ngx_uint_t *finished);
static void ngx_http_flowscale_gr_stream_cleanup(void *data);
static ngx_int_t ngx_http_flowscale_gr_file(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf, ngx_str_t *path);
static ngx_int_t ngx_http_flowscale_gr_json(ngx_http_request_t *r,
    ngx_uint_t status, json_t *v);
static ngx_int_t ngx_http_flowscale_gr_detail(ngx_http_request_t *r,
    ngx_uint_t status, const char *detail);
static ngx_http_flowscale_gr_session_t *ngx_http_flowscale_gr_session(
    ngx_http_flowscale_gr_sh_t *sh, u_char *hash, ngx_uint_t create);
static json_t *ngx_http_flowscale_gr_outputs(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf, ngx_http_flowscale_run_view_t *v);
const char *ngx_http_flowscale_gradio_output_kind(fs_deployment_t *d,
    fs_output_t *out);
ngx_int_t ngx_http_flowscale_gradio_zone(ngx_conf_t *cf);
static json_t *ngx_http_flowscale_gr_current(fs_deployment_t *d,
    fs_input_t *in);
static ngx_int_t ngx_http_flowscale_gr_root(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf, u_char *buf, size_t size);
static ngx_int_t ngx_http_flowscale_gr_upload_dir(ngx_http_request_t *r,
    u_char *buf, size_t size);
static ngx_int_t ngx_http_flowscale_gr_arg(ngx_http_request_t *r,
    const char *name, u_char *buf, size_t size);


static ngx_shm_zone_t  *ngx_http_flowscale_gr_zone;

static ngx_str_t  ngx_http_flowscale_gr_json_type =
    ngx_string("application/json");


/* flowscale_app on|public: the sessions' zone, one for all deployments */

ngx_int_t
ngx_http_flowscale_gradio_zone(ngx_conf_t *cf)
{
    ngx_str_t  name = ngx_string("flowscale_gradio");

    ngx_http_flowscale_gr_zone = ngx_shared_memory_add(cf, &name,
                                     NGX_HTTP_FLOWSCALE_GR_ZONE_SIZE,
                                     &ngx_http_flowscale_module);
    if (ngx_http_flowscale_gr_zone == NULL) {
        return NGX_ERROR;
    }

    ngx_http_flowscale_gr_zone->init = ngx_http_flowscale_gr_init_zone;

    return NGX_OK;
}


static ngx_int_t
ngx_http_flowscale_gr_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_slab_pool_t             *shpool;
    ngx_http_flowscale_gr_sh_t  *sh;

    if (data) {
        /* a reload: the sessions go on */
        shm_zone->data = data;
        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        shm_zone->data = shpool->data;
        return NGX_OK;
    }

    sh = ngx_slab_calloc(shpool, sizeof(ngx_http_flowscale_gr_sh_t));
    if (sh == NULL) {
        return NGX_ERROR;
    }

    sh->app_id = (ngx_uint_t) ngx_random() % 1000000000;
    shpool->data = sh;
    shm_zone->data = sh;

    return NGX_OK;
}


static ngx_http_flowscale_gr_sh_t *
ngx_http_flowscale_gr_lock(void)
{
    ngx_slab_pool_t  *shpool;

    if (ngx_http_flowscale_gr_zone == NULL
        || ngx_http_flowscale_gr_zone->data == NULL)
    {
        return NULL;
    }

    shpool = (ngx_slab_pool_t *) ngx_http_flowscale_gr_zone->shm.addr;
    ngx_shmtx_lock(&shpool->mutex);

    return ngx_http_flowscale_gr_zone->data;
}


static void
ngx_http_flowscale_gr_unlock(void)
{
    ngx_slab_pool_t  *shpool;

    shpool = (ngx_slab_pool_t *) ngx_http_flowscale_gr_zone->shm.addr;
    ngx_shmtx_unlock(&shpool->mutex);
}


/* rest: what follows L/app, "/config" or "/gradio_api/..." */

ngx_int_t
ngx_http_flowscale_gradio(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf, ngx_str_t *rest)
{
    ngx_str_t   path, arg;
    ngx_int_t   rc;
    u_char      hash[NGX_HTTP_FLOWSCALE_GR_HASH_MAX + 1];

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "flowscale gradio: \"%V\"", rest);

#define ngx_http_flowscale_gr_is(s)                                           \
    (path.len == sizeof(s) - 1 && ngx_strncmp(path.data, s, path.len) == 0)

    path = *rest;

    if (ngx_http_flowscale_gr_is("/config")
        || ngx_http_flowscale_gr_is("/config/"))
    {
        if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
            return NGX_HTTP_NOT_ALLOWED;
        }

        ngx_http_discard_request_body(r);
        return ngx_http_flowscale_gr_config(r, flcf);
    }

    if (path.len < sizeof("/gradio_api/") - 1
        || ngx_strncmp(path.data, "/gradio_api/", sizeof("/gradio_api/") - 1)
           != 0)
    {
        return NGX_DECLINED;
    }

    path.data += sizeof("/gradio_api") - 1;
    path.len -= sizeof("/gradio_api") - 1;

    if (ngx_http_flowscale_gr_is("/info") || ngx_http_flowscale_gr_is("/info/"))
    {
        ngx_http_discard_request_body(r);
        return ngx_http_flowscale_gr_info(r, flcf);
    }

    if (ngx_http_flowscale_gr_is("/app_id")) {
        ngx_http_flowscale_gr_sh_t  *sh;
        ngx_uint_t                   id;

        ngx_http_discard_request_body(r);

        sh = ngx_http_flowscale_gr_lock();
        id = sh ? sh->app_id : 0;
        if (sh) {
            ngx_http_flowscale_gr_unlock();
        }

        return ngx_http_flowscale_gr_json(r, NGX_HTTP_OK,
                   json_pack("{s:I}", "app_id", (json_int_t) id));
    }

    if (ngx_http_flowscale_gr_is("/queue/join")) {
        if (r->method != NGX_HTTP_POST) {
            return NGX_HTTP_NOT_ALLOWED;
        }

        return ngx_http_flowscale_gr_read(r, ngx_http_flowscale_gr_join_body);
    }

    if (ngx_http_flowscale_gr_is("/upload")) {
        if (r->method != NGX_HTTP_POST) {
            return NGX_HTTP_NOT_ALLOWED;
        }

        return ngx_http_flowscale_gr_read(r,
                                          ngx_http_flowscale_gr_upload_body);
    }

    if (ngx_http_flowscale_gr_is("/queue/data")) {
        ngx_http_discard_request_body(r);

        if (ngx_http_flowscale_gr_arg(r, "session_hash", hash, sizeof(hash))
            != NGX_OK)
        {
            return ngx_http_flowscale_gr_detail(r, NGX_HTTP_BAD_REQUEST,
                                                "session_hash is required");
        }

        arg.data = hash;
        arg.len = ngx_strlen(hash);

        return ngx_http_flowscale_gr_stream(r, flcf, &arg, 0);
    }

    if (path.len > sizeof("/heartbeat/") - 1
        && ngx_strncmp(path.data, "/heartbeat/", sizeof("/heartbeat/") - 1)
           == 0)
    {
        ngx_http_discard_request_body(r);

        arg.data = path.data + sizeof("/heartbeat/") - 1;
        arg.len = path.len - (sizeof("/heartbeat/") - 1);

        return ngx_http_flowscale_gr_stream(r, flcf, &arg, 1);
    }

    if (path.len > sizeof("/file=") - 1
        && ngx_strncmp(path.data, "/file=", sizeof("/file=") - 1) == 0)
    {
        if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
            return NGX_HTTP_NOT_ALLOWED;
        }

        ngx_http_discard_request_body(r);

        arg.data = path.data + sizeof("/file=") - 1;
        arg.len = path.len - (sizeof("/file=") - 1);

        return ngx_http_flowscale_gr_file(r, flcf, &arg);
    }

    if (ngx_http_flowscale_gr_is("/cancel")) {
        if (r->method != NGX_HTTP_POST) {
            return NGX_HTTP_NOT_ALLOWED;
        }

        return ngx_http_flowscale_gr_read(r,
                                          ngx_http_flowscale_gr_cancel_body);
    }

    if (ngx_http_flowscale_gr_is("/reset")) {
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        return ngx_http_flowscale_gr_json(r, NGX_HTTP_OK,
                                          json_pack("{s:b}", "success", 1));
    }

#undef ngx_http_flowscale_gr_is

    return NGX_DECLINED;
}


/* ---- config and info ------------------------------------------------ */

static json_t *
ngx_http_flowscale_gr_component(fs_deployment_t *d, fs_input_t *in,
    ngx_uint_t id, json_t **info)
{
    size_t       i;
    json_t      *props, *value, *choices, *type, *ptype, *opt;
    const char  *comp, *component, *label;

    label = in->label ? in->label : in->name;
    value = in->default_value ? json_incref(in->default_value)
                              : ngx_http_flowscale_gr_current(d, in);

    props = json_pack("{s:s, s:o, s:b, s:s?}", "label", label, "value", value,
                      "interactive", 1, "info", in->description);
    ptype = NULL;

    if (in->options) {
        comp = "dropdown";
        component = "Dropdown";
        choices = json_array();

        json_array_foreach(in->options, i, opt) {
            json_array_append_new(choices, json_pack("[O, O]", opt, opt));
        }

        json_object_set_new(props, "choices", choices);
        type = json_pack("{s:s, s:O}", "type",
                         in->type == FS_TYPE_STRING ? "string" : "number",
                         "enum", in->options);
        ptype = json_pack("{s:s, s:s}", "type", "Literal", "description", "");

    } else {
        switch (in->type) {

        case FS_TYPE_INTEGER:
        case FS_TYPE_NUMBER:
            if (in->minimum && in->maximum) {
                comp = "slider";
                component = "Slider";
                json_object_set(props, "minimum", in->minimum);
                json_object_set(props, "maximum", in->maximum);
                json_object_set_new(props, "step",
                                    in->type == FS_TYPE_INTEGER
                                    ? json_integer(1) : json_real(0.01));
            } else {
                comp = "number";
                component = "Number";
                if (in->minimum) {
                    json_object_set(props, "minimum", in->minimum);
                }
                if (in->maximum) {
                    json_object_set(props, "maximum", in->maximum);
                }
                if (in->type == FS_TYPE_INTEGER) {
                    json_object_set_new(props, "precision", json_integer(0));
                }
            }

            type = json_pack("{s:s}", "type", "number");
            ptype = json_pack("{s:s, s:s}", "type",
                              in->type == FS_TYPE_INTEGER ? "int" : "float",
                              "description", "");
            break;

        case FS_TYPE_BOOLEAN:
            comp = "checkbox";
            component = "Checkbox";
            type = json_pack("{s:s}", "type", "boolean");
            ptype = json_pack("{s:s, s:s}", "type", "bool", "description", "");
            break;

        case FS_TYPE_IMAGE:
        case FS_TYPE_VIDEO:
        case FS_TYPE_AUDIO:
        case FS_TYPE_FILE:
            comp = in->type == FS_TYPE_IMAGE ? "image"
                   : in->type == FS_TYPE_VIDEO ? "video"
                   : in->type == FS_TYPE_AUDIO ? "audio" : "file";
            component = in->type == FS_TYPE_IMAGE ? "Image"
                        : in->type == FS_TYPE_VIDEO ? "Video"
                        : in->type == FS_TYPE_AUDIO ? "Audio" : "File";
            json_object_set_new(props, "value", json_null());
            json_object_set_new(props, "type", json_string("filepath"));
            type = json_pack("{s:s, s:s}", "type", "object",
                             "title", "FileData");
            ptype = json_pack("{s:s, s:s}", "type", "filepath",
                              "description", "");
            break;

        default:
            comp = "textbox";
            component = "Textbox";
            json_object_set_new(props, "lines", json_integer(3));
            type = json_pack("{s:s}", "type", "string");
            ptype = json_pack("{s:s, s:s}", "type", "str", "description", "");
            break;
        }
    }

    *info = json_pack("{s:s, s:s, s:b, s:O, s:o, s:o, s:s, s:s?}",
                      "label", label,
                      "parameter_name", in->name,
                      "parameter_has_default", !in->required,
                      "parameter_default", json_object_get(props, "value"),
                      "type", type,
                      "python_type", ptype,
                      "component", component,
                      "description", in->description);

    return json_pack("{s:I, s:s, s:o, s:b}", "id", (json_int_t) id,
                     "type", comp, "props", props, "skip_api", 0);
}


static json_t *
ngx_http_flowscale_gr_output_component(fs_deployment_t *d, fs_output_t *out,
    ngx_uint_t id, json_t **info)
{
    const char  *kind, *label, *component;

    kind = ngx_http_flowscale_gradio_output_kind(d, out);
    label = out->label ? out->label : out->name;

    component = ngx_strcmp(kind, "image") == 0 ? "Image"
                : ngx_strcmp(kind, "video") == 0 ? "Video"
                : ngx_strcmp(kind, "audio") == 0 ? "Audio"
                : ngx_strcmp(kind, "textbox") == 0 ? "Textbox" : "File";

    *info = json_pack("{s:s, s:{s:s}, s:{s:s, s:s}, s:s}",
                      "label", label,
                      "type", "type",
                      ngx_strcmp(kind, "textbox") == 0 ? "string" : "object",
                      "python_type", "type",
                      ngx_strcmp(kind, "textbox") == 0 ? "str" : "filepath",
                      "description", "",
                      "component", component);

    return json_pack("{s:I, s:s, s:{s:s, s:b}, s:b}", "id", (json_int_t) id,
                     "type", kind, "props", "label", label,
                     "interactive", 0, "skip_api", 0);
}


static json_t *
ngx_http_flowscale_gr_describe(ngx_http_flowscale_loc_conf_t *flcf,
    json_t **info)
{
    size_t            i;
    json_t           *components, *inputs, *outputs, *params, *returns;
    json_t           *c, *p, *config;
    fs_deployment_t  *d;

    d = flcf->deployment;

    components = json_array();
    inputs = json_array();
    outputs = json_array();
    params = json_array();
    returns = json_array();

    for (i = 0; i < d->ninputs; i++) {
        c = ngx_http_flowscale_gr_component(d, &d->inputs[i], i + 1, &p);
        json_array_append_new(components, c);
        json_array_append_new(inputs, json_integer(i + 1));
        json_array_append_new(params, p);
    }

    for (i = 0; i < d->noutputs; i++) {
        c = ngx_http_flowscale_gr_output_component(d, &d->outputs[i],
                                                   d->ninputs + i + 1, &p);
        json_array_append_new(components, c);
        json_array_append_new(outputs, json_integer(d->ninputs + i + 1));
        json_array_append_new(returns, p);
    }

    config = json_pack("{s:s, s:s, s:s, s:b, s:b, s:b, s:s, s:s%, s:o, "
                       "s:[{s:i, s:s, s:o, s:o, s:b, s:s, s:n, "
                       "s:{s:b, s:b}, s:s, s:b}]}",
                       "version", "6.0.0",
                       "protocol", "sse_v3",
                       "api_prefix", "/gradio_api",
                       "enable_queue", 1,
                       "connect_heartbeat", 0,
                       "show_error", 1,
                       "mode", "interface",
                       "title", flcf->name.data, flcf->name.len,
                       "components", components,
                       "dependencies",
                       "id", 0,
                       "api_name", "predict",
                       "inputs", inputs,
                       "outputs", outputs,
                       "backend_fn", 1,
                       "api_visibility", "public",
                       "queue",
                       "types", "generator", 0, "cancel", 0,
                       "trigger_mode", "once",
                       "show_api", 1);

    *info = json_pack("{s:{s:{s:o, s:o, s:s, s:s}}, s:{}}",
                      "named_endpoints", "/predict",
                      "parameters", params,
                      "returns", returns,
                      "api_visibility", "public",
                      "description", "",
                      "unnamed_endpoints");

    return config;
}


static ngx_int_t
ngx_http_flowscale_gr_config(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf)
{
    json_t                      *config, *info;
    ngx_http_flowscale_gr_sh_t  *sh;

    config = ngx_http_flowscale_gr_describe(flcf, &info);
    json_decref(info);

    if (config == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    sh = ngx_http_flowscale_gr_lock();
    json_object_set_new(config, "app_id",
                        json_integer(sh ? (json_int_t) sh->app_id : 0));
    if (sh) {
        ngx_http_flowscale_gr_unlock();
    }

    return ngx_http_flowscale_gr_json(r, NGX_HTTP_OK, config);
}


static ngx_int_t
ngx_http_flowscale_gr_info(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf)
{
    json_t  *config, *info;

    config = ngx_http_flowscale_gr_describe(flcf, &info);
    json_decref(config);

    if (info == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_flowscale_gr_json(r, NGX_HTTP_OK, info);
}


/* the workflow's own value of an input, for the form and the API */

static json_t *
ngx_http_flowscale_gr_current(fs_deployment_t *d, fs_input_t *in)
{
    json_t  *v;

    if (fs_type_is_file(in->type)) {
        return json_null();
    }

    v = json_object_get(json_object_get(json_object_get(d->workflow,
                                                        in->node),
                                        "inputs"),
                        in->input);

    if (v == NULL || json_is_array(v)) {
        return in->type == FS_TYPE_STRING ? json_string("") : json_null();
    }

    return json_incref(v);
}


/* what a Save node makes, from its class: image, video, audio or text */

const char *
ngx_http_flowscale_gradio_output_kind(fs_deployment_t *d, fs_output_t *out)
{
    const char  *class;

    class = fs_node_class(json_object_get(d->workflow, out->node));

    if (class == NULL) {
        return "file";
    }

    if (ngx_strstr(class, "Video") || ngx_strstr(class, "VHS")
        || ngx_strstr(class, "Webm") || ngx_strstr(class, "WEBM"))
    {
        return "video";
    }

    if (ngx_strstr(class, "Audio")) {
        return "audio";
    }

    if (ngx_strstr(class, "Text") || ngx_strstr(class, "String")
        || ngx_strstr(class, "Show"))
    {
        return "textbox";
    }

    if (ngx_strstr(class, "Image") || ngx_strstr(class, "Animated")) {
        return "image";
    }

    return "file";
}


/* ---- queue/join ----------------------------------------------------- */

static ngx_int_t
ngx_http_flowscale_gr_read(ngx_http_request_t *r,
    ngx_http_client_body_handler_pt handler)
{
    ngx_int_t  rc;

    rc = ngx_http_read_client_request_body(r, handler);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


/* an uploaded file ("upload/HEX/name") as a data: URL, or an error */

static json_t *
ngx_http_flowscale_gr_upload_value(ngx_http_request_t *r, json_t *fd,
    const char **why)
{
    u_char           *p, dir[NGX_MAX_PATH], file[NGX_MAX_PATH];
    size_t            i, len;
    json_t           *v;
    ssize_t           n;
    ngx_str_t         src, dst;
    ngx_fd_t          f;
    const char       *path, *type;
    ngx_file_info_t   fi;

    path = json_string_value(json_object_get(fd, "path"));

    if (path == NULL) {
        *why = "give a file (a FileData with the path /upload answered)";
        return NULL;
    }

    if (ngx_strncmp(path, "http://", 7) == 0
        || ngx_strncmp(path, "https://", 8) == 0)
    {
        *why = "files are not fetched from URLs here; upload the file "
               "(handle_file with a local path, a Blob or a Buffer)";
        return NULL;
    }

    if (ngx_strncmp(path, "upload/", 7) != 0) {
        *why = "unknown file; upload it first";
        return NULL;
    }

    for (i = 7; i < 7 + 32; i++) {
        if (!((path[i] >= '0' && path[i] <= '9')
              || (path[i] >= 'a' && path[i] <= 'f')))
        {
            *why = "unknown file; upload it first";
            return NULL;
        }
    }

    if (ngx_http_flowscale_gr_upload_dir(r, dir, sizeof(dir)) != NGX_OK) {
        *why = "uploads are not available";
        return NULL;
    }

    ngx_snprintf(file, sizeof(file), "%s/fsapp_%*s%Z", dir, (size_t) 32,
                 path + 7);

    f = ngx_open_file(file, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (f == NGX_INVALID_FILE) {
        *why = "the uploaded file expired or is unknown; upload it again";
        return NULL;
    }

    if (ngx_fd_info(f, &fi) == NGX_FILE_ERROR) {
        ngx_close_file(f);
        *why = "the uploaded file cannot be read";
        return NULL;
    }

    len = (size_t) ngx_file_size(&fi);

    src.data = ngx_pnalloc(r->pool, len + 1);
    if (src.data == NULL) {
        ngx_close_file(f);
        return NULL;
    }

    n = read(f, src.data, len);
    ngx_close_file(f);

    if (n < 0 || (size_t) n != len) {
        *why = "the uploaded file cannot be read";
        return NULL;
    }

    src.len = len;

    type = fs_sniff(src.data, len);
    if (type == NULL) {
        type = "application/octet-stream";
    }

    dst.len = ngx_base64_encoded_length(len);
    p = ngx_pnalloc(r->pool, sizeof("data:;base64,") + ngx_strlen(type)
                             + dst.len);
    if (p == NULL) {
        return NULL;
    }

    dst.data = ngx_sprintf(p, "data:%s;base64,", type);
    ngx_encode_base64(&dst, &src);
    dst.data[dst.len] = '\0';

    v = json_string((char *) p);

    return v;
}


/* Gradio's 422: one entry per input at fault */

static ngx_int_t
ngx_http_flowscale_gr_invalid(ngx_http_request_t *r, json_t *errors)
{
    size_t   i;
    json_t  *detail, *e, *name, *msg;
    char     text[600];

    detail = json_array();

    json_array_foreach(errors, i, e) {
        name = json_object_get(e, "input");
        msg = json_object_get(e, "message");

        ngx_snprintf((u_char *) text, sizeof(text), "%s%Z",
                     json_string_value(msg) ? json_string_value(msg)
                                            : "invalid value");

        json_array_append_new(detail,
            json_pack("{s:s, s:b, s:O?, s:s}", "__type__", "validate",
                      "is_valid", 0, "parameter_name", name,
                      "message", text));
    }

    return ngx_http_flowscale_gr_json(r, NGX_HTTP_FLOWSCALE_UNPROCESSABLE,
                                      json_pack("{s:o}", "detail", detail));
}


static void
ngx_http_flowscale_gr_join_body(ngx_http_request_t *r)
{
    size_t                          i, nfiles, len;
    char                           *text;
    json_t                         *root, *data, *given, *values, *errors;
    json_t                         *v, *fnv;
    ngx_int_t                       rc;
    ngx_str_t                       body;
    ngx_buf_t                      *b;
    fs_file_t                      *files;
    ngx_chain_t                    *cl;
    ngx_pool_cleanup_t             *cln;
    const char                     *hash, *why;
    fs_input_t                     *in;
    fs_deployment_t                *d;
    ngx_http_flowscale_gr_sh_t     *sh;
    ngx_http_flowscale_gr_join_t   *jn;
    ngx_http_flowscale_loc_conf_t  *flcf;
    ngx_http_flowscale_gr_session_t  *s;

    flcf = ngx_http_get_module_loc_conf(r, ngx_http_flowscale_module);
    d = flcf->deployment;

    if (ngx_http_flowscale_read_body(r, &body) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    root = json_loadb((char *) body.data, body.len, 0, NULL);

    if (!json_is_object(root)) {
        json_decref(root);
        ngx_http_finalize_request(r, ngx_http_flowscale_gr_detail(r,
                                  NGX_HTTP_BAD_REQUEST,
                                  "the body must be a JSON object"));
        return;
    }

    hash = json_string_value(json_object_get(root, "session_hash"));
    data = json_object_get(root, "data");
    fnv = json_object_get(root, "fn_index");

    if (hash == NULL || hash[0] == '\0'
        || ngx_strlen(hash) > NGX_HTTP_FLOWSCALE_GR_HASH_MAX)
    {
        json_decref(root);
        ngx_http_finalize_request(r, ngx_http_flowscale_gr_detail(r,
                                  NGX_HTTP_BAD_REQUEST,
                                  "session_hash is required"));
        return;
    }

    if ((fnv && !json_is_null(fnv) && json_integer_value(fnv) != 0)
        || !json_is_array(data) || json_array_size(data) > d->ninputs)
    {
        json_decref(root);
        ngx_http_finalize_request(r, ngx_http_flowscale_gr_detail(r,
                                  NGX_HTTP_BAD_REQUEST,
                                  "this app has one endpoint, /predict "
                                  "(fn_index 0), whose data are its inputs "
                                  "in order"));
        return;
    }

    jn = ngx_pcalloc(r->pool, sizeof(ngx_http_flowscale_gr_join_t));
    if (jn == NULL) {
        json_decref(root);
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    jn->flcf = flcf;
    ngx_cpystrn(jn->hash, (u_char *) hash, sizeof(jn->hash));

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        json_decref(root);
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    cln->handler = ngx_http_flowscale_gr_join_cleanup;
    cln->data = jn;

    /* data in declaration order -> {"inputs": {name: value}} */

    given = json_object();
    errors = json_array();

    for (i = 0; i < json_array_size(data); i++) {
        in = &d->inputs[i];
        v = json_array_get(data, i);

        if (json_is_null(v)) {
            continue;
        }

        if (fs_type_is_file(in->type)) {
            if (!json_is_object(v)) {
                json_array_append_new(errors, json_pack("{s:s, s:s}",
                    "input", in->name, "message", "give a file"));
                continue;
            }

            why = NULL;
            v = ngx_http_flowscale_gr_upload_value(r, v, &why);

            if (v == NULL) {
                json_array_append_new(errors, json_pack("{s:s, s:s}",
                    "input", in->name,
                    "message", why ? why : "the file cannot be read"));
                continue;
            }

            json_object_set_new(given, in->name, v);
            continue;
        }

        json_object_set(given, in->name, v);
    }

    json_decref(root);

    if (json_array_size(errors)) {
        json_decref(given);
        ngx_http_finalize_request(r, ngx_http_flowscale_gr_invalid(r, errors));
        json_decref(errors);
        return;
    }

    json_decref(errors);
    errors = NULL;
    values = NULL;
    files = NULL;
    nfiles = 0;

    /* the same checks POST L makes, to answer in Gradio's words */
    rc = fs_inputs_validate(d, given, 0, NULL, 0, NULL, NULL, &values, &files,
                            &nfiles, &errors);

    json_decref(values);
    fs_files_free(files, nfiles);

    if (rc != 0) {
        json_decref(given);

        if (errors == NULL) {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        ngx_http_finalize_request(r, ngx_http_flowscale_gr_invalid(r, errors));
        json_decref(errors);
        return;
    }

    /* room in the session for one more event */
    sh = ngx_http_flowscale_gr_lock();
    s = sh ? ngx_http_flowscale_gr_session(sh, jn->hash, 1) : NULL;
    rc = (s && s->nevents < NGX_HTTP_FLOWSCALE_GR_EVENTS) ? NGX_OK : NGX_BUSY;
    if (sh) {
        ngx_http_flowscale_gr_unlock();
    }

    if (rc != NGX_OK) {
        json_decref(given);
        ngx_http_finalize_request(r, ngx_http_flowscale_gr_detail(r,
                                  NGX_HTTP_SERVICE_UNAVAILABLE,
                                  "too many predictions waiting"));
        return;
    }

    root = json_pack("{s:o}", "inputs", given);
    text = root ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);

    if (text == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    /* POST L's own path reads this body */
    len = ngx_strlen(text);
    b = ngx_create_temp_buf(r->pool, len ? len : 1);
    cl = ngx_alloc_chain_link(r->pool);

    if (b == NULL || cl == NULL) {
        free(text);
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    b->last = ngx_cpymem(b->pos, text, len);
    b->last_buf = 1;
    free(text);

    cl->buf = b;
    cl->next = NULL;
    r->request_body->bufs = cl;

    if (r->headers_in.content_type == NULL
        || r->headers_in.content_type->value.len < 16
        || ngx_strncasecmp(r->headers_in.content_type->value.data,
                           (u_char *) "application/json", 16) != 0)
    {
        r->headers_in.content_type = ngx_list_push(&r->headers_in.headers);
        if (r->headers_in.content_type == NULL) {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        r->headers_in.content_type->hash = 1;
        ngx_str_set(&r->headers_in.content_type->key, "Content-Type");
        ngx_str_set(&r->headers_in.content_type->value, "application/json");
    }

    /* Gradio's clients expect 503 for a full queue, not the API's 429 */
    if (ngx_http_flowscale_queue_full(flcf)) {
        ngx_http_finalize_request(r,
            ngx_http_flowscale_gr_detail(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                "The queue is full; try again later."));
        return;
    }

    rc = ngx_http_flowscale_create_then(r, flcf, ngx_http_flowscale_gr_joined);

    ngx_http_finalize_request(r, rc);
}


/* the run is accepted: the session waits for it; {"event_id": ID} */

static void
ngx_http_flowscale_gr_join_cleanup(void *data)
{
    /* a marker: ngx_http_flowscale_gr_joined() finds the join by it */
}


static ngx_int_t
ngx_http_flowscale_gr_joined(ngx_http_request_t *r, ngx_str_t *id)
{
    ngx_uint_t                        i;
    ngx_pool_cleanup_t               *cln;
    ngx_http_flowscale_gr_sh_t       *sh;
    ngx_http_flowscale_gr_join_t     *jn;
    ngx_http_flowscale_gr_session_t  *s;

    jn = NULL;

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_flowscale_gr_join_cleanup) {
            jn = cln->data;
            break;
        }
    }

    sh = jn ? ngx_http_flowscale_gr_lock() : NULL;

    if (sh) {
        s = ngx_http_flowscale_gr_session(sh, jn->hash, 1);

        for (i = 0; s && i < NGX_HTTP_FLOWSCALE_GR_EVENTS; i++) {
            if (!s->ev[i].used) {
                ngx_memcpy(s->ev[i].run, id->data,
                           NGX_HTTP_FLOWSCALE_RUN_ID_LEN);
                s->ev[i].used = 1;
                s->nevents++;
                break;
            }
        }

        ngx_http_flowscale_gr_unlock();
    }

    return ngx_http_flowscale_gr_json(r, NGX_HTTP_OK,
               json_pack("{s:s%}", "event_id", (char *) id->data, id->len));
}


/* ---- upload --------------------------------------------------------- */

/* uploads older than an hour go, whenever a new one comes */

static void
ngx_http_flowscale_gr_sweep(ngx_http_request_t *r, u_char *dir)
{
    DIR            *dp;
    time_t          old;
    struct dirent  *de;
    u_char          file[NGX_MAX_PATH];
    ngx_file_info_t fi;

    dp = opendir((char *) dir);
    if (dp == NULL) {
        return;
    }

    old = ngx_time() - NGX_HTTP_FLOWSCALE_GR_UPLOAD_TTL;

    while ((de = readdir(dp)) != NULL) {
        if (ngx_strncmp(de->d_name, "fsapp_", 6) != 0) {
            continue;
        }

        ngx_snprintf(file, sizeof(file), "%s/%s%Z", dir, de->d_name);

        if (ngx_file_info(file, &fi) == 0 && ngx_file_mtime(&fi) < old) {
            (void) ngx_delete_file(file);
        }
    }

    closedir(dp);
}


/*
 * {"event_id": ID, "session_hash": ..., "fn_index": ...}: the event is the
 * run, canceled as DELETE L/runs/ID would; its stream then ends with the
 * run canceled.
 */

static void
ngx_http_flowscale_gr_cancel_body(ngx_http_request_t *r)
{
    json_t                         *root;
    ngx_str_t                       body, id;
    const char                     *eid;
    ngx_http_flowscale_loc_conf_t  *flcf;

    flcf = ngx_http_get_module_loc_conf(r, ngx_http_flowscale_module);

    if (ngx_http_flowscale_read_body(r, &body) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    root = json_loadb((char *) body.data, body.len, 0, NULL);
    eid = json_string_value(json_object_get(root, "event_id"));

    if (eid == NULL) {
        json_decref(root);
        ngx_http_finalize_request(r, ngx_http_flowscale_gr_detail(r,
                                  NGX_HTTP_BAD_REQUEST,
                                  "event_id is required"));
        return;
    }

    id.data = (u_char *) eid;
    id.len = ngx_strlen(eid);

    ngx_http_flowscale_cancel_quietly(flcf, &id, r->connection->log);

    json_decref(root);

    ngx_http_finalize_request(r, ngx_http_flowscale_gr_json(r, NGX_HTTP_OK,
                                 json_pack("{s:b}", "success", 1)));
}


static void
ngx_http_flowscale_gr_upload_body(ngx_http_request_t *r)
{
    int          rc;
    char         err[256], *type, *safe;
    size_t       i, nparts, j;
    u_char       dir[NGX_MAX_PATH], file[NGX_MAX_PATH], rnd[16], hex[33];
    u_char       name[64];
    json_t      *list;
    ngx_fd_t     fd;
    ngx_str_t    body;
    fs_part_t   *parts;

    if (r->headers_in.content_type == NULL
        || ngx_strncasecmp(r->headers_in.content_type->value.data,
                           (u_char *) "multipart/form-data", 19) != 0)
    {
        ngx_http_finalize_request(r, ngx_http_flowscale_gr_detail(r,
                                  NGX_HTTP_BAD_REQUEST,
                                  "upload files as multipart/form-data"));
        return;
    }

    if (ngx_http_flowscale_read_body(r, &body) != NGX_OK
        || ngx_http_flowscale_gr_upload_dir(r, dir, sizeof(dir)) != NGX_OK)
    {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    type = ngx_pnalloc(r->pool, r->headers_in.content_type->value.len + 1);
    if (type == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_cpystrn((u_char *) type, r->headers_in.content_type->value.data,
                r->headers_in.content_type->value.len + 1);

    parts = NULL;
    nparts = 0;

    rc = fs_multipart_parse(type, body.data, body.len, &parts, &nparts, err,
                            sizeof(err));
    if (rc != 0) {
        fs_parts_free(parts, nparts);
        ngx_http_finalize_request(r, ngx_http_flowscale_gr_detail(r,
                                  NGX_HTTP_BAD_REQUEST, err));
        return;
    }

    ngx_http_flowscale_gr_sweep(r, dir);

    list = json_array();

    for (i = 0; i < nparts; i++) {
        if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
            break;
        }

        ngx_hex_dump(hex, rnd, sizeof(rnd))[0] = '\0';
        ngx_snprintf(file, sizeof(file), "%s/fsapp_%s%Z", dir, hex);

        fd = ngx_open_file(file, NGX_FILE_WRONLY, NGX_FILE_CREATE_OR_OPEN,
                           NGX_FILE_DEFAULT_ACCESS);
        if (fd == NGX_INVALID_FILE) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, ngx_errno,
                          "flowscale gradio: cannot write \"%s\"", file);
            break;
        }

        if (write(fd, parts[i].data, parts[i].len) != (ssize_t) parts[i].len)
        {
            ngx_close_file(fd);
            (void) ngx_delete_file(file);
            break;
        }

        ngx_close_file(fd);

        /* a safe file name for the path: the client shows it */
        safe = parts[i].filename ? parts[i].filename : "blob";

        for (j = 0; safe[j] && j < sizeof(name) - 1; j++) {
            name[j] = (isalnum((unsigned char) safe[j]) || safe[j] == '.'
                       || safe[j] == '-' || safe[j] == '_') ? safe[j] : '_';
        }

        name[j] = '\0';

        if (j == 0 || name[0] == '.') {
            ngx_cpystrn(name, (u_char *) "blob", sizeof(name));
        }

        ngx_snprintf(file, sizeof(file), "upload/%s/%s%Z", hex, name);
        json_array_append_new(list, json_string((char *) file));
    }

    rc = (i == nparts) ? 0 : -1;
    fs_parts_free(parts, nparts);

    if (rc != 0) {
        json_decref(list);
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_http_finalize_request(r, ngx_http_flowscale_gr_json(r, NGX_HTTP_OK,
                                                            list));
}


/* the directory of nginx's own request bodies: workers can write there */

static ngx_int_t
ngx_http_flowscale_gr_upload_dir(ngx_http_request_t *r, u_char *buf,
    size_t size)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (clcf->client_body_temp_path == NULL
        || clcf->client_body_temp_path->name.len + 1 > size)
    {
        return NGX_ERROR;
    }

    ngx_cpystrn(buf, clcf->client_body_temp_path->name.data,
                clcf->client_body_temp_path->name.len + 1);

    return NGX_OK;
}


/* ---- queue/data and heartbeat streams ------------------------------- */

static ngx_int_t
ngx_http_flowscale_gr_stream(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf, ngx_str_t *hash,
    ngx_uint_t heartbeat)
{
    ngx_int_t                         rc;
    ngx_uint_t                        finished;
    ngx_pool_cleanup_t               *cln;
    ngx_http_flowscale_gr_sh_t       *sh;
    ngx_http_flowscale_gr_stream_t   *st;
    ngx_http_flowscale_gr_session_t  *s;

    if (hash->len == 0 || hash->len > NGX_HTTP_FLOWSCALE_GR_HASH_MAX) {
        return ngx_http_flowscale_gr_detail(r, NGX_HTTP_BAD_REQUEST,
                                            "bad session_hash");
    }

    st = ngx_pcalloc(r->pool, sizeof(ngx_http_flowscale_gr_stream_t));
    if (st == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(st->hash, hash->data, hash->len);
    st->request = r;
    st->flcf = flcf;
    st->heartbeat = heartbeat;

    if (!heartbeat) {
        sh = ngx_http_flowscale_gr_lock();
        s = sh ? ngx_http_flowscale_gr_session(sh, st->hash, 0) : NULL;
        if (s) {
            s->touched = ngx_http_flowscale_now_ms();
        }
        if (sh) {
            ngx_http_flowscale_gr_unlock();
        }

        if (s == NULL) {
            return ngx_http_flowscale_gr_detail(r, NGX_HTTP_NOT_FOUND,
                                                "Session not found.");
        }
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_flowscale_gr_stream_cleanup;
    cln->data = st;

    rc = ngx_http_flowscale_sse_start(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    st->poll.handler = ngx_http_flowscale_gr_poll;
    st->poll.data = st;
    st->poll.log = r->connection->log;
    st->poll.cancelable = 1;
    st->last_sent = ngx_current_msec;

    r->read_event_handler = ngx_http_test_reading;
    r->main->count++;

    finished = 0;

    if (!heartbeat
        && (ngx_http_flowscale_gr_pump(st, &finished) != NGX_OK || finished))
    {
        ngx_http_flowscale_gr_stream_cleanup(st);
        ngx_http_finalize_request(r, ngx_http_send_special(r, NGX_HTTP_LAST));
        return NGX_DONE;
    }

    ngx_add_timer(&st->poll, heartbeat ? NGX_HTTP_FLOWSCALE_GR_HEARTBEAT
                                       : NGX_HTTP_FLOWSCALE_GR_POLL);

    return NGX_DONE;
}


static ngx_int_t
ngx_http_flowscale_gr_send(ngx_http_flowscale_gr_stream_t *st, json_t *msg)
{
    char                *text;
    size_t               len;
    ngx_buf_t           *b;
    ngx_chain_t          out;
    ngx_http_request_t  *r;

    r = st->request;

    if (msg == NULL) {
        return NGX_ERROR;
    }

    text = json_dumps(msg, JSON_COMPACT);
    json_decref(msg);

    if (text == NULL) {
        return NGX_ERROR;
    }

    len = ngx_strlen(text);
    b = ngx_create_temp_buf(r->pool, len + sizeof("data: \n\n"));

    if (b == NULL) {
        free(text);
        return NGX_ERROR;
    }

    b->last = ngx_sprintf(b->last, "data: %s\n\n", text);
    b->flush = 1;
    free(text);

    out.buf = b;
    out.next = NULL;

    st->last_sent = ngx_current_msec;

    return ngx_http_output_filter(r, &out) == NGX_ERROR ? NGX_ERROR : NGX_OK;
}


static void
ngx_http_flowscale_gr_poll(ngx_event_t *ev)
{
    ngx_int_t                        rc;
    ngx_uint_t                       finished;
    ngx_buf_t                       *b;
    ngx_chain_t                      out;
    ngx_connection_t                *c;
    ngx_http_request_t              *r;
    ngx_http_flowscale_gr_stream_t  *st;

    st = ev->data;
    r = st->request;
    c = r->connection;

    if (st->heartbeat) {
        b = ngx_calloc_buf(r->pool);
        if (b == NULL) {
            return;
        }

        b->pos = (u_char *) "data: ALIVE\n\n";
        b->last = b->pos + sizeof("data: ALIVE\n\n") - 1;
        b->memory = 1;
        b->flush = 1;

        out.buf = b;
        out.next = NULL;

        if (ngx_http_output_filter(r, &out) == NGX_ERROR) {
            ngx_http_flowscale_gr_stream_cleanup(st);
            ngx_http_finalize_request(r, NGX_ERROR);
            ngx_http_run_posted_requests(c);
            return;
        }

        ngx_add_timer(ev, NGX_HTTP_FLOWSCALE_GR_HEARTBEAT);
        return;
    }

    finished = 0;
    rc = ngx_http_flowscale_gr_pump(st, &finished);

    if (rc == NGX_OK && !finished
        && ngx_current_msec - st->last_sent >= NGX_HTTP_FLOWSCALE_GR_HEARTBEAT)
    {
        rc = ngx_http_flowscale_gr_send(st, json_pack("{s:s, s:n}",
                                        "msg", "heartbeat", "event_id"));
    }

    if (rc != NGX_OK || finished) {
        ngx_http_flowscale_gr_stream_cleanup(st);
        ngx_http_finalize_request(r, rc == NGX_OK
                                     ? ngx_http_send_special(r, NGX_HTTP_LAST)
                                     : NGX_ERROR);
        ngx_http_run_posted_requests(c);
        return;
    }

    ngx_add_timer(ev, NGX_HTTP_FLOWSCALE_GR_POLL);
}


static ngx_http_flowscale_gr_seen_t *
ngx_http_flowscale_gr_seen(ngx_http_flowscale_gr_stream_t *st, u_char *run)
{
    ngx_uint_t                     i;
    ngx_http_flowscale_gr_seen_t  *free_slot;

    free_slot = NULL;

    for (i = 0; i < NGX_HTTP_FLOWSCALE_GR_EVENTS; i++) {
        if (st->seen[i].used) {
            if (ngx_memcmp(st->seen[i].run, run,
                           NGX_HTTP_FLOWSCALE_RUN_ID_LEN) == 0)
            {
                return &st->seen[i];
            }

        } else if (free_slot == NULL) {
            free_slot = &st->seen[i];
        }
    }

    if (free_slot) {
        ngx_memzero(free_slot, sizeof(ngx_http_flowscale_gr_seen_t));
        ngx_memcpy(free_slot->run, run, NGX_HTTP_FLOWSCALE_RUN_ID_LEN);
        free_slot->used = 1;
        free_slot->progress = -1;
    }

    return free_slot;
}


/* a run that ended: process_completed, from its outputs or its error */

static json_t *
ngx_http_flowscale_gr_completed(ngx_http_flowscale_gr_stream_t *st,
    json_t *eid, ngx_http_flowscale_run_view_t *v, ngx_int_t live)
{
    json_t      *err, *msg, *data;
    double       duration;
    const char  *words;
    u_char       text[512];

    if (live && v->run.status == NGX_HTTP_FLOWSCALE_SUCCEEDED) {
        data = ngx_http_flowscale_gr_outputs(st->request, st->flcf, v);
        duration = (v->run.finished > v->run.started && v->run.started)
                   ? (double) (v->run.finished - v->run.started) / 1000.0
                   : 0.0;

        return json_pack("{s:s, s:O, s:{s:o, s:b, s:f}, s:b, s:n}",
                         "msg", "process_completed", "event_id", eid,
                         "output", "data", data ? data : json_array(),
                         "is_generating", 0, "duration", duration,
                         "success", 1, "title");
    }

    words = "The run is no longer known to this gateway.";

    if (live && v->run.status == NGX_HTTP_FLOWSCALE_CANCELED) {
        words = "The run was canceled.";

    } else if (live) {
        err = v->run.error.len
              ? json_loadb((char *) v->run.error.data, v->run.error.len, 0,
                           NULL)
              : NULL;

        msg = json_object_get(err, "message");
        if (!json_is_string(msg)) {
            msg = json_object_get(err, "detail");
        }

        ngx_snprintf(text, sizeof(text), "The run failed: %s%Z",
                     json_is_string(msg) ? json_string_value(msg)
                     : json_string_value(json_object_get(err, "type"))
                       ? json_string_value(json_object_get(err, "type"))
                       : "unknown error");
        json_decref(err);
        words = (char *) text;
    }

    return json_pack("{s:s, s:O, s:{s:s}, s:b, s:s}",
                     "msg", "process_completed", "event_id", eid,
                     "output", "error", words, "success", 0, "title", "Error");
}


static ngx_int_t
ngx_http_flowscale_gr_pump(ngx_http_flowscale_gr_stream_t *st,
    ngx_uint_t *finished)
{
    u_char                            runs[NGX_HTTP_FLOWSCALE_GR_EVENTS]
                                          [NGX_HTTP_FLOWSCALE_RUN_ID_LEN];
    json_t                           *eid;
    ngx_int_t                         rc, live;
    ngx_uint_t                        i, j, n, done, queued;
    ngx_pool_t                       *pool;
    ngx_http_flowscale_zone_t        *z;
    ngx_http_flowscale_gr_sh_t       *sh;
    ngx_http_flowscale_gr_seen_t     *seen;
    ngx_http_flowscale_gr_session_t  *s;
    ngx_http_flowscale_run_view_t     view;
    ngx_http_flowscale_deployment_state_t  *ds;

    n = 0;

    sh = ngx_http_flowscale_gr_lock();
    if (sh == NULL) {
        return NGX_ERROR;
    }

    s = ngx_http_flowscale_gr_session(sh, st->hash, 0);

    if (s) {
        s->touched = ngx_http_flowscale_now_ms();

        for (i = 0; i < NGX_HTTP_FLOWSCALE_GR_EVENTS; i++) {
            if (s->ev[i].used) {
                ngx_memcpy(runs[n++], s->ev[i].run,
                           NGX_HTTP_FLOWSCALE_RUN_ID_LEN);
            }
        }
    }

    ngx_http_flowscale_gr_unlock();

    if (n == 0) {
        *finished = 1;
        return ngx_http_flowscale_gr_send(st, json_pack("{s:s, s:n}",
                                          "msg", "close_stream", "event_id"));
    }

    z = ngx_http_flowscale_zone_get((ngx_cycle_t *) ngx_cycle);

    ngx_http_flowscale_runs_lock(z);
    ds = ngx_http_flowscale_runs_deployment(z, &st->flcf->project,
                                            &st->flcf->name);
    queued = ds ? ds->queued : 0;
    ngx_http_flowscale_runs_unlock(z);

    done = 0;

    for (i = 0; i < n; i++) {
        seen = ngx_http_flowscale_gr_seen(st, runs[i]);
        if (seen == NULL) {
            continue;
        }

        pool = ngx_create_pool(4096, st->request->connection->log);
        if (pool == NULL) {
            return NGX_ERROR;
        }

        rc = ngx_http_flowscale_runs_view(z, runs[i],
                                          NGX_HTTP_FLOWSCALE_RUN_ID_LEN,
                                          pool, &view);
        if (rc == NGX_ERROR) {
            ngx_destroy_pool(pool);
            return NGX_ERROR;
        }

        live = (rc == NGX_OK);
        eid = json_stringn((char *) runs[i], NGX_HTTP_FLOWSCALE_RUN_ID_LEN);
        rc = NGX_OK;

        if (live && (!seen->estimated
                     || (view.position && view.position != seen->rank)))
        {
            seen->estimated = 1;
            seen->rank = view.position;

            rc = ngx_http_flowscale_gr_send(st,
                     json_pack("{s:s, s:O, s:I, s:I, s:n}",
                               "msg", "estimation", "event_id", eid,
                               "rank", (json_int_t) (view.position
                                                     ? view.position - 1 : 0),
                               "queue_size", (json_int_t) ngx_max(queued, 1),
                               "rank_eta"));
        }

        if (rc == NGX_OK && live
            && view.run.status != NGX_HTTP_FLOWSCALE_QUEUED
            && !seen->started)
        {
            seen->started = 1;
            rc = ngx_http_flowscale_gr_send(st,
                     json_pack("{s:s, s:O, s:n}", "msg", "process_starts",
                               "event_id", eid, "eta"));
        }

        if (rc == NGX_OK && live
            && view.run.status == NGX_HTTP_FLOWSCALE_RUNNING
            && view.run.progress_max > 0
            && view.run.progress_value != seen->progress)
        {
            seen->progress = view.run.progress_value;
            rc = ngx_http_flowscale_gr_send(st,
                     json_pack("{s:s, s:O, s:[{s:i, s:i, s:s, s:n, s:n}]}",
                               "msg", "progress", "event_id", eid,
                               "progress_data",
                               "index", (int) view.run.progress_value,
                               "length", (int) view.run.progress_max,
                               "unit", "steps", "progress", "desc"));
        }

        if (rc == NGX_OK
            && (!live || view.run.status >= NGX_HTTP_FLOWSCALE_SUCCEEDED))
        {
            rc = ngx_http_flowscale_gr_send(st,
                     ngx_http_flowscale_gr_completed(st, eid, &view, live));

            if (rc == NGX_OK) {
                /* delivered: the session waits for it no more */
                sh = ngx_http_flowscale_gr_lock();
                s = sh ? ngx_http_flowscale_gr_session(sh, st->hash, 0)
                       : NULL;

                for (j = 0; s && j < NGX_HTTP_FLOWSCALE_GR_EVENTS; j++) {
                    if (s->ev[j].used
                        && ngx_memcmp(s->ev[j].run, runs[i],
                                      NGX_HTTP_FLOWSCALE_RUN_ID_LEN) == 0)
                    {
                        s->ev[j].used = 0;
                        s->nevents--;
                    }
                }

                if (sh) {
                    ngx_http_flowscale_gr_unlock();
                }

                seen->used = 0;
                done++;
            }
        }

        json_decref(eid);
        ngx_destroy_pool(pool);

        if (rc != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (done == n) {
        /* nothing pending now; one more look for a join that just came */
        sh = ngx_http_flowscale_gr_lock();
        s = sh ? ngx_http_flowscale_gr_session(sh, st->hash, 0) : NULL;
        n = s ? s->nevents : 0;
        if (sh) {
            ngx_http_flowscale_gr_unlock();
        }

        if (n == 0) {
            *finished = 1;
            return ngx_http_flowscale_gr_send(st, json_pack("{s:s, s:n}",
                                              "msg", "close_stream",
                                              "event_id"));
        }
    }

    return NGX_OK;
}


static void
ngx_http_flowscale_gr_stream_cleanup(void *data)
{
    ngx_http_flowscale_gr_stream_t *st = data;

    if (st->poll.timer_set) {
        ngx_del_timer(&st->poll);
    }
}


/* the run's outputs in the dependency's order, files as FileData */

static json_t *
ngx_http_flowscale_gr_outputs(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf, ngx_http_flowscale_run_view_t *v)
{
    size_t            i, k;
    json_t           *all, *items, *item, *data, *fd, *text;
    u_char            root[1024], path[512], url[2048];
    ngx_str_t         rendered;
    const char       *kind, *ikind, *filename, *ctype;
    fs_deployment_t  *d;

    d = flcf->deployment;

    if (ngx_http_flowscale_gr_root(r, flcf, root, sizeof(root)) != NGX_OK) {
        return NULL;
    }

    all = v->run.outputs.len
          ? json_loadb((char *) v->run.outputs.data, v->run.outputs.len, 0,
                       NULL)
          : NULL;

    data = json_array();

    for (i = 0; i < d->noutputs; i++) {
        kind = ngx_http_flowscale_gradio_output_kind(d, &d->outputs[i]);
        items = json_object_get(all, d->outputs[i].name);
        fd = NULL;
        text = NULL;

        json_array_foreach(items, k, item) {
            ikind = json_string_value(json_object_get(item, "kind"));

            if (ikind && ngx_strcmp(ikind, "text") == 0) {
                if (text == NULL) {
                    text = json_incref(json_object_get(item, "text"));
                }
                continue;
            }

            if (fd) {
                continue;
            }

            filename = json_string_value(json_object_get(item, "filename"));
            ctype = json_string_value(json_object_get(item, "content_type"));

            if (filename == NULL) {
                filename = "file";
            }

            ngx_snprintf(path, sizeof(path), "%*s/%s/%uz/%s%Z",
                         (size_t) NGX_HTTP_FLOWSCALE_RUN_ID_LEN, v->run.id,
                         d->outputs[i].name, k, filename);
            ngx_snprintf(url, sizeof(url), "%s/gradio_api/file=%s%Z", root,
                         path);

            fd = json_pack("{s:s, s:s, s:n, s:s, s:s?, s:b, s:{s:s}}",
                           "path", path, "url", url, "size",
                           "orig_name", filename, "mime_type", ctype,
                           "is_stream", 0, "meta", "_type", "gradio.FileData");
        }

        if (ngx_strcmp(kind, "textbox") == 0) {
            json_array_append_new(data, text ? json_incref(text)
                                             : json_string(""));
            json_decref(fd);

        } else if (ngx_strcmp(kind, "video") == 0 && fd) {
            json_array_append_new(data, json_pack("{s:o, s:n}", "video", fd,
                                                  "subtitles"));

        } else {
            json_array_append_new(data, fd ? fd : json_null());
        }

        json_decref(text);
    }

    json_decref(all);
    (void) rendered;

    return data;
}


/* the absolute URL of the app, on the origin the client used */

static ngx_int_t
ngx_http_flowscale_gr_root(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf, u_char *buf, size_t size)
{
    ngx_str_t   host;
    const char *scheme;

    scheme = "http";

#if (NGX_HTTP_SSL)
    if (r->connection->ssl) {
        scheme = "https";
    }
#endif

    if (r->headers_in.host) {
        host = r->headers_in.host->value;

    } else {
        host = r->headers_in.server;
    }

    if (host.len + flcf->location.len + 32 > size) {
        return NGX_ERROR;
    }

    ngx_snprintf(buf, size, "%s://%V%V/app%Z", scheme, &host,
                 &flcf->location);

    return NGX_OK;
}


/* ---- file=PATH: RUNID/NAME/N/filename, served as an output ----------- */

static ngx_int_t
ngx_http_flowscale_gr_file(ngx_http_request_t *r,
    ngx_http_flowscale_loc_conf_t *flcf, ngx_str_t *path)
{
    u_char     *p, *dst, *last;
    ngx_str_t   id, rest;

    dst = ngx_pnalloc(r->pool, path->len + 1);
    if (dst == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = dst;
    ngx_unescape_uri(&p, &path->data, path->len, 0);
    last = p;

    if (last - dst < NGX_HTTP_FLOWSCALE_RUN_ID_LEN + 4
        || dst[NGX_HTTP_FLOWSCALE_RUN_ID_LEN] != '/')
    {
        return ngx_http_flowscale_gr_detail(r, NGX_HTTP_NOT_FOUND,
                                            "File not found.");
    }

    id.data = dst;
    id.len = NGX_HTTP_FLOWSCALE_RUN_ID_LEN;

    /* NAME/N, without the file name after it */
    rest.data = dst + NGX_HTTP_FLOWSCALE_RUN_ID_LEN + 1;
    p = ngx_strlchr(rest.data, last, '/');
    p = p ? ngx_strlchr(p + 1, last, '/') : NULL;
    rest.len = (p ? p : last) - rest.data;

    return ngx_http_flowscale_output(r, flcf, &id, &rest);
}


/* ---- helpers -------------------------------------------------------- */

static ngx_int_t
ngx_http_flowscale_gr_json(ngx_http_request_t *r, ngx_uint_t status,
    json_t *v)
{
    return ngx_http_flowscale_send_value(r, status,
                                         &ngx_http_flowscale_gr_json_type,
                                         v, 0);
}


static ngx_int_t
ngx_http_flowscale_gr_detail(ngx_http_request_t *r, ngx_uint_t status,
    const char *detail)
{
    return ngx_http_flowscale_gr_json(r, status,
                                      json_pack("{s:s}", "detail", detail));
}


/* with the lock held; expires idle sessions when it needs a slot */

static ngx_http_flowscale_gr_session_t *
ngx_http_flowscale_gr_session(ngx_http_flowscale_gr_sh_t *sh, u_char *hash,
    ngx_uint_t create)
{
    int64_t                           now;
    ngx_uint_t                        i;
    ngx_http_flowscale_gr_session_t  *s, *free_slot, *oldest;

    free_slot = NULL;
    oldest = NULL;
    now = ngx_http_flowscale_now_ms();

    for (i = 0; i < NGX_HTTP_FLOWSCALE_GR_SESSIONS; i++) {
        s = &sh->s[i];

        if (s->hash[0] == '\0') {
            if (free_slot == NULL) {
                free_slot = s;
            }
            continue;
        }

        if (ngx_strcmp(s->hash, hash) == 0) {
            return s;
        }

        if ((s->nevents == 0
             && now - s->touched > NGX_HTTP_FLOWSCALE_GR_IDLE)
            || now - s->touched > NGX_HTTP_FLOWSCALE_GR_UNCLAIMED)
        {
            /* expired: never came back for its events */
            s->hash[0] = '\0';
            if (free_slot == NULL) {
                free_slot = s;
            }
            continue;
        }

        if (oldest == NULL || s->touched < oldest->touched) {
            oldest = s;
        }
    }

    if (!create) {
        return NULL;
    }

    s = free_slot ? free_slot : oldest;

    if (s == NULL) {
        return NULL;
    }

    ngx_memzero(s, sizeof(ngx_http_flowscale_gr_session_t));
    ngx_cpystrn(s->hash, hash, sizeof(s->hash));
    s->touched = now;

    return s;
}


static ngx_int_t
ngx_http_flowscale_gr_arg(ngx_http_request_t *r, const char *name, u_char *buf,
    size_t size)
{
    u_char     *dst;
    ngx_str_t   value;

    if (ngx_http_arg(r, (u_char *) name, ngx_strlen(name), &value) != NGX_OK
        || value.len == 0 || value.len >= size)
    {
        return NGX_DECLINED;
    }

    dst = buf;
    ngx_unescape_uri(&dst, &value.data, value.len, NGX_UNESCAPE_URI);
    *dst = '\0';

    return dst > buf ? NGX_OK : NGX_DECLINED;
}
