
/*
 * FlowScale for nginx: a deployed workflow and its declared inputs and
 * outputs.
 *
 * Pure C over jansson: no nginx type appears here, so this part is unit
 * tested (t/unit) and fuzzed (fuzz/) on its own.  The nginx side hands in
 * the directive arguments as strings, together with an opaque "origin"
 * pointer that comes back in an error so the caller can name the file and
 * line of the directive at fault.
 */


#ifndef _NGX_HTTP_FLOWSCALE_WORKFLOW_H_INCLUDED_
#define _NGX_HTTP_FLOWSCALE_WORKFLOW_H_INCLUDED_


#include <stddef.h>
#include <jansson.h>


#define FS_ERROR_LEN      1024
#define FS_NAME_MAX       64
#define FS_VERSION_LEN    8


typedef enum {
    FS_TYPE_NONE = 0,
    FS_TYPE_STRING,
    FS_TYPE_INTEGER,
    FS_TYPE_NUMBER,
    FS_TYPE_BOOLEAN,
    FS_TYPE_IMAGE,
    FS_TYPE_VIDEO,
    FS_TYPE_AUDIO,
    FS_TYPE_FILE
} fs_type_e;


typedef struct {
    char            msg[FS_ERROR_LEN];
    const void     *origin;      /* of the declaration at fault, or NULL */
} fs_error_t;


typedef struct {
    char           *name;
    char           *node;
    char           *input;
    fs_type_e       type;
    char           *label;
    char           *description;
    json_t         *default_value;   /* typed; NULL: keep the workflow's */
    json_t         *minimum;
    json_t         *maximum;
    json_t         *options;         /* array of typed values, or NULL */

    /* as declared, typed by fs_deployment_check() */
    json_t         *default_raw;
    json_t         *minimum_raw;
    json_t         *maximum_raw;
    json_t         *options_raw;     /* "a|b|c" or an array */
    unsigned        required:1;
    unsigned        random:1;        /* default=random: a seed per run */
    unsigned        automatic:1;     /* found from an FSLoad* node */
    const void     *origin;
} fs_input_t;


typedef struct {
    char           *name;
    char           *node;
    char           *label;
    unsigned        automatic:1;     /* found from an FSSave* node */
    const void     *origin;
} fs_output_t;


typedef struct fs_prompt_template_s  fs_prompt_template_t;


typedef struct {
    char           *workflow_name;   /* file name, for messages */
    json_t         *workflow;        /* the API-format graph */
    fs_prompt_template_t  *prompt_template;   /* fs_prompt_prepare() */

    fs_input_t     *inputs;
    size_t          ninputs;
    size_t          inputs_cap;

    fs_output_t    *outputs;
    size_t          noutputs;
    size_t          outputs_cap;

    char            version[FS_VERSION_LEN + 1];
} fs_deployment_t;


fs_deployment_t *fs_deployment_new(void);
void fs_deployment_free(fs_deployment_t *d);

int fs_workflow_load(fs_deployment_t *d, const char *name, const char *text,
    size_t len, fs_error_t *err);

int fs_input_declare(fs_deployment_t *d, const char *name, const char *slot,
    size_t nopts, char **opts, const void *origin, fs_error_t *err);
int fs_output_declare(fs_deployment_t *d, const char *name, const char *node,
    size_t nopts, char **opts, const void *origin, fs_error_t *err);
int fs_io_load(fs_deployment_t *d, const char *name, const char *text,
    size_t len, const void *origin, fs_error_t *err);

int fs_deployment_check(fs_deployment_t *d, fs_error_t *err);

json_t *fs_deployment_describe(const fs_deployment_t *d, const char *name,
    const char *location, const char *state);
json_t *fs_input_schema(const fs_input_t *in);

const char *fs_type_name(fs_type_e type);
fs_type_e fs_type_parse(const char *name);
int fs_is_identifier(const char *s);


#endif /* _NGX_HTTP_FLOWSCALE_WORKFLOW_H_INCLUDED_ */
