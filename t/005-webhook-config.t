# flowscale_webhook_* directives: what nginx -t accepts and what it refuses,
# each refusal naming the directive, the value and what to write instead.

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

=== TEST 1: every kind of entry, at every level, with the other knobs
--- http_config
    flowscale_webhook_allow hooks.example.com;
    flowscale_webhook_retry 5s 30s 2m 10m 30m;
    flowscale_webhook_timeout 10s;
    flowscale_webhook_ssl_verify on;
    flowscale_webhook_ssl_trusted_certificate /etc/ssl/certs/ca-certificates.crt;
--- config
    flowscale_webhook_allow *.example.org * 10.0.0.0/8 192.168.1.7 ::1 fd00::/8;
    location /t {
        flowscale_webhook_allow hooks.example.com. EXAMPLE.net;
        flowscale_webhook_allow 127.0.0.1;
        flowscale_webhook_retry off;
        flowscale_webhook_ssl_verify off;
        return 200 "ok\n";
    }
    location /u {
        flowscale_webhook_allow off;
        return 200 "ok\n";
    }
--- request
GET /t
--- response_body
ok



=== TEST 2: a URL is not an entry
--- config
    flowscale_webhook_allow https://hooks.example.com/x;
--- must_die
--- error_log eval
qr{\[emerg\] .*flowscale_webhook_allow: invalid entry "https://hooks\.example\.com/x": use a host name \(hooks\.example\.com\), "\*\.DOMAIN", "\*" \(any public host\), an address or a CIDR \(10\.0\.0\.0/8, ::1\), without scheme or port in .*nginx\.conf:\d+}



=== TEST 3: a port is not part of an entry
--- config
    flowscale_webhook_allow hooks.example.com:443;
--- must_die
--- error_log eval
qr{\[emerg\] .*flowscale_webhook_allow: invalid entry "hooks\.example\.com:443"}



=== TEST 4: a wildcard in the middle
--- config
    flowscale_webhook_allow hooks.*.example.com;
--- must_die
--- error_log eval
qr{\[emerg\] .*flowscale_webhook_allow: invalid entry "hooks\.\*\.example\.com"}



=== TEST 5: a bad CIDR
--- config
    flowscale_webhook_allow 10.0.0.0/33;
--- must_die
--- error_log eval
qr{\[emerg\] .*flowscale_webhook_allow: invalid entry "10\.0\.0\.0/33"}



=== TEST 6: a host name with invalid characters
--- config
    flowscale_webhook_allow hooks!.example.com;
--- must_die
--- error_log eval
qr{\[emerg\] .*flowscale_webhook_allow: invalid entry "hooks!\.example\.com"}



=== TEST 7: "off" among entries
--- config
    flowscale_webhook_allow off hooks.example.com;
--- must_die
--- error_log eval
qr{\[emerg\] .*flowscale_webhook_allow: invalid entry "off"}



=== TEST 8: entries after "off" at the same level
--- config
    flowscale_webhook_allow off;
    flowscale_webhook_allow hooks.example.com;
--- must_die
--- error_log eval
qr{\[emerg\] .*"flowscale_webhook_allow" directive is duplicate: "off" was already given at this level}



=== TEST 9: a retry delay that is not a time
--- config
    flowscale_webhook_retry 5s soon;
--- must_die
--- error_log eval
qr{\[emerg\] .*flowscale_webhook_retry: invalid delay "soon": use times such as 5s 30s 2m 10m, each above 0 and at most 24h, or "off"}



=== TEST 10: a zero retry delay
--- config
    flowscale_webhook_retry 0s;
--- must_die
--- error_log eval
qr{\[emerg\] .*flowscale_webhook_retry: invalid delay "0s"}



=== TEST 11: the CA bundle cannot be read while verification is on
--- http_config
    flowscale_webhook_ssl_trusted_certificate /nonexistent/ca.pem;
--- config
    flowscale_webhook_allow hooks.example.com;
--- must_die
--- error_log eval
qr{\[emerg\] .*flowscale_webhook_allow: cannot load the CA certificates "/nonexistent/ca\.pem" that verify https webhooks}



=== TEST 12: no CA bundle is needed with verification off
--- http_config
    flowscale_webhook_ssl_trusted_certificate /nonexistent/ca.pem;
    flowscale_webhook_ssl_verify off;
--- config
    flowscale_webhook_allow hooks.example.com;
    location /t { return 200 "ok\n"; }
--- request
GET /t
--- response_body
ok
