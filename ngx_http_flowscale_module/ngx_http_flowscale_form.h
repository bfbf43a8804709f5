
/*
 * FlowScale for nginx: request body formats for creating a run.
 *
 * multipart/form-data (RFC 7578 over RFC 2046), application/x-www-form-
 * urlencoded, and files given as strings in JSON (data: URLs, RFC 2397, or
 * plain base64).  Pure C over jansson and libc: no nginx type appears here,
 * so this part is unit tested (t/unit/test_form.c) and fuzzed
 * (fuzz/fuzz_form.c) on its own.
 *
 * The parsers return every field, in body order, repeated names included;
 * fs_form_split() then applies the rule that the last field of a name wins.
 */


#ifndef _NGX_HTTP_FLOWSCALE_FORM_H_INCLUDED_
#define _NGX_HTTP_FLOWSCALE_FORM_H_INCLUDED_


#include <stddef.h>
#include <jansson.h>


#define FS_FORM_MAX_PARTS      1000
#define FS_BOUNDARY_MAX        200


typedef struct {
    char                 *name;          /* field name (NUL-terminated copy) */
    char                 *filename;      /* NULL for a plain field */
    char                 *content_type;  /* NULL if none given */
    const unsigned char  *data;          /* field value / file bytes */
    size_t                len;
    unsigned char        *owned;         /* non-NULL when data was decoded
                                            into a copy */
} fs_part_t;


/*
 * Each returns 0 with *parts (NULL when there are none) and *nparts, or -1
 * with a message in plain words in err (for a 400) and nothing to free.
 * Parts point into body, which must outlive them, except decoded ones.
 */
int fs_multipart_parse(const char *content_type_header,
    const unsigned char *body, size_t len, fs_part_t **parts, size_t *nparts,
    char *err, size_t errlen);
int fs_urlencoded_parse(const unsigned char *body, size_t len,
    fs_part_t **parts, size_t *nparts, char *err, size_t errlen);
void fs_parts_free(fs_part_t *parts, size_t n);

/*
 * Prepares parsed form fields for fs_inputs_validate(..., form = 1, ...):
 * the last field of each name wins; the winning file parts (those with a
 * filename, even an empty one) are moved, in body order, to the front of
 * parts and counted in *nfiles; the winning plain fields become *given, an
 * object of name -> string.  Returns -1 with err set when a plain field is
 * not valid UTF-8.
 */
int fs_form_split(fs_part_t *parts, size_t n, json_t **given,
    size_t *nfiles, char *err, size_t errlen);

/*
 * An image given as a string in JSON: a data: URL (data:image/png;base64,
 * ...; a data: URL without ";base64" is percent-decoded) or plain base64
 * (standard or URL-safe alphabet, padding optional, whitespace ignored).
 * Returns 0 with *out (malloc()ed, free() it; never NULL, even when
 * *outlen is 0) and *media_type (malloc()ed lower-case "type/subtype" from
 * a data: URL, or NULL), or -1 with err set.
 */
int fs_decode_file_string(const char *s, size_t len, unsigned char **out,
    size_t *outlen, char **media_type, char *err, size_t errlen);


#endif /* _NGX_HTTP_FLOWSCALE_FORM_H_INCLUDED_ */
