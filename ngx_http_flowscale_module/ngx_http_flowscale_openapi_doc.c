
/*
 * FlowScale for nginx: the OpenAPI 3.1 document of deployments, built
 * from their declared inputs and outputs: request bodies (JSON, multipart,
 * urlencoded), the run, its list, its events, problem details, every
 * route of design.md section 5 with its status codes, the API-key
 * security schemes, and examples from the workflow's current values.
 *
 * Pure C over jansson (see ngx_http_flowscale_workflow.h).  Paths are
 * absolute (the location's own prefix), so one deployment's paths and
 * schemas serve both its own document and the server's.
 */


#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include "ngx_http_flowscale_workflow.h"
#include "ngx_http_flowscale_io.h"
#include "ngx_http_flowscale_openapi_doc.h"


#define FS_OA_PROBLEM  "urn:flowscale:problem:"
#define FS_OA_RUN_ID   "0193a4c2-7d3e-7a61-9c1f-3b5e2d4f6a80"
#define FS_OA_CREATED  "2025-01-01T12:00:00.000Z"
#define FS_OA_STARTED  "2025-01-01T12:00:01.250Z"
#define FS_OA_FINISHED "2025-01-01T12:00:09.800Z"

/* a 1x1 transparent PNG: the example of an image input */
#define FS_OA_PNG  "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAAB" \
                   "CAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5E" \
                   "rkJggg=="


static void fs_oa_common(json_t *schemas, json_t *responses, int keys);
static void fs_oa_deployment(json_t *paths, json_t *schemas, json_t *tags,
    const fs_openapi_loc_t *loc);
static json_t *fs_oa_ref(const char *kind, const char *name);
static json_t *fs_oa_dref(const char *name, const char *suffix);
static json_t *fs_oa_problem(const char *description, int status,
    const char *slug, const char *title, const char *detail);
static json_t *fs_oa_header(const char *description, json_t *schema);
static json_t *fs_oa_responses(int keys, ...);
static json_t *fs_oa_json(json_t *schema, json_t *example);
static json_t *fs_oa_example_value(const fs_input_t *in, json_t *current);
static int fs_oa_fits(const fs_input_t *in, json_t *v);
static json_t *fs_oa_current(const fs_deployment_t *d, const fs_input_t *in);
static json_t *fs_oa_example_run(const fs_openapi_loc_t *loc,
    const char *status);
static json_t *fs_oa_form_property(const fs_input_t *in, json_t *current,
    int multipart);
static json_t *fs_oa_security(int keys);
static char *fs_oa_path(const char *location, const char *suffix);
static const char *fs_oa_media(fs_type_e type);


json_t *
fs_openapi_document(const fs_openapi_loc_t *locs, size_t n, json_t *servers)
{
    int          keys;
    char         title[256], version[16];
    size_t       i, len;
    json_t      *doc, *paths, *schemas, *responses, *tags, *components;
    json_t      *schemes;
    unsigned     hash;
    const char  *p;

    keys = 0;
    hash = 2166136261u;

    for (i = 0; i < n; i++) {
        keys |= locs[i].api_key;

        /* FNV-1a over "name=version;" of every deployment */
        for (p = locs[i].name; *p; p++) {
            hash = (hash ^ (unsigned char) *p) * 16777619u;
        }

        hash = (hash ^ '=') * 16777619u;

        for (p = locs[i].deployment->version; *p; p++) {
            hash = (hash ^ (unsigned char) *p) * 16777619u;
        }

        hash = (hash ^ ';') * 16777619u;
    }

    if (n == 1) {
        snprintf(title, sizeof(title), "FlowScale deployment %s",
                 locs[0].name);
        snprintf(version, sizeof(version), "%s", locs[0].deployment->version);

    } else {
        len = (size_t) snprintf(title, sizeof(title), "FlowScale API");

        for (i = 0; i < n && len < sizeof(title); i++) {
            len += (size_t) snprintf(title + len, sizeof(title) - len,
                                     "%s%s", i ? ", " : ": ", locs[i].name);
        }

        if (len >= sizeof(title)) {
            memcpy(title + sizeof(title) - 4, "...", 4);
        }

        snprintf(version, sizeof(version), "%08x", hash);
    }

    paths = json_object();
    schemas = json_object();
    responses = json_object();
    tags = json_array();

    fs_oa_common(schemas, responses, keys);

    for (i = 0; i < n; i++) {
        fs_oa_deployment(paths, schemas, tags, &locs[i]);
    }

    components = json_pack("{s:o, s:o}", "schemas", schemas,
                           "responses", responses);

    if (keys) {
        schemes = json_pack("{s:{s:s, s:s, s:s}, s:{s:s, s:s, s:s, s:s}}",
            "bearerAuth",
                "type", "http", "scheme", "bearer",
                "description", "An API key of the deployment's project as "
                               "`Authorization: Bearer fs_...`.",
            "apiKeyHeader",
                "type", "apiKey", "in", "header", "name", "X-API-Key",
                "description", "The same API key as `X-API-Key: fs_...`.");
        json_object_set_new(components, "securitySchemes", schemes);
    }

    doc = json_pack("{s:s, s:{s:s, s:s, s:s}, s:o, s:o, s:o, s:o}",
        "openapi", "3.1.0",
        "info",
            "title", title,
            "version", version,
            "description",
                "Runs of ComfyUI workflows deployed with FlowScale for "
                "nginx. `POST` a deployment's path to create a run "
                "(`202` and the run; `Prefer: wait=N` waits for it), follow "
                "it with `GET .../runs/{id}` or its Server-Sent Events, and "
                "fetch its output files from the URLs in `outputs`. "
                "Errors are `application/problem+json` (RFC 9457). "
                "Run routes need an API key of the deployment's project, "
                "as `Authorization: Bearer KEY` or `X-API-Key: KEY`, "
                "unless the deployment is public.",
        "servers", servers,
        "tags", tags,
        "paths", paths,
        "components", components);

    return doc;
}


/* schemas and responses every deployment shares */

static void
fs_oa_common(json_t *schemas, json_t *responses, int keys)
{
    json_t  *nullable_time;

    nullable_time = json_pack("{s:[s, s], s:s}", "type", "string", "null",
                              "format", "date-time");

    json_object_set_new(schemas, "RunStatus", json_pack(
        "{s:s, s:[s, s, s, s, s], s:s}",
        "type", "string",
        "enum", "queued", "running", "succeeded", "failed", "canceled",
        "description", "queued (waiting for a backend), running, or one of "
                       "the final states succeeded, failed and canceled."));

    json_object_set_new(schemas, "Progress", json_pack(
        "{s:[s, s], s:s, s:{s:{s:s, s:i}, s:{s:s, s:i}, s:{s:s, s:s}}}",
        "type", "object", "null",
        "description", "Progress of the node executing now.",
        "properties",
            "value", "type", "integer", "minimum", 0,
            "max", "type", "integer", "minimum", 0,
            "node", "type", "string", "description", "Its node id."));

    json_object_set_new(schemas, "RunError", json_pack(
        "{s:[s, s], s:s, s:{s:{s:s, s:s}, s:{s:s}, s:{s:[s, s]}, "
        "s:{s:[s, s]}}}",
        "type", "object", "null",
        "description", "Why a run failed, in plain words: never a "
                       "traceback or a server path.",
        "properties",
            "type", "type", "string",
                    "description", "execution_error, rejected, timeout, "
                                   "backend_lost, ...",
            "message", "type", "string",
            "node", "type", "string", "null",
            "node_type", "type", "string", "null"));

    json_object_set_new(schemas, "OutputItem", json_pack(
        "{s:s, s:[s], s:{s:{s:s, s:s}, s:{s:s, s:s, s:s}, s:{s:s}, "
        "s:{s:s}, s:{s:s, s:s}}}",
        "type", "object",
        "required", "kind",
        "properties",
            "kind", "type", "string",
                    "description", "What the node produced: images, gifs, "
                                   "videos, audio, text, ...",
            "url", "type", "string", "format", "uri-reference",
                   "description", "Where to GET the file (with the same "
                                  "key as the run).",
            "filename", "type", "string",
            "content_type", "type", "string",
            "text", "type", "string",
                    "description", "The text itself, for kind text."));

    json_object_set_new(schemas, "Run", json_pack(
        "{s:s, s:s, s:[s, s, s, s, s, s], s:{"
        "s:{s:s, s:s, s:s}, s:{s:s}, s:{s:s, s:s}, s:o, "
        "s:{s:s, s:s}, s:{s:[s, s], s:i, s:s}, s:o, "
        "s:{s:s, s:s}, s:O, s:o, "
        "s:{s:s, s:s, s:{s:s, s:{s:s}}}, s:o}}",
        "type", "object",
        "description", "A run of a deployment.",
        "required", "id", "deployment", "version", "status", "inputs",
                    "created_at",
        "properties",
            "id", "type", "string", "format", "uuid",
                  "description", "A UUIDv7: ids sort by creation time.",
            "deployment", "type", "string",
            "version", "type", "string",
                       "description", "The deployment version the run "
                                      "was accepted under.",
            "status", fs_oa_ref("schemas", "RunStatus"),
            "inputs", "type", "object",
                      "description", "The inputs given, and the seeds "
                                     "drawn for default=random inputs.",
            "queue_position", "type", "integer", "null", "minimum", 1,
                              "description", "Place in the gateway queue "
                                             "while queued.",
            "progress", fs_oa_ref("schemas", "Progress"),
            "created_at", "type", "string", "format", "date-time",
            "started_at", nullable_time,
            "finished_at", json_deep_copy(nullable_time),
            "outputs", "type", "object",
                       "description", "Each output's items, by output "
                                      "name, as the backend produces them.",
                       "additionalProperties", "type", "array",
                           "items", "$ref", "#/components/schemas/OutputItem",
            "error", fs_oa_ref("schemas", "RunError")));

    json_object_set_new(schemas, "RunSummary", json_pack(
        "{s:s, s:s, s:[s, s, s], s:{s:{s:s, s:s}, s:{s:s}, s:{s:s}, s:o, "
        "s:{s:[s, s]}, s:{s:s, s:s}, s:o, s:o, s:{s:[s, s]}, s:o, "
        "s:{s:[s, s], s:s}}}",
        "type", "object",
        "description", "A run as the deployment's log shows it.",
        "required", "id", "status", "created_at",
        "properties",
            "id", "type", "string", "format", "uuid",
            "deployment", "type", "string",
            "version", "type", "string",
            "status", fs_oa_ref("schemas", "RunStatus"),
            "inputs", "type", "object", "null",
            "created_at", "type", "string", "format", "date-time",
            "started_at", json_deep_copy(nullable_time),
            "finished_at", json_deep_copy(nullable_time),
            "backend", "type", "string", "null",
            "error", fs_oa_ref("schemas", "RunError"),
            "key_id", "type", "string", "null",
                      "description", "The id of the API key that created "
                                     "it."));

    json_object_set_new(schemas, "RunList", json_pack(
        "{s:s, s:[s, s], s:{s:{s:s, s:o}, s:{s:[s, s], s:s, s:s}}}",
        "type", "object",
        "required", "runs", "next_cursor",
        "properties",
            "runs", "type", "array",
                    "items", fs_oa_ref("schemas", "RunSummary"),
            "next_cursor", "type", "string", "null", "format", "uuid",
                           "description", "Pass as ?before= for the next "
                                          "page; null on the last page."));

    json_object_set_new(schemas, "ProblemError", json_pack(
        "{s:s, s:[s, s], s:{s:{s:s, s:s}, s:{s:s, s:s}, s:{s:s}}}",
        "type", "object",
        "required", "code", "message",
        "properties",
            "input", "type", "string",
                     "description", "The input at fault (or \"webhook\").",
            "code", "type", "string",
                    "description", "type, range, option, unknown, "
                                   "required, file, webhook, ...",
            "message", "type", "string"));

    json_object_set_new(schemas, "Problem", json_pack(
        "{s:s, s:s, s:[s, s, s], s:{s:{s:s, s:s}, s:{s:s}, "
        "s:{s:s, s:i, s:i}, s:{s:s}, s:{s:s, s:s}, s:{s:s, s:o}}}",
        "type", "object",
        "description", "RFC 9457 problem details; type is stable per kind "
                       "of problem.",
        "required", "type", "title", "status",
        "properties",
            "type", "type", "string", "format", "uri",
            "title", "type", "string",
            "status", "type", "integer", "minimum", 400, "maximum", 599,
            "detail", "type", "string",
            "instance", "type", "string", "format", "uri-reference",
            "errors", "type", "array",
                      "items", fs_oa_ref("schemas", "ProblemError")));

    json_object_set_new(schemas, "Deployment", json_pack(
        "{s:s, s:s, s:[s, s, s, s, s, s], s:{s:{s:s}, s:{s:s}, "
        "s:{s:s, s:[s, s, s, s, s]}, s:{s:s}, "
        "s:{s:s, s:{s:s}}, s:{s:s, s:{s:s}}, s:{s:s}, s:{s:s}}}",
        "type", "object",
        "description", "The deployment: its version, state, inputs with "
                       "their JSON Schema, and outputs.",
        "required", "name", "version", "state", "inputs", "outputs",
                    "links",
        "properties",
            "name", "type", "string",
            "version", "type", "string",
            "state", "type", "string",
                     "enum", "preparing", "deploying", "ready", "failed",
                             "stopped",
            "reason", "type", "string",
            "inputs", "type", "array", "items", "type", "object",
            "outputs", "type", "array", "items", "type", "object",
            "input_schema", "type", "object",
            "links", "type", "object"));

    json_decref(nullable_time);

    json_object_set_new(responses, "BadRequest", fs_oa_problem(
        "Malformed body or query.", 400, "malformed-body", "Bad Request",
        "The body is not valid JSON."));

    if (keys) {
        json_t  *r;

        r = fs_oa_problem("No API key, or an unknown one.", 401,
                          "unauthorized", "Unauthorized",
                          "An API key is needed: send Authorization: "
                          "Bearer KEY or X-API-Key: KEY.");
        json_object_set_new(r, "headers", json_pack("{s:o}",
            "WWW-Authenticate", fs_oa_header("Bearer", json_pack("{s:s}",
                                             "type", "string"))));
        json_object_set_new(responses, "Unauthorized", r);

        json_object_set_new(responses, "Forbidden", fs_oa_problem(
            "A revoked key, or a key of another project.", 403,
            "forbidden", "Forbidden",
            "This key does not belong to the deployment's project."));
    }

    json_object_set_new(responses, "NotFound", fs_oa_problem(
        "No such run (or file) under this deployment.", 404, "not-found",
        "Not Found", "No run with this id in this deployment."));

    json_object_set_new(responses, "Conflict", fs_oa_problem(
        "The run had already finished.", 409, "run-finished",
        "Run already finished", "The run finished before it could be "
        "canceled."));

    json_object_set_new(responses, "TooLarge", fs_oa_problem(
        "The body is larger than the deployment accepts.", 413,
        "too-large", "Payload Too Large", "The body is larger than this "
        "deployment accepts (client_max_body_size)."));

    json_object_set_new(responses, "UnsupportedMediaType", fs_oa_problem(
        "Not JSON, multipart/form-data or urlencoded.", 415,
        "unsupported-media-type", "Unsupported Media Type",
        "Send application/json, multipart/form-data or "
        "application/x-www-form-urlencoded."));

    json_object_set_new(responses, "Unprocessable", fs_oa_problem(
        "Input validation failed (all errors at once, nothing recorded), "
        "or an Idempotency-Key reused with another request.", 422,
        "invalid-inputs", "Invalid inputs",
        "1 input is invalid."));

    json_object_set_new(responses, "TooManyRequests", fs_oa_problem(
        "The deployment's queue or the key's limit of unfinished runs is "
        "full; retry after Retry-After seconds.", 429, "too-many-runs",
        "Too Many Requests", "The queue of this deployment is full."));

    json_object_set_new(responses, "BadGateway", fs_oa_problem(
        "The backend rejected the prompt (its node errors mapped to the "
        "inputs at fault), or failed while a file streamed.", 502,
        "backend-rejected", "Backend rejected the run",
        "The backend refused the workflow."));

    json_object_set_new(responses, "Unavailable", fs_oa_problem(
        "No capable backend, the deployment stopped, or the database "
        "unavailable; retry after Retry-After seconds.", 503,
        "database-unavailable", "Service Unavailable",
        "The database is unavailable; nothing was recorded. Retry later."));
}


static void
fs_oa_deployment(json_t *paths, json_t *schemas, json_t *tags,
    const fs_openapi_loc_t *loc)
{
    int                     keys;
    char                   *path, name[FS_NAME_MAX + 32];
    size_t                  i;
    json_t                 *props, *mprops, *uprops, *required, *current;
    json_t                 *inputs, *req, *op, *example, *outs, *names;
    json_t                 *item, *params, *run, *ok;
    json_t                 *form_example;
    const fs_input_t       *in;
    const fs_deployment_t  *d;

    d = loc->deployment;
    keys = loc->api_key;

    json_array_append_new(tags, json_pack("{s:s, s:s+}",
        "name", loc->name,
        "description", "Deployment version ", d->version));

    /* the inputs: JSON, multipart and urlencoded */

    props = json_object();
    mprops = json_object();
    uprops = json_object();
    required = json_array();
    form_example = json_object();

    for (i = 0; i < d->ninputs; i++) {
        in = &d->inputs[i];
        current = fs_oa_current(d, in);

        json_object_set_new(props, in->name,
                            fs_input_schema_with(in, current));
        json_object_set_new(mprops, in->name,
                            fs_oa_form_property(in, current, 1));
        json_object_set_new(uprops, in->name,
                            fs_oa_form_property(in, current, 0));

        if (in->required) {
            json_array_append_new(required, json_string(in->name));
        }
    }

    example = fs_openapi_example_inputs(d);

    /* the urlencoded example: the same values as text */
    {
        const char  *k;
        json_t      *v;
        char         buf[64];

        json_object_foreach(example, k, v) {
            if (json_is_string(v)) {
                json_object_set(form_example, k, v);
                continue;
            }

            if (json_is_integer(v)) {
                snprintf(buf, sizeof(buf), "%lld",
                         (long long) json_integer_value(v));

            } else if (json_is_real(v)) {
                snprintf(buf, sizeof(buf), "%.17g", json_real_value(v));

            } else {
                snprintf(buf, sizeof(buf), "%s",
                         json_is_true(v) ? "true" : "false");
            }

            json_object_set_new(form_example, k, json_string(buf));
        }
    }

    inputs = json_pack("{s:s, s:s+, s:o, s:O, s:b}",
        "type", "object",
        "description", "The inputs of deployment ", loc->name,
        "properties", props,
        "required", required,
        "additionalProperties", 0);

    snprintf(name, sizeof(name), "%s.Inputs", loc->name);
    json_object_set_new(schemas, name, inputs);

    req = json_pack("{s:s, s:{s:o, s:{s:s, s:s, s:s}}, s:b, s:{s:O}}",
        "type", "object",
        "properties",
            "inputs", fs_oa_dref(loc->name, "Inputs"),
            "webhook", "type", "string", "format", "uri",
                       "description", "Where to POST the run when it "
                                      "ends (Standard Webhooks signature; "
                                      "see flowscale_webhook_allow).",
        "additionalProperties", 0,
        "example", "inputs", example);

    if (json_array_size(required)) {
        json_object_set_new(req, "required", json_pack("[s]", "inputs"));
    }

    snprintf(name, sizeof(name), "%s.RunRequest", loc->name);
    json_object_set_new(schemas, name, req);

    /* the outputs of a run of this deployment, by name */

    outs = json_object();
    names = json_array();

    for (i = 0; i < d->noutputs; i++) {
        item = json_pack("{s:s, s:s, s:o}",
            "type", "array",
            "title", d->outputs[i].label ? d->outputs[i].label
                                         : d->outputs[i].name,
            "items", fs_oa_ref("schemas", "OutputItem"));
        json_object_set_new(outs, d->outputs[i].name, item);
        json_array_append_new(names, json_string(d->outputs[i].name));
    }

    run = json_pack("{s:[o, {s:{s:{s:s}, s:o, s:{s:s, s:o}}}], "
                    "s:o}",
        "allOf",
            fs_oa_ref("schemas", "Run"),
            "properties",
                "deployment", "const", loc->name,
                "inputs", fs_oa_dref(loc->name, "Inputs"),
                "outputs", "type", "object", "properties", outs,
        "examples", json_pack("[o]", fs_oa_example_run(loc, "succeeded")));

    snprintf(name, sizeof(name), "%s.Run", loc->name);
    json_object_set_new(schemas, name, run);

    /* GET L, POST L */

    /* no example for Prefer: "Try it out" would fill it in */
    params = json_pack("[{s:s, s:s, s:b, s:s, s:{s:s, s:s}}, "
                       "{s:s, s:s, s:b, s:s, s:{s:s, s:i, s:i}}]",
        "name", "Prefer", "in", "header", "required", 0,
        "description", "wait=N (RFC 7240): hold the request up to N "
                       "seconds (at most flowscale_max_wait) and answer "
                       "200 with the finished run, or 202 if it is not "
                       "done by then. For example wait=30.",
        "schema", "type", "string", "pattern", "^wait=[0-9]+$",
        "name", "Idempotency-Key", "in", "header", "required", 0,
        "description", "The same key and the same request within 24 "
                       "hours return the original run instead of a new "
                       "one; the same key with another request is a 422.",
        "schema", "type", "string", "minLength", 1, "maxLength", 255);

    ok = json_pack("{s:s, s:{s:o}, s:{s:o}}",
        "description", "The run finished within Prefer: wait.",
        "headers", "Location", fs_oa_header("The run's URL.",
                                            json_pack("{s:s, s:s}",
                                            "type", "string",
                                            "format", "uri-reference")),
        "content", "application/json",
            fs_oa_json(fs_oa_dref(loc->name, "Run"),
                       fs_oa_example_run(loc, "succeeded")));

    op = json_pack("{s:[s], s:s, s:s+, s:s, s:o, "
                   "s:{s:b, s:{s:o, s:o, s:o}}, s:o, s:o}",
        "tags", loc->name,
        "summary", "Create a run",
        "operationId", loc->name, ".createRun",
        "description", "Validates the inputs (all errors at once), records "
                       "the run, and hands it to a backend with room or "
                       "queues it. File inputs are file parts in "
                       "multipart/form-data, or a data: URL or base64 "
                       "string in JSON.",
        "parameters", params,
        "requestBody",
            "required", 1,
            "content",
                "application/json",
                    fs_oa_json(fs_oa_dref(loc->name, "RunRequest"),
                               json_pack("{s:O}", "inputs", example)),
                "multipart/form-data",
                    fs_oa_json(json_pack("{s:s, s:o, s:O}",
                                         "type", "object",
                                         "properties", mprops,
                                         "required", required), NULL),
                "application/x-www-form-urlencoded",
                    fs_oa_json(json_pack("{s:s, s:o, s:O}",
                                         "type", "object",
                                         "properties", uprops,
                                         "required", required),
                               json_incref(form_example)),
        "responses", fs_oa_responses(keys,
            "202", json_pack("{s:s, s:{s:o}, s:{s:o}}",
                "description", "Accepted: the run is recorded, and queued "
                               "or running.",
                "headers", "Location", fs_oa_header("The run's URL.",
                                             json_pack("{s:s, s:s}",
                                             "type", "string",
                                             "format", "uri-reference")),
                "content", "application/json",
                    fs_oa_json(fs_oa_dref(loc->name, "Run"),
                               fs_oa_example_run(loc, "queued"))),
            "200", ok,
            "400", fs_oa_ref("responses", "BadRequest"),
            "413", fs_oa_ref("responses", "TooLarge"),
            "415", fs_oa_ref("responses", "UnsupportedMediaType"),
            "422", fs_oa_ref("responses", "Unprocessable"),
            "429", fs_oa_ref("responses", "TooManyRequests"),
            "502", fs_oa_ref("responses", "BadGateway"),
            "503", fs_oa_ref("responses", "Unavailable"),
            NULL),
        "security", fs_oa_security(keys));

    {
        json_t  *desc;

        desc = fs_deployment_describe(d, loc->name, loc->location, "ready");

        item = json_pack("{s:{s:[s], s:s, s:s+, s:s, s:{s:{s:s, s:{s:o}}}}, "
                         "s:o}",
            "get",
                "tags", loc->name,
                "summary", "The deployment",
                "operationId", loc->name, ".describe",
                "description", "Name, version, state, inputs with their "
                               "JSON Schema, outputs and links. Needs no "
                               "key.",
                "responses",
                    "200",
                        "description", "The deployment descriptor.",
                        "content",
                            "application/json",
                                fs_oa_json(fs_oa_ref("schemas",
                                                     "Deployment"), desc),
            "post", op);
    }

    path = fs_oa_path(loc->base, "");
    json_object_set_new(paths, path, item);
    free(path);

    /* GET L/runs */

    item = json_pack("{s:{s:[s], s:s, s:s+, s:s, "
                     "s:[{s:s, s:s, s:o}, "
                     "{s:s, s:s, s:{s:s, s:i, s:i, s:i}}, "
                     "{s:s, s:s, s:s, s:{s:s, s:s}}], "
                     "s:o, s:o}}",
        "get",
            "tags", loc->name,
            "summary", "The deployment's log",
            "operationId", loc->name, ".listRuns",
            "description", "The project's runs of this deployment, newest "
                           "first, a page at a time (keyset: pass "
                           "next_cursor as before).",
            "parameters",
                "name", "status", "in", "query",
                "schema", fs_oa_ref("schemas", "RunStatus"),
                "name", "limit", "in", "query",
                "schema", "type", "integer", "minimum", 1, "maximum", 200,
                          "default", 20,
                "name", "before", "in", "query",
                "description", "The next_cursor of the previous page.",
                "schema", "type", "string", "format", "uuid",
            "responses", fs_oa_responses(keys,
                "200", json_pack("{s:s, s:{s:o}, s:{s:o}}",
                    "description", "A page of runs.",
                    "headers",
                        "Link", fs_oa_header("<...>; rel=\"next\" when "
                                             "there is a next page.",
                                             json_pack("{s:s}", "type",
                                                       "string")),
                    "content", "application/json",
                        fs_oa_json(fs_oa_ref("schemas", "RunList"), NULL)),
                "400", fs_oa_ref("responses", "BadRequest"),
                "503", fs_oa_ref("responses", "Unavailable"),
                NULL),
            "security", fs_oa_security(keys));

    path = fs_oa_path(loc->location, "/runs");
    json_object_set_new(paths, path, item);
    free(path);

    /* GET, DELETE L/runs/{id} */

    params = json_pack("[{s:s, s:s, s:b, s:s, s:{s:s, s:s}, s:s}]",
        "name", "id", "in", "path", "required", 1,
        "description", "The run id.",
        "schema", "type", "string", "format", "uuid",
        "example", FS_OA_RUN_ID);

    item = json_pack("{s:O, s:{s:[s], s:s, s:s+, s:o, s:o}, "
                     "s:{s:[s], s:s, s:s+, s:s, s:o, s:o}}",
        "parameters", params,
        "get",
            "tags", loc->name,
            "summary", "A run",
            "operationId", loc->name, ".getRun",
            "responses", fs_oa_responses(keys,
                "200", json_pack("{s:s, s:{s:o}}",
                    "description", "The run.",
                    "content", "application/json",
                        fs_oa_json(fs_oa_dref(loc->name, "Run"), NULL)),
                "404", fs_oa_ref("responses", "NotFound"),
                "503", fs_oa_ref("responses", "Unavailable"),
                NULL),
            "security", fs_oa_security(keys),
        "delete",
            "tags", loc->name,
            "summary", "Cancel a run",
            "operationId", loc->name, ".cancelRun",
            "description", "Removed from the queue, or interrupted on its "
                           "backend.",
            "responses", fs_oa_responses(keys,
                "200", json_pack("{s:s, s:{s:o}}",
                    "description", "The canceled run.",
                    "content", "application/json",
                        fs_oa_json(fs_oa_dref(loc->name, "Run"),
                                   fs_oa_example_run(loc, "canceled"))),
                "404", fs_oa_ref("responses", "NotFound"),
                "409", fs_oa_ref("responses", "Conflict"),
                "503", fs_oa_ref("responses", "Unavailable"),
                NULL),
            "security", fs_oa_security(keys));

    path = fs_oa_path(loc->location, "/runs/{id}");
    json_object_set_new(paths, path, item);
    free(path);

    /* GET L/runs/{id}/events */

    item = json_pack("{s:O, s:{s:[s], s:s, s:s+, s:s, "
                     "s:[{s:s, s:s, s:s, s:{s:s}}], s:o, s:o}}",
        "parameters", params,
        "get",
            "tags", loc->name,
            "summary", "The run's events (Server-Sent Events)",
            "operationId", loc->name, ".runEvents",
            "description", "Events named queued (data {\"position\"}, no "
                           "id), started, progress (value, max, node), "
                           "output (name, items), and a final succeeded, "
                           "failed or canceled carrying the run; then the "
                           "stream ends. Reconnect with Last-Event-ID to "
                           "get what came after it.",
            "parameters",
                "name", "Last-Event-ID", "in", "header",
                "description", "Resume after this event id.",
                "schema", "type", "string",
            "responses", fs_oa_responses(keys,
                "200", json_pack("{s:s, s:{s:{s:{s:s, s:s}, s:s}}}",
                    "description", "The event stream.",
                    "content", "text/event-stream",
                        "schema", "type", "string",
                                  "description", "text/event-stream "
                                                 "(event:, id:, data: "
                                                 "lines).",
                        "example",
                            "event: queued\ndata: {\"position\":1}\n\n"
                            "id: 1\nevent: started\n"
                            "data: {\"status\":\"running\"}\n\n"
                            "id: 2\nevent: progress\n"
                            "data: {\"value\":1,\"max\":20,\"node\":\"3\"}"
                            "\n\n"
                            "id: 3\nevent: succeeded\ndata: {\"id\":\""
                            FS_OA_RUN_ID "\",\"status\":\"succeeded\"}"
                            "\n\n"),
                "404", fs_oa_ref("responses", "NotFound"),
                "503", fs_oa_ref("responses", "Unavailable"),
                NULL),
            "security", fs_oa_security(keys));

    path = fs_oa_path(loc->location, "/runs/{id}/events");
    json_object_set_new(paths, path, item);
    free(path);

    /* GET L/runs/{id}/outputs/{name}/{n} */

    item = json_pack("{s:[O, {s:s, s:s, s:b, s:s, s:{s:s, s:O}}, "
                     "{s:s, s:s, s:b, s:s, s:{s:s, s:i}}], "
                     "s:{s:[s], s:s, s:s+, s:s, s:o, s:o}}",
        "parameters",
            json_array_get(params, 0),
            "name", "name", "in", "path", "required", 1,
            "description", "The output's name.",
            "schema", "type", "string", "enum", names,
            "name", "n", "in", "path", "required", 1,
            "description", "Which of its files, from 0.",
            "schema", "type", "integer", "minimum", 0,
        "get",
            "tags", loc->name,
            "summary", "An output file of a run",
            "operationId", loc->name, ".getOutput",
            "description", "Streamed from the backend that made it, with "
                           "its content type; Range requests pass "
                           "through. Text outputs are text/plain.",
            "responses", fs_oa_responses(keys,
                "200", json_pack("{s:s, s:{s:{s:{s:s, s:s}}}}",
                    "description", "The file.",
                    "content", "*/*",
                        "schema", "type", "string",
                                  "contentMediaType",
                                  "application/octet-stream"),
                "206", json_pack("{s:s, s:{s:{s:{s:s, s:s}}}}",
                    "description", "The part of the file asked for with "
                                   "Range.",
                    "content", "*/*",
                        "schema", "type", "string",
                                  "contentMediaType",
                                  "application/octet-stream"),
                "404", fs_oa_ref("responses", "NotFound"),
                "502", fs_oa_ref("responses", "BadGateway"),
                "503", fs_oa_ref("responses", "Unavailable"),
                NULL),
            "security", fs_oa_security(keys));

    json_decref(names);

    path = fs_oa_path(loc->location, "/runs/{id}/outputs/{name}/{n}");
    json_object_set_new(paths, path, item);
    free(path);

    json_decref(params);

    /* GET L/openapi.json */

    item = json_pack("{s:{s:[s], s:s, s:s+, s:s, s:{s:{s:s, s:{s:{s:{s:s}}}}}"
                     "}}",
        "get",
            "tags", loc->name,
            "summary", "This deployment's OpenAPI document",
            "operationId", loc->name, ".openapi",
            "description", "Needs no key.",
            "responses",
                "200",
                    "description", "The OpenAPI 3.1 document.",
                    "content",
                        "application/json",
                            "schema", "type", "object");

    path = fs_oa_path(loc->location, "/openapi.json");
    json_object_set_new(paths, path, item);
    free(path);

    json_decref(required);
    json_decref(example);
    json_decref(form_example);
}


/* {"$ref": "#/components/KIND/NAME"} */

static json_t *
fs_oa_ref(const char *kind, const char *name)
{
    char  ref[FS_NAME_MAX + 64];

    snprintf(ref, sizeof(ref), "#/components/%s/%s", kind, name);

    return json_pack("{s:s}", "$ref", ref);
}


/* a deployment's own schema: NAME.SUFFIX */

static json_t *
fs_oa_dref(const char *name, const char *suffix)
{
    char  ref[FS_NAME_MAX + 64];

    snprintf(ref, sizeof(ref), "#/components/schemas/%s.%s", name, suffix);

    return json_pack("{s:s}", "$ref", ref);
}


static json_t *
fs_oa_problem(const char *description, int status, const char *slug,
    const char *title, const char *detail)
{
    json_t  *example;

    example = json_pack("{s:s+, s:s, s:i, s:s, s:s}",
                        "type", FS_OA_PROBLEM, slug,
                        "title", title,
                        "status", status,
                        "detail", detail,
                        "instance", "/v1/deployment");

    if (status == 422) {
        json_object_set_new(example, "errors", json_pack("[{s:s, s:s, s:s}]",
            "input", "steps", "code", "range",
            "message", "steps must be at most 50"));
    }

    return json_pack("{s:s, s:{s:{s:o, s:o}}}",
        "description", description,
        "content",
            "application/problem+json",
                "schema", fs_oa_ref("schemas", "Problem"),
                "example", example);
}


static json_t *
fs_oa_header(const char *description, json_t *schema)
{
    return json_pack("{s:s, s:o}", "description", description,
                     "schema", schema);
}


/* NULL-terminated "code", response pairs, with 401/403 when keys are on */

static json_t *
fs_oa_responses(int keys, ...)
{
    va_list      ap;
    json_t      *r, *v;
    const char  *code;

    r = json_object();

    va_start(ap, keys);

    while ((code = va_arg(ap, const char *)) != NULL) {
        v = va_arg(ap, json_t *);
        json_object_set_new(r, code, v);

        if (keys && strcmp(code, "400") == 0) {
            json_object_set_new(r, "401", fs_oa_ref("responses",
                                                    "Unauthorized"));
            json_object_set_new(r, "403", fs_oa_ref("responses",
                                                    "Forbidden"));
        }
    }

    va_end(ap);

    if (keys && json_object_get(r, "401") == NULL) {
        json_object_set_new(r, "401", fs_oa_ref("responses",
                                                "Unauthorized"));
        json_object_set_new(r, "403", fs_oa_ref("responses", "Forbidden"));
    }

    return r;
}


/* a media type object: {"schema": ..., "example": ...} */

static json_t *
fs_oa_json(json_t *schema, json_t *example)
{
    json_t  *m;

    m = json_pack("{s:o}", "schema", schema);

    if (example) {
        json_object_set_new(m, "example", example);
    }

    return m;
}


static json_t *
fs_oa_security(int keys)
{
    if (!keys) {
        /* a public deployment: no key at all */
        return json_array();
    }

    return json_pack("[{s:[]}, {s:[]}]", "bearerAuth", "apiKeyHeader");
}


static json_t *
fs_oa_current(const fs_deployment_t *d, const fs_input_t *in)
{
    return json_object_get(json_object_get(json_object_get(d->workflow,
               in->node), "inputs"), in->input);
}


json_t *
fs_openapi_example_inputs(const fs_deployment_t *d)
{
    size_t             i;
    json_t            *inputs, *v;
    const fs_input_t  *in;

    inputs = json_object();

    for (i = 0; i < d->ninputs; i++) {
        in = &d->inputs[i];

        /* a seed drawn per run is better left out */
        if (in->random) {
            continue;
        }

        /* optional files keep the workflow's own */
        if (fs_type_is_file(in->type) && !in->required) {
            continue;
        }

        v = fs_oa_example_value(in, fs_oa_current(d, in));
        if (v) {
            json_object_set_new(inputs, in->name, v);
        }
    }

    return inputs;
}


static int
fs_oa_fits(const fs_input_t *in, json_t *v)
{
    size_t   i;
    json_t  *o;

    if (v == NULL) {
        return 0;
    }

    switch (in->type) {

    case FS_TYPE_STRING:
        if (!json_is_string(v)) {
            return 0;
        }
        break;

    case FS_TYPE_INTEGER:
        if (!(json_is_integer(v)
              || (json_is_real(v)
                  && json_real_value(v) == floor(json_real_value(v)))))
        {
            return 0;
        }
        break;

    case FS_TYPE_NUMBER:
        if (!json_is_number(v)) {
            return 0;
        }
        break;

    case FS_TYPE_BOOLEAN:
        return json_is_boolean(v);

    default:
        return 0;
    }

    if (json_is_number(v)
        && ((in->minimum && json_number_value(v)
                            < json_number_value(in->minimum))
            || (in->maximum && json_number_value(v)
                               > json_number_value(in->maximum))))
    {
        return 0;
    }

    if (in->options == NULL) {
        return 1;
    }

    json_array_foreach(in->options, i, o) {
        if (json_is_number(o) && json_is_number(v)
            ? json_number_value(o) == json_number_value(v)
            : json_equal(o, v))
        {
            return 1;
        }
    }

    return 0;
}


static json_t *
fs_oa_example_value(const fs_input_t *in, json_t *current)
{
    if (fs_type_is_file(in->type)) {
        return json_string(in->type == FS_TYPE_IMAGE ? FS_OA_PNG
                           : "data:application/octet-stream;base64,AAAA");
    }

    if (in->default_value) {
        return json_deep_copy(in->default_value);
    }

    if (fs_oa_fits(in, current)) {
        if (in->type == FS_TYPE_INTEGER && json_is_real(current)) {
            return json_integer((json_int_t) json_real_value(current));
        }

        return json_deep_copy(current);
    }

    if (in->options && json_array_size(in->options)) {
        return json_deep_copy(json_array_get(in->options, 0));
    }

    if (in->minimum) {
        return json_deep_copy(in->minimum);
    }

    switch (in->type) {
    case FS_TYPE_STRING:
        return json_string("");
    case FS_TYPE_INTEGER:
        return json_integer(0);
    case FS_TYPE_NUMBER:
        return json_real(0);
    default:
        return json_false();
    }
}


static json_t *
fs_oa_example_run(const fs_openapi_loc_t *loc, const char *status)
{
    char                   *url;
    size_t                  i, len;
    json_t                 *run, *outputs, *inputs;
    const fs_deployment_t  *d;

    d = loc->deployment;
    inputs = fs_openapi_example_inputs(d);

    /* the inputs a run records: given ones, and the seeds drawn */
    for (i = 0; i < d->ninputs; i++) {
        if (d->inputs[i].random) {
            json_object_set_new(inputs, d->inputs[i].name,
                                json_integer(2040470175719955LL));
        }

        if (fs_type_is_file(d->inputs[i].type)
            && json_object_get(inputs, d->inputs[i].name))
        {
            json_object_set_new(inputs, d->inputs[i].name,
                                json_string("input.png"));
        }
    }

    outputs = json_object();

    if (strcmp(status, "succeeded") == 0) {
        for (i = 0; i < d->noutputs; i++) {
            len = strlen(loc->location) + strlen(d->outputs[i].name)
                  + sizeof(FS_OA_RUN_ID) + 32;
            url = malloc(len);
            if (url == NULL) {
                continue;
            }

            snprintf(url, len, "%s/runs/%s/outputs/%s/0", loc->location,
                     FS_OA_RUN_ID, d->outputs[i].name);

            json_object_set_new(outputs, d->outputs[i].name, json_pack(
                "[{s:s, s:s, s:s, s:s}]",
                "kind", "images",
                "url", url,
                "filename", FS_OA_RUN_ID "_00001_.png",
                "content_type", "image/png"));

            free(url);
        }
    }

    run = json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:o, s:s, s:o, s:o, "
                    "s:o, s:o}",
        "id", FS_OA_RUN_ID,
        "deployment", loc->name,
        "version", d->version,
        "status", status,
        "inputs", inputs,
        "queue_position", strcmp(status, "queued") == 0
                          ? json_integer(1) : json_null(),
        "progress", strcmp(status, "succeeded") == 0
                    ? json_pack("{s:i, s:i, s:s}", "value", 20, "max", 20,
                                "node", d->noutputs ? d->outputs[0].node
                                                    : "1")
                    : json_null(),
        "created_at", FS_OA_CREATED,
        "started_at", strcmp(status, "queued") == 0
                      ? json_null() : json_string(FS_OA_STARTED),
        "finished_at", strcmp(status, "queued") == 0
                       ? json_null() : json_string(FS_OA_FINISHED),
        "outputs", outputs,
        "error", json_null());

    return run;
}


/* an input as a form field: a file part, or its value as text */

static json_t *
fs_oa_form_property(const fs_input_t *in, json_t *current, int multipart)
{
    json_t  *s;

    s = fs_input_schema_with(in, current);

    if (multipart && fs_type_is_file(in->type)) {
        json_object_del(s, "contentEncoding");
        json_object_set_new(s, "format", json_string("binary"));
        json_object_set_new(s, "contentMediaType",
                            json_string(fs_oa_media(in->type)));
        json_object_set_new(s, "description",
                            json_string(in->description ? in->description
                                        : "The file, as a file part."));

    } else if (fs_type_is_file(in->type)) {
        json_object_set_new(s, "description",
                            json_string(in->description ? in->description
                                        : "The file as a data: URL or "
                                          "base64."));
    }

    return s;
}


static const char *
fs_oa_media(fs_type_e type)
{
    return type == FS_TYPE_IMAGE ? "image/*"
           : type == FS_TYPE_VIDEO ? "video/*"
           : type == FS_TYPE_AUDIO ? "audio/*"
           : "application/octet-stream";
}


static char *
fs_oa_path(const char *location, const char *suffix)
{
    char    *p;
    size_t   len;

    len = strlen(location) + strlen(suffix) + 1;

    p = malloc(len);
    if (p) {
        snprintf(p, len, "%s%s", location, suffix);
    }

    return p;
}
