# API keys: directives checked at nginx -t, and the key check of one
# request at a time (the multi-step cases, revocation, the database going
# away, bursts, are in t/e2e/keys.t).

use Test::Nginx::Socket 'no_plan';
use Cwd qw(abs_path);
use FlowScale::Fixture ();

$ENV{TEST_NGINX_WORKFLOWS} ||= abs_path('conf/workflows');

FlowScale::Fixture::postgres();
FlowScale::Fixture::psql(<<'SQL');
select flowscale.create_project('demo');
select flowscale.create_project('other');
SQL
$ENV{TEST_NGINX_DEMO_KEY} = FlowScale::Fixture::psql(
    "select flowscale.create_api_key('demo', 'static tests')");
$ENV{TEST_NGINX_OTHER_KEY} = FlowScale::Fixture::psql(
    "select flowscale.create_api_key('other', 'static tests')");

no_shuffle();

add_block_preprocessor(sub {
    my $block = shift;

    if (!defined $block->http_config) {
        $block->set_value("http_config", <<'_EOC_');
    flowscale_database "$TEST_NGINX_PG_DSN";
    upstream comfyui { server 127.0.0.1:8188; }
_EOC_
    }

    if (!defined $block->no_error_log && !defined $block->must_die) {
        $block->set_value("no_error_log", "[alert]\n[emerg]\n[crit]");
    }
});

run_tests();

__DATA__

=== TEST 1: flowscale_api_key takes on or off
--- config
    location /v1/x {
        flowscale_deployment x;
        flowscale_workflow $TEST_NGINX_WORKFLOWS/txt2img.json;
        flowscale_output result 9;
        flowscale_backend comfyui;
        flowscale_api_key maybe;
    }
--- must_die
--- error_log
invalid value "maybe" in "flowscale_api_key" directive, it must be "on" or "off"



=== TEST 2: flowscale_key_concurrency takes a number
--- config
    flowscale_key_concurrency -1;
    location /v1/x {
        flowscale_deployment x;
        flowscale_workflow $TEST_NGINX_WORKFLOWS/txt2img.json;
        flowscale_output result 9;
        flowscale_backend comfyui;
    }
--- must_die
--- error_log
"flowscale_key_concurrency" directive invalid number



=== TEST 3: flowscale_key_concurrency once per level
--- config
    location /v1/x {
        flowscale_deployment x;
        flowscale_workflow $TEST_NGINX_WORKFLOWS/txt2img.json;
        flowscale_output result 9;
        flowscale_backend comfyui;
        flowscale_key_concurrency 2;
        flowscale_key_concurrency 3;
    }
--- must_die
--- error_log
"flowscale_key_concurrency" directive is duplicate



=== TEST 4: no key on a run route: 401 with WWW-Authenticate
--- config
    flowscale_project demo;
    location /v1/x {
        flowscale_deployment x;
        flowscale_workflow $TEST_NGINX_WORKFLOWS/txt2img.json;
        flowscale_output result 9;
        flowscale_backend comfyui;
    }
--- request
GET /v1/x/runs/0193a4c2-0000-7000-8000-000000000000
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="flowscale"
Content-Type: application/problem+json
--- response_body_like: "type":"urn:flowscale:problem:unauthorized"



=== TEST 5: the descriptor needs no key
--- config
    flowscale_project demo;
    location /v1/x {
        flowscale_deployment x;
        flowscale_workflow $TEST_NGINX_WORKFLOWS/txt2img.json;
        flowscale_output result 9;
        flowscale_backend comfyui;
    }
--- request
GET /v1/x
--- error_code: 200



=== TEST 6: a key of the project passes the check
--- config
    flowscale_project demo;
    location /v1/x {
        flowscale_deployment x;
        flowscale_workflow $TEST_NGINX_WORKFLOWS/txt2img.json;
        flowscale_output result 9;
        flowscale_backend comfyui;
    }
--- request
GET /v1/x/runs/0193a4c2-0000-7000-8000-000000000000/nothing-here
--- more_headers eval
"X-API-Key: $ENV{TEST_NGINX_DEMO_KEY}"
--- error_code: 404
--- response_body_like: "type":"urn:flowscale:problem:not-found"



=== TEST 7: another project's key: 403
--- config
    flowscale_project demo;
    location /v1/x {
        flowscale_deployment x;
        flowscale_workflow $TEST_NGINX_WORKFLOWS/txt2img.json;
        flowscale_output result 9;
        flowscale_backend comfyui;
    }
--- request
GET /v1/x/runs/0193a4c2-0000-7000-8000-000000000000/nothing-here
--- more_headers eval
"Authorization: Bearer $ENV{TEST_NGINX_OTHER_KEY}"
--- error_code: 403
--- response_body_like: "type":"urn:flowscale:problem:wrong-project"



=== TEST 8: a key in the query string: 401
--- config
    flowscale_project demo;
    location /v1/x {
        flowscale_deployment x;
        flowscale_workflow $TEST_NGINX_WORKFLOWS/txt2img.json;
        flowscale_output result 9;
        flowscale_backend comfyui;
    }
--- request eval
"GET /v1/x/runs/0193a4c2-0000-7000-8000-000000000000/nothing-here?api_key=$ENV{TEST_NGINX_DEMO_KEY}"
--- error_code: 401
--- response_body_like: "type":"urn:flowscale:problem:key-in-query"



=== TEST 9: flowscale_api_key off: public
--- config
    flowscale_project demo;
    flowscale_api_key off;
    location /v1/x {
        flowscale_deployment x;
        flowscale_workflow $TEST_NGINX_WORKFLOWS/txt2img.json;
        flowscale_output result 9;
        flowscale_backend comfyui;
    }
--- request
GET /v1/x/runs/0193a4c2-0000-7000-8000-000000000000/nothing-here
--- error_code: 404



=== TEST 10: the database unreachable: 503 with Retry-After, never 401
--- http_config
    flowscale_database "hostaddr=127.0.0.1 port=9 dbname=flowscale user=flowscale";
    upstream comfyui { server 127.0.0.1:8188; }
--- config
    flowscale_project demo;
    location /v1/x {
        flowscale_deployment x;
        flowscale_workflow $TEST_NGINX_WORKFLOWS/txt2img.json;
        flowscale_output result 9;
        flowscale_backend comfyui;
    }
--- request
GET /v1/x/runs/0193a4c2-0000-7000-8000-000000000000/nothing-here
--- more_headers
X-API-Key: fs_0123456789ab_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
--- error_code: 503
--- response_headers
Retry-After: 5
--- response_body_like: "type":"urn:flowscale:problem:database-unavailable"
