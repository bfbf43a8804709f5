
/*
 * Unit tests of the pure C workflow layer: loading API-format workflows,
 * declaring inputs and outputs (directives and flowscale_io), the deploy
 * check of design.md section 4 and the GET L descriptor.
 *
 * Built and run by "make unit" from inside t/unit, so files under
 * ../../conf/workflows can be read.
 */


#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ctype.h>
#include <cmocka.h>

#include "ngx_http_flowscale_workflow.h"
#include "ngx_http_flowscale_io.h"


/* a text-to-image graph with a few extra value kinds */
static const char WF[] =
    "{\"3\": {\"class_type\": \"KSampler\", \"inputs\": {"
    "    \"seed\": 42, \"steps\": 20, \"cfg\": 7.5, \"denoise\": 1,"
    "    \"sampler_name\": \"euler\", \"model\": [\"4\", 0],"
    "    \"positive\": [\"6\", 0], \"latent_image\": [\"5\", 0]}},"
    " \"4\": {\"class_type\": \"CheckpointLoaderSimple\","
    "    \"inputs\": {\"ckpt_name\": \"sd15.safetensors\"}},"
    " \"5\": {\"class_type\": \"EmptyLatentImage\","
    "    \"inputs\": {\"width\": 512, \"height\": 512, \"batch_size\": 1}},"
    " \"6\": {\"class_type\": \"CLIPTextEncode\","
    "    \"inputs\": {\"text\": \"a cat\", \"clip\": [\"4\", 1]}},"
    " \"8\": {\"class_type\": \"VAEDecode\","
    "    \"inputs\": {\"samples\": [\"3\", 0], \"vae\": [\"4\", 2]}},"
    " \"9\": {\"class_type\": \"SaveImage\","
    "    \"inputs\": {\"filename_prefix\": \"ComfyUI\","
    "                \"images\": [\"8\", 0]}},"
    " \"10\": {\"class_type\": \"LoadImage\","
    "    \"inputs\": {\"image\": \"example.png\"}},"
    " \"11\": {\"class_type\": \"PrimitiveBoolean\","
    "    \"inputs\": {\"value\": true}},"
    " \"12\": {\"class_type\": \"PrimitiveAny\","
    "    \"inputs\": {\"value\": null, \"obj\": {\"a\": 1}, \"whole\": 2.0,"
    "                \"half\": 2.5}}}";


/* FlowScale's own I/O nodes; ids 10 and 2 sort differently as strings */
static const char WF_FS[] =
    "{\"10\": {\"class_type\": \"FSLoadText\","
    "    \"inputs\": {\"default_value\": \"a red fox\","
    "                \"label\": \"Input Text\"}},"
    " \"2\": {\"class_type\": \"FSLoadInteger\","
    "    \"inputs\": {\"default_value\": 64, \"label\": \"Image Size\"}},"
    " \"3\": {\"class_type\": \"EmptyImage\","
    "    \"inputs\": {\"width\": [\"2\", 0], \"height\": [\"2\", 0],"
    "                \"batch_size\": 1, \"color\": 0}},"
    " \"4\": {\"class_type\": \"FSSaveImage\","
    "    \"inputs\": {\"images\": [\"3\", 0], \"label\": \"Picture\"}},"
    " \"5\": {\"class_type\": \"FSSaveText\","
    "    \"inputs\": {\"text\": [\"10\", 0]}},"
    " \"7\": {\"class_type\": \"FSLoadImage\","
    "    \"inputs\": {\"image\": \"in.png\", \"label\": \"3D Source!\"}}}";


static const int  origin_a, origin_b, origin_io;

#define ORIGIN_A  ((const void *) &origin_a)
#define ORIGIN_B  ((const void *) &origin_b)
#define ORIGIN_IO ((const void *) &origin_io)


#define assert_msg(err, needle)                                               \
    do {                                                                      \
        if (strstr((err)->msg, (needle)) == NULL) {                           \
            fail_msg("message \"%s\"\n    lacks \"%s\"", (err)->msg,         \
                     (needle));                                               \
        }                                                                     \
    } while (0)


enum { OK = 0, AT_DECLARE = 1, AT_CHECK = 2, AT_LOAD = 3 };


static fs_deployment_t *
wf_new(const char *json)
{
    fs_error_t        err;
    fs_deployment_t  *d;

    d = fs_deployment_new();
    assert_non_null(d);

    memset(&err, 0, sizeof(err));
    if (fs_workflow_load(d, "wf.json", json, strlen(json), &err) != 0) {
        fail_msg("workflow did not load: %s", err.msg);
    }

    return d;
}


/* the words of a directive as nginx splits them: on spaces, quotes kept */

static size_t
split(const char *opts, char *buf, size_t size, char **words)
{
    size_t  n;
    char   *p;

    n = 0;
    snprintf(buf, size, "%s", opts ? opts : "");

    for (p = strtok(buf, " "); p; p = strtok(NULL, " ")) {
        words[n++] = p;
    }

    return n;
}


static int
input(fs_deployment_t *d, const char *name, const char *slot,
    const char *opts, const void *origin, fs_error_t *err)
{
    char    buf[1024], *words[32];
    size_t  n;

    n = split(opts, buf, sizeof(buf), words);
    return fs_input_declare(d, name, slot, n, words, origin, err);
}


static int
output(fs_deployment_t *d, const char *name, const char *node,
    const char *opts, const void *origin, fs_error_t *err)
{
    char    buf[1024], *words[32];
    size_t  n;

    n = split(opts, buf, sizeof(buf), words);
    return fs_output_declare(d, name, node, n, words, origin, err);
}


/* one input on WF with output "result" 9: where it fails, if it does */

static int
one_input(const char *name, const char *slot, const char *opts,
    fs_error_t *err)
{
    int               rc;
    fs_deployment_t  *d;

    d = wf_new(WF);
    memset(err, 0, sizeof(*err));

    if (input(d, name, slot, opts, ORIGIN_A, err) != 0) {
        rc = AT_DECLARE;

    } else {
        assert_int_equal(output(d, "result", "9", NULL, ORIGIN_B, err), 0);
        rc = fs_deployment_check(d, err) == 0 ? OK : AT_CHECK;
    }

    if (rc != OK) {
        assert_true(strlen(err->msg) > 0);
        assert_ptr_equal(err->origin, ORIGIN_A);
    }

    fs_deployment_free(d);

    return rc;
}


static int
load(const char *json, fs_error_t *err)
{
    int               rc;
    fs_deployment_t  *d;

    d = fs_deployment_new();
    memset(err, 0, sizeof(*err));
    rc = fs_workflow_load(d, "wf.json", json, strlen(json), err);
    if (rc != 0) {
        /* a refused workflow is not kept */
        assert_null(d->workflow);
        assert_true(strlen(err->msg) > 0);
    }

    fs_deployment_free(d);

    return rc == 0 ? OK : AT_LOAD;
}


static json_t *
describe(fs_deployment_t *d)
{
    json_t  *desc;

    desc = fs_deployment_describe(d, "txt2img", "/v1/txt2img", "ready");
    assert_non_null(desc);

    return desc;
}


/* the schema of input NAME in a descriptor, checked against its list */

static json_t *
schema_of(json_t *desc, const char *name)
{
    json_t  *s;

    s = json_object_get(json_object_get(json_object_get(desc,
                        "input_schema"), "properties"), name);
    if (s == NULL) {
        fail_msg("no schema for input \"%s\"", name);
    }

    return s;
}


static const char *
input_name(json_t *desc, size_t i)
{
    return json_string_value(json_object_get(
               json_array_get(json_object_get(desc, "inputs"), i), "name"));
}


static char *
read_fixture(const char *path, size_t *len)
{
    FILE  *f;
    char  *buf;
    long   n;

    f = fopen(path, "rb");
    if (f == NULL) {
        fail_msg("cannot open %s (run from t/unit)", path);
    }

    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);

    buf = malloc(n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, n, f), (size_t) n);
    buf[n] = '\0';
    fclose(f);

    *len = n;
    return buf;
}


/* --- the workflow itself ------------------------------------------------ */


static void
test_not_json(void **state)
{
    fs_error_t  err;

    (void) state;

    assert_int_equal(load("{\"3\": {", &err), AT_LOAD);
    assert_msg(&err, "workflow \"wf.json\" is not valid JSON");
    assert_msg(&err, "line 1");
    assert_msg(&err, "\"Save (API Format)\"");

    assert_int_equal(load("", &err), AT_LOAD);
    assert_msg(&err, "is not valid JSON");

    /* a duplicate node id is not silently dropped */
    assert_int_equal(load("{\"1\": {\"class_type\": \"A\", \"inputs\": {}},"
                          " \"1\": {\"class_type\": \"B\", \"inputs\": {}}}",
                          &err), AT_LOAD);
    assert_msg(&err, "is not valid JSON");
}


static void
test_ui_format(void **state)
{
    fs_error_t  err;

    (void) state;

    assert_int_equal(load("{\"nodes\": [], \"links\": []}", &err), AT_LOAD);
    assert_msg(&err, "workflow \"wf.json\" is in ComfyUI's UI format");
    assert_msg(&err, "export it with \"Save (API Format)\" instead");

    assert_int_equal(load("{\"last_node_id\": 9, \"nodes\": [{\"id\": 1}],"
                          " \"links\": [[1, 1, 0, 2, 0, \"MODEL\"]]}", &err),
                     AT_LOAD);
    assert_msg(&err, "UI format");
}


static void
test_not_object(void **state)
{
    fs_error_t  err;

    (void) state;

    assert_int_equal(load("[{\"class_type\": \"A\"}]", &err), AT_LOAD);
    assert_msg(&err, "its top level is not an object of nodes");
    assert_msg(&err, "Save (API Format)");

    assert_int_equal(load("{\"1\": 5}", &err), AT_LOAD);
    assert_msg(&err, "node \"1\" is not an object");

    assert_int_equal(load("{}", &err), AT_LOAD);
    assert_msg(&err, "workflow \"wf.json\" has no nodes");
}


static void
test_no_class_type(void **state)
{
    fs_error_t  err;

    (void) state;

    assert_int_equal(load("{\"7\": {\"inputs\": {}}}", &err), AT_LOAD);
    assert_msg(&err, "workflow \"wf.json\": node \"7\" has no "
                     "\"class_type\"");
    assert_msg(&err, "Save (API Format)");

    assert_int_equal(load("{\"7\": {\"class_type\": \"\", \"inputs\": {}}}",
                          &err), AT_LOAD);
    assert_msg(&err, "node \"7\" has no \"class_type\"");

    assert_int_equal(load("{\"7\": {\"class_type\": \"SaveImage\"}}", &err),
                     AT_LOAD);
    assert_msg(&err, "node \"7\" (SaveImage) has no \"inputs\" object");
}


static void
test_link_to_missing_node(void **state)
{
    fs_error_t  err;

    (void) state;

    assert_int_equal(load("{\"9\": {\"class_type\": \"SaveImage\","
                          " \"inputs\": {\"images\": [\"8\", 0]}}}", &err),
                     AT_LOAD);
    assert_msg(&err, "node \"9\" (SaveImage) input \"images\" links to node "
                     "\"8\", which is not in the workflow");

    /* links may point forwards */
    assert_int_equal(load("{\"9\": {\"class_type\": \"SaveImage\","
                          " \"inputs\": {\"images\": [\"10\", 0]}},"
                          " \"10\": {\"class_type\": \"EmptyImage\","
                          " \"inputs\": {}}}", &err), OK);
}


static void
test_no_workflow(void **state)
{
    fs_error_t        err;
    fs_deployment_t  *d;

    (void) state;

    d = fs_deployment_new();
    assert_int_equal(fs_deployment_check(d, &err), -1);
    assert_msg(&err, "no workflow");
    fs_deployment_free(d);
}


/* --- inputs that do not fit the workflow -------------------------------- */


static void
test_unknown_node(void **state)
{
    fs_error_t  err;

    (void) state;

    assert_int_equal(one_input("prompt", "99.text", NULL, &err), AT_CHECK);
    assert_msg(&err, "input \"prompt\": workflow \"wf.json\" has no node "
                     "\"99\"");
    /* node ids listed in numeric order */
    assert_msg(&err, "(its nodes: 3, 4, 5, 6, 8, 9, 10, 11, 12)");
}


static void
test_unknown_input(void **state)
{
    fs_error_t  err;

    (void) state;

    assert_int_equal(one_input("prompt", "6.txt", NULL, &err), AT_CHECK);
    assert_msg(&err, "input \"prompt\": node \"6\" (CLIPTextEncode) of "
                     "workflow \"wf.json\" has no input \"txt\"");
    assert_msg(&err, "(its inputs: clip, text)");
}


static void
test_input_is_link(void **state)
{
    fs_error_t  err;

    (void) state;

    assert_int_equal(one_input("clip", "6.clip", NULL, &err), AT_CHECK);
    assert_msg(&err, "input \"clip\": 6.clip (CLIPTextEncode) is a link "
                     "from node \"4\", not a value");
}


static void
test_bad_slot(void **state)
{
    fs_error_t  err;

    (void) state;

    assert_int_equal(one_input("prompt", "6", NULL, &err), AT_DECLARE);
    assert_msg(&err, "\"6\" is not NODE.INPUT, for example 6.text");

    assert_int_equal(one_input("prompt", "6.", NULL, &err), AT_DECLARE);
    assert_msg(&err, "the slot must be NODE.INPUT");

    assert_int_equal(one_input("prompt", ".text", NULL, &err), AT_DECLARE);
    assert_msg(&err, "the slot must be NODE.INPUT");
}


static void
test_type_does_not_fit(void **state)
{
    fs_error_t  err;

    (void) state;

    assert_int_equal(one_input("prompt", "6.text", "type=integer", &err),
                     AT_CHECK);
    assert_msg(&err, "input \"prompt\": type integer does not fit 6.text "
                     "(CLIPTextEncode), whose value in the workflow is a cat");

    assert_int_equal(one_input("steps", "3.steps", "type=boolean", &err),
                     AT_CHECK);
    assert_msg(&err, "type boolean does not fit 3.steps");

    assert_int_equal(one_input("image", "3.steps", "type=image", &err),
                     AT_CHECK);
    assert_msg(&err, "type image does not fit 3.steps");

    assert_int_equal(one_input("half", "12.half", "type=integer", &err),
                     AT_CHECK);
    assert_msg(&err, "type integer does not fit 12.half");

    /* a whole real is an integer, and an image is a file name */
    assert_int_equal(one_input("whole", "12.whole", "type=integer", &err),
                     OK);
    assert_int_equal(one_input("image", "10.image", "type=image", &err), OK);
}


static void
test_default_does_not_fit(void **state)
{
    fs_error_t  err;

    (void) state;

    assert_int_equal(one_input("steps", "3.steps", "default=abc", &err),
                     AT_CHECK);
    assert_msg(&err, "input \"steps\": default=\"abc\" does not fit its "
                     "type integer; use a whole number");

    /* ComfyUI saves 8.0 as 8: a fractional default makes it a number */
    assert_int_equal(one_input("steps", "3.steps", "default=2.5", &err),
                     OK);
    assert_int_equal(one_input("steps", "3.steps",
                               "type=integer default=2.5", &err), AT_CHECK);
    assert_msg(&err, "default=\"2.5\" does not fit its type integer");

    assert_int_equal(one_input("steps", "3.steps", "default=", &err),
                     AT_CHECK);
    assert_msg(&err, "default=\"\" does not fit its type integer");

    assert_int_equal(one_input("steps", "3.steps",
                               "default=99999999999999999999", &err),
                     AT_CHECK);
    assert_msg(&err, "does not fit its type integer");

    assert_int_equal(one_input("cfg", "3.cfg", "default=high", &err),
                     AT_CHECK);
    assert_msg(&err, "default=\"high\" does not fit its type number; use a "
                     "number");

    assert_int_equal(one_input("cfg", "3.cfg", "default=inf", &err),
                     AT_CHECK);
    assert_msg(&err, "does not fit its type number");

    assert_int_equal(one_input("flag", "11.value", "default=yes", &err),
                     AT_CHECK);
    assert_msg(&err, "default=\"yes\" does not fit its type boolean; use "
                     "true or false");

    assert_int_equal(one_input("flag", "11.value", "default=false", &err),
                     OK);
    assert_int_equal(one_input("cfg", "3.cfg", "default=-1.5e1", &err), OK);
}


static void
test_default_random(void **state)
{
    fs_error_t  err;

    (void) state;

    assert_int_equal(one_input("cfg", "3.cfg", "default=random", &err),
                     AT_CHECK);
    assert_msg(&err, "input \"cfg\": default=random only applies to integer "
                     "inputs (seeds), and this one is number");

    assert_int_equal(one_input("flag", "11.value", "default=random", &err),
                     AT_CHECK);
    assert_msg(&err, "and this one is boolean");

    assert_int_equal(one_input("image", "10.image",
                               "type=image default=random", &err), AT_CHECK);
    assert_msg(&err, "and this one is image");

    /* a seed, and a string whose default is the word "random" */
    assert_int_equal(one_input("seed", "3.seed", "default=random", &err), OK);
    assert_int_equal(one_input("prompt", "6.text", "default=random", &err),
                     OK);
}


static void
test_min_above_max(void **state)
{
    fs_error_t  err;

    (void) state;

    assert_int_equal(one_input("steps", "3.steps", "min=50 max=1", &err),
                     AT_CHECK);
    assert_msg(&err, "input \"steps\": min=50 is above max=1");

    assert_int_equal(one_input("steps", "3.steps", "min=5 max=5", &err), OK);

    assert_int_equal(one_input("steps", "3.steps", "min=one", &err),
                     AT_CHECK);
    assert_msg(&err, "min=\"one\" does not fit its type integer");
}


static void
test_default_outside_range(void **state)
{
    fs_error_t  err;

    (void) state;

    assert_int_equal(one_input("steps", "3.steps",
                               "min=1 max=50 default=51", &err), AT_CHECK);
    assert_msg(&err, "input \"steps\": default=51 is outside min..max");

    assert_int_equal(one_input("cfg", "3.cfg", "min=1 default=0.5", &err),
                     AT_CHECK);
    assert_msg(&err, "default=0.5 is outside min..max");

    assert_int_equal(one_input("steps", "3.steps",
                               "min=1 max=50 options=10|60", &err), AT_CHECK);
    assert_msg(&err, "option 60 is outside min..max");

    assert_int_equal(one_input("steps", "3.steps",
                               "min=1 max=50 default=50", &err), OK);
}


static void
test_options(void **state)
{
    fs_error_t  err;

    (void) state;

    assert_int_equal(one_input("sampler", "3.sampler_name",
                               "options=euler|ddim default=heun", &err),
                     AT_CHECK);
    assert_msg(&err, "input \"sampler\": default=\"heun\" is not one of "
                     "options=");

    assert_int_equal(one_input("sampler", "3.sampler_name",
                               "options=euler|ddim|euler", &err), AT_CHECK);
    assert_msg(&err, "input \"sampler\": option \"euler\" is listed twice");

    /* typed before they are compared */
    assert_int_equal(one_input("steps", "3.steps", "options=10|010", &err),
                     AT_CHECK);
    assert_msg(&err, "option 10 is listed twice");

    assert_int_equal(one_input("sampler", "3.sampler_name",
                               "options=a||b", &err), AT_CHECK);
    assert_msg(&err, "input \"sampler\": options= has an empty item; "
                     "separate options with a single \"|\"");

    assert_int_equal(one_input("sampler", "3.sampler_name", "options=a|",
                               &err), AT_CHECK);
    assert_msg(&err, "options= has an empty item");

    assert_int_equal(one_input("steps", "3.steps", "options=10|x", &err),
                     AT_CHECK);
    assert_msg(&err, "options=\"x\" does not fit its type integer");

    assert_int_equal(one_input("sampler", "3.sampler_name",
                               "options=euler|ddim default=ddim", &err), OK);
}


static void
test_min_max_on_string(void **state)
{
    fs_error_t  err;

    (void) state;

    assert_int_equal(one_input("prompt", "6.text", "min=1", &err), AT_CHECK);
    assert_msg(&err, "input \"prompt\": min= and max= only apply to integer "
                     "and number inputs, and this one is string");

    assert_int_equal(one_input("flag", "11.value", "max=1", &err), AT_CHECK);
    assert_msg(&err, "and this one is boolean");
}


static void
test_options_on_boolean_and_image(void **state)
{
    fs_error_t  err;

    (void) state;

    assert_int_equal(one_input("flag", "11.value", "options=true|false",
                               &err), AT_CHECK);
    assert_msg(&err, "input \"flag\": options= only applies to string, "
                     "integer and number inputs, and this one is boolean");

    assert_int_equal(one_input("image", "10.image", "type=image options=a|b",
                               &err), AT_CHECK);
    assert_msg(&err, "and this one is image");
}


static void
test_unknown_parameter(void **state)
{
    fs_error_t  err;

    (void) state;

    assert_int_equal(one_input("prompt", "6.text", "colour=red", &err),
                     AT_DECLARE);
    assert_msg(&err, "input \"prompt\": unknown parameter \"colour=red\"; "
                     "use type=, label=, description=, default=, min=, "
                     "max=, options= or required");

    assert_int_equal(one_input("prompt", "6.text", "optional", &err),
                     AT_DECLARE);
    assert_msg(&err, "unknown parameter \"optional\"");

    assert_int_equal(one_input("steps", "3.steps", "min=1 min=2", &err),
                     AT_DECLARE);
    assert_msg(&err, "input \"steps\": \"min=\" is given twice");
}


static void
test_unknown_type(void **state)
{
    fs_error_t  err;

    (void) state;

    assert_int_equal(one_input("prompt", "6.text", "type=text", &err),
                     AT_DECLARE);
    assert_msg(&err, "input \"prompt\": unknown type \"text\"; use string, "
                     "integer, number, boolean, image, video, audio or file");
}


static void
test_required_with_default(void **state)
{
    fs_error_t  err;

    (void) state;

    assert_int_equal(one_input("steps", "3.steps", "required default=5",
                               &err), AT_CHECK);
    assert_msg(&err, "input \"steps\": \"required\" and \"default=\" "
                     "contradict each other; keep one");

    assert_int_equal(one_input("seed", "3.seed", "default=random required",
                               &err), AT_CHECK);
    assert_msg(&err, "contradict each other");

    assert_int_equal(one_input("steps", "3.steps", "required", &err), OK);
}


static void
test_bad_names(void **state)
{
    char              long_name[FS_NAME_MAX + 2];
    fs_error_t        err;
    fs_deployment_t  *d;

    (void) state;

    assert_int_equal(one_input("1prompt", "6.text", NULL, &err), AT_DECLARE);
    assert_msg(&err, "input name \"1prompt\" is not an identifier: use "
                     "letters, digits and \"_\", not starting with a digit, "
                     "at most 64 characters");

    assert_int_equal(one_input("my-prompt", "6.text", NULL, &err),
                     AT_DECLARE);
    assert_msg(&err, "input name \"my-prompt\" is not an identifier");

    assert_int_equal(one_input("", "6.text", NULL, &err), AT_DECLARE);
    assert_msg(&err, "input name \"\" is not an identifier");

    memset(long_name, 'a', FS_NAME_MAX + 1);
    long_name[FS_NAME_MAX + 1] = '\0';
    assert_int_equal(one_input(long_name, "6.text", NULL, &err), AT_DECLARE);
    assert_msg(&err, "is not an identifier");

    long_name[FS_NAME_MAX] = '\0';
    assert_int_equal(one_input(long_name, "6.text", NULL, &err), OK);
    assert_int_equal(one_input("_p2", "6.text", NULL, &err), OK);

    d = wf_new(WF);
    assert_int_equal(output(d, "the result", "9", NULL, ORIGIN_B, &err), -1);
    assert_msg(&err, "output name \"the result\" is not an identifier");
    assert_ptr_equal(err.origin, ORIGIN_B);

    memset(long_name, 'b', FS_NAME_MAX + 1);
    assert_int_equal(output(d, long_name, "9", NULL, ORIGIN_B, &err), -1);
    assert_msg(&err, "is not an identifier");

    assert_int_equal(output(d, "result", "", NULL, ORIGIN_B, &err), -1);
    assert_msg(&err, "output \"result\": no node id given");

    assert_int_equal(output(d, "result", "9", "colour=red", ORIGIN_B, &err),
                     -1);
    assert_msg(&err, "output \"result\": unknown parameter \"colour=red\"; "
                     "use label=");
    fs_deployment_free(d);

    assert_true(fs_is_identifier("a"));
    assert_false(fs_is_identifier("a b"));
    assert_false(fs_is_identifier("é"));
}


static void
test_repeated_names(void **state)
{
    fs_error_t        err;
    fs_deployment_t  *d;

    (void) state;

    d = wf_new(WF);
    assert_int_equal(input(d, "prompt", "6.text", NULL, ORIGIN_A, &err), 0);
    assert_int_equal(input(d, "prompt", "3.sampler_name", NULL, ORIGIN_B,
                           &err), 0);
    assert_int_equal(output(d, "result", "9", NULL, ORIGIN_A, &err), 0);
    assert_int_equal(fs_deployment_check(d, &err), -1);
    assert_msg(&err, "input \"prompt\" is declared twice (node \"6\" and "
                     "node \"3\"); give each input its own name");
    assert_ptr_equal(err.origin, ORIGIN_B);
    fs_deployment_free(d);

    d = wf_new(WF);
    assert_int_equal(input(d, "a", "6.text", NULL, ORIGIN_A, &err), 0);
    assert_int_equal(input(d, "b", "6.text", NULL, ORIGIN_B, &err), 0);
    assert_int_equal(output(d, "result", "9", NULL, ORIGIN_A, &err), 0);
    assert_int_equal(fs_deployment_check(d, &err), -1);
    assert_msg(&err, "inputs \"a\" and \"b\" both write 6.text; declare "
                     "each NODE.INPUT once");
    assert_ptr_equal(err.origin, ORIGIN_B);
    fs_deployment_free(d);

    d = wf_new(WF);
    assert_int_equal(output(d, "result", "9", NULL, ORIGIN_A, &err), 0);
    assert_int_equal(output(d, "result", "8", NULL, ORIGIN_B, &err), 0);
    assert_int_equal(fs_deployment_check(d, &err), -1);
    assert_msg(&err, "output \"result\" is declared twice");
    assert_ptr_equal(err.origin, ORIGIN_B);
    fs_deployment_free(d);
}


static void
test_output_node_missing(void **state)
{
    fs_error_t        err;
    fs_deployment_t  *d;

    (void) state;

    d = wf_new(WF);
    assert_int_equal(output(d, "result", "99", NULL, ORIGIN_B, &err), 0);
    assert_int_equal(fs_deployment_check(d, &err), -1);
    assert_msg(&err, "output \"result\": workflow \"wf.json\" has no node "
                     "\"99\"; name a node that saves files (node \"9\" is "
                     "SaveImage)");
    assert_ptr_equal(err.origin, ORIGIN_B);
    fs_deployment_free(d);
}


static void
test_no_outputs(void **state)
{
    fs_error_t        err;
    fs_deployment_t  *d;

    (void) state;

    d = wf_new(WF);
    assert_int_equal(input(d, "prompt", "6.text", NULL, ORIGIN_A, &err), 0);
    assert_int_equal(fs_deployment_check(d, &err), -1);
    assert_msg(&err, "workflow \"wf.json\" has no declared output; add "
                     "\"flowscale_output NAME NODE\"");
    assert_msg(&err, "(node \"9\" is SaveImage)");
    fs_deployment_free(d);

    d = wf_new("{\"1\": {\"class_type\": \"EmptyImage\", \"inputs\": {}}}");
    assert_int_equal(fs_deployment_check(d, &err), -1);
    assert_msg(&err, "the workflow has no Save or Preview node");
    fs_deployment_free(d);
}


static void
test_quoted_labels(void **state)
{
    fs_error_t        err;
    json_t           *desc, *outs;
    fs_deployment_t  *d;

    (void) state;

    d = wf_new(WF);
    assert_int_equal(input(d, "prompt", "6.text", "label=\"Prompt\"",
                           ORIGIN_A, &err), 0);
    assert_int_equal(input(d, "steps", "3.steps",
                           "label=\"Two words\" min=1 description='Sampling "
                           "steps,  more is slower'", ORIGIN_A, &err), 0);
    assert_int_equal(input(d, "cfg", "3.cfg", "label=\"\"", ORIGIN_A, &err),
                     0);
    assert_int_equal(output(d, "result", "9", "label=\"Result image\"",
                            ORIGIN_A, &err), 0);
    assert_int_equal(fs_deployment_check(d, &err), 0);

    assert_string_equal(d->inputs[0].label, "Prompt");
    assert_string_equal(d->inputs[1].label, "Two words");
    assert_string_equal(d->inputs[1].description,
                        "Sampling steps, more is slower");
    assert_string_equal(d->inputs[2].label, "");
    assert_string_equal(d->outputs[0].label, "Result image");

    desc = describe(d);
    assert_string_equal(json_string_value(json_object_get(
                            schema_of(desc, "steps"), "title")), "Two words");
    outs = json_object_get(desc, "outputs");
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(outs, 0), "label")),
                        "Result image");
    json_decref(desc);
    fs_deployment_free(d);
}


static void
test_unterminated_quote(void **state)
{
    fs_error_t        err;
    fs_deployment_t  *d;

    (void) state;

    assert_int_equal(one_input("prompt", "6.text", "label=\"Two words",
                               &err), AT_DECLARE);
    assert_msg(&err, "input \"prompt\": the quote in \"label=\"Two\" is not "
                     "closed");

    assert_int_equal(one_input("prompt", "6.text", "label=\"", &err),
                     AT_DECLARE);
    assert_msg(&err, "is not closed");

    d = wf_new(WF);
    assert_int_equal(output(d, "result", "9", "label='Result", ORIGIN_B,
                            &err), -1);
    assert_msg(&err, "output \"result\": the quote in \"label='Result\" is "
                     "not closed");
    fs_deployment_free(d);
}


static void
test_not_utf8(void **state)
{
    fs_error_t  err;

    (void) state;

    /* a Latin-1 configuration file: the descriptor is JSON */
    assert_int_equal(one_input("prompt", "6.text", "label=Caf\xe9", &err),
                     AT_DECLARE);
    assert_msg(&err, "is not valid UTF-8");

    assert_int_equal(one_input("prompt", "6.text", "default=\xff", &err),
                     AT_DECLARE);
    assert_msg(&err, "is not valid UTF-8");

    assert_int_equal(one_input("prompt", "6.text", "label=Caf\xc3\xa9",
                               &err), OK);
}


/* --- types, discovery, the I/O file ------------------------------------- */


static void
test_type_inference(void **state)
{
    fs_error_t        err;
    json_t           *desc;
    fs_deployment_t  *d;

    (void) state;

    d = wf_new(WF);
    assert_int_equal(input(d, "prompt", "6.text", NULL, ORIGIN_A, &err), 0);
    assert_int_equal(input(d, "steps", "3.steps", NULL, ORIGIN_A, &err), 0);
    assert_int_equal(input(d, "cfg", "3.cfg", NULL, ORIGIN_A, &err), 0);
    assert_int_equal(input(d, "flag", "11.value", NULL, ORIGIN_A, &err), 0);
    assert_int_equal(input(d, "denoise", "3.denoise", "type=number",
                           ORIGIN_A, &err), 0);
    assert_int_equal(output(d, "result", "9", NULL, ORIGIN_A, &err), 0);
    assert_int_equal(fs_deployment_check(d, &err), 0);

    assert_int_equal(d->inputs[0].type, FS_TYPE_STRING);
    assert_int_equal(d->inputs[1].type, FS_TYPE_INTEGER);
    assert_int_equal(d->inputs[2].type, FS_TYPE_NUMBER);
    assert_int_equal(d->inputs[3].type, FS_TYPE_BOOLEAN);
    /* an integer in the workflow is accepted for a number */
    assert_int_equal(d->inputs[4].type, FS_TYPE_NUMBER);

    desc = describe(d);
    assert_string_equal(json_string_value(json_object_get(
                            schema_of(desc, "prompt"), "type")), "string");
    assert_string_equal(json_string_value(json_object_get(
                            schema_of(desc, "steps"), "type")), "integer");
    assert_string_equal(json_string_value(json_object_get(
                            schema_of(desc, "cfg"), "type")), "number");
    assert_string_equal(json_string_value(json_object_get(
                            schema_of(desc, "flag"), "type")), "boolean");
    assert_string_equal(json_string_value(json_object_get(
                            schema_of(desc, "denoise"), "type")), "number");
    json_decref(desc);
    fs_deployment_free(d);
}


static void
test_inference_fails(void **state)
{
    fs_error_t  err;

    (void) state;

    assert_int_equal(one_input("any", "12.value", NULL, &err), AT_CHECK);
    assert_msg(&err, "input \"any\": 12.value (PrimitiveAny) holds null, "
                     "which has no API type; give type=string, integer, "
                     "number, boolean or image");

    assert_int_equal(one_input("obj", "12.obj", NULL, &err), AT_CHECK);
    assert_msg(&err, "12.obj (PrimitiveAny) holds {\"a\":1}, which has no "
                     "API type");
}


static void
test_discovery(void **state)
{
    fs_error_t        err;
    json_t           *desc;
    fs_deployment_t  *d;

    (void) state;

    d = wf_new(WF_FS);
    assert_int_equal(fs_deployment_check(d, &err), 0);

    /* numeric node-id order: 2 before 7 before 10 */
    assert_int_equal(d->ninputs, 3);
    assert_string_equal(d->inputs[0].name, "image_size");
    assert_string_equal(d->inputs[0].node, "2");
    assert_string_equal(d->inputs[0].input, "default_value");
    assert_int_equal(d->inputs[0].type, FS_TYPE_INTEGER);
    assert_string_equal(d->inputs[0].label, "Image Size");
    assert_true(d->inputs[0].automatic);

    /* a label that makes no identifier: named from the node id */
    assert_string_equal(d->inputs[1].name, "input_7");
    assert_int_equal(d->inputs[1].type, FS_TYPE_IMAGE);

    assert_string_equal(d->inputs[2].name, "input_text");
    assert_int_equal(d->inputs[2].type, FS_TYPE_STRING);

    assert_int_equal(d->noutputs, 2);
    assert_string_equal(d->outputs[0].name, "picture");
    assert_string_equal(d->outputs[0].node, "4");
    assert_true(d->outputs[0].automatic);
    /* no label at all */
    assert_string_equal(d->outputs[1].name, "output_5");
    assert_null(d->outputs[1].label);

    desc = describe(d);
    assert_string_equal(input_name(desc, 0), "image_size");
    assert_string_equal(input_name(desc, 2), "input_text");
    assert_string_equal(json_string_value(json_object_get(
                            schema_of(desc, "input_text"), "default")),
                        "a red fox");
    json_decref(desc);
    fs_deployment_free(d);
}


static void
test_discovery_declared_wins(void **state)
{
    fs_error_t        err;
    fs_deployment_t  *d;

    (void) state;

    d = wf_new(WF_FS);
    assert_int_equal(input(d, "caption", "10.default_value",
                           "label=\"The caption\"", ORIGIN_A, &err), 0);
    assert_int_equal(output(d, "out", "4", NULL, ORIGIN_A, &err), 0);
    assert_int_equal(fs_deployment_check(d, &err), 0);

    assert_int_equal(d->ninputs, 3);
    assert_string_equal(d->inputs[0].name, "caption");
    assert_false(d->inputs[0].automatic);
    assert_string_equal(d->inputs[0].label, "The caption");
    assert_string_equal(d->inputs[1].name, "image_size");
    assert_string_equal(d->inputs[2].name, "input_7");

    assert_int_equal(d->noutputs, 2);
    assert_string_equal(d->outputs[0].name, "out");
    assert_string_equal(d->outputs[1].name, "output_5");
    fs_deployment_free(d);

    /* a declared name that collides with a discovered one */
    d = wf_new(WF_FS);
    assert_int_equal(input(d, "image_size", "3.batch_size", NULL, ORIGIN_A,
                           &err), 0);
    assert_int_equal(fs_deployment_check(d, &err), -1);
    assert_msg(&err, "input \"image_size\" is declared twice");
    assert_ptr_equal(err.origin, ORIGIN_A);
    fs_deployment_free(d);
}


static void
test_name_from_label(void **state)
{
    char  name[FS_NAME_MAX + 1];

    (void) state;

    fs_name_from_label("Input Text", "input", "1", name, sizeof(name));
    assert_string_equal(name, "input_text");
    fs_name_from_label("  Negative -- prompt (SDXL) ", "input", "1", name,
                       sizeof(name));
    assert_string_equal(name, "negative_prompt_sdxl");
    fs_name_from_label("2nd pass", "input", "12", name, sizeof(name));
    assert_string_equal(name, "input_12");
    fs_name_from_label(NULL, "output", "12:3", name, sizeof(name));
    assert_string_equal(name, "output_12_3");
    fs_name_from_label("", "output", "9", name, sizeof(name));
    assert_string_equal(name, "output_9");
}


static void
test_node_id_order(void **state)
{
    size_t       i;
    const char  *a[] = { "10", "9", "5x", "2", "b", "100", "a" };
    const char  *b[] = { "a", "100", "5x", "b", "9", "2", "10" };
    const char  *want[] = { "2", "9", "10", "100", "5x", "a", "b" };

    (void) state;

    /* a total order: the same result whatever the order of the file */
    qsort(a, 7, sizeof(char *), fs_compare_node_ids);
    qsort(b, 7, sizeof(char *), fs_compare_node_ids);

    for (i = 0; i < 7; i++) {
        assert_string_equal(a[i], want[i]);
        assert_string_equal(b[i], want[i]);
    }
}


static void
test_io_file_array(void **state)
{
    fs_error_t        err;
    json_t           *desc, *s;
    fs_deployment_t  *d;

    static const char  io[] =
        "{\"inputs\": ["
        "  {\"name\": \"prompt\", \"node\": \"6.text\", \"label\": \"Prompt\","
        "   \"default\": \"a dog\"},"
        "  {\"name\": \"steps\", \"node\": \"3\", \"input\": \"steps\","
        "   \"minimum\": 1, \"maximum\": 50, \"default\": 20},"
        "  {\"name\": \"sampler\", \"node\": \"3.sampler_name\","
        "   \"options\": [\"euler\", \"ddim\"]},"
        "  {\"name\": \"cfg\", \"node\": \"3.cfg\", \"options\": [1.0, 2.5],"
        "   \"default\": 1},"
        "  {\"name\": \"flag\", \"node\": \"11.value\", \"default\": false},"
        "  {\"name\": \"seed\", \"node\": \"3.seed\","
        "   \"default\": 9223372036854775807},"
        "  {\"name\": \"width\", \"node\": \"5.width\", \"required\": true}],"
        " \"outputs\": [{\"name\": \"result\", \"node\": \"9\","
        "               \"label\": \"Result\"}]}";

    (void) state;

    d = wf_new(WF);
    assert_int_equal(fs_io_load(d, "io.json", io, strlen(io), ORIGIN_IO,
                                &err), 0);
    if (fs_deployment_check(d, &err) != 0) {
        fail_msg("check failed: %s", err.msg);
    }

    assert_int_equal(d->ninputs, 7);
    assert_ptr_equal(d->inputs[0].origin, ORIGIN_IO);
    assert_string_equal(d->inputs[1].node, "3");
    assert_string_equal(d->inputs[1].input, "steps");
    assert_false(d->inputs[5].required);
    assert_true(d->inputs[6].required);

    desc = describe(d);

    s = schema_of(desc, "prompt");
    assert_string_equal(json_string_value(json_object_get(s, "title")),
                        "Prompt");
    assert_string_equal(json_string_value(json_object_get(s, "default")),
                        "a dog");

    /* typed JSON values stay typed */
    s = schema_of(desc, "steps");
    assert_true(json_is_integer(json_object_get(s, "default")));
    assert_int_equal(json_integer_value(json_object_get(s, "default")), 20);
    assert_int_equal(json_integer_value(json_object_get(s, "minimum")), 1);
    assert_int_equal(json_integer_value(json_object_get(s, "maximum")), 50);

    s = schema_of(desc, "sampler");
    assert_int_equal(json_array_size(json_object_get(s, "enum")), 2);
    assert_string_equal(json_string_value(json_array_get(
                            json_object_get(s, "enum"), 1)), "ddim");

    /* 1 and 1.0 are the same number */
    s = schema_of(desc, "cfg");
    assert_true(json_number_value(json_object_get(s, "default")) == 1.0);

    s = schema_of(desc, "flag");
    assert_true(json_is_false(json_object_get(s, "default")));

    /* a 64-bit seed is not rounded through a double */
    s = schema_of(desc, "seed");
    assert_true(json_integer_value(json_object_get(s, "default"))
                == 9223372036854775807LL);

    assert_int_equal(json_array_size(json_object_get(json_object_get(desc,
                         "input_schema"), "required")), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(
                            json_object_get(desc, "outputs"), 0), "label")),
                        "Result");
    json_decref(desc);
    fs_deployment_free(d);
}


static void
test_io_file_keyed(void **state)
{
    fs_error_t        err;
    fs_deployment_t  *d;

    static const char  io[] =
        "{\"inputs\": {\"prompt\": {\"node\": \"6.text\"},"
        "              \"steps\": {\"node\": \"3\", \"input\": \"steps\","
        "                          \"min\": 1, \"type\": \"integer\"}},"
        " \"outputs\": {\"result\": {\"node\": \"9\"}}}";

    (void) state;

    d = wf_new(WF);
    assert_int_equal(fs_io_load(d, "io.json", io, strlen(io), ORIGIN_IO,
                                &err), 0);
    assert_int_equal(fs_deployment_check(d, &err), 0);
    assert_int_equal(d->ninputs, 2);
    assert_string_equal(d->inputs[0].name, "prompt");
    assert_string_equal(d->inputs[1].name, "steps");
    assert_int_equal(json_integer_value(d->inputs[1].minimum), 1);
    assert_int_equal(d->noutputs, 1);
    assert_string_equal(d->outputs[0].name, "result");
    fs_deployment_free(d);
}


static void
test_io_file_errors(void **state)
{
    size_t            i;
    fs_error_t        err;
    fs_deployment_t  *d;

    static const struct {
        const char  *io;
        const char  *needle;
        int          at_check;
    } cases[] = {
        { "{\"inputs\": [", "I/O file \"io.json\" is not valid JSON", 0 },
        { "[]", "must be an object with \"inputs\" and \"outputs\"", 0 },
        { "{\"input\": []}", "unknown key \"input\"", 0 },
        { "{\"inputs\": 5}", "\"inputs\" must be a list or an object", 0 },
        { "{\"inputs\": [5]}", "each input must be an object", 0 },
        { "{\"outputs\": [\"9\"]}", "each output must be an object", 0 },
        { "{\"inputs\": [{\"name\": \"p\"}]}",
          "an input needs a \"name\" and a \"node\"", 0 },
        { "{\"outputs\": [{\"node\": \"9\"}]}",
          "an output needs a \"name\" and a \"node\"", 0 },
        { "{\"inputs\": [{\"name\": \"p\", \"node\": \"6.text\","
          " \"colour\": 1}]}", "unknown parameter \"colour=1\"", 0 },
        { "{\"inputs\": [{\"name\": \"s\", \"node\": \"3.steps\","
          " \"min\": 1, \"minimum\": 2}]}", "\"min=\" is given twice", 0 },
        { "{\"inputs\": [{\"name\": \"s\", \"node\": \"3.steps\","
          " \"default\": null}], \"outputs\": [{\"name\": \"r\","
          " \"node\": \"9\"}]}", "does not fit its type integer", 1 },
        { "{\"inputs\": [{\"name\": \"s\", \"node\": \"3.steps\","
          " \"default\": 1e300}], \"outputs\": [{\"name\": \"r\","
          " \"node\": \"9\"}]}", "does not fit its type integer", 1 },
        { "{\"inputs\": [{\"name\": \"s\", \"node\": \"3.sampler_name\","
          " \"options\": []}], \"outputs\": [{\"name\": \"r\","
          " \"node\": \"9\"}]}", "options= has no item", 1 },
        { "{\"inputs\": [{\"name\": \"s\", \"node\": \"3.cfg\","
          " \"options\": [1, 1.0]}], \"outputs\": [{\"name\": \"r\","
          " \"node\": \"9\"}]}", "option 1.0 is listed twice", 1 },
        { "{\"inputs\": [{\"name\": \"s\", \"node\": \"3.steps\","
          " \"required\": true, \"default\": 3}], \"outputs\": [{\"name\":"
          " \"r\", \"node\": \"9\"}]}", "contradict each other", 1 },
    };

    (void) state;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        d = wf_new(WF);
        memset(&err, 0, sizeof(err));

        if (cases[i].at_check) {
            if (fs_io_load(d, "io.json", cases[i].io, strlen(cases[i].io),
                           ORIGIN_IO, &err) != 0)
            {
                fail_msg("case %zu: I/O file refused: %s", i, err.msg);
            }

            assert_int_equal(fs_deployment_check(d, &err), -1);

        } else {
            assert_int_equal(fs_io_load(d, "io.json", cases[i].io,
                                        strlen(cases[i].io), ORIGIN_IO,
                                        &err), -1);
        }

        if (strstr(err.msg, cases[i].needle) == NULL) {
            fail_msg("case %zu: message \"%s\" lacks \"%s\"", i, err.msg,
                     cases[i].needle);
        }

        assert_ptr_equal(err.origin, ORIGIN_IO);
        fs_deployment_free(d);
    }
}


/* --- the descriptor and the version ------------------------------------- */


static fs_deployment_t *
design_example(const char *wf)
{
    fs_error_t        err;
    fs_deployment_t  *d;

    d = wf_new(wf);

    /* declaration order differs from the workflow's node order */
    assert_int_equal(input(d, "steps", "3.steps",
                           "min=1 max=50 description=Sampling", ORIGIN_A,
                           &err), 0);
    assert_int_equal(input(d, "prompt", "6.text", "label=\"Prompt\" required",
                           ORIGIN_A, &err), 0);
    assert_int_equal(input(d, "seed", "3.seed", "default=random", ORIGIN_A,
                           &err), 0);
    assert_int_equal(input(d, "image", "10.image", "type=image", ORIGIN_A,
                           &err), 0);
    assert_int_equal(input(d, "sampler", "3.sampler_name",
                           "options=euler|ddim default=ddim", ORIGIN_A, &err),
                     0);
    assert_int_equal(output(d, "result", "9", "label=\"Result\"", ORIGIN_A,
                            &err), 0);

    if (fs_deployment_check(d, &err) != 0) {
        fail_msg("check failed: %s", err.msg);
    }

    return d;
}


static void
test_descriptor(void **state)
{
    size_t            i;
    json_t           *desc, *s, *req, *links;
    fs_deployment_t  *d;

    (void) state;

    d = design_example(WF);
    desc = describe(d);

    assert_string_equal(json_string_value(json_object_get(desc, "name")),
                        "txt2img");
    assert_string_equal(json_string_value(json_object_get(desc, "state")),
                        "ready");

    /* inputs in declaration order */
    assert_int_equal(json_array_size(json_object_get(desc, "inputs")), 5);
    assert_string_equal(input_name(desc, 0), "steps");
    assert_string_equal(input_name(desc, 1), "prompt");
    assert_string_equal(input_name(desc, 2), "seed");
    assert_string_equal(input_name(desc, 3), "image");
    assert_string_equal(input_name(desc, 4), "sampler");

    s = schema_of(desc, "steps");
    assert_string_equal(json_string_value(json_object_get(s, "type")),
                        "integer");
    assert_int_equal(json_integer_value(json_object_get(s, "minimum")), 1);
    assert_int_equal(json_integer_value(json_object_get(s, "maximum")), 50);
    assert_string_equal(json_string_value(json_object_get(s,
                            "description")), "Sampling");
    /* an optional input defaults to the workflow's own value */
    assert_int_equal(json_integer_value(json_object_get(s, "default")), 20);

    s = schema_of(desc, "prompt");
    assert_string_equal(json_string_value(json_object_get(s, "title")),
                        "Prompt");
    assert_null(json_object_get(s, "default"));

    s = schema_of(desc, "seed");
    assert_null(json_object_get(s, "default"));
    assert_non_null(strstr(json_string_value(json_object_get(s,
                               "description")), "random"));

    s = schema_of(desc, "image");
    assert_string_equal(json_string_value(json_object_get(s, "type")),
                        "string");
    assert_string_equal(json_string_value(json_object_get(s,
                            "contentEncoding")), "base64");
    assert_string_equal(json_string_value(json_object_get(s,
                            "contentMediaType")), "image/*");
    assert_null(json_object_get(s, "default"));
    assert_string_equal(json_string_value(json_object_get(json_array_get(
                            json_object_get(desc, "inputs"), 3), "type")),
                        "image");

    s = schema_of(desc, "sampler");
    assert_string_equal(json_string_value(json_object_get(s, "default")),
                        "ddim");
    assert_int_equal(json_array_size(json_object_get(s, "enum")), 2);
    assert_string_equal(json_string_value(json_array_get(
                            json_object_get(s, "enum"), 0)), "euler");

    req = json_object_get(json_object_get(desc, "input_schema"), "required");
    assert_int_equal(json_array_size(req), 1);
    assert_string_equal(json_string_value(json_array_get(req, 0)), "prompt");
    assert_true(json_is_false(json_object_get(json_object_get(desc,
                    "input_schema"), "additionalProperties")));
    assert_true(json_is_true(json_object_get(json_array_get(
                    json_object_get(desc, "inputs"), 1), "required")));

    links = json_object_get(desc, "links");
    assert_string_equal(json_string_value(json_object_get(links, "runs")),
                        "/v1/txt2img/runs");
    assert_string_equal(json_string_value(json_object_get(links, "openapi")),
                        "/v1/txt2img/openapi.json");

    /* the version: 8 lower-case hex digits */
    assert_string_equal(json_string_value(json_object_get(desc, "version")),
                        d->version);
    assert_int_equal(strlen(d->version), FS_VERSION_LEN);
    for (i = 0; i < FS_VERSION_LEN; i++) {
        assert_true(isxdigit((unsigned char) d->version[i])
                    && !isupper((unsigned char) d->version[i]));
    }

    json_decref(desc);
    fs_deployment_free(d);
}


static void
test_version(void **state)
{
    char              v1[FS_VERSION_LEN + 1], *wf2, *p;
    size_t            i;
    fs_error_t        err;
    fs_deployment_t  *d;

    /* WF with other whitespace and another key order */
    static const char  WF_REORDERED[] =
        "{\"12\":{\"inputs\":{\"half\":2.5,\"whole\":2.0,\"obj\":{\"a\":1},"
        "\"value\":null},\"class_type\":\"PrimitiveAny\"},"
        "\"11\":{\"inputs\":{\"value\":true},"
        "\"class_type\":\"PrimitiveBoolean\"},"
        "\"10\":{\"inputs\":{\"image\":\"example.png\"},"
        "\"class_type\":\"LoadImage\"},"
        "\"9\":{\"inputs\":{\"images\":[\"8\",0],"
        "\"filename_prefix\":\"ComfyUI\"},\"class_type\":\"SaveImage\"},"
        "\"8\":{\"inputs\":{\"vae\":[\"4\",2],\"samples\":[\"3\",0]},"
        "\"class_type\":\"VAEDecode\"},"
        "\"6\":{\"inputs\":{\"clip\":[\"4\",1],\"text\":\"a cat\"},"
        "\"class_type\":\"CLIPTextEncode\"},"
        "\"5\":{\"inputs\":{\"batch_size\":1,\"height\":512,\"width\":512},"
        "\"class_type\":\"EmptyLatentImage\"},"
        "\"4\":{\"inputs\":{\"ckpt_name\":\"sd15.safetensors\"},"
        "\"class_type\":\"CheckpointLoaderSimple\"},"
        "\"3\":{\"inputs\":{\"latent_image\":[\"5\",0],"
        "\"positive\":[\"6\",0],\"model\":[\"4\",0],\"sampler_name\":"
        "\"euler\",\"denoise\":1,\"cfg\":7.5,\"steps\":20,\"seed\":42},"
        "\"class_type\":\"KSampler\"}}";

    (void) state;

    d = design_example(WF);
    strcpy(v1, d->version);
    fs_deployment_free(d);

    /* the same again */
    d = design_example(WF);
    assert_string_equal(d->version, v1);
    fs_deployment_free(d);

    /* only key order and whitespace differ */
    d = design_example(WF_REORDERED);
    assert_string_equal(d->version, v1);
    fs_deployment_free(d);

    /* a changed value in the workflow */
    wf2 = strdup(WF);
    assert_non_null(wf2);
    p = strstr(wf2, "\"steps\": 20");
    assert_non_null(p);
    p[10] = '5';
    d = design_example(wf2);
    assert_string_not_equal(d->version, v1);
    fs_deployment_free(d);
    free(wf2);

    /* changed I/O: one more input, or another label */
    d = wf_new(WF);
    assert_int_equal(input(d, "steps", "3.steps",
                           "min=1 max=50 description=Sampling", ORIGIN_A,
                           &err), 0);
    assert_int_equal(input(d, "prompt", "6.text", "label=\"Prompt\" required",
                           ORIGIN_A, &err), 0);
    assert_int_equal(input(d, "seed", "3.seed", "default=random", ORIGIN_A,
                           &err), 0);
    assert_int_equal(input(d, "image", "10.image", "type=image", ORIGIN_A,
                           &err), 0);
    assert_int_equal(input(d, "sampler", "3.sampler_name",
                           "options=euler|ddim default=ddim", ORIGIN_A, &err),
                     0);
    assert_int_equal(output(d, "result", "9", "label=\"Result!\"", ORIGIN_A,
                            &err), 0);
    assert_int_equal(fs_deployment_check(d, &err), 0);
    assert_string_not_equal(d->version, v1);
    for (i = 0; i < FS_VERSION_LEN; i++) {
        assert_true(isxdigit((unsigned char) d->version[i]));
    }
    fs_deployment_free(d);
}


/* the design's own example, on the example workflow shipped in conf/ */

static void
test_conf_workflows(void **state)
{
    char             *text;
    size_t            len;
    fs_error_t        err;
    fs_deployment_t  *d;

    (void) state;

    d = fs_deployment_new();
    text = read_fixture("../../conf/workflows/txt2img.json", &len);
    assert_int_equal(fs_workflow_load(d, "workflows/txt2img.json", text, len,
                                      &err), 0);
    free(text);

    assert_int_equal(input(d, "prompt", "6.text", "label=\"Prompt\"",
                           ORIGIN_A, &err), 0);
    assert_int_equal(input(d, "seed", "3.seed", "default=random", ORIGIN_A,
                           &err), 0);
    assert_int_equal(input(d, "steps", "3.steps", "min=1 max=50", ORIGIN_A,
                           &err), 0);
    assert_int_equal(output(d, "result", "9", "label=\"Result\"", ORIGIN_A,
                            &err), 0);
    if (fs_deployment_check(d, &err) != 0) {
        fail_msg("check failed: %s", err.msg);
    }
    assert_true(d->inputs[1].random);
    fs_deployment_free(d);

    d = fs_deployment_new();
    text = read_fixture("../../conf/workflows/fs_io.json", &len);
    assert_int_equal(fs_workflow_load(d, "workflows/fs_io.json", text, len,
                                      &err), 0);
    free(text);
    assert_int_equal(fs_deployment_check(d, &err), 0);
    assert_int_equal(d->ninputs, 2);
    assert_string_equal(d->inputs[0].name, "caption");
    assert_string_equal(d->inputs[1].name, "image_size");
    assert_int_equal(d->noutputs, 2);
    assert_string_equal(d->outputs[0].name, "picture");
    assert_string_equal(d->outputs[1].name, "echo");
    fs_deployment_free(d);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_not_json),
        cmocka_unit_test(test_ui_format),
        cmocka_unit_test(test_not_object),
        cmocka_unit_test(test_no_class_type),
        cmocka_unit_test(test_link_to_missing_node),
        cmocka_unit_test(test_no_workflow),
        cmocka_unit_test(test_unknown_node),
        cmocka_unit_test(test_unknown_input),
        cmocka_unit_test(test_input_is_link),
        cmocka_unit_test(test_bad_slot),
        cmocka_unit_test(test_type_does_not_fit),
        cmocka_unit_test(test_default_does_not_fit),
        cmocka_unit_test(test_default_random),
        cmocka_unit_test(test_min_above_max),
        cmocka_unit_test(test_default_outside_range),
        cmocka_unit_test(test_options),
        cmocka_unit_test(test_min_max_on_string),
        cmocka_unit_test(test_options_on_boolean_and_image),
        cmocka_unit_test(test_unknown_parameter),
        cmocka_unit_test(test_unknown_type),
        cmocka_unit_test(test_required_with_default),
        cmocka_unit_test(test_bad_names),
        cmocka_unit_test(test_repeated_names),
        cmocka_unit_test(test_output_node_missing),
        cmocka_unit_test(test_no_outputs),
        cmocka_unit_test(test_quoted_labels),
        cmocka_unit_test(test_unterminated_quote),
        cmocka_unit_test(test_not_utf8),
        cmocka_unit_test(test_type_inference),
        cmocka_unit_test(test_inference_fails),
        cmocka_unit_test(test_discovery),
        cmocka_unit_test(test_discovery_declared_wins),
        cmocka_unit_test(test_name_from_label),
        cmocka_unit_test(test_node_id_order),
        cmocka_unit_test(test_io_file_array),
        cmocka_unit_test(test_io_file_keyed),
        cmocka_unit_test(test_io_file_errors),
        cmocka_unit_test(test_descriptor),
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_conf_workflows),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
