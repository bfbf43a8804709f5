# flowscale_least_jobs: an upstream balancer by FlowScale runs per weight;
# with no runs anywhere it spreads requests like round-robin, and it keeps
# round-robin's down and backup.

use Test::Nginx::Socket 'no_plan';

no_shuffle();

run_tests();

__DATA__

=== TEST 1: the directive is accepted in upstream{} and balances
--- http_config
    flowscale_zone flowscale:1m;
    upstream pool {
        flowscale_least_jobs;
        server 127.0.0.1:$TEST_NGINX_SERVER_PORT max_fails=0;
        server 127.0.0.2:$TEST_NGINX_SERVER_PORT max_fails=0;
    }
--- config
    location = /a {
        proxy_pass http://pool/b;
    }
    location = /b {
        return 200 "$server_addr\n";
    }
--- request eval
["GET /a", "GET /a", "GET /a", "GET /a"]
--- response_body eval
["127.0.0.1\n", "127.0.0.2\n", "127.0.0.1\n", "127.0.0.2\n"]
--- no_error_log
[alert]
[emerg]



=== TEST 2: down servers are skipped, backups used when nothing else is
--- http_config
    flowscale_zone flowscale:1m;
    upstream pool {
        flowscale_least_jobs;
        server 127.0.0.1:$TEST_NGINX_SERVER_PORT down;
        server 127.0.0.2:$TEST_NGINX_SERVER_PORT backup;
    }
--- config
    location = /a {
        proxy_pass http://pool/b;
    }
    location = /b {
        return 200 "$server_addr\n";
    }
--- request
GET /a
--- response_body
127.0.0.2
--- no_error_log
[alert]



=== TEST 3: only inside upstream{}
--- config
    location = /a {
        flowscale_least_jobs;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*"flowscale_least_jobs" directive is not allowed here/
