# The harness's own tests: a simulated ComfyUI backend behind a stock proxy.
use Test::Nginx::Socket;
use FlowScale::Fixture;

if (!-f 't/sim/comfyui_sim.py') {
    plan skip_all => 't/sim/comfyui_sim.py is not there yet';
}

FlowScale::Fixture::simulator('sim1');

plan tests => 2 * blocks();

run_tests();

__DATA__

=== TEST 1: the simulator answers /system_stats through nginx
--- config
    location /sim/ {
        proxy_pass http://127.0.0.1:$TEST_NGINX_SIM1_PORT/;
    }
--- request
GET /sim/system_stats
--- response_body_like: "system"
