# End-to-end tests of issue 5 (API keys) through a real nginx (two
# workers), a real PostgreSQL and a simulated ComfyUI backend: every status
# of the key check, revoke / regenerate / set_project_auth reaching every
# worker within a second without a reload, the database stopped and
# started mid-test, a burst of 200 concurrent requests with one uncached
# key (one database lookup), hostile key values, keys in the query string,
# and no secret in any log.
#
#   TEST_NGINX_LOAD_MODULES=build/ngx_http_flowscale_module.so \
#       prove -It/lib t/e2e/keys.t

use strict;
use warnings;

use Test::More;
use IO::Select;
use IO::Socket::INET;
use JSON::PP ();
use Time::HiRes qw(time sleep);

use FlowScale::Fixture qw(postgres psql stop_postgres start_postgres
                          simulator);
use FlowScale::Nginx;

plan skip_all => 'TEST_NGINX_LOAD_MODULES (the module .so) is not set'
    unless $ENV{TEST_NGINX_LOAD_MODULES};

my $Root = $FlowScale::Nginx::Root;
my $WF = "$Root/conf/workflows";
my $J = JSON::PP->new->utf8->canonical->allow_nonref;
my $NO_RUN = '0193a4c2-0000-7000-8000-000000000000';    # never exists

# The probe: a run route that needs a key and answers 404 without the
# database, so that what is measured is the key check alone.
my $PROBE = "/runs/$NO_RUN/nothing-here";

postgres();
simulator('sim1', step_time => 0.02);

psql(<<'SQL');
select flowscale.create_project(p)
from unnest(array['demo', 'other', 'open', 'regen', 'down']) as p;
SQL

sub new_key {
    my ($project, $label) = @_;
    return scalar psql("select flowscale.create_api_key('$project', "
                       . "'" . ($label // 'test') . "')");
}

sub key_id { my ($k) = $_[0] =~ /^fs_([^_]+)_/; return $k }
sub secret { my ($s) = $_[0] =~ /^fs_[^_]+_(.+)$/; return $s }

# the database lookups nginx made so far (sql/003_keys_admin.sql)
sub lookups { return scalar psql("select last_value + 0 - (case when "
                                 . "is_called then 0 else 1 end) from "
                                 . "flowscale.key_lookups") }

my %keys = map { $_ => new_key($_ eq 'demo2' ? 'demo' : $_) }
           qw(demo demo2 other regen down);
my @all_keys = values %keys;

my $deployment = sub {
    my ($name, $extra) = @_;
    return <<"LOC";
        location /v1/$name {
            flowscale_deployment $name;
            flowscale_workflow   $WF/txt2img.json;
            flowscale_input      prompt 6.text required;
            flowscale_input      steps  3.steps min=1 max=50;
            flowscale_output     result 9;
            flowscale_backend    comfyui;
            $extra
        }
LOC
};

my $ng = FlowScale::Nginx->new(http => <<"HTTP" . "    }\n");
    flowscale_database "\$TEST_NGINX_PG_DSN" pool=4;
    flowscale_zone flowscale:16m;

    upstream comfyui {
        server 127.0.0.1:\$TEST_NGINX_SIM1_PORT;
    }

    server {
        listen 127.0.0.1:\@PORT\@ reuseport;
        flowscale_project demo;
        add_header X-Worker \$pid always;

@{[ $deployment->('txt2img', '') ]}
@{[ $deployment->('public', 'flowscale_api_key off;') ]}
@{[ $deployment->('open', 'flowscale_project open;') ]}
@{[ $deployment->('regen', 'flowscale_project regen;') ]}
@{[ $deployment->('down', 'flowscale_project down;') ]}
@{[ $deployment->('limited', 'flowscale_key_concurrency 1;') ]}
HTTP

my $access_log = $ng->dir . '/logs/access.log';     # "combined": $request

my %bearer = map { $_ => { Authorization => "Bearer $keys{$_}" } } keys %keys;
my $RUN = "/v1/txt2img$PROBE";

sub is_problem {
    my ($res, $status, $slug, $name) = @_;
    is($res->{status}, $status, "$name: status $status")
        or diag("body: " . ($res->{content} // ''));
    like($res->{headers}{'content-type'} // '', qr{^application/problem\+json},
         "$name: application/problem+json");
    my $p = $res->{json} // {};
    is($p->{status}, $status, "$name: problem status member");
    is($p->{type}, "urn:flowscale:problem:$slug", "$name: problem type")
        if defined $slug;
    return $p;
}

# polls until the check gives $want, at most $secs; the time it took
sub until_status {
    my ($path, $headers, $want, $secs) = @_;
    my $t0 = time;
    my $res;
    while (1) {
        $res = $ng->get($path, headers => $headers);
        return (time - $t0, $res) if $res->{status} == $want;
        return (undef, $res) if time - $t0 > $secs;
        sleep 0.02;
    }
}

# both workers must have seen the change: ask several times on fresh
# connections (reuseport spreads them)
sub all_workers_say {
    my ($path, $headers, $want, $n) = @_;
    my %seen;
    for (1 .. ($n // 20)) {
        my $res = $ng->get($path, headers => $headers);
        $seen{ $res->{status} }++;
    }
    return join ',', map { "$_ x$seen{$_}" } sort keys %seen;
}

# ---------------------------------------------------------------------------
subtest 'routes that need no key' => sub {
    my $res = $ng->get('/v1/txt2img');
    is($res->{status}, 200, 'GET L: the descriptor needs no key');
    $res = $ng->request('HEAD', '/v1/txt2img');
    is($res->{status}, 200, 'HEAD L needs no key');
    $res = $ng->get("/v1/public$PROBE");
    is($res->{status}, 404, 'flowscale_api_key off: every route is public');
    $res = $ng->get('/v1/txt2img/openapi.json');
    isnt($res->{status}, 401, 'L/openapi.json needs no key');
    $res = $ng->get('/v1/txt2img/docs/');
    isnt($res->{status}, 401, 'L/docs/ needs no key');
    $res = $ng->request('PUT', '/v1/txt2img');
    is($res->{status}, 405, 'a method L does not have: 405, no key asked');
};

subtest 'missing key: 401 with WWW-Authenticate' => sub {
    my $res = $ng->get($RUN);
    my $p = is_problem($res, 401, 'unauthorized', 'GET L/x without key');
    like($res->{headers}{'www-authenticate'} // '', qr/^Bearer realm="flowscale"/,
         'WWW-Authenticate: Bearer realm="flowscale"');
    $res = $ng->post_json('/v1/txt2img', { inputs => { prompt => 'a cat' } });
    is_problem($res, 401, 'unauthorized', 'POST L without key');
    $res = $ng->get($RUN, headers => { Authorization => 'Basic dXNlcjpwYXNz' });
    is_problem($res, 401, 'unauthorized', 'Authorization: Basic is no key');
    $res = $ng->get("/v1/txt2img/runs/$NO_RUN");
    is_problem($res, 401, 'unauthorized', 'GET L/runs/ID without key');
    $res = $ng->request('DELETE', "/v1/txt2img/runs/$NO_RUN");
    is($res->{status}, 401, 'DELETE L/runs/ID without key');
    $res = $ng->get("/v1/txt2img/runs/$NO_RUN/events");
    is($res->{status}, 401, 'events without key');
    $res = $ng->get("/v1/txt2img/runs");
    is($res->{status}, 401, 'the run list without key');
    $res = $ng->get("/v1/txt2img/runs/$NO_RUN/outputs/result/0");
    is($res->{status}, 401, 'outputs without key');
};

subtest 'a key of the project: Bearer and X-API-Key' => sub {
    my $res = $ng->get($RUN, headers => $bearer{demo});
    is_problem($res, 404, 'not-found', 'Bearer key: past the check (404)');
    $res = $ng->get($RUN, headers => { 'X-API-Key' => $keys{demo} });
    is_problem($res, 404, 'not-found', 'X-API-Key: 404');
    $res = $ng->get($RUN, headers => { Authorization => "bearer   $keys{demo2}  " });
    is($res->{status}, 404, 'scheme is case-insensitive, spaces trimmed');
};

subtest 'a cached key costs no database round trip' => sub {
    $ng->get($RUN, headers => $bearer{demo}) for 1 .. 3;   # both workers
    my $before = lookups();
    for (1 .. 50) {
        my $res = $ng->get($RUN, headers => $bearer{demo});
        is($res->{status}, 404, 'cached key') if $_ == 50;
    }
    is(lookups(), $before, '50 requests with a cached key: no lookup');
};

subtest 'unknown, wrong and hostile keys: 401, never a 5xx' => sub {
    my $demo = $keys{demo};
    my $id = key_id($demo);
    my $res = $ng->get($RUN, headers => { Authorization => 'Bearer fs_0123456789ab_'
                                          . ('A' x 32) });
    my $p = is_problem($res, 401, 'invalid-key', 'well-formed unknown key');
    like($res->{headers}{'www-authenticate'} // '', qr/invalid_token/,
         'WWW-Authenticate says invalid_token');

    my $wrong = "fs_${id}_" . ('B' x length secret($demo));
    $res = $ng->get($RUN, headers => { Authorization => "Bearer $wrong" });
    is_problem($res, 401, 'invalid-key', 'right key id, wrong secret');

    # one byte off, in the middle and at the end
    (my $near = $demo) =~ s/.$/$& eq 'A' ? 'B' : 'A'/e;
    $res = $ng->get($RUN, headers => { Authorization => "Bearer $near" });
    is($res->{status}, 401, 'last character changed');

    my $before = lookups();
    for my $k ("fs_x'; drop table flowscale.api_keys; --_abc",
               "' OR '1'='1", "fs_$id' OR 1=1 --_x", 'fs__abc', 'fs_abc_',
               'fs_abc', "fs_abc_" . ('x' x 300), 'null', '',
               "fs_${id}_\x{e9}t\x{e9}", "fs_\x{e9}t\x{e9}_abc",
               "fs_${id}_" . secret($demo) . "\x{1F600}", "fs_${id}_\0abc") {
        my $bytes = $k;
        utf8::encode($bytes) if utf8::is_utf8($bytes);
        # raw bytes: HTTP::Tiny refuses non-ASCII header values
        my $got = $ng->send_and_close(
            $ng->raw_request('GET', $RUN, headers => { 'X-API-Key' => $bytes }),
            after => 5, until => qr/\r\n\r\n/);
        my ($st) = $got =~ m{^HTTP/1\.1 (\d{3})};
        ok(($st // 0) == 401 || ($st // 0) == 400,
           "hostile key '" . substr($k, 0, 24) . "...': " . ($st // 'none'));
    }
    is(lookups(), $before, 'malformed keys never reach the database');

    # nginx refuses headers beyond large_client_header_buffers itself
    $res = $ng->get($RUN, headers => { 'X-API-Key' => 'fs_abc_' . ('x' x 20000) });
    ok($res->{status} == 400 || $res->{status} == 401 || $res->{status} == 494,
       "oversized header refused ($res->{status})");
    is($ng->get('/v1/txt2img')->{status}, 200, 'nginx still serves');

    is(psql("select count(*) > 0 from flowscale.api_keys"), 't',
       'the keys table is still there');
};

subtest 'another project\'s key: 403' => sub {
    my $res = $ng->get($RUN, headers => $bearer{other});
    is_problem($res, 403, 'wrong-project', 'key of project "other"');
};

subtest 'a key in the query string is never accepted' => sub {
    my $k = $keys{demo};
    for my $q ("api_key=$k", "key=$k", "access_token=$k", "x=$k") {
        my $res = $ng->get("$RUN?$q");
        my $p = is_problem($res, 401, 'key-in-query', "?$q");
        unlike($res->{content}, qr/\Q${\ secret($k)}\E/, 'not echoed back');
    }
    my $res = $ng->post_json("/v1/txt2img?api_key=$k",
                             { inputs => { prompt => 'x' } });
    is($res->{status}, 401, 'POST L?api_key=KEY: 401');
};

subtest 'revoke_api_key reaches every worker within a second' => sub {
    my $k = new_key('demo', 'to revoke');
    my %h = (Authorization => "Bearer $k");
    is(all_workers_say($RUN, \%h), '404 x20', 'the key works (cached now)');

    is(psql("select flowscale.revoke_api_key('" . key_id($k) . "')"), 't',
       'revoked');
    my ($took, $res) = until_status($RUN, \%h, 403, 2);
    ok(defined $took && $took < 1, sprintf('403 after %.3fs', $took // -1));
    is_problem($res, 403, 'key-revoked', 'revoked key');
    is(all_workers_say($RUN, \%h), '403 x20', 'every worker refuses it');
    is(psql("select flowscale.revoke_api_key('" . key_id($k) . "')"), 'f',
       'revoking twice says false');
};

subtest 'regenerate_api_key: old keys out, the new one in, no reload' => sub {
    my $old = $keys{regen};
    my $path = "/v1/regen$PROBE";
    my %h = (Authorization => "Bearer $old");
    is(all_workers_say($path, \%h), '404 x20', 'the old key works');
    my $new = psql("select flowscale.regenerate_api_key('regen')");
    like($new, qr/^fs_[0-9a-f]{12}_[A-Za-z0-9_-]+$/, 'a new key is returned');
    my ($took) = until_status($path, \%h, 403, 2);
    ok(defined $took && $took < 1, sprintf('old key 403 after %.3fs', $took // -1));
    is(all_workers_say($path, \%h), '403 x20', 'every worker refuses the old key');
    is(all_workers_say($path, { Authorization => "Bearer $new" }), '404 x20',
       'the new key works');
    push @all_keys, $new;
};

subtest 'set_project_auth(project, false) makes the API public' => sub {
    my $path = "/v1/open$PROBE";
    is(all_workers_say($path, {}), '401 x20', 'project "open" needs a key');
    psql("select flowscale.set_project_auth('open', false)");
    my ($took) = until_status($path, {}, 404, 2);
    ok(defined $took && $took < 1, sprintf('public after %.3fs', $took // -1));
    is(all_workers_say($path, {}), '404 x20', 'every worker: public');
    psql("select flowscale.set_project_auth('open', true)");
    ($took) = until_status($path, {}, 401, 2);
    ok(defined $took && $took < 1, sprintf('private again after %.3fs', $took // -1));
    is(all_workers_say($path, {}), '401 x20', 'every worker: key needed again');
};

subtest 'a burst of 200 requests with one uncached key: one lookup' => sub {
    my $k = new_key('demo', 'burst');
    sleep 0.2;     # the insert's notification has been handled
    my $before = lookups();
    my $req = "GET $RUN HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
              . "Authorization: Bearer $k\r\n\r\n";
    my @socks;
    for (1 .. 200) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                      PeerPort => $ng->port, Proto => 'tcp',
                                      Timeout => 5) or last;
        push @socks, $s;
    }
    is(scalar @socks, 200, '200 connections open');
    syswrite $_, $req for @socks;       # all at once
    my %status;
    my %buf;
    my $sel = IO::Select->new(@socks);
    my $deadline = time + 20;
    while ($sel->count && time < $deadline) {
        for my $s ($sel->can_read(1)) {
            my $n = sysread $s, my $chunk, 65536;
            if ($n) { $buf{$s} .= $chunk; next }
            my ($st) = ($buf{$s} // '') =~ m{^HTTP/1\.1 (\d{3})};
            $status{ $st // 'none' }++;
            $sel->remove($s);
            close $s;
        }
    }
    is_deeply(\%status, { 404 => 200 }, 'all 200 authorized')
        or diag(explain \%status);
    is(lookups() - $before, 1, 'one database lookup for the whole burst');
};

subtest 'the database goes away and comes back' => sub {
    my $cached = $keys{down};
    my $path = "/v1/down$PROBE";
    my %h = (Authorization => "Bearer $cached");
    is(all_workers_say($path, \%h), '404 x20', 'key cached in the zone');
    my $later = new_key('down', 'made before the outage, never used');
    is(all_workers_say($path, {}, 401, 4), '401 x4', 'project cached too');

    # the test cluster commits asynchronously: make the new key durable
    # before an immediate (crash-like) stop
    psql('checkpoint', user => 'postgres');
    stop_postgres();
    my $mark = $ng->log_mark;

    is(all_workers_say($path, \%h), '404 x20',
       'database down: the cached key still works');
    my $res = $ng->get($path, headers => { Authorization => "Bearer $later" });
    my $p = is_problem($res, 503, 'database-unavailable',
                       'database down: an uncached key');
    ok(defined $res->{headers}{'retry-after'}, 'Retry-After given');
    ok($res->{elapsed} < 4, sprintf('answered in %.2fs, no hang',
                                    $res->{elapsed}));
    $res = $ng->get($path, headers => { Authorization => 'Bearer fs_00000000dead_xyz' });
    is($res->{status}, 503, 'an unknown key is 503, never 401');
    $res = $ng->get($path);
    is($res->{status}, 401, 'no key at all is still 401 (the project is cached)');

    start_postgres();

    my ($took) = until_status($path, { Authorization => "Bearer $later" },
                              404, 15);
    ok(defined $took, sprintf('the uncached key works %.2fs after the '
                              . 'restart', $took // -1));
    is(all_workers_say($path, { Authorization => "Bearer $later" }), '404 x20',
       'on every worker');

    # the LISTEN connections are back (each flushed the cache when it
    # came back): revocation is immediate again
    my $deadline = time + 10;
    my $workers = () = $ng->workers;      # 1 under valgrind
    my $back = 0;
    while (time < $deadline) {
        $back = () = $ng->error_log($mark) =~ /listening for API key changes/g;
        last if $back >= $workers;
        sleep 0.05;
    }
    is($back, $workers, 'every worker listens again');
    is(all_workers_say($path, \%h), '404 x20', 'the old key is cached again');
    psql("select flowscale.revoke_api_key('" . key_id($cached) . "')");
    ($took) = until_status($path, \%h, 403, 2);
    ok(defined $took && $took < 1,
       sprintf('revocation after the restart seen in %.3fs', $took // -1));
    is(all_workers_say($path, \%h), '403 x20', 'on every worker');
};

subtest 'flowscale_key_concurrency' => sub {
    FlowScale::Fixture::sim_faults('sim1', { slow => 2 });
    my %h = (Authorization => "Bearer $keys{demo2}");
    my $first = $ng->post_json('/v1/limited', { inputs => { prompt => 'a' } },
                               headers => \%h);
    is($first->{status}, 202, 'first run accepted');
    my $second = $ng->post_json('/v1/limited', { inputs => { prompt => 'b' } },
                                headers => \%h);
    is($second->{status}, 429, 'second unfinished run of the key: 429');
    ok(defined $second->{headers}{'retry-after'}, 'with Retry-After');
    my $other = $ng->post_json('/v1/limited', { inputs => { prompt => 'c' } },
                               headers => $bearer{demo});
    is($other->{status}, 202, 'another key is not limited');
    FlowScale::Fixture::sim_faults('sim1', { slow => 0 });
};

subtest 'no secret in any log' => sub {
    sleep 0.2;
    my $error_log = $ng->error_log;
    my $access = do { local (@ARGV, $/) = ($access_log); <> } // '';
    ok(length $error_log, 'the error log has lines');
    like($error_log, qr/invalid API key id/, 'refusals are logged, by key id');
    for my $k (@all_keys) {
        my $s = secret($k);
        unlike($error_log, qr/\Q$s\E/, 'secret of ' . key_id($k)
                                       . ' not in the error log');
    }
    # the access log's $request had the query-string key masked
    my $s = secret($keys{demo});
    my $id = key_id($keys{demo});
    my @q = grep { /\?\S*=fs_\Q$id\E_/ } split /\n/, $access;
    ok(@q >= 4, 'the query-string requests are in the access log');
    unlike(join("\n", @q), qr/\Q$s\E/, 'their keys are masked in $request');
    like(join("\n", @q), qr/fs_\Q$id\E_\*{10}/,
         'the key id stays visible');
};

$ng->stop;     # checks the logs for alerts and crashes

done_testing();
