
/*
 * FlowScale for nginx: validating the inputs of a run and building the
 * prompt graph for ComfyUI.
 *
 * Pure C over jansson (see ngx_http_flowscale_inputs.h).  The rule that
 * matters most: a value is only ever written into the NODE.INPUT slot of a
 * declared input, and with the JSON type of that input, because ComfyUI
 * coerces with Python's int()/float()/bool() and bool("false") is True.
 */


#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <unistd.h>

#include "ngx_http_flowscale_workflow.h"
#include "ngx_http_flowscale_io.h"
#include "ngx_http_flowscale_form.h"
#include "ngx_http_flowscale_inputs.h"


/* seeds without max= stay exact in a JavaScript number */
#define FS_SEED_MAX       9007199254740991LL

#define FS_MESSAGE_LEN    1024
#define FS_LIST_LEN       480


typedef struct {
    json_t  *list;
    int      oom;
} fs_errors_t;


static void fs_err(fs_errors_t *e, const char *input, const char *code,
    const char *fmt, ...)
#ifdef __GNUC__
    __attribute__ ((format (printf, 4, 5)))
#endif
    ;
static const char *fs_echo(const char *s, char *buf, size_t size);
static const char *fs_kind(json_t *v);
static void fs_value_text(json_t *v, char *buf, size_t size);
static const fs_input_t *fs_find_input(const fs_deployment_t *d,
    const char *name);
static void fs_list_inputs(const fs_deployment_t *d, char *buf, size_t size);
static void fs_list_options(const fs_input_t *in, char *buf, size_t size);
static json_t *fs_value_typed(const fs_input_t *in, json_t *v, int form,
    fs_errors_t *e);
static json_t *fs_value_check(const fs_input_t *in, json_t *typed,
    fs_errors_t *e);
static int fs_parse_integer(const char *s, json_int_t *n);
static int fs_parse_number(const char *s, double *x);
static int fs_parse_boolean(const char *s, int *b);
static int fs_number_chars(const char *s);
static int fs_compare(json_t *a, json_t *b);
static json_t *fs_draw(const fs_input_t *in, uint64_t (*rng)(void *data),
    void *rng_data);
static uint64_t fs_rng_system(void *data);
static int fs_file_input(const fs_input_t *in, json_t *gv, fs_part_t *part,
    int form, fs_file_t *f, fs_errors_t *e);
static char *fs_clean_content_type(const char *given);
static const char *fs_extension(const char *content_type);
static char *fs_safe_filename(const char *given, const char *input,
    const char *content_type);
static json_t *fs_slot_value(const fs_input_t *in, json_t *v,
    json_t *uploaded);
static int fs_prompt_prefix(const fs_deployment_t *d, json_t *prompt,
    const char *prefix);
static int fs_template_split(fs_prompt_template_t *t, json_t *kept);
static char *fs_dump_any(json_t *v);


static void
fs_err(fs_errors_t *e, const char *input, const char *code,
    const char *fmt, ...)
{
    char     msg[FS_MESSAGE_LEN];
    json_t  *item, *m;
    va_list  args;

    va_start(args, fmt);
    vsnprintf(msg, sizeof(msg), fmt, args);
    va_end(args);

    /* a message cut in the middle of a UTF-8 sequence is not a string */
    m = json_string(msg);
    if (m == NULL) {
        m = json_sprintf("%s: invalid value", input ? input : "inputs");
    }

    item = json_object();

    if (item == NULL || m == NULL
        || json_object_set_new(item, "input",
                               input ? json_string(input) : json_null())
        || json_object_set_new(item, "code", json_string(code))
        || json_object_set_new(item, "message", m)
        || json_array_append_new(e->list, item))
    {
        if (item == NULL) {
            json_decref(m);
        }

        json_decref(item);
        e->oom = 1;
    }
}


/* caller text in a message: short, printable, and cut between characters */

static const char *
fs_echo(const char *s, char *buf, size_t size)
{
    size_t  n;

    for (n = 0; s[n] && n + 4 < size; n++) {
        buf[n] = ((unsigned char) s[n] < 0x20 || s[n] == 0x7f) ? ' ' : s[n];
    }

    if (s[n]) {
        /* cut before the character s[n] is in the middle of */
        while (n > 0 && ((unsigned char) s[n] & 0xc0) == 0x80) {
            n--;
        }

        memcpy(buf + n, "...", 3);
        n += 3;
    }

    buf[n] = '\0';

    return buf;
}


static const char *
fs_kind(json_t *v)
{
    switch (json_typeof(v)) {

    case JSON_STRING:
        return "a string";

    case JSON_INTEGER:
        return "an integer";

    case JSON_REAL:
        return json_real_value(v) == floor(json_real_value(v))
               ? "a number out of range" : "a number with a fraction";

    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";

    case JSON_OBJECT:
        return "an object";

    case JSON_ARRAY:
        return "an array";

    default:
        return "null";
    }
}


static void
fs_value_text(json_t *v, char *buf, size_t size)
{
    char  echo[64];

    if (json_is_integer(v)) {
        snprintf(buf, size, "%" JSON_INTEGER_FORMAT, json_integer_value(v));

    } else if (json_is_real(v)) {
        snprintf(buf, size, "%.15g", json_real_value(v));

    } else if (json_is_string(v)) {
        snprintf(buf, size, "\"%s\"",
                 fs_echo(json_string_value(v), echo, sizeof(echo)));

    } else {
        snprintf(buf, size, "%s", json_is_true(v) ? "true" : "false");
    }
}


static const fs_input_t *
fs_find_input(const fs_deployment_t *d, const char *name)
{
    size_t  i;

    for (i = 0; i < d->ninputs; i++) {
        if (strcmp(d->inputs[i].name, name) == 0) {
            return &d->inputs[i];
        }
    }

    return NULL;
}


static void
fs_list_inputs(const fs_deployment_t *d, char *buf, size_t size)
{
    size_t  i, len;

    len = 0;
    buf[0] = '\0';

    for (i = 0; i < d->ninputs && len + 8 < size; i++) {
        len += snprintf(buf + len, size - len, "%s%s",
                        i == 0 ? "" : i + 1 == d->ninputs ? " and " : ", ",
                        d->inputs[i].name);
    }

    if (i < d->ninputs && size > 4) {
        strcpy(buf + (len < size - 4 ? len : size - 4), "...");
    }
}


static void
fs_list_options(const fs_input_t *in, char *buf, size_t size)
{
    char     text[80];
    size_t   i, len;
    json_t  *option;

    len = 0;
    buf[0] = '\0';

    json_array_foreach(in->options, i, option) {
        fs_value_text(option, text, sizeof(text));

        if (len + strlen(text) + 8 >= size) {
            snprintf(buf + len, size - len, ", ...");
            break;
        }

        len += snprintf(buf + len, size - len, "%s%s", i ? ", " : "", text);
    }
}


/* "  20 " and "2e1" are 20; anything else that is not a whole number fails */

static int
fs_parse_integer(const char *s, json_int_t *n)
{
    char       *end;
    double      x;
    long long   v;

    if (!fs_number_chars(s)) {
        return -1;
    }

    errno = 0;
    v = strtoll(s, &end, 10);

    while (*end == ' ' || *end == '\t') {
        end++;
    }

    if (end != s && *end == '\0' && errno == 0) {
        *n = v;
        return 0;
    }

    if (fs_parse_number(s, &x) != 0 || x != floor(x)
        || x < -9223372036854775808.0 || x >= 9223372036854775808.0)
    {
        return -1;
    }

    *n = (json_int_t) x;

    return 0;
}


static int
fs_parse_number(const char *s, double *x)
{
    char  *end;

    if (!fs_number_chars(s)) {
        return -1;
    }

    errno = 0;
    *x = strtod(s, &end);

    while (*end == ' ' || *end == '\t') {
        end++;
    }

    return (end != s && *end == '\0' && errno == 0 && isfinite(*x)) ? 0 : -1;
}


/* strtod() also reads "inf", "nan" and hex: those are not form numbers */

static int
fs_number_chars(const char *s)
{
    int  digit;

    digit = 0;

    for ( /* void */ ; *s; s++) {
        if (*s >= '0' && *s <= '9') {
            digit = 1;

        } else if (strchr("+-.eE \t", *s) == NULL) {
            return 0;
        }
    }

    return digit;
}


static int
fs_parse_boolean(const char *s, int *b)
{
    static const char  *yes[] = { "true", "on", "yes", "1", NULL };
    static const char  *no[] = { "false", "off", "no", "0", NULL };

    size_t  i;

    for (i = 0; yes[i]; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *b = 1;
            return 0;
        }

        if (strcasecmp(s, no[i]) == 0) {
            *b = 0;
            return 0;
        }
    }

    return -1;
}


static int
fs_compare(json_t *a, json_t *b)
{
    double  x, y;

    /* integers as integers: seeds use all 64 bits */
    if (json_is_integer(a) && json_is_integer(b)) {
        return json_integer_value(a) < json_integer_value(b) ? -1
               : json_integer_value(a) > json_integer_value(b);
    }

    x = json_number_value(a);
    y = json_number_value(b);

    return x < y ? -1 : x > y;
}


/* the value as the input's JSON type, or NULL with an error recorded */

static json_t *
fs_value_typed(const fs_input_t *in, json_t *v, int form, fs_errors_t *e)
{
    int          b;
    char         echo[64];
    double       x;
    json_int_t   n;
    const char  *s;

    if (form && json_is_string(v)) {
        s = json_string_value(v);

        switch (in->type) {

        case FS_TYPE_STRING:
            return json_deep_copy(v);

        case FS_TYPE_INTEGER:
            if (fs_parse_integer(s, &n) == 0) {
                return json_integer(n);
            }

            fs_err(e, in->name, "type", "%s must be an integer (a whole "
                   "number), not \"%s\"", in->name,
                   fs_echo(s, echo, sizeof(echo)));
            return NULL;

        case FS_TYPE_NUMBER:
            if (fs_parse_number(s, &x) == 0) {
                return json_real(x);
            }

            fs_err(e, in->name, "type", "%s must be a number, not \"%s\"",
                   in->name, fs_echo(s, echo, sizeof(echo)));
            return NULL;

        case FS_TYPE_BOOLEAN:
            if (fs_parse_boolean(s, &b) == 0) {
                return json_boolean(b);
            }

            fs_err(e, in->name, "type", "%s must be true or false (or on/off, "
                   "yes/no, 1/0), not \"%s\"", in->name,
                   fs_echo(s, echo, sizeof(echo)));
            return NULL;

        default:
            break;
        }
    }

    switch (in->type) {

    case FS_TYPE_STRING:
        if (json_is_string(v)) {
            return json_deep_copy(v);
        }

        fs_err(e, in->name, "type", "%s must be a string, not %s", in->name,
               fs_kind(v));
        return NULL;

    case FS_TYPE_INTEGER:
        if (json_is_integer(v)) {
            return json_integer(json_integer_value(v));
        }

        /* 20.0 is 20: JSON does not tell integers from numbers */
        if (json_is_real(v)
            && json_real_value(v) == floor(json_real_value(v))
            && json_real_value(v) >= -9223372036854775808.0
            && json_real_value(v) < 9223372036854775808.0)
        {
            return json_integer((json_int_t) json_real_value(v));
        }

        fs_err(e, in->name, "type", "%s must be an integer (a whole number), "
               "not %s", in->name, fs_kind(v));
        return NULL;

    case FS_TYPE_NUMBER:
        if (json_is_number(v)) {
            return json_real(json_number_value(v));
        }

        fs_err(e, in->name, "type", "%s must be a number, not %s", in->name,
               fs_kind(v));
        return NULL;

    case FS_TYPE_BOOLEAN:
        if (json_is_boolean(v)) {
            return json_boolean(json_is_true(v));
        }

        fs_err(e, in->name, "type", "%s must be true or false, not %s",
               in->name, fs_kind(v));
        return NULL;

    default:
        fs_err(e, in->name, "type", "%s has an unknown type", in->name);
        return NULL;
    }
}


/* options, then minimum and maximum; takes the reference to typed */

static json_t *
fs_value_check(const fs_input_t *in, json_t *typed, fs_errors_t *e)
{
    char     list[FS_LIST_LEN], text[80], bound[40];
    size_t   i;
    json_t  *option;

    if (typed == NULL) {
        return NULL;
    }

    if (in->options) {
        json_array_foreach(in->options, i, option) {
            if (json_equal(option, typed)) {
                return typed;
            }
        }

        fs_list_options(in, list, sizeof(list));
        fs_value_text(typed, text, sizeof(text));
        fs_err(e, in->name, "option", "%s must be one of %s, not %s",
               in->name, list, text);
        json_decref(typed);
        return NULL;
    }

    if (in->minimum && json_is_number(typed)
        && fs_compare(typed, in->minimum) < 0)
    {
        fs_value_text(in->minimum, bound, sizeof(bound));
        fs_value_text(typed, text, sizeof(text));
        fs_err(e, in->name, "range", "%s must be at least %s, not %s",
               in->name, bound, text);
        json_decref(typed);
        return NULL;
    }

    if (in->maximum && json_is_number(typed)
        && fs_compare(typed, in->maximum) > 0)
    {
        fs_value_text(in->maximum, bound, sizeof(bound));
        fs_value_text(typed, text, sizeof(text));
        fs_err(e, in->name, "range", "%s must be at most %s, not %s",
               in->name, bound, text);
        json_decref(typed);
        return NULL;
    }

    return typed;
}


static uint64_t
fs_rng_system(void *data)
{
    uint64_t  r;

    (void) data;

    if (getentropy(&r, sizeof(r)) != 0) {
        /* cannot happen on Linux >= 3.17; still, never the same seed */
        static uint64_t  x = 0x9e3779b97f4a7c15ULL;

        x += 0x9e3779b97f4a7c15ULL + (uint64_t) getpid();
        r = x ^ (x >> 31);
    }

    return r;
}


/*
 * A seed for default=random: uniform in [min, max] when they are set, else
 * in [0, 2^53 - 1], or one of the options.  Rejection sampling keeps it
 * uniform; a broken rng that never gets below the limit is cut short.
 */

static json_t *
fs_draw(const fs_input_t *in, uint64_t (*rng)(void *data), void *rng_data)
{
    int         tries;
    uint64_t    span, r, skip;
    json_int_t  lo, hi;

    if (rng == NULL) {
        rng = fs_rng_system;
    }

    r = rng(rng_data);

    if (in->options && json_array_size(in->options) > 0) {
        return json_deep_copy(json_array_get(in->options,
                                  r % json_array_size(in->options)));
    }

    lo = 0;
    hi = FS_SEED_MAX;

    if (in->minimum) {
        lo = json_is_integer(in->minimum) ? json_integer_value(in->minimum)
             : (json_int_t) ceil(json_number_value(in->minimum));
    }

    if (in->maximum) {
        hi = json_is_integer(in->maximum) ? json_integer_value(in->maximum)
             : (json_int_t) floor(json_number_value(in->maximum));
    }

    if (hi < lo) {
        if (in->maximum == NULL) {
            hi = LLONG_MAX;

        } else if (in->minimum == NULL) {
            lo = LLONG_MIN;

        } else {
            return json_integer(lo);
        }
    }

    span = (uint64_t) hi - (uint64_t) lo;

    if (span != UINT64_MAX) {
        span++;

        /* 2^64 mod span: the values below it would be drawn too often */
        skip = (0 - span) % span;

        for (tries = 0; r < skip && tries < 64; tries++) {
            r = rng(rng_data);
        }

        r %= span;
    }

    return json_integer((json_int_t) ((uint64_t) lo + r));
}


/* "image/PNG; charset=x" -> "image/png"; NULL unless token/token */

static char *
fs_clean_content_type(const char *given)
{
    char    *t;
    size_t   i, len, slash;

    if (given == NULL) {
        return NULL;
    }

    while (*given == ' ' || *given == '\t') {
        given++;
    }

    len = strcspn(given, "; \t");
    slash = 0;

    for (i = 0; i < len; i++) {
        if (given[i] == '/') {
            if (slash) {
                return NULL;
            }
            slash = i;
            continue;
        }

        if (!((given[i] >= 'a' && given[i] <= 'z')
              || (given[i] >= 'A' && given[i] <= 'Z')
              || (given[i] >= '0' && given[i] <= '9')
              || strchr("!#$&^_.+-", given[i]) != NULL)
            || given[i] == '\0')
        {
            return NULL;
        }
    }

    if (slash == 0 || slash + 1 == len || len > 127) {
        return NULL;
    }

    t = malloc(len + 1);
    if (t == NULL) {
        return NULL;
    }

    for (i = 0; i < len; i++) {
        t[i] = (given[i] >= 'A' && given[i] <= 'Z') ? given[i] | 0x20
                                                     : given[i];
    }

    t[len] = '\0';

    return t;
}


/*
 * The media types ComfyUI's loaders read (PIL for images; video and audio
 * nodes go through PyAV / torchaudio), from their magic bytes.
 */

const char *
fs_sniff(const unsigned char *p, size_t len)
{
    if (len >= 8 && memcmp(p, "\x89PNG\r\n\x1a\n", 8) == 0) {
        return "image/png";
    }

    if (len >= 3 && p[0] == 0xff && p[1] == 0xd8 && p[2] == 0xff) {
        return "image/jpeg";
    }

    if (len >= 6
        && (memcmp(p, "GIF87a", 6) == 0 || memcmp(p, "GIF89a", 6) == 0))
    {
        return "image/gif";
    }

    if (len >= 12 && memcmp(p, "RIFF", 4) == 0) {
        if (memcmp(p + 8, "WEBP", 4) == 0) {
            return "image/webp";
        }

        if (memcmp(p + 8, "WAVE", 4) == 0) {
            return "audio/wav";
        }

        return NULL;
    }

    /* "BM" alone is too weak: the DIB header size must be a known one */
    if (len >= 18 && p[0] == 'B' && p[1] == 'M' && p[15] == 0 && p[16] == 0
        && p[17] == 0
        && (p[14] == 12 || p[14] == 40 || p[14] == 52 || p[14] == 56
            || p[14] == 108 || p[14] == 124))
    {
        return "image/bmp";
    }

    if (len >= 4
        && (memcmp(p, "II*\0", 4) == 0 || memcmp(p, "MM\0*", 4) == 0))
    {
        return "image/tiff";
    }

    if (len >= 12 && memcmp(p + 4, "ftyp", 4) == 0) {
        return memcmp(p + 8, "qt  ", 4) == 0 ? "video/quicktime"
                                             : "video/mp4";
    }

    if (len >= 4 && memcmp(p, "\x1a\x45\xdf\xa3", 4) == 0) {
        /* Matroska; WebM says so in its DocType near the start */
        size_t  n = len < 64 ? len : 64;
        size_t  i;

        for (i = 0; i + 4 <= n; i++) {
            if (memcmp(p + i, "webm", 4) == 0) {
                return "video/webm";
            }
        }

        return "video/x-matroska";
    }

    if (len >= 4 && memcmp(p, "fLaC", 4) == 0) {
        return "audio/flac";
    }

    if (len >= 4 && memcmp(p, "OggS", 4) == 0) {
        return "audio/ogg";
    }

    if (len >= 3 && memcmp(p, "ID3", 3) == 0) {
        return "audio/mpeg";
    }

    /* an MPEG audio layer III frame: 11 sync bits, layer bits 01 */
    if (len >= 2 && p[0] == 0xff && (p[1] & 0xe0) == 0xe0
        && (p[1] & 0x06) == 0x02)
    {
        return "audio/mpeg";
    }

    return NULL;
}


static const char *
fs_extension(const char *content_type)
{
    static const struct {
        const char  *type;
        const char  *ext;
    } map[] = {
        { "image/png", ".png" }, { "image/jpeg", ".jpg" },
        { "image/gif", ".gif" }, { "image/webp", ".webp" },
        { "image/bmp", ".bmp" }, { "image/tiff", ".tif" },
        { "video/mp4", ".mp4" }, { "video/quicktime", ".mov" },
        { "video/webm", ".webm" }, { "video/x-matroska", ".mkv" },
        { "audio/wav", ".wav" }, { "audio/x-wav", ".wav" },
        { "audio/wave", ".wav" }, { "audio/flac", ".flac" },
        { "audio/mpeg", ".mp3" }, { "audio/ogg", ".ogg" },
        { "text/plain", ".txt" }, { "application/json", ".json" },
        { "application/pdf", ".pdf" }
    };

    size_t  i;

    for (i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        if (strcmp(content_type, map[i].type) == 0) {
            return map[i].ext;
        }
    }

    return NULL;
}


/*
 * The name the file is uploaded to ComfyUI under: the caller's basename
 * with every byte outside [A-Za-z0-9._-] turned into "_" (a run of them
 * into one), no leading dot (no hidden files, no ".."), at most 100
 * characters keeping the extension, and an extension from the content
 * type when it has none, so /view serves it with the right type.
 */

static char *
fs_safe_filename(const char *given, const char *input,
    const char *content_type)
{
    int          replaced;
    char        *name, *dot;
    size_t       n, len, elen;
    const char  *p, *ext;

    if (given != NULL) {
        for (p = given; *p; p++) {
            if (*p == '/' || *p == '\\') {
                given = p + 1;
            }
        }
    }

    len = given ? strlen(given) : 0;

    name = malloc(len + strlen(input) + 16 + 1);
    if (name == NULL) {
        return NULL;
    }

    n = 0;
    replaced = 0;

    for (p = given; p && *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
            || (*p >= '0' && *p <= '9') || *p == '.' || *p == '-'
            || *p == '_')
        {
            if (*p == '.' && n == 0) {
                continue;
            }

            name[n++] = *p;
            replaced = 0;

        } else if (!replaced && n > 0) {
            name[n++] = '_';
            replaced = 1;
        }
    }

    while (n > 0 && (name[n - 1] == '.' || name[n - 1] == '_')) {
        n--;
    }

    if (n == 0) {
        strcpy(name, input);
        n = strlen(input);
    }

    name[n] = '\0';

    dot = strrchr(name, '.');
    ext = fs_extension(content_type);

    if (dot == NULL && ext != NULL) {
        strcpy(name + n, ext);
        n += strlen(ext);
        dot = name + n - strlen(ext);
    }

    if (n > FS_FILENAME_MAX) {
        elen = dot ? (size_t) (name + n - dot) : 0;

        if (elen > 0 && elen <= 16) {
            memmove(name + FS_FILENAME_MAX - elen, dot, elen);
        }

        n = FS_FILENAME_MAX;
        name[n] = '\0';
    }

    return name;
}


/*
 * One file input: 1 given (f filled in), 0 not given, -1 refused (an
 * error recorded).
 */

static int
fs_file_input(const fs_input_t *in, json_t *gv, fs_part_t *part, int form,
    fs_file_t *f, fs_errors_t *e)
{
    char           *media, *given_type, msg[256];
    size_t          len;
    const char     *sniffed, *given_name;
    unsigned char  *data;

    media = NULL;
    given_name = NULL;

    if (gv && (json_is_null(gv)
               || (form && json_is_string(gv)
                   && json_string_length(gv) == 0)))
    {
        gv = NULL;
    }

    /* a browser's file control with no file chosen */
    if (part && part->len == 0
        && (part->filename == NULL || part->filename[0] == '\0'))
    {
        part = NULL;
    }

    if (part == NULL && gv == NULL) {
        return 0;
    }

    if (part && gv) {
        fs_err(e, in->name, "file", "%s is given twice, as a file and as a "
               "field; give it once", in->name);
        return -1;
    }

    if (part) {
        if (part->len == 0) {
            fs_err(e, in->name, "file", "%s is empty: the file sent has no "
                   "bytes", in->name);
            return -1;
        }

        data = malloc(part->len);
        if (data == NULL) {
            e->oom = 1;
            return -1;
        }

        memcpy(data, part->data, part->len);
        len = part->len;
        given_name = part->filename;
        given_type = part->content_type;

    } else {
        if (!json_is_string(gv)) {
            fs_err(e, in->name, "type", "%s must be a file: a data: URL or a "
                   "base64 string in JSON, or a file part in "
                   "multipart/form-data; not %s", in->name, fs_kind(gv));
            return -1;
        }

        if (fs_decode_file_string(json_string_value(gv),
                                  json_string_length(gv), &data, &len,
                                  &media, msg, sizeof(msg))
            != 0)
        {
            fs_err(e, in->name, "file", "%s is not a data: URL or base64: %s",
                   in->name, msg);
            return -1;
        }

        if (len == 0) {
            free(data);
            free(media);
            fs_err(e, in->name, "file", "%s is empty: the string holds no "
                   "bytes", in->name);
            return -1;
        }

        given_type = media;
    }

    sniffed = fs_sniff(data, len);

    if (in->type == FS_TYPE_IMAGE
        && (sniffed == NULL || strncmp(sniffed, "image/", 6) != 0))
    {
        fs_err(e, in->name, "file", "%s must be an image (PNG, JPEG, GIF, "
               "WebP, BMP or TIFF), but %s%s", in->name,
               sniffed ? "this is " : "its bytes are none of these",
               sniffed ? sniffed : "");
        free(data);
        free(media);
        return -1;
    }

    f->content_type = sniffed ? strdup(sniffed)
                              : fs_clean_content_type(given_type);

    if (f->content_type == NULL) {
        f->content_type = strdup("application/octet-stream");
    }

    free(media);

    f->input = strdup(in->name);
    f->data = data;
    f->len = len;
    f->filename = f->content_type
                  ? fs_safe_filename(given_name, in->name, f->content_type)
                  : NULL;

    if (f->input == NULL || f->filename == NULL || f->content_type == NULL) {
        e->oom = 1;
        return -1;
    }

    return 1;
}


int
fs_inputs_validate(const fs_deployment_t *d, json_t *given, int form,
    fs_part_t *files, size_t nfiles, uint64_t (*rng)(void *data),
    void *rng_data, json_t **values, fs_file_t **out_files,
    size_t *out_nfiles, json_t **errors)
{
    int                rc;
    char               list[FS_LIST_LEN], echo[72];
    size_t             i, j, nf;
    json_t            *vals, *gv, *typed;
    fs_part_t         *part;
    fs_file_t         *fl;
    fs_errors_t        e;
    const char        *key;
    const fs_input_t  *in;

    *values = NULL;
    *out_files = NULL;
    *out_nfiles = 0;
    *errors = NULL;

    e.list = json_array();
    e.oom = 0;
    vals = json_object();
    fl = calloc(d->ninputs + 1, sizeof(fs_file_t));
    nf = 0;

    if (e.list == NULL || vals == NULL || fl == NULL) {
        goto oom;
    }

    if (given != NULL && !json_is_object(given)) {
        fs_err(&e, NULL, "type", "\"inputs\" must be an object of input "
               "names and values, not %s", fs_kind(given));
        goto failed;
    }

    for (i = 0; i < d->ninputs; i++) {
        in = &d->inputs[i];
        gv = json_object_get(given, in->name);

        if (fs_type_is_file(in->type)) {
            /* the last part of the name wins */
            part = NULL;
            for (j = 0; j < nfiles; j++) {
                if (strcmp(files[j].name, in->name) == 0) {
                    part = &files[j];
                }
            }

            rc = fs_file_input(in, gv, part, form, &fl[nf], &e);

            if (rc == 1) {
                if (json_object_set_new(vals, in->name,
                        json_pack("{s:s, s:s, s:I}",
                                  "filename", fl[nf].filename,
                                  "content_type", fl[nf].content_type,
                                  "size", (json_int_t) fl[nf].len))
                    != 0)
                {
                    e.oom = 1;
                }

                nf++;
                continue;
            }

            if (rc < 0) {
                nf++;
                continue;
            }

            goto not_given;
        }

        if (gv == NULL || json_is_null(gv)
            || (form && json_is_string(gv) && json_string_length(gv) == 0))
        {
            goto not_given;
        }

        typed = fs_value_check(in, fs_value_typed(in, gv, form, &e), &e);

        if (typed && json_object_set_new(vals, in->name, typed) != 0) {
            e.oom = 1;
        }

        continue;

    not_given:

        if (in->required) {
            fs_err(&e, in->name, "required", "%s is required", in->name);

        } else if (in->random) {
            typed = fs_draw(in, rng, rng_data);

            if (typed == NULL || json_object_set_new(vals, in->name, typed)) {
                e.oom = 1;
            }

        } else if (in->default_value) {
            if (json_object_set(vals, in->name, in->default_value) != 0) {
                e.oom = 1;
            }
        }
    }

    /* names that are no input: reported, never written anywhere */

    json_object_foreach(given, key, gv) {
        if (fs_find_input(d, key) == NULL) {
            fs_list_inputs(d, list, sizeof(list));
            fs_err(&e, key, "unknown", d->ninputs
                   ? "there is no input \"%s\"; the inputs are %s"
                   : "there is no input \"%s\"; this deployment takes no "
                     "inputs%s", fs_echo(key, echo, sizeof(echo)), list);
        }
    }

    for (i = 0; i < nfiles; i++) {
        in = fs_find_input(d, files[i].name);

        /* one error per name, at its last part */
        for (j = i + 1; j < nfiles; j++) {
            if (strcmp(files[i].name, files[j].name) == 0) {
                break;
            }
        }

        if (j < nfiles) {
            continue;
        }

        if (in == NULL) {
            /* a part name may be any bytes: keep the JSON valid */
            if (json_object_get(given, files[i].name) == NULL) {
                fs_list_inputs(d, list, sizeof(list));
                fs_echo(files[i].name, echo, sizeof(echo));

                for (j = 0; echo[j]; j++) {
                    if ((unsigned char) echo[j] >= 0x80) {
                        echo[j] = '?';
                    }
                }

                fs_err(&e, echo, "unknown", d->ninputs
                       ? "there is no input \"%s\"; the inputs are %s"
                       : "there is no input \"%s\"; this deployment takes "
                         "no inputs%s", echo, list);
            }

        } else if (!fs_type_is_file(in->type)) {
            fs_err(&e, in->name, "type", "%s is %s, not a file: send it as "
                   "a plain field", in->name,
                   in->type == FS_TYPE_STRING ? "text"
                   : in->type == FS_TYPE_BOOLEAN ? "true or false"
                   : "a number");
        }
    }

    if (e.oom) {
        goto oom;
    }

    if (json_array_size(e.list) > 0) {
        goto failed;
    }

    json_decref(e.list);

    *values = vals;
    *out_files = fl;
    *out_nfiles = nf;

    return 0;

failed:

    json_decref(vals);
    fs_files_free(fl, nf);
    *errors = e.list;

    return -1;

oom:

    json_decref(vals);
    json_decref(e.list);
    fs_files_free(fl, nf);

    return -1;
}


void
fs_files_free(fs_file_t *files, size_t n)
{
    size_t  i;

    if (files == NULL) {
        return;
    }

    for (i = 0; i < n; i++) {
        free(files[i].input);
        free(files[i].filename);
        free(files[i].content_type);
        free(files[i].data);
    }

    free(files);
}


/* the value in the slot's JSON type; NULL if it does not fit */

static json_t *
fs_slot_value(const fs_input_t *in, json_t *v, json_t *uploaded)
{
    json_t  *u;

    if (fs_type_is_file(in->type)) {
        if (!json_is_object(v)) {
            return json_is_string(v) ? json_deep_copy(v) : NULL;
        }

        /* not uploaded yet: the name it will be uploaded under */
        u = uploaded ? json_object_get(uploaded, in->name)
                     : json_object_get(v, "filename");

        return json_is_string(u) ? json_deep_copy(u) : NULL;
    }

    switch (in->type) {

    case FS_TYPE_STRING:
        return json_is_string(v) ? json_deep_copy(v) : NULL;

    case FS_TYPE_INTEGER:
        if (json_is_integer(v)) {
            return json_integer(json_integer_value(v));
        }

        if (json_is_real(v)
            && json_real_value(v) == floor(json_real_value(v))
            && json_real_value(v) >= -9223372036854775808.0
            && json_real_value(v) < 9223372036854775808.0)
        {
            return json_integer((json_int_t) json_real_value(v));
        }

        return NULL;

    case FS_TYPE_NUMBER:
        return json_is_number(v) ? json_real(json_number_value(v)) : NULL;

    case FS_TYPE_BOOLEAN:
        return json_is_boolean(v) ? json_boolean(json_is_true(v)) : NULL;

    default:
        return NULL;
    }
}


json_t *
fs_prompt_build(const fs_deployment_t *d, json_t *values, json_t *uploaded,
    const char *prefix)
{
    size_t             i;
    json_t            *prompt, *inputs, *v, *typed;
    const fs_input_t  *in;

    prompt = json_deep_copy(d->workflow);
    if (prompt == NULL) {
        return NULL;
    }

    /* only declared slots are written, whatever else values holds */

    for (i = 0; i < d->ninputs; i++) {
        in = &d->inputs[i];
        v = json_object_get(values, in->name);

        if (v == NULL) {
            continue;
        }

        inputs = json_object_get(json_object_get(prompt, in->node), "inputs");
        typed = fs_slot_value(in, v, uploaded);

        if (!json_is_object(inputs) || typed == NULL
            || json_object_set_new(inputs, in->input, typed) != 0)
        {
            json_decref(prompt);
            return NULL;
        }
    }

    if (prefix && fs_prompt_prefix(d, prompt, prefix) != 0) {
        json_decref(prompt);
        return NULL;
    }

    return prompt;
}


/*
 * ComfyUI answers an identical prompt from its cache with the files of the
 * earlier run: a per-run prefix on every node that saves makes the prompt
 * unique and the file names unambiguous.  A prefix fed by a link is left
 * alone: links never change.
 */

static int
fs_prompt_prefix(const fs_deployment_t *d, json_t *prompt, const char *prefix)
{
    size_t       i;
    json_t      *node, *inputs, *fp;
    const char  *id;

    json_object_foreach(prompt, id, node) {
        inputs = json_object_get(node, "inputs");
        fp = json_object_get(inputs, "filename_prefix");

        if (fp == NULL || fs_is_link(fp)) {
            continue;
        }

        for (i = 0; i < d->noutputs; i++) {
            if (strcmp(d->outputs[i].node, id) == 0) {
                break;
            }
        }

        if (i == d->noutputs && !json_is_string(fp)) {
            continue;
        }

        if (json_object_set_new(inputs, "filename_prefix",
                                json_string(prefix))
            != 0)
        {
            return -1;
        }
    }

    return 0;
}


int
fs_prompt_set_uploads(const fs_deployment_t *d, json_t *prompt,
    json_t *uploaded)
{
    size_t             i;
    json_t            *u, *inputs;
    const fs_input_t  *in;

    for (i = 0; i < d->ninputs; i++) {
        in = &d->inputs[i];
        u = json_object_get(uploaded, in->name);

        if (u == NULL || !fs_type_is_file(in->type)) {
            continue;
        }

        inputs = json_object_get(json_object_get(prompt, in->node), "inputs");

        if (!json_is_string(u) || !json_is_object(inputs)
            || json_object_set_new(inputs, in->input, json_deep_copy(u)) != 0)
        {
            return -1;
        }
    }

    return 0;
}


/*
 * The prompt as text, fast.  At deploy time the workflow is dumped once
 * with a marker in every slot a run writes (each declared input, and the
 * filename_prefix of the nodes that save); a run's prompt is that text
 * with the markers replaced by the run's values.  The same text as
 * dumping fs_prompt_build(), without copying and dumping the whole graph
 * for every run.  jansson writes the marker "\001fsN\001" as
 * "\u0001fsN\u0001".
 */

#define FS_MARK_PREFIX    "\001fs-prefix\001"


typedef struct {
    const char  *text;          /* the text before the hole, in t->text */
    size_t       len;
    long         input;         /* the hole: an input's index, -1 the
                                   prefix, -2 none (the last piece) */
    char        *kept;          /* the workflow's own value there */
    size_t       kept_len;
} fs_piece_t;


struct fs_prompt_template_s {
    char        *text;
    fs_piece_t  *pieces;
    size_t       npieces;
};


static int
fs_template_mark(json_t *inputs, const char *key, json_t *holes,
    json_int_t input, json_t *kept)
{
    json_t  *mark;

    mark = json_sprintf("\001fs%zu\001", json_array_size(holes));

    if (mark == NULL
        || json_array_append_new(holes, json_pack("[I, O]", input, kept))
        || json_object_set_new(inputs, key, mark))
    {
        return -1;
    }

    return 0;
}


int
fs_prompt_prepare(fs_deployment_t *d)
{
    int                    rc;
    char                  *plain;
    size_t                 i;
    json_t                *copy, *holes, *node, *inputs, *fp, *kept;
    const char            *id;
    fs_prompt_template_t  *t;

    fs_prompt_template_free(d->prompt_template);
    d->prompt_template = NULL;

    /* a workflow that holds the marker itself keeps the slow path */
    plain = json_dumps(d->workflow, JSON_COMPACT);
    rc = (plain == NULL || strstr(plain, "\\u0001fs") != NULL);
    free(plain);

    if (rc) {
        return 0;
    }

    copy = json_deep_copy(d->workflow);
    holes = json_array();
    t = calloc(1, sizeof(fs_prompt_template_t));
    rc = -1;

    if (copy == NULL || holes == NULL || t == NULL) {
        goto done;
    }

    for (i = 0; i < d->ninputs; i++) {
        inputs = json_object_get(json_object_get(copy, d->inputs[i].node),
                                 "inputs");
        kept = json_object_get(inputs, d->inputs[i].input);

        if (kept == NULL
            || fs_template_mark(inputs, d->inputs[i].input, holes,
                                (json_int_t) i, kept)
               != 0)
        {
            goto done;
        }
    }

    if (fs_prompt_prefix(d, copy, FS_MARK_PREFIX) != 0) {
        goto done;
    }

    json_object_foreach(copy, id, node) {
        inputs = json_object_get(node, "inputs");
        fp = json_object_get(inputs, "filename_prefix");

        if (!json_is_string(fp)
            || strcmp(json_string_value(fp), FS_MARK_PREFIX) != 0)
        {
            continue;
        }

        kept = json_object_get(json_object_get(json_object_get(d->workflow,
                                   id), "inputs"), "filename_prefix");

        if (fs_template_mark(inputs, "filename_prefix", holes, -1, kept)
            != 0)
        {
            goto done;
        }
    }

    t->text = json_dumps(copy, JSON_COMPACT);

    if (t->text == NULL || fs_template_split(t, holes) != 0) {
        goto done;
    }

    d->prompt_template = t;
    t = NULL;
    rc = 0;

done:

    fs_prompt_template_free(t);
    json_decref(holes);
    json_decref(copy);

    return rc;
}


/* the marked text into pieces, each followed by its hole */

static int
fs_template_split(fs_prompt_template_t *t, json_t *holes)
{
    char        *p, *start, *end;
    size_t       n, h;
    json_t      *hole;
    fs_piece_t  *piece;

    n = json_array_size(holes) + 1;

    t->pieces = calloc(n, sizeof(fs_piece_t));
    if (t->pieces == NULL) {
        return -1;
    }

    start = t->text;

    for ( ;; ) {
        p = strstr(start, "\"\\u0001fs");
        piece = &t->pieces[t->npieces];

        if (p == NULL || t->npieces == n - 1) {
            /* every hole found, and no other marker */
            if (p != NULL || t->npieces != n - 1) {
                return -1;
            }

            piece->text = start;
            piece->len = strlen(start);
            piece->input = -2;
            t->npieces++;
            return 0;
        }

        h = strtoul(p + sizeof("\"\\u0001fs") - 1, &end, 10);

        if (strncmp(end, "\\u0001\"", sizeof("\\u0001\"") - 1) != 0
            || (hole = json_array_get(holes, h)) == NULL)
        {
            return -1;
        }

        piece->text = start;
        piece->len = p - start;
        piece->input = (long) json_integer_value(json_array_get(hole, 0));
        piece->kept = fs_dump_any(json_array_get(hole, 1));

        if (piece->kept == NULL) {
            return -1;
        }

        piece->kept_len = strlen(piece->kept);
        t->npieces++;

        start = end + sizeof("\\u0001\"") - 1;
    }
}


void
fs_prompt_template_free(fs_prompt_template_t *t)
{
    size_t  i;

    if (t == NULL) {
        return;
    }

    for (i = 0; i < t->npieces; i++) {
        free(t->pieces[i].kept);
    }

    free(t->pieces);
    free(t->text);
    free(t);
}


char *
fs_prompt_text(const fs_deployment_t *d, json_t *values, const char *prefix)
{
    char                        *out, *p, **fill, *text;
    size_t                       i, len;
    json_t                      *v, *typed;
    const fs_piece_t            *piece;
    const fs_prompt_template_t  *t;

    t = d->prompt_template;

    if (t == NULL) {
        v = fs_prompt_build(d, values, NULL, prefix);
        text = v ? json_dumps(v, JSON_COMPACT) : NULL;
        json_decref(v);
        return text;
    }

    /* what goes into each hole: a value of this run, or NULL (kept) */
    fill = calloc(t->npieces + 1, sizeof(char *));
    if (fill == NULL) {
        return NULL;
    }

    out = NULL;
    len = 0;

    v = prefix ? json_string(prefix) : NULL;
    fill[t->npieces] = v ? fs_dump_any(v) : NULL;      /* the prefix */
    json_decref(v);

    if (prefix && fill[t->npieces] == NULL) {
        goto done;
    }

    for (i = 0; i < t->npieces; i++) {
        piece = &t->pieces[i];
        len += piece->len;

        if (piece->input >= 0) {
            v = json_object_get(values, d->inputs[piece->input].name);

            if (v) {
                typed = fs_slot_value(&d->inputs[piece->input], v, NULL);
                fill[i] = typed ? fs_dump_any(typed) : NULL;
                json_decref(typed);

                if (fill[i] == NULL) {
                    goto done;
                }
            }

        } else if (piece->input == -1) {
            text = fill[t->npieces];
            fill[i] = text ? strdup(text) : NULL;

            if (text && fill[i] == NULL) {
                goto done;
            }
        }

        if (piece->input != -2) {
            len += fill[i] ? strlen(fill[i]) : piece->kept_len;
        }
    }

    out = malloc(len + 1);
    if (out == NULL) {
        goto done;
    }

    p = out;

    for (i = 0; i < t->npieces; i++) {
        piece = &t->pieces[i];

        memcpy(p, piece->text, piece->len);
        p += piece->len;

        if (piece->input == -2) {
            continue;
        }

        text = fill[i] ? fill[i] : piece->kept;
        len = strlen(text);
        memcpy(p, text, len);
        p += len;
    }

    *p = '\0';

done:

    for (i = 0; i <= t->npieces; i++) {
        free(fill[i]);
    }

    free(fill);

    return out;
}


static char *
fs_dump_any(json_t *v)
{
    return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
}
