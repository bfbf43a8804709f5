# The harness's own tests: error log checks and nginx start failures.
use Test::Nginx::Socket 'no_plan';

run_tests();

__DATA__

=== TEST 1: error_log with plain strings, one per line
--- config
    location = /t {
        return 200 "ok\n";
    }
    location = /missing {
        root html;
    }
--- request
GET /missing/file.txt
--- error_code: 404
--- error_log
open()
No such file or directory
--- no_error_log
[alert]
[crit]



=== TEST 2: error_log and no_error_log with regexps and lists through eval
--- config
    location = /missing {
        root html;
    }
--- request
GET /missing/nope
--- error_code: 404
--- error_log eval
[qr/\[error\] \d+#\d+: \*\d+ open\(\) ".*nope" failed/, "(2: No such file"]
--- no_error_log eval
qr/\[(alert|emerg)\]/



=== TEST 3: debug level logs are there (Debian's nginx is built --with-debug)
--- config
    location = /t { return 200 "ok\n"; }
--- request
GET /t
--- error_log
http request line: "GET /t HTTP/1.1"



=== TEST 4: log_level section lowers the level
--- log_level: warn
--- config
    location = /t { return 200 "ok\n"; }
--- request
GET /t
--- no_error_log
http request line
[debug]



=== TEST 5: must_die on a bad directive, with the emerg message checked
--- config
    location = /t {
        no_such_directive on;
    }
--- must_die
--- error_log
[emerg]
unknown directive "no_such_directive"
--- no_error_log
[alert]



=== TEST 6: must_die with the expected exit code
--- config
    location = /t {
        return 1000 "bad";
    }
--- must_die: 1
--- error_log eval
qr/\[emerg\].*invalid return code "1000"/



=== TEST 7: a block after a failed start runs normally
--- config
    location = /t { return 200 "back\n"; }
--- request
GET /t
--- response_body
back



=== TEST 8: error from a proxy to a closed port
--- config
    location = /t {
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/;
    }
--- request
GET /t
--- error_code: 502
--- error_log eval
qr/connect\(\) failed \(111: Connection refused\) while connecting to upstream/



=== TEST 9: main_config and http_config land where they belong
--- main_config
    env FLOWSCALE_HARNESS_TEST;
--- http_config
    map $uri $harness_mapped {
        default "mapped";
    }
--- config
    location = /t { return 200 "$harness_mapped\n"; }
--- request
GET /t
--- response_body
mapped
