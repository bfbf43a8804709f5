# flowscale_metrics and flowscale_status without any deployment (no zone,
# no database), the $flowscale_* variables outside deployments, and what
# nginx -t refuses.  The pages with deployments, runs and backends are in
# t/e2e/monitoring.t.

use Test::Nginx::Socket 'no_plan';

no_shuffle();

add_block_preprocessor(sub {
    my $block = shift;

    if (defined $block->must_die && !defined $block->request) {
        $block->set_value("request", "GET /t");
    }

    if (!defined $block->must_die && !defined $block->no_error_log) {
        $block->set_value("no_error_log", "[emerg]\n[alert]\n[crit]");
    }
});

run_tests();

__DATA__

=== TEST 1: the metrics page without deployments is valid and small
--- config
    location = /metrics { flowscale_metrics; }
--- request
GET /metrics
--- response_headers
Content-Type: text/plain; version=0.0.4; charset=utf-8
--- response_body_like chomp
\A# HELP flowscale_runs_total .*
# TYPE flowscale_runs_total counter
(?s:.*)flowscale_key_cache_hits_total 0
(?s:.*)flowscale_db_errors_total 0
(?s:.*)flowscale_metrics_render_seconds \d+\.\d{6}
\z



=== TEST 2: the status page without deployments
--- config
    location = /flowscale/status { flowscale_status; }
--- request
GET /flowscale/status
--- response_headers
Content-Type: application/json
--- response_body_like chomp
^\{"generation":0,"leader":0,"deployments":\[\],\n"backends":\[\],\n"database":\{"configured":false,"pool_size":0,"workers":0,"connections":0,"connections_up":0,"errors":0\},\n"front":\{"id":null,"fronts":1\},\n"render_seconds":\d+\.\d+\}\n$



=== TEST 3: allow/deny protect the pages like any location
--- config
    location = /metrics { flowscale_metrics; deny all; }
--- request
GET /metrics
--- error_code: 403
--- no_error_log
[emerg]



=== TEST 4: only GET and HEAD
--- config
    location = /metrics { flowscale_metrics; }
--- request
POST /metrics
x
--- error_code: 405



=== TEST 5: the variables are empty outside a deployment
--- config
    location /t {
        return 200 "[$flowscale_run_id][$flowscale_deployment][$flowscale_backend][$flowscale_key_id][$flowscale_queue_time]\n";
    }
--- request
GET /t
--- response_body
[][][][][]



=== TEST 6: flowscale_metrics takes no argument
--- config
    location = /metrics { flowscale_metrics on; }
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid number of arguments in "flowscale_metrics" directive/



=== TEST 7: not at server level
--- config
    flowscale_status;
--- must_die
--- error_log eval
qr/\[emerg\] .*"flowscale_status" directive is not allowed here/
