/*
 * Unit tests of fs_capable(): node classes and listed values against a
 * backend's /object_info.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "ngx_http_flowscale_workflow.h"
#include "ngx_http_flowscale_capability.h"


static const char *WF =
    "{\"3\": {\"class_type\": \"KSampler\", \"inputs\": {\"seed\": 1,"
    " \"sampler_name\": \"euler\", \"model\": [\"4\", 0]}},"
    " \"4\": {\"class_type\": \"CheckpointLoaderSimple\","
    " \"inputs\": {\"ckpt_name\": \"sd15.safetensors\"}},"
    " \"10\": {\"class_type\": \"LoadImage\", \"inputs\": {\"image\": \"x.png\"}},"
    " \"9\": {\"class_type\": \"SaveImage\", \"inputs\": {\"images\": [\"3\", 0],"
    " \"filename_prefix\": \"a\"}}}";

static const char *INFO =
    "{\"KSampler\": {\"input\": {\"required\": {\"seed\": [\"INT\", {}],"
    " \"sampler_name\": [[\"euler\", \"ddim\"], {}], \"model\": [\"MODEL\", {}]}}},"
    " \"CheckpointLoaderSimple\": {\"input\": {\"required\":"
    " {\"ckpt_name\": [\"COMBO\", {\"options\": [\"sd15.safetensors\"]}]}}},"
    " \"LoadImage\": {\"input\": {\"required\": {\"image\": [[\"example.png\"],"
    " {\"image_upload\": true}]}}},"
    " \"SaveImage\": {\"input\": {\"required\": {\"images\": [\"IMAGE\", {}],"
    " \"filename_prefix\": [\"STRING\", {}]}}}}";


static fs_deployment_t *
load(const char *wf)
{
    fs_error_t        err;
    fs_deployment_t  *d;

    d = fs_deployment_new();
    assert_non_null(d);
    assert_int_equal(fs_workflow_load(d, "wf", wf, strlen(wf), &err), 0);
    assert_int_equal(fs_output_declare(d, "out", "9", 0, NULL, NULL, &err), 0);
    assert_int_equal(fs_deployment_check(d, &err), 0);

    return d;
}


static int
capable(fs_deployment_t *d, const char *info_text, char *reason)
{
    int      rc;
    json_t  *info;

    info = json_loads(info_text, 0, NULL);
    assert_non_null(info);

    reason[0] = '\0';
    rc = fs_capable(d, info, reason, 256);
    json_decref(info);

    return rc;
}


static void
test_capable(void **state)
{
    char              reason[256];
    fs_deployment_t  *d;

    (void) state;

    d = load(WF);

    /* the missing LoadImage file is not a reason: uploads replace it */
    assert_int_equal(capable(d, INFO, reason), 1);
    fs_deployment_free(d);
}


static void
test_missing_class(void **state)
{
    char              reason[256];
    fs_deployment_t  *d;

    (void) state;

    d = load("{\"9\": {\"class_type\": \"IPAdapterApply\", \"inputs\": {}}}");
    assert_int_equal(capable(d, INFO, reason), 0);
    assert_string_equal(reason, "no node class IPAdapterApply");
    fs_deployment_free(d);
}


static void
test_missing_model(void **state)
{
    char              reason[256];
    fs_deployment_t  *d;
    char              wf[1024];

    (void) state;

    strcpy(wf, WF);
    memcpy(strstr(wf, "sd15"), "sdxx", 4);

    d = load(wf);
    assert_int_equal(capable(d, INFO, reason), 0);
    assert_string_equal(reason, "model sdxx.safetensors missing (node 4, "
                                "CheckpointLoaderSimple)");
    fs_deployment_free(d);
}


static void
test_missing_option_unless_declared(void **state)
{
    char              reason[256];
    fs_error_t        err;
    fs_deployment_t  *d;
    char              wf[1024];

    (void) state;

    strcpy(wf, WF);
    memcpy(strstr(wf, "euler"), "heunx", 5);

    d = load(wf);
    assert_int_equal(capable(d, INFO, reason), 0);
    assert_string_equal(reason, "option heunx missing (node 3, KSampler)");
    fs_deployment_free(d);

    /* a declared input is the caller's to set: not checked here */
    d = fs_deployment_new();
    assert_int_equal(fs_workflow_load(d, "wf", wf, strlen(wf), &err), 0);
    assert_int_equal(fs_input_declare(d, "sampler", "3.sampler_name", 0, NULL,
                                      NULL, &err), 0);
    assert_int_equal(fs_output_declare(d, "out", "9", 0, NULL, NULL, &err), 0);
    assert_int_equal(fs_deployment_check(d, &err), 0);
    assert_int_equal(capable(d, INFO, reason), 1);
    fs_deployment_free(d);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_capable),
        cmocka_unit_test(test_missing_class),
        cmocka_unit_test(test_missing_model),
        cmocka_unit_test(test_missing_option_unless_declared),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
