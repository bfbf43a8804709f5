
/*
 * FlowScale for nginx: reading ComfyUI's replies (POST /prompt,
 * GET /history/ID and /ws messages) into the gateway's own terms.
 *
 * Pure C over jansson: no nginx type appears here, so this part is unit
 * tested (t/unit/test_reply.c) and fuzzed (fuzz/fuzz_reply.c) on its own.
 *
 * Whatever ComfyUI says is untrusted: its error replies carry tracebacks,
 * server paths and dumped tensors.  Nothing built here copies those; every
 * message is put together from error types, node ids, class names, input
 * names and the values involved, each length capped.
 */


#ifndef _NGX_HTTP_FLOWSCALE_REPLY_H_INCLUDED_
#define _NGX_HTTP_FLOWSCALE_REPLY_H_INCLUDED_


#include <stddef.h>
#include <jansson.h>

#include "ngx_http_flowscale_workflow.h"


#define FS_REPLY_ID_LEN      80      /* prompt and node ids in ws events */
#define FS_REPLY_MSG_MAX     400     /* bytes of one message, with "..." */
#define FS_REPLY_ERRORS_MAX  32      /* entries of problem "errors" */


typedef enum {
    FS_HISTORY_PENDING = 0,
    FS_HISTORY_SUCCEEDED,
    FS_HISTORY_FAILED,
    FS_HISTORY_INTERRUPTED
} fs_history_state_e;


typedef enum {
    FS_WS_OTHER = 0,
    FS_WS_STATUS,
    FS_WS_EXECUTION_START,
    FS_WS_EXECUTION_CACHED,
    FS_WS_EXECUTING,
    FS_WS_PROGRESS,
    FS_WS_EXECUTED,
    FS_WS_SUCCESS,
    FS_WS_ERROR,
    FS_WS_INTERRUPTED,
    FS_WS_DONE
} fs_ws_type_e;


typedef struct {
    fs_ws_type_e    type;
    char            prompt_id[FS_REPLY_ID_LEN];
    char            node[FS_REPLY_ID_LEN];
    long            value;           /* progress; -1 when absent */
    long            max;
    long            queue_remaining; /* status; -1 when absent */
    json_t         *output;          /* executed: ComfyUI's "output" */
    json_t         *error;           /* execution_error, interrupted */
} fs_ws_event_t;


/*
 * POST /prompt.  0: accepted, *prompt_id (malloc) and *number (-1 when
 * absent) set.  -1: rejected, *problem set to {"detail", "errors":
 * [{"input", "node", "message"}], "comfyui_type"}; *prompt_id is also set
 * when ComfyUI queued the run anyway (200 with node_errors that stop a
 * declared output), so the caller can delete or interrupt it.  -1 with
 * *problem NULL: out of memory.  The caller frees *prompt_id (free) and
 * *problem (json_decref) whatever the result.
 */
int fs_prompt_reply(const fs_deployment_t *d, int status, const char *body,
    size_t len, char **prompt_id, long *number, json_t **problem);

/*
 * GET /history/ID.  -1 only for an unparsable reply.  Once finished,
 * *outputs holds every declared output by name (also for failed and
 * interrupted runs: what was made before the stop), and *error is set for
 * FS_HISTORY_FAILED and FS_HISTORY_INTERRUPTED.
 */
int fs_history_parse(const fs_deployment_t *d, const char *prompt_id,
    const char *body, size_t len, fs_history_state_e *state,
    json_t **outputs, json_t **error);

/* one /ws text message; -1 when malformed, then ev is cleared */
int fs_ws_event_parse(const char *text, size_t len, fs_ws_event_t *ev);
void fs_ws_event_clear(fs_ws_event_t *ev);

/* the items of an executed message for a declared output, else NULL */
json_t *fs_executed_outputs(const fs_deployment_t *d, const char *node,
    json_t *output, const char **name);

/* ComfyUI's execution_error or execution_interrupted data, made safe */
json_t *fs_execution_error(const char *type, json_t *data);

/* text made safe to show: one line, no paths, capped, valid UTF-8 */
void fs_reply_clean(const char *in, char *out, size_t size);

const char *fs_content_type(const char *filename);


#endif /* _NGX_HTTP_FLOWSCALE_REPLY_H_INCLUDED_ */
