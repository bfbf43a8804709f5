# The app's Gradio routes answer cross-origin preflights, with or without
# keys, and every app answer may be read cross-origin.

use Test::Nginx::Socket 'no_plan';
use Cwd qw(abs_path);

$ENV{TEST_NGINX_WORKFLOWS} ||= abs_path('conf/workflows');

no_shuffle();

add_block_preprocessor(sub {
    my $block = shift;

    $block->set_value("http_config", <<'_EOC_') unless defined $block->http_config;
    flowscale_database "hostaddr=127.0.0.1 port=5432 dbname=flowscale user=flowscale";
    upstream comfyui { server 127.0.0.1:8188; }
_EOC_

    $block->set_value("config", <<'_EOC_') unless defined $block->config;
    location /v1/t {
        flowscale_deployment t;
        flowscale_workflow $TEST_NGINX_WORKFLOWS/txt2img.json;
        flowscale_input prompt 6.text required;
        flowscale_output result 9;
        flowscale_backend comfyui;
        flowscale_app on;
    }
_EOC_

    $block->set_value("no_error_log", "[alert]\n[emerg]") unless defined $block->no_error_log;
});

run_tests();

__DATA__

=== TEST 1: a preflight of queue/join needs no key, even with flowscale_app on
--- request
OPTIONS /v1/t/app/gradio_api/queue/join
--- more_headers
Origin: http://elsewhere.example
Access-Control-Request-Method: POST
Access-Control-Request-Headers: content-type, x-gradio-user
--- error_code: 204
--- response_headers
Access-Control-Allow-Origin: *
Access-Control-Allow-Methods: GET, HEAD, POST, OPTIONS
Access-Control-Allow-Headers: Content-Type, Authorization, X-API-Key, x-gradio-user
--- response_body



=== TEST 2: the request itself goes through the key check with flowscale_app on
(no database here: the project cannot be looked up, so 503, never a run)
--- request
POST /v1/t/app/gradio_api/queue/join
{"data": ["a cat"], "fn_index": 0, "session_hash": "abc"}
--- more_headers
Content-Type: application/json
--- error_code: 503
--- response_headers
Content-Type: application/problem+json
Retry-After: 5



=== TEST 3: the page itself is open and readable cross-origin
--- request
GET /v1/t/app/
--- error_code: 200
--- response_headers
Access-Control-Allow-Origin: *
