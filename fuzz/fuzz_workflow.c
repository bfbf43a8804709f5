
/*
 * libFuzzer target for the pure C workflow layer.
 *
 * The input is up to three parts separated by NUL bytes:
 *
 *   WORKFLOW-JSON \0 DIRECTIVES \0 IO-JSON
 *
 * DIRECTIVES are lines of space separated words, like nginx hands them in:
 *
 *   i NAME NODE.INPUT [key=value ...]      flowscale_input
 *   o NAME NODE [label=...]                flowscale_output
 *
 * A missing IO part means no flowscale_io file.  The declarations, the
 * deploy check and the descriptor all run, whatever failed before, and
 * everything is freed.
 */


#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_http_flowscale_workflow.h"


#define FUZZ_MAX_WORDS  16


static void fuzz_directive(fs_deployment_t *d, char *line);
static void fuzz_failed(int rc, fs_error_t *err);
const char *__ubsan_default_options(void);


/* undefined behaviour is a crash too, not a line in the log */

const char *
__ubsan_default_options(void)
{
    return "halt_on_error=1:print_stacktrace=1";
}


/* a failure must always say why: nginx prints err.msg as it is */

static void
fuzz_failed(int rc, fs_error_t *err)
{
    if (rc != 0 && (err->msg[0] == '\0' || strlen(err->msg) >= FS_ERROR_LEN))
    {
        abort();
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int               rc;
    char             *buf, *wf, *dir, *io, *line, *next, *end, *text;
    size_t            wf_len, io_len;
    json_t           *desc;
    fs_error_t        err;
    fs_deployment_t  *d;

    /* a private NUL-terminated copy: the parts become C strings */
    buf = malloc(size + 1);
    if (buf == NULL) {
        return 0;
    }

    memcpy(buf, data, size);
    buf[size] = '\0';
    end = buf + size;

    wf = buf;
    wf_len = strlen(wf);
    dir = wf + wf_len < end ? wf + wf_len + 1 : NULL;
    io = (dir && dir + strlen(dir) < end) ? dir + strlen(dir) + 1 : NULL;
    io_len = io ? (size_t) (end - io) : 0;

    d = fs_deployment_new();
    if (d == NULL) {
        free(buf);
        return 0;
    }

    memset(&err, 0, sizeof(err));
    fuzz_failed(fs_workflow_load(d, "fuzz.json", wf, wf_len, &err), &err);

    for (line = dir; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) {
            *next++ = '\0';
        }

        fuzz_directive(d, line);
    }

    if (io) {
        memset(&err, 0, sizeof(err));
        fuzz_failed(fs_io_load(d, "fuzz_io.json", io, io_len, NULL, &err),
                    &err);
    }

    memset(&err, 0, sizeof(err));
    rc = fs_deployment_check(d, &err);
    fuzz_failed(rc, &err);

    /* a checked deployment has a version and can be described */
    if (rc == 0 && strlen(d->version) != FS_VERSION_LEN) {
        abort();
    }

    desc = fs_deployment_describe(d, "fuzz", "/v1/fuzz", "ready");
    if (rc == 0 && desc == NULL) {
        abort();
    }

    if (desc) {
        text = json_dumps(desc, JSON_COMPACT);
        free(text);
        json_decref(desc);
    }

    fs_deployment_free(d);
    free(buf);

    return 0;
}


static void
fuzz_directive(fs_deployment_t *d, char *line)
{
    char        *words[FUZZ_MAX_WORDS], *p;
    size_t       nw;
    fs_error_t   err;

    nw = 0;

    for (p = strtok(line, " \t\r"); p && nw < FUZZ_MAX_WORDS;
         p = strtok(NULL, " \t\r"))
    {
        words[nw++] = p;
    }

    if (nw < 3) {
        return;
    }

    memset(&err, 0, sizeof(err));

    if (strcmp(words[0], "i") == 0) {
        fuzz_failed(fs_input_declare(d, words[1], words[2], nw - 3,
                                     &words[3], line, &err), &err);

    } else if (strcmp(words[0], "o") == 0) {
        fuzz_failed(fs_output_declare(d, words[1], words[2], nw - 3,
                                      &words[3], line, &err), &err);
    }
}
