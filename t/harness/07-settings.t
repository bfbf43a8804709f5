# The harness's own tests: file-wide settings and block preprocessors.
use Test::Nginx::Socket 'no_plan';

master_on();
workers(2);
log_level('info');
env_to_nginx('FLOWSCALE_HARNESS=yes');

add_block_preprocessor(sub {
    my $block = shift;
    if (!defined $block->config) {
        $block->set_value('config', <<'_EOC_');
    location = /t { return 200 "default config\n"; }
_EOC_
    }
    if (!defined $block->no_error_log) {
        $block->set_value('no_error_log', "[alert]\n[emerg]\n[debug]");
    }
});

run_tests();

__DATA__

=== TEST 1: a preprocessor supplies the config and the no_error_log checks
--- request
GET /t
--- response_body
default config



=== TEST 2: with a master process, two workers
--- config
    location = /t { return 200 "pid=$pid\n"; }
--- request
GET /t
--- response_body_like: ^pid=\d+$



=== TEST 3: the generated nginx.conf has the settings of this file
--- config
    location = /conf {
        alias $TEST_NGINX_SERVER_ROOT/conf/nginx.conf;
    }
--- request
GET /conf
--- response_body_like
worker_processes\s+2;.*master_process on;.*error_log \S+ info;.*env FLOWSCALE_HARNESS=yes;
