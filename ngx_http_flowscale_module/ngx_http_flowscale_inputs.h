
/*
 * FlowScale for nginx: validating what a caller gives against the declared
 * inputs of a deployment, and building the prompt graph sent to ComfyUI.
 *
 * Pure C over jansson and libc: no nginx type appears here, so this part is
 * unit tested (t/unit/test_inputs.c) on its own.
 */


#ifndef _NGX_HTTP_FLOWSCALE_INPUTS_H_INCLUDED_
#define _NGX_HTTP_FLOWSCALE_INPUTS_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "ngx_http_flowscale_workflow.h"
#include "ngx_http_flowscale_form.h"


#define FS_FILENAME_MAX   100


typedef struct {
    char           *input;          /* our input name */
    char           *filename;       /* safe basename: [A-Za-z0-9._-], no
                                       leading dot, at most 100 chars, with
                                       an extension matching the content
                                       type when it has none */
    char           *content_type;   /* sniffed from magic bytes when
                                       possible, else the given one, else
                                       application/octet-stream */
    unsigned char  *data;
    size_t          len;
} fs_file_t;


/*
 * Validates what the caller gave against the declared inputs and returns
 * what the run uses.
 *
 * given: an object input-name -> value, or NULL for none.  With form == 0
 * it is the "inputs" of a JSON body and types are strict (20 and 20.0 are
 * integers, "20" is not; true is not a number; an integer is a number).
 * With form != 0 its values are strings from form fields and are coerced:
 * "20" -> 20, "1.5" -> 1.5, true/false/on/off/yes/no/1/0 -> boolean (any
 * case), and an empty string means "not given".  In both modes null means
 * "not given".
 *
 * files: file parts matched to inputs by their name (fs_form_split puts
 * them first); when a name repeats, the last part wins.  A file part with
 * no bytes and an empty or no filename (a browser's empty file control)
 * means "not given".  File inputs may also be strings in given: a data:
 * URL or base64, decoded here.
 *
 * Returns 0 with *values (an object with, for every declared input that
 * was given, has a default or is default=random, the typed value; a file
 * input is {"filename", "content_type", "size"}, or its default file name)
 * and *out_files (the bytes of each given file input, in declaration
 * order; free with fs_files_free(*out_files, *out_nfiles) even when
 * *out_nfiles is 0).  Returns -1 with *errors, an array of {"input", "code",
 * "message"} for every problem found (code "type", "range", "option",
 * "unknown", "required" or "file"), or with *errors NULL when out of
 * memory.  rng draws the seeds of default=random inputs; NULL uses the
 * system's entropy.
 */
int fs_inputs_validate(const fs_deployment_t *d, json_t *given, int form,
    fs_part_t *files, size_t nfiles, uint64_t (*rng)(void *data),
    void *rng_data, json_t **values, fs_file_t **out_files,
    size_t *out_nfiles, json_t **errors);
void fs_files_free(fs_file_t *files, size_t n);

/*
 * The prompt graph for ComfyUI: a deep copy of d->workflow with each value
 * of values written, correctly typed, into its input's NODE.INPUT slot, and
 * the filename_prefix of every declared output node and of every other node
 * whose filename_prefix is a string set to prefix (NULL: left alone).  A
 * prefix fed by a link is left alone: links never change.  Nothing else
 * changes, and keys of values that are no declared input are ignored.
 *
 * A file input whose value is an object (a given file) takes
 * uploaded[name], the string /upload/image answered ("subfolder/name" or
 * "name"); with uploaded NULL, before the upload, it takes the file's safe
 * filename as a placeholder, to be replaced by fs_prompt_set_uploads() once
 * uploaded.  A file input whose value is a string (its default) takes it.
 *
 * NULL when out of memory, when a value does not fit its input or when
 * uploaded lacks a given file: bugs of the caller, never of the client.
 */
json_t *fs_prompt_build(const fs_deployment_t *d, json_t *values,
    json_t *uploaded, const char *prefix);

/*
 * At dispatch, after the files went to the chosen backend: writes each
 * uploaded[name] of a declared file input into its slot of a prompt from
 * fs_prompt_build (other keys are ignored).  -1 if a name is no string.
 */
int fs_prompt_set_uploads(const fs_deployment_t *d, json_t *prompt,
    json_t *uploaded);

/*
 * The text of json_dumps(fs_prompt_build(d, values, NULL, prefix),
 * JSON_COMPACT), made from a template fs_prompt_prepare() keeps in d
 * (fs_deployment_check() calls it): the whole graph is not copied and
 * dumped for every run.  NULL as fs_prompt_build() would be; free() it.
 */
char *fs_prompt_text(const fs_deployment_t *d, json_t *values,
    const char *prefix);
int fs_prompt_prepare(fs_deployment_t *d);
void fs_prompt_template_free(fs_prompt_template_t *t);

/* the content type of some bytes from their magic, or NULL */
const char *fs_sniff(const unsigned char *data, size_t len);


#endif /* _NGX_HTTP_FLOWSCALE_INPUTS_H_INCLUDED_ */
