
/*
 * libFuzzer target for the request body formats and input validation.
 *
 * The first byte picks what the rest is:
 *
 *   0  CONTENT-TYPE \n BODY     fs_multipart_parse, header as given
 *   1  BOUNDARY \n BODY         the same, "multipart/form-data; boundary="
 *                               prepended, so the fuzzer finds parts fast
 *   2  BODY                     fs_urlencoded_parse
 *   3  STRING                   fs_decode_file_string, then fs_sniff
 *   4  JSON                     fs_inputs_validate in JSON mode
 *
 * Parsed forms then go through fs_form_split and fs_inputs_validate in
 * form mode against a small deployment, and the result through
 * fs_prompt_build, as the HTTP layer does.  Everything is freed.
 */


#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_http_flowscale_workflow.h"
#include "ngx_http_flowscale_form.h"
#include "ngx_http_flowscale_inputs.h"


static const char  fuzz_workflow[] =
    "{\"3\": {\"class_type\": \"KSampler\", \"inputs\": {\"seed\": 1,"
    "  \"steps\": 20, \"cfg\": 7.5, \"sampler_name\": \"euler\","
    "  \"latent_image\": [\"5\", 0]}},"
    " \"5\": {\"class_type\": \"EmptyLatentImage\", \"inputs\": {"
    "  \"width\": 512, \"height\": 512, \"batch_size\": 1}},"
    " \"6\": {\"class_type\": \"CLIPTextEncode\", \"inputs\": {"
    "  \"text\": \"a cat\"}},"
    " \"9\": {\"class_type\": \"SaveImage\", \"inputs\": {"
    "  \"filename_prefix\": \"ComfyUI\", \"images\": [\"3\", 0]}},"
    " \"10\": {\"class_type\": \"LoadImage\", \"inputs\": {"
    "  \"image\": \"example.png\"}},"
    " \"11\": {\"class_type\": \"PrimitiveBoolean\", \"inputs\": {"
    "  \"value\": true}}}";

static const char  fuzz_io[] =
    "{\"inputs\": ["
    "  {\"name\": \"prompt\", \"node\": \"6.text\", \"required\": true},"
    "  {\"name\": \"seed\", \"node\": \"3.seed\", \"default\": \"random\"},"
    "  {\"name\": \"steps\", \"node\": \"3.steps\", \"min\": 1, \"max\": 50},"
    "  {\"name\": \"cfg\", \"node\": \"3.cfg\", \"max\": 30},"
    "  {\"name\": \"sampler\", \"node\": \"3.sampler_name\","
    "   \"options\": \"euler|ddim\"},"
    "  {\"name\": \"image\", \"node\": \"10.image\", \"type\": \"image\"},"
    "  {\"name\": \"flag\", \"node\": \"11.value\"}],"
    " \"outputs\": [{\"name\": \"result\", \"node\": \"9\"}]}";


static fs_deployment_t  *fuzz_d;


static void fuzz_validate(fs_part_t *parts, size_t n);
static void fuzz_validate_given(json_t *given, int form, fs_part_t *parts,
    size_t nfiles);


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
const char *__ubsan_default_options(void);


/* undefined behaviour is a crash too, not a line in the log */

const char *
__ubsan_default_options(void)
{
    return "halt_on_error=1:print_stacktrace=1";
}


static uint64_t
fuzz_rng(void *data)
{
    (void) data;
    return 0x123456789abcdefULL;
}


static fs_deployment_t *
fuzz_deployment(void)
{
    fs_error_t  err;

    if (fuzz_d != NULL) {
        return fuzz_d;
    }

    fuzz_d = fs_deployment_new();

    if (fuzz_d == NULL
        || fs_workflow_load(fuzz_d, "fuzz.json", fuzz_workflow,
                            sizeof(fuzz_workflow) - 1, &err) != 0
        || fs_io_load(fuzz_d, "io.json", fuzz_io, sizeof(fuzz_io) - 1, NULL,
                      &err) != 0
        || fs_deployment_check(fuzz_d, &err) != 0)
    {
        abort();
    }

    return fuzz_d;
}


/* what every successful parse promises */

static void
fuzz_check_parts(fs_part_t *parts, size_t n, const uint8_t *body,
    size_t len)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        if (parts[i].name == NULL || parts[i].name[0] == '\0') {
            abort();
        }

        if (parts[i].owned) {
            if (parts[i].data != parts[i].owned) {
                abort();
            }

        } else if (parts[i].len > 0
                   && (parts[i].data < body
                       || parts[i].data + parts[i].len > body + len))
        {
            abort();
        }
    }
}


static void
fuzz_validate(fs_part_t *parts, size_t n)
{
    char        err[256];
    size_t      nfiles;
    json_t     *given;

    if (fs_form_split(parts, n, &given, &nfiles, err, sizeof(err)) != 0) {
        if (err[0] == '\0') {
            abort();
        }
        return;
    }

    fuzz_validate_given(given, 1, parts, nfiles);
    json_decref(given);
}


static void
fuzz_validate_given(json_t *given, int form, fs_part_t *parts,
    size_t nfiles)
{
    char       *fast, *slow;
    size_t      nout;
    json_t     *values, *errors, *uploaded, *prompt;
    fs_file_t  *files;

    if (fs_inputs_validate(fuzz_deployment(), given, form, parts, nfiles,
                           fuzz_rng, NULL, &values, &files, &nout, &errors)
        == 0)
    {
        uploaded = json_pack("{s:s}", "image", "sub/in.png");
        prompt = fs_prompt_build(fuzz_deployment(), values, uploaded,
                                 "flowscale/run");

        /* validated values always fit their slots */
        if (prompt == NULL) {
            abort();
        }

        json_decref(prompt);

        /* the template's text is the full dump, byte for byte */
        prompt = fs_prompt_build(fuzz_deployment(), values, NULL,
                                 "flowscale/run");
        fast = fs_prompt_text(fuzz_deployment(), values, "flowscale/run");
        slow = prompt ? json_dumps(prompt, JSON_COMPACT) : NULL;

        if (fast == NULL || slow == NULL || strcmp(fast, slow) != 0) {
            abort();
        }

        free(fast);
        free(slow);
        json_decref(prompt);
        json_decref(uploaded);
        json_decref(values);
        fs_files_free(files, nout);

    } else {
        /* an error list, and a valid JSON document */
        char  *text = json_dumps(errors, 0);

        if (errors == NULL || json_array_size(errors) == 0 || text == NULL) {
            abort();
        }

        free(text);
        json_decref(errors);
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int             mode;
    char            err[256], *header, *media;
    size_t          n, hlen, outlen;
    fs_part_t      *parts;
    json_t         *given;
    const uint8_t  *nl, *body;
    unsigned char  *out;

    if (size == 0) {
        return 0;
    }

    mode = data[0] % 5;
    data++;
    size--;

    err[0] = '\0';

    switch (mode) {

    case 0:
    case 1:
        nl = memchr(data, '\n', size);
        hlen = nl ? (size_t) (nl - data) : size;
        body = nl ? nl + 1 : data + size;

        header = malloc(hlen + 64);
        if (header == NULL) {
            return 0;
        }

        n = 0;
        if (mode == 1) {
            strcpy(header, "multipart/form-data; boundary=");
            n = strlen(header);
        }

        memcpy(header + n, data, hlen);
        header[n + hlen] = '\0';

        if (fs_multipart_parse(header, body, data + size - body, &parts, &n,
                               err, sizeof(err))
            == 0)
        {
            fuzz_check_parts(parts, n, body, data + size - body);
            fuzz_validate(parts, n);
            fs_parts_free(parts, n);

        } else if (err[0] == '\0' || parts != NULL) {
            abort();
        }

        free(header);
        break;

    case 2:
        if (fs_urlencoded_parse(data, size, &parts, &n, err, sizeof(err))
            == 0)
        {
            fuzz_check_parts(parts, n, data, size);
            fuzz_validate(parts, n);
            fs_parts_free(parts, n);

        } else if (err[0] == '\0' || parts != NULL) {
            abort();
        }

        break;

    case 4:
        given = json_loadb((const char *) data, size, JSON_DECODE_ANY, NULL);

        if (given != NULL) {
            fuzz_validate_given(given, 0, NULL, 0);
            json_decref(given);
        }

        break;

    default:
        if (fs_decode_file_string((const char *) data, size, &out, &outlen,
                                  &media, err, sizeof(err))
            == 0)
        {
            /* at most 3 bytes for 4 characters */
            if (out == NULL || outlen > size) {
                abort();
            }

            (void) fs_sniff(out, outlen);
            free(out);
            free(media);

        } else if (err[0] == '\0' || out != NULL || media != NULL) {
            abort();
        }

        break;
    }

    return 0;
}
