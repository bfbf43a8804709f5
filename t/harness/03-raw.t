# The harness's own tests: raw and pipelined requests, timeouts, order.
use Test::Nginx::Socket;

repeat_each(2);
no_shuffle();

plan tests => repeat_each() * (2 * blocks() + 2);

run_tests();

__DATA__

=== TEST 1: raw_request sent as is
--- config
    location = /t { return 200 "raw $request_method $server_protocol\n"; }
--- raw_request eval
"GET /t HTTP/1.0\r\nHost: localhost\r\n\r\n"
--- response_body
raw GET HTTP/1.0



=== TEST 2: raw_request in packets with a delay between them
--- config
    location = /t { return 200 "x=$http_x\n"; }
--- raw_request eval
["GET /t HTTP/1.1\r\nHost: localhost\r\n",
 "X: slow\r\nConnection: close\r\n\r\n"]
--- raw_request_middle_delay: 0.1
--- response_body
x=slow



=== TEST 3: pipelined requests on one connection
--- config
    location = /a { return 200 "A\n"; }
    location = /b { return 200 "B $connection_requests\n"; }
--- pipelined_requests eval
["GET /a", "GET /b"]
--- response_body eval
["A\n", "B 2\n"]
--- no_error_log
[error]



=== TEST 4: timeout and abort: nginx holds the response longer than we wait
--- config
    location = /t {
        limit_rate 1;
        return 200 "slow body that trickles out\n";
    }
--- request
GET /t
--- timeout: 300ms
--- abort
--- ignore_response



=== TEST 5: a request sent in packets, the body split from the head
--- config
    location = /t {
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/back;
    }
    location = /back {
        return 200 "len=$http_content_length\n";
    }
--- request eval
[["POST /t\n", {value => "abc", delay_before => 0.05}, "def"]]
--- response_body
len=6



=== TEST 6: wait before the final error log check
--- config
    location = /t {
        return 200 "ok\n";
    }
--- request
GET /t
--- wait: 0.1
--- response_body
ok
