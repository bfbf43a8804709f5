# End-to-end tests of issue 3 (runs) through a real nginx, a real
# PostgreSQL and two simulated ComfyUI backends: POST L in every body
# format, validation, the prompt ComfyUI receives, Prefer: wait, failures,
# rejections, GET L/runs/ID from the zone and from PostgreSQL, the database
# going away, reload during a run, clients that leave, 50 concurrent runs.
#
#   TEST_NGINX_LOAD_MODULES=build/ngx_http_flowscale_module.so \
#       prove -It/lib t/e2e

use strict;
use warnings;

use Test::More;
use Compress::Zlib ();
use File::Temp ();
use HTTP::Tiny;
use JSON::PP ();
use MIME::Base64 ();
use POSIX ();
use Time::HiRes qw(time sleep);

use FlowScale::Fixture qw(postgres psql stop_postgres start_postgres
                          simulator sim_faults sim_url);
use FlowScale::Nginx;

plan skip_all => 'TEST_NGINX_LOAD_MODULES (the module .so) is not set'
    unless $ENV{TEST_NGINX_LOAD_MODULES};

my $T0 = time;
my $Root = $FlowScale::Nginx::Root;
my $WF = "$Root/conf/workflows";
my $J = JSON::PP->new->utf8->canonical->allow_nonref;

postgres();
simulator($_, step_time => 0.02) for qw(sim1 sim2);
sub sim_port { my ($p) = sim_url($_[0]) =~ /:(\d+)$/; return $p }

# invert.json with a second Save node: every output node gets a prefix
my $two_wf = $J->decode(slurp("$WF/invert.json"));
$two_wf->{15} = { class_type => 'SaveImage',
                  inputs => { filename_prefix => 'scaled', images => ['11', 0] },
                  _meta => { title => 'Save scaled' } };

my $HTTP = <<"HTTP";
    flowscale_database "\$TEST_NGINX_PG_DSN" pool=4;
    flowscale_zone flowscale:16m;

    upstream comfyui {
        server 127.0.0.1:\$TEST_NGINX_SIM1_PORT;
        server 127.0.0.1:\$TEST_NGINX_SIM2_PORT;
    }

    server {
        listen 127.0.0.1:\@PORT\@ reuseport;
        client_max_body_size 256k;
        add_header X-Worker \$pid always;
        flowscale_api_key off;

        location /v1/txt2img {
            flowscale_deployment txt2img;
            flowscale_workflow   $WF/txt2img.json;
            flowscale_input      prompt  6.text   required;
            flowscale_input      seed    3.seed   default=random;
            flowscale_input      steps   3.steps  min=1 max=50;
            flowscale_input      sampler 3.sampler_name options=euler|ddim|not_a_sampler;
            flowscale_output     result  9;
            flowscale_backend    comfyui;
        }

        location /v1/capped {
            flowscale_deployment capped;
            flowscale_workflow   $WF/txt2img.json;
            flowscale_input      prompt  6.text   required;
            flowscale_input      steps   3.steps  min=1 max=50;
            flowscale_output     result  9;
            flowscale_backend    comfyui;
            flowscale_max_wait   1s;
        }

        location /v1/invert {
            flowscale_deployment invert;
            flowscale_workflow   $WF/invert.json;
            flowscale_input      image  10.image  type=image required;
            flowscale_input      size   11.width  min=16 max=1024;
            flowscale_output     inverted 14;
            flowscale_backend    comfyui;
        }

        location /v1/two {
            flowscale_deployment two;
            flowscale_workflow   two.json;
            flowscale_input      image  10.image  type=image required;
            flowscale_output     inverted 14;
            flowscale_output     scaled   15;
            flowscale_backend    comfyui;
        }
    }
HTTP

my $ng;
my $generation = 0;

sub start_nginx {
    $generation++;
    $ng = FlowScale::Nginx->new(name => "nginx #$generation", timeout => 15,
                                files => { 'two.json' => $J->encode($two_wf) },
                                http => $HTTP);
}

start_nginx();

# After a crash (a module bug, reported as a failure where it happened and
# again by stop()), later scenarios run on a fresh nginx rather than fail
# for the same reason.
sub ensure_healthy {
    sleep 0.5;                  # the master logs a crash a moment later
    my $crashed = $ng->error_log =~ /exited on signal/;
    my $res = $ng->get('/v1/txt2img', timeout => 3);
    return if !$crashed && $res->{status} == 200;
    diag("nginx #$generation is unhealthy (crashed workers or no answer): "
         . "starting a fresh one for the next scenarios");
    $ng->stop;
    start_nginx();
}

sub no_alerts_since {
    my ($mark, $name) = @_;
    sleep 0.2;
    my @bad = grep { /\[(?:alert|crit|emerg)\]|exited on signal/ }
              split /\n/, $ng->error_log($mark);
    ok(!@bad, "$name: no [alert], [crit] or crash in the error log")
        or diag(join "\n", @bad[0 .. ($#bad < 5 ? $#bad : 5)]);
}

sub status_of { my ($row) = @_; return ref $row ? $row->{status} : undef }

# ---------------------------------------------------------------------------
# helpers

sub slurp {
    open my $in, '<', $_[0] or die "$_[0]: $!";
    local $/;
    return scalar <$in>;
}

# a small, valid RGB PNG whose bytes depend on $seed
sub png {
    my ($w, $h, $seed) = @_;
    my $raw = '';
    for my $y (0 .. $h - 1) {
        $raw .= "\0" . join '', map { chr(($_ * 7 + $y * 3 + $seed) % 256) x 3 }
                                0 .. $w - 1;
    }
    my $chunk = sub {
        my ($t, $d) = @_;
        return pack('N', length $d) . $t . $d
               . pack('N', Compress::Zlib::crc32($t . $d));
    };
    return "\x89PNG\r\n\x1a\n"
           . $chunk->('IHDR', pack('NNCCCCC', $w, $h, 8, 2, 0, 0, 0))
           . $chunk->('tEXt', "Comment\0flowscale-e2e-$seed")
           . $chunk->('IDAT', Compress::Zlib::compress($raw))
           . $chunk->('IEND', '');
}

sub multipart {
    my (@parts) = @_;     # [name, value] or [name, bytes, filename, type]
    my $b = 'fsE2eBoundary' . int(rand 1e9);
    my $body = '';
    for my $p (@parts) {
        my ($name, $value, $file, $type) = @$p;
        $body .= "--$b\r\nContent-Disposition: form-data; name=\"$name\"";
        $body .= "; filename=\"$file\"" if defined $file;
        $body .= "\r\n";
        $body .= "Content-Type: $type\r\n" if defined $type;
        $body .= "\r\n$value\r\n";
    }
    $body .= "--$b--\r\n";
    return ("multipart/form-data; boundary=$b", $body);
}

sub wait_hdr { return (headers => { Prefer => "wait=$_[0]" }) }

sub runs_count { return scalar psql("select count(*) from flowscale.runs") }

sub sim_events {
    my ($name, $kind) = @_;
    my $res = HTTP::Tiny->new(timeout => 10)
              ->get(sim_url($name) . "/sim/log?kind=$kind");
    die "sim log of $name: $res->{status}" unless $res->{success};
    return @{ $J->decode($res->{content}) };
}

# the accepted prompt submission of a run, and the simulator that got it
sub submitted {
    my ($id) = @_;
    for my $name (qw(sim1 sim2)) {
        for my $e (sim_events($name, 'prompt')) {
            return ($e, $name) if ($e->{prompt_id} // '') eq $id
                                  && $e->{status} == 200;
        }
    }
    return;
}

sub all_prompts { return map { sim_events($_, 'prompt') } qw(sim1 sim2) }

sub faults_all {
    my ($f) = @_;
    sim_faults($_, $f) for qw(sim1 sim2);
}

sub clear_faults {
    faults_all({ fail_node => undef, reject => undef, slow => 0,
                 fail_message => undef, hang => JSON::PP::false });
}

# poll GET L/runs/ID until finished (or the time is up); the last answer
sub poll_run {
    my ($loc, $id, $secs) = @_;
    my $deadline = time + ($secs // 15);
    my $res;
    while (1) {
        $res = $ng->get("$loc/runs/$id");
        return $res if $res->{json} && ($res->{json}{status} // '')
                       =~ /^(?:succeeded|failed|canceled)$/;
        return $res if time > $deadline;
        sleep 0.05;
    }
}

sub db_run {
    my ($id) = @_;
    my ($row) = psql(<<"SQL");
select json_build_object('status', status, 'backend', backend,
       'inputs', inputs, 'outputs', outputs, 'error', error,
       'deployment', deployment, 'created_at', created_at,
       'started', started_at is not null, 'finished', finished_at is not null,
       'ordered', created_at <= started_at and started_at <= finished_at)
from flowscale.runs where id = '$id'
SQL
    return defined $row && length $row ? $J->decode($row) : undef;
}

sub poll_db {
    my ($id, $want, $secs) = @_;
    my $deadline = time + ($secs // 10);
    my $row;
    while (1) {
        $row = eval { db_run($id) };
        return $row if $row && $row->{status} eq $want;
        return $row if time > $deadline;
        sleep 0.1;
    }
}

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

sub no_secrets {
    my ($text, $name) = @_;
    $text //= '';
    unlike($text, qr{Traceback|File "|/opt/ComfyUI|\.py\b|site-packages|tensor\(\[},
           "$name: no traceback, tensor dump or server path");
}

# the workflow with only the expected changes; _meta ignored
sub strip_meta {
    my ($p) = @_;
    my %c = %$p;
    delete $c{$_}{_meta} for keys %c;
    return \%c;
}

sub expected_prompt {
    my ($file, $changes) = @_;      # { "node.input" => value }
    my $wf = ref $file ? $J->decode($J->encode($file))
                       : $J->decode(slurp("$WF/$file"));
    for my $k (keys %$changes) {
        my ($n, $i) = split /\./, $k, 2;
        $wf->{$n}{inputs}{$i} = $changes->{$k};
    }
    return strip_meta($wf);
}

my @ids_of_txt2img;

# ---------------------------------------------------------------------------

subtest 'JSON run: 202 + Location, succeeds, recorded in PostgreSQL' => sub {
    my $res = $ng->post_json('/v1/txt2img',
                             { inputs => { prompt => 'a red fox', steps => 4,
                                           sampler => 'ddim' } });
    is($res->{status}, 202, '202 Accepted') or diag $res->{content};
    my $run = $res->{json} // {};
    my $id = $run->{id} // '';
    like($id, qr/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
         'the id is a UUIDv7');
    is($res->{headers}{location}, "/v1/txt2img/runs/$id", 'Location');
    like($res->{headers}{'content-type'}, qr{^application/json}, 'JSON');
    is($run->{deployment}, 'txt2img', 'deployment');
    like($run->{status} // '', qr/^(?:queued|running)$/, 'not finished yet');
    ok(defined $run->{created_at}, 'created_at');
    is($run->{inputs}{prompt}, 'a red fox', 'inputs.prompt');
    is($run->{inputs}{steps}, 4, 'inputs.steps');
    like($run->{inputs}{seed} // '', qr/^\d+$/, 'a drawn seed is returned');
    push @ids_of_txt2img, $id;

    $res = poll_run('/v1/txt2img', $id);
    is($res->{status}, 200, 'GET of the finished run is 200');
    $run = $res->{json} // {};
    is($run->{status}, 'succeeded', 'succeeded') or diag $res->{content};
    ok($run->{started_at} && $run->{finished_at}, 'started_at, finished_at');
    is($run->{error}, undef, 'no error');
    my $files = $run->{outputs}{result} // [];
    is(scalar @$files, 1, 'one file in output result');
    my $f = $files->[0] // {};
    is($f->{url}, "/v1/txt2img/runs/$id/outputs/result/0", 'output url');
    like($f->{filename} // '', qr/\.png$/, 'output filename');
    like($f->{filename} // '', qr/\Q$id\E/, 'the file name carries the run id');
    is($f->{content_type}, 'image/png', 'output content_type');
    no_secrets($res->{content}, 'succeeded run');
    unlike($res->{content}, qr/subfolder|"type":"output"/,
           'backend folders are not shown');

    my $row = poll_db($id, 'succeeded');
    is($row->{status}, 'succeeded', 'PostgreSQL: status succeeded');
    is($row->{deployment}, 'txt2img', 'PostgreSQL: deployment');
    ok($row->{started} && $row->{finished} && $row->{ordered},
       'PostgreSQL: created <= started <= finished');
    like($row->{backend} // '', qr/^127\.0\.0\.1:\d+$/, 'PostgreSQL: backend');
    is_deeply($row->{inputs}, { prompt => 'a red fox', steps => 4,
                                sampler => 'ddim', seed => $run->{inputs}{seed} },
              'PostgreSQL: inputs with the drawn seed');
    ok($row->{outputs} && $row->{outputs}{result}, 'PostgreSQL: outputs');

    my ($sub, $sim) = submitted($id);
    ok($sub, 'the simulator got the prompt with the run id as prompt_id');
    is($row->{backend}, "127.0.0.1:" . sim_port($sim // 'sim1'),
       'the recorded backend is the one that ran it') if $sub;
};

subtest 'output files: the PNG bytes streamed from the backend that made them' => sub {
    my $id = $ids_of_txt2img[0] // '';
    my $run = $ng->get("/v1/txt2img/runs/$id")->{json} // {};
    my $f = $run->{outputs}{result}[0] // {};
    my $res = $ng->get($f->{url} // "/v1/txt2img/runs/$id/outputs/result/0");
    is($res->{status}, 200, 'GET L/runs/ID/outputs/result/0: 200')
        or diag $res->{content};
    like($res->{headers}{'content-type'} // '', qr{^image/png}, 'image/png');
    like($res->{content} // '', qr/^\x89PNG\r\n\x1a\n/, 'PNG bytes');
    my $row = db_run($id) // {};
    my ($port) = ($row->{backend} // '') =~ /:(\d+)$/;
    my ($sim) = grep { sim_port($_) eq ($port // '') } qw(sim1 sim2);
    my $o = $row->{outputs}{result}[0] // {};
    if (ok($sim, 'the backend of the run is one of the simulators')) {
        my $view = HTTP::Tiny->new(timeout => 10)->get(sim_url($sim)
            . "/view?filename=$o->{filename}&subfolder=$o->{subfolder}&type=output");
        ok(length($res->{content} // '') > 8
           && ($res->{content} // '') eq ($view->{content} // 'x'),
           'the same bytes as the backend\'s /view of that file');
        my @views = grep { ($_->{filename} // '') eq ($o->{filename} // '') }
                    sim_events($sim, 'view');
        ok(@views >= 1, 'nginx fetched it from that backend');
    }
    $res = $ng->get("/v1/txt2img/runs/$id/outputs/result/0",
                    headers => { Range => 'bytes=0-7' });
    is($res->{status}, 206, 'Range: 206');
    is($res->{content}, "\x89PNG\r\n\x1a\n", 'Range: the first 8 bytes');
    is_problem($ng->get("/v1/txt2img/runs/$id/outputs/result/1"), 404, undef,
               'file index out of range');
    is_problem($ng->get("/v1/txt2img/runs/$id/outputs/nope/0"), 404, undef,
               'unknown output name');
    is_problem($ng->get("/v1/invert/runs/$id/outputs/result/0"), 404, undef,
               'output of a run of another deployment');
};

subtest 'values only in declared slots, correctly typed; per-run filename_prefix' => sub {
    # urlencoded: every value arrives as a string and must be typed
    my $res = $ng->request('POST', '/v1/txt2img',
        headers => { Prefer => 'wait=20',
                     'Content-Type' => 'application/x-www-form-urlencoded' },
        content => 'prompt=two+words%21&steps=7&sampler=euler&seed=12345');
    is($res->{status}, 200, 'urlencoded with Prefer: wait: 200')
        or diag $res->{content};
    my $run = $res->{json} // {};
    is($run->{status}, 'succeeded', 'succeeded');
    is_deeply($run->{inputs}, { prompt => 'two words!', steps => 7,
                                sampler => 'euler', seed => 12345 },
              'inputs as typed values');
    is($J->encode($run->{inputs}),
       '{"prompt":"two words!","sampler":"euler","seed":12345,"steps":7}',
       'numbers are JSON numbers in the run');
    my $id = $run->{id} // '';
    my ($sub) = submitted($id);
    ok($sub, 'prompt submitted') or return;
    my $want = expected_prompt('txt2img.json', {
        '6.text' => 'two words!', '3.steps' => 7, '3.sampler_name' => 'euler',
        '3.seed' => 12345, '9.filename_prefix' => "flowscale/$id" });
    is($J->encode(strip_meta($sub->{prompt})), $J->encode($want),
       'the prompt is the workflow with only the declared slots changed, '
       . 'typed, and the run\'s filename_prefix');

    # two runs with the same values: distinct prefixes (cache cannot mix)
    my @ids;
    for (1 .. 2) {
        my $r = $ng->post_json('/v1/txt2img',
                               { inputs => { prompt => 'same', seed => 1, steps => 2 } },
                               wait_hdr(20));
        is($r->{json}{status}, 'succeeded', "identical run $_ succeeded");
        push @ids, $r->{json}{id};
        push @ids_of_txt2img, $r->{json}{id};
    }
    my @fn = map { poll_run('/v1/txt2img', $_)->{json}{outputs}{result}[0]{filename} // '' } @ids;
    isnt($fn[0], $fn[1], 'identical runs have different output files');

    # two output nodes: both get a per-run prefix, both are outputs
    my $img = png(20, 12, 201);
    $res = $ng->post_json('/v1/two', { inputs => {
        image => MIME::Base64::encode_base64($img, '') } }, wait_hdr(20));
    is($res->{status}, 200, 'two outputs: 200') or diag $res->{content};
    $run = $res->{json} // {};
    is($run->{status}, 'succeeded', 'two outputs: succeeded');
    ok(@{ $run->{outputs}{inverted} // [] } == 1
       && @{ $run->{outputs}{scaled} // [] } == 1, 'both outputs have a file');
    ($sub) = submitted($run->{id} // '');
    ok($sub, 'two outputs: prompt submitted') or return;
    is($sub->{prompt}{14}{inputs}{filename_prefix}, "flowscale/$run->{id}",
       'node 14 has the run prefix');
    is($sub->{prompt}{15}{inputs}{filename_prefix}, "flowscale/$run->{id}",
       'node 15 has the run prefix');
};

subtest 'validation: every error kind at once in one 422, nothing written' => sub {
    my $before = runs_count();
    my $prompts = () = all_prompts();
    my $res = $ng->post_json('/v1/txt2img', { inputs => {
        seed => 'not a number', steps => 99, sampler => 'heun',
        bogus => 1, '9.filename_prefix' => 'evil' } });
    my $p = is_problem($res, 422, 'invalid-inputs', '422');
    my %got;
    for my $e (@{ $p->{errors} // [] }) {
        push @{ $got{ $e->{input} // '' } }, $e->{code};
        ok(length($e->{message} // ''), "error for $e->{input} has a message");
    }
    is_deeply($got{seed}, ['type'], 'seed: wrong type');
    is_deeply($got{steps}, ['range'], 'steps: out of range');
    is_deeply($got{sampler}, ['option'], 'sampler: not an option');
    is_deeply($got{bogus}, ['unknown'], 'bogus: unknown input');
    is_deeply($got{'9.filename_prefix'}, ['unknown'],
              'a NODE.INPUT name is an unknown input too');
    is_deeply($got{prompt}, ['required'], 'prompt: missing required');
    is(scalar @{ $p->{errors} // [] }, 6, 'exactly these six errors');

    # multipart: a text value for an image input, a file for a string
    my ($ct, $body) = multipart(['image', 'not a file'],
                                ['size', 'big']);
    $res = $ng->request('POST', '/v1/invert', headers => { 'Content-Type' => $ct },
                        content => $body);
    $p = is_problem($res, 422, 'invalid-inputs', 'multipart 422');
    my %m = map { ($_->{input} // '') => $_->{code} } @{ $p->{errors} // [] };
    ok($m{image} && $m{size}, 'multipart: image and size named')
        or diag $res->{content};

    is(runs_count(), $before, 'nothing written to flowscale.runs');
    is(scalar(() = all_prompts()), $prompts, 'nothing sent to a backend');
};

subtest 'malformed body 400, wrong type 415, too large 413' => sub {
    my $before = runs_count();
    my $res = $ng->request('POST', '/v1/txt2img',
        headers => { 'Content-Type' => 'application/json' },
        content => '{"inputs": {"prompt": "a cat",');
    is_problem($res, 400, 'malformed-body', 'truncated JSON');
    $res = $ng->request('POST', '/v1/txt2img',
        headers => { 'Content-Type' => 'application/json' },
        content => '["prompt"]');
    is_problem($res, 400, 'malformed-body', 'JSON that is not an object');

    $res = $ng->request('POST', '/v1/txt2img',
        headers => { 'Content-Type' => 'text/plain' }, content => 'prompt=x');
    is_problem($res, 415, 'unsupported-media-type', 'text/plain');

    my $big = $J->encode({ inputs => { prompt => 'x' x (300 * 1024) } });
    $res = $ng->request('POST', '/v1/txt2img',
        headers => { 'Content-Type' => 'application/json' }, content => $big);
    is_problem($res, 413, undef, 'body over client_max_body_size');

    my ($ct, $body) = multipart(['image', png(8, 8, 1) . ('z' x (300 * 1024)),
                                 'big.png', 'image/png']);
    $res = $ng->request('POST', '/v1/invert', headers => { 'Content-Type' => $ct },
                        content => $body);
    is($res->{status}, 413, 'multipart over client_max_body_size: 413');
    is(runs_count(), $before, 'nothing written for any of them');
};

subtest 'image inputs: multipart file part, data: URL, plain base64' => sub {
    my %cases = (
        multipart => png(40, 30, 11),
        data_url  => png(41, 30, 12),
        base64    => png(42, 30, 13),
    );
    for my $how (sort keys %cases) {
        my $img = $cases{$how};
        my $res;
        if ($how eq 'multipart') {
            my ($ct, $body) = multipart(['size', '64'],
                                        ['image', $img, 'my cat.png', 'image/png']);
            $res = $ng->request('POST', '/v1/invert',
                headers => { 'Content-Type' => $ct, Prefer => 'wait=20' },
                content => $body);
        } else {
            my $b64 = MIME::Base64::encode_base64($img, '');
            $b64 = "data:image/png;base64,$b64" if $how eq 'data_url';
            $res = $ng->post_json('/v1/invert',
                                  { inputs => { image => $b64, size => 64 } },
                                  wait_hdr(20));
        }
        is($res->{status}, 200, "$how: 200") or diag $res->{content};
        my $run = $res->{json} // {};
        is($run->{status}, 'succeeded', "$how: succeeded") or diag $res->{content};
        is($run->{inputs}{size}, 64, "$how: size is recorded as a number");
        ok(@{ $run->{outputs}{inverted} // [] } == 1, "$how: one output file");
        is($run->{outputs}{inverted}[0]{content_type}, 'image/png',
           "$how: output content type");

        my ($sub, $sim) = submitted($run->{id} // '');
        ok($sub, "$how: prompt submitted") or next;
        my $used = $sub->{prompt}{10}{inputs}{image} // '';
        my @uploads = sim_events($sim, 'upload');
        my ($up) = grep {
            my $n = length($_->{subfolder} // '') ? "$_->{subfolder}/$_->{name}"
                                                  : $_->{name};
            $n eq $used || "$n [input]" eq $used
        } @uploads;
        ok($up, "$how: the prompt uses the name /upload/image returned ($used)")
            or diag explain \@uploads;
        is($up->{size}, length $img, "$how: the upload has the file's bytes")
            if $up;
        isnt($used, 'example.png', "$how: not the workflow's image");
        my $want = expected_prompt('invert.json', {
            '10.image' => $used, '11.width' => 64,
            '14.filename_prefix' => "flowscale/$run->{id}" });
        is($J->encode(strip_meta($sub->{prompt})), $J->encode($want),
           "$how: only 10.image, 11.width (a number) and the prefix changed");
    }
};

subtest 'a node fails: failed run with error type/message/node, nothing leaks' => sub {
    faults_all({ fail_node => '3', fail_message =>
        "Allocation on device 0 failed in /opt/ComfyUI/comfy/model_management.py "
        . "line 842 tensor([[0.1234, 0.5678]])" });
    my $res = $ng->post_json('/v1/txt2img', { inputs => { prompt => 'fail me', steps => 2 } },
                             wait_hdr(20));
    clear_faults();
    is($res->{status}, 200, 'Prefer: wait returns the finished (failed) run')
        or diag $res->{content};
    my $run = $res->{json} // {};
    is($run->{status}, 'failed', 'status failed');
    my $e = $run->{error} // {};
    ok(length($e->{type} // ''), "error.type ($e->{type})");
    ok(length($e->{message} // ''), 'error.message');
    is($e->{node}, '3', 'error.node is the failing node');
    no_secrets($res->{content}, 'failed run');
    ok($run->{finished_at}, 'finished_at');
    my $row = poll_db($run->{id} // '', 'failed');
    is($row->{status}, 'failed', 'PostgreSQL: failed');
    is($row->{error}{node}, '3', 'PostgreSQL: error recorded');
    no_secrets($J->encode($row->{error}), 'recorded error');
};

subtest 'a rejected prompt: 502 problem+json in plain words' => sub {
    faults_all({ reject => 'prompt_outputs_failed_validation' });
    my $res = $ng->post_json('/v1/txt2img', { inputs => { prompt => 'reject me' } });
    clear_faults();
    my $p = is_problem($res, 502, 'backend-rejected', 'reject');
    ok(length($p->{detail} // ''), 'a detail');
    no_secrets($res->{content}, '502');

    # a value the backend refuses for a declared input: named by our name
    $res = $ng->post_json('/v1/txt2img',
                          { inputs => { prompt => 'x', sampler => 'not_a_sampler' } });
    $p = is_problem($res, 502, 'backend-rejected', 'node_errors');
    my @named = grep { ($_->{input} // '') eq 'sampler' } @{ $p->{errors} // [] };
    ok(@named, 'the error names our input "sampler"') or diag $res->{content};
    no_secrets($res->{content}, '502 node_errors');
};

subtest 'GET: unknown, malformed, other deployment, from PostgreSQL only' => sub {
    my $mark = $ng->log_mark;
    my $uuid = '01900000-0000-7000-8000-00000000abcd';
    my $res = $ng->get("/v1/txt2img/runs/$uuid");
    is_problem($res, 404, 'not-found', 'unknown id');
    for my $bad ('not-a-uuid', 'ZZZZZZZZ-0000-7000-8000-000000000000',
                 "$uuid-x", "'%20or%201=1--") {
        $res = $ng->get("/v1/txt2img/runs/$bad");
        is_problem($res, 404, 'not-found', "malformed id $bad");
    }

    my $id = $ids_of_txt2img[0] // '';
    $res = $ng->get("/v1/invert/runs/$id");
    is_problem($res, 404, 'not-found', 'a txt2img run under /v1/invert (zone)');
    $res = $ng->get("/v1/capped/runs/$id");
    is_problem($res, 404, 'not-found', 'a txt2img run under /v1/capped (zone)');

    # a finished run that only PostgreSQL knows
    my $pid = '01900000-1111-7222-8333-444455556666';
    psql(<<"SQL");
insert into flowscale.runs (id, project, deployment, version, status, inputs,
    prompt, outputs, backend, created_at, started_at, finished_at)
values ('$pid', 'default', 'txt2img', 'deadbeef', 'succeeded',
    '{"prompt": "from the database", "seed": 42, "steps": 3}', '{}',
    '{"result": [{"kind": "images", "type": "output", "filename": "old_00001_.png",
      "subfolder": "flowscale", "content_type": "image/png"}]}',
    '127.0.0.1:1', '2024-01-02 03:04:05.678+00', '2024-01-02 03:04:06+00',
    '2024-01-02 03:04:09.5+00')
SQL
    for my $try (1 .. 3) {      # any worker
        $res = $ng->get("/v1/txt2img/runs/$pid");
        is($res->{status}, 200, "from PostgreSQL ($try): 200") or diag $res->{content};
    }
    my $run = $res->{json} // {};
    is($run->{id}, $pid, 'id');
    is($run->{status}, 'succeeded', 'status');
    is($run->{version}, 'deadbeef', 'version');
    is_deeply($run->{inputs}, { prompt => 'from the database', seed => 42, steps => 3 },
              'inputs');
    is($run->{created_at}, '2024-01-02T03:04:05.678Z', 'created_at');
    is($run->{finished_at}, '2024-01-02T03:04:09.500Z', 'finished_at');
    is($run->{outputs}{result}[0]{url}, "/v1/txt2img/runs/$pid/outputs/result/0",
       'output url');
    is($run->{outputs}{result}[0]{filename}, 'old_00001_.png', 'output filename');
    unlike($res->{content}, qr/subfolder/, 'no backend folder');
    $res = $ng->get("/v1/invert/runs/$pid");
    is_problem($res, 404, 'not-found', 'the PostgreSQL run under /v1/invert');
    no_alerts_since($mark, 'GETs answered from PostgreSQL');
};

subtest 'GET from every worker' => sub {
    my $id = $ids_of_txt2img[0] // '';
    my %workers;
    for (1 .. 60) {
        my $res = $ng->get("/v1/txt2img/runs/$id");
        next unless $res->{status} == 200 && ($res->{json}{id} // '') eq $id;
        $workers{ $res->{headers}{'x-worker'} // '?' }++;
        last if keys %workers >= 2;
    }
    is(scalar keys %workers, 2, 'the run is answered by both workers')
        or diag explain \%workers;
};

subtest 'Prefer: wait: 200 when done, 202 at the deadline, capped by max_wait' => sub {
    my $res = $ng->post_json('/v1/txt2img', { inputs => { prompt => 'quick', steps => 2 } },
                             wait_hdr(15));
    is($res->{status}, 200, 'finished in time: 200');
    is($res->{json}{status}, 'succeeded', 'with the finished run');

    faults_all({ slow => 2.5 });
    my $t = time;
    $res = $ng->post_json('/v1/txt2img', { inputs => { prompt => 'slow one', steps => 2 } },
                          wait_hdr(1));
    my $el = time - $t;
    is($res->{status}, 202, 'slow run, wait=1: 202') or diag $res->{content};
    like($res->{json}{status} // '', qr/^(?:queued|running)$/, 'not finished');
    ok($el >= 0.9 && $el < 2.2, sprintf('answered at the deadline (%.2fs)', $el));
    my $slow = $res->{json}{id} // '';
    is($res->{headers}{location}, "/v1/txt2img/runs/$slow", 'Location with the 202');

    $t = time;
    $res = $ng->post_json('/v1/capped', { inputs => { prompt => 'capped' } },
                          wait_hdr(30));
    $el = time - $t;
    is($res->{status}, 202, 'wait=30 capped by flowscale_max_wait 1s: 202');
    ok($el >= 0.9 && $el < 2.2, sprintf('answered after the cap (%.2fs)', $el));
    my $capped = $res->{json}{id} // '';

    my $r1 = poll_run('/v1/txt2img', $slow, 15);
    my $r2 = poll_run('/v1/capped', $capped, 15);
    clear_faults();
    is($r1->{json}{status}, 'succeeded', 'the slow run finishes');
    is($r2->{json}{status}, 'succeeded', 'the capped run finishes');
};

subtest 'a client that disconnects while waiting: the run still finishes' => sub {
    faults_all({ slow => 1 });
    my $marker = 'disconnect-' . int(rand 1e9);
    my $req = $ng->raw_request('POST', '/v1/txt2img',
        headers => { 'Content-Type' => 'application/json', Prefer => 'wait=30' },
        content => $J->encode({ inputs => { prompt => $marker, steps => 2 } }));
    my $got = $ng->send_and_close($req, after => 0.4);
    is($got, '', 'nothing answered before the client left');

    my ($id) = psql("select id from flowscale.runs where inputs->>'prompt' = '$marker'");
    ok($id, 'the run was accepted') or return;
    my $res = poll_run('/v1/txt2img', $id, 15);
    is($res->{json}{status}, 'succeeded', 'the run finished without its client');
    is(status_of(poll_db($id, 'succeeded')), 'succeeded', 'and is recorded');

    # gone at once (RST right after the request)
    $marker = 'reset-' . int(rand 1e9);
    $req = $ng->raw_request('POST', '/v1/txt2img',
        headers => { 'Content-Type' => 'application/json', Prefer => 'wait=30' },
        content => $J->encode({ inputs => { prompt => $marker, steps => 2 } }));
    $ng->send_and_close($req, after => 0, reset => 1);
    sleep 0.5;
    ($id) = psql("select id from flowscale.runs where inputs->>'prompt' = '$marker'");
    if ($id) {
        my $row = poll_db($id, 'succeeded', 15);
        is($row->{status}, 'succeeded',
           'a run committed for a client that reset at once still runs');
    } else {
        pass('the client reset before the run was committed: no run');
    }
    clear_faults();
    my $ok = $ng->post_json('/v1/txt2img', { inputs => { prompt => 'after' } }, wait_hdr(15));
    is($ok->{json}{status}, 'succeeded', 'nginx still serves runs');
};

subtest 'reload during a run: it finishes and is readable after the reload' => sub {
    faults_all({ slow => 1.5 });
    my $res = $ng->post_json('/v1/txt2img', { inputs => { prompt => 'across reload', steps => 2 } });
    is($res->{status}, 202, '202') or return;
    my $id = $res->{json}{id};
    my %old = map { $_ => 1 } $ng->workers;
    my $mark = $ng->log_mark;

    ok(eval { $ng->reload; 1 }, 'nginx -s reload') or do {
        diag $@; clear_faults(); return };
    my @new = grep { !$old{$_} } $ng->workers;
    ok(@new >= 2, 'new workers');
    $res = $ng->get("/v1/txt2img/runs/$id");
    is($res->{status}, 202, 'readable right after the reload (still running: 202)')
        or diag $res->{content};
    like($res->{json}{status} // '', qr/^(?:queued|running)$/, 'not finished yet');
    ok(!$old{ $res->{headers}{'x-worker'} // 0 }, 'answered by a new worker');

    $res = poll_run('/v1/txt2img', $id, 10);
    clear_faults();
    sleep 0.5;
    my @crash = grep { /exited on signal/ } split /\n/, $ng->error_log($mark);
    ok(!@crash, 'no worker crashed after the reload')
        or diag(join "\n", @crash[0 .. ($#crash < 3 ? $#crash : 3)]);
    is($res->{json}{status}, 'succeeded', 'the run finished after the reload')
        or diag $res->{content};
    ok(@{ $res->{json}{outputs}{result} // [] } == 1, 'with its output');
    is(status_of(poll_db($id, 'succeeded')), 'succeeded', 'recorded in PostgreSQL');

    $res = $ng->post_json('/v1/txt2img', { inputs => { prompt => 'after reload' } },
                          wait_hdr(15));
    is($res->{json}{status}, 'succeeded', 'new runs work after the reload');
};

ensure_healthy();

subtest 'database down: 503 + Retry-After, no hang; back when it is up' => sub {
    my $mark = $ng->log_mark;
    my $zone = $ng->post_json('/v1/txt2img', { inputs => { prompt => 'in the zone', steps => 2 } },
                              wait_hdr(15));
    is($zone->{json}{status}, 'succeeded', 'a run finished before the database stops');
    my $zone_id = $zone->{json}{id} // '';
    stop_postgres();
    for my $i (1 .. 3) {
        my $t = time;
        my $res = $ng->post_json('/v1/txt2img', { inputs => { prompt => "db down $i" } },
                                 timeout => 20);
        my $el = time - $t;
        is_problem($res, 503, undef, "POST $i with the database down");
        like($res->{headers}{'retry-after'} // '', qr/^\d+$/, "POST $i: Retry-After");
        ok($el < 10, sprintf("POST $i: answered in %.2fs", $el));
    }
    my $t = time;
    my $res = $ng->get('/v1/txt2img/runs/01900000-0000-7000-8000-0000000fffff',
                       timeout => 20);
    is($res->{status}, 503, 'GET of a run only PostgreSQL could know: 503');
    ok(time - $t < 10, 'no hang');
    $res = $ng->get("/v1/txt2img/runs/$zone_id");
    is($res->{status}, 200, 'a run in the zone is still readable');

    start_postgres();
    my $deadline = time + 15;
    do {
        $res = $ng->post_json('/v1/txt2img', { inputs => { prompt => 'db back', steps => 2 } },
                              wait_hdr(15));
        sleep 0.2 unless $res->{status} == 200;
    } until $res->{status} == 200 || time > $deadline;
    is($res->{status}, 200, 'runs work again after the database is back');
    is($res->{json}{status}, 'succeeded', 'and succeed');
    is(status_of(poll_db($res->{json}{id} // '', 'succeeded')), 'succeeded',
       'and are recorded');
    no_alerts_since($mark, 'database down and back');
};

ensure_healthy();

subtest 'database down while a run runs: it ends, and is recorded once the database is back' => sub {
    faults_all({ slow => 1 });
    my $res = $ng->post_json('/v1/txt2img', { inputs => { prompt => 'db dies mid-run', steps => 2 } });
    is($res->{status}, 202, 'accepted') or do { clear_faults(); return };
    my $id = $res->{json}{id};
    # 'fast', not 'immediate': the test cluster runs synchronous_commit=off,
    # and an immediate stop may lose a commit acknowledged a moment ago
    stop_postgres('fast');
    sleep 2.5;                              # the backend is done by now
    my $t = time;
    $res = $ng->get("/v1/txt2img/runs/$id", timeout => 10);
    like($res->{status}, qr/^20[02]$/, "the run is readable from the zone ($res->{status})");
    ok(time - $t < 5, 'without a hang');
    clear_faults();
    start_postgres();
    $res = poll_run('/v1/txt2img', $id, 15);
    is($res->{json}{status}, 'succeeded', 'the run ends as succeeded');
    my $row = poll_db($id, 'succeeded', 15);
    is(status_of($row), 'succeeded',
       'PostgreSQL has the run as succeeded after the database came back')
        or diag explain $row;
};

ensure_healthy();

subtest '50 concurrent runs over both backends, each with its own files' => sub {
    my $n = 50;
    my $tag = 'conc-' . int(rand 1e9);
    my $dir = File::Temp::tempdir(CLEANUP => 1);
    my $t = time;
    my @pids;
    for my $i (0 .. $n - 1) {               # one client per run, all at once
        my $pid = fork;
        die "fork: $!" unless defined $pid;
        if (!$pid) {
            my $res = $ng->post_json('/v1/txt2img',
                { inputs => { prompt => "$tag-$i", steps => 2 } },
                headers => { Prefer => 'wait=25' }, timeout => 30);
            open my $out, '>', "$dir/$i.json" or POSIX::_exit(2);
            print $out $J->encode({ i => $i, status => $res->{status},
                                    run => $res->{json} });
            close $out;
            POSIX::_exit(0);
        }
        push @pids, $pid;
    }
    my $deadline = time + 35;
    my %left = map { $_ => 1 } @pids;
    while (%left && time < $deadline) {
        for my $p (keys %left) {
            delete $left{$p} if waitpid($p, POSIX::WNOHANG()) == $p;
        }
        sleep 0.1;
    }
    if (%left) {
        kill 'KILL', keys %left;
        waitpid($_, 0) for keys %left;
    }
    ok(!%left, sprintf('all clients done in %.1fs', time - $t));

    my @results;
    for my $i (0 .. $n - 1) {
        open my $in, '<', "$dir/$i.json" or next;
        push @results, $J->decode(scalar <$in>);
    }
    is(scalar @results, $n, "$n answers");
    my @bad = grep { $_->{status} != 200 || ($_->{run}{status} // '') ne 'succeeded' }
              @results;
    ok(@results == $n && !@bad, 'every run succeeded (200 with the finished run)')
        or diag explain [ @bad[0 .. ($#bad < 4 ? $#bad : 4)] ];
    my (%ids, %files, $own);
    $own = 0;
    for my $r (@results) {
        my $run = $r->{run} // {};
        $ids{ $run->{id} // '' }++;
        my $f = $run->{outputs}{result}[0]{filename} // '';
        $files{$f}++;
        $own++ if ($run->{inputs}{prompt} // '') eq "$tag-$r->{i}"
                  && length $f && index($f, $run->{id} // 'x') >= 0;
    }
    is(scalar keys %ids, $n, 'distinct run ids');
    is(scalar keys %files, $n, 'distinct output files');
    is($own, $n, 'each run has its own inputs and its own file');

    my (@rows, $total);
    my $until = time + 5;               # the end is recorded just after
    do {
        @rows = psql("select backend, count(*) from flowscale.runs "
                     . "where inputs->>'prompt' like '$tag-%' and status = 'succeeded' "
                     . "group by backend order by backend");
        $total = 0;
        $total += (split /\|/)[1] for @rows;
        sleep 0.2 if $total < $n;
    } while ($total < $n && time < $until);
    is($total, $n, "PostgreSQL: $n succeeded runs");
    is(scalar @rows, 2, 'spread over both backends') or diag explain \@rows;

    # the simulators saw each prompt once, with its own prefix
    my %seen;
    for my $e (grep { $_->{status} == 200 } all_prompts()) {
        my $text = $e->{prompt}{6}{inputs}{text} // '';
        next unless $text =~ /^\Q$tag\E-/;
        $seen{$text}++;
        fail("prefix of $text") unless ($e->{prompt}{9}{inputs}{filename_prefix} // '')
                                       eq "flowscale/$e->{prompt_id}";
    }
    is(scalar keys %seen, $n, 'every prompt reached a backend');
    is(scalar(grep { $_ != 1 } values %seen), 0, 'exactly once each');
};

$ng->stop;
diag(sprintf 'e2e runs.t took %.1fs', time - $T0);
done_testing;
