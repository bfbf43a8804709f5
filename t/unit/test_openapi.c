
/*
 * Unit tests of the OpenAPI document builder (issue 8): a deployment with
 * every input type, the request bodies, examples from the workflow's
 * current values, the routes and their status codes, security only when
 * keys are required, and the server document of several deployments.
 *
 * Built and run by "make unit" from inside t/unit.
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
#include "ngx_http_flowscale_io.h"
#include "ngx_http_flowscale_openapi_doc.h"


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
    " \"9\": {\"class_type\": \"SaveImage\","
    "    \"inputs\": {\"filename_prefix\": \"ComfyUI\","
    "                \"images\": [\"3\", 0]}},"
    " \"10\": {\"class_type\": \"LoadImage\","
    "    \"inputs\": {\"image\": \"example.png\"}},"
    " \"11\": {\"class_type\": \"PrimitiveBoolean\","
    "    \"inputs\": {\"value\": true}}}";


static fs_deployment_t *
every_type(void)
{
    fs_error_t        err;
    fs_deployment_t  *d;

    char *prompt[] = { "label=Prompt", "description=What to draw",
                       "required" };
    char *seed[] = { "default=random" };
    char *steps[] = { "min=1", "max=50" };
    char *cfg[] = { "min=0.5", "max=20" };
    char *sampler[] = { "options=euler|ddim" };
    char *image[] = { "type=image", "required", "label=Source" };
    char *flag[] = { "label=Flag" };
    char *width[] = { "options=256|512|768" };
    char *out[] = { "label=Result" };

    d = fs_deployment_new();
    assert_non_null(d);
    assert_int_equal(fs_workflow_load(d, "wf.json", WF, sizeof(WF) - 1,
                                      &err), 0);

#define declare(n, slot, o)                                                   \
    assert_int_equal(fs_input_declare(d, n, slot, sizeof(o) / sizeof(o[0]),  \
                                      o, NULL, &err), 0)

    declare("prompt", "6.text", prompt);
    declare("seed", "3.seed", seed);
    declare("steps", "3.steps", steps);
    declare("cfg", "3.cfg", cfg);
    declare("sampler", "3.sampler_name", sampler);
    declare("image", "10.image", image);
    declare("flag", "11.value", flag);
    declare("width", "5.width", width);

    assert_int_equal(fs_output_declare(d, "result", "9", 1, out, NULL,
                                       &err), 0);
    assert_int_equal(fs_deployment_check(d, &err), 0);

    return d;
}


static json_t *
get(json_t *v, const char *path)
{
    char        key[256];
    const char *p, *slash;
    size_t      n;

    /* "a/b/c"; "~1" in a key is "/" as in JSON pointers */
    for (p = path; v && *p; p = *slash ? slash + 1 : slash) {
        slash = p;
        n = 0;

        while (*slash && *slash != '/' && n + 1 < sizeof(key)) {
            if (slash[0] == '~' && slash[1] == '1') {
                key[n++] = '/';
                slash += 2;
                continue;
            }
            key[n++] = *slash++;
        }

        key[n] = '\0';
        v = json_is_array(v) ? json_array_get(v, (size_t) atoi(key))
                             : json_object_get(v, key);
    }

    return v;
}


static void
assert_str(json_t *v, const char *expected)
{
    if (!json_is_string(v) || strcmp(json_string_value(v), expected) != 0) {
        char  *t = v ? json_dumps(v, JSON_ENCODE_ANY) : NULL;
        fail_msg("\"%s\" expected, got %s", expected, t ? t : "nothing");
    }
}


static void
test_document(void **state)
{
    json_t           *doc, *s, *ops;
    fs_deployment_t  *d;
    fs_openapi_loc_t  loc;

    (void) state;

    d = every_type();

    loc.deployment = d;
    loc.name = "txt2img";
    loc.location = "/v1/txt2img";
    loc.base = "/v1/txt2img";
    loc.api_key = 1;

    doc = fs_openapi_document(&loc, 1, json_string("\x02"));
    assert_non_null(doc);

    assert_str(get(doc, "openapi"), "3.1.0");
    assert_str(get(doc, "info/version"), d->version);
    assert_str(get(doc, "servers"), "\x02");

    /* the JSON body's inputs */
    s = get(doc, "components/schemas/txt2img.Inputs/properties");
    assert_non_null(s);
    assert_str(get(s, "prompt/type"), "string");
    assert_str(get(s, "prompt/title"), "Prompt");
    assert_str(get(s, "prompt/description"), "What to draw");
    assert_str(get(s, "seed/type"), "integer");
    assert_null(get(s, "seed/default"));
    assert_int_equal(json_integer_value(get(s, "steps/default")), 20);
    assert_int_equal(json_integer_value(get(s, "steps/minimum")), 1);
    assert_int_equal(json_integer_value(get(s, "steps/maximum")), 50);
    assert_str(get(s, "cfg/type"), "number");
    assert_true(json_real_value(get(s, "cfg/minimum")) == 0.5);
    assert_str(get(s, "sampler/enum/1"), "ddim");
    assert_str(get(s, "image/contentEncoding"), "base64");
    assert_str(get(s, "flag/type"), "boolean");
    assert_true(json_is_true(get(s, "flag/default")));
    assert_str(get(doc, "components/schemas/txt2img.Inputs/required/0"),
               "prompt");
    assert_str(get(doc, "components/schemas/txt2img.Inputs/required/1"),
               "image");

    ops = get(doc, "paths/~1v1~1txt2img");
    assert_non_null(ops);
    assert_str(get(ops, "post/operationId"), "txt2img.createRun");

    /* multipart: files are binary; urlencoded: data: URLs */
    s = get(ops, "post/requestBody/content/multipart~1form-data/schema");
    assert_str(get(s, "properties/image/format"), "binary");
    assert_str(get(s, "properties/image/contentMediaType"), "image/*");
    assert_null(get(s, "properties/image/contentEncoding"));
    assert_str(get(s, "properties/steps/type"), "integer");
    s = get(ops, "post/requestBody/content/"
                 "application~1x-www-form-urlencoded");
    assert_str(get(s, "example/steps"), "20");
    assert_str(get(s, "schema/properties/image/contentEncoding"), "base64");

    /* the example: the workflow's values, no drawn seed */
    s = get(ops, "post/requestBody/content/application~1json/example/inputs");
    assert_str(get(s, "prompt"), "a cat");
    assert_int_equal(json_integer_value(get(s, "steps")), 20);
    assert_true(json_real_value(get(s, "cfg")) == 7.5);
    assert_str(get(s, "sampler"), "euler");
    assert_int_equal(json_integer_value(get(s, "width")), 512);
    assert_null(get(s, "seed"));
    assert_true(strncmp(json_string_value(get(s, "image")),
                        "data:image/png;base64,", 22) == 0);

    /* status codes */
    s = get(ops, "post/responses");
    assert_non_null(get(s, "202"));
    assert_non_null(get(s, "200"));
    assert_non_null(get(s, "401"));
    assert_non_null(get(s, "403"));
    assert_non_null(get(s, "413"));
    assert_non_null(get(s, "415"));
    assert_non_null(get(s, "422"));
    assert_non_null(get(s, "429"));
    assert_non_null(get(s, "502"));
    assert_non_null(get(s, "503"));
    assert_str(get(s, "202/content/application~1json/schema/$ref"),
               "#/components/schemas/txt2img.Run");
    assert_str(get(ops, "post/parameters/0/name"), "Prefer");
    assert_str(get(ops, "post/parameters/1/name"), "Idempotency-Key");
    assert_non_null(get(ops, "post/security/0/bearerAuth"));
    assert_non_null(get(ops, "post/security/1/apiKeyHeader"));
    assert_null(get(ops, "get/security"));

    assert_non_null(get(doc, "paths/~1v1~1txt2img~1runs/get"));
    assert_non_null(get(doc, "paths/~1v1~1txt2img~1runs~1{id}/delete/"
                             "responses/409"));
    assert_non_null(get(doc, "paths/~1v1~1txt2img~1runs~1{id}/get/"
                             "responses/404"));
    assert_non_null(get(doc, "paths/~1v1~1txt2img~1runs~1{id}~1events/get/"
                             "responses/200/content/text~1event-stream"));
    assert_str(get(doc, "paths/~1v1~1txt2img~1runs~1{id}~1outputs~1{name}~1"
                        "{n}/parameters/1/schema/enum/0"), "result");
    assert_non_null(get(doc, "paths/~1v1~1txt2img~1openapi.json/get"));

    assert_str(get(doc, "components/securitySchemes/bearerAuth/scheme"),
               "bearer");
    assert_str(get(doc, "components/securitySchemes/apiKeyHeader/name"),
               "X-API-Key");
    assert_non_null(get(doc, "components/schemas/Problem/properties/errors"));
    assert_non_null(get(doc, "components/schemas/RunList"));

    json_decref(doc);
    fs_deployment_free(d);
}


static void
test_public_and_server(void **state)
{
    json_t           *doc;
    fs_deployment_t  *d;
    fs_openapi_loc_t  locs[2];

    (void) state;

    d = every_type();

    locs[0].deployment = d;
    locs[0].name = "a";
    locs[0].location = "/v1/a";
    locs[0].base = "/v1/a/";
    locs[0].api_key = 0;
    locs[1] = locs[0];
    locs[1].name = "b";
    locs[1].location = "/v2/b";
    locs[1].base = "/v2/b";

    /* public: no security scheme at all, no 401 */
    doc = fs_openapi_document(locs, 1, json_array());
    assert_null(get(doc, "components/securitySchemes"));
    assert_null(get(doc, "paths/~1v1~1a~1/post/responses/401"));
    assert_int_equal(json_array_size(get(doc, "paths/~1v1~1a~1/post/"
                                              "security")), 0);
    assert_non_null(get(doc, "paths/~1v1~1a~1runs"));
    json_decref(doc);

    /* the server's document: both, one with keys */
    locs[1].api_key = 1;
    doc = fs_openapi_document(locs, 2, json_array());
    assert_str(get(doc, "info/title"), "FlowScale API: a, b");
    assert_non_null(get(doc, "paths/~1v1~1a~1/post"));
    assert_non_null(get(doc, "paths/~1v2~1b/post/responses/401"));
    assert_null(get(doc, "paths/~1v1~1a~1/post/responses/401"));
    assert_non_null(get(doc, "components/schemas/a.Inputs"));
    assert_non_null(get(doc, "components/schemas/b.Run"));
    assert_non_null(get(doc, "components/securitySchemes/bearerAuth"));
    assert_str(get(doc, "tags/1/name"), "b");
    json_decref(doc);

    fs_deployment_free(d);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_document),
        cmocka_unit_test(test_public_and_server),
    };

    return cmocka_run_group_tests_name("openapi", tests, NULL, NULL);
}
