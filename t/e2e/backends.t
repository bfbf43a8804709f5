# End-to-end tests of issue 6 (the parts implemented) through a real nginx,
# a real PostgreSQL and several simulated ComfyUI backends: deployment
# states (deploying -> ready, failed with the reason, 503 saying why), a
# backend missing a class never gets the runs, flowscale_queue_size (429 +
# Retry-After), exact queue positions, late binding with
# flowscale_backend_depth 1, a backend killed mid-run (re-queued elsewhere,
# or backend_lost with flowscale_retries 0) and coming back, kill -9 of the
# workers while runs wait, nginx killed with SIGKILL and started again
# (nothing lost, nothing run twice), and the run list GET L/runs.
# Not covered (not implemented yet): flowscale_least_jobs weights, key
# fairness, the status page.
#
#   TEST_NGINX_LOAD_MODULES=$PWD/build/ngx_http_flowscale_module.so \
#       prove -It/lib t/e2e/backends.t

use strict;
use warnings;

use Test::More;
use HTTP::Tiny;
use JSON::PP ();
use POSIX ();
use Time::HiRes qw(time sleep);

use FlowScale::Fixture qw(postgres psql simulator stop_simulator sim_faults
                          sim_url free_port);
use FlowScale::Nginx;

plan skip_all => 'TEST_NGINX_LOAD_MODULES (the module .so) is not set'
    unless $ENV{TEST_NGINX_LOAD_MODULES};

my $T0 = time;
my $Root = $FlowScale::Nginx::Root;
my $WF = "$Root/conf/workflows";
my $J = JSON::PP->new->utf8->canonical->allow_nonref;

postgres();
my %opt = (step_time => 0.02);
simulator('simMC', %opt, missing_class => 'KSampler');     # no KSampler
simulator('simMM', %opt, models => 'other.safetensors');   # no sd15 checkpoint
simulator($_, %opt) for qw(simQS simT simF simS simK1 simK2 simL0 simR);
# simLate is started later, on a port chosen now
$ENV{TEST_NGINX_SIMLATE_PORT} = my $late_port = free_port();

sub port_of { my ($p) = sim_url($_[0]) =~ /:(\d+)$/; return $p }

sub deployment {
    my ($name, $up, @extra) = @_;
    my $extra = join "\n", map { "            $_;" } @extra;
    return <<"LOC";
        location /v1/$name {
            flowscale_deployment $name;
            flowscale_workflow   $WF/txt2img.json;
            flowscale_input      prompt  6.text   required;
            flowscale_input      seed    3.seed   default=random;
            flowscale_input      steps   3.steps  min=1 max=50;
            flowscale_output     result  9;
            flowscale_backend    $up;
$extra
        }
LOC
}

my $HTTP = <<"HTTP"
    flowscale_database "\$TEST_NGINX_PG_DSN" pool=4;
    flowscale_zone flowscale:16m;
    flowscale_health_interval 1s;

    upstream upLate { server 127.0.0.1:\$TEST_NGINX_SIMLATE_PORT; }
    upstream upMC   { server 127.0.0.1:\$TEST_NGINX_SIMMC_PORT; }
    upstream upMM   { server 127.0.0.1:\$TEST_NGINX_SIMMM_PORT; }
    upstream upMix  { server 127.0.0.1:\$TEST_NGINX_SIMMC_PORT;
                      server 127.0.0.1:\$TEST_NGINX_SIMT_PORT; }
    upstream upQS   { server 127.0.0.1:\$TEST_NGINX_SIMQS_PORT; }
    upstream upT    { server 127.0.0.1:\$TEST_NGINX_SIMT_PORT; }
    upstream upLB   { server 127.0.0.1:\$TEST_NGINX_SIMF_PORT;
                      server 127.0.0.1:\$TEST_NGINX_SIMS_PORT; }
    upstream upK    { server 127.0.0.1:\$TEST_NGINX_SIMK1_PORT;
                      server 127.0.0.1:\$TEST_NGINX_SIMK2_PORT; }
    upstream upL0   { server 127.0.0.1:\$TEST_NGINX_SIML0_PORT; }
    upstream upR    { server 127.0.0.1:\$TEST_NGINX_SIMR_PORT; }

    server {
        listen 127.0.0.1:\@PORT\@ reuseport;
        flowscale_api_key off;
        add_header X-Worker \$pid always;
HTTP
    . deployment('late', 'upLate')
    . deployment('mc', 'upMC')
    . deployment('mm', 'upMM')
    . deployment('mix', 'upMix', 'flowscale_backend_depth 1')
    . deployment('qs', 'upQS', 'flowscale_backend_depth 1', 'flowscale_queue_size 2')
    . deployment('t', 'upT', 'flowscale_backend_depth 1')
    . deployment('lb', 'upLB', 'flowscale_backend_depth 1')
    . deployment('k', 'upK', 'flowscale_backend_depth 1')
    . deployment('lost', 'upL0', 'flowscale_retries 0')
    . deployment('list', 'upR')
    . deployment('r', 'upR')
    . "    }\n";

my $ng = FlowScale::Nginx->new(name => 'nginx (backends)', timeout => 15,
                               http => $HTTP,
                               allow_log => [qr/exited on signal 9/]);

# ---------------------------------------------------------------------------
# helpers

sub db_row {
    my ($id) = @_;
    my ($row) = psql("select json_build_object('status', status, 'backend', backend, "
                     . "'error', error) from flowscale.runs where id = '$id'");
    return defined $row && length $row ? $J->decode($row) : {};
}

sub poll_db {
    my ($id, $want, $secs) = @_;
    my $deadline = time + ($secs // 10);
    my $row;
    while (1) {
        $row = eval { db_row($id) } // {};
        return $row if ($row->{status} // '') eq $want || time > $deadline;
        sleep 0.1;
    }
}

sub poll_run {
    my ($loc, $id, $secs) = @_;
    my $deadline = time + ($secs // 15);
    my $res;
    while (1) {
        $res = $ng->get("$loc/runs/$id");
        return $res if ($res->{json}{status} // '') =~ /^(?:succeeded|failed|canceled)$/
                       || time > $deadline;
        sleep 0.05;
    }
}

# poll several runs with one deadline: their statuses
sub poll_all {
    my ($loc, $ids, $secs) = @_;
    my $deadline = time + ($secs // 15);
    my %st;
    while (1) {
        for my $id (grep { ($st{$_} // '') !~ /^(?:succeeded|failed|canceled)$/ } @$ids) {
            $st{$id} = $ng->get("$loc/runs/$id")->{json}{status} // '';
        }
        last if !grep({ $st{$_} !~ /^(?:succeeded|failed|canceled)$/ } @$ids)
                || time > $deadline;
        sleep 0.1;
    }
    return map { $st{$_} } @$ids;
}

sub sim_events {
    my ($name, $kind) = @_;
    my $res = HTTP::Tiny->new(timeout => 10)
              ->get(sim_url($name) . "/sim/log?kind=$kind");
    die "sim log of $name: $res->{status}" unless $res->{success};
    return @{ $J->decode($res->{content}) };
}

sub accepted_prompts {      # the prompts a simulator accepted (status 200)
    my ($name) = @_;
    return grep { $_->{status} == 200 } sim_events($name, 'prompt');
}

# which of these simulators has logged `kind` for the id
sub wait_sim_any {
    my ($names, $kind, $id, $secs) = @_;
    my $deadline = time + ($secs // 10);
    while (time < $deadline) {
        for my $n (@$names) {
            my @e = grep { ($_->{prompt_id} // '') eq $id } sim_events($n, $kind);
            return $n if @e;
        }
        sleep 0.05;
    }
    return undef;
}

sub post_run {
    my ($loc, $inputs, %o) = @_;
    return $ng->post_json($loc, { inputs => $inputs }, %o);
}

sub descriptor {
    return $ng->get($_[0])->{json} // {};
}

sub poll_state {
    my ($loc, $want, $secs) = @_;
    my $deadline = time + ($secs // 10);
    my $d;
    while (1) {
        $d = descriptor($loc);
        return $d if ($d->{state} // '') eq $want || time > $deadline;
        sleep 0.1;
    }
}

sub is_problem {
    my ($res, $status, $slug, $name) = @_;
    is($res->{status}, $status, "$name: status $status")
        or diag("body: " . ($res->{content} // ''));
    like($res->{headers}{'content-type'} // '', qr{^application/problem\+json},
         "$name: application/problem+json");
    is(($res->{json} // {})->{type}, "urn:flowscale:problem:$slug", "$name: type")
        if defined $slug;
    return $res->{json} // {};
}

# the most runs a simulator held at once (accepted, not yet ended)
sub max_outstanding {
    my ($name) = @_;
    my @ev = sort { $a->[0] <=> $b->[0] || $a->[1] <=> $b->[1] }
             (map { [$_->{t}, +1] } accepted_prompts($name)),
             (map { [$_->{t}, -1] } sim_events($name, 'run_end'));
    my ($n, $max) = (0, 0);
    for my $e (@ev) {
        $n += $e->[1];
        $max = $n if $n > $max;
    }
    return $max;
}

sub count_by_id {
    my ($names, $kind) = @_;
    my %n;
    for my $s (@$names) {
        my @e = $kind eq 'prompt' ? accepted_prompts($s) : sim_events($s, $kind);
        $n{ $_->{prompt_id} // '' }++ for @e;
    }
    return \%n;
}

# ---------------------------------------------------------------------------

subtest 'states: deploying while no backend was read, then ready; the run waits' => sub {
    my $d = descriptor('/v1/late');
    is($d->{state}, 'deploying', 'GET L: deploying (its backend is not up yet)')
        or diag explain $d;
    my $res = post_run('/v1/late', { prompt => 'early ' . rand, steps => 2 });
    is($res->{status}, 202, 'POST L while deploying: 202') or diag $res->{content};
    my $id = $res->{json}{id};
    is($res->{json}{status}, 'queued', 'the run waits');
    simulator('simLate', %opt, port => $late_port);
    $d = poll_state('/v1/late', 'ready', 10);
    is($d->{state}, 'ready', 'GET L: ready once the backend answers');
    ok(!defined $d->{reason}, 'no reason when ready');
    is(poll_run('/v1/late', $id, 15)->{json}{status}, 'succeeded',
       'the run that waited succeeds');
};

subtest 'states: failed with the reason; POST L is 503 saying why' => sub {
    my $d = poll_state('/v1/mc', 'failed', 8);
    is($d->{state}, 'failed', 'missing node class: failed');
    like($d->{reason} // '', qr/node class KSampler/, 'the reason names the class')
        or diag explain $d;
    my $p = is_problem(post_run('/v1/mc', { prompt => 'x' }), 503, 'no-capable-backend',
                       'POST L (missing class)');
    like($p->{detail} // '', qr/KSampler/, '503 detail names the class');

    $d = poll_state('/v1/mm', 'failed', 8);
    is($d->{state}, 'failed', 'missing model: failed');
    like($d->{reason} // '', qr/sd15\.safetensors/, 'the reason names the model')
        or diag explain $d;
    like($d->{reason} // '', qr/model/, 'and says it is a model');
    $p = is_problem(post_run('/v1/mm', { prompt => 'x' }), 503, 'no-capable-backend',
                    'POST L (missing model)');
    like($p->{detail} // '', qr/sd15\.safetensors/, '503 detail names the model');
    my $n = psql("select count(*) from flowscale.runs where deployment in ('mc', 'mm')");
    is($n, 0, 'nothing recorded for refused runs');
    is(scalar(accepted_prompts('simMC')) + scalar(accepted_prompts('simMM')), 0,
       'no prompt reached the incapable backends');
};

subtest 'a backend missing a class never gets the deployment\'s runs' => sub {
    my $d = poll_state('/v1/mix', 'ready', 8);
    is($d->{state}, 'ready', 'ready: one of its backends is capable');
    my @ids = map { post_run('/v1/mix', { prompt => "mix $_ " . rand, steps => 2 })->{json}{id} }
              1 .. 4;
    my @st = poll_all('/v1/mix', \@ids, 15);
    is(scalar(grep { $_ eq 'succeeded' } @st), 4, 'all 4 runs succeeded');
    is(scalar(grep { $_->{status} } sim_events('simMC', 'prompt')), 0,
       'the incapable backend got no prompt');
    my %on_t = map { $_->{prompt_id} => 1 } accepted_prompts('simT');
    is(scalar(grep { $on_t{$_ // ''} } @ids), 4, 'all ran on the capable one');
};

my @qs;
subtest 'flowscale_queue_size 2: the third waiting run is 429 with Retry-After' => sub {
    sim_faults('simQS', { slow => 2 });
    for my $i (1 .. 3) {
        my $res = post_run('/v1/qs', { prompt => "qs $i " . rand, steps => 2 });
        is($res->{status}, 202, "run $i: 202") or diag $res->{content};
        push @qs, $res->{json}{id};
    }
    my @pos = map { $ng->get("/v1/qs/runs/$_")->{json}{queue_position} } @qs;
    is_deeply(\@pos, [undef, 1, 2], 'one on the backend, two waiting at positions 1, 2')
        or diag explain \@pos;
    my $tag = 'refused ' . rand;
    my $res = post_run('/v1/qs', { prompt => $tag, steps => 2 });
    is_problem($res, 429, undef, 'the third waiting run');
    like($res->{headers}{'retry-after'} // '', qr/^[1-9]\d*$/, 'Retry-After: seconds');
    is(psql("select count(*) from flowscale.runs where inputs->>'prompt' = '$tag'"), 0,
       'the refused run is not recorded');

    # the queue is per deployment: another one still takes runs, and its
    # positions count only its own queue
    sim_faults('simT', { slow => 1 });
    my $t1 = post_run('/v1/t', { prompt => 't1 ' . rand, steps => 2 });
    my $t2 = post_run('/v1/t', { prompt => 't2 ' . rand, steps => 2 });
    is($t2->{status}, 202, 'another deployment still accepts runs');
    is($t2->{json}{status}, 'queued', 'its second run waits');
    is($ng->get("/v1/t/runs/$t2->{json}{id}")->{json}{queue_position}, 1,
       'at position 1 of its own queue (the other deployment\'s waiting runs are not ahead)');
    sim_faults('simQS', { slow => 0 });
    sim_faults('simT', { slow => 0 });
    is(poll_run('/v1/qs', $_, 15)->{json}{status}, 'succeeded', "qs run succeeded") for @qs;
    is(poll_run('/v1/t', $_->{json}{id}, 10)->{json}{status}, 'succeeded', 't run succeeded')
        for $t1, $t2;
    $res = post_run('/v1/qs', { prompt => 'after ' . rand, steps => 2 },
                    headers => { Prefer => 'wait=10' });
    is($res->{status}, 200, 'the drained queue takes runs again');
};

subtest 'late binding: runs go to whichever backend frees first, 1 at a time' => sub {
    sim_faults('simS', { slow => 2.5 });
    sim_faults('simF', { slow => 0.2 });
    my @ids;
    for my $i (1 .. 6) {
        my $res = post_run('/v1/lb', { prompt => "lb $i " . rand, steps => 2 });
        is($res->{status}, 202, "run $i accepted");
        push @ids, $res->{json}{id};
    }
    my @st = poll_all('/v1/lb', \@ids, 15);
    sim_faults($_, { slow => 0 }) for qw(simS simF);
    is(scalar(grep { $_ eq 'succeeded' } @st), 6, 'all 6 succeeded');
    my %mine = map { $_ => 1 } @ids;
    my $on_s = grep { $mine{ $_->{prompt_id} } } accepted_prompts('simS');
    my $on_f = grep { $mine{ $_->{prompt_id} } } accepted_prompts('simF');
    is($on_s + $on_f, 6, 'each run reached one backend once');
    ok($on_s <= 2 && $on_f >= 4,
       "the fast backend took the most ($on_f fast, $on_s slow): not bound early");
    is(max_outstanding('simS'), 1, 'the slow backend never held more than 1');
    is(max_outstanding('simF'), 1, 'the fast backend never held more than 1');
};

subtest 'GET L/runs: keyset pages, newest first, status filter, bad arguments' => sub {
    my @ids;
    for my $i (1 .. 5) {
        my $res = post_run('/v1/list', { prompt => "list $i", steps => 2 },
                           headers => { Prefer => 'wait=10' });
        is($res->{json}{status}, 'succeeded', "run $i");
        push @ids, $res->{json}{id};
    }
    sleep 0.3;
    my @want = reverse @ids;
    my (@got, @links);
    my $res = $ng->get('/v1/list/runs?limit=2');
    is($res->{status}, 200, 'page 1: 200') or diag $res->{content};
    like($res->{headers}{'content-type'} // '', qr{^application/json}, 'JSON');
    for my $page (1 .. 3) {
        my $runs = $res->{json}{runs} // [];
        push @got, map { $_->{id} } @$runs;
        my $cursor = $res->{json}{next_cursor};
        my $link = $res->{headers}{link};
        if ($page < 3) {
            is(scalar @$runs, 2, "page $page: 2 runs");
            is($cursor, $runs->[-1]{id}, "page $page: next_cursor is its last id");
            is($link, "</v1/list/runs?before=$cursor&limit=2>; rel=\"next\"",
               "page $page: Link rel=next");
            $link =~ /<([^>]+)>/;
            $res = $ng->get($1 // '/v1/list/runs?limit=2&before=bad');
            is($res->{status}, 200, 'next page: 200');
        } else {
            is(scalar @$runs, 1, 'page 3: the last run');
            ok(!defined $cursor, 'page 3: next_cursor null');
            ok(!defined $link, 'page 3: no Link');
        }
    }
    is_deeply(\@got, \@want, 'the 5 runs, newest first, each once');
    my $first = ($ng->get('/v1/list/runs?limit=1')->{json}{runs} // [])->[0] // {};
    is($first->{status}, 'succeeded', 'a listed run has its status');
    is($first->{deployment}, 'list', 'and its deployment');

    $res = $ng->get('/v1/list/runs?status=succeeded&limit=10');
    is(scalar @{ $res->{json}{runs} // [] }, 5, 'status=succeeded: 5');
    $res = $ng->get('/v1/list/runs?status=failed');
    is_deeply($res->{json}{runs}, [], 'status=failed: none yet');
    my $fid = '01900000-3333-7444-8555-666677778888';
    psql(<<"SQL");
insert into flowscale.runs (id, project, deployment, version, status, inputs, prompt,
    error, created_at, finished_at)
values ('$fid', 'default', 'list', 'deadbeef', 'failed', '{"prompt": "old"}', '{}',
    '{"type": "execution_error", "message": "x"}', now() - interval '1 day', now())
SQL
    $res = $ng->get('/v1/list/runs?status=failed');
    is_deeply([ map { $_->{id} } @{ $res->{json}{runs} // [] } ], [$fid],
              'status=failed: exactly the failed run');
    $res = $ng->get('/v1/list/runs?limit=10');
    is_deeply([ map { $_->{id} } @{ $res->{json}{runs} // [] } ], [ @want, $fid ],
              'no filter: all 6, the old one last');
    is(scalar(grep { $_->{deployment} ne 'list' } @{ $res->{json}{runs} // [] }), 0,
       'only this deployment\'s runs');

    for my $q ('limit=0', 'limit=201', 'limit=abc', 'limit=-1', 'status=done',
               'before=not-a-cursor') {
        is_problem($ng->get("/v1/list/runs?$q"), 400, undef, "?$q");
    }
};

subtest 'a backend killed mid-run: the run finishes on the other; the dead one comes back' => sub {
    sim_faults($_, { slow => 2 }) for qw(simK1 simK2);
    my $res = post_run('/v1/k', { prompt => 'survivor ' . rand, steps => 2 });
    is($res->{status}, 202, 'accepted') or return;
    my $id = $res->{json}{id};
    my $dead = wait_sim_any([qw(simK1 simK2)], 'run_start', $id, 5);
    ok($dead, 'running on a backend') or return;
    my $other = $dead eq 'simK1' ? 'simK2' : 'simK1';
    sim_faults($other, { slow => 0.3 });
    stop_simulator($dead);
    my $t = time;
    $res = poll_run('/v1/k', $id, 12);
    is($res->{json}{status}, 'succeeded', sprintf('the run succeeded (%.1fs after the kill)',
                                                  time - $t))
        or diag $res->{content}, "\nprompts of $other: ",
                $J->encode([ map { [$_->{prompt_id}, $_->{status}] }
                             sim_events($other, 'prompt') ]);
    my $row = poll_db($id, 'succeeded');
    is($row->{status}, 'succeeded', 'PostgreSQL: succeeded');
    is($row->{backend}, '127.0.0.1:' . port_of($other), 'PostgreSQL: on the other backend');
    my ($end) = grep { $_->{prompt_id} eq $id } sim_events($other, 'run_end');
    is($end && $end->{status}, 'success', 'the other backend ran it to the end');

    # the dead backend comes back and is used again
    simulator($dead, %opt);         # same name, same port
    sim_faults($other, { slow => 1 });
    my $back = 0;
    my $deadline = time + 15;
    while (!$back && time < $deadline) {
        my @ids = map { post_run('/v1/k', { prompt => "again $_ " . rand, steps => 2 })
                        ->{json}{id} // '' } 1 .. 2;
        poll_all('/v1/k', \@ids, 8);
        my %on = map { $_->{prompt_id} => 1 } accepted_prompts($dead);
        $back = grep { $on{$_} } @ids;
    }
    sim_faults($other, { slow => 0 });
    ok($back, 'the restarted backend takes runs again');
};

subtest 'flowscale_retries 0, no other backend: backend_lost; it comes back' => sub {
    sim_faults('simL0', { die_mid_run => JSON::PP::true });
    my $res = post_run('/v1/lost', { prompt => 'lost ' . rand, steps => 2 });
    is($res->{status}, 202, 'accepted') or return;
    my $id = $res->{json}{id};
    my $t = time;
    $res = poll_run('/v1/lost', $id, 20);
    is($res->{json}{status}, 'failed', sprintf('failed (%.1fs)', time - $t))
        or diag $res->{content};
    is($res->{json}{error}{type}, 'backend_lost', 'error.type backend_lost');
    my $row = poll_db($id, 'failed');
    is($row->{error}{type}, 'backend_lost', 'PostgreSQL: backend_lost');

    stop_simulator('simL0');            # reap the process that died
    simulator('simL0', %opt);
    $res = undef;
    my $deadline = time + 15;
    while (time < $deadline) {
        $res = post_run('/v1/lost', { prompt => 'back ' . rand, steps => 2 },
                        headers => { Prefer => 'wait=5' });
        last if ($res->{json}{status} // '') eq 'succeeded';
        sleep 0.5;
    }
    is($res && $res->{json}{status}, 'succeeded', 'the backend is used again once it is back');
};

subtest 'kill -9 of the leader while runs wait for a backend: the next leader dispatches them' => sub {
    # only the leader probes, so only a leader can see this backend come back
    stop_simulator('simL0');
    my $mark = $ng->log_mark;
    my $deadline = time + 5;
    sleep 0.1 while time < $deadline
                    && $ng->error_log($mark) !~ /backend 127\.0\.0\.1:\d+ is down/;
    my @ids = map { post_run('/v1/lost', { prompt => "leader $_ " . rand, steps => 2 })
                    ->{json}{id} // '' } 1 .. 3;
    my @st = map { $ng->get("/v1/lost/runs/$_")->{json}{status} // '' } @ids;
    is_deeply(\@st, [ ('queued') x 3 ], 'the runs wait at the gateway (no backend up)');
    my @leaders = $ng->error_log =~ /\[\w+\] (\d+)#\d+: flowscale: backend \S+ is (?:up|down)/g;
    my $leader = $leaders[-1] // 0;
    my @workers = $ng->workers;
    ok(grep({ $_ == $leader } @workers), "the leader is worker $leader (it probes)")
        or diag "workers: @workers";
    ok(kill('KILL', $leader), 'kill -9 the leader');
    sleep 0.3;
    simulator('simL0', %opt);       # the backend comes back after the leader died
    @st = poll_all('/v1/lost', \@ids, 15);
    is_deeply(\@st, [ ('succeeded') x 3 ], 'every waiting run was dispatched and succeeded');
    my $n = count_by_id(['simL0'], 'prompt');
    is_deeply([ map { $n->{$_} // 0 } @ids ], [ (1) x 3 ], 'each prompt submitted once');
    my @after = $ng->error_log($mark) =~ /\[\w+\] (\d+)#\d+: flowscale: backend \S+ is up/g;
    ok(@after && $after[-1] != $leader, "another worker leads now ($after[-1])");
};

subtest 'kill -9 of the worker following a running run: it and the waiting runs finish' => sub {
    sim_faults('simT', { slow => 1.5 });
    my $res = post_run('/v1/t', { prompt => 'followed ' . rand, steps => 2 });
    my $follower = $res->{headers}{'x-worker'} // 0;
    my @ids = ($res->{json}{id} // '');
    ok(wait_sim_any(['simT'], 'run_start', $ids[0], 5), "running, followed by worker $follower");
    push @ids, map { post_run('/v1/t', { prompt => "behind $_ " . rand, steps => 2 })
                     ->{json}{id} // '' } 1 .. 3;
    ok(kill('KILL', $follower), "kill -9 worker $follower");
    sim_faults('simT', { slow => 0.3 });
    my @st = poll_all('/v1/t', \@ids, 15);
    sim_faults('simT', { slow => 0 });
    is_deeply(\@st, [ ('succeeded') x 4 ], 'all 4 runs succeeded') or diag "@st";
    my @db = map { poll_db($_, 'succeeded', 1)->{status} // '' } @ids;
    is_deeply(\@db, [ ('succeeded') x 4 ], 'PostgreSQL: all 4 succeeded');
    my $n = count_by_id(['simT'], 'prompt');
    is_deeply([ map { $n->{$_} // 0 } @ids ], [ (1) x 4 ], 'each prompt submitted once');
    my $s = count_by_id(['simT'], 'run_start');
    is_deeply([ map { $s->{$_} // 0 } @ids ], [ (1) x 4 ], 'each run executed once');
};

subtest 'nginx killed (SIGKILL) with runs waiting and running, started again: nothing lost' => sub {
    sim_faults('simR', { slow => 1.2 });
    my @ids = map { post_run('/v1/r', { prompt => "restart $_ " . rand, steps => 2 })
                    ->{json}{id} // '' } 1 .. 5;
    ok(wait_sim_any(['simR'], 'run_start', $ids[0], 5), 'the first run is running');
    my @rows = psql("select status from flowscale.runs where id in ("
                    . join(',', map { "'$_'" } @ids) . ") order by id");
    is(scalar(grep { /^(?:queued|running)$/ } @rows), 5, 'none finished before the kill')
        or diag "@rows";
    my @w = $ng->workers;
    my $master = $ng->pid;
    kill 'KILL', $master, @w;
    $ng->stop(quiet => 1);          # reaps the master
    my $deadline = time + 5;
    sleep 0.05 while time < $deadline && grep { kill 0, $_ } @w;
    ok(!grep({ kill 0, $_ } @w), 'master and workers are gone');
    sleep 1.5;                      # the backend goes on without nginx
    ok(eval { $ng->start; 1 }, 'nginx starts again') or return diag $@;
    sim_faults('simR', { slow => 0.3 });
    my @st = poll_all('/v1/r', \@ids, 30);
    sim_faults('simR', { slow => 0 });
    is_deeply(\@st, [ ('succeeded') x 5 ], 'GET: every run succeeded');
    my @db = map { poll_db($_, 'succeeded', 2)->{status} // '' } @ids;
    is_deeply(\@db, [ ('succeeded') x 5 ], 'PostgreSQL: every run succeeded');
    my $n = count_by_id(['simR'], 'prompt');
    is_deeply([ map { $n->{$_} // 0 } @ids ], [ (1) x 5 ], 'each prompt submitted once');
    my $s = count_by_id(['simR'], 'run_start');
    is_deeply([ map { $s->{$_} // 0 } @ids ], [ (1) x 5 ], 'each run executed once');
    my $res = post_run('/v1/r', { prompt => 'after restart', steps => 2 },
                       headers => { Prefer => 'wait=10' });
    is($res->{json}{status}, 'succeeded', 'new runs work after the restart');
};

$ng->stop;
diag(sprintf 'e2e backends.t took %.1fs', time - $T0);
done_testing;
