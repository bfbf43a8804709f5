
/*
 * FlowScale for nginx: reading ComfyUI's replies to POST /prompt,
 * GET /history/ID and its /ws messages (see ngx_http_flowscale_reply.h
 * and shared/comfyui.md for the shapes, older servers included).
 *
 * Pure C over jansson.
 */


#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <ctype.h>
#include <math.h>

#include "ngx_http_flowscale_workflow.h"
#include "ngx_http_flowscale_reply.h"


#define FS_VALUE_MAX    64     /* a quoted value inside a message */
#define FS_OPTIONS_MAX  8      /* options listed for value_not_in_list */
#define FS_EXC_MSG_MAX  200    /* first line of an exception_message */


typedef struct {
    const char     *name;
    fs_ws_type_e    type;
} fs_ws_name_t;


static json_t *fs_reply_load(const char *body, size_t len);
static char *fs_reply_relax(const char *body, size_t len, size_t *out_len);
static long fs_json_long(json_t *v, long def);
static size_t fs_utf8_len(const unsigned char *p, size_t left);
static int fs_path_start(const char *s, size_t i);
static void fs_word(const char *in, char *out, size_t size);
static int fs_safe_id(const char *s, size_t max);
static void fs_cap(char *msg, size_t size);
static void fs_value_text(json_t *v, char *out, size_t size);

static json_t *fs_problem(const char *detail, json_t *errors,
    const char *type);
static json_t *fs_generic_problem(int status, json_t *root);
static json_t *fs_rejection(const fs_deployment_t *d, json_t *root);
static const char *fs_guess_type(const char *text);
static void fs_unknown_node(const fs_deployment_t *d, const char *text,
    char *detail, size_t size, json_t *errors);
static size_t fs_collect_node_errors(const fs_deployment_t *d, json_t *ne,
    int affecting, json_t *errors);
static int fs_affects_outputs(const fs_deployment_t *d, const char *node,
    json_t *entry);
static const fs_input_t *fs_find_input(const fs_deployment_t *d,
    const char *node, const char *input);
static const char *fs_workflow_class(const fs_deployment_t *d,
    const char *node);
static void fs_node_error_message(const fs_deployment_t *d, const char *node,
    const char *class, json_t *e, const fs_input_t **decl, char *msg,
    size_t size);
static void fs_options_text(json_t *cfg, char *out, size_t size);
static const char *fs_type_words(const char *itype);

static json_t *fs_history_outputs(const fs_deployment_t *d, json_t *outs);
static json_t *fs_node_items(json_t *node_out);
static int fs_add_item(json_t *items, const char *kind, json_t *it,
    int depth);
static json_t *fs_file_item(const char *kind, json_t *it);

static int fs_ws_copy_id(char *dst, json_t *v);


static const fs_ws_name_t  fs_ws_names[] = {
    { "status",                FS_WS_STATUS },
    { "execution_start",       FS_WS_EXECUTION_START },
    { "execution_cached",      FS_WS_EXECUTION_CACHED },
    { "executing",             FS_WS_EXECUTING },
    { "progress",              FS_WS_PROGRESS },
    { "executed",              FS_WS_EXECUTED },
    { "execution_success",     FS_WS_SUCCESS },
    { "execution_error",       FS_WS_ERROR },
    { "execution_interrupted", FS_WS_INTERRUPTED },
    { NULL,                    FS_WS_OTHER }
};


static const struct {
    const char  *ext;
    const char  *type;
} fs_content_types[] = {
    { "png",  "image/png" },
    { "jpg",  "image/jpeg" },
    { "jpeg", "image/jpeg" },
    { "webp", "image/webp" },
    { "gif",  "image/gif" },
    { "mp4",  "video/mp4" },
    { "webm", "video/webm" },
    { "mov",  "video/quicktime" },
    { "wav",  "audio/wav" },
    { "flac", "audio/flac" },
    { "mp3",  "audio/mpeg" },
    { "ogg",  "audio/ogg" },
    { "opus", "audio/opus" },
    { "txt",  "text/plain" },
    { "json", "application/json" },
    { NULL,   NULL }
};


/* ---------------------------------------------------------------- JSON */


/*
 * ComfyUI is Python: json.dumps() writes NaN and Infinity for such floats
 * (a received_value, a progress value), and seeds go up to 2^64 - 1, which
 * jansson refuses as an integer.  Neither may make a whole reply
 * unreadable, so a strict parse that fails is retried with those tokens
 * made null and every integer read as a real.
 */

static json_t *
fs_reply_load(const char *body, size_t len)
{
    char    *relaxed;
    size_t   rlen;
    json_t  *root;

    if (body == NULL || len == 0) {
        return NULL;
    }

    root = json_loadb(body, len, 0, NULL);
    if (root != NULL) {
        return root;
    }

    relaxed = fs_reply_relax(body, len, &rlen);
    if (relaxed == NULL) {
        return NULL;
    }

    root = json_loadb(relaxed, rlen, JSON_DECODE_INT_AS_REAL, NULL);
    free(relaxed);

    return root;
}


static char *
fs_reply_relax(const char *body, size_t len, size_t *out_len)
{
    int      in_string, escaped;
    char    *out, *p;
    size_t   i;

    /* "NaN" (3 bytes) becomes "null" (4): at most 4/3 of the input */
    if (len > ((size_t) -1) / 2 - 8) {
        return NULL;
    }

    out = malloc(len * 2 + 8);
    if (out == NULL) {
        return NULL;
    }

    p = out;
    in_string = 0;
    escaped = 0;

    for (i = 0; i < len; i++) {

        if (in_string) {
            if (escaped) {
                escaped = 0;

            } else if (body[i] == '\\') {
                escaped = 1;

            } else if (body[i] == '"') {
                in_string = 0;
            }

            *p++ = body[i];
            continue;
        }

        if (body[i] == '"') {
            in_string = 1;

        } else if (len - i >= 3 && memcmp(body + i, "NaN", 3) == 0) {
            memcpy(p, "null", 4);
            p += 4;
            i += 2;
            continue;

        } else if (len - i >= 8 && memcmp(body + i, "Infinity", 8) == 0) {
            memcpy(p, "null", 4);
            p += 4;
            i += 7;
            continue;

        } else if (len - i >= 9 && memcmp(body + i, "-Infinity", 9) == 0) {
            memcpy(p, "null", 4);
            p += 4;
            i += 8;
            continue;
        }

        *p++ = body[i];
    }

    *out_len = p - out;

    return out;
}


static long
fs_json_long(json_t *v, long def)
{
    double  r;

    if (json_is_integer(v)) {
        return (long) json_integer_value(v);
    }

    if (json_is_real(v)) {
        r = json_real_value(v);

        /* a cast of a value out of range is undefined behaviour */
        if (isfinite(r) && r > -9.2e18 && r < 9.2e18) {
            return (long) r;
        }
    }

    return def;
}


/* ---------------------------------------------------------------- text */


/* length of a valid UTF-8 sequence at p, 0 when it is not one */

static size_t
fs_utf8_len(const unsigned char *p, size_t left)
{
    size_t  n, i;

    if (p[0] < 0x80) {
        return 1;

    } else if (p[0] >= 0xc2 && p[0] <= 0xdf) {
        n = 2;

    } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
        n = 3;

    } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        n = 4;

    } else {
        return 0;
    }

    if (n > left) {
        return 0;
    }

    for (i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80) {
            return 0;
        }
    }

    /* overlong forms, surrogates and code points past U+10FFFF */
    if ((p[0] == 0xe0 && p[1] < 0xa0)
        || (p[0] == 0xed && p[1] >= 0xa0)
        || (p[0] == 0xf0 && p[1] < 0x90)
        || (p[0] == 0xf4 && p[1] >= 0x90))
    {
        return 0;
    }

    return n;
}


/*
 * Does a filesystem path start at s[i]?  Only at the start of a word, so
 * "image/png" or "a / b" stay: "/opt/x", "~/x", "./x", "../x", "C:\x",
 * "C:/x", "\\server\x".
 */

static int
fs_path_start(const char *s, size_t i)
{
    const char  *p;

    if (i > 0 && strchr(" \t'\"`([{<=:,;", s[i - 1]) == NULL) {
        return 0;
    }

    p = s + i;

    if (p[0] == '/') {
        return p[1] != '\0' && p[1] != ' ';
    }

    if (p[0] == '~' && p[1] == '/') {
        return 1;
    }

    if (p[0] == '\\' && p[1] == '\\') {
        return 1;
    }

    if (p[0] == '.'
        && (p[1] == '/' || p[1] == '\\'
            || (p[1] == '.' && (p[2] == '/' || p[2] == '\\'))))
    {
        return 1;
    }

    if (isalpha((unsigned char) p[0]) && p[1] == ':'
        && (p[2] == '\\' || p[2] == '/'))
    {
        return 1;
    }

    return 0;
}


/*
 * Text from ComfyUI made fit to show a caller: its first non-empty line,
 * control characters as spaces, paths as "[path]", a dumped tensor cut
 * off, invalid UTF-8 as "?", at most size - 1 bytes ending in "..." when
 * cut.  A word with a backslash is a Windows path even after a space
 * ("C:\Program Files\...").
 */

void
fs_reply_clean(const char *in, char *out, size_t size)
{
    int          truncated, path, stop;
    size_t       i, o, n, limit, word;
    const char  *rep;

    if (size == 0) {
        return;
    }

    out[0] = '\0';

    if (in == NULL || size < 8) {
        return;
    }

    /* room for "..." and the NUL */
    limit = size - 4;
    truncated = 0;
    stop = 0;
    o = 0;

    i = 0;
    while (in[i] == ' ' || in[i] == '\t' || in[i] == '\n' || in[i] == '\r') {
        i++;
    }

    while (in[i] != '\0' && in[i] != '\n' && in[i] != '\r') {

        if (strncmp(in + i, "tensor(", 7) == 0) {
            rep = "tensor(...)";
            n = strlen(rep);

            if (o + n > limit) {
                truncated = 1;
                break;
            }

            memcpy(out + o, rep, n);
            o += n;
            stop = 1;
            break;
        }

        path = fs_path_start(in, i);

        if (!path && (i == 0 || in[i - 1] == ' ')) {
            for (word = i; in[word] != '\0' && in[word] != ' '
                 && in[word] != '\n' && in[word] != '\r'; word++)
            {
                if (in[word] == '\\') {
                    path = 1;
                    break;
                }
            }
        }

        if (path) {
            rep = "[path]";
            n = strlen(rep);

            if (o + n > limit) {
                truncated = 1;
                break;
            }

            memcpy(out + o, rep, n);
            o += n;

            while (in[i] != '\0' && strchr(" \t\n\r'\"`", in[i]) == NULL) {
                i++;
            }

            continue;
        }

        if ((unsigned char) in[i] < 0x20 || in[i] == 0x7f) {
            n = 1;
            rep = " ";

        } else {
            /* a NUL fails the continuation check: 4 is safe */
            n = fs_utf8_len((const unsigned char *) in + i, 4);
            rep = n ? in + i : "?";
        }

        if (o + (n ? n : 1) > limit) {
            truncated = 1;
            break;
        }

        memcpy(out + o, rep, n ? n : 1);
        o += n ? n : 1;
        i += n ? n : 1;
    }

    if (!stop && in[i] != '\0' && in[i] != '\n' && in[i] != '\r') {
        truncated = 1;
    }

    while (o > 0 && out[o - 1] == ' ') {
        o--;
    }

    if (truncated) {
        memcpy(out + o, "...", 3);
        o += 3;
    }

    out[o] = '\0';
}


/* an identifier-like word: error and exception types, kinds */

static void
fs_word(const char *in, char *out, size_t size)
{
    size_t  o;

    o = 0;

    if (size == 0) {
        return;
    }

    for ( /* void */ ; in && *in && o + 1 < size; in++) {
        if (isalnum((unsigned char) *in) || *in == '_' || *in == '.'
            || *in == '-')
        {
            out[o++] = *in;
        }
    }

    out[o] = '\0';
}


/* ids the gateway may put into a URL or a log line as they are */

static int
fs_safe_id(const char *s, size_t max)
{
    size_t  n;

    for (n = 0; s[n]; n++) {
        if (n >= max
            || !(isalnum((unsigned char) s[n]) || strchr("-_.:", s[n])))
        {
            return 0;
        }
    }

    return n > 0;
}


/* cut a message built from clean parts at a UTF-8 boundary */

static void
fs_cap(char *msg, size_t size)
{
    size_t  n;

    n = strlen(msg);

    if (n < size || size < 8) {
        return;
    }

    n = size - 4;

    while (n > 0 && ((unsigned char) msg[n] & 0xc0) == 0x80) {
        n--;
    }

    memcpy(msg + n, "...", 4);
}


/* a value ComfyUI received, quoted for a message; "" when not shown */

static void
fs_value_text(json_t *v, char *out, size_t size)
{
    double  r;
    char    clean[FS_VALUE_MAX - 2];      /* room for the quotes */

    out[0] = '\0';

    if (v == NULL) {
        return;
    }

    switch (json_typeof(v)) {

    case JSON_INTEGER:
        snprintf(out, size, "%lld", (long long) json_integer_value(v));
        break;

    case JSON_REAL:
        r = json_real_value(v);

        /*
         * Whole numbers as such; seeds top out at 0xffffffffffffffff, which
         * only a real holds, and as a double reads 2^64: say what ComfyUI
         * meant.
         */

        if (r == 18446744073709551616.0) {
            snprintf(out, size, "18446744073709551615");

        } else if (r == floor(r) && fabs(r) < 1e20) {
            snprintf(out, size, "%.0f", r);

        } else {
            snprintf(out, size, "%.6g", r);
        }

        break;

    case JSON_STRING:
        fs_reply_clean(json_string_value(v), clean, sizeof(clean));
        snprintf(out, size, "\"%s\"", clean);
        break;

    case JSON_TRUE:
        snprintf(out, size, "true");
        break;

    case JSON_FALSE:
        snprintf(out, size, "false");
        break;

    default:
        break;
    }
}


/* ------------------------------------------------------------- /prompt */


int
fs_prompt_reply(const fs_deployment_t *d, int status, const char *body,
    size_t len, char **prompt_id, long *number, json_t **problem)
{
    json_t      *root, *id, *ne, *errors;
    size_t       n;
    const char  *first;
    char         detail[FS_REPLY_MSG_MAX * 2];

    *prompt_id = NULL;
    *number = -1;
    *problem = NULL;

    root = fs_reply_load(body, len);

    if (status != 200) {
        *problem = (status == 400 && json_is_object(root))
                   ? fs_rejection(d, root)
                   : fs_generic_problem(status, root);
        json_decref(root);
        return -1;
    }

    id = json_object_get(root, "prompt_id");

    if (!json_is_string(id)
        || !fs_safe_id(json_string_value(id), FS_REPLY_ID_LEN - 1))
    {
        *problem = fs_generic_problem(status, root);
        json_decref(root);
        return -1;
    }

    *prompt_id = strdup(json_string_value(id));
    *number = fs_json_long(json_object_get(root, "number"), -1);

    if (*prompt_id == NULL) {
        json_decref(root);
        return -1;
    }

    /*
     * Accepted, but ComfyUI runs only the outputs whose inputs validated:
     * a declared output among the failed ones would never come.  Old
     * servers send [] for none.
     */

    ne = json_object_get(root, "node_errors");

    if (!json_is_object(ne) || json_object_size(ne) == 0) {
        json_decref(root);
        return 0;
    }

    errors = json_array();
    if (errors == NULL) {
        json_decref(root);
        return -1;
    }

    n = fs_collect_node_errors(d, ne, 1, errors);

    if (n == 0) {
        json_decref(errors);
        json_decref(root);
        return 0;
    }

    first = json_string_value(json_object_get(json_array_get(errors, 0),
                                              "message"));

    if (n == 1) {
        snprintf(detail, sizeof(detail), "the backend cannot run this "
                 "workflow's outputs: %s", first ? first : "");

    } else {
        snprintf(detail, sizeof(detail), "the backend cannot run this "
                 "workflow's outputs: %s (and %zu more problems)",
                 first ? first : "", n - 1);
    }

    fs_cap(detail, FS_REPLY_MSG_MAX);

    *problem = fs_problem(detail, errors, "prompt_outputs_failed_validation");
    json_decref(root);

    return -1;
}


static json_t *
fs_problem(const char *detail, json_t *errors, const char *type)
{
    json_t  *p;

    if (errors == NULL) {
        errors = json_array();
    }

    p = json_pack("{s:s, s:o, s:s?}", "detail", detail, "errors", errors,
                  "comfyui_type", type);

    return p;
}


/*
 * Replies that say nothing usable: 403 is ComfyUI's Origin check, 500 its
 * answer to a body it could not parse; their text is never shown.
 */

static json_t *
fs_generic_problem(int status, json_t *root)
{
    char         detail[FS_REPLY_MSG_MAX * 2];
    const char  *type;
    char         word[64];

    type = NULL;
    word[0] = '\0';

    if (json_is_object(root)) {
        json_t  *err = json_object_get(root, "error");

        if (json_is_object(err)) {
            fs_word(json_string_value(json_object_get(err, "type")), word,
                    sizeof(word));
            type = word[0] ? word : NULL;

        } else if (json_is_string(err)) {
            type = fs_guess_type(json_string_value(err));
        }
    }

    switch (status) {

    case 200:
        snprintf(detail, sizeof(detail), "the backend accepted the run but "
                 "its reply did not name the run it queued");
        break;

    case 400:
        snprintf(detail, sizeof(detail), "the backend rejected this run "
                 "with a reply that could not be read");
        break;

    case 403:
        snprintf(detail, sizeof(detail), "the backend refused the gateway's "
                 "request (HTTP 403: its Origin check)");
        break;

    case 500:
        snprintf(detail, sizeof(detail), "the backend failed to read the "
                 "gateway's request (HTTP 500)");
        break;

    default:
        snprintf(detail, sizeof(detail), "the backend answered the prompt "
                 "with HTTP %d", status);
        break;
    }

    return fs_problem(detail, NULL, type);
}


/* 400: {"error": {type, message, details, extra_info} or "...", ...} */

static json_t *
fs_rejection(const fs_deployment_t *d, json_t *root)
{
    json_t      *err, *errors;
    size_t       n;
    const char  *type, *text, *first;
    char         word[64], detail[FS_REPLY_MSG_MAX * 2];

    err = json_object_get(root, "error");
    type = NULL;
    text = NULL;

    if (json_is_object(err)) {
        fs_word(json_string_value(json_object_get(err, "type")), word,
                sizeof(word));
        type = word[0] ? word : NULL;
        text = json_string_value(json_object_get(err, "details"));

    } else if (json_is_string(err)) {
        /* before 0.3.28: "message: details" */
        text = json_string_value(err);
        type = fs_guess_type(text);
    }

    errors = json_array();
    if (errors == NULL) {
        return NULL;
    }

    n = fs_collect_node_errors(d, json_object_get(root, "node_errors"), 0,
                               errors);

    if (type && strcmp(type, "invalid_prompt") == 0) {
        fs_unknown_node(d, text, detail, sizeof(detail), errors);

    } else if (type && strcmp(type, "prompt_no_outputs") == 0) {
        snprintf(detail, sizeof(detail), "the backend found no output it can "
                 "run in this workflow (are its output node classes "
                 "installed there?)");

    } else if (type && strcmp(type, "no_prompt") == 0) {
        snprintf(detail, sizeof(detail), "the backend received no workflow");

    } else if (n > 0) {
        first = json_string_value(
                    json_object_get(json_array_get(errors, 0), "message"));

        if (n == 1) {
            snprintf(detail, sizeof(detail), "the backend rejected this run: "
                     "%s", first ? first : "");

        } else {
            snprintf(detail, sizeof(detail), "the backend rejected this run: "
                     "%s (and %zu more problems)", first ? first : "",
                     n - 1);
        }

    } else if (type) {
        snprintf(detail, sizeof(detail), "the backend rejected this run "
                 "(%s)", type);

    } else {
        snprintf(detail, sizeof(detail), "the backend rejected this run");
    }

    fs_cap(detail, FS_REPLY_MSG_MAX);

    return fs_problem(detail, errors, type);
}


/* old servers send the message text only; its fixed words give the type */

static const char *
fs_guess_type(const char *text)
{
    if (text == NULL) {
        return NULL;
    }

    if (strncmp(text, "Prompt outputs failed validation", 32) == 0) {
        return "prompt_outputs_failed_validation";
    }

    if (strncmp(text, "Prompt has no outputs", 21) == 0) {
        return "prompt_no_outputs";
    }

    if (strncmp(text, "No prompt provided", 18) == 0) {
        return "no_prompt";
    }

    if (strncmp(text, "Cannot execute because", 22) == 0) {
        return "invalid_prompt";
    }

    return NULL;
}


/*
 * invalid_prompt names the node in its details, "Node ID '#12'"; the class
 * is taken from our own workflow rather than from ComfyUI's words.
 */

static void
fs_unknown_node(const fs_deployment_t *d, const char *text, char *detail,
    size_t size, json_t *errors)
{
    size_t       n;
    char         node[FS_REPLY_ID_LEN], msg[FS_REPLY_MSG_MAX * 2];
    const char  *p, *class;
    json_t      *e;

    node[0] = '\0';
    p = text ? strstr(text, "Node ID '#") : NULL;

    if (p) {
        p += 10;

        for (n = 0; p[n] && p[n] != '\'' && n + 1 < sizeof(node); n++) {
            node[n] = p[n];
        }

        node[n] = '\0';

        if (!fs_safe_id(node, sizeof(node) - 1)) {
            node[0] = '\0';
        }
    }

    class = node[0] ? fs_workflow_class(d, node) : NULL;

    if (class) {
        snprintf(msg, sizeof(msg), "the backend does not have node class "
                 "\"%s\" (node %s); install it there or use another "
                 "backend", class, node);

    } else {
        snprintf(msg, sizeof(msg), "the backend cannot run a node of this "
                 "workflow (an unknown node class)");
    }

    fs_cap(msg, FS_REPLY_MSG_MAX);
    snprintf(detail, size, "%s", msg);

    if (node[0] && json_array_size(errors) < FS_REPLY_ERRORS_MAX) {
        e = json_pack("{s:n, s:s, s:s}", "input", "node", node,
                      "message", msg);
        json_array_append_new(errors, e);
    }
}


/*
 * One errors entry per node error.  With "affecting" only the nodes that
 * stop a declared output count (200 replies).  Returns how many there were,
 * also past FS_REPLY_ERRORS_MAX.
 */

static size_t
fs_collect_node_errors(const fs_deployment_t *d, json_t *ne, int affecting,
    json_t *errors)
{
    size_t             n, i;
    json_t            *entry, *list, *e, *item;
    const char        *node, *class;
    const fs_input_t  *decl;
    char               id[FS_REPLY_ID_LEN], msg[FS_REPLY_MSG_MAX * 2];

    n = 0;

    if (!json_is_object(ne)) {
        return 0;
    }

    json_object_foreach(ne, node, entry) {

        if (!json_is_object(entry)) {
            continue;
        }

        if (affecting && !fs_affects_outputs(d, node, entry)) {
            continue;
        }

        fs_reply_clean(node, id, sizeof(id));

        class = fs_workflow_class(d, node);
        if (class == NULL) {
            class = "unknown class";
        }

        list = json_object_get(entry, "errors");

        if (!json_is_array(list) || json_array_size(list) == 0) {
            n++;

            if (json_array_size(errors) < FS_REPLY_ERRORS_MAX) {
                snprintf(msg, sizeof(msg), "node %s (%s) failed validation "
                         "on the backend", id, class);
                fs_cap(msg, FS_REPLY_MSG_MAX);
                item = json_pack("{s:n, s:s, s:s}", "input", "node", id,
                                 "message", msg);
                json_array_append_new(errors, item);
            }

            continue;
        }

        json_array_foreach(list, i, e) {
            n++;

            if (json_array_size(errors) >= FS_REPLY_ERRORS_MAX) {
                continue;
            }

            fs_node_error_message(d, node, class, e, &decl, msg, sizeof(msg));

            item = json_pack("{s:s?, s:s, s:s}",
                             "input", decl ? decl->name : NULL,
                             "node", id, "message", msg);
            json_array_append_new(errors, item);
        }
    }

    return n;
}


static int
fs_affects_outputs(const fs_deployment_t *d, const char *node, json_t *entry)
{
    size_t       i, j;
    json_t      *dep, *v;
    char         num[32];
    const char  *s;

    dep = json_object_get(entry, "dependent_outputs");

    for (i = 0; i < d->noutputs; i++) {

        if (strcmp(d->outputs[i].node, node) == 0) {
            return 1;
        }

        json_array_foreach(dep, j, v) {
            s = json_string_value(v);

            if (json_is_integer(v)) {
                snprintf(num, sizeof(num), "%lld",
                         (long long) json_integer_value(v));
                s = num;
            }

            if (s && strcmp(d->outputs[i].node, s) == 0) {
                return 1;
            }
        }
    }

    return 0;
}


static const fs_input_t *
fs_find_input(const fs_deployment_t *d, const char *node, const char *input)
{
    size_t  i;

    if (input == NULL) {
        return NULL;
    }

    for (i = 0; i < d->ninputs; i++) {
        if (d->inputs[i].node && d->inputs[i].input
            && strcmp(d->inputs[i].node, node) == 0
            && strcmp(d->inputs[i].input, input) == 0)
        {
            return &d->inputs[i];
        }
    }

    return NULL;
}


/* the class from our own workflow: known, short and never ComfyUI's text */

static const char *
fs_workflow_class(const fs_deployment_t *d, const char *node)
{
    const char  *class;

    class = json_string_value(
                json_object_get(json_object_get(d->workflow, node),
                                "class_type"));

    if (class == NULL || strlen(class) > FS_VALUE_MAX) {
        return NULL;
    }

    return class;
}


/*
 * One node error in plain words.  A declared input is named as the caller
 * knows it ("steps must be at most 50 on this backend"); any other slot as
 * node, class and input.  Only the type, the input's name, its config
 * (type, min, max, options) and the value received are used: ComfyUI's
 * "details" can hold exception text.
 */

static void
fs_node_error_message(const fs_deployment_t *d, const char *node,
    const char *class, json_t *e, const fs_input_t **decl, char *msg,
    size_t size)
{
    json_t      *xi, *cfg, *spec;
    const char  *iname, *itype;
    char         type[64], name[FS_VALUE_MAX], subject[256], id[FS_VALUE_MAX];
    char         got[FS_VALUE_MAX + 16], recv[FS_VALUE_MAX], lim[FS_VALUE_MAX];
    char         opts[FS_REPLY_MSG_MAX / 2], what[FS_VALUE_MAX];

    *decl = NULL;

    fs_word(json_string_value(json_object_get(e, "type")), type, sizeof(type));
    xi = json_object_get(e, "extra_info");
    cfg = json_object_get(xi, "input_config");
    spec = json_array_get(cfg, 1);
    itype = json_string_value(json_array_get(cfg, 0));

    iname = json_string_value(json_object_get(xi, "input_name"));

    /* older servers: the input's name alone in "details" */
    if (iname == NULL && strcmp(type, "required_input_missing") == 0) {
        iname = json_string_value(json_object_get(e, "details"));
    }

    name[0] = '\0';
    if (iname) {
        fs_reply_clean(iname, name, sizeof(name));
    }

    fs_reply_clean(node, id, sizeof(id));

    *decl = name[0] ? fs_find_input(d, node, iname) : NULL;

    if (*decl) {
        snprintf(subject, sizeof(subject), "%s", (*decl)->name);

    } else if (name[0]) {
        snprintf(subject, sizeof(subject), "input \"%s\" of node %s (%s)",
                 name, id, class);

    } else {
        snprintf(subject, sizeof(subject), "node %s (%s)", id, class);
    }

    fs_value_text(json_object_get(xi, "received_value"), recv, sizeof(recv));

    got[0] = '\0';
    if (recv[0]) {
        snprintf(got, sizeof(got), " (got %s)", recv);
    }

    if (strcmp(type, "required_input_missing") == 0) {
        snprintf(msg, size, "%s is required but has no value", subject);

    } else if (strcmp(type, "value_bigger_than_max") == 0) {
        fs_value_text(json_object_get(spec, "max"), lim, sizeof(lim));

        if (lim[0]) {
            snprintf(msg, size, "%s must be at most %s on this backend%s",
                     subject, lim, got);
        } else {
            snprintf(msg, size, "%s is above the maximum of this backend%s",
                     subject, got);
        }

    } else if (strcmp(type, "value_smaller_than_min") == 0) {
        fs_value_text(json_object_get(spec, "min"), lim, sizeof(lim));

        if (lim[0]) {
            snprintf(msg, size, "%s must be at least %s on this backend%s",
                     subject, lim, got);
        } else {
            snprintf(msg, size, "%s is below the minimum of this backend%s",
                     subject, got);
        }

    } else if (strcmp(type, "invalid_input_type") == 0) {
        snprintf(msg, size, "%s must be %s%s", subject, fs_type_words(itype),
                 got);

    } else if (strcmp(type, "value_not_in_list") == 0) {
        fs_options_text(cfg, opts, sizeof(opts));

        if (opts[0]) {
            snprintf(msg, size, "%s must be one of %s on this backend%s",
                     subject, opts, got);
        } else {
            snprintf(msg, size, "%s is not one of the options this backend "
                     "offers%s", subject, got);
        }

    } else if (strcmp(type, "return_type_mismatch") == 0) {
        fs_word(json_string_value(json_object_get(xi, "received_type")), what,
                sizeof(what));
        fs_word(itype, lim, sizeof(lim));

        if (what[0] && lim[0]) {
            snprintf(msg, size, "%s is linked to an output of type %s where "
                     "the backend expects %s", subject, what, lim);
        } else {
            snprintf(msg, size, "%s is linked to an output of the wrong "
                     "type", subject);
        }

    } else if (strcmp(type, "bad_linked_input") == 0) {
        snprintf(msg, size, "%s has a malformed link", subject);

    } else if (strcmp(type, "custom_validation_failed") == 0) {
        snprintf(msg, size, "%s was refused by the node's own checks on this "
                 "backend (for a file: it is not there)%s", subject, got);

    } else if (strcmp(type, "exception_during_validation") == 0
               || strcmp(type, "exception_during_inner_validation") == 0)
    {
        fs_word(json_string_value(json_object_get(xi, "exception_type")),
                what, sizeof(what));

        if (what[0]) {
            snprintf(msg, size, "%s could not be checked by the backend (%s)",
                     subject, what);
        } else {
            snprintf(msg, size, "%s could not be checked by the backend",
                     subject);
        }

    } else if (type[0]) {
        snprintf(msg, size, "%s was rejected by the backend (%s)%s", subject,
                 type, got);

    } else {
        snprintf(msg, size, "%s was rejected by the backend%s", subject, got);
    }

    fs_cap(msg, FS_REPLY_MSG_MAX);
}


/* ["a", "b"] of [[...], {}] (old combos) or ["COMBO", {"options": [...]}] */

static void
fs_options_text(json_t *cfg, char *out, size_t size)
{
    size_t   i, o, n;
    json_t  *list, *v;
    char     one[FS_VALUE_MAX];

    out[0] = '\0';

    list = json_array_get(cfg, 0);
    if (!json_is_array(list)) {
        list = json_object_get(json_array_get(cfg, 1), "options");
    }

    if (!json_is_array(list) || json_array_size(list) == 0) {
        return;
    }

    o = 0;

    json_array_foreach(list, i, v) {
        if (i == FS_OPTIONS_MAX) {
            snprintf(out + o, size - o, ", ... (%zu in all)",
                     json_array_size(list));
            break;
        }

        fs_value_text(v, one, sizeof(one));
        if (one[0] == '\0') {
            continue;
        }

        n = snprintf(out + o, size - o, "%s%s", o ? ", " : "", one);
        if (n >= size - o) {
            out[o] = '\0';
            break;
        }

        o += n;
    }
}


static const char *
fs_type_words(const char *itype)
{
    if (itype == NULL) {
        return "of another type";
    }

    if (strcmp(itype, "INT") == 0) {
        return "an integer";
    }

    if (strcmp(itype, "FLOAT") == 0) {
        return "a number";
    }

    if (strcmp(itype, "STRING") == 0) {
        return "a string";
    }

    if (strcmp(itype, "BOOLEAN") == 0) {
        return "true or false";
    }

    return "of another type";
}


/* ------------------------------------------------------------ /history */


int
fs_history_parse(const fs_deployment_t *d, const char *prompt_id,
    const char *body, size_t len, fs_history_state_e *state,
    json_t **outputs, json_t **error)
{
    size_t               i;
    json_t              *root, *entry, *status, *m, *data;
    const char          *name, *str;
    fs_history_state_e   st;

    *state = FS_HISTORY_PENDING;
    *outputs = NULL;
    *error = NULL;

    root = fs_reply_load(body, len);

    if (!json_is_object(root)) {
        json_decref(root);
        return -1;
    }

    entry = NULL;

    if (prompt_id) {
        entry = json_object_get(root, prompt_id);

    } else if (json_object_size(root) == 1) {
        entry = json_object_iter_value(json_object_iter(root));
    }

    /* {}: queued, running, unknown, evicted or deleted */
    if (entry == NULL) {
        json_decref(root);
        return 0;
    }

    if (!json_is_object(entry)) {
        json_decref(root);
        return -1;
    }

    status = json_object_get(entry, "status");
    st = FS_HISTORY_PENDING;

    json_array_foreach(json_object_get(status, "messages"), i, m) {
        name = json_string_value(json_array_get(m, 0));
        data = json_array_get(m, 1);

        if (name == NULL) {
            continue;
        }

        if (strcmp(name, "execution_error") == 0) {
            st = FS_HISTORY_FAILED;
            *error = fs_execution_error("execution_error", data);
            break;
        }

        if (strcmp(name, "execution_interrupted") == 0) {
            st = FS_HISTORY_INTERRUPTED;
            *error = fs_execution_error("interrupted", data);
            break;
        }
    }

    if (st == FS_HISTORY_PENDING) {
        str = json_string_value(json_object_get(status, "status_str"));

        if (str && strcmp(str, "error") == 0) {
            st = FS_HISTORY_FAILED;
            *error = fs_execution_error("execution_error", NULL);

        } else {
            /* "success", or an entry from before "status" existed */
            st = FS_HISTORY_SUCCEEDED;
        }
    }

    *outputs = fs_history_outputs(d, json_object_get(entry, "outputs"));
    json_decref(root);

    if (*outputs == NULL || (st != FS_HISTORY_SUCCEEDED && *error == NULL)) {
        json_decref(*outputs);
        json_decref(*error);
        *outputs = NULL;
        *error = NULL;
        return -1;
    }

    *state = st;

    return 0;
}


/*
 * execution_error carries traceback, current_inputs (dumped tensors) and
 * an exception_message with server paths: only the exception type and a
 * cleaned first line of the message are kept.
 */

json_t *
fs_execution_error(const char *type, json_t *data)
{
    int          interrupted;
    const char  *s;
    char         node[FS_REPLY_ID_LEN], class[FS_VALUE_MAX];
    char         etype[FS_VALUE_MAX], emsg[FS_EXC_MSG_MAX];
    char         msg[FS_REPLY_MSG_MAX * 2];

    interrupted = strcmp(type, "interrupted") == 0;

    node[0] = '\0';
    class[0] = '\0';
    etype[0] = '\0';
    emsg[0] = '\0';

    s = json_string_value(json_object_get(data, "node_id"));
    if (s && fs_safe_id(s, sizeof(node) - 1)) {
        snprintf(node, sizeof(node), "%s", s);
    }

    fs_word(json_string_value(json_object_get(data, "node_type")), class,
            sizeof(class));

    if (interrupted) {
        if (node[0] && class[0]) {
            snprintf(msg, sizeof(msg), "the run was interrupted on the "
                     "backend at node %s (%s)", node, class);
        } else {
            snprintf(msg, sizeof(msg), "the run was interrupted on the "
                     "backend");
        }

    } else {
        fs_word(json_string_value(json_object_get(data, "exception_type")),
                etype, sizeof(etype));
        fs_reply_clean(json_string_value(json_object_get(data,
                                                         "exception_message")),
                       emsg, sizeof(emsg));

        if (etype[0] && emsg[0]) {
            snprintf(msg, sizeof(msg), "%s: %s", etype, emsg);

        } else if (etype[0] || emsg[0]) {
            snprintf(msg, sizeof(msg), "%s", etype[0] ? etype : emsg);

        } else if (node[0] && class[0]) {
            snprintf(msg, sizeof(msg), "node %s (%s) failed on the backend",
                     node, class);

        } else {
            snprintf(msg, sizeof(msg), "the run failed on the backend");
        }
    }

    fs_cap(msg, FS_REPLY_MSG_MAX);

    return json_pack("{s:s, s:s, s:s?, s:s?}", "type", type, "message", msg,
                     "node", node[0] ? node : NULL,
                     "node_type", class[0] ? class : NULL);
}


static json_t *
fs_history_outputs(const fs_deployment_t *d, json_t *outs)
{
    size_t   i;
    json_t  *res, *items;

    res = json_object();
    if (res == NULL) {
        return NULL;
    }

    for (i = 0; i < d->noutputs; i++) {
        items = fs_node_items(json_object_get(outs, d->outputs[i].node));

        if (items == NULL
            || json_object_set_new(res, d->outputs[i].name, items) != 0)
        {
            json_decref(res);
            return NULL;
        }
    }

    return res;
}


/*
 * One node's "ui" output, {"images": [...], "text": [...], "animated":
 * [true], ...}, as a flat list in ComfyUI's order.  Kinds are open-ended
 * (custom nodes add their own), so any item with a filename is a file and
 * any string a text; only booleans and the like are markers.
 */

static json_t *
fs_node_items(json_t *node_out)
{
    size_t       i;
    json_t      *items, *list, *it;
    const char  *kind;

    items = json_array();
    if (items == NULL) {
        return NULL;
    }

    json_object_foreach(node_out, kind, list) {
        if (!json_is_array(list)) {
            continue;
        }

        json_array_foreach(list, i, it) {
            if (fs_add_item(items, kind, it, 0) != 0) {
                json_decref(items);
                return NULL;
            }
        }
    }

    return items;
}


static int
fs_add_item(json_t *items, const char *kind, json_t *it, int depth)
{
    size_t   i;
    char    *text;
    json_t  *item, *v;

    item = NULL;

    switch (json_typeof(it)) {

    case JSON_OBJECT:
        if (!json_is_string(json_object_get(it, "filename"))) {
            return 0;
        }

        item = fs_file_item(kind, it);
        break;

    case JSON_STRING:
        item = json_pack("{s:s, s:O}", "kind", kind, "text", it);
        break;

    case JSON_INTEGER:
    case JSON_REAL:
        if (strcmp(kind, "text") != 0) {
            return 0;
        }

        text = json_dumps(it, JSON_ENCODE_ANY);
        if (text == NULL) {
            return -1;
        }

        item = json_pack("{s:s, s:s}", "kind", kind, "text", text);
        free(text);
        break;

    case JSON_ARRAY:
        /* text nodes that return a list per batch item */
        if (depth > 0) {
            return 0;
        }

        json_array_foreach(it, i, v) {
            if (fs_add_item(items, kind, v, depth + 1) != 0) {
                return -1;
            }
        }

        return 0;

    default:
        return 0;
    }

    if (item == NULL) {
        return -1;
    }

    return json_array_append_new(items, item);
}


static json_t *
fs_file_item(const char *kind, json_t *it)
{
    json_t      *sub, *type;
    const char  *name, *ct, *fmt;

    name = json_string_value(json_object_get(it, "filename"));
    sub = json_object_get(it, "subfolder");
    type = json_object_get(it, "type");

    ct = fs_content_type(name);

    /*
     * An unknown extension with a media "format" (FSSaveVideo says
     * "video/mp4") takes that; never an SVG or HTML type, which a browser
     * would run.
     */

    fmt = json_string_value(json_object_get(it, "format"));

    if (strcmp(ct, "application/octet-stream") == 0 && fmt
        && (strncmp(fmt, "image/", 6) == 0 || strncmp(fmt, "video/", 6) == 0
            || strncmp(fmt, "audio/", 6) == 0)
        && strlen(fmt) < 64 && strspn(fmt + 6, "abcdefghijklmnopqrstuvwxyz"
                                      "0123456789.-") == strlen(fmt + 6)
        && fmt[6] != '\0')
    {
        ct = fmt;
    }

    return json_pack("{s:s, s:s, s:s, s:s, s:s}",
                     "kind", kind, "filename", name,
                     "subfolder", json_is_string(sub)
                                  ? json_string_value(sub) : "",
                     "type", json_is_string(type)
                             ? json_string_value(type) : "output",
                     "content_type", ct);
}


const char *
fs_content_type(const char *filename)
{
    size_t       i;
    const char  *dot;

    dot = filename ? strrchr(filename, '.') : NULL;

    if (dot == NULL || strchr(dot, '/') || strchr(dot, '\\')) {
        return "application/octet-stream";
    }

    for (i = 0; fs_content_types[i].ext; i++) {
        if (strcasecmp(dot + 1, fs_content_types[i].ext) == 0) {
            return fs_content_types[i].type;
        }
    }

    return "application/octet-stream";
}


json_t *
fs_executed_outputs(const fs_deployment_t *d, const char *node,
    json_t *output, const char **name)
{
    size_t  i;

    if (node == NULL) {
        return NULL;
    }

    for (i = 0; i < d->noutputs; i++) {
        if (strcmp(d->outputs[i].node, node) == 0) {
            if (name) {
                *name = d->outputs[i].name;
            }

            return fs_node_items(output);
        }
    }

    return NULL;
}


/* ----------------------------------------------------------------- /ws */


/* 1: copied; 0: absent or null; -1: not an id of ours (too long, odd) */

static int
fs_ws_copy_id(char *dst, json_t *v)
{
    const char  *s;

    if (v == NULL || json_is_null(v)) {
        return 0;
    }

    s = json_string_value(v);

    if (s == NULL || !fs_safe_id(s, FS_REPLY_ID_LEN - 1)) {
        return -1;
    }

    memcpy(dst, s, strlen(s) + 1);

    return 1;
}


int
fs_ws_event_parse(const char *text, size_t len, fs_ws_event_t *ev)
{
    size_t        i;
    json_t       *root, *data, *node, *output;
    const char   *type;
    fs_ws_type_e  t;

    memset(ev, 0, sizeof(fs_ws_event_t));
    ev->value = -1;
    ev->max = -1;
    ev->queue_remaining = -1;

    root = fs_reply_load(text, len);

    if (!json_is_object(root)) {
        goto malformed;
    }

    type = json_string_value(json_object_get(root, "type"));
    if (type == NULL) {
        goto malformed;
    }

    t = FS_WS_OTHER;

    for (i = 0; fs_ws_names[i].name; i++) {
        if (strcmp(fs_ws_names[i].name, type) == 0) {
            t = fs_ws_names[i].type;
            break;
        }
    }

    data = json_object_get(root, "data");

    if (t == FS_WS_OTHER) {
        /* progress_state, feature_flags, extensions' own: ignored */
        if (fs_ws_copy_id(ev->prompt_id, json_object_get(data, "prompt_id"))
            < 0)
        {
            ev->prompt_id[0] = '\0';
        }

        json_decref(root);
        return 0;
    }

    if (!json_is_object(data)) {
        goto malformed;
    }

    /*
     * Ids are ours (run ids) or the workflow's node ids: anything longer
     * or stranger is some other client's business.
     */

    if (fs_ws_copy_id(ev->prompt_id, json_object_get(data, "prompt_id"))
        < 0)
    {
        memset(ev, 0, sizeof(fs_ws_event_t));
        ev->value = -1;
        ev->max = -1;
        ev->queue_remaining = -1;
        json_decref(root);
        return 0;
    }

    switch (t) {

    case FS_WS_STATUS:
        ev->queue_remaining = fs_json_long(
            json_object_get(json_object_get(json_object_get(data, "status"),
                                            "exec_info"),
                            "queue_remaining"), -1);
        break;

    case FS_WS_EXECUTING:
        node = json_object_get(data, "node");

        if (node == NULL || json_is_null(node)) {
            /* sent after the history entry is written */
            t = FS_WS_DONE;
            break;
        }

        if (!json_is_string(node)) {
            goto malformed;
        }

        if (fs_ws_copy_id(ev->node, node) < 0) {
            t = FS_WS_OTHER;
        }

        break;

    case FS_WS_PROGRESS:
        ev->value = fs_json_long(json_object_get(data, "value"), -1);
        ev->max = fs_json_long(json_object_get(data, "max"), -1);

        if (fs_ws_copy_id(ev->node, json_object_get(data, "node")) < 0) {
            ev->node[0] = '\0';
        }

        break;

    case FS_WS_EXECUTED:
        node = json_object_get(data, "node");
        output = json_object_get(data, "output");

        if (!json_is_string(node) || !json_is_object(output)) {
            goto malformed;
        }

        if (fs_ws_copy_id(ev->node, node) < 0) {
            t = FS_WS_OTHER;
            break;
        }

        ev->output = json_incref(output);
        break;

    case FS_WS_ERROR:
    case FS_WS_INTERRUPTED:
        if (fs_ws_copy_id(ev->node, json_object_get(data, "node_id")) < 0) {
            ev->node[0] = '\0';
        }

        ev->error = fs_execution_error(t == FS_WS_ERROR ? "execution_error"
                                                        : "interrupted",
                                       data);
        if (ev->error == NULL) {
            goto malformed;
        }

        break;

    default:
        break;
    }

    ev->type = t;
    json_decref(root);

    return 0;

malformed:

    json_decref(root);
    fs_ws_event_clear(ev);

    return -1;
}


void
fs_ws_event_clear(fs_ws_event_t *ev)
{
    json_decref(ev->output);
    json_decref(ev->error);

    memset(ev, 0, sizeof(fs_ws_event_t));
    ev->value = -1;
    ev->max = -1;
    ev->queue_remaining = -1;
}
