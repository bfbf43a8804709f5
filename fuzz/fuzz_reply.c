
/*
 * libFuzzer target for the pure C reply layer: ComfyUI's answers to
 * POST /prompt, GET /history/ID and its /ws messages.
 *
 * The first byte picks what the rest is:
 *
 *   0-3   a POST /prompt reply; the second byte picks the HTTP status
 *   4     a GET /history/ID reply for run "p" (and for no id)
 *   5     a /ws text message; an executed one is mapped to outputs
 *   6     text for fs_reply_clean()
 *
 * The replies are read for a fixed deployment whose inputs and outputs
 * sit on the node ids ComfyUI's errors name, so the mapping code runs.
 * Beyond crashes, leaks and undefined behaviour, the target aborts when
 * a result breaks the promises of ngx_http_flowscale_reply.h.
 */


#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_http_flowscale_workflow.h"
#include "ngx_http_flowscale_reply.h"


static const char  fuzz_wf[] =
    "{\"1\": {\"class_type\": \"EmptyImage\", \"inputs\": {\"width\": 512,"
    "  \"height\": 512, \"batch_size\": 1, \"color\": 0}},"
    " \"2\": {\"class_type\": \"SaveImage\", \"inputs\": {"
    "  \"images\": [\"1\", 0], \"filename_prefix\": \"x\"}},"
    " \"3\": {\"class_type\": \"ImageFlip\", \"inputs\": {"
    "  \"image\": [\"1\", 0], \"flip_method\": \"x-axis: vertically\"}},"
    " \"4\": {\"class_type\": \"PreviewAny\", \"inputs\": {"
    "  \"source\": [\"3\", 0]}},"
    " \"9\": {\"class_type\": \"LoadImage\", \"inputs\": {"
    "  \"image\": \"in.png\"}}}";

static const char  *fuzz_in[] = {
    "width", "1.width", "height", "1.height", "flip", "3.flip_method",
    "picture", "9.image", NULL
};

static const char  *fuzz_out[] = { "image", "2", "text", "4", NULL };

static const int  fuzz_status[] = { 200, 400, 403, 500, 502, 0, -1, 200 };


static fs_deployment_t  *fuzz_d;


static fs_deployment_t *fuzz_deployment(void);
static void fuzz_text(const char *s, size_t max);
static void fuzz_problem(json_t *problem);
static void fuzz_items(json_t *items);
static void fuzz_prompt(int status, const char *body, size_t len);
static void fuzz_history(const char *id, const char *body, size_t len);
static void fuzz_ws(const char *text, size_t len);
const char *__ubsan_default_options(void);


/* undefined behaviour is a crash too, not a line in the log */

const char *
__ubsan_default_options(void)
{
    return "halt_on_error=1:print_stacktrace=1";
}


static fs_deployment_t *
fuzz_deployment(void)
{
    size_t            i;
    fs_error_t        err;
    fs_deployment_t  *d;

    d = fs_deployment_new();
    if (d == NULL
        || fs_workflow_load(d, "fuzz.json", fuzz_wf, sizeof(fuzz_wf) - 1,
                            &err) != 0)
    {
        abort();
    }

    for (i = 0; fuzz_in[i]; i += 2) {
        if (fs_input_declare(d, fuzz_in[i], fuzz_in[i + 1], 0, NULL, NULL,
                             &err) != 0)
        {
            abort();
        }
    }

    for (i = 0; fuzz_out[i]; i += 2) {
        if (fs_output_declare(d, fuzz_out[i], fuzz_out[i + 1], 0, NULL, NULL,
                              &err) != 0)
        {
            abort();
        }
    }

    if (fs_deployment_check(d, &err) != 0) {
        abort();
    }

    return d;
}


/* a message for callers: one capped line, no control characters */

static void
fuzz_text(const char *s, size_t max)
{
    size_t  n;

    if (s == NULL || *s == '\0') {
        abort();
    }

    for (n = 0; s[n]; n++) {
        if ((unsigned char) s[n] < 0x20 || s[n] == 0x7f) {
            abort();
        }
    }

    if (n >= max) {
        abort();
    }
}


static void
fuzz_problem(json_t *problem)
{
    size_t   i;
    json_t  *errors, *e, *type, *input;

    if (!json_is_object(problem)) {
        abort();
    }

    fuzz_text(json_string_value(json_object_get(problem, "detail")),
              FS_REPLY_MSG_MAX);

    type = json_object_get(problem, "comfyui_type");
    if (type == NULL || !(json_is_null(type) || json_is_string(type))) {
        abort();
    }

    errors = json_object_get(problem, "errors");
    if (!json_is_array(errors)
        || json_array_size(errors) > FS_REPLY_ERRORS_MAX)
    {
        abort();
    }

    json_array_foreach(errors, i, e) {
        fuzz_text(json_string_value(json_object_get(e, "message")),
                  FS_REPLY_MSG_MAX);
        fuzz_text(json_string_value(json_object_get(e, "node")),
                  FS_REPLY_ID_LEN);

        input = json_object_get(e, "input");
        if (input == NULL || !(json_is_null(input) || json_is_string(input)))
        {
            abort();
        }
    }
}


static void
fuzz_items(json_t *items)
{
    size_t   i;
    json_t  *it;

    if (!json_is_array(items)) {
        abort();
    }

    json_array_foreach(items, i, it) {
        if (!json_is_string(json_object_get(it, "kind"))) {
            abort();
        }

        if (json_object_get(it, "filename")) {
            if (!json_is_string(json_object_get(it, "content_type"))
                || !json_is_string(json_object_get(it, "subfolder"))
                || !json_is_string(json_object_get(it, "type")))
            {
                abort();
            }

        } else if (!json_is_string(json_object_get(it, "text"))) {
            abort();
        }
    }
}


static void
fuzz_prompt(int status, const char *body, size_t len)
{
    int      rc;
    long     number;
    char    *id, *text;
    json_t  *problem;

    rc = fs_prompt_reply(fuzz_d, status, body, len, &id, &number, &problem);

    if (rc == 0) {
        if (id == NULL || problem != NULL || status != 200 || *id == '\0'
            || strlen(id) >= FS_REPLY_ID_LEN)
        {
            abort();
        }

    } else if (rc == -1) {
        /* an id only when ComfyUI queued the run anyway */
        if (id != NULL && status != 200) {
            abort();
        }

        fuzz_problem(problem);

        text = json_dumps(problem, JSON_COMPACT);
        if (text == NULL) {
            abort();
        }

        free(text);

    } else {
        abort();
    }

    free(id);
    json_decref(problem);
}


static void
fuzz_history(const char *id, const char *body, size_t len)
{
    int                  rc;
    size_t               i;
    json_t              *outputs, *error;
    fs_history_state_e   st;

    rc = fs_history_parse(fuzz_d, id, body, len, &st, &outputs, &error);

    if (rc != 0 || st == FS_HISTORY_PENDING) {
        if ((rc != 0 && rc != -1) || st != FS_HISTORY_PENDING
            || outputs != NULL || error != NULL)
        {
            abort();
        }

        return;
    }

    /* every declared output, by our names, a list each */
    if (!json_is_object(outputs)
        || json_object_size(outputs) != fuzz_d->noutputs)
    {
        abort();
    }

    for (i = 0; i < fuzz_d->noutputs; i++) {
        fuzz_items(json_object_get(outputs, fuzz_d->outputs[i].name));
    }

    if ((st == FS_HISTORY_SUCCEEDED) != (error == NULL)) {
        abort();
    }

    if (error) {
        fuzz_text(json_string_value(json_object_get(error, "message")),
                  FS_REPLY_MSG_MAX);
    }

    json_decref(outputs);
    json_decref(error);
}


static void
fuzz_ws(const char *text, size_t len)
{
    int             rc;
    json_t         *items;
    const char     *name;
    fs_ws_event_t   ev;

    rc = fs_ws_event_parse(text, len, &ev);

    if (memchr(ev.prompt_id, '\0', sizeof(ev.prompt_id)) == NULL
        || memchr(ev.node, '\0', sizeof(ev.node)) == NULL)
    {
        abort();
    }

    if (rc != 0) {
        if (rc != -1 || ev.type != FS_WS_OTHER || ev.output || ev.error) {
            abort();
        }

        return;
    }

    if ((ev.type == FS_WS_EXECUTED) != (ev.output != NULL)) {
        abort();
    }

    if ((ev.type == FS_WS_ERROR || ev.type == FS_WS_INTERRUPTED)
        != (ev.error != NULL))
    {
        abort();
    }

    if (ev.error) {
        fuzz_text(json_string_value(json_object_get(ev.error, "message")),
                  FS_REPLY_MSG_MAX);
    }

    if (ev.type == FS_WS_EXECUTED) {
        name = NULL;
        items = fs_executed_outputs(fuzz_d, ev.node, ev.output, &name);

        if (items) {
            if (name == NULL) {
                abort();
            }

            fuzz_items(items);
            json_decref(items);
        }
    }

    fs_ws_event_clear(&ev);
    fs_ws_event_clear(&ev);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int          status;
    char        *buf;
    const char  *body;
    size_t       len;
    json_t      *clean;
    char         out[96];

    if (fuzz_d == NULL) {
        fuzz_d = fuzz_deployment();
    }

    if (size < 2) {
        return 0;
    }

    body = (const char *) data + 2;
    len = size - 2;
    status = fuzz_status[data[1] % (sizeof(fuzz_status) / sizeof(int))];

    switch (data[0] % 8) {

    case 0:
    case 1:
    case 2:
    case 3:
        fuzz_prompt(status, body, len);
        break;

    case 4:
        fuzz_history("p", body, len);
        fuzz_history(NULL, body, len);
        break;

    case 5:
        fuzz_ws(body, len);
        break;

    case 6:
        buf = malloc(len + 1);
        if (buf == NULL) {
            return 0;
        }

        memcpy(buf, body, len);
        buf[len] = '\0';

        fs_reply_clean(buf, out, (data[1] % sizeof(out)) + 1);
        if (strlen(out) > data[1] % sizeof(out)) {
            abort();
        }

        /* whatever came in, valid UTF-8 comes out */
        clean = json_string(out);
        if (clean == NULL) {
            abort();
        }

        json_decref(clean);

        free(buf);
        break;

    default:
        /* the same bytes through every parser */
        fuzz_prompt(400, body, len);
        fuzz_history("p", body, len);
        fuzz_ws(body, len);
        break;
    }

    return 0;
}
