# End-to-end tests of issue 7 (monitoring and the deployment lifecycle)
# through a real nginx, PostgreSQL and two simulated ComfyUI backends: the
# Prometheus page (every line parsed), counters that move as runs succeed
# and fail, the status page with a killed backend, $flowscale_* variables
# in an access log, the usage view, the deployment registry and its
# versions, stop_deployment()/start_deployment() without reload and across
# a restart, and the render time with 100 deployments and 50 backends.
#
#   TEST_NGINX_LOAD_MODULES=build/ngx_http_flowscale_module.so \
#       prove -It/lib t/e2e/monitoring.t

use strict;
use warnings;

use Test::More;
use JSON::PP ();
use Time::HiRes qw(time sleep);

use FlowScale::Fixture qw(postgres psql simulator stop_simulator sim_faults
                          sim_url free_port);
use FlowScale::Nginx;

plan skip_all => 'TEST_NGINX_LOAD_MODULES (the module .so) is not set'
    unless $ENV{TEST_NGINX_LOAD_MODULES};

my $Root = $FlowScale::Nginx::Root;
my $WF = "$Root/conf/workflows";
my $J = JSON::PP->new->utf8->canonical->allow_nonref;

postgres();
simulator($_, step_time => 0.02) for qw(sim1 sim2);

psql("select flowscale.create_project('mon')");
my $KEY = scalar psql("select flowscale.create_api_key('mon', 'monitoring')");
my ($KEY_ID) = $KEY =~ /^fs_([^_]+)_/;

my $steps_max = 50;

sub http_conf {
    my (%o) = @_;
    my $max = $o{steps_max} // $steps_max;
    return <<"HTTP";
    flowscale_database "\$TEST_NGINX_PG_DSN" pool=3;
    flowscale_zone flowscale:16m;
    flowscale_health_interval 200ms;

    log_format flowscale '\$request_method \$uri \$status '
                         'run=\$flowscale_run_id dep=\$flowscale_deployment '
                         'backend=\$flowscale_backend key=\$flowscale_key_id '
                         'queue=\$flowscale_queue_time';

    upstream comfyui {
        server 127.0.0.1:\$TEST_NGINX_SIM1_PORT;
        server 127.0.0.1:\$TEST_NGINX_SIM2_PORT;
    }

    server {
        listen 127.0.0.1:\@PORT\@ reuseport;
        flowscale_api_key off;
        access_log logs/flowscale.log flowscale;

        location /v1/txt2img {
            flowscale_deployment txt2img;
            flowscale_workflow   $WF/txt2img.json;
            flowscale_input      prompt  6.text   required;
            flowscale_input      steps   3.steps  min=1 max=$max;
            flowscale_output     result  9;
            flowscale_backend    comfyui;
        }

        location /v1/keyed {
            flowscale_deployment keyed;
            flowscale_project    mon;
            flowscale_api_key    on;
            flowscale_workflow   $WF/txt2img.json;
            flowscale_input      prompt  6.text   required;
            flowscale_output     result  9;
            flowscale_backend    comfyui;
        }

        location = /metrics { flowscale_metrics; allow 127.0.0.1; deny all; }
        location = /flowscale/status { flowscale_status; }
        location = /hidden/metrics { flowscale_metrics; deny all; }
    }
HTTP
}

my $ng = FlowScale::Nginx->new(name => 'nginx', timeout => 15,
                               http => http_conf());

# ---------------------------------------------------------------------------
# helpers

# Parses the Prometheus text format strictly; dies naming the line at fault.
# Returns { types => {family => type}, samples => [[name, {labels}, value]] }
sub parse_metrics {
    my ($text) = @_;
    die "does not end with a newline\n" unless $text =~ /\n\z/;
    my (%types, %help, @samples, %seen);
    my $name_re = qr/[a-zA-Z_:][a-zA-Z0-9_:]*/;
    my $value_re = qr/[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?Inf|NaN/;
    my $n = 0;
    for my $line (split /\n/, $text) {
        $n++;
        if ($line =~ /^# HELP ($name_re) (.*)$/) {
            die "line $n: second HELP for $1\n" if $help{$1}++;
            next;
        }
        if ($line =~ /^# TYPE ($name_re) (counter|gauge|histogram|summary|untyped)$/) {
            die "line $n: second TYPE for $1\n" if $types{$1};
            die "line $n: TYPE of $1 after its samples\n"
                if grep { family_of($_->[0], \%types) eq $1 } @samples;
            $types{$1} = $2;
            next;
        }
        die "line $n: bad comment: $line\n" if $line =~ /^#/;
        die "line $n: empty line\n" if $line eq '';
        $line =~ /^($name_re)(?:\{(.*)\})? ($value_re)$/
            or die "line $n: bad sample: $line\n";
        my ($name, $labels, $value) = ($1, $2 // '', $3);
        my %l;
        my $rest = $labels;
        while (length $rest) {
            $rest =~ s/^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)//
                or die "line $n: bad labels: {$labels}\n";
            die "line $n: label $1 twice\n" if exists $l{$1};
            (my $v = $2) =~ s/\\(.)/$1 eq 'n' ? "\n" : $1/ge;
            $l{$1} = $v;
        }
        my $family = family_of($name, \%types);
        die "line $n: $name has no TYPE\n" unless $types{$family};
        my $key = $name . '{' . join(',', map {"$_=$l{$_}"} sort keys %l) . '}';
        die "line $n: duplicate series $key\n" if $seen{$key}++;
        push @samples, [$name, \%l, $value];
    }

    # histograms: buckets cumulative, +Inf equal to _count
    for my $family (grep { $types{$_} eq 'histogram' } keys %types) {
        my %series;
        for my $s (@samples) {
            my ($name, $l, $v) = @$s;
            next unless $name =~ /^\Q$family\E_(bucket|sum|count)$/;
            my $kind = $1;
            my %k = %$l;
            my $le = delete $k{le};
            my $id = join ',', map {"$_=$k{$_}"} sort keys %k;
            if ($kind eq 'bucket') {
                die "$family: bucket without le\n" unless defined $le;
                push @{ $series{$id}{buckets} }, [$le, $v];
            } else {
                $series{$id}{$kind} = $v;
            }
        }
        for my $id (keys %series) {
            my $s = $series{$id};
            my $b = $s->{buckets} or die "$family\{$id}: no buckets\n";
            my ($prev_le, $prev) = (-1, 0);
            for my $x (@$b) {
                my $le = $x->[0] eq '+Inf' ? 9**9**9 : $x->[0];
                die "$family\{$id}: le not increasing\n" unless $le > $prev_le;
                die "$family\{$id}: buckets not cumulative\n" if $x->[1] < $prev;
                ($prev_le, $prev) = ($le, $x->[1]);
            }
            die "$family\{$id}: no +Inf bucket\n" unless $b->[-1][0] eq '+Inf';
            die "$family\{$id}: +Inf $b->[-1][1] != _count "
                . ($s->{count} // 'none') . "\n"
                unless defined $s->{count} && $b->[-1][1] == $s->{count};
            die "$family\{$id}: no _sum\n" unless defined $s->{sum};
        }
    }
    return { types => \%types, samples => \@samples };
}

sub family_of {
    my ($name, $types) = @_;
    return $name if $types->{$name};
    (my $f = $name) =~ s/_(?:bucket|sum|count)$//;
    return $types->{$f} ? $f : $name;
}

sub metrics {
    my $res = $ng->get('/metrics');
    die "GET /metrics: $res->{status}\n" unless $res->{status} == 200;
    return parse_metrics($res->{content});
}

# the value of the one sample with that name and those labels (0 if none)
sub mval {
    my ($m, $name, %want) = @_;
    my @hit = grep {
        my $l = $_->[1];
        $_->[0] eq $name && !grep { ($l->{$_} // "\0") ne $want{$_} } keys %want
    } @{ $m->{samples} };
    die "$name: " . scalar(@hit) . " samples match\n" if @hit > 1;
    return @hit ? $hit[0][2] : 0;
}

sub status_page {
    my $res = $ng->get('/flowscale/status');
    die "GET /flowscale/status: $res->{status}\n" unless $res->{status} == 200;
    return $J->decode($res->{content});
}

sub dep_status {
    my ($st, $name) = @_;
    my ($d) = grep { $_->{name} eq $name } @{ $st->{deployments} };
    return $d;
}

sub wait_for {
    my ($secs, $cond) = @_;
    my $deadline = time + $secs;
    while (time < $deadline) {
        my $v = eval { $cond->() };
        return $v if $v;
        sleep 0.05;
    }
    return;
}

sub post_run {
    my ($loc, $inputs, %o) = @_;
    return $ng->post_json($loc, { inputs => $inputs }, %o);
}

sub poll_run {
    my ($loc, $id, $secs) = @_;
    my $res;
    wait_for($secs // 15, sub {
        $res = $ng->get("$loc/runs/$id");
        return ($res->{json}{status} // '') =~ /^(?:succeeded|failed|canceled)$/;
    });
    return $res;
}

sub access_log {
    open my $in, '<', $ng->dir . '/logs/flowscale.log' or return '';
    local $/;
    return scalar <$in>;
}

sub ready {
    return wait_for(10, sub {
        my $r = $ng->get('/v1/txt2img');
        return $r->{json} && $r->{json}{state} eq 'ready';
    });
}

ok(ready(), 'the deployment becomes ready');

# ---------------------------------------------------------------------------
subtest 'the metrics page parses before any run' => sub {
    my $res = $ng->get('/metrics');
    is($res->{status}, 200, 'GET /metrics answers');
    like($res->{headers}{'content-type'}, qr{^text/plain; version=0\.0\.4},
         'Prometheus text format 0.0.4');
    my $m = eval { parse_metrics($res->{content}) };
    ok($m, 'every line parses') or diag($@);
    is($m->{types}{$_->[0]}, $_->[1], "$_->[0] is a $_->[1]") for
        [flowscale_runs_total => 'counter'],
        [flowscale_queue_depth => 'gauge'],
        [flowscale_queue_wait_seconds => 'histogram'],
        [flowscale_run_duration_seconds => 'histogram'],
        [flowscale_backend_up => 'gauge'],
        [flowscale_backend_outstanding => 'gauge'],
        [flowscale_backend_failures_total => 'counter'],
        [flowscale_key_checks_total => 'counter'],
        [flowscale_key_cache_hits_total => 'counter'],
        [flowscale_db_errors_total => 'counter'],
        [flowscale_http_responses_total => 'counter'];
    is(mval($m, 'flowscale_backend_up', backend => "127.0.0.1:$ENV{TEST_NGINX_SIM1_PORT}"),
       1, 'backend 1 up');
    is(mval($m, 'flowscale_queue_depth', deployment => 'txt2img'), 0,
       'queue depth 0');
    is($ng->get('/hidden/metrics')->{status}, 403, 'deny all protects a page');
};

# ---------------------------------------------------------------------------
my (@ok_ids, $failed_id);

subtest 'counters move as runs succeed and fail' => sub {
    my $m0 = metrics();
    for (1 .. 3) {
        my $r = post_run('/v1/txt2img', { prompt => "a cat $_", steps => 2 },
                         headers => { Prefer => 'wait=10' });
        is($r->{status}, 200, "run $_ finished within the wait");
        push @ok_ids, $r->{json}{id};
    }
    sim_faults($_, { fail_node => '3' }) for qw(sim1 sim2);
    my $r = post_run('/v1/txt2img', { prompt => 'fails', steps => 2 },
                     headers => { Prefer => 'wait=10' });
    sim_faults($_, { fail_node => undef }) for qw(sim1 sim2);
    is($r->{json}{status}, 'failed', 'a failed run');
    $failed_id = $r->{json}{id};
    is(post_run('/v1/txt2img', { steps => 2 })->{status}, 422,
       'a 422 counted too');

    my $m = metrics();
    my %d = (deployment => 'txt2img', project => 'default');
    my $delta = sub {
        my ($name, %l) = @_;
        return mval($m, $name, %l) - mval($m0, $name, %l);
    };
    is($delta->('flowscale_runs_total', %d, status => 'succeeded'), 3,
       '3 more succeeded');
    is($delta->('flowscale_runs_total', %d, status => 'failed'), 1,
       '1 more failed');
    is($delta->('flowscale_runs_accepted_total', %d), 4, '4 more accepted');
    is($delta->('flowscale_queue_wait_seconds_count', %d), 4,
       'queue wait observed for the 4 runs');
    is($delta->('flowscale_run_duration_seconds_count', %d), 4,
       'duration observed for the 4 runs');
    ok(mval($m, 'flowscale_run_duration_seconds_sum', %d) > 0,
       'durations add up to more than 0');
    is($delta->('flowscale_http_responses_total', %d, code => 200), 4,
       '4 more 200s (failed runs answer 200 under Prefer: wait)');
    is($delta->('flowscale_http_responses_total', %d, code => 422), 1,
       '1 more 422');
    ok(mval($m, 'flowscale_db_pool_size') >= 3, 'pool size published');

    my $st = status_page();
    my $ds = dep_status($st, 'txt2img');
    is($ds->{runs}{succeeded}, mval($m, 'flowscale_runs_total', %d,
                                   status => 'succeeded'),
       'the status page agrees with the metrics');
};

# ---------------------------------------------------------------------------
subtest 'API key metrics and $flowscale_key_id' => sub {
    my $m0 = metrics();
    is(post_run('/v1/keyed', { prompt => 'no key' })->{status}, 401,
       'no key: 401');
    my $r = post_run('/v1/keyed', { prompt => 'with key' },
                     headers => { Authorization => "Bearer $KEY",
                                  Prefer => 'wait=10' });
    is($r->{status}, 200, 'with a key: 200');
    post_run('/v1/keyed', { prompt => 'cached key' },
             headers => { Authorization => "Bearer $KEY" });
    my $m = metrics();
    ok(mval($m, 'flowscale_key_checks_total', result => 'missing')
       > mval($m0, 'flowscale_key_checks_total', result => 'missing'),
       'missing key counted');
    ok(mval($m, 'flowscale_key_checks_total', result => 'ok')
       >= mval($m0, 'flowscale_key_checks_total', result => 'ok') + 2,
       'good keys counted');
    ok(mval($m, 'flowscale_key_cache_hits_total')
       > mval($m0, 'flowscale_key_cache_hits_total'), 'cache hit counted');
    ok(wait_for(3, sub { access_log() =~ /^POST \/v1\/keyed 200 run=[0-9a-f-]{36} dep=keyed backend=\S+ key=\Q$KEY_ID\E /m }),
       'the key id is in the access log') or diag(access_log());
    unlike(access_log(), qr/\Q$KEY\E/, 'never the key itself');
};

# ---------------------------------------------------------------------------
subtest 'variables in a custom access log' => sub {
    my $id = $ok_ids[0];
    my $r = $ng->get("/v1/txt2img/runs/$id");
    is($r->{status}, 200, 'GET the run');
    my $log = '';
    ok(wait_for(3, sub {
        $log = access_log();
        return $log =~ m{^GET /v1/txt2img/runs/$id 200 run=$id dep=txt2img }m;
    }), 'GET L/runs/ID logs its run id and deployment') or diag($log);
    like($log, qr{^POST /v1/txt2img 200 run=$id dep=txt2img backend=127\.0\.0\.1:\d+ key=- queue=\d+\.\d{3}$}m,
         'POST L logs run id, deployment, backend, no key, queue time');
    like($log, qr{^POST /v1/txt2img 422 run=- dep=txt2img backend=- key=- queue=-$}m,
         'a refused POST logs "-" for what does not exist');
    like($log, qr{^GET /metrics 200 run=- dep=- backend=- key=- queue=-$}m,
         'outside a deployment everything is "-"');
};

# ---------------------------------------------------------------------------
subtest 'usage view matches the runs' => sub {
    my ($row) = psql("select runs, succeeded, failed, "
                     . "round(gpu_seconds::numeric, 3), "
                     . "round(queue_wait_seconds::numeric, 3) "
                     . "from flowscale.usage_daily where project = 'default' "
                     . "and deployment = 'txt2img' and key_id is null "
                     . "and day = (now() at time zone 'UTC')::date");
    my ($expect) = psql("select count(*), "
                        . "count(*) filter (where status = 'succeeded'), "
                        . "count(*) filter (where status = 'failed'), "
                        . "round(coalesce(sum(extract(epoch from finished_at - started_at)), 0)::numeric, 3), "
                        . "round(coalesce(sum(extract(epoch from started_at - created_at)), 0)::numeric, 3) "
                        . "from flowscale.runs where project = 'default' "
                        . "and deployment = 'txt2img' and key_id is null "
                        . "and (created_at at time zone 'UTC')::date "
                        . "= (now() at time zone 'UTC')::date");
    ok(defined $row, 'a usage row for today');
    is($row, $expect, 'runs, succeeded, failed, gpu and queue seconds');
    my ($runs, $ok, $failed, $gpu) = split /\|/, $row // '';
    is($ok, 3, '3 succeeded');
    is($failed, 1, '1 failed');
    ok($gpu > 0, 'gpu seconds counted');
    my ($keyed) = psql("select runs from flowscale.usage_daily "
                       . "where key_id = '$KEY_ID'");
    is($keyed, 2, 'usage by key');
};

# ---------------------------------------------------------------------------
my $version1;

subtest 'the deployment registry' => sub {
    $version1 = $ng->get('/v1/txt2img')->{json}{version};
    my $row;
    ok(wait_for(5, sub {
        ($row) = psql("select version, state, stopped, "
                      . "workflow->'3'->>'class_type', io->>'name' "
                      . "from flowscale.deployments "
                      . "where project = 'default' and name = 'txt2img'");
        return $row && $row =~ /\|ready\|/;
    }), 'recorded when nginx loaded it, state ready') or diag($row);
    is($row, "$version1|ready|f|KSampler|txt2img",
       'version, state, flag, workflow and descriptor');
    my $st = status_page();
    my $d = dep_status($st, 'txt2img');
    is($d->{version}, $version1, 'status: version');
    is($d->{state}, 'ready', 'status: state');
    is(scalar @{ $d->{capable_backends} }, 2, 'status: 2 capable backends');
    is($st->{database}{pool_size}, 3, 'status: pool size');
    ok(wait_for(3, sub { status_page()->{database}{connections_up} >= 1 }),
       'status: connections up') or diag($J->encode(status_page()->{database}));
};

# ---------------------------------------------------------------------------
subtest 'stop: new runs 503 within a second, a running run finishes' => sub {
    my $long = post_run('/v1/txt2img', { prompt => 'long', steps => 40 });
    is($long->{status}, 202, 'a long run accepted');
    my $id = $long->{json}{id};
    ok(wait_for(5, sub {
        $ng->get("/v1/txt2img/runs/$id")->{json}{status} eq 'running' }),
       'it runs');

    psql("select flowscale.stop_deployment('default', 'txt2img')");
    my $t0 = time;
    my $r;
    wait_for(3, sub {
        $r = post_run('/v1/txt2img', { prompt => 'x', steps => 1 });
        return $r->{status} == 503;
    });
    my $took = time - $t0;
    is($r->{status}, 503, 'a new run is refused with 503');
    ok($took < 1.0, sprintf('within a second (%.3f s)', $took));
    is($r->{json}{type}, 'urn:flowscale:problem:deployment-stopped',
       'problem type deployment-stopped');
    like($r->{headers}{'content-type'}, qr{application/problem\+json},
         'problem+json');

    is(poll_run('/v1/txt2img', $id, 15)->{json}{status}, 'succeeded',
       'the running run finished');
    ok(wait_for(3, sub { $ng->get('/v1/txt2img')->{json}{state} eq 'stopped' }),
       'GET L shows stopped');
    is(dep_status(status_page(), 'txt2img')->{state}, 'stopped',
       'the status page shows stopped');
    ok(wait_for(3, sub {
        scalar(psql("select state from flowscale.deployments "
                    . "where name = 'txt2img' and version = '$version1'"))
        eq 'stopped' }), 'the registry says stopped');
    is(post_run('/v1/keyed', { prompt => 'other' },
                headers => { Authorization => "Bearer $KEY" })->{status},
       202, 'another deployment is not affected');
};

subtest 'start: runs accepted again' => sub {
    psql("select flowscale.start_deployment('default', 'txt2img')");
    my $t0 = time;
    my $r;
    wait_for(3, sub {
        $r = post_run('/v1/txt2img', { prompt => 'back', steps => 1 });
        return $r->{status} == 202;
    });
    is($r->{status}, 202, 'accepted');
    ok(time - $t0 < 1.0, 'within a second');
    ok(wait_for(3, sub { $ng->get('/v1/txt2img')->{json}{state} eq 'ready' }),
       'GET L shows ready');
    ok(wait_for(3, sub {
        scalar(psql("select state from flowscale.deployments "
                    . "where name = 'txt2img' and version = '$version1'"))
        eq 'ready' }), 'the registry says ready');
    eval { psql("select flowscale.stop_deployment('default', 'nope')") };
    like($@, qr/no deployment "nope"/, 'an unknown deployment is an error');
};

# ---------------------------------------------------------------------------
subtest 'a restart keeps a stopped deployment stopped' => sub {
    psql("select flowscale.stop_deployment('default', 'txt2img')");
    ok(wait_for(3, sub { post_run('/v1/txt2img', { prompt => 'x' })->{status}
                         == 503 }), 'stopped');
    $ng->stop;
    $ng = FlowScale::Nginx->new(name => 'nginx #2', timeout => 15,
                                http => http_conf());
    my $r;
    ok(wait_for(2, sub {
        $r = post_run('/v1/txt2img', { prompt => 'x', steps => 1 });
        $r->{status} == 503 }), 'still 503 after the restart')
        or diag($r->{status});
    ok(wait_for(5, sub { $ng->get('/v1/txt2img')->{json}{state} eq 'stopped' }),
       'GET L shows stopped');
    psql("select flowscale.start_deployment('default', 'txt2img')");
    ok(wait_for(2, sub { post_run('/v1/txt2img', { prompt => 'y', steps => 1 })
                         ->{status} == 202 }), 'started again');
};

# ---------------------------------------------------------------------------
subtest 'a reload with a changed workflow registers a new version' => sub {
    ready();
    my $old = post_run('/v1/txt2img', { prompt => 'old version', steps => 30 });
    is($old->{status}, 202, 'a run of the old version');
    $ng->set_config(http => http_conf(steps_max => 60));
    $ng->reload;
    my $v2 = $ng->get('/v1/txt2img')->{json}{version};
    isnt($v2, $version1, 'another version');
    ok(wait_for(5, sub {
        scalar(psql("select count(*) from flowscale.deployments "
                    . "where project = 'default' and name = 'txt2img'")) == 2
    }), 'two rows: both versions');
    my $done = poll_run('/v1/txt2img', $old->{json}{id}, 20);
    is($done->{json}{status}, 'succeeded', 'the old-version run finished');
    is($done->{json}{version}, $version1, 'under the version it was accepted with');
    is(scalar psql("select version from flowscale.runs where id = '$old->{json}{id}'"),
       $version1, 'PostgreSQL agrees');
};

# ---------------------------------------------------------------------------
subtest 'status shows a killed backend as down' => sub {
    my $port = $ENV{TEST_NGINX_SIM2_PORT};
    stop_simulator('sim2');
    my $b;
    ok(wait_for(5, sub {
        ($b) = grep { $_->{name} eq "127.0.0.1:$port" }
               @{ status_page()->{backends} };
        return $b && !$b->{up};
    }), 'down on the status page');
    ok($b->{last_error}, "with its last error ($b->{last_error})");
    ok($b->{last_seen}, 'and when it was last seen');
    my $m = metrics();
    is(mval($m, 'flowscale_backend_up', backend => "127.0.0.1:$port"), 0,
       'flowscale_backend_up 0');
    ok(mval($m, 'flowscale_backend_failures_total',
            backend => "127.0.0.1:$port") >= 1, 'failures counted')
        or diag(join "\n", grep { /backend/ } split /\n/,
                $ng->get('/metrics')->{content});
    my ($up) = grep { $_->{name} ne "127.0.0.1:$port" }
               @{ status_page()->{backends} };
    ok($up->{up}, 'the other stays up');
    is($up->{comfyui_version}, '0.8.0', 'with its ComfyUI version');
    simulator('sim2', step_time => 0.02);
    ok(wait_for(5, sub {
        ($b) = grep { $_->{name} eq "127.0.0.1:$port" }
               @{ status_page()->{backends} };
        return $b->{up};
    }), 'up again after it came back');
};

$ng->stop;

# ---------------------------------------------------------------------------
subtest 'render time with 100 deployments and 50 backends' => sub {
    my $servers = join '', map { "        server 127.0.0.1:$_;\n" }
        $ENV{TEST_NGINX_SIM1_PORT}, $ENV{TEST_NGINX_SIM2_PORT},
        map { free_port() } 1 .. 48;
    my $locations = join '', map { <<"LOC" } 1 .. 100;
        location /v1/d$_ {
            flowscale_deployment d$_;
            flowscale_workflow   $WF/txt2img.json;
            flowscale_input      prompt  6.text;
            flowscale_output     result  9;
            flowscale_backend    big;
        }
LOC
    my $big = FlowScale::Nginx->new(name => 'nginx big', timeout => 20, http => <<"HTTP");
    flowscale_database "\$TEST_NGINX_PG_DSN" pool=2;
    flowscale_zone flowscale:32m;
    flowscale_health_interval 1s;
    upstream big {
$servers    }
    server {
        listen 127.0.0.1:\@PORT\@ reuseport;
        flowscale_api_key off;
$locations
        location = /metrics { flowscale_metrics; }
        location = /flowscale/status { flowscale_status; }
    }
HTTP
    sleep 1;
    my (@m, @s);
    for (1 .. 20) {
        my $r = $big->get('/metrics');
        my $p = eval { parse_metrics($r->{content}) };
        ok($p, 'parses') or diag($@) if $_ == 1;
        push @m, mval($p, 'flowscale_metrics_render_seconds') if $p;
        push @s, $J->decode($big->get('/flowscale/status')->{content})
                    ->{render_seconds};
    }
    @m = sort { $a <=> $b } @m;
    @s = sort { $a <=> $b } @s;
    my $p = scalar(grep { $_->[0] eq 'flowscale_queue_depth' }
                   @{ parse_metrics($big->get('/metrics')->{content})->{samples} });
    ok($p >= 100, "$p deployments on the page");
    diag(sprintf 'metrics render: median %.3f ms, max %.3f ms; status: '
         . 'median %.3f ms, max %.3f ms', 1000 * $m[10], 1000 * $m[-1],
         1000 * $s[10], 1000 * $s[-1]);
    # sanitizer builds run several times slower: the budget scales with them
    my $ms = ($ENV{TEST_NGINX_BINARY} // '') =~ /asan/ ? 5 : 1;
    ok($m[10] < $ms / 1000, "metrics render in under $ms ms (median)");
    ok($s[10] < $ms / 1000, "status renders in under $ms ms (median)");
    $big->stop;
};

done_testing();
