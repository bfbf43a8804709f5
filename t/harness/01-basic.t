# The harness's own tests: requests, status codes, headers, bodies.
use Test::Nginx::Socket 'no_plan';

$ENV{TEST_NGINX_GREETING} = 'hello from env';

repeat_each(2);
no_long_string();

run_tests();

__DATA__

=== TEST 1: return with a body
--- config
    location = /t {
        return 200 "hello\n";
    }
--- request
GET /t
--- response_body
hello
--- no_error_log
[error]
[alert]



=== TEST 2: status code and chomp filter
--- config
    location = /t {
        return 404 "gone";
    }
--- request
GET /t
--- error_code: 404
--- response_body chomp
gone



=== TEST 3: request headers echoed back, Host and Connection defaults
--- config
    location = /t {
        return 200 "x=$http_x_foo host=$http_host conn=$http_connection\n";
    }
--- request
GET /t
--- more_headers
X-Foo: bar baz
--- response_body
x=bar baz host=localhost conn=close



=== TEST 4: response headers, absent headers and the _like variant
--- config
    location = /t {
        add_header X-Answer 42;
        add_header X-Multi "a b c";
        return 200 "ok\n";
    }
--- request
GET /t
--- response_headers
X-Answer: 42
X-Multi: a b c
Content-Type: text/plain
!X-Absent
--- response_body
ok



=== TEST 5: response_headers_like
--- config
    location = /t {
        add_header X-Id "id-12345";
        return 200 "ok\n";
    }
--- request
GET /t
--- response_headers_like
X-Id: id-\d+
Server: nginx.*



=== TEST 6: response_body_like / unlike
--- config
    location = /t {
        return 200 "the answer is 42\n";
    }
--- request
GET /t
--- response_body_like: answer is \d+$



=== TEST 7: response_body_unlike
--- config
    location = /t {
        return 200 "the answer is 42\n";
    }
--- request
GET /t
--- response_body_unlike
error



=== TEST 8: TEST_NGINX_ variables in config and response_body
--- config
    location = /t {
        return 200 "$TEST_NGINX_GREETING on $TEST_NGINX_SERVER_PORT\n";
    }
--- request
GET /t
--- response_body
$TEST_NGINX_GREETING on $TEST_NGINX_SERVER_PORT



=== TEST 9: eval sections, a regexp response_body
--- config eval
"    location = /t { return 200 '" . ("ab" x 3) . "'; }"
--- request eval
"GET /t"
--- response_body eval
qr/^(ab){3}$/



=== TEST 10: an array of requests, each checked against its own expectations
--- config
    location = /a { return 200 "A\n"; }
    location = /b { return 201 "B\n"; }
--- request eval
["GET /a", "GET /b"]
--- error_code eval
[200, 201]
--- response_body eval
["A\n", "B\n"]



=== TEST 11: request body gets a Content-Length, proxied upstream sees it
--- http_config
    upstream backend {
        server 127.0.0.1:$TEST_NGINX_SERVER_PORT;
    }
--- config
    location = /echo {
        proxy_set_header X-Body $request_body;
        proxy_pass http://backend/back;
    }
    location = /back {
        return 200 "len=$http_content_length body=$http_x_body\n";
    }
--- request
POST /echo
hello world
--- response_body
len=11 body=hello world



=== TEST 12: HTTP/1.0 request line
--- config
    location = /t { return 200 "proto=$server_protocol\n"; }
--- request
GET /t HTTP/1.0
--- response_body
proto=HTTP/1.0



=== TEST 13: chunked response through sub_filter
--- config
    location = /t {
        sub_filter_types text/plain;
        sub_filter_once off;
        sub_filter 'a' 'o';
        return 200 "banana\n";
    }
--- request
GET /t
--- response_headers
Transfer-Encoding: chunked
!Content-Length
--- response_body
bonono



=== TEST 14: user_files served from the html dir, index.html exists
--- user_files
>>> foo/bar.txt
file content
>>> other.html
<p>other</p>
--- config
--- request eval
["GET /foo/bar.txt", "GET /", "GET /other.html"]
--- response_body eval
["file content\n", qr/It works!/, "<p>other</p>\n"]



=== TEST 15: HEAD request
--- config
    location = /t { return 200 "body"; }
--- request
HEAD /t
--- response_headers
Content-Length: 4
--- response_body eval
""



=== TEST 16: init runs perl code after nginx started, before the requests
--- init
open my $out, '>', "$ENV{TEST_NGINX_SERVER_ROOT}/html/init.txt" or die $!;
print $out "written by init\n";
close $out;
--- config
--- request
GET /init.txt
--- response_body
written by init
