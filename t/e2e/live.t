# End-to-end tests of issue 4 (live runs) through a real nginx, a real
# PostgreSQL and simulated ComfyUI backends: Server-Sent Events (started,
# progress, output, the final event carrying the run, queue positions,
# Last-Event-ID resume, a stream on a finished run, the heartbeat), DELETE
# (from the gateway queue, from ComfyUI's queue, interrupting a running run
# by its prompt_id only, 409 when finished), flowscale_run_timeout and
# Idempotency-Key.  Webhooks are in webhooks.t; a key replayed after 24 h is
# out of scope.
#
#   TEST_NGINX_LOAD_MODULES=$PWD/build/ngx_http_flowscale_module.so \
#       prove -It/lib t/e2e/live.t

use strict;
use warnings;

use Test::More;
use HTTP::Tiny;
use IO::Select;
use IO::Socket::INET;
use JSON::PP ();
use POSIX ();
use File::Temp ();
use Time::HiRes qw(time sleep);

use FlowScale::Fixture qw(postgres psql simulator sim_faults sim_url);
use FlowScale::Nginx;

plan skip_all => 'TEST_NGINX_LOAD_MODULES (the module .so) is not set'
    unless $ENV{TEST_NGINX_LOAD_MODULES};

my $T0 = time;
my $Root = $FlowScale::Nginx::Root;
my $WF = "$Root/conf/workflows";
my $J = JSON::PP->new->utf8->canonical->allow_nonref;

postgres();
# simA: events, cancel on the backend, idempotency (depth 2: one running,
#       one in ComfyUI's own queue)
# simQ: the gateway queue (depth 1)
# simH: every run hangs (run timeout)
# simB: every run hangs (a quiet stream for the heartbeat)
simulator('simA', step_time => 0.02);
simulator('simQ', step_time => 0.02);
simulator('simH', step_time => 0.02, hang => undef);
simulator('simB', step_time => 0.02, hang => undef);

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

my $HTTP = <<"HTTP" . deployment('a', 'upA') . deployment('q', 'upQ', 'flowscale_backend_depth 1')
    flowscale_database "\$TEST_NGINX_PG_DSN" pool=4;
    flowscale_zone flowscale:16m;

    upstream upA { server 127.0.0.1:\$TEST_NGINX_SIMA_PORT; }
    upstream upQ { server 127.0.0.1:\$TEST_NGINX_SIMQ_PORT; }
    upstream upH { server 127.0.0.1:\$TEST_NGINX_SIMH_PORT; }
    upstream upB { server 127.0.0.1:\$TEST_NGINX_SIMB_PORT; }

    server {
        listen 127.0.0.1:\@PORT\@ reuseport;
        flowscale_api_key off;
        flowscale_health_interval 1s;
HTTP
    . deployment('timeout', 'upH', 'flowscale_run_timeout 2s')
    . deployment('hb', 'upB') . "    }\n";

my $ng = FlowScale::Nginx->new(name => 'nginx (live)', timeout => 15,
                               http => $HTTP);

# ---------------------------------------------------------------------------
# helpers

sub db_status {
    my ($id) = @_;
    return scalar psql("select status from flowscale.runs where id = '$id'");
}

sub poll_db {
    my ($id, $want, $secs) = @_;
    my $deadline = time + ($secs // 10);
    my $st;
    while (1) {
        $st = eval { db_status($id) } // '';
        return $st if $st eq $want || time > $deadline;
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

# poll GET until the run's status matches
sub wait_status {
    my ($loc, $id, $re, $secs) = @_;
    my $deadline = time + ($secs // 10);
    my $res;
    while (1) {
        $res = $ng->get("$loc/runs/$id");
        return $res if ($res->{json}{status} // '') =~ $re || time > $deadline;
        sleep 0.03;
    }
}

sub sim_events {
    my ($name, $kind) = @_;
    my $res = HTTP::Tiny->new(timeout => 10)
              ->get(sim_url($name) . "/sim/log?kind=$kind");
    die "sim log of $name: $res->{status}" unless $res->{success};
    return @{ $J->decode($res->{content}) };
}

# wait until the simulator logged `kind` for this prompt id
sub wait_sim {
    my ($name, $kind, $id, $secs) = @_;
    my $deadline = time + ($secs // 10);
    while (time < $deadline) {
        my @e = grep { ($_->{prompt_id} // '') eq $id } sim_events($name, $kind);
        return $e[0] if @e;
        sleep 0.05;
    }
    return undef;
}

sub post_run {
    my ($loc, $inputs, %opt) = @_;
    return $ng->post_json($loc, { inputs => $inputs }, %opt);
}

sub is_problem {
    my ($res, $status, $slug, $name) = @_;
    is($res->{status}, $status, "$name: status $status")
        or diag("body: " . ($res->{content} // ''));
    like($res->{headers}{'content-type'} // '', qr{^application/problem\+json},
         "$name: application/problem+json");
    is(($res->{json} // {})->{type}, "urn:flowscale:problem:$slug", "$name: type")
        if defined $slug;
}

# ----- Server-Sent Events over a raw socket -----

sub sse_open {
    my ($path, %hdr) = @_;
    my $s = $ng->connect;
    my $h = join '', map { "$_: $hdr{$_}\r\n" } sort keys %hdr;
    print $s "GET $path HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n"
             . "Connection: close\r\n$h\r\n";
    return { sock => $s, raw => '', t0 => time, events => [], times => [] };
}

# parse what was read so far: headers, body (de-chunked), events, comments
sub sse_parse {
    my ($st) = @_;
    my $i = index $st->{raw}, "\r\n\r\n";
    return if $i < 0;
    my $head = substr $st->{raw}, 0, $i;
    my $rest = substr $st->{raw}, $i + 4;
    ($st->{status}) = $head =~ m{^HTTP/1\.\d (\d{3})};
    my %h;
    for my $l (split /\r\n/, $head) {
        $h{lc $1} = $2 if $l =~ /^([^:]+):\s*(.*)$/;
    }
    $st->{headers} = \%h;
    my $body = '';
    if (($h{'transfer-encoding'} // '') =~ /chunked/i) {
        $st->{last_chunk} = 0;
        while ($rest =~ /^([0-9a-fA-F]+)[^\r\n]*\r\n/) {
            my $n = hex $1;
            my $hl = length $&;
            last if length($rest) < $hl + $n + 2;
            if ($n == 0) { $st->{last_chunk} = 1; last }
            $body .= substr $rest, $hl, $n;
            $rest = substr $rest, $hl + $n + 2;
        }
    } else {
        $body = $rest;
    }
    $st->{body} = $body;
    my (@events, @comments);
    my @blocks = split /\n\n/, $body, -1;
    pop @blocks;                    # incomplete (or empty) tail
    for my $b (@blocks) {
        my %e;
        for my $l (split /\n/, $b) {
            if ($l =~ /^:(.*)$/) { push @comments, $1; next }
            my ($k, $v) = $l =~ /^([^:]+): ?(.*)$/ or next;
            $e{$k} = exists $e{$k} && $k eq 'data' ? "$e{$k}\n$v" : $v;
        }
        next unless exists $e{event} || exists $e{data};
        $e{json} = eval { $J->decode($e{data}) } if defined $e{data};
        push @events, \%e;
    }
    push @{ $st->{times} }, (time - $st->{t0}) x (@events - @{ $st->{events} });
    $st->{events} = \@events;
    my $nc = @{ $st->{comments} // [] };
    push @{ $st->{comment_times} }, (time - $st->{t0}) x (@comments - $nc);
    $st->{comments} = \@comments;
}

# read until EOF, the deadline, or $until->($st) is true
sub sse_read {
    my ($st, %opt) = @_;
    my $deadline = time + ($opt{timeout} // 15);
    my $sel = IO::Select->new($st->{sock});
    while (!$st->{eof}) {
        last if $opt{until} && $st->{events} && $opt{until}->($st);
        my $left = $deadline - time;
        last if $left <= 0;
        next unless $sel->can_read($left < 0.2 ? $left : 0.2);
        my $n = sysread $st->{sock}, my $buf, 65536;
        if (!$n) { $st->{eof} = 1; $st->{eof_at} = time - $st->{t0}; last }
        $st->{raw} .= $buf;
        sse_parse($st);
    }
    return $st;
}

sub sse_close { close $_[0]{sock} if $_[0]{sock}; delete $_[0]{sock} }

sub sse {
    my ($path, %opt) = @_;
    my $st = sse_open($path, %{ $opt{headers} // {} });
    sse_read($st, timeout => $opt{timeout} // 15);
    sse_close($st);
    return $st;
}

# a stream read in a child process, collected later
sub sse_background {
    my ($path, %opt) = @_;
    my $file = File::Temp->new(UNLINK => 1);
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if (!$pid) {
        my $st = sse($path, %opt);
        delete $st->{sock};
        open my $out, '>', $file->filename or POSIX::_exit(2);
        print $out $J->encode($st);
        close $out;
        POSIX::_exit(0);
    }
    return { pid => $pid, file => $file };
}

sub sse_collect {
    my ($bg, $secs) = @_;
    my $deadline = time + ($secs // 20);
    while (waitpid($bg->{pid}, POSIX::WNOHANG()) != $bg->{pid}) {
        if (time > $deadline) {
            kill 'KILL', $bg->{pid};
            waitpid($bg->{pid}, 0);
            return {};
        }
        sleep 0.05;
    }
    open my $in, '<', $bg->{file}->filename or return {};
    local $/;
    my $t = <$in>;
    return length($t // '') ? $J->decode($t) : {};
}

sub names { return join ' ', map { $_->{event} // '?' } @{ $_[0]{events} // [] } }
sub ided { return grep { defined $_->{id} } @{ $_[0]{events} // [] } }

# ---------------------------------------------------------------------------
# The heartbeat: a stream on a run that hangs stays quiet for 15 s, so this
# one is opened first and collected at the end of the file.

my ($hb_id, $hb_bg);
{
    my $res = post_run('/v1/hb', { prompt => 'quiet stream', steps => 2 });
    $hb_id = $res->{json}{id};
    if ($res->{status} == 202 && $hb_id && wait_sim('simB', 'run_start', $hb_id, 10)) {
        $hb_bg = sse_background("/v1/hb/runs/$hb_id/events", timeout => 17);
    }
}

# ---------------------------------------------------------------------------

my %full;   # the events run: its whole stream

subtest 'events: started, progress, output and the final run, then the end' => sub {
    sim_faults('simA', { slow => 1 });
    my $res = post_run('/v1/a', { prompt => 'events ' . rand, steps => 10 });
    is($res->{status}, 202, 'run accepted') or return;
    my $id = $res->{json}{id};
    my $st = sse("/v1/a/runs/$id/events", timeout => 15);
    sim_faults('simA', { slow => 0 });

    is($st->{status}, 200, 'status 200');
    like($st->{headers}{'content-type'} // '', qr{^text/event-stream}, 'text/event-stream');
    ok($st->{eof}, 'the stream ends after the final event');
    ok(!defined $st->{headers}{'transfer-encoding'} || $st->{last_chunk},
       'with the last chunk (a clean end, not a cut)');

    my @ev = @{ $st->{events} };
    my @named = map { $_->{event} } grep { ($_->{event} // '') ne 'queued' } @ev;
    is($named[0], 'started', 'first event: started') or diag names($st);
    is($named[-1], 'succeeded', 'last event: succeeded');
    is($ev[-1]{event}, 'succeeded', 'nothing after the final event');

    my @prog = grep { ($_->{event} // '') eq 'progress' } @ev;
    is(scalar @prog, 10, '10 progress events (one per KSampler step)')
        or diag names($st);
    is_deeply([ map { $_->{json}{value} } @prog ], [ 1 .. 10 ],
              'progress values 1..10, increasing');
    is(scalar(grep { ($_->{json}{max} // -1) != 10 } @prog), 0, 'max is 10 in each');
    is(scalar(grep { ($_->{json}{node} // '') ne '3' } @prog), 0, 'node "3" (the KSampler)');

    my ($out) = grep { ($_->{event} // '') eq 'output' } @ev;
    ok($out, 'an output event');
    is($out->{json}{name}, 'result', 'output: name');
    is($out->{json}{items}[0]{url}, "/v1/a/runs/$id/outputs/result/0", 'output: url');
    like($out->{json}{items}[0]{filename} // '', qr/\.png$/, 'output: filename');
    is($out->{json}{items}[0]{content_type}, 'image/png', 'output: content_type');

    my @ids = map { $_->{id} } ided($st);
    is(scalar @ids, scalar(grep { ($_->{event} // '') ne 'queued' } @ev),
       'every event but queued has an id');
    is_deeply(\@ids, [ 1 .. scalar @ids ], 'ids 1, 2, 3, ... in order')
        or diag "@ids";
    is(scalar(grep { ($_->{event} // '') eq 'queued' && defined $_->{id} } @ev), 0,
       'queued (state) has no id');

    my $run = $ng->get("/v1/a/runs/$id");
    is($run->{json}{status}, 'succeeded', 'GET: succeeded');
    is_deeply($ev[-1]{json}, $run->{json}, 'the final event carries the run as GET shows it');
    is(poll_db($id, 'succeeded'), 'succeeded', 'PostgreSQL: succeeded');
    %full = (id => $id, st => $st);
};

subtest 'a stream on a finished run: everything at once, then the end' => sub {
    my $id = $full{id} or return fail('no run from the events test');
    my $st = sse("/v1/a/runs/$id/events", timeout => 5);
    ok($st->{eof} && $st->{eof_at} < 1.5,
       sprintf('ends at once (%.2fs)', $st->{eof_at} // -1));
    is(($st->{events}[-1] // {})->{event}, 'succeeded', 'with the final event');
    is_deeply([ map { [$_->{id}, $_->{event}, $_->{data}] } ided($st) ],
              [ map { [$_->{id}, $_->{event}, $_->{data}] } ided($full{st}) ],
              'the same events, ids and data as the live stream');

    my $last = (ided($full{st}))[-1]{id};
    $st = sse("/v1/a/runs/$id/events", headers => { 'Last-Event-ID' => $last - 1 },
              timeout => 5);
    is(names($st), 'succeeded', 'Last-Event-ID: last-1 gives only the final event');
    is(($st->{events}[0] // {})->{id}, $last, 'with its id');
    ok($st->{eof} && $st->{eof_at} < 1.5, 'and ends at once');

    $st = sse("/v1/a/runs/$id/events", headers => { 'Last-Event-ID' => 5 }, timeout => 5);
    is_deeply([ map { $_->{id} } ided($st) ], [ 6 .. $last ],
              'Last-Event-ID: 5 gives exactly 6..last');
};

subtest 'Last-Event-ID resume during a run: no loss, no repeat' => sub {
    sim_faults('simA', { slow => 2 });
    my $res = post_run('/v1/a', { prompt => 'resume ' . rand, steps => 20 });
    is($res->{status}, 202, 'run accepted') or return;
    my $id = $res->{json}{id};
    my $st = sse_open("/v1/a/runs/$id/events");
    sse_read($st, timeout => 10,
             until => sub { grep { ($_->{id} // 0) >= 5 } @{ $_[0]{events} } });
    sse_close($st);
    my @first = ided($st);
    my $k = @first ? $first[-1]{id} : 0;
    ok($k >= 5, "first connection got ids up to $k") or do {
        sim_faults('simA', { slow => 0 }); return };
    ok(!$st->{eof}, 'the run was still going when the client left');
    sleep 0.5;                      # events happen while nobody listens
    my $st2 = sse("/v1/a/runs/$id/events", headers => { 'Last-Event-ID' => $k },
                  timeout => 15);
    sim_faults('simA', { slow => 0 });
    my @second = ided($st2);
    ok(@second && $second[0]{id} == $k + 1, "the second connection starts at id " . ($k + 1))
        or diag "got " . join ' ', map { $_->{id} } @second;
    my @all = (@first, @second);
    is_deeply([ map { $_->{id} } @all ], [ 1 .. scalar @all ],
              'together: every id once, in order');
    is($all[-1]{event}, 'succeeded', 'ending with succeeded');
    is(scalar(grep { $_->{event} eq 'progress' } @all), 20, 'all 20 progress events');
    my $later = sse("/v1/a/runs/$id/events", timeout => 5);
    is_deeply([ map { [$_->{id}, $_->{event}, $_->{data}] } @all ],
              [ map { [$_->{id}, $_->{event}, $_->{data}] } ided($later) ],
              'the same events as a stream read after the end');
};

subtest 'queued: the real position, updated as the queue moves' => sub {
    sim_faults('simQ', { slow => 1.2 });
    my @ids;
    for my $i (1 .. 3) {
        my $res = post_run('/v1/q', { prompt => "queue $i " . rand, steps => 2 });
        is($res->{status}, 202, "run $i accepted") or diag $res->{content};
        push @ids, $res->{json}{id};
    }
    my $r2 = $ng->get("/v1/q/runs/$ids[1]")->{json} // {};
    my $r3 = $ng->get("/v1/q/runs/$ids[2]")->{json} // {};
    is($r2->{status}, 'queued', 'run 2 waits in the gateway queue');
    is($r2->{queue_position}, 1, 'run 2: queue_position 1');
    is($r3->{queue_position}, 2, 'run 3: queue_position 2');

    my $st = sse("/v1/q/runs/$ids[2]/events", timeout => 15);
    sim_faults('simQ', { slow => 0 });
    my @q = grep { ($_->{event} // '') eq 'queued' } @{ $st->{events} };
    is_deeply([ map { $_->{json}{position} } @q ], [ 2, 1 ],
              'queued {"position":2}, then {"position":1}') or diag names($st);
    my @n = map { $_->{event} } @{ $st->{events} };
    my ($first_started) = grep { $n[$_] eq 'started' } 0 .. $#n;
    ok(defined $first_started && !grep({ $n[$_] eq 'queued' } $first_started .. $#n),
       'no queued event after started');
    is($n[-1], 'succeeded', 'then the run, to its end');
    ok($st->{eof}, 'and the stream ends');
    is(poll_db($_, 'succeeded'), 'succeeded', "run $_ succeeded") for @ids;
};

subtest 'DELETE a run in the gateway queue: canceled, never reaches a backend' => sub {
    sim_faults('simQ', { slow => 1.5 });
    my $a = post_run('/v1/q', { prompt => 'runs ' . rand, steps => 2 })->{json}{id};
    my $res = post_run('/v1/q', { prompt => 'waits ' . rand, steps => 2 });
    my $b = $res->{json}{id};
    is($res->{json}{status}, 'queued', 'the second run waits at the gateway');
    my $stream = sse_background("/v1/q/runs/$b/events", timeout => 10);
    sleep 0.2;
    $res = $ng->request('DELETE', "/v1/q/runs/$b");
    is($res->{status}, 200, 'DELETE: 200') or diag $res->{content};
    is($res->{json}{status}, 'canceled', 'the answer is the canceled run');
    is($res->{json}{id}, $b, 'with its id');
    is($ng->get("/v1/q/runs/$b")->{json}{status}, 'canceled', 'GET: canceled');
    is(poll_db($b, 'canceled'), 'canceled', 'PostgreSQL: canceled');
    my $st = sse_collect($stream);
    is(($st->{events}[-1] // {})->{event}, 'canceled', 'its stream ends with canceled');
    ok($st->{eof}, 'and closes');
    is(poll_run('/v1/q', $a, 10)->{json}{status}, 'succeeded', 'the running run succeeds');
    sleep 0.3;
    sim_faults('simQ', { slow => 0 });
    my @got = grep { ($_->{prompt_id} // '') eq $b } sim_events('simQ', 'prompt');
    is(scalar @got, 0, 'the canceled run never reached the backend');
    is(scalar(grep { ($_->{prompt_id} // '') eq $b } sim_events('simQ', 'interrupt')), 0,
       'and no interrupt was sent for it');
    $res = $ng->request('DELETE', "/v1/q/runs/$b");
    is($res->{status}, 409, 'DELETE again: 409 (it has finished)');
};

subtest 'DELETE a running run: /interrupt with its prompt_id only; the other run is untouched' => sub {
    sim_faults('simA', { slow => 3 });
    my $a = post_run('/v1/a', { prompt => 'to cancel ' . rand, steps => 4 })->{json}{id};
    my $b = post_run('/v1/a', { prompt => 'bystander ' . rand, steps => 4 })->{json}{id};
    ok(wait_sim('simA', 'run_start', $a, 5), 'the first run is running on the backend')
        or return;
    ok(wait_sim('simA', 'prompt', $b, 5), 'the second waits in ComfyUI\'s queue');
    my $res = $ng->request('DELETE', "/v1/a/runs/$a");
    is($res->{status}, 200, 'DELETE: 200') or diag $res->{content};
    is($res->{json}{status}, 'canceled', 'the answer is the canceled run');
    sim_faults('simA', { slow => 0 });
    my $ga = poll_run('/v1/a', $a, 10);
    is($ga->{json}{status}, 'canceled', 'GET: canceled');
    is(poll_db($a, 'canceled'), 'canceled', 'PostgreSQL: canceled');
    my @int = sim_events('simA', 'interrupt');
    my @mine = grep { ($_->{prompt_id} // '') eq $a } @int;
    ok(@mine >= 1, '/interrupt with the run\'s prompt_id') or diag explain \@int;
    ok(grep({ $_->{interrupted} } @mine), 'it interrupted that run');
    is(scalar(grep { ($_->{prompt_id} // '') ne $a } @int), 0,
       'no bare /interrupt, none for another run') or diag explain \@int;
    my $gb = poll_run('/v1/a', $b, 15);
    is($gb->{json}{status}, 'succeeded', 'the other run on that backend succeeds');
    my ($end) = grep { ($_->{prompt_id} // '') eq $a } sim_events('simA', 'run_end');
    is($end && $end->{status}, 'interrupted', 'the backend ended the run as interrupted');
};

subtest 'DELETE a run waiting in ComfyUI\'s queue: /queue delete' => sub {
    sim_faults('simA', { slow => 2 });
    my $a = post_run('/v1/a', { prompt => 'runs on ' . rand, steps => 4 })->{json}{id};
    my $b = post_run('/v1/a', { prompt => 'in comfy queue ' . rand, steps => 4 })->{json}{id};
    ok(wait_sim('simA', 'run_start', $a, 5), 'the first run is running');
    ok(wait_sim('simA', 'prompt', $b, 5), 'the second was handed to the backend');
    my $res = $ng->request('DELETE', "/v1/a/runs/$b");
    is($res->{status}, 200, 'DELETE: 200') or diag $res->{content};
    is($res->{json}{status}, 'canceled', 'canceled');
    my $del = wait_sim('simA', 'delete', $b, 5);
    ok($del, 'POST /queue {"delete": [id]} reached the backend');
    ok($del && $del->{removed}, 'and removed it from ComfyUI\'s queue');
    is(poll_db($b, 'canceled'), 'canceled', 'PostgreSQL: canceled');
    is(poll_run('/v1/a', $a, 10)->{json}{status}, 'succeeded', 'the running run succeeds');
    sim_faults('simA', { slow => 0 });
    is(scalar(grep { ($_->{prompt_id} // '') eq $b } sim_events('simA', 'run_start')), 0,
       'the canceled run never started');
    is(scalar(grep { ($_->{prompt_id} // '') eq $a } sim_events('simA', 'interrupt')), 0,
       'the running one was not interrupted');
};

subtest 'DELETE of a finished run: 409; unknown: 404' => sub {
    my $id = $full{id} or return fail('no run from the events test');
    my $res = $ng->request('DELETE', "/v1/a/runs/$id");
    is_problem($res, 409, undef, 'a succeeded run');
    is($ng->get("/v1/a/runs/$id")->{json}{status}, 'succeeded', 'still succeeded');
    is(db_status($id), 'succeeded', 'PostgreSQL: still succeeded');
    is_problem($ng->request('DELETE', '/v1/a/runs/01900000-0000-7000-8000-00000000dead'),
               404, 'not-found', 'an unknown run');
};

subtest 'a finished run only PostgreSQL knows (evicted, or after a restart)' => sub {
    my $pid = '01900000-2222-7333-8444-555566667777';
    psql(<<"SQL");
insert into flowscale.runs (id, project, deployment, version, status, inputs,
    prompt, outputs, backend, created_at, started_at, finished_at)
values ('$pid', 'default', 'a', 'deadbeef', 'succeeded', '{"prompt": "old"}', '{}',
    '{}', '127.0.0.1:1', now() - interval '1 hour', now() - interval '1 hour',
    now() - interval '59 minutes')
SQL
    my $res = $ng->request('DELETE', "/v1/a/runs/$pid");
    is_problem($res, 409, undef, 'DELETE');
    is(db_status($pid), 'succeeded', 'PostgreSQL: still succeeded');

    my $st = sse("/v1/a/runs/$pid/events", timeout => 5);
    like($st->{headers}{'content-type'} // '', qr{^text/event-stream},
         'its event stream is a stream');
    is(($st->{events}[-1] // {})->{event}, 'succeeded',
       'with the final succeeded event carrying the run')
        or diag substr($st->{raw} // '', 0, 400);
    is(($st->{events}[-1] // {})->{json}{id}, $pid, 'the run in that event');
    ok($st->{eof}, 'that ends at once');
};

subtest 'flowscale_run_timeout 2s: interrupted, failed with error.type timeout' => sub {
    my $t = time;
    my $res = post_run('/v1/timeout', { prompt => 'hangs ' . rand, steps => 2 });
    is($res->{status}, 202, 'accepted') or return;
    my $id = $res->{json}{id};
    $res = poll_run('/v1/timeout', $id, 12);
    my $el = time - $t;
    is($res->{json}{status}, 'failed', 'failed') or diag $res->{content};
    is($res->{json}{error}{type}, 'timeout', 'error.type timeout');
    ok($el >= 1.8 && $el < 8, sprintf('after about 2 s (%.1fs)', $el));
    is(poll_db($id, 'failed'), 'failed', 'PostgreSQL: failed');
    my ($err) = psql("select error->>'type' from flowscale.runs where id = '$id'");
    is($err, 'timeout', 'PostgreSQL: error type timeout');
    my $int = wait_sim('simH', 'interrupt', $id, 5);
    ok($int, 'an /interrupt with its prompt_id was sent');
    ok($int && $int->{interrupted}, 'and stopped it on the backend');
    is(scalar(grep { !defined $_->{prompt_id} || $_->{prompt_id} ne $id }
              sim_events('simH', 'interrupt')), 0, 'no other interrupt');
};

subtest 'Idempotency-Key' => sub {
    my $key = 'idem-' . int(rand 1e9);
    my $body = { prompt => "idempotent $key", steps => 2, seed => 7 };
    my $r1 = post_run('/v1/a', $body, headers => { 'Idempotency-Key' => $key });
    is($r1->{status}, 202, 'first: 202') or diag $r1->{content};
    my $id = $r1->{json}{id} // 'none';
    my $r2 = post_run('/v1/a', $body, headers => { 'Idempotency-Key' => $key });
    like($r2->{status}, qr/^20[02]$/, "replay: $r2->{status}");
    is($r2->{json}{id}, $id, 'replay: the same run id');
    is($r2->{headers}{location}, "/v1/a/runs/$id", 'replay: Location of that run');
    poll_run('/v1/a', $id, 10);
    my $r3 = post_run('/v1/a', $body, headers => { 'Idempotency-Key' => $key });
    like($r3->{status}, qr/^20[02]$/, "replay after it finished: $r3->{status}");
    is($r3->{json}{id}, $id, 'replay after it finished: the same run');
    is($r3->{json}{status}, 'succeeded', 'which shows as succeeded');

    my $r4 = post_run('/v1/a', { %$body, steps => 3 },
                      headers => { 'Idempotency-Key' => $key });
    is_problem($r4, 422, undef, 'the same key with another body');
    my $r5 = post_run('/v1/a', $body, headers => { 'Idempotency-Key' => "$key-2" });
    is($r5->{status}, 202, 'another key: 202');
    isnt($r5->{json}{id} // $id, $id, 'another key: a new run');
    my $n = psql("select count(*) from flowscale.runs where inputs->>'prompt' = 'idempotent $key'");
    is($n, 2, 'PostgreSQL: two runs for the two keys');
    my @p = grep { ($_->{prompt}{6}{inputs}{text} // '') eq "idempotent $key"
                   && $_->{status} == 200 } sim_events('simA', 'prompt');
    poll_run('/v1/a', $r5->{json}{id}, 10) if $r5->{json}{id};
    @p = grep { ($_->{prompt}{6}{inputs}{text} // '') eq "idempotent $key"
                && $_->{status} == 200 } sim_events('simA', 'prompt');
    is(scalar @p, 2, 'the backend ran two prompts, not four');
};

SKIP: {
    skip 'the hanging run for the heartbeat did not start', 1 unless $hb_bg;
    subtest 'heartbeat: a comment every 15 s on a quiet stream' => sub {
        my $st = sse_collect($hb_bg, 25);
        is($st->{status}, 200, 'the stream was open');
        ok(!$st->{eof}, 'still open after 17 s');
        my @hb = @{ $st->{comments} // [] };
        ok(@hb >= 1, 'a comment line arrived') or diag substr($st->{raw} // '', 0, 300);
        my $at = ($st->{comment_times} // [])->[0] // 0;
        ok($at >= 13 && $at <= 16.9, sprintf('after about 15 s (%.1fs)', $at));
        is(scalar(grep { ($_->{event} // '') =~ /^(?:succeeded|failed|canceled)$/ }
                  @{ $st->{events} // [] }), 0, 'no final event: the run still hangs');
        my $res = $ng->request('DELETE', "/v1/hb/runs/$hb_id");
        is($res->{status}, 200, 'the hanging run is canceled');
        is(poll_db($hb_id, 'canceled'), 'canceled', 'PostgreSQL: canceled');
    };
}

$ng->stop;
diag(sprintf 'e2e live.t took %.1fs', time - $T0);
done_testing;
