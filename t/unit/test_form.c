
/*
 * Unit tests of the request body formats: multipart/form-data,
 * application/x-www-form-urlencoded, fs_form_split() and files given as
 * strings in JSON (data: URLs and base64).
 */


#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "ngx_http_flowscale_form.h"


#define assert_err(err, needle)                                               \
    do {                                                                      \
        if (strstr((err), (needle)) == NULL) {                                \
            fail_msg("message \"%s\"\n    lacks \"%s\"", (err), (needle));   \
        }                                                                     \
    } while (0)

#define assert_data(part, s)                                                  \
    do {                                                                      \
        assert_int_equal((part)->len, sizeof(s) - 1);                         \
        assert_memory_equal((part)->data, (s), sizeof(s) - 1);               \
    } while (0)


/* a body given as a literal, NUL bytes included */
#define MP(ct, lit)  mp(ct, lit, sizeof(lit) - 1, &parts, &n, err)


static int
mp(const char *ct, const char *body, size_t len, fs_part_t **parts,
    size_t *n, char *err)
{
    err[0] = '\0';
    return fs_multipart_parse(ct, (const unsigned char *) body, len, parts,
                              n, err, 256);
}


static int
ue(const char *body, fs_part_t **parts, size_t *n, char *err)
{
    err[0] = '\0';
    return fs_urlencoded_parse((const unsigned char *) body, strlen(body),
                               parts, n, err, 256);
}


/* a browser's body: preamble, text fields, a binary file, an epilogue */

static void
test_multipart_basic(void **state)
{
    static const char  body[] =
        "This is the preamble; it is ignored.\r\n"
        "--XyZ\r\n"
        "Content-Disposition: form-data; name=\"prompt\"\r\n"
        "\r\n"
        "a cat\r\non two lines\r\n"
        "--XyZ\r\n"
        "content-disposition: form-data; name=\"image\"; "
        "filename=\"cat.png\"\r\n"
        "Content-Type: image/png\r\n"
        "\r\n"
        "\x89PNG\r\n\x1a\n\0\r\n--XyZz not a delimiter\r\n--XyZ-\r\n"
        "\r\n--XyZ\r\n"
        "Content-Disposition: form-data; name=\"empty\"\r\n"
        "\r\n"
        "\r\n"
        "--XyZ--\r\n"
        "This is the epilogue.\r\n--XyZ\r\nignored too";

    char        err[256];
    size_t      n;
    fs_part_t  *parts;

    (void) state;

    assert_int_equal(mp("multipart/form-data; boundary=XyZ", body,
                        sizeof(body) - 1, &parts, &n, err), 0);
    assert_int_equal(n, 3);

    assert_string_equal(parts[0].name, "prompt");
    assert_null(parts[0].filename);
    assert_null(parts[0].content_type);
    assert_null(parts[0].owned);
    assert_data(&parts[0], "a cat\r\non two lines");

    /* a file: binary bytes, CR LF and near-delimiters inside are content */
    assert_string_equal(parts[1].name, "image");
    assert_string_equal(parts[1].filename, "cat.png");
    assert_string_equal(parts[1].content_type, "image/png");
    assert_data(&parts[1], "\x89PNG\r\n\x1a\n\0\r\n--XyZz not a delimiter"
                           "\r\n--XyZ-\r\n");

    /* parts point into the body */
    assert_true(parts[1].data > (const unsigned char *) body
                && parts[1].data < (const unsigned char *) body
                                   + sizeof(body));

    assert_string_equal(parts[2].name, "empty");
    assert_int_equal(parts[2].len, 0);

    fs_parts_free(parts, n);
}


static void
test_multipart_boundary(void **state)
{
    static const char  body[] =
        "--a b:c\"d\r\n"
        "Content-Disposition: form-data; name=x\r\n"
        "\r\n"
        "1\r\n"
        "--a b:c\"d--";

    static const char  lf[] =
        "--simple\n"
        "Content-Disposition: form-data; name=\"y\"\n"
        "\n"
        "2\n"
        "--simple  \t\n"
        "Content-Disposition: FORM-DATA;name=z ; filename = \"\"\n"
        "\n"
        "\n"
        "--simple--";

    char        err[256];
    size_t      n;
    fs_part_t  *parts;

    (void) state;

    /* quoted, with an escaped quote and a space; other parameters first */
    assert_int_equal(mp("Multipart/Form-Data; charset=utf-8; "
                        "BOUNDARY=\"a b:c\\\"d\"", body, sizeof(body) - 1,
                        &parts, &n, err), 0);
    assert_int_equal(n, 1);
    assert_string_equal(parts[0].name, "x");
    assert_data(&parts[0], "1");
    fs_parts_free(parts, n);

    /* bare LF line ends, transport padding, an empty filename */
    assert_int_equal(mp("multipart/form-data;boundary=simple", lf,
                        sizeof(lf) - 1, &parts, &n, err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(parts[0].name, "y");
    assert_data(&parts[0], "2");
    assert_string_equal(parts[1].name, "z");
    assert_string_equal(parts[1].filename, "");
    assert_int_equal(parts[1].len, 0);
    fs_parts_free(parts, n);

    /* no part at all */
    assert_int_equal(mp("multipart/form-data; boundary=q", "--q--", 5,
                        &parts, &n, err), 0);
    assert_int_equal(n, 0);
    assert_null(parts);
}


static void
test_multipart_headers(void **state)
{
    static const char  body[] =
        "--B\r\n"
        "X-Other: whatever\r\n"
        "Content-Disposition: form-data;\r\n"
        "\tname=\"a\\\"b\"; filename=\"C:\\\\dir\\\\x.png\"; "
        "filename*=utf-8''%C3%A9.png\r\n"
        "Content-Type:  text/plain; charset=utf-8  \r\n"
        "not a header line\r\n"
        "\r\n"
        "v\r\n"
        "--B\r\n"
        "Content-Disposition: form-data; name=\"%22q%22\"; filename=a\r\n"
        "--B--\r\n";

    char        err[256];
    size_t      n;
    fs_part_t  *parts;

    (void) state;

    assert_int_equal(mp("multipart/form-data; boundary=B", body,
                        sizeof(body) - 1, &parts, &n, err), 0);
    assert_int_equal(n, 2);

    /* a folded header, escaped quotes and backslashes, filename* ignored */
    assert_string_equal(parts[0].name, "a\"b");
    assert_string_equal(parts[0].filename, "C:\\dir\\x.png");
    assert_string_equal(parts[0].content_type, "text/plain; charset=utf-8");
    assert_data(&parts[0], "v");

    /* headers with no empty line: a part without content */
    assert_string_equal(parts[1].name, "%22q%22");
    assert_string_equal(parts[1].filename, "a");
    assert_int_equal(parts[1].len, 0);

    fs_parts_free(parts, n);
}


static void
test_multipart_errors(void **state)
{
    char        err[256];
    size_t      n;
    fs_part_t  *parts;

    static const char  ok_part[] =
        "--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n";

    (void) state;

    assert_int_equal(mp("multipart/form-data", "--B--", 5, &parts, &n, err),
                     -1);
    assert_err(err, "no boundary");
    assert_null(parts);
    assert_int_equal(n, 0);

    assert_int_equal(mp("multipart/form-data; boundary=\"\"", "--B--", 5,
                        &parts, &n, err), -1);
    assert_err(err, "no boundary");

    assert_int_equal(mp("multipart/form-data; boundary=\"B", "--B--", 5,
                        &parts, &n, err), -1);
    assert_err(err, "malformed");

    assert_int_equal(mp("application/json", "{}", 2, &parts, &n, err), -1);
    assert_err(err, "not multipart/form-data");

    assert_int_equal(mp(NULL, "{}", 2, &parts, &n, err), -1);

    assert_int_equal(mp("multipart/form-data; boundary=\"\x01\"", "x", 1,
                        &parts, &n, err), -1);
    assert_err(err, "printable");

    /* cut off: the closing delimiter is missing */
    assert_int_equal(mp("multipart/form-data; boundary=B", ok_part,
                        sizeof(ok_part) - 1, &parts, &n, err), -1);
    assert_err(err, "closing delimiter \"--B--\"");
    assert_null(parts);

    assert_int_equal(MP("multipart/form-data; boundary=B", "--B\r\n"), -1);
    assert_err(err, "closing");

    /* the boundary of the header is not in the body */
    assert_int_equal(mp("multipart/form-data; boundary=C", ok_part,
                        sizeof(ok_part) - 1, &parts, &n, err), -1);
    assert_err(err, "no \"--C\" delimiter");

    assert_int_equal(MP("multipart/form-data; boundary=B", ""), -1);

    /* "--B" not at the start of a line is not a delimiter */
    assert_int_equal(MP("multipart/form-data; boundary=B", "x--B--"), -1);

    assert_int_equal(MP("multipart/form-data; boundary=B",
                        "--B\r\nContent-Type: text/plain\r\n\r\n"
                        "1\r\n--B--"), -1);
    assert_err(err, "part 1 of the multipart body has no name");

    assert_int_equal(MP("multipart/form-data; boundary=B",
                        "--B\r\nContent-Disposition: form-data; name=\"\"\r\n"
                        "\r\n1\r\n--B--"), -1);
    assert_err(err, "no name");

    assert_int_equal(MP("multipart/form-data; boundary=B",
                        "--B\r\nContent-Disposition: form-data; name=\"a\r\n"
                        "\r\n1\r\n--B--"), -1);
    assert_err(err, "malformed Content-Disposition");

    assert_int_equal(MP("multipart/form-data; boundary=B",
                        "--B\r\nContent-Disposition: attachment; name=a\r\n"
                        "\r\n1\r\n--B--"), -1);
    assert_err(err, "not \"Content-Disposition: form-data\"");

    assert_int_equal(MP("multipart/form-data; boundary=B",
                        "--B\r\nContent-Disposition: form-data; name=a\0b\r\n"
                        "\r\n1\r\n--B--"), -1);
    assert_err(err, "NUL");

    /* found by fuzz/fuzz_form.c: a second header leaked the first's */
    assert_int_equal(MP("multipart/form-data; boundary=B",
                        "--B\r\nContent-Disposition: form-data; name=\"\"; "
                        "filename=a\r\nContent-Disposition: form-data; "
                        "name=b; filename=c\r\n\r\n1\r\n--B--"), -1);
    assert_err(err, "two Content-Disposition headers");

    /* the second part has no name: the first is freed, nothing leaks */
    assert_int_equal(MP("multipart/form-data; boundary=B",
                        "--B\r\nContent-Disposition: form-data; name=a\r\n"
                        "\r\n1\r\n--B\r\n\r\n2\r\n--B--"), -1);
    assert_err(err, "part 2");
}


static void
test_multipart_many_parts(void **state)
{
    char        err[256], *body, *p;
    size_t      i, n;
    fs_part_t  *parts;

    (void) state;

    body = malloc((FS_FORM_MAX_PARTS + 2) * 64);
    assert_non_null(body);

    p = body;
    for (i = 0; i < FS_FORM_MAX_PARTS + 1; i++) {
        p += sprintf(p, "--B\r\nContent-Disposition: form-data; name=f\r\n"
                        "\r\n%zu\r\n", i);
    }
    p += sprintf(p, "--B--");

    assert_int_equal(mp("multipart/form-data; boundary=B", body, p - body,
                        &parts, &n, err), -1);
    assert_err(err, "more than");

    free(body);
}


static void
test_urlencoded(void **state)
{
    char        err[256];
    size_t      n;
    fs_part_t  *parts;

    (void) state;

    assert_int_equal(ue("prompt=a+red+cat%21&steps=20&&flag&x=%E2%82%AC"
                        "&steps=30&sp%61ce+d=1%2B1", &parts, &n, err), 0);
    assert_int_equal(n, 6);

    assert_string_equal(parts[0].name, "prompt");
    assert_data(&parts[0], "a red cat!");
    assert_non_null(parts[0].owned);
    assert_null(parts[0].filename);

    /* nothing to decode: the value points into the body */
    assert_string_equal(parts[1].name, "steps");
    assert_data(&parts[1], "20");
    assert_null(parts[1].owned);

    assert_string_equal(parts[2].name, "flag");
    assert_int_equal(parts[2].len, 0);

    assert_string_equal(parts[3].name, "x");
    assert_data(&parts[3], "\xe2\x82\xac");

    /* repeats are all returned; fs_form_split keeps the last */
    assert_string_equal(parts[4].name, "steps");
    assert_data(&parts[4], "30");

    assert_string_equal(parts[5].name, "space d");
    assert_data(&parts[5], "1+1");

    fs_parts_free(parts, n);

    assert_int_equal(ue("", &parts, &n, err), 0);
    assert_int_equal(n, 0);
    assert_null(parts);

    assert_int_equal(ue("&&&", &parts, &n, err), 0);
    assert_int_equal(n, 0);

    assert_int_equal(ue("a=%zz", &parts, &n, err), -1);
    assert_err(err, "field \"a\" of the form has a bad %-escape");
    assert_null(parts);

    assert_int_equal(ue("a=1&b=%4", &parts, &n, err), -1);
    assert_err(err, "bad %-escape");

    assert_int_equal(ue("a=%", &parts, &n, err), -1);
    assert_int_equal(ue("%g1=2", &parts, &n, err), -1);
    assert_err(err, "in its name");

    assert_int_equal(ue("a=1&=2", &parts, &n, err), -1);
    assert_err(err, "field 2 of the form has no name");

    assert_int_equal(ue("a%00b=1", &parts, &n, err), -1);
    assert_err(err, "NUL");

    /* a NUL byte in a value is data */
    assert_int_equal(ue("a=%00", &parts, &n, err), 0);
    assert_int_equal(parts[0].len, 1);
    assert_int_equal(parts[0].data[0], 0);
    fs_parts_free(parts, n);
}


static void
test_form_split(void **state)
{
    static const char  body[] =
        "--B\r\nContent-Disposition: form-data; name=steps\r\n\r\n20\r\n"
        "--B\r\nContent-Disposition: form-data; name=image; "
        "filename=a.png\r\n\r\nAAA\r\n"
        "--B\r\nContent-Disposition: form-data; name=prompt\r\n\r\ncat\r\n"
        "--B\r\nContent-Disposition: form-data; name=mask; "
        "filename=m.png\r\n\r\nMMM\r\n"
        "--B\r\nContent-Disposition: form-data; name=steps\r\n\r\n30\r\n"
        "--B\r\nContent-Disposition: form-data; name=image; "
        "filename=b.png\r\n\r\nBBB\r\n"
        "--B\r\nContent-Disposition: form-data; name=mask\r\n\r\nx\r\n"
        "--B--";

    char        err[256];
    size_t      n, nfiles;
    json_t     *given;
    fs_part_t  *parts;

    (void) state;

    assert_int_equal(mp("multipart/form-data; boundary=B", body,
                        sizeof(body) - 1, &parts, &n, err), 0);
    assert_int_equal(n, 7);

    assert_int_equal(fs_form_split(parts, n, &given, &nfiles, err, 256), 0);

    /* the last field of a name wins, be it a file or a plain field */
    assert_int_equal(nfiles, 1);
    assert_string_equal(parts[0].name, "image");
    assert_string_equal(parts[0].filename, "b.png");
    assert_data(&parts[0], "BBB");

    assert_int_equal(json_object_size(given), 3);
    assert_string_equal(json_string_value(json_object_get(given, "steps")),
                        "30");
    assert_string_equal(json_string_value(json_object_get(given, "prompt")),
                        "cat");
    assert_string_equal(json_string_value(json_object_get(given, "mask")),
                        "x");

    json_decref(given);
    fs_parts_free(parts, n);

    /* plain fields are text */
    assert_int_equal(ue("a=%FF", &parts, &n, err), 0);
    assert_int_equal(fs_form_split(parts, n, &given, &nfiles, err, 256), -1);
    assert_err(err, "field \"a\" is not valid UTF-8");
    assert_null(given);
    fs_parts_free(parts, n);

    assert_int_equal(ue("%FF=1", &parts, &n, err), 0);
    assert_int_equal(fs_form_split(parts, n, &given, &nfiles, err, 256), -1);
    assert_err(err, "name of field \"?\"");
    fs_parts_free(parts, n);

    assert_int_equal(fs_form_split(NULL, 0, &given, &nfiles, err, 256), 0);
    assert_int_equal(json_object_size(given), 0);
    assert_int_equal(nfiles, 0);
    json_decref(given);
}


static int
dec(const char *s, unsigned char **out, size_t *len, char **media, char *err)
{
    err[0] = '\0';
    return fs_decode_file_string(s, strlen(s), out, len, media, err, 256);
}


static void
test_decode_data_url(void **state)
{
    char            err[256], *media;
    size_t          len;
    unsigned char  *out;

    (void) state;

    /* "\x89PNG\r\n\x1a\n" */
    assert_int_equal(dec("data:image/PNG;base64,iVBORw0KGgo=", &out, &len,
                         &media, err), 0);
    assert_string_equal(media, "image/png");
    assert_int_equal(len, 8);
    assert_memory_equal(out, "\x89PNG\r\n\x1a\n", 8);
    free(out);
    free(media);

    /* parameters, upper case, white space around and inside */
    assert_int_equal(dec("  DATA:image/webp;name=a.webp;BASE64,iVBO\n"
                         "Rw0KGgo \n", &out, &len, &media, err), 0);
    assert_string_equal(media, "image/webp");
    assert_int_equal(len, 8);
    free(out);
    free(media);

    /* no media type */
    assert_int_equal(dec("data:;base64,aGk=", &out, &len, &media, err), 0);
    assert_null(media);
    assert_int_equal(len, 2);
    assert_memory_equal(out, "hi", 2);
    free(out);

    /* without ";base64" the data is percent-encoded (RFC 2397) */
    assert_int_equal(dec("data:text/plain;charset=utf-8,a%2Cb+c", &out, &len,
                         &media, err), 0);
    assert_string_equal(media, "text/plain");
    assert_int_equal(len, 5);
    assert_memory_equal(out, "a,b+c", 5);
    free(out);
    free(media);

    /* a media type that is not type/subtype is dropped */
    assert_int_equal(dec("data:nonsense;base64,aGk=", &out, &len, &media,
                         err), 0);
    assert_null(media);
    free(out);

    assert_int_equal(dec("data:image/png;base64", &out, &len, &media, err),
                     -1);
    assert_err(err, "no \",\"");
    assert_null(out);
    assert_null(media);

    assert_int_equal(dec("data:image/png;base64,iVB*", &out, &len, &media,
                         err), -1);
    assert_err(err, "not base64");
    assert_null(media);

    assert_int_equal(dec("data:text/plain,%zz", &out, &len, &media, err), -1);
    assert_err(err, "%-escape");

    assert_int_equal(dec("data:image/png;base64,", &out, &len, &media, err),
                     0);
    assert_int_equal(len, 0);
    assert_non_null(out);
    free(out);
    free(media);
}


static void
test_decode_base64(void **state)
{
    char            err[256], *media;
    size_t          len;
    unsigned char  *out;

    (void) state;

    /* 0xfb 0xff 0xbf: "+/+/" in the standard alphabet, "-_-_" URL-safe */
    assert_int_equal(dec("+/+/", &out, &len, &media, err), 0);
    assert_null(media);
    assert_int_equal(len, 3);
    assert_memory_equal(out, "\xfb\xff\xbf", 3);
    free(out);

    assert_int_equal(dec("-_-_", &out, &len, &media, err), 0);
    assert_int_equal(len, 3);
    assert_memory_equal(out, "\xfb\xff\xbf", 3);
    free(out);

    /* padding optional; white space anywhere */
    assert_int_equal(dec("aGVs bG8\r\n", &out, &len, &media, err), 0);
    assert_int_equal(len, 5);
    assert_memory_equal(out, "hello", 5);
    free(out);

    assert_int_equal(dec("aGVsbG8=", &out, &len, &media, err), 0);
    assert_int_equal(len, 5);
    free(out);

    assert_int_equal(dec("aGk", &out, &len, &media, err), 0);
    assert_int_equal(len, 2);
    free(out);

    assert_int_equal(dec("aGk=", &out, &len, &media, err), 0);
    assert_int_equal(len, 2);
    free(out);

    /* too much padding for what is there */
    assert_int_equal(dec("aGk==", &out, &len, &media, err), -1);

    assert_int_equal(dec("", &out, &len, &media, err), 0);
    assert_int_equal(len, 0);
    assert_non_null(out);
    free(out);

    assert_int_equal(dec("aGVsbG8!", &out, &len, &media, err), -1);
    assert_err(err, "byte 8 is not a base64 character");
    assert_null(out);

    assert_int_equal(dec("aGVsb", &out, &len, &media, err), -1);
    assert_err(err, "length");

    assert_int_equal(dec("aG=k", &out, &len, &media, err), -1);
    assert_err(err, "follows the \"=\" padding");

    assert_int_equal(dec("====", &out, &len, &media, err), -1);
    assert_int_equal(dec("aG===", &out, &len, &media, err), -1);

    /* a file name is not base64 */
    assert_int_equal(dec("cat.png", &out, &len, &media, err), -1);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_multipart_basic),
        cmocka_unit_test(test_multipart_boundary),
        cmocka_unit_test(test_multipart_headers),
        cmocka_unit_test(test_multipart_errors),
        cmocka_unit_test(test_multipart_many_parts),
        cmocka_unit_test(test_urlencoded),
        cmocka_unit_test(test_form_split),
        cmocka_unit_test(test_decode_data_url),
        cmocka_unit_test(test_decode_base64),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
