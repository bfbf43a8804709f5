# End-to-end tests of issue 10: three nginx fronts on different ports
# share one PostgreSQL and two simulated ComfyUI backends.  Any front
# answers for any run (GET, events, outputs); a run is canceled through
# another front, queued or running; flowscale_backend_depth holds across
# fronts; key revocation and deployment stop reach every front within a
# second; and a front killed with SIGKILL while its runs are queued and
# running: another takes them over once its lease runs out, and every run
# finishes once, none lost, none run twice (the runs table and the
# simulators' logs say so).
#
#   TEST_NGINX_LOAD_MODULES=$PWD/build/ngx_http_flowscale_module.so \
#       prove -It/lib t/e2e/cluster.t

use strict;
use warnings;

use Test::More;
use HTTP::Tiny;
use JSON::PP ();
use Time::HiRes qw(time sleep);

use FlowScale::Fixture qw(postgres psql simulator sim_faults sim_url
                          free_port);
use File::Temp ();
use POSIX ();
use FlowScale::Nginx;

plan skip_all => 'TEST_NGINX_LOAD_MODULES (the module .so) is not set'
    unless $ENV{TEST_NGINX_LOAD_MODULES};

my $T0 = time;
my $Root = $FlowScale::Nginx::Root;
my $WF = "$Root/conf/workflows";
my $J = JSON::PP->new->utf8->canonical->allow_nonref;

postgres();
psql("select flowscale.create_project('fleet')");
my $key = psql("select flowscale.create_api_key('fleet', 'cluster')");

simulator($_, step_time => 0.02) for qw(simA simB simC);

# a webhook receiver: every body it gets, a line in $Hooks
my $Hooks = File::Temp->new(SUFFIX => '.log')->filename;
$ENV{TEST_NGINX_HOOK_PORT} = my $hook_port = free_port();
my $receiver = fork // die "fork: $!";
if ($receiver == 0) {
    exec '/usr/bin/python3', '-c', <<'PY', $hook_port, $Hooks;
import sys, http.server
port, log = int(sys.argv[1]), sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get('Content-Length') or 0))
        with open(log, 'ab') as f:
            f.write(body.replace(b'\n', b' ') + b'\n')
        self.send_response(200)
        self.send_header('Content-Length', '0')
        self.end_headers()
    def log_message(self, *a):
        pass
http.server.HTTPServer(('127.0.0.1', port), H).serve_forever()
PY
    POSIX::_exit(127);
}
END {
    local $?;
    if ($receiver) { kill 'TERM', $receiver; waitpid $receiver, 0 }
}

sub hooks {
    open my $in, '<', $Hooks or return ();
    return map { $J->decode($_) } grep { /\S/ } <$in>;
}

my $HTTP = <<"HTTP";
    flowscale_database "\$TEST_NGINX_PG_DSN" pool=4;
    flowscale_zone flowscale:16m;
    flowscale_health_interval 1s;
    flowscale_lease 3s;

    upstream gpus { server 127.0.0.1:\$TEST_NGINX_SIMA_PORT;
                    server 127.0.0.1:\$TEST_NGINX_SIMB_PORT; }
    upstream one  { server 127.0.0.1:\$TEST_NGINX_SIMC_PORT; }

    server {
        listen 127.0.0.1:\@PORT\@;
        flowscale_project fleet;

        location /v1/c {
            flowscale_deployment c;
            flowscale_workflow   $WF/txt2img.json;
            flowscale_input      prompt  6.text   required;
            flowscale_input      seed    3.seed   default=random;
            flowscale_input      steps   3.steps  min=1 max=50;
            flowscale_output     result  9;
            flowscale_backend    gpus;
            flowscale_backend_depth 1;
            flowscale_app        public;
            flowscale_webhook_allow 127.0.0.1;
        }

        location /v1/d {
            flowscale_deployment d;
            flowscale_workflow   $WF/txt2img.json;
            flowscale_input      prompt  6.text   required;
            flowscale_input      steps   3.steps  min=1 max=50;
            flowscale_output     result  9;
            flowscale_backend    one;
            flowscale_backend_depth 2;
        }

        location = /flowscale/status { flowscale_status; }
        location = /metrics { flowscale_metrics; }
    }
HTTP

my @F = map {
    FlowScale::Nginx->new(name => "front $_", timeout => 15, http => $HTTP,
                          allow_log => [qr/exited on signal 9/])
} 1 .. 3;

my %auth = (headers => { Authorization => "Bearer $key" });

# ---------------------------------------------------------------------------
# helpers

sub post_run {
    my ($f, $inputs, %o) = @_;
    my %h = (%{ $auth{headers} }, %{ $o{headers} // {} });
    return $f->post_json('/v1/c', { inputs => $inputs }, headers => \%h);
}

sub get_run { my ($f, $id) = @_; return $f->get("/v1/c/runs/$id", %auth) }

sub finished { return ($_[0] // '') =~ /^(?:succeeded|failed|canceled)$/ }

sub poll_all {
    my ($f, $ids, $secs) = @_;
    my $deadline = time + ($secs // 20);
    my %st;
    while (1) {
        for my $id (grep { !finished($st{$_}) } @$ids) {
            $st{$id} = get_run($f, $id)->{json}{status} // '';
        }
        last if !grep({ !finished($st{$_}) } @$ids) || time > $deadline;
        sleep 0.1;
    }
    return map { $st{$_} } @$ids;
}

sub wait_for {
    my ($secs, $cond) = @_;
    my $deadline = time + $secs;
    while (time < $deadline) {
        return 1 if $cond->();
        sleep 0.05;
    }
    return $cond->();
}

sub sim_events {
    my ($name, $kind) = @_;
    my $res = HTTP::Tiny->new(timeout => 10)
              ->get(sim_url($name) . "/sim/log?kind=$kind");
    die "sim log of $name: $res->{status}" unless $res->{success};
    return @{ $J->decode($res->{content}) };
}

sub count_by_id {
    my ($kind) = @_;
    my %n;
    for my $s (qw(simA simB)) {
        my @e = grep { $kind ne 'prompt' || $_->{status} == 200 } sim_events($s, $kind);
        $n{ $_->{prompt_id} // '' }++ for @e;
    }
    return \%n;
}

# the most of these runs a simulator held at once (accepted, not yet ended)
sub max_outstanding {
    my ($name, $ids) = @_;
    my %ours = map { $_ => 1 } @$ids;
    my @ev = sort { $a->[0] <=> $b->[0] || $a->[1] <=> $b->[1] }
             (map { [$_->{t}, +1] }
              grep { $_->{status} == 200 && $ours{ $_->{prompt_id} // '' } }
              sim_events($name, 'prompt')),
             (map { [$_->{t}, -1] } grep { $ours{ $_->{prompt_id} // '' } }
              sim_events($name, 'run_end'));
    my ($n, $max) = (0, 0);
    for my $e (@ev) {
        $n += $e->[1];
        $max = $n if $n > $max;
    }
    return $max;
}

sub on_sim {        # the simulator a run was submitted to, if any yet
    my ($id) = @_;
    for my $s (qw(simA simB)) {
        return $s if grep { ($_->{prompt_id} // '') eq $id } sim_events($s, 'run_start');
    }
    return undef;
}

sub db_status {
    my ($id) = @_;
    return scalar psql("select status from flowscale.runs where id = '$id'");
}

sub slow { sim_faults($_, { slow => $_[0] }) for qw(simA simB) }

# ---------------------------------------------------------------------------

subtest 'every front holds a lease in flowscale.fronts' => sub {
    ok(wait_for(10, sub {
        psql("select count(*) from flowscale.fronts where lease_until > now()") == 3
    }), 'three fronts hold a lease');
    my @names = psql("select name from flowscale.fronts order by name");
    is(scalar(@names), 3, 'one row each');
    like($names[0], qr{:/.+/conf/nginx\.conf$}, 'named by host and configuration file');
    for my $f (@F) {
        ok(wait_for(10, sub { ($f->get('/v1/c')->{json}{state} // '') eq 'ready' }),
           $f->{name} . ': deployment ready');
    }
    my %ids = map { $_ => 1 } psql("select id from flowscale.fronts");
    my @st;
    wait_for(3, sub {
        @st = map { $_->get('/flowscale/status')->{json}{front} // {} } @F;
        return 3 == grep { ($_->{fronts} // 0) == 3 } @st;
    });
    is(scalar(grep { $ids{ $_->{id} // '' } } @st), 3, 'each status page names its own front');
    is(scalar(grep { ($_->{fronts} // 0) == 3 } @st), 3, 'and counts three');
    like($F[1]->get('/metrics')->{content} // '', qr/^flowscale_fronts 3$/m,
         'metrics: flowscale_fronts 3');
};

subtest 'submit on one front; read run, events and output on the others' => sub {
    my $res = post_run($F[0], { prompt => 'a cat ' . rand, steps => 3 });
    is($res->{status}, 202, 'front 1 accepts') or return diag $res->{content};
    my $id = $res->{json}{id};
    my ($st) = poll_all($F[1], [$id]);
    is($st, 'succeeded', 'front 2 sees it succeed');
    my $run = get_run($F[2], $id)->{json};
    is($run->{status}, 'succeeded', 'front 3 too');
    is($run->{inputs}{prompt}, $res->{json}{inputs}{prompt}, 'with its inputs');
    my $url = $run->{outputs}{result}[0]{url} // '';
    like($url, qr{/v1/c/runs/$id/outputs/result/0$}, 'and its output URL');
    for my $i (1, 2) {
        my $out = $F[$i]->get("/v1/c/runs/$id/outputs/result/0", %auth);
        is($out->{status}, 200, "front " . ($i + 1) . ": output 200");
        is($out->{headers}{'content-type'}, 'image/png', 'image/png');
        is(substr($out->{content} // '', 0, 8), "\x89PNG\r\n\x1a\n", 'the PNG bytes');
    }
    my $ev = $F[2]->get("/v1/c/runs/$id/events", %auth);
    like($ev->{content} // '', qr/^event: succeeded$/m, 'events on front 3: succeeded');
    my $gf = $F[1]->get("/v1/c/app/gradio_api/file=$id/result/0/out.png");
    is($gf->{status}, 200, "the app's file= route on front 2");
    is(substr($gf->{content} // '', 0, 8), "\x89PNG\r\n\x1a\n", '... the PNG bytes');
    is($F[1]->get("/v1/c/runs/$id/outputs/result/7", %auth)->{status}, 404,
       'a missing output is 404 on another front');
    is(get_run($F[1], '0193a4c2-0000-7000-8000-000000000000')->{status}, 404,
       'an unknown run is 404');
};

subtest 'an event stream on another front follows the run to its end' => sub {
    slow(3);
    my $res = post_run($F[0], { prompt => 'stream ' . rand, steps => 10 });
    my $id = $res->{json}{id} // '';
    my $t0 = time;
    ok(wait_for(5, sub { (get_run($F[2], $id)->{json}{progress}{value} // 0) > 0 }),
       'GET on front 3 shows its progress while it runs');
    my $ev = $F[1]->get("/v1/c/runs/$id/events", %auth);
    is($ev->{status}, 200, 'front 2: 200');
    like($ev->{headers}{'content-type'} // '', qr{^text/event-stream}, 'text/event-stream');
    my @names = ($ev->{content} // '') =~ /^event: (\w+)$/mg;
    ok(scalar(grep { $_ eq 'started' } @names), 'a started event') or diag "@names";
    my ($p) = ($ev->{content} // '') =~ /event: progress\ndata: (.*)\n/;
    is(eval { $J->decode($p)->{max} }, 10, 'progress events, out of 10 steps')
        or diag $ev->{content};
    is($names[-1], 'succeeded', 'and the final event');
    my ($data) = ($ev->{content} // '') =~ /event: succeeded\ndata: (.*)\n/;
    is(eval { $J->decode($data)->{id} }, $id, 'carrying the run');
    ok(time - $t0 > 0.5, sprintf('the stream stayed open while it ran (%.1fs)', time - $t0));
    slow(0);
};

subtest 'cancel through another front: a running run and a queued one' => sub {
    slow(3);
    my @ids = map { post_run($F[0], { prompt => "cancel $_ " . rand, steps => 2 })
                    ->{json}{id} // '' } 1 .. 3;
    ok(wait_for(5, sub { defined on_sim($ids[0]) && defined on_sim($ids[1]) }),
       'two runs are running (one per backend)');
    is(get_run($F[0], $ids[2])->{json}{status}, 'queued', 'the third waits');

    my $tq = time;
    my $del = $F[2]->request('DELETE', "/v1/c/runs/$ids[2]", %auth);
    ok(time - $tq < 1, 'at once');
    is($del->{status}, 200, 'DELETE of the queued run on front 3: 200');
    is($del->{json}{status}, 'canceled', 'canceled');
    ok(wait_for(2, sub { (get_run($F[0], $ids[2])->{json}{status} // '') eq 'canceled' }),
       'front 1, which had it queued, says canceled');
    my $ev = $F[0]->get("/v1/c/runs/$ids[2]/events", %auth);
    like($ev->{content} // '', qr/^event: canceled$/m, 'its event stream ended canceled');

    my $t0 = time;
    $del = $F[1]->request('DELETE', "/v1/c/runs/$ids[0]", %auth);
    is($del->{status}, 200, 'DELETE of the running run on front 2: 200')
        or diag $del->{content};
    is($del->{json}{status}, 'canceled', 'canceled');
    ok(time - $t0 < 3, sprintf('before the run would have ended (%.1fs)', time - $t0));
    is(db_status($ids[0]), 'canceled', 'PostgreSQL: canceled');
    my $sim = on_sim($ids[0]) // 'simA';
    ok(wait_for(2, sub { scalar(grep { ($_->{prompt_id} // '') eq $ids[0] }
                                sim_events($sim, 'interrupt'),
                                sim_events($sim, 'delete')) }),
       'the backend was told to stop it');
    slow(0);
    my ($st) = poll_all($F[0], [$ids[1]]);
    is($st, 'succeeded', 'the other running run finished');
    ok(!defined on_sim($ids[2]), 'the canceled queued run never reached a backend');
    my $del2 = $F[1]->request('DELETE', "/v1/c/runs/$ids[1]", %auth);
    is($del2->{status}, 409, 'canceling a finished run on another front: 409');
};

subtest 'flowscale_backend_depth 1 holds across the three fronts' => sub {
    slow(0.4);
    my @ids;
    for my $i (0 .. 8) {
        my $res = post_run($F[$i % 3], { prompt => "depth $i " . rand, steps => 2 });
        push @ids, $res->{json}{id} // '';
    }
    my @st = poll_all($F[1], \@ids, 40);
    is_deeply(\@st, [ ('succeeded') x 9 ], 'all nine succeeded');
    is(max_outstanding('simA', \@ids), 1, 'backend A never held two runs');
    is(max_outstanding('simB', \@ids), 1, 'backend B never held two runs');
    my $n = count_by_id('prompt');
    is_deeply([ map { $n->{$_} // 0 } @ids ], [ (1) x 9 ], 'each prompt submitted once');
    slow(0);
};

subtest 'key revocation and deployment stop reach every front within a second' => sub {
    my $k2 = psql("select flowscale.create_api_key('fleet', 'short-lived')");
    my %h = (headers => { 'X-API-Key' => $k2 });
    is($_->get('/v1/c/runs', %h)->{status}, 200, "$_->{name}: the key works (cached now)")
        for @F;
    my ($kid) = psql("select key_id from flowscale.api_keys where label = 'short-lived'");
    psql("select flowscale.revoke_api_key('$kid')");
    my $t0 = time;
    ok(wait_for(1, sub { !grep { $_->get('/v1/c/runs', %h)->{status} == 200 } @F }),
       sprintf('refused on every front (%.2fs)', time - $t0));
    is($_->get('/v1/c/runs', %h)->{status}, 403, "$_->{name}: 403") for @F;

    slow(3);
    my @ids = map { post_run($F[0], { prompt => "stop $_ " . rand, steps => 2 })
                    ->{json}{id} // '' } 1 .. 3;
    ok(wait_for(5, sub { defined on_sim($ids[0]) && defined on_sim($ids[1]) }),
       'two runs are running, one waits');
    psql("select flowscale.stop_deployment('fleet', 'c')");
    $t0 = time;
    my $first = post_run($F[2], { prompt => 'at once' });
    is($first->{status}, 503, 'the very next POST is refused (PostgreSQL knows at once)');
    is($first->{json}{type}, 'urn:flowscale:problem:deployment-stopped', '... deployment-stopped');
    ok(wait_for(1.2, sub { !grep { post_run($_, { prompt => 'x' })->{status} != 503 } @F }),
       sprintf('stopped on every front (%.2fs)', time - $t0));
    my @st = poll_all($F[1], [ @ids[0, 1] ]);
    is_deeply(\@st, [ 'succeeded', 'succeeded' ], 'the running runs finish');
    sleep 0.5;
    is(get_run($F[2], $ids[2])->{json}{status}, 'queued',
       'the waiting run stays queued while stopped');
    ok(!defined on_sim($ids[2]), 'and reached no backend');
    slow(0);
    psql("select flowscale.start_deployment('fleet', 'c')");
    ok(wait_for(2, sub { !grep { post_run($_, { prompt => 'y', steps => 1 })->{status} != 202 } @F }),
       'started again on every front');
    @st = poll_all($F[1], [ $ids[2] ]);
    is($st[0], 'succeeded', 'the waiting run runs once started again');
};

subtest 'a front killed (SIGKILL) with runs queued and running: taken over, none lost or doubled' => sub {
    ok(wait_for(20, sub {
        psql("select count(*) from flowscale.runs where status in ('queued', 'running')") == 0
    }), 'no run left over from before');
    slow(6);
    sim_faults('simC', { slow => 4 });
    # on backend C: one running, one waiting in ComfyUI's own queue
    my @d = map { $F[0]->post_json('/v1/d', { inputs => { prompt => "d $_ " . rand,
                                                          steps => 2 } }, %auth)
                  ->{json}{id} // '' } 1 .. 2;
    my $hook = "http://127.0.0.1:$hook_port/done";
    my @ids = map { $F[0]->post_json('/v1/c',
                        { inputs => { prompt => "takeover $_ " . rand, steps => 2 },
                          webhook => $hook }, %auth)->{json}{id} // '' } 1 .. 5;
    ok(wait_for(5, sub { defined on_sim($ids[0]) && defined on_sim($ids[1]) }),
       'two run on the backends');
    my @rows = psql("select status from flowscale.runs where id in ("
                    . join(',', map { "'$_'" } @ids) . ")");
    is(scalar(grep { /^(?:queued|running)$/ } @rows), 5, 'none finished before the kill');

    my @w = $F[0]->workers;
    kill 'KILL', $F[0]->pid, @w;
    $F[0]->stop(quiet => 1);
    ok(wait_for(5, sub { !grep { kill 0, $_ } @w }), 'front 1 is gone');
    my $t0 = time;

    # a run the dead front had handed to a backend, still in its queue
    my $del = $F[2]->request('DELETE', "/v1/d/runs/$d[1]", %auth);
    is($del->{json}{status}, 'canceled', 'DELETE of a run waiting in a backend\'s queue: canceled');
    ok(wait_for(3, sub { grep { ($_->{prompt_id} // '') eq $d[1] }
                         sim_events('simC', 'delete') }),
       '... and removed from that queue');

    # a running run canceled while its front is dead: the front that
    # takes it over ends it
    $del = $F[1]->request('DELETE', "/v1/c/runs/$ids[1]", %auth,
                          timeout => 20);
    is($del->{status}, 200, 'DELETE of a running run of the dead front: 200')
        or diag $del->{content};
    is($del->{json}{status}, 'canceled', 'canceled once taken over');

    slow(0.5);
    sim_faults('simC', { slow => 0.5 });
    my $d0;
    wait_for(20, sub {
        $d0 = $F[2]->get("/v1/d/runs/$d[0]", %auth)->{json}{status} // '';
        return finished($d0);
    });
    is($d0, 'succeeded', 'the run before it on that backend succeeded');
    my @st = poll_all($F[1], \@ids, 40);
    is_deeply(\@st, [ 'succeeded', 'canceled', ('succeeded') x 3 ],
              'every other run succeeded (read on front 2)')
        or diag explain \@st;
    diag sprintf 'all finished %.1fs after the kill', time - $t0;
    is_deeply([ map { db_status($_) } @ids ],
              [ 'succeeded', 'canceled', ('succeeded') x 3 ],
              'PostgreSQL: the same');
    my ($owners) = psql("select count(distinct front) from flowscale.runs where id in ("
                        . join(',', map { "'$_'" } @ids) . ")");
    ok($owners >= 1, 'the runs now belong to a living front');
    is(psql("select count(*) from flowscale.fronts"), 2, 'the dead front left flowscale.fronts');
    my $n = count_by_id('prompt');
    is_deeply([ map { $n->{$_} // 0 } @ids ], [ (1) x 5 ], 'each prompt submitted once');
    my $s = count_by_id('run_start');
    is_deeply([ map { $s->{$_} // 0 } @ids ], [ (1) x 5 ], 'each run executed once');
    ok(!grep({ ($_->{prompt_id} // '') eq $d[1] } sim_events('simC', 'run_start')),
       'the canceled one never ran');
    my %want = map { $_ => 1 } @ids;
    ok(wait_for(10, sub { 5 == grep { $want{ $_->{id} // '' } } hooks() }),
       'every webhook was delivered, by the fronts that took the runs over');
    my %hooked = map { ($_->{id} // '') => $_->{status} } hooks();
    is_deeply([ map { $hooked{$_} // '' } @ids ],
              [ 'succeeded', 'canceled', ('succeeded') x 3 ],
              '... each with the final run');
    slow(0);
    my $res = post_run($F[2], { prompt => 'after', steps => 1 },
                       headers => { Prefer => 'wait=10' });
    is($res->{json}{status}, 'succeeded', 'the surviving fronts go on');
};

$_->stop for @F[1, 2];
diag(sprintf 'e2e cluster.t took %.1fs', time - $T0);
done_testing;
