
/*
 * FlowScale for nginx: declared inputs and outputs (from flowscale_input,
 * flowscale_output and flowscale_io), their types, and the deployment
 * descriptor with a JSON Schema per input.
 *
 * Pure C over jansson (see ngx_http_flowscale_workflow.h).
 */


#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>

#include "ngx_http_flowscale_workflow.h"
#include "ngx_http_flowscale_io.h"


static fs_input_t *fs_input_add(fs_deployment_t *d, const char *name,
    const char *node, const char *input, const void *origin,
    fs_error_t *err);
static fs_output_t *fs_output_add(fs_deployment_t *d, const char *name,
    const char *node, const void *origin, fs_error_t *err);
static int fs_input_option(fs_input_t *in, const char *opt, fs_error_t *err);
static int fs_io_input(fs_deployment_t *d, const char *key, json_t *spec,
    const void *origin, fs_error_t *err);
static int fs_io_output(fs_deployment_t *d, const char *key, json_t *spec,
    const void *origin, fs_error_t *err);
static int fs_type_fits(fs_type_e type, json_t *value);
static int fs_has_fraction(fs_input_t *in);
static int fs_is_fraction(json_t *raw);
static json_t *fs_coerce(fs_input_t *in, json_t *raw, const char *what,
    fs_error_t *err);
static int fs_input_check_range(fs_input_t *in, fs_error_t *err);
static int fs_in_range(fs_input_t *in, json_t *v);
static char *fs_strdup_or_null(const char *s);
static char **fs_options_join(size_t n, char **opts, size_t *count,
    const char *kind, const char *name, const void *origin, fs_error_t *err);
static void fs_options_free(char **opts, size_t n);
static int fs_is_utf8(const char *s);
static char *fs_value_text(json_t *v);
static char *fs_value_quoted(json_t *v);


static const char *fs_type_names[] = {
    "", "string", "integer", "number", "boolean", "image", "video", "audio",
    "file"
};


const char *
fs_type_name(fs_type_e type)
{
    return fs_type_names[type];
}


fs_type_e
fs_type_parse(const char *name)
{
    size_t  i;

    for (i = 1; i < sizeof(fs_type_names) / sizeof(char *); i++) {
        if (strcmp(name, fs_type_names[i]) == 0) {
            return (fs_type_e) i;
        }
    }

    return FS_TYPE_NONE;
}


int
fs_type_is_file(fs_type_e type)
{
    return type >= FS_TYPE_IMAGE;
}


fs_type_e
fs_type_of_load_class(const char *class)
{
    static const struct {
        const char  *suffix;
        fs_type_e    type;
    } map[] = {
        { "Text", FS_TYPE_STRING }, { "String", FS_TYPE_STRING },
        { "Integer", FS_TYPE_INTEGER }, { "Int", FS_TYPE_INTEGER },
        { "Float", FS_TYPE_NUMBER }, { "Number", FS_TYPE_NUMBER },
        { "Boolean", FS_TYPE_BOOLEAN }, { "Image", FS_TYPE_IMAGE },
        { "Video", FS_TYPE_VIDEO }, { "Audio", FS_TYPE_AUDIO },
        { "File", FS_TYPE_FILE }
    };

    size_t  i;

    for (i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        if (strncmp(class + 6, map[i].suffix, strlen(map[i].suffix)) == 0) {
            return map[i].type;
        }
    }

    /* unknown kinds take the JSON type of their value */
    return FS_TYPE_NONE;
}


int
fs_is_identifier(const char *s)
{
    size_t  n;

    if (!(isalpha((unsigned char) *s) || *s == '_')) {
        return 0;
    }

    for (n = 0; s[n]; n++) {
        if (!(isalnum((unsigned char) s[n]) || s[n] == '_')) {
            return 0;
        }
    }

    return n <= FS_NAME_MAX;
}


/* "Input Image" -> "input_image"; empty or odd labels -> "input_12" */

void
fs_name_from_label(const char *label, const char *kind, const char *id,
    char *name, size_t size)
{
    size_t  n;
    int     sep;

    n = 0;
    sep = 0;

    for ( /* void */ ; label && *label && n + 1 < size; label++) {
        if (isalnum((unsigned char) *label)) {
            if (sep && n > 0) {
                name[n++] = '_';
                if (n + 1 >= size) {
                    break;
                }
            }

            name[n++] = (char) tolower((unsigned char) *label);
            sep = 0;

        } else {
            sep = 1;
        }
    }

    name[n] = '\0';

    if (n == 0 || !fs_is_identifier(name)) {
        snprintf(name, size, "%s_%s", kind, id);

        for (n = 0; name[n]; n++) {
            if (!isalnum((unsigned char) name[n])) {
                name[n] = '_';
            }
        }
    }
}


static char *
fs_strdup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}


void
fs_input_clear(fs_input_t *in)
{
    free(in->name);
    free(in->node);
    free(in->input);
    free(in->label);
    free(in->description);
    json_decref(in->default_value);
    json_decref(in->minimum);
    json_decref(in->maximum);
    json_decref(in->options);
    json_decref(in->default_raw);
    json_decref(in->minimum_raw);
    json_decref(in->maximum_raw);
    json_decref(in->options_raw);
    memset(in, 0, sizeof(fs_input_t));
}


static fs_input_t *
fs_input_add(fs_deployment_t *d, const char *name, const char *node,
    const char *input, const void *origin, fs_error_t *err)
{
    size_t       cap;
    fs_input_t  *in, *grown;

    if (!fs_is_identifier(name)) {
        fs_error(err, origin, "input name \"%s\" is not an identifier: use "
                 "letters, digits and \"_\", not starting with a digit, at "
                 "most %d characters", name, FS_NAME_MAX);
        return NULL;
    }

    if (*node == '\0' || *input == '\0') {
        fs_error(err, origin, "input \"%s\": the slot must be NODE.INPUT, "
                 "for example 6.text", name);
        return NULL;
    }

    if (d->ninputs == d->inputs_cap) {
        cap = d->inputs_cap ? 2 * d->inputs_cap : 8;
        grown = realloc(d->inputs, cap * sizeof(fs_input_t));
        if (grown == NULL) {
            fs_error(err, origin, "out of memory");
            return NULL;
        }

        d->inputs = grown;
        d->inputs_cap = cap;
    }

    in = &d->inputs[d->ninputs];
    memset(in, 0, sizeof(fs_input_t));

    in->name = strdup(name);
    in->node = strdup(node);
    in->input = strdup(input);
    in->origin = origin;

    if (in->name == NULL || in->node == NULL || in->input == NULL) {
        fs_input_clear(in);
        fs_error(err, origin, "out of memory");
        return NULL;
    }

    d->ninputs++;

    return in;
}


static fs_output_t *
fs_output_add(fs_deployment_t *d, const char *name, const char *node,
    const void *origin, fs_error_t *err)
{
    size_t        cap;
    fs_output_t  *out, *grown;

    if (!fs_is_identifier(name)) {
        fs_error(err, origin, "output name \"%s\" is not an identifier: use "
                 "letters, digits and \"_\", not starting with a digit, at "
                 "most %d characters", name, FS_NAME_MAX);
        return NULL;
    }

    if (*node == '\0') {
        fs_error(err, origin, "output \"%s\": no node id given", name);
        return NULL;
    }

    if (d->noutputs == d->outputs_cap) {
        cap = d->outputs_cap ? 2 * d->outputs_cap : 4;
        grown = realloc(d->outputs, cap * sizeof(fs_output_t));
        if (grown == NULL) {
            fs_error(err, origin, "out of memory");
            return NULL;
        }

        d->outputs = grown;
        d->outputs_cap = cap;
    }

    out = &d->outputs[d->noutputs];
    memset(out, 0, sizeof(fs_output_t));

    out->name = strdup(name);
    out->node = strdup(node);
    out->origin = origin;

    if (out->name == NULL || out->node == NULL) {
        free(out->name);
        free(out->node);
        fs_error(err, origin, "out of memory");
        return NULL;
    }

    d->noutputs++;

    return out;
}


int
fs_input_declare(fs_deployment_t *d, const char *name, const char *slot,
    size_t nopts, char **opts, const void *origin, fs_error_t *err)
{
    int          rc;
    char        *node, *dot;
    size_t       i;
    fs_input_t  *in;

    node = strdup(slot);
    if (node == NULL) {
        return -1;
    }

    /* node ids may hold "." in subgraphs ("12:3"), inputs never do */
    dot = strrchr(node, '.');

    if (dot == NULL) {
        fs_error(err, origin, "input \"%s\": \"%s\" is not NODE.INPUT, for "
                 "example 6.text", name, slot);
        free(node);
        return -1;
    }

    *dot = '\0';
    in = fs_input_add(d, name, node, dot + 1, origin, err);
    free(node);

    if (in == NULL) {
        return -1;
    }

    opts = fs_options_join(nopts, opts, &nopts, "input", name, origin, err);
    if (opts == NULL) {
        return -1;
    }

    rc = 0;

    for (i = 0; i < nopts && rc == 0; i++) {
        rc = fs_input_option(in, opts[i], err);
    }

    fs_options_free(opts, nopts);

    return rc;
}


/*
 * nginx splits label="Two words" into 'label="Two' and 'words"', and keeps
 * the quotes of label="Prompt": join such pieces and drop the quotes, so
 * the design's own examples read as meant.
 */

static char **
fs_options_join(size_t n, char **opts, size_t *count, const char *kind,
    const char *name, const void *origin, fs_error_t *err)
{
    char    **out, *eq, *joined, q;
    size_t    i, j, k, m, len;

    out = calloc(n + 1, sizeof(char *));
    if (out == NULL) {
        return NULL;
    }

    k = 0;

    for (i = 0; i < n; i++) {
        eq = strchr(opts[i], '=');

        if (eq == NULL || (eq[1] != '"' && eq[1] != '\'')) {
            out[k] = strdup(opts[i]);

            if (out[k++] == NULL) {
                fs_options_free(out, k);
                return NULL;
            }

            continue;
        }

        q = eq[1];

        /* find the piece that closes the quote */
        for (j = i; j < n; j++) {
            len = strlen(opts[j]);
            if (len > 0 && opts[j][len - 1] == q
                && (j > i || len > (size_t) (eq - opts[i]) + 2))
            {
                break;
            }
        }

        if (j == n) {
            fs_error(err, origin, "%s \"%s\": the quote in \"%s\" is not "
                     "closed", kind, name, opts[i]);
            fs_options_free(out, k);
            return NULL;
        }

        len = 0;
        for (m = i; m <= j; m++) {
            len += strlen(opts[m]) + 1;
        }

        joined = malloc(len);
        if (joined == NULL) {
            fs_options_free(out, k);
            return NULL;
        }

        /* key= then the pieces between the quotes, joined by spaces */
        len = eq - opts[i] + 1;
        memcpy(joined, opts[i], len);
        strcpy(joined + len, eq + 2);

        for (m = i + 1; m <= j; m++) {
            strcat(joined, " ");
            strcat(joined, opts[m]);
        }

        joined[strlen(joined) - 1] = '\0';
        out[k++] = joined;
        i = j;
    }

    /* labels and values end up in the JSON descriptor */
    for (i = 0; i < k; i++) {
        if (!fs_is_utf8(out[i])) {
            fs_error(err, origin, "%s \"%s\": \"%s\" is not valid UTF-8; "
                     "save the configuration as UTF-8", kind, name, out[i]);
            fs_options_free(out, k);
            return NULL;
        }
    }

    *count = k;

    return out;
}


/* what json_string() takes */

static int
fs_is_utf8(const char *s)
{
    json_t  *v;

    v = json_string(s);
    json_decref(v);

    return v != NULL;
}


static void
fs_options_free(char **opts, size_t n)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        free(opts[i]);
    }

    free(opts);
}


static int
fs_input_option(fs_input_t *in, const char *opt, fs_error_t *err)
{
    const char  *eq, *value;
    size_t       klen;
    json_t     **raw;

    if (strcmp(opt, "required") == 0) {
        in->required = 1;
        return 0;
    }

    eq = strchr(opt, '=');
    if (eq == NULL) {
        goto unknown;
    }

    klen = eq - opt;
    value = eq + 1;
    raw = NULL;

#define fs_key_is(k)  (klen == sizeof(k) - 1 && strncmp(opt, k, klen) == 0)

    if (fs_key_is("type")) {
        in->type = fs_type_parse(value);
        if (in->type == FS_TYPE_NONE) {
            fs_error(err, in->origin, "input \"%s\": unknown type \"%s\"; use "
                     "string, integer, number, boolean, image, video, audio "
                     "or file", in->name, value);
            return -1;
        }
        return 0;
    }

    if (fs_key_is("label")) {
        free(in->label);
        in->label = strdup(value);
        return 0;
    }

    if (fs_key_is("description")) {
        free(in->description);
        in->description = strdup(value);
        return 0;
    }

    if (fs_key_is("default")) {
        raw = &in->default_raw;

    } else if (fs_key_is("min")) {
        raw = &in->minimum_raw;

    } else if (fs_key_is("max")) {
        raw = &in->maximum_raw;

    } else if (fs_key_is("options")) {
        raw = &in->options_raw;
    }

#undef fs_key_is

    if (raw == NULL) {
        goto unknown;
    }

    if (*raw != NULL) {
        fs_error(err, in->origin, "input \"%s\": \"%.*s=\" is given twice",
                 in->name, (int) klen, opt);
        return -1;
    }

    *raw = json_string(value);

    return *raw ? 0 : -1;

unknown:

    fs_error(err, in->origin, "input \"%s\": unknown parameter \"%s\"; use "
             "type=, label=, description=, default=, min=, max=, options= or "
             "required", in->name, opt);
    return -1;
}


int
fs_output_declare(fs_deployment_t *d, const char *name, const char *node,
    size_t nopts, char **opts, const void *origin, fs_error_t *err)
{
    size_t        i;
    fs_output_t  *out;

    out = fs_output_add(d, name, node, origin, err);
    if (out == NULL) {
        return -1;
    }

    opts = fs_options_join(nopts, opts, &nopts, "output", name, origin, err);
    if (opts == NULL) {
        return -1;
    }

    for (i = 0; i < nopts; i++) {
        if (strncmp(opts[i], "label=", 6) == 0) {
            free(out->label);
            out->label = strdup(opts[i] + 6);
            continue;
        }

        fs_error(err, origin, "output \"%s\": unknown parameter \"%s\"; "
                 "use label=", name, opts[i]);
        fs_options_free(opts, nopts);
        return -1;
    }

    fs_options_free(opts, nopts);

    return 0;
}


int
fs_input_add_automatic(fs_deployment_t *d, const char *name,
    const char *node, const char *input, fs_type_e type, const char *label)
{
    fs_input_t  *in;

    in = fs_input_add(d, name, node, input, NULL, NULL);
    if (in == NULL) {
        return -1;
    }

    in->type = type;
    in->label = fs_strdup_or_null(label);
    in->automatic = 1;

    return 0;
}


int
fs_output_add_automatic(fs_deployment_t *d, const char *name,
    const char *node, const char *label)
{
    fs_output_t  *out;

    out = fs_output_add(d, name, node, NULL, NULL);
    if (out == NULL) {
        return -1;
    }

    out->label = fs_strdup_or_null(label);
    out->automatic = 1;

    return 0;
}


/*
 * flowscale_io FILE.json:
 *
 *   {"inputs":  [{"name": "prompt", "node": "6", "input": "text",
 *                 "label": "Prompt", "default": "a cat", ...}, ...],
 *    "outputs": [{"name": "result", "node": "9", "label": "Result"}]}
 *
 * Either list may also be an object keyed by name, and "node" may be
 * "6.text" for an input.
 */

int
fs_io_load(fs_deployment_t *d, const char *name, const char *text,
    size_t len, const void *origin, fs_error_t *err)
{
    int            rc;
    json_t        *io, *list, *spec;
    size_t         i;
    const char    *key;
    json_error_t   jerr;

    io = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);

    if (io == NULL) {
        fs_error(err, origin, "I/O file \"%s\" is not valid JSON (%s, line "
                 "%d, column %d)", name, jerr.text, jerr.line, jerr.column);
        return -1;
    }

    rc = -1;

    if (!json_is_object(io)) {
        fs_error(err, origin, "I/O file \"%s\" must be an object with "
                 "\"inputs\" and \"outputs\"", name);
        goto done;
    }

    json_object_foreach(io, key, list) {
        if (strcmp(key, "inputs") != 0 && strcmp(key, "outputs") != 0) {
            fs_error(err, origin, "I/O file \"%s\": unknown key \"%s\"; "
                     "use \"inputs\" and \"outputs\"", name, key);
            goto done;
        }

        if (!json_is_array(list) && !json_is_object(list)) {
            fs_error(err, origin, "I/O file \"%s\": \"%s\" must be a list "
                     "or an object keyed by name", name, key);
            goto done;
        }
    }

    list = json_object_get(io, "inputs");

    json_array_foreach(list, i, spec) {
        if (fs_io_input(d, NULL, spec, origin, err) != 0) {
            goto done;
        }
    }

    json_object_foreach(list, key, spec) {
        if (fs_io_input(d, key, spec, origin, err) != 0) {
            goto done;
        }
    }

    list = json_object_get(io, "outputs");

    json_array_foreach(list, i, spec) {
        if (fs_io_output(d, NULL, spec, origin, err) != 0) {
            goto done;
        }
    }

    json_object_foreach(list, key, spec) {
        if (fs_io_output(d, key, spec, origin, err) != 0) {
            goto done;
        }
    }

    rc = 0;

done:

    json_decref(io);
    return rc;
}


static int
fs_io_input(fs_deployment_t *d, const char *key, json_t *spec,
    const void *origin, fs_error_t *err)
{
    int          rc;
    char        *slot, *opt, *buf;
    json_t      *value;
    const char  *name, *node, *input, *k;

    if (!json_is_object(spec)) {
        fs_error(err, origin, "I/O file: each input must be an object");
        return -1;
    }

    name = key ? key : json_string_value(json_object_get(spec, "name"));
    node = json_string_value(json_object_get(spec, "node"));
    input = json_string_value(json_object_get(spec, "input"));

    if (name == NULL || node == NULL) {
        fs_error(err, origin, "I/O file: an input needs a \"name\" and a "
                 "\"node\" (and \"input\", or \"node\": \"NODE.INPUT\")");
        return -1;
    }

    slot = malloc(strlen(node) + (input ? strlen(input) : 0) + 2);
    if (slot == NULL) {
        return -1;
    }

    if (input) {
        sprintf(slot, "%s.%s", node, input);

    } else {
        strcpy(slot, node);
    }

    rc = fs_input_declare(d, name, slot, 0, NULL, origin, err);
    free(slot);

    if (rc != 0) {
        return -1;
    }

    /* the other keys go through the same parser as directive arguments */

    json_object_foreach(spec, k, value) {
        if (strcmp(k, "name") == 0 || strcmp(k, "node") == 0
            || strcmp(k, "input") == 0)
        {
            continue;
        }

        if (strcmp(k, "required") == 0) {
            d->inputs[d->ninputs - 1].required = json_is_true(value);
            continue;
        }

        opt = fs_value_text(value);
        if (opt == NULL) {
            return -1;
        }

        buf = malloc(strlen(k) + strlen(opt) + 2);
        if (buf == NULL) {
            free(opt);
            fs_error(err, origin, "out of memory");
            return -1;
        }

        sprintf(buf, "%s=%s", strcmp(k, "minimum") == 0 ? "min"
                : strcmp(k, "maximum") == 0 ? "max" : k, opt);
        rc = fs_input_option(&d->inputs[d->ninputs - 1], buf, err);

        free(buf);
        free(opt);

        if (rc != 0) {
            return -1;
        }

        /* keep typed JSON values typed: "default": 7 is an integer */
        if (!json_is_string(value) && !json_is_array(value)) {
            fs_input_t  *in = &d->inputs[d->ninputs - 1];
            json_t     **raw;

            raw = strcmp(k, "default") == 0 ? &in->default_raw
                  : (strcmp(k, "min") == 0 || strcmp(k, "minimum") == 0)
                    ? &in->minimum_raw
                  : (strcmp(k, "max") == 0 || strcmp(k, "maximum") == 0)
                    ? &in->maximum_raw : NULL;

            if (raw) {
                json_decref(*raw);
                *raw = json_incref(value);
            }
        }

        if (strcmp(k, "options") == 0 && json_is_array(value)) {
            fs_input_t  *in = &d->inputs[d->ninputs - 1];

            json_decref(in->options_raw);
            in->options_raw = json_incref(value);
        }
    }

    return 0;
}


/* a JSON value as directive text: strings as they are, others dumped */

static char *
fs_value_text(json_t *v)
{
    if (json_is_string(v)) {
        return strdup(json_string_value(v));
    }

    return json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
}


/* a value as messages show it: strings in quotes */

static char *
fs_value_quoted(json_t *v)
{
    return json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
}


static int
fs_io_output(fs_deployment_t *d, const char *key, json_t *spec,
    const void *origin, fs_error_t *err)
{
    const char   *name, *node, *label;
    fs_output_t  *out;

    if (!json_is_object(spec)) {
        fs_error(err, origin, "I/O file: each output must be an object");
        return -1;
    }

    name = key ? key : json_string_value(json_object_get(spec, "name"));
    node = json_string_value(json_object_get(spec, "node"));
    label = json_string_value(json_object_get(spec, "label"));

    if (name == NULL || node == NULL) {
        fs_error(err, origin, "I/O file: an output needs a \"name\" and a "
                 "\"node\"");
        return -1;
    }

    out = fs_output_add(d, name, node, origin, err);
    if (out == NULL) {
        return -1;
    }

    out->label = fs_strdup_or_null(label);

    return 0;
}


/*
 * Types an input from the workflow's value, then types and checks its
 * default, min, max and options.
 */

int
fs_input_type(fs_input_t *in, json_t *value, const char *class,
    fs_error_t *err)
{
    size_t   i;
    json_t  *option, *typed;
    char    *text;

    if (in->type == FS_TYPE_NONE) {
        in->type = json_is_string(value) ? FS_TYPE_STRING
                   : json_is_integer(value) ? FS_TYPE_INTEGER
                   : json_is_real(value) ? FS_TYPE_NUMBER
                   : json_is_boolean(value) ? FS_TYPE_BOOLEAN
                   : FS_TYPE_NONE;

        /*
         * ComfyUI's page saves 8.0 as 8: a fractional min, max, default or
         * option says the input is a number after all.
         */
        if (in->type == FS_TYPE_INTEGER && fs_has_fraction(in)) {
            in->type = FS_TYPE_NUMBER;
        }

        if (in->type == FS_TYPE_NONE) {
            text = fs_value_text(value);
            fs_error(err, in->origin, "input \"%s\": %s.%s (%s) holds %s, "
                     "which has no API type; give type=string, integer, "
                     "number, boolean or image", in->name, in->node,
                     in->input, class, text ? text : "a value");
            free(text);
            return -1;
        }

    } else if (!fs_type_fits(in->type, value)) {
        text = fs_value_text(value);
        fs_error(err, in->origin, "input \"%s\": type %s does not fit %s.%s "
                 "(%s), whose value in the workflow is %s; fix type= or the "
                 "NODE.INPUT", in->name, fs_type_name(in->type), in->node,
                 in->input, class, text ? text : "?");
        free(text);
        return -1;
    }

    if (in->default_raw && json_is_string(in->default_raw)
        && strcmp(json_string_value(in->default_raw), "random") == 0
        && in->type != FS_TYPE_STRING)
    {
        if (in->type != FS_TYPE_INTEGER) {
            fs_error(err, in->origin, "input \"%s\": default=random only "
                     "applies to integer inputs (seeds), and this one is %s",
                     in->name, fs_type_name(in->type));
            return -1;
        }

        in->random = 1;
    }

    if (in->required && (in->default_raw || in->random)) {
        fs_error(err, in->origin, "input \"%s\": \"required\" and "
                 "\"default=\" contradict each other; keep one", in->name);
        return -1;
    }

    if ((in->minimum_raw || in->maximum_raw)
        && in->type != FS_TYPE_INTEGER && in->type != FS_TYPE_NUMBER)
    {
        fs_error(err, in->origin, "input \"%s\": min= and max= only apply "
                 "to integer and number inputs, and this one is %s",
                 in->name, fs_type_name(in->type));
        return -1;
    }

    if (in->options_raw
        && (fs_type_is_file(in->type) || in->type == FS_TYPE_BOOLEAN))
    {
        fs_error(err, in->origin, "input \"%s\": options= only applies to "
                 "string, integer and number inputs, and this one is %s",
                 in->name, fs_type_name(in->type));
        return -1;
    }

    if (in->default_raw && !in->random) {
        in->default_value = fs_coerce(in, in->default_raw, "default", err);
        if (in->default_value == NULL) {
            return -1;
        }
    }

    if (in->minimum_raw) {
        in->minimum = fs_coerce(in, in->minimum_raw, "min", err);
        if (in->minimum == NULL) {
            return -1;
        }
    }

    if (in->maximum_raw) {
        in->maximum = fs_coerce(in, in->maximum_raw, "max", err);
        if (in->maximum == NULL) {
            return -1;
        }
    }

    if (in->minimum && in->maximum
        && json_number_value(in->minimum) > json_number_value(in->maximum))
    {
        fs_error(err, in->origin, "input \"%s\": min=%g is above max=%g",
                 in->name, json_number_value(in->minimum),
                 json_number_value(in->maximum));
        return -1;
    }

    if (in->options_raw) {
        in->options = json_array();

        if (json_is_array(in->options_raw)) {
            if (json_array_size(in->options_raw) == 0) {
                fs_error(err, in->origin, "input \"%s\": options= has no "
                         "item; list the allowed values", in->name);
                return -1;
            }

            json_array_foreach(in->options_raw, i, option) {
                typed = fs_coerce(in, option, "options", err);
                if (typed == NULL) {
                    return -1;
                }
                json_array_append_new(in->options, typed);
            }

        } else {
            char  *list, *item, *save;

            list = strdup(json_string_value(in->options_raw));
            if (list == NULL) {
                return -1;
            }

            /* strsep keeps empty items, so "a||b" is caught below */
            save = list;
            while ((item = strsep(&save, "|")) != NULL) {
                json_t  *s = json_string(item);

                typed = s ? fs_coerce(in, s, "options", err) : NULL;
                json_decref(s);

                if (typed == NULL) {
                    free(list);
                    return -1;
                }

                json_array_append_new(in->options, typed);
            }

            free(list);
        }
    }

    return fs_input_check_range(in, err);
}


static int
fs_has_fraction(fs_input_t *in)
{
    size_t   i;
    json_t  *v;
    char    *list, *item, *save;
    int      found;

    if (fs_is_fraction(in->default_raw) || fs_is_fraction(in->minimum_raw)
        || fs_is_fraction(in->maximum_raw))
    {
        return 1;
    }

    json_array_foreach(in->options_raw, i, v) {
        if (fs_is_fraction(v)) {
            return 1;
        }
    }

    if (!json_is_string(in->options_raw)) {
        return 0;
    }

    list = strdup(json_string_value(in->options_raw));
    if (list == NULL) {
        return 0;
    }

    found = 0;
    save = list;

    while (!found && (item = strsep(&save, "|")) != NULL) {
        v = json_string(item);
        found = fs_is_fraction(v);
        json_decref(v);
    }

    free(list);

    return found;
}


/* 0.5, "0.5", "1e-3": a number that is not whole */

static int
fs_is_fraction(json_t *raw)
{
    char        *end;
    double       x;
    const char  *s;

    if (json_is_real(raw)) {
        x = json_real_value(raw);
        return x != floor(x);
    }

    if (!json_is_string(raw)) {
        return 0;
    }

    s = json_string_value(raw);
    x = strtod(s, &end);

    return end != s && *end == '\0' && isfinite(x) && x != floor(x);
}


static int
fs_type_fits(fs_type_e type, json_t *value)
{
    switch (type) {

    case FS_TYPE_STRING:
        return json_is_string(value);

    case FS_TYPE_INTEGER:
        return json_is_integer(value)
               || (json_is_real(value)
                   && json_real_value(value) == floor(json_real_value(value))
                   && json_real_value(value) >= -9223372036854775808.0
                   && json_real_value(value) < 9223372036854775808.0);

    case FS_TYPE_NUMBER:
        return json_is_number(value);

    case FS_TYPE_BOOLEAN:
        return json_is_boolean(value);

    default:
        /* a file name the node loads */
        return json_is_string(value);
    }
}


static json_t *
fs_coerce(fs_input_t *in, json_t *raw, const char *what, fs_error_t *err)
{
    const char  *s, *type;
    char        *end;
    long long    n;
    double       x;

    type = fs_type_name(in->type);

    if (!json_is_string(raw)) {
        if (fs_type_fits(in->type, raw) && !fs_type_is_file(in->type)) {
            /*
             * numbers are reals, so 1 and 1.0 are the same option; an
             * integer is kept as it is, not through a double: seeds use
             * all 64 bits
             */
            return in->type == FS_TYPE_NUMBER
                   ? json_real(json_number_value(raw))
                   : json_is_real(raw)
                   ? json_integer((json_int_t) json_real_value(raw))
                   : json_deep_copy(raw);
        }

        goto bad;
    }

    s = json_string_value(raw);

    switch (in->type) {

    case FS_TYPE_STRING:
        return json_string(s);

    case FS_TYPE_INTEGER:
        errno = 0;
        n = strtoll(s, &end, 10);

        if (*s == '\0' || *end != '\0' || errno != 0
            || isspace((unsigned char) *s))
        {
            goto bad;
        }

        return json_integer(n);

    case FS_TYPE_NUMBER:
        errno = 0;
        x = strtod(s, &end);

        if (*s == '\0' || *end != '\0' || errno != 0 || !isfinite(x)
            || isspace((unsigned char) *s))
        {
            goto bad;
        }

        return json_real(x);

    case FS_TYPE_BOOLEAN:
        if (strcmp(s, "true") == 0) {
            return json_true();
        }

        if (strcmp(s, "false") == 0) {
            return json_false();
        }

        goto bad;

    default:
        if (strcmp(what, "default") == 0) {
            return json_string(s);
        }

        goto bad;
    }

bad:

    s = json_is_string(raw) ? json_string_value(raw) : "(not a string)";

    fs_error(err, in->origin, "input \"%s\": %s=%s%s%s does not fit its type "
             "%s%s", in->name, what,
             json_is_string(raw) ? "\"" : "", s,
             json_is_string(raw) ? "\"" : "", type,
             in->type == FS_TYPE_BOOLEAN ? "; use true or false"
             : in->type == FS_TYPE_INTEGER ? "; use a whole number"
             : in->type == FS_TYPE_NUMBER ? "; use a number" : "");
    return NULL;
}


static int
fs_in_range(fs_input_t *in, json_t *v)
{
    if (!json_is_number(v)) {
        return 1;
    }

    return !(in->minimum && json_number_value(v)
                            < json_number_value(in->minimum))
           && !(in->maximum && json_number_value(v)
                               > json_number_value(in->maximum));
}


static int
fs_input_check_range(fs_input_t *in, fs_error_t *err)
{
    size_t   i, j;
    json_t  *option;
    char    *text;

    if (in->default_value && !fs_in_range(in, in->default_value)) {
        text = fs_value_quoted(in->default_value);
        fs_error(err, in->origin, "input \"%s\": default=%s is outside "
                 "min..max", in->name, text ? text : "");
        free(text);
        return -1;
    }

    if (in->options == NULL) {
        return 0;
    }

    json_array_foreach(in->options, i, option) {
        text = fs_value_quoted(option);

        if (json_is_string(option) && json_string_length(option) == 0) {
            fs_error(err, in->origin, "input \"%s\": options= has an empty "
                     "item; separate options with a single \"|\"", in->name);
            free(text);
            return -1;
        }

        if (!fs_in_range(in, option)) {
            fs_error(err, in->origin, "input \"%s\": option %s is outside "
                     "min..max", in->name, text ? text : "");
            free(text);
            return -1;
        }

        for (j = 0; j < i; j++) {
            if (json_equal(option, json_array_get(in->options, j))) {
                fs_error(err, in->origin, "input \"%s\": option %s is "
                         "listed twice", in->name, text ? text : "");
                free(text);
                return -1;
            }
        }

        free(text);
    }

    if (in->default_value) {
        json_array_foreach(in->options, i, option) {
            if (json_equal(option, in->default_value)) {
                return 0;
            }
        }

        text = fs_value_quoted(in->default_value);
        fs_error(err, in->origin, "input \"%s\": default=%s is not one of "
                 "options=", in->name, text ? text : "");
        free(text);
        return -1;
    }

    return 0;
}


/*
 * The JSON Schema of one input, as GET L and the OpenAPI document show it.
 * An optional input's default is the value the workflow already holds.
 */

json_t *
fs_input_schema_with(const fs_input_t *in, json_t *current)
{
    json_t      *s;
    const char  *media;

    s = json_object();

    if (fs_type_is_file(in->type)) {
        media = in->type == FS_TYPE_IMAGE ? "image/*"
                : in->type == FS_TYPE_VIDEO ? "video/*"
                : in->type == FS_TYPE_AUDIO ? "audio/*"
                : "application/octet-stream";

        json_object_set_new(s, "type", json_string("string"));
        json_object_set_new(s, "contentEncoding", json_string("base64"));
        json_object_set_new(s, "contentMediaType", json_string(media));

    } else {
        json_object_set_new(s, "type", json_string(fs_type_name(in->type)));
    }

    json_object_set_new(s, "title",
                        json_string(in->label ? in->label : in->name));

    if (in->description) {
        json_object_set_new(s, "description", json_string(in->description));

    } else if (fs_type_is_file(in->type)) {
        json_object_set_new(s, "description", json_string(
            "A file part in multipart/form-data, or a data: URL or base64 "
            "string in JSON"));

    } else if (in->random) {
        json_object_set_new(s, "description",
                            json_string("Drawn at random for each run when "
                                        "not given"));
    }

    if (in->default_value) {
        json_object_set(s, "default", in->default_value);

    } else if (!in->random && !in->required && current
               && !fs_type_is_file(in->type))
    {
        json_object_set(s, "default", current);
    }

    if (in->minimum) {
        json_object_set(s, "minimum", in->minimum);
    }

    if (in->maximum) {
        json_object_set(s, "maximum", in->maximum);
    }

    if (in->options) {
        json_object_set(s, "enum", in->options);
    }

    return s;
}


json_t *
fs_input_schema(const fs_input_t *in)
{
    return fs_input_schema_with(in, NULL);
}


json_t *
fs_deployment_describe(const fs_deployment_t *d, const char *name,
    const char *location, const char *state)
{
    size_t              i;
    json_t             *desc, *inputs, *outputs, *props, *required, *item;
    json_t             *schema, *current, *links;
    const fs_input_t   *in;
    const fs_output_t  *out;
    char                url[1024];

    inputs = json_array();
    outputs = json_array();
    props = json_object();
    required = json_array();

    for (i = 0; i < d->ninputs; i++) {
        in = &d->inputs[i];
        current = json_object_get(json_object_get(json_object_get(
                      d->workflow, in->node), "inputs"), in->input);

        schema = fs_input_schema_with(in, current);
        json_object_set(props, in->name, schema);

        if (in->required) {
            json_array_append_new(required, json_string(in->name));
        }

        item = json_pack("{s:s, s:s, s:s, s:b, s:o}",
                         "name", in->name,
                         "label", in->label ? in->label : in->name,
                         "type", fs_type_name(in->type),
                         "required", (int) in->required,
                         "schema", schema);

        if (in->description) {
            json_object_set_new(item, "description",
                                json_string(in->description));
        }

        json_array_append_new(inputs, item);
    }

    for (i = 0; i < d->noutputs; i++) {
        out = &d->outputs[i];
        json_array_append_new(outputs, json_pack("{s:s, s:s}",
                              "name", out->name,
                              "label", out->label ? out->label : out->name));
    }

    links = json_object();
    snprintf(url, sizeof(url), "%s", location);
    json_object_set_new(links, "self", json_string(url));
    snprintf(url, sizeof(url), "%s/runs", location);
    json_object_set_new(links, "runs", json_string(url));
    snprintf(url, sizeof(url), "%s/openapi.json", location);
    json_object_set_new(links, "openapi", json_string(url));

    desc = json_pack("{s:s, s:s, s:s, s:o, s:o, s:{s:s, s:o, s:o, s:b}, "
                     "s:o}",
                     "name", name,
                     "version", d->version,
                     "state", state,
                     "inputs", inputs,
                     "outputs", outputs,
                     "input_schema",
                         "type", "object",
                         "properties", props,
                         "required", required,
                         "additionalProperties", 0,
                     "links", links);

    return desc;
}
