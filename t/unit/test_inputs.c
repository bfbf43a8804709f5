
/*
 * Unit tests of input validation (fs_inputs_validate) and of the prompt
 * sent to ComfyUI (fs_prompt_build): every rule and error code, form
 * coercion, random seeds, files, and that nothing but declared slots and
 * filename prefixes ever changes in the graph.
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
#include <cmocka.h>

#include "ngx_http_flowscale_workflow.h"
#include "ngx_http_flowscale_form.h"
#include "ngx_http_flowscale_inputs.h"


/*
 * A text-to-image graph with one value of each kind, an undeclared Save
 * node, a Save node whose prefix is a link, a Preview node without a
 * prefix and a node whose filename_prefix is not a string.
 */
static const char WF[] =
    "{\"3\": {\"class_type\": \"KSampler\", \"inputs\": {"
    "    \"seed\": 42, \"steps\": 20, \"cfg\": 7.5, \"denoise\": 1.0,"
    "    \"sampler_name\": \"euler\", \"model\": [\"4\", 0],"
    "    \"positive\": [\"6\", 0], \"negative\": [\"7\", 0],"
    "    \"latent_image\": [\"5\", 0]}},"
    " \"4\": {\"class_type\": \"CheckpointLoaderSimple\","
    "    \"inputs\": {\"ckpt_name\": \"sd15.safetensors\"}},"
    " \"5\": {\"class_type\": \"EmptyLatentImage\","
    "    \"inputs\": {\"width\": 512, \"height\": 512, \"batch_size\": 1}},"
    " \"6\": {\"class_type\": \"CLIPTextEncode\","
    "    \"inputs\": {\"text\": \"a cat\", \"clip\": [\"4\", 1]}},"
    " \"7\": {\"class_type\": \"CLIPTextEncode\","
    "    \"inputs\": {\"text\": \"ugly\", \"clip\": [\"4\", 1]}},"
    " \"8\": {\"class_type\": \"VAEDecode\","
    "    \"inputs\": {\"samples\": [\"3\", 0], \"vae\": [\"4\", 2]}},"
    " \"9\": {\"class_type\": \"SaveImage\","
    "    \"inputs\": {\"filename_prefix\": \"ComfyUI\","
    "                \"images\": [\"8\", 0]}},"
    " \"10\": {\"class_type\": \"LoadImage\","
    "    \"inputs\": {\"image\": \"example.png\"}},"
    " \"11\": {\"class_type\": \"PrimitiveBoolean\","
    "    \"inputs\": {\"value\": true}},"
    " \"12\": {\"class_type\": \"SaveImage\","
    "    \"inputs\": {\"filename_prefix\": \"other\","
    "                \"images\": [\"8\", 0]}},"
    " \"13\": {\"class_type\": \"PrimitiveString\","
    "    \"inputs\": {\"value\": \"linked\"}},"
    " \"14\": {\"class_type\": \"SaveImage\","
    "    \"inputs\": {\"filename_prefix\": [\"13\", 0],"
    "                \"images\": [\"8\", 0]}},"
    " \"15\": {\"class_type\": \"PreviewImage\","
    "    \"inputs\": {\"images\": [\"8\", 0]}},"
    " \"16\": {\"class_type\": \"LoadFile\","
    "    \"inputs\": {\"file\": \"doc.bin\"}},"
    " \"17\": {\"class_type\": \"PrimitiveInt\","
    "    \"inputs\": {\"value\": 5}},"
    " \"18\": {\"class_type\": \"Odd\","
    "    \"inputs\": {\"filename_prefix\": 7}}}";


/* name, slot, options as nginx splits them */
static const char *DECL[][3] = {
    { "prompt",   "6.text",         "required" },
    { "negative", "7.text",         NULL },
    { "seed",     "3.seed",         "default=random" },
    { "steps",    "3.steps",        "min=1 max=50" },
    { "cfg",      "3.cfg",          "min=0 max=30" },
    { "sampler",  "3.sampler_name", "options=euler|ddim|dpmpp_2m" },
    { "denoise",  "3.denoise",      "default=0.5 max=1" },
    { "width",    "5.width",        "options=512|768|1024 default=512" },
    { "flag",     "11.value",       NULL },
    { "image",    "10.image",       "type=image" },
    { "doc",      "16.file",        "type=file" },
    { "count",    "17.value",       "default=random min=10 max=20" },
};


/* "\x89PNG\r\n\x1a\n" and a few bytes that make "+" and "/" in base64 */
#define PNG_BYTES   "\x89PNG\r\n\x1a\n\xfb\xff\xbf\xfb\xef"
#define PNG_B64     "iVBORw0KGgr7/7/77w=="
#define PNG_B64URL  "iVBORw0KGgr7_7_77w"
#define JPEG_BYTES  "\xff\xd8\xff\xe0\x00\x10JFIF"
#define WAV_B64     "UklGRiQAAABXQVZFZm10IA=="


typedef struct {
    uint64_t  value;
    int       calls;
} rng_t;


static uint64_t
rng_fixed(void *data)
{
    rng_t  *r = data;

    r->calls++;
    return r->value;
}


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


static void
declare(fs_deployment_t *d, const char *name, const char *slot,
    const char *opts)
{
    char        buf[512], *words[16];
    size_t      n;
    fs_error_t  err;

    memset(&err, 0, sizeof(err));
    n = split(opts, buf, sizeof(buf), words);

    if (fs_input_declare(d, name, slot, n, words, NULL, &err) != 0) {
        fail_msg("input %s: %s", name, err.msg);
    }
}


static void
declare_output(fs_deployment_t *d, const char *name, const char *node)
{
    fs_error_t  err;

    memset(&err, 0, sizeof(err));

    if (fs_output_declare(d, name, node, 0, NULL, NULL, &err) != 0) {
        fail_msg("output %s: %s", name, err.msg);
    }
}


static void
check(fs_deployment_t *d)
{
    fs_error_t  err;

    memset(&err, 0, sizeof(err));

    if (fs_deployment_check(d, &err) != 0) {
        fail_msg("deployment check: %s", err.msg);
    }
}


static fs_deployment_t *
load(const char *name, const char *json, size_t len)
{
    fs_error_t        err;
    fs_deployment_t  *d;

    d = fs_deployment_new();
    assert_non_null(d);

    memset(&err, 0, sizeof(err));
    if (fs_workflow_load(d, name, json, len, &err) != 0) {
        fail_msg("workflow did not load: %s", err.msg);
    }

    return d;
}


static fs_deployment_t *
deployment(void)
{
    size_t            i;
    fs_deployment_t  *d;

    d = load("wf.json", WF, sizeof(WF) - 1);

    for (i = 0; i < sizeof(DECL) / sizeof(DECL[0]); i++) {
        declare(d, DECL[i][0], DECL[i][1], DECL[i][2]);
    }

    declare_output(d, "result", "9");
    declare_output(d, "linked", "14");
    declare_output(d, "preview", "15");
    check(d);

    return d;
}


static json_t *
parse(const char *text)
{
    json_t        *v;
    json_error_t   jerr;

    v = json_loads(text, JSON_DECODE_ANY, &jerr);
    if (v == NULL) {
        fail_msg("bad test JSON %s: %s", text, jerr.text);
    }

    return v;
}


typedef struct {
    json_t     *values;
    json_t     *errors;
    fs_file_t  *files;
    size_t      nfiles;
    rng_t       rng;
} result_t;


static int
run_parts(const fs_deployment_t *d, const char *given, int form,
    fs_part_t *parts, size_t nparts, result_t *r)
{
    int      rc;
    json_t  *g;

    g = given ? parse(given) : NULL;

    if (r->rng.value == 0) {
        r->rng.value = 1000003;
    }

    r->rng.calls = 0;

    rc = fs_inputs_validate(d, g, form, parts, nparts, rng_fixed, &r->rng,
                            &r->values, &r->files, &r->nfiles, &r->errors);

    json_decref(g);

    if (rc == 0) {
        assert_non_null(r->values);
        assert_null(r->errors);

    } else {
        assert_null(r->values);
        assert_null(r->files);
        assert_int_equal(r->nfiles, 0);
        assert_non_null(r->errors);
        assert_true(json_array_size(r->errors) > 0);
    }

    return rc;
}


static int
run(const fs_deployment_t *d, const char *given, int form, result_t *r)
{
    return run_parts(d, given, form, NULL, 0, r);
}


static void
done(result_t *r)
{
    json_decref(r->values);
    json_decref(r->errors);
    fs_files_free(r->files, r->nfiles);
    memset(r, 0, sizeof(result_t));
}


/* the one error of input, with its code and words in its message */

static void
assert_error(result_t *r, const char *input, const char *code,
    const char *needle)
{
    size_t       i;
    json_t      *e;
    const char  *msg, *name;

    json_array_foreach(r->errors, i, e) {
        name = json_string_value(json_object_get(e, "input"));

        if (input == NULL ? name != NULL
                          : (name == NULL || strcmp(name, input) != 0))
        {
            continue;
        }

        assert_string_equal(json_string_value(json_object_get(e, "code")),
                            code);
        msg = json_string_value(json_object_get(e, "message"));
        assert_non_null(msg);

        if (strstr(msg, needle) == NULL) {
            fail_msg("message \"%s\"\n    lacks \"%s\"", msg, needle);
        }

        return;
    }

    fail_msg("no error for input \"%s\"", input ? input : "(null)");
}


/* run(), expecting exactly one error */

static void
one_error(const fs_deployment_t *d, const char *given, int form,
    const char *input, const char *code, const char *needle)
{
    result_t  r;

    memset(&r, 0, sizeof(r));

    if (run(d, given, form, &r) == 0) {
        fail_msg("%s was accepted", given);
    }

    if (json_array_size(r.errors) != 1) {
        char  *text = json_dumps(r.errors, 0);
        print_error("errors: %s\n", text);
        free(text);
        fail_msg("%s: %zu errors, not 1", given, json_array_size(r.errors));
    }

    assert_error(&r, input, code, needle);
    done(&r);
}


static json_t *
value(result_t *r, const char *name)
{
    return json_object_get(r->values, name);
}


static void
test_json_valid(void **state)
{
    result_t          r;
    fs_deployment_t  *d;

    (void) state;

    d = deployment();
    memset(&r, 0, sizeof(r));

    assert_int_equal(run(d, "{\"prompt\": \"a dog\", \"steps\": 30, "
                            "\"cfg\": 5, \"sampler\": \"ddim\", "
                            "\"flag\": false, \"width\": 768, \"seed\": 7, "
                            "\"negative\": null}", 0, &r), 0);

    assert_string_equal(json_string_value(value(&r, "prompt")), "a dog");
    assert_true(json_is_integer(value(&r, "steps")));
    assert_int_equal(json_integer_value(value(&r, "steps")), 30);

    /* an integer is fine for a number, and becomes one */
    assert_true(json_is_real(value(&r, "cfg")));
    assert_true(json_real_value(value(&r, "cfg")) == 5.0);

    assert_string_equal(json_string_value(value(&r, "sampler")), "ddim");
    assert_true(json_is_false(value(&r, "flag")));
    assert_int_equal(json_integer_value(value(&r, "width")), 768);
    assert_int_equal(json_integer_value(value(&r, "seed")), 7);

    /* defaults and seeds of inputs not given */
    assert_true(json_is_real(value(&r, "denoise")));
    assert_true(json_real_value(value(&r, "denoise")) == 0.5);
    assert_int_equal(json_integer_value(value(&r, "count")),
                     10 + 1000003 % 11);
    assert_int_equal(r.rng.calls, 1);

    /* null is "not given"; without a default the workflow keeps its own */
    assert_null(value(&r, "negative"));
    assert_null(value(&r, "image"));
    assert_null(value(&r, "doc"));
    assert_int_equal(json_object_size(r.values), 9);
    assert_int_equal(r.nfiles, 0);

    done(&r);

    /* 20.0 is an integer; bounds are inclusive */
    assert_int_equal(run(d, "{\"prompt\": \"\", \"steps\": 50.0, "
                            "\"cfg\": 0, \"denoise\": 1}", 0, &r), 0);
    assert_true(json_is_integer(value(&r, "steps")));
    assert_int_equal(json_integer_value(value(&r, "steps")), 50);
    assert_string_equal(json_string_value(value(&r, "prompt")), "");
    assert_int_equal(json_integer_value(value(&r, "width")), 512);
    done(&r);

    assert_int_equal(run(d, "{\"prompt\": \"x\", \"steps\": 1}", 0, &r), 0);
    done(&r);

    fs_deployment_free(d);
}


static void
test_json_types(void **state)
{
    fs_deployment_t  *d;

    (void) state;

    d = deployment();

#define P  "{\"prompt\": \"x\", "

    one_error(d, P "\"steps\": \"20\"}", 0, "steps", "type",
              "steps must be an integer (a whole number), not a string");
    one_error(d, P "\"steps\": 1.5}", 0, "steps", "type",
              "not a number with a fraction");
    one_error(d, P "\"steps\": true}", 0, "steps", "type",
              "not a boolean");
    one_error(d, P "\"steps\": 1e300}", 0, "steps", "type",
              "not a number out of range");
    one_error(d, P "\"steps\": [20]}", 0, "steps", "type", "not an array");
    one_error(d, P "\"cfg\": true}", 0, "cfg", "type",
              "cfg must be a number, not a boolean");
    one_error(d, P "\"cfg\": \"1.5\"}", 0, "cfg", "type", "not a string");
    one_error(d, P "\"flag\": \"true\"}", 0, "flag", "type",
              "flag must be true or false, not a string");
    one_error(d, P "\"flag\": 1}", 0, "flag", "type", "not an integer");
    one_error(d, "{\"prompt\": 5}", 0, "prompt", "type",
              "prompt must be a string, not an integer");
    one_error(d, "{\"prompt\": {\"a\": 1}}", 0, "prompt", "type",
              "not an object");
    one_error(d, P "\"sampler\": 1}", 0, "sampler", "type",
              "sampler must be a string");

    /* the type comes before the options */
    one_error(d, P "\"width\": \"512\"}", 0, "width", "type",
              "width must be an integer");

#undef P

    fs_deployment_free(d);
}


static void
test_range(void **state)
{
    fs_deployment_t  *d;

    (void) state;

    d = deployment();

    one_error(d, "{\"prompt\": \"x\", \"steps\": 0}", 0, "steps", "range",
              "steps must be at least 1, not 0");
    one_error(d, "{\"prompt\": \"x\", \"steps\": 51}", 0, "steps", "range",
              "steps must be at most 50, not 51");
    one_error(d, "{\"prompt\": \"x\", \"steps\": -9223372036854775807}", 0,
              "steps", "range", "at least 1");
    one_error(d, "{\"prompt\": \"x\", \"cfg\": 30.5}", 0, "cfg", "range",
              "cfg must be at most 30, not 30.5");
    one_error(d, "{\"prompt\": \"x\", \"cfg\": -0.25}", 0, "cfg", "range",
              "cfg must be at least 0, not -0.25");
    one_error(d, "{\"prompt\": \"x\", \"denoise\": 1.5}", 0, "denoise",
              "range", "at most 1");
    one_error(d, "{\"prompt\": \"x\", \"count\": 9}", 0, "count", "range",
              "count must be at least 10");

    fs_deployment_free(d);
}


static void
test_option(void **state)
{
    fs_deployment_t  *d;

    (void) state;

    d = deployment();

    one_error(d, "{\"prompt\": \"x\", \"sampler\": \"Euler\"}", 0, "sampler",
              "option", "sampler must be one of \"euler\", \"ddim\", "
              "\"dpmpp_2m\", not \"Euler\"");
    one_error(d, "{\"prompt\": \"x\", \"width\": 600}", 0, "width", "option",
              "width must be one of 512, 768, 1024, not 600");
    /* form mode coerces strings only; other values are taken as JSON */
    one_error(d, "{\"prompt\": \"x\", \"width\": 600}", 1, "width",
              "option", "one of 512, 768, 1024");
    one_error(d, "{\"prompt\": \"x\", \"width\": \"600\"}", 1, "width",
              "option", "one of 512, 768, 1024");

    fs_deployment_free(d);
}


static void
test_unknown_required(void **state)
{
    result_t          r;
    fs_deployment_t  *d;

    (void) state;

    d = deployment();
    memset(&r, 0, sizeof(r));

    one_error(d, "{\"prompt\": \"x\", \"promt\": \"y\"}", 0, "promt",
              "unknown", "there is no input \"promt\"; the inputs are "
              "prompt, negative, seed, steps, cfg, sampler, denoise, width, "
              "flag, image, doc and count");

    /* declared outputs, node ids and slots are no inputs either */
    one_error(d, "{\"prompt\": \"x\", \"6.text\": \"y\"}", 0, "6.text",
              "unknown", "no input \"6.text\"");
    one_error(d, "{\"prompt\": \"x\", \"result\": \"y\"}", 0, "result",
              "unknown", "no input");

    one_error(d, "{}", 0, "prompt", "required", "prompt is required");
    one_error(d, NULL, 0, "prompt", "required", "prompt is required");
    one_error(d, "{\"prompt\": null}", 0, "prompt", "required",
              "is required");

    /* "inputs" that is no object */
    assert_int_equal(run(d, "[1]", 0, &r), -1);
    assert_int_equal(json_array_size(r.errors), 1);
    assert_error(&r, NULL, "type", "\"inputs\" must be an object");
    done(&r);

    assert_int_equal(run(d, "\"x\"", 1, &r), -1);
    done(&r);

    fs_deployment_free(d);
}


static void
test_all_errors(void **state)
{
    size_t            i;
    result_t          r;
    fs_deployment_t  *d;

    static const char  *expect[][2] = {
        { "prompt", "required" }, { "steps", "type" }, { "cfg", "range" },
        { "sampler", "option" }, { "flag", "type" }, { "image", "file" },
        { "bogus", "unknown" }, { "also_bogus", "unknown" }
    };

    (void) state;

    d = deployment();
    memset(&r, 0, sizeof(r));

    assert_int_equal(run(d, "{\"bogus\": 1, \"steps\": \"x\", \"cfg\": 99, "
                            "\"sampler\": \"zz\", \"flag\": \"yes\", "
                            "\"image\": \"aGVsbG8=\", \"also_bogus\": 2, "
                            "\"width\": 1024}", 0, &r), -1);

    /* declaration order, then the unknown names in the order given */
    assert_int_equal(json_array_size(r.errors), 8);

    for (i = 0; i < 8; i++) {
        json_t  *e = json_array_get(r.errors, i);

        assert_string_equal(json_string_value(json_object_get(e, "input")),
                            expect[i][0]);
        assert_string_equal(json_string_value(json_object_get(e, "code")),
                            expect[i][1]);
        assert_int_equal(json_object_size(e), 3);
    }

    /* nothing of a refused request is drawn or kept */
    assert_null(r.values);
    done(&r);

    fs_deployment_free(d);
}


static void
test_form_coercion(void **state)
{
    size_t            i;
    char              buf[256];
    result_t          r;
    fs_deployment_t  *d;

    static const char  *yes[] = { "true", "TRUE", "on", "On", "1", "yes" };
    static const char  *no[] = { "false", "False", "off", "0", "no", "NO" };

    (void) state;

    d = deployment();
    memset(&r, 0, sizeof(r));

    assert_int_equal(run(d, "{\"prompt\": \"a cat\", \"steps\": \"20\", "
                            "\"cfg\": \"1.5\", \"flag\": \"false\", "
                            "\"seed\": \"\", \"negative\": \"\", "
                            "\"width\": \" 1024 \", \"denoise\": \"1\", "
                            "\"sampler\": \"ddim\", \"image\": \"\", "
                            "\"count\": \"12\"}", 1, &r), 0);

    assert_string_equal(json_string_value(value(&r, "prompt")), "a cat");
    assert_true(json_is_integer(value(&r, "steps")));
    assert_int_equal(json_integer_value(value(&r, "steps")), 20);
    assert_true(json_is_real(value(&r, "cfg")));
    assert_true(json_real_value(value(&r, "cfg")) == 1.5);
    assert_true(json_is_false(value(&r, "flag")));
    assert_int_equal(json_integer_value(value(&r, "width")), 1024);
    assert_true(json_is_real(value(&r, "denoise")));
    assert_int_equal(json_integer_value(value(&r, "count")), 12);

    /* empty strings are "not given": a seed is drawn, no value kept */
    assert_int_equal(json_integer_value(value(&r, "seed")),
                     1000003 % 9007199254740992LL);
    assert_int_equal(r.rng.calls, 1);
    assert_null(value(&r, "negative"));
    assert_null(value(&r, "image"));
    done(&r);

    for (i = 0; i < 6; i++) {
        snprintf(buf, sizeof(buf), "{\"prompt\": \"x\", \"flag\": \"%s\"}",
                 yes[i]);
        assert_int_equal(run(d, buf, 1, &r), 0);
        assert_true(json_is_true(value(&r, "flag")));
        done(&r);

        snprintf(buf, sizeof(buf), "{\"prompt\": \"x\", \"flag\": \"%s\"}",
                 no[i]);
        assert_int_equal(run(d, buf, 1, &r), 0);
        assert_true(json_is_false(value(&r, "flag")));
        done(&r);
    }

    /* whole numbers written otherwise are integers too */
    assert_int_equal(run(d, "{\"prompt\": \"x\", \"steps\": \"20.0\"}", 1,
                         &r), 0);
    assert_int_equal(json_integer_value(value(&r, "steps")), 20);
    done(&r);

    assert_int_equal(run(d, "{\"prompt\": \"x\", \"steps\": \"4e1\"}", 1,
                         &r), 0);
    assert_int_equal(json_integer_value(value(&r, "steps")), 40);
    done(&r);

    one_error(d, "{\"prompt\": \"x\", \"steps\": \"1.5\"}", 1, "steps",
              "type", "steps must be an integer (a whole number), not "
              "\"1.5\"");
    one_error(d, "{\"prompt\": \"x\", \"steps\": \"abc\"}", 1, "steps",
              "type", "not \"abc\"");
    one_error(d, "{\"prompt\": \"x\", \"steps\": \"0x10\"}", 1, "steps",
              "type", "must be an integer");
    one_error(d, "{\"prompt\": \"x\", \"steps\": \"1 2\"}", 1, "steps",
              "type", "must be an integer");
    one_error(d, "{\"prompt\": \"x\", \"steps\": \" \"}", 1, "steps",
              "type", "must be an integer");
    one_error(d, "{\"prompt\": \"x\", \"steps\": \"99\"}", 1, "steps",
              "range", "at most 50");
    one_error(d, "{\"prompt\": \"x\", \"cfg\": \"nan\"}", 1, "cfg", "type",
              "cfg must be a number, not \"nan\"");
    one_error(d, "{\"prompt\": \"x\", \"cfg\": \"inf\"}", 1, "cfg", "type",
              "must be a number");
    one_error(d, "{\"prompt\": \"x\", \"cfg\": \"1e999\"}", 1, "cfg", "type",
              "must be a number");
    one_error(d, "{\"prompt\": \"x\", \"flag\": \"maybe\"}", 1, "flag",
              "type", "flag must be true or false (or on/off, yes/no, 1/0), "
              "not \"maybe\"");

    /* an empty required field is missing */
    one_error(d, "{\"prompt\": \"\"}", 1, "prompt", "required",
              "prompt is required");

    /* a long value is cut in the message, between characters */
    one_error(d, "{\"prompt\": \"x\", \"steps\": \"\xc3\xa9\xc3\xa9\xc3\xa9"
              "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
              "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
              "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
              "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
              "x\xc3\xa9\xc3\xa9\"}", 1, "steps", "type", "...\"");

    fs_deployment_free(d);
}


static void
test_random(void **state)
{
    int               i;
    result_t          r;
    json_int_t        v;
    fs_deployment_t  *d;

    (void) state;

    d = deployment();
    memset(&r, 0, sizeof(r));

    /* without min and max: [0, 2^53 - 1] */
    r.rng.value = 0x123456789abcdefULL;
    assert_int_equal(run(d, "{\"prompt\": \"x\", \"count\": 15}", 0, &r), 0);
    assert_int_equal(json_integer_value(value(&r, "seed")),
                     920735923817967LL);
    assert_int_equal(json_integer_value(value(&r, "count")), 15);
    assert_int_equal(r.rng.calls, 1);
    done(&r);

    r.rng.value = UINT64_MAX;
    assert_int_equal(run(d, "{\"prompt\": \"x\"}", 0, &r), 0);
    assert_int_equal(json_integer_value(value(&r, "seed")),
                     9007199254740991LL);
    /* with min=10 max=20: 2^64 - 1 = 4 (mod 11) */
    assert_int_equal(json_integer_value(value(&r, "count")), 14);
    done(&r);

    /* given seeds are used as they are; no draw */
    assert_int_equal(run(d, "{\"prompt\": \"x\", \"seed\": "
                            "9223372036854775807, \"count\": 20}", 0, &r), 0);
    assert_int_equal(json_integer_value(value(&r, "seed")),
                     9223372036854775807LL);
    assert_int_equal(r.rng.calls, 0);
    done(&r);

    /* an rng stuck below the rejection limit does not hang */
    r.rng.value = 1;
    assert_int_equal(run(d, "{\"prompt\": \"x\", \"seed\": 1}", 0, &r), 0);
    assert_int_equal(json_integer_value(value(&r, "count")), 11);
    assert_int_equal(r.rng.calls, 1 + 64);
    done(&r);

    /* the system's rng */
    for (i = 0; i < 20; i++) {
        json_t      *values, *errors, *given;
        fs_file_t   *files;
        size_t       nfiles;

        given = parse("{\"prompt\": \"x\"}");
        assert_int_equal(fs_inputs_validate(d, given, 0, NULL, 0, NULL, NULL,
                                            &values, &files, &nfiles,
                                            &errors), 0);
        v = json_integer_value(json_object_get(values, "count"));
        assert_true(v >= 10 && v <= 20);
        v = json_integer_value(json_object_get(values, "seed"));
        assert_true(v >= 0 && v <= 9007199254740991LL);

        json_decref(given);
        json_decref(values);
        fs_files_free(files, nfiles);
    }

    fs_deployment_free(d);
}


static void
test_files_json(void **state)
{
    json_t           *expect;
    result_t          r;
    fs_deployment_t  *d;

    (void) state;

    d = deployment();
    memset(&r, 0, sizeof(r));

    assert_int_equal(run(d, "{\"prompt\": \"x\", \"image\": "
                            "\"data:image/png;base64," PNG_B64 "\", "
                            "\"doc\": \"JVBERi0xLjQK\"}", 0, &r), 0);

    assert_int_equal(r.nfiles, 2);
    assert_string_equal(r.files[0].input, "image");
    assert_string_equal(r.files[0].filename, "image.png");
    assert_string_equal(r.files[0].content_type, "image/png");
    assert_int_equal(r.files[0].len, sizeof(PNG_BYTES) - 1);
    assert_memory_equal(r.files[0].data, PNG_BYTES, sizeof(PNG_BYTES) - 1);

    /* no type known: no extension made up */
    assert_string_equal(r.files[1].input, "doc");
    assert_string_equal(r.files[1].filename, "doc");
    assert_string_equal(r.files[1].content_type, "application/octet-stream");
    assert_memory_equal(r.files[1].data, "%PDF-1.4\n", 9);

    expect = parse("{\"filename\": \"image.png\", "
                   "\"content_type\": \"image/png\", \"size\": 13}");
    assert_true(json_equal(value(&r, "image"), expect));
    json_decref(expect);
    done(&r);

    /* plain base64, URL-safe without padding; a data: URL's own type */
    assert_int_equal(run(d, "{\"prompt\": \"x\", \"image\": \"" PNG_B64URL
                            "\", \"doc\": \"data:Application/PDF;base64,"
                            "JVBERi0xLjQK\"}", 0, &r), 0);
    assert_int_equal(r.files[0].len, sizeof(PNG_BYTES) - 1);
    assert_memory_equal(r.files[0].data, PNG_BYTES, sizeof(PNG_BYTES) - 1);
    assert_string_equal(r.files[1].content_type, "application/pdf");
    assert_string_equal(r.files[1].filename, "doc.pdf");
    done(&r);

    /* the bytes, not the claim, say what a file is */
    assert_int_equal(run(d, "{\"prompt\": \"x\", \"image\": "
                            "\"data:image/gif;base64,/9j/4AAQSkZJRg==\"}", 0,
                         &r), 0);
    assert_string_equal(r.files[0].content_type, "image/jpeg");
    assert_string_equal(r.files[0].filename, "image.jpg");
    done(&r);

    one_error(d, "{\"prompt\": \"x\", \"image\": \"not base64!\"}", 0,
              "image", "file", "image is not a data: URL or base64: it is "
              "not base64");
    one_error(d, "{\"prompt\": \"x\", \"image\": \"aGVsbG8=\"}", 0, "image",
              "file", "image must be an image (PNG, JPEG, GIF, WebP, BMP or "
              "TIFF), but its bytes are none of these");
    one_error(d, "{\"prompt\": \"x\", \"image\": \"" WAV_B64 "\"}", 0,
              "image", "file", "but this is audio/wav");
    one_error(d, "{\"prompt\": \"x\", \"image\": \"\"}", 0, "image", "file",
              "image is empty");
    one_error(d, "{\"prompt\": \"x\", \"image\": \"data:image/png;base64,\"}",
              0, "image", "file", "image is empty");
    one_error(d, "{\"prompt\": \"x\", \"image\": 5}", 0, "image", "type",
              "image must be a file: a data: URL or a base64 string");
    one_error(d, "{\"prompt\": \"x\", \"image\": {\"filename\": \"a.png\"}}",
              0, "image", "type", "not an object");

    /* any bytes for a file input */
    assert_int_equal(run(d, "{\"prompt\": \"x\", \"doc\": \"aGVsbG8=\"}", 0,
                         &r), 0);
    assert_int_equal(r.nfiles, 1);
    done(&r);

    fs_deployment_free(d);
}


static fs_part_t
part(const char *name, const char *filename, const char *type,
    const char *data, size_t len)
{
    fs_part_t  p;

    memset(&p, 0, sizeof(p));
    p.name = (char *) name;
    p.filename = (char *) filename;
    p.content_type = (char *) type;
    p.data = (const unsigned char *) data;
    p.len = len;

    return p;
}


static void
test_files_parts(void **state)
{
    char              longname[200];
    result_t          r;
    fs_part_t         parts[4];
    fs_deployment_t  *d;

    (void) state;

    d = deployment();
    memset(&r, 0, sizeof(r));

    parts[0] = part("image", "../../etc/my photo (1).PNG", "image/png",
                    JPEG_BYTES, sizeof(JPEG_BYTES) - 1);
    parts[1] = part("doc", ".hidden", "Text/Plain; charset=utf-8", "hi", 2);

    assert_int_equal(run_parts(d, "{\"prompt\": \"x\"}", 1, parts, 2, &r),
                     0);
    assert_int_equal(r.nfiles, 2);
    assert_string_equal(r.files[0].filename, "my_photo_1_.PNG");
    assert_string_equal(r.files[0].content_type, "image/jpeg");
    assert_int_equal(r.files[0].len, sizeof(JPEG_BYTES) - 1);

    /* the files are copies: the body may go */
    assert_ptr_not_equal(r.files[0].data, parts[0].data);

    assert_string_equal(r.files[1].filename, "hidden.txt");
    assert_string_equal(r.files[1].content_type, "text/plain");
    assert_string_equal(json_string_value(json_object_get(value(&r, "doc"),
                                                          "filename")),
                        "hidden.txt");
    done(&r);

    /* long names keep their extension; odd ones fall back to the input */
    memset(longname, 'a', 150);
    strcpy(longname + 150, ".png");
    parts[0] = part("image", longname, NULL, PNG_BYTES,
                    sizeof(PNG_BYTES) - 1);
    parts[1] = part("doc", "C:\\Users\\x\\.....", "image/png\r\nX-Evil: 1",
                    "hi", 2);

    assert_int_equal(run_parts(d, "{\"prompt\": \"x\"}", 1, parts, 2, &r),
                     0);
    assert_int_equal(strlen(r.files[0].filename), 100);
    assert_string_equal(r.files[0].filename + 96, ".png");
    assert_int_equal(strspn(r.files[0].filename, "a"), 96);
    assert_string_equal(r.files[1].filename, "doc");
    assert_string_equal(r.files[1].content_type, "application/octet-stream");
    done(&r);

    parts[0] = part("image", "\xc3\xa9vil\r\n.png", NULL, PNG_BYTES,
                    sizeof(PNG_BYTES) - 1);
    assert_int_equal(run_parts(d, "{\"prompt\": \"x\"}", 1, parts, 1, &r),
                     0);
    assert_string_equal(r.files[0].filename, "vil_.png");
    done(&r);

    /* a browser's empty file control is "not given" */
    parts[0] = part("image", "", "application/octet-stream", "", 0);
    assert_int_equal(run_parts(d, "{\"prompt\": \"x\"}", 1, parts, 1, &r),
                     0);
    assert_int_equal(r.nfiles, 0);
    assert_null(value(&r, "image"));
    done(&r);

    /* the last part of a name wins */
    parts[0] = part("image", "a.png", NULL, "junk", 4);
    parts[1] = part("image", "b.png", NULL, PNG_BYTES, sizeof(PNG_BYTES) - 1);
    assert_int_equal(run_parts(d, "{\"prompt\": \"x\"}", 1, parts, 2, &r),
                     0);
    assert_int_equal(r.nfiles, 1);
    assert_string_equal(r.files[0].filename, "b.png");
    done(&r);

    parts[0] = part("image", "x.png", "image/png", "", 0);
    assert_int_equal(run_parts(d, "{\"prompt\": \"x\"}", 1, parts, 1, &r),
                     -1);
    assert_error(&r, "image", "file", "image is empty");
    done(&r);

    parts[0] = part("image", "x.png", "image/png", "GIF87a", 6);
    parts[1] = part("prompt", "prompt.txt", "text/plain", "a cat", 5);
    parts[2] = part("nope", "n.png", NULL, "x", 1);
    parts[3] = part("\xff\x01", "n.png", NULL, "x", 1);
    assert_int_equal(run_parts(d, "{\"image\": \"" PNG_B64 "\"}", 1, parts,
                               4, &r), -1);
    assert_int_equal(json_array_size(r.errors), 5);
    assert_error(&r, "prompt", "required", "prompt is required");
    assert_error(&r, "image", "file", "image is given twice");
    assert_error(&r, "nope", "unknown", "there is no input \"nope\"");
    assert_error(&r, "? ", "unknown", "there is no input \"? \"");

    /* a file for prompt: after "required" about the same input */
    assert_string_equal(json_string_value(json_object_get(
        json_array_get(r.errors, 2), "code")), "type");
    assert_true(strstr(json_string_value(json_object_get(
        json_array_get(r.errors, 2), "message")),
        "prompt is text, not a file") != NULL);
    done(&r);

    fs_deployment_free(d);
}


static void
test_required_file(void **state)
{
    result_t          r;
    fs_part_t         parts[1];
    fs_deployment_t  *d;

    static const char  wf[] =
        "{\"10\": {\"class_type\": \"LoadImage\","
        "          \"inputs\": {\"image\": \"example.png\"}},"
        " \"14\": {\"class_type\": \"SaveImage\", \"inputs\": {"
        "          \"filename_prefix\": \"invert\", \"images\": [\"10\", 0]}}}";

    (void) state;

    d = load("wf.json", wf, sizeof(wf) - 1);
    declare(d, "image", "10.image", "type=image required");
    declare_output(d, "result", "14");
    check(d);

    memset(&r, 0, sizeof(r));

    one_error(d, "{}", 0, "image", "required", "image is required");
    one_error(d, "{\"image\": \"\"}", 1, "image", "required",
              "image is required");

    parts[0] = part("image", "", NULL, "", 0);
    assert_int_equal(run_parts(d, NULL, 1, parts, 1, &r), -1);
    assert_error(&r, "image", "required", "image is required");
    done(&r);

    /* no inputs but this one */
    one_error(d, "{\"image\": \"" PNG_B64 "\", \"x\": 1}", 0, "x", "unknown",
              "there is no input \"x\"; the inputs are image");

    fs_deployment_free(d);
}


static json_t *
slot(json_t *graph, const char *node, const char *input)
{
    return json_object_get(json_object_get(json_object_get(graph, node),
                                           "inputs"), input);
}


/* sets NODE.INPUT of a graph, for the expected prompt */

static void
set(json_t *graph, const char *node, const char *input, json_t *v)
{
    json_object_set_new(json_object_get(json_object_get(graph, node),
                                        "inputs"), input, v);
}


/* the template's text is the full dump of fs_prompt_build(), byte for byte */

static void
expect_same_text(const fs_deployment_t *d, json_t *values, const char *prefix)
{
    char    *fast, *slow;
    json_t  *prompt;

    prompt = fs_prompt_build(d, values, NULL, prefix);
    assert_non_null(prompt);
    slow = json_dumps(prompt, JSON_COMPACT);
    fast = fs_prompt_text(d, values, prefix);
    assert_non_null(fast);

    if (strcmp(fast, slow) != 0) {
        print_error("template text\n%s\nis not\n%s\n", fast, slow);
        fail();
    }

    free(fast);
    free(slow);
    json_decref(prompt);
}


static void
test_prompt_text(void **state)
{
    result_t          r;
    json_t           *values;
    fs_deployment_t  *d;

    (void) state;

    d = deployment();
    assert_non_null(d->prompt_template);
    memset(&r, 0, sizeof(r));

    assert_int_equal(run(d, "{\"prompt\": \"a \\\"dog\\\" \\u00e9\\n\", "
                            "\"steps\": 30, \"cfg\": 5.25, \"flag\": false, "
                            "\"seed\": 7, \"image\": \"" PNG_B64 "\", "
                            "\"doc\": \"aGk=\"}", 0, &r), 0);
    expect_same_text(d, r.values, "flowscale/RUN1");
    expect_same_text(d, r.values, NULL);
    expect_same_text(d, r.values, "a \"quoted\" prefix");
    done(&r);

    /* inputs not given keep the workflow's values */
    values = json_object();
    expect_same_text(d, values, "p");

    /* a value that does not fit its input: NULL, as fs_prompt_build */
    json_object_set_new(values, "steps", json_string("many"));
    assert_null(fs_prompt_text(d, values, "p"));
    json_decref(values);

    fs_deployment_free(d);

    /* a workflow that holds the marker itself has no template, same text */
    d = deployment();
    json_object_set_new(json_object_get(json_object_get(d->workflow, "6"),
                                        "inputs"),
                        "note", json_string("\001fs0\001"));
    assert_int_equal(fs_prompt_prepare(d), 0);
    assert_null(d->prompt_template);
    values = json_pack("{s:s}", "prompt", "x");
    expect_same_text(d, values, "p");
    json_decref(values);
    fs_deployment_free(d);
}


static void
test_prompt_build(void **state)
{
    result_t          r;
    json_t           *before, *prompt, *expect, *uploaded, *values;
    fs_deployment_t  *d;

    (void) state;

    d = deployment();
    memset(&r, 0, sizeof(r));
    before = json_deep_copy(d->workflow);

    assert_int_equal(run(d, "{\"prompt\": \"a dog\", \"steps\": 30, "
                            "\"cfg\": 5, \"flag\": false, \"seed\": 7, "
                            "\"image\": \"" PNG_B64 "\", \"doc\": \"aGk=\"}",
                         0, &r), 0);

    uploaded = parse("{\"image\": \"sub/in (1).png\", \"doc\": \"d.bin\", "
                     "\"prompt\": \"not used\"}");
    prompt = fs_prompt_build(d, r.values, uploaded, "flowscale/RUN1");
    assert_non_null(prompt);

    /* the workflow itself never changes */
    assert_true(json_equal(d->workflow, before));

    /* exactly these slots change, with these types; nothing else */
    expect = json_deep_copy(before);
    set(expect, "6", "text", json_string("a dog"));
    set(expect, "3", "steps", json_integer(30));
    set(expect, "3", "cfg", json_real(5.0));
    set(expect, "3", "seed", json_integer(7));
    set(expect, "3", "denoise", json_real(0.5));
    set(expect, "5", "width", json_integer(512));
    set(expect, "11", "value", json_false());
    set(expect, "10", "image", json_string("sub/in (1).png"));
    set(expect, "16", "file", json_string("d.bin"));
    set(expect, "17", "value", json_integer(10 + 1000003 % 11));
    set(expect, "9", "filename_prefix", json_string("flowscale/RUN1"));
    set(expect, "12", "filename_prefix", json_string("flowscale/RUN1"));

    if (!json_equal(prompt, expect)) {
        char  *a = json_dumps(prompt, JSON_SORT_KEYS);
        char  *b = json_dumps(expect, JSON_SORT_KEYS);
        print_error("prompt\n%s\nis not\n%s\n", a, b);
        free(a);
        free(b);
        fail();
    }

    /* JSON types, not look-alikes: ComfyUI would read "false" as True */
    assert_true(json_is_false(json_object_get(json_object_get(
        json_object_get(prompt, "11"), "inputs"), "value")));
    assert_true(json_is_real(json_object_get(json_object_get(
        json_object_get(prompt, "3"), "inputs"), "cfg")));

    /* the linked prefix, the Preview node and node 18 are as they were */
    assert_true(json_equal(json_object_get(prompt, "14"),
                           json_object_get(before, "14")));
    assert_null(json_object_get(json_object_get(json_object_get(prompt, "15"),
                                                "inputs"), "filename_prefix"));
    assert_int_equal(json_object_size(prompt), json_object_size(before));

    json_decref(prompt);
    json_decref(expect);

    /* without a prefix, prefixes stay */
    prompt = fs_prompt_build(d, r.values, uploaded, NULL);
    assert_non_null(prompt);
    assert_string_equal(json_string_value(json_object_get(json_object_get(
        json_object_get(prompt, "9"), "inputs"), "filename_prefix")),
        "ComfyUI");
    json_decref(prompt);

    /* before the upload, the safe file name; then the uploaded name */
    prompt = fs_prompt_build(d, r.values, NULL, "p");
    assert_non_null(prompt);
    assert_string_equal(json_string_value(slot(prompt, "10", "image")),
                        "image.png");
    assert_string_equal(json_string_value(slot(prompt, "16", "file")),
                        "doc");
    assert_int_equal(fs_prompt_set_uploads(d, prompt, uploaded), 0);
    assert_string_equal(json_string_value(slot(prompt, "10", "image")),
                        "sub/in (1).png");
    assert_string_equal(json_string_value(slot(prompt, "16", "file")),
                        "d.bin");

    /* "prompt" is no file input: not written */
    assert_string_equal(json_string_value(slot(prompt, "6", "text")),
                        "a dog");
    json_decref(prompt);

    /* a file value without its upload is a bug of the caller */
    json_object_del(uploaded, "image");
    assert_null(fs_prompt_build(d, r.values, uploaded, "p"));
    json_decref(uploaded);
    done(&r);

    prompt = json_deep_copy(before);
    uploaded = parse("{\"image\": 5}");
    assert_int_equal(fs_prompt_set_uploads(d, prompt, uploaded), -1);
    json_decref(uploaded);
    json_decref(prompt);

    /* only declared names are written, wherever values says otherwise */
    values = parse("{\"prompt\": \"ok\", \"6.text\": \"evil\", "
                   "\"text\": \"evil\", \"9\": {\"class_type\": \"X\"}, "
                   "\"result\": \"evil\", \"image\": \"own.png\"}");
    prompt = fs_prompt_build(d, values, NULL, "p");
    assert_non_null(prompt);

    expect = json_deep_copy(before);
    set(expect, "6", "text", json_string("ok"));
    set(expect, "10", "image", json_string("own.png"));
    set(expect, "9", "filename_prefix", json_string("p"));
    set(expect, "12", "filename_prefix", json_string("p"));
    assert_true(json_equal(prompt, expect));
    json_decref(prompt);
    json_decref(expect);
    json_decref(values);

    /* values that do not fit their slot are refused, never stringified */
    values = parse("{\"steps\": \"20\"}");
    assert_null(fs_prompt_build(d, values, NULL, "p"));
    json_decref(values);

    values = parse("{\"flag\": \"false\"}");
    assert_null(fs_prompt_build(d, values, NULL, "p"));
    json_decref(values);

    values = parse("{\"steps\": 20.0, \"cfg\": 3}");
    prompt = fs_prompt_build(d, values, NULL, "p");
    assert_true(json_is_integer(json_object_get(json_object_get(
        json_object_get(prompt, "3"), "inputs"), "steps")));
    assert_true(json_is_real(json_object_get(json_object_get(
        json_object_get(prompt, "3"), "inputs"), "cfg")));
    json_decref(prompt);
    json_decref(values);

    /* form values go in typed too */
    assert_int_equal(run(d, "{\"prompt\": \"x\", \"flag\": \"false\", "
                            "\"steps\": \"8\"}", 1, &r), 0);
    prompt = fs_prompt_build(d, r.values, NULL, "p");
    assert_true(json_is_false(json_object_get(json_object_get(
        json_object_get(prompt, "11"), "inputs"), "value")));
    assert_int_equal(json_integer_value(json_object_get(json_object_get(
        json_object_get(prompt, "3"), "inputs"), "steps")), 8);
    json_decref(prompt);
    done(&r);

    assert_true(json_equal(d->workflow, before));
    json_decref(before);
    fs_deployment_free(d);
}


static char *
read_conf(const char *name, size_t *len)
{
    char   path[256], *buf;
    FILE  *f;
    long   n;

    snprintf(path, sizeof(path), "../../conf/workflows/%s", name);
    f = fopen(path, "rb");

    if (f == NULL) {
        snprintf(path, sizeof(path), "conf/workflows/%s", name);
        f = fopen(path, "rb");
    }

    if (f == NULL) {
        fail_msg("cannot open conf/workflows/%s", name);
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


static void
test_conf_workflows(void **state)
{
    char             *text;
    size_t            len;
    json_t           *prompt, *uploaded;
    result_t          r;
    fs_part_t         parts[1];
    fs_deployment_t  *d;

    (void) state;

    memset(&r, 0, sizeof(r));

    /* design.md's example, on conf/workflows/txt2img.json */
    text = read_conf("txt2img.json", &len);
    d = load("txt2img.json", text, len);
    free(text);

    declare(d, "prompt", "6.text", "label=Prompt");
    declare(d, "seed", "3.seed", "default=random");
    declare(d, "steps", "3.steps", "min=1 max=50");
    declare_output(d, "result", "9");
    check(d);

    assert_int_equal(run(d, "{\"prompt\": \"a cat\", \"steps\": 20}", 0, &r),
                     0);
    prompt = fs_prompt_build(d, r.values, NULL, "flowscale/0193a4c2");
    assert_string_equal(json_string_value(slot(prompt, "6", "text")),
                        "a cat");
    assert_int_equal(json_integer_value(slot(prompt, "3", "seed")),
                     1000003);
    assert_string_equal(json_string_value(slot(prompt, "9",
                                               "filename_prefix")),
                        "flowscale/0193a4c2");
    assert_true(json_is_integer(slot(prompt, "3", "cfg")));
    json_decref(prompt);
    done(&r);
    fs_deployment_free(d);

    /* FlowScale's own I/O nodes: inputs and outputs found by label */
    text = read_conf("fs_io.json", &len);
    d = load("fs_io.json", text, len);
    free(text);
    check(d);

    assert_int_equal(run(d, "{\"caption\": \"hi\", \"image_size\": \"128\"}",
                         1, &r), 0);
    prompt = fs_prompt_build(d, r.values, NULL, "flowscale/r");
    assert_string_equal(json_string_value(slot(prompt, "1", "default_value")),
                        "hi");
    assert_int_equal(json_integer_value(slot(prompt, "2", "default_value")),
                     128);
    assert_string_equal(json_string_value(slot(prompt, "4",
                                               "filename_prefix")),
                        "flowscale/r");
    assert_string_equal(json_string_value(slot(prompt, "5",
                                               "filename_prefix")),
                        "flowscale/r");
    json_decref(prompt);
    done(&r);

    one_error(d, "{\"caption\": 1}", 0, "caption", "type",
              "caption must be a string");
    fs_deployment_free(d);

    /* an image from a multipart part, on conf/workflows/invert.json */
    text = read_conf("invert.json", &len);
    d = load("invert.json", text, len);
    free(text);

    declare(d, "image", "10.image", "type=image required");
    declare(d, "blur", "13.blur_radius", "min=0 max=31");
    declare_output(d, "result", "14");
    check(d);

    parts[0] = part("image", "cat.png", "image/png", PNG_BYTES,
                    sizeof(PNG_BYTES) - 1);
    assert_int_equal(run_parts(d, "{\"blur\": \"3\"}", 1, parts, 1, &r), 0);
    uploaded = json_pack("{s:s}", "image", "cat (2).png");
    prompt = fs_prompt_build(d, r.values, uploaded, "flowscale/x");
    json_decref(uploaded);
    assert_string_equal(json_string_value(slot(prompt, "10", "image")),
                        "cat (2).png");
    assert_int_equal(json_integer_value(slot(prompt, "13", "blur_radius")),
                     3);
    assert_string_equal(json_string_value(slot(prompt, "14",
                                               "filename_prefix")),
                        "flowscale/x");
    json_decref(prompt);
    done(&r);

    fs_deployment_free(d);
}


static void
test_sniff(void **state)
{
    (void) state;

#define SNIFF(s)  fs_sniff((const unsigned char *) (s), sizeof(s) - 1)

    assert_string_equal(SNIFF(PNG_BYTES), "image/png");
    assert_string_equal(SNIFF(JPEG_BYTES), "image/jpeg");
    assert_string_equal(SNIFF("GIF89a..."), "image/gif");
    assert_string_equal(SNIFF("RIFF\0\0\0\0WEBPVP8 "), "image/webp");
    assert_string_equal(SNIFF("RIFF\0\0\0\0WAVEfmt "), "audio/wav");
    assert_string_equal(SNIFF("\0\0\0\x18" "ftypmp42"), "video/mp4");
    assert_string_equal(SNIFF("\0\0\0\x14" "ftypqt  "), "video/quicktime");
    assert_string_equal(SNIFF("\x1a\x45\xdf\xa3\x9f\x42\x82\x84webm"),
                        "video/webm");
    assert_string_equal(SNIFF("fLaC\0\0\0\x22"), "audio/flac");
    assert_string_equal(SNIFF("ID3\x04\0"), "audio/mpeg");
    assert_string_equal(SNIFF("\xff\xfb\x90\x64"), "audio/mpeg");
    assert_string_equal(SNIFF("OggS\0\x02"), "audio/ogg");
    assert_string_equal(SNIFF("II*\0\x08\0\0\0"), "image/tiff");
    assert_string_equal(SNIFF("BM\0\0\0\0\0\0\0\0\x36\0\0\0\x28\0\0\0"),
                        "image/bmp");
    assert_null(SNIFF("BMP is a format"));
    assert_null(SNIFF("\x89PNG"));
    assert_null(SNIFF("RIFF\0\0\0\0AVI "));
    assert_null(SNIFF("hello"));
    assert_null(SNIFF(""));

#undef SNIFF
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_json_valid),
        cmocka_unit_test(test_json_types),
        cmocka_unit_test(test_range),
        cmocka_unit_test(test_option),
        cmocka_unit_test(test_unknown_required),
        cmocka_unit_test(test_all_errors),
        cmocka_unit_test(test_form_coercion),
        cmocka_unit_test(test_random),
        cmocka_unit_test(test_files_json),
        cmocka_unit_test(test_files_parts),
        cmocka_unit_test(test_required_file),
        cmocka_unit_test(test_prompt_build),
        cmocka_unit_test(test_prompt_text),
        cmocka_unit_test(test_conf_workflows),
        cmocka_unit_test(test_sniff),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
