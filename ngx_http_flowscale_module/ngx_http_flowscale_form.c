
/*
 * FlowScale for nginx: request body formats for creating a run.
 *
 * Pure C over jansson (see ngx_http_flowscale_form.h).  Everything here
 * reads bytes a caller sent: every access is bounded by an explicit end,
 * nothing relies on a NUL terminator in the body.
 */


#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ngx_http_flowscale_form.h"


typedef struct {
    fs_part_t  *parts;
    size_t      n;
    size_t      cap;
} fs_parts_t;


static void fs_form_error(char *err, size_t errlen, const char *fmt, ...)
#ifdef __GNUC__
    __attribute__ ((format (printf, 3, 4)))
#endif
    ;
static fs_part_t *fs_parts_push(fs_parts_t *a, char *err, size_t errlen);
static const unsigned char *fs_memmem(const unsigned char *p,
    const unsigned char *end, const unsigned char *s, size_t n);
static int fs_boundary(const char *header, char *boundary, size_t *blen,
    char *err, size_t errlen);
static int fs_param(const char *p, const char *end, const char *want,
    char **value);
static int fs_multipart_headers(fs_part_t *part, size_t index,
    const unsigned char *p, const unsigned char *end, char *err,
    size_t errlen);
static int fs_multipart_header(fs_part_t *part, size_t index,
    const char *name, size_t nlen, const char *value, size_t vlen,
    int *disposition, char *err, size_t errlen);
static int fs_hex(int c);
static unsigned char *fs_percent_decode(const unsigned char *p, size_t len,
    int plus, size_t *outlen);
static int fs_base64_decode(const unsigned char *p, size_t len,
    unsigned char *out, size_t *outlen, char *err, size_t errlen);
static char *fs_media_type(const char *p, size_t len);
static int fs_is_token_char(int c);
static int fs_is_utf8(const unsigned char *p, size_t len);
static const char *fs_echo(const char *s, char *buf, size_t size);


static void
fs_form_error(char *err, size_t errlen, const char *fmt, ...)
{
    va_list  args;

    if (err == NULL || errlen == 0) {
        return;
    }

    va_start(args, fmt);
    vsnprintf(err, errlen, fmt, args);
    va_end(args);
}


/*
 * A field name for a message: printable ASCII only and short, so that the
 * message is always valid UTF-8 JSON text, whatever the caller sent.
 */

static const char *
fs_echo(const char *s, char *buf, size_t size)
{
    size_t  i;

    for (i = 0; s[i] && i + 4 < size; i++) {
        buf[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
    }

    if (s[i] && size >= 4) {
        i = i < size - 4 ? i : size - 4;
        memcpy(buf + i, "...", 3);
        i += 3;
    }

    buf[i] = '\0';

    return buf;
}


void
fs_parts_free(fs_part_t *parts, size_t n)
{
    size_t  i;

    if (parts == NULL) {
        return;
    }

    for (i = 0; i < n; i++) {
        free(parts[i].name);
        free(parts[i].filename);
        free(parts[i].content_type);
        free(parts[i].owned);
    }

    free(parts);
}


static fs_part_t *
fs_parts_push(fs_parts_t *a, char *err, size_t errlen)
{
    size_t      cap;
    fs_part_t  *grown, *part;

    if (a->n == FS_FORM_MAX_PARTS) {
        fs_form_error(err, errlen, "the body has more than %d fields",
                      FS_FORM_MAX_PARTS);
        return NULL;
    }

    if (a->n == a->cap) {
        cap = a->cap ? 2 * a->cap : 8;
        grown = realloc(a->parts, cap * sizeof(fs_part_t));
        if (grown == NULL) {
            fs_form_error(err, errlen, "out of memory");
            return NULL;
        }

        a->parts = grown;
        a->cap = cap;
    }

    part = &a->parts[a->n++];
    memset(part, 0, sizeof(fs_part_t));

    return part;
}


static const unsigned char *
fs_memmem(const unsigned char *p, const unsigned char *end,
    const unsigned char *s, size_t n)
{
    while ((size_t) (end - p) >= n) {
        p = memchr(p, s[0], end - p - n + 1);
        if (p == NULL) {
            return NULL;
        }

        if (memcmp(p, s, n) == 0) {
            return p;
        }

        p++;
    }

    return NULL;
}


static int
fs_is_token_char(int c)
{
    /* RFC 9110 tchar */
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9')
           || (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}


/*
 * The value of parameter "want" in a header value such as
 * form-data; name="a\"b"; filename=x.png: 1 found (*value malloc()ed),
 * 0 not there, -1 malformed or out of memory.  The first occurrence wins,
 * and "filename*" is a different parameter from "filename".
 */

static int
fs_param(const char *p, const char *end, const char *want, char **value)
{
    size_t       nlen, vlen;
    char        *v;
    const char  *name, *q, *vs;

    *value = NULL;

    /* the type or disposition before the first ';' */
    while (p < end && *p != ';') {
        if (*p == '"') {
            return -1;
        }
        p++;
    }

    while (p < end) {
        /* separators and white space between parameters */
        while (p < end && (*p == ';' || *p == ' ' || *p == '\t')) {
            p++;
        }

        if (p == end) {
            break;
        }

        name = p;
        while (p < end && *p != '=' && *p != ';') {
            p++;
        }

        q = p;
        while (q > name && (q[-1] == ' ' || q[-1] == '\t')) {
            q--;
        }

        nlen = q - name;

        if (p == end || *p == ';') {
            /* a parameter without a value: skip it */
            continue;
        }

        p++;

        while (p < end && (*p == ' ' || *p == '\t')) {
            p++;
        }

        if (p < end && *p == '"') {
            /* quoted-string: backslash escapes the next byte */
            p++;
            vs = p;
            vlen = 0;

            while (p < end && *p != '"') {
                if (*p == '\\' && p + 1 < end) {
                    p++;
                }
                p++;
                vlen++;
            }

            if (p == end) {
                return -1;
            }

            if (nlen == strlen(want) && strncasecmp(name, want, nlen) == 0) {
                v = malloc(vlen + 1);
                if (v == NULL) {
                    return -1;
                }

                vlen = 0;
                for (q = vs; q < p; q++) {
                    if (*q == '\\' && q + 1 < p) {
                        q++;
                    }
                    v[vlen++] = *q;
                }

                v[vlen] = '\0';
                *value = v;
                return 1;
            }

            p++;

            /* only white space may follow up to the next ';' */
            while (p < end && (*p == ' ' || *p == '\t')) {
                p++;
            }

            if (p < end && *p != ';') {
                return -1;
            }

            continue;
        }

        vs = p;
        while (p < end && *p != ';') {
            p++;
        }

        q = p;
        while (q > vs && (q[-1] == ' ' || q[-1] == '\t')) {
            q--;
        }

        if (nlen == strlen(want) && strncasecmp(name, want, nlen) == 0) {
            vlen = q - vs;
            v = malloc(vlen + 1);
            if (v == NULL) {
                return -1;
            }

            memcpy(v, vs, vlen);
            v[vlen] = '\0';
            *value = v;
            return 1;
        }
    }

    return 0;
}


static int
fs_boundary(const char *header, char *boundary, size_t *blen, char *err,
    size_t errlen)
{
    int          rc;
    char        *value;
    size_t       len;
    const char  *end;

    if (header == NULL
        || strncasecmp(header, "multipart/form-data", 19) != 0
        || (header[19] != '\0' && header[19] != ';' && header[19] != ' '
            && header[19] != '\t'))
    {
        fs_form_error(err, errlen, "the Content-Type is not "
                      "multipart/form-data");
        return -1;
    }

    end = header + strlen(header);
    rc = fs_param(header, end, "boundary", &value);

    if (rc < 0) {
        fs_form_error(err, errlen, "the Content-Type header is malformed "
                      "(an unclosed quote or stray text in its parameters)");
        return -1;
    }

    if (rc == 0 || value[0] == '\0') {
        free(value);
        fs_form_error(err, errlen, "the Content-Type header has no boundary; "
                      "send \"multipart/form-data; boundary=...\"");
        return -1;
    }

    len = strlen(value);

    if (len > FS_BOUNDARY_MAX) {
        free(value);
        fs_form_error(err, errlen, "the multipart boundary is longer than "
                      "%d characters", FS_BOUNDARY_MAX);
        return -1;
    }

    /* RFC 2046 allows less; printable ASCII keeps messages printable */
    for (end = value; *end; end++) {
        if (*end < 0x20 || *end > 0x7e) {
            free(value);
            fs_form_error(err, errlen, "the multipart boundary has a byte "
                          "that is not printable ASCII");
            return -1;
        }
    }

    /* the delimiter is "--" followed by the boundary */
    boundary[0] = '-';
    boundary[1] = '-';
    memcpy(boundary + 2, value, len);
    *blen = len + 2;

    free(value);

    return 0;
}


int
fs_multipart_parse(const char *content_type_header, const unsigned char *body,
    size_t len, fs_part_t **parts, size_t *nparts, char *err, size_t errlen)
{
    int                   closed;
    char                  delim[FS_BOUNDARY_MAX + 2];
    size_t                dlen;
    fs_part_t            *part;
    fs_parts_t            a;
    const unsigned char  *p, *end, *d, *q, *start, *cend;

    *parts = NULL;
    *nparts = 0;

    if (fs_boundary(content_type_header, delim, &dlen, err, errlen) != 0) {
        return -1;
    }

    memset(&a, 0, sizeof(a));

    p = body;
    end = body + len;
    start = NULL;
    closed = 0;

    /*
     * A delimiter is "--BOUNDARY" at the start of a line, then "--" for
     * the closing one, or optional white space and a line break.  The line
     * break before it belongs to the delimiter, not to the part; "--BOUNDARY"
     * followed by anything else is not a delimiter.  Everything before the
     * first delimiter is preamble, everything after the closing one
     * epilogue, and both are ignored.
     */

    while (p < end) {
        d = fs_memmem(p, end, (const unsigned char *) delim, dlen);
        if (d == NULL) {
            break;
        }

        if (d != body && d[-1] != '\n') {
            p = d + 1;
            continue;
        }

        q = d + dlen;

        if (end - q >= 2 && q[0] == '-' && q[1] == '-') {
            closed = 1;

        } else {
            while (q < end && (*q == ' ' || *q == '\t')) {
                q++;
            }

            if (q < end && *q == '\r') {
                q++;
            }

            if (q == end || *q != '\n') {
                p = d + 1;
                continue;
            }

            q++;
        }

        if (start != NULL) {
            cend = d;

            if (cend > start && cend[-1] == '\n') {
                cend--;
            }

            if (cend > start && cend[-1] == '\r') {
                cend--;
            }

            part = fs_parts_push(&a, err, errlen);

            if (part == NULL
                || fs_multipart_headers(part, a.n, start, cend, err, errlen)
                   != 0)
            {
                goto failed;
            }
        }

        if (closed) {
            break;
        }

        start = q;
        p = q;
    }

    if (!closed) {
        fs_form_error(err, errlen, start == NULL
                      ? "the multipart body has no \"--%.*s\" delimiter line; "
                        "check the boundary in the Content-Type header"
                      : "the multipart body ends without its closing "
                        "delimiter \"--%.*s--\"; it may have been cut off",
                      (int) (dlen - 2), delim + 2);
        goto failed;
    }

    *parts = a.parts;
    *nparts = a.n;

    return 0;

failed:

    fs_parts_free(a.parts, a.n);
    return -1;
}


/*
 * The headers of a part run up to the first empty line; the rest of the
 * part is its content.  Folded header lines (obsolete, but allowed by RFC
 * 5322) are joined to the header they continue.
 */

static int
fs_multipart_headers(fs_part_t *part, size_t index, const unsigned char *p,
    const unsigned char *end, char *err, size_t errlen)
{
    int                   rc, disposition;
    char                 *value, *grown;
    size_t                vlen, vcap, nlen;
    const unsigned char  *line, *eol, *next, *colon, *name, *s;

    value = NULL;
    vcap = 0;
    vlen = 0;
    name = NULL;
    nlen = 0;
    rc = 0;
    disposition = 0;

    for ( ;; ) {
        if (p == end) {
            /* no empty line: all headers, no content */
            line = end;
            eol = end;
            next = end;

        } else {
            line = p;
            eol = memchr(p, '\n', end - p);
            next = eol ? eol + 1 : end;
            eol = eol ? eol : end;

            if (eol > line && eol[-1] == '\r') {
                eol--;
            }
        }

        /* a continuation line extends the current header */
        if (line < eol && (*line == ' ' || *line == '\t') && name != NULL) {
            if (vlen + (eol - line) + 1 > vcap) {
                vcap = 2 * (vlen + (eol - line) + 1);
                grown = realloc(value, vcap);
                if (grown == NULL) {
                    fs_form_error(err, errlen, "out of memory");
                    rc = -1;
                    break;
                }
                value = grown;
            }

            memcpy(value + vlen, line, eol - line);
            vlen += eol - line;
            p = next;
            continue;
        }

        if (name != NULL) {
            rc = fs_multipart_header(part, index, (const char *) name, nlen,
                                     value, vlen, &disposition, err, errlen);
            name = NULL;

            if (rc != 0) {
                break;
            }
        }

        if (line == eol) {
            /* the empty line, or the end of the part */
            part->data = next;
            part->len = end - next;
            break;
        }

        p = next;

        colon = memchr(line, ':', eol - line);
        if (colon == NULL || colon == line) {
            /* not a header line: ignored, like browsers do */
            continue;
        }

        name = line;
        nlen = colon - line;

        s = colon + 1;
        vlen = eol - s;

        if (vlen + 1 > vcap) {
            vcap = vlen + 64;
            grown = realloc(value, vcap);
            if (grown == NULL) {
                fs_form_error(err, errlen, "out of memory");
                rc = -1;
                break;
            }
            value = grown;
        }

        memcpy(value, s, vlen);
    }

    free(value);

    if (rc != 0) {
        return -1;
    }

    if (part->name == NULL) {
        fs_form_error(err, errlen, "part %zu of the multipart body has no "
                      "name: each part needs \"Content-Disposition: "
                      "form-data; name=\\\"...\\\"\"", index);
        return -1;
    }

    return 0;
}


static int
fs_multipart_header(fs_part_t *part, size_t index, const char *name,
    size_t nlen, const char *value, size_t vlen, int *disposition, char *err,
    size_t errlen)
{
    int          rc;
    char        *v;
    const char  *p, *end;

    p = value;
    end = value + vlen;

    while (p < end && (*p == ' ' || *p == '\t')) {
        p++;
    }

    while (end > p && (end[-1] == ' ' || end[-1] == '\t')) {
        end--;
    }

    if (memchr(p, '\0', end - p) != NULL) {
        fs_form_error(err, errlen, "part %zu of the multipart body has a NUL "
                      "byte in a header", index);
        return -1;
    }

    if (nlen == 19 && strncasecmp(name, "Content-Disposition", 19) == 0) {
        if (*disposition) {
            fs_form_error(err, errlen, "part %zu of the multipart body has "
                          "two Content-Disposition headers", index);
            return -1;
        }

        *disposition = 1;

        /* "form-data" only; anything else is not a form field */
        if ((size_t) (end - p) < 9 || strncasecmp(p, "form-data", 9) != 0
            || (p + 9 < end && p[9] != ';' && p[9] != ' ' && p[9] != '\t'))
        {
            fs_form_error(err, errlen, "part %zu of the multipart body is "
                          "not \"Content-Disposition: form-data\"", index);
            return -1;
        }

        rc = fs_param(p, end, "name", &part->name);

        if (rc < 0) {
            goto malformed;
        }

        rc = fs_param(p, end, "filename", &part->filename);

        if (rc < 0) {
            free(part->name);
            part->name = NULL;
            goto malformed;
        }

        if (part->name && part->name[0] == '\0') {
            free(part->name);
            part->name = NULL;
        }

        return 0;
    }

    if (nlen == 12 && strncasecmp(name, "Content-Type", 12) == 0) {
        free(part->content_type);

        v = malloc(end - p + 1);
        if (v == NULL) {
            fs_form_error(err, errlen, "out of memory");
            return -1;
        }

        memcpy(v, p, end - p);
        v[end - p] = '\0';
        part->content_type = v;
    }

    return 0;

malformed:

    fs_form_error(err, errlen, "part %zu of the multipart body has a "
                  "malformed Content-Disposition (an unclosed quote?)", index);
    return -1;
}


static int
fs_hex(int c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }

    c |= 0x20;

    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }

    return -1;
}


/* NULL on a bad escape; the copy is NUL-terminated for convenience */

static unsigned char *
fs_percent_decode(const unsigned char *p, size_t len, int plus,
    size_t *outlen)
{
    size_t          i, n;
    unsigned char  *out;

    out = malloc(len + 1);
    if (out == NULL) {
        return NULL;
    }

    n = 0;

    for (i = 0; i < len; i++) {
        if (p[i] == '%') {
            if (i + 2 >= len || fs_hex(p[i + 1]) < 0
                || fs_hex(p[i + 2]) < 0)
            {
                goto bad;
            }

            out[n++] = (unsigned char) (fs_hex(p[i + 1]) * 16
                                        + fs_hex(p[i + 2]));
            i += 2;

        } else if (p[i] == '+' && plus) {
            out[n++] = ' ';

        } else {
            out[n++] = p[i];
        }
    }

    out[n] = '\0';
    *outlen = n;

    return out;

bad:

    free(out);
    return NULL;
}


/*
 * name=value pairs separated by "&"; "+" is a space and %XX a byte in
 * both.  A pair without "=" is a field with an empty value, empty pairs
 * ("a=1&&b=2") are skipped, and every field is returned, repeats included.
 */

int
fs_urlencoded_parse(const unsigned char *body, size_t len, fs_part_t **parts,
    size_t *nparts, char *err, size_t errlen)
{
    char                  echo[72];
    size_t                nlen, vlen, outlen;
    fs_part_t            *part;
    fs_parts_t            a;
    const unsigned char  *p, *end, *amp, *eq, *value;

    *parts = NULL;
    *nparts = 0;

    memset(&a, 0, sizeof(a));

    p = body;
    end = body + len;

    while (p < end) {
        amp = memchr(p, '&', end - p);
        amp = amp ? amp : end;

        if (amp == p) {
            p++;
            continue;
        }

        eq = memchr(p, '=', amp - p);
        nlen = (eq ? eq : amp) - p;
        value = eq ? eq + 1 : amp;
        vlen = amp - value;

        part = fs_parts_push(&a, err, errlen);
        if (part == NULL) {
            goto failed;
        }

        part->name = (char *) fs_percent_decode(p, nlen, 1, &outlen);

        if (part->name == NULL) {
            fs_form_error(err, errlen, "field %zu of the form has a bad "
                          "%%-escape in its name (use %%XX with two hex "
                          "digits)", a.n);
            goto failed;
        }

        if (outlen == 0 || memchr(part->name, '\0', outlen) != NULL) {
            fs_form_error(err, errlen, "field %zu of the form has %s", a.n,
                          outlen ? "a NUL byte in its name" : "no name");
            goto failed;
        }

        if (memchr(value, '%', vlen) == NULL
            && memchr(value, '+', vlen) == NULL)
        {
            part->data = value;
            part->len = vlen;

        } else {
            part->owned = fs_percent_decode(value, vlen, 1, &part->len);

            if (part->owned == NULL) {
                fs_form_error(err, errlen, "field \"%s\" of the form has "
                              "a bad %%-escape (use %%XX with two hex digits)",
                              fs_echo(part->name, echo, sizeof(echo)));
                goto failed;
            }

            part->data = part->owned;
        }

        p = amp;
    }

    *parts = a.parts;
    *nparts = a.n;

    return 0;

failed:

    fs_parts_free(a.parts, a.n);
    return -1;
}


static int
fs_is_utf8(const unsigned char *p, size_t len)
{
    json_t  *s;

    s = json_stringn((const char *) p, len);
    json_decref(s);

    return s != NULL;
}


int
fs_form_split(fs_part_t *parts, size_t n, json_t **given, size_t *nfiles,
    char *err, size_t errlen)
{
    char        echo[72];
    size_t      i, j, k;
    json_t     *obj, *s;
    fs_part_t   tmp;

    *given = NULL;
    *nfiles = 0;

    obj = json_object();
    if (obj == NULL) {
        fs_form_error(err, errlen, "out of memory");
        return -1;
    }

    /* the last field of a name wins: drop those a later one overrides */
    k = 0;

    for (i = 0; i < n; i++) {
        for (j = i + 1; j < n; j++) {
            if (strcmp(parts[i].name, parts[j].name) == 0) {
                break;
            }
        }

        if (j < n) {
            continue;
        }

        if (!fs_is_utf8((const unsigned char *) parts[i].name,
                        strlen(parts[i].name)))
        {
            fs_form_error(err, errlen, "the name of field \"%s\" is not "
                          "valid UTF-8 text",
                          fs_echo(parts[i].name, echo, sizeof(echo)));
            json_decref(obj);
            return -1;
        }

        if (parts[i].filename == NULL) {
            if (!fs_is_utf8(parts[i].data, parts[i].len)) {
                fs_form_error(err, errlen, "field \"%s\" is not valid "
                              "UTF-8 text",
                              fs_echo(parts[i].name, echo, sizeof(echo)));
                json_decref(obj);
                return -1;
            }

            s = json_stringn((const char *) parts[i].data, parts[i].len);

            if (s == NULL || json_object_set_new(obj, parts[i].name, s) != 0)
            {
                fs_form_error(err, errlen, "out of memory");
                json_decref(obj);
                return -1;
            }

            continue;
        }

        /* a stable move of the winning file part to the front */
        tmp = parts[i];
        memmove(&parts[k + 1], &parts[k], (i - k) * sizeof(fs_part_t));
        parts[k++] = tmp;
    }

    *given = obj;
    *nfiles = k;

    return 0;
}


/* "image/PNG" -> "image/png"; NULL unless it is token/token */

static char *
fs_media_type(const char *p, size_t len)
{
    size_t  i, slash;
    char   *t;

    slash = 0;

    for (i = 0; i < len; i++) {
        if (p[i] == '/') {
            if (slash || i == 0) {
                return NULL;
            }
            slash = i;
            continue;
        }

        if (!fs_is_token_char((unsigned char) p[i])) {
            return NULL;
        }
    }

    if (slash == 0 || slash == len - 1 || len > 127) {
        return NULL;
    }

    t = malloc(len + 1);
    if (t == NULL) {
        return NULL;
    }

    for (i = 0; i < len; i++) {
        t[i] = (p[i] >= 'A' && p[i] <= 'Z') ? p[i] | 0x20 : p[i];
    }

    t[len] = '\0';

    return t;
}


/*
 * Both alphabets ("+/" and "-_") are taken, even mixed; white space is
 * skipped; "=" padding may be left out, but once it starts only more "="
 * and white space may follow.
 */

static int
fs_base64_decode(const unsigned char *p, size_t len, unsigned char *out,
    size_t *outlen, char *err, size_t errlen)
{
    int            v;
    size_t         i, n, q, pad;
    unsigned long  acc;

    n = 0;
    q = 0;
    pad = 0;
    acc = 0;

    for (i = 0; i < len; i++) {
        int  c = p[i];

        if (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f'
            || c == '\v')
        {
            continue;
        }

        if (c == '=') {
            pad++;
            continue;
        }

        if (c >= 'A' && c <= 'Z') {
            v = c - 'A';

        } else if (c >= 'a' && c <= 'z') {
            v = c - 'a' + 26;

        } else if (c >= '0' && c <= '9') {
            v = c - '0' + 52;

        } else if (c == '+' || c == '-') {
            v = 62;

        } else if (c == '/' || c == '_') {
            v = 63;

        } else {
            fs_form_error(err, errlen, "it is not base64: byte %zu is not a "
                          "base64 character", i + 1);
            return -1;
        }

        if (pad) {
            fs_form_error(err, errlen, "it is not base64: data follows the "
                          "\"=\" padding");
            return -1;
        }

        acc = (acc << 6) | (unsigned long) v;

        if (++q == 4) {
            out[n++] = (unsigned char) (acc >> 16);
            out[n++] = (unsigned char) (acc >> 8);
            out[n++] = (unsigned char) acc;
            acc = 0;
            q = 0;
        }
    }

    if (q == 1 || (pad && (q == 0 || q + pad > 4))) {
        fs_form_error(err, errlen, "it is not base64: its length does not "
                      "fit (it may have been cut off)");
        return -1;
    }

    if (q == 2) {
        out[n++] = (unsigned char) (acc >> 4);

    } else if (q == 3) {
        out[n++] = (unsigned char) (acc >> 10);
        out[n++] = (unsigned char) (acc >> 2);
    }

    *outlen = n;

    return 0;
}


int
fs_decode_file_string(const char *s, size_t len, unsigned char **out,
    size_t *outlen, char **media_type, char *err, size_t errlen)
{
    int                   base64;
    size_t                n;
    unsigned char        *buf;
    const char           *end, *comma, *semi, *last;
    const unsigned char  *data;

    *out = NULL;
    *outlen = 0;
    *media_type = NULL;

    end = s + len;

    while (s < end && (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n'))
    {
        s++;
    }

    while (end > s
           && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'
               || end[-1] == '\n'))
    {
        end--;
    }

    if (end - s >= 5 && strncasecmp(s, "data:", 5) == 0) {
        s += 5;

        comma = memchr(s, ',', end - s);
        if (comma == NULL) {
            fs_form_error(err, errlen, "the data: URL has no \",\" before "
                          "its data");
            return -1;
        }

        /* data:[<media type>][;param=value]*[;base64],<data> */
        semi = memchr(s, ';', comma - s);

        last = comma;
        while (last > s && last[-1] != ';') {
            last--;
        }

        base64 = semi != NULL && comma - last == 6
                 && strncasecmp(last, "base64", 6) == 0;

        n = (semi ? semi : comma) - s;

        if (n > 0) {
            *media_type = fs_media_type(s, n);
        }

        data = (const unsigned char *) comma + 1;
        n = end - (comma + 1);

        if (!base64) {
            buf = fs_percent_decode(data, n, 0, outlen);

            if (buf == NULL) {
                free(*media_type);
                *media_type = NULL;
                fs_form_error(err, errlen, "the data: URL has a bad "
                              "%%-escape; use \";base64,\" for binary data");
                return -1;
            }

            *out = buf;
            return 0;
        }

    } else {
        data = (const unsigned char *) s;
        n = end - s;
    }

    /* 3 bytes per 4 characters, and 1 so that malloc(0) is never asked */
    buf = malloc(n / 4 * 3 + 3 + 1);
    if (buf == NULL) {
        free(*media_type);
        *media_type = NULL;
        fs_form_error(err, errlen, "out of memory");
        return -1;
    }

    if (fs_base64_decode(data, n, buf, outlen, err, errlen) != 0) {
        free(buf);
        free(*media_type);
        *media_type = NULL;
        return -1;
    }

    *out = buf;

    return 0;
}
