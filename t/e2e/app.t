# End-to-end tests of issue 9, the shareable app at L/app/: the page and
# its routes over HTTP, Gradio's protocol with the real @gradio/client
# (t/js/gradio.mjs), and the page in headless Chromium driven by
# playwright-core (t/js/app-browser.mjs, screenshots in build/artefacts/).
# Real nginx, PostgreSQL and ComfyUI simulators.
#
#   make test-app     (installs the npm packages into build/npm first)

use strict;
use warnings;

use Test::More;
use JSON::PP ();
use Cwd ();
use File::Basename ();
use Time::HiRes qw(time);

use FlowScale::Fixture qw(postgres simulator sim_faults);
use FlowScale::Nginx;

plan skip_all => 'TEST_NGINX_LOAD_MODULES (the module .so) is not set'
    unless $ENV{TEST_NGINX_LOAD_MODULES};

my $Top = Cwd::abs_path(File::Basename::dirname(__FILE__) . '/../..');
my $NodeModules = $ENV{FLOWSCALE_NODE_MODULES} // "$Top/build/npm/node_modules";
my $Root = $FlowScale::Nginx::Root;
my $WF = "$Root/conf/workflows";
my $J = JSON::PP->new->utf8->canonical->allow_nonref;

postgres();
simulator('sim1', step_time => 0.05);
simulator('simbad', step_time => 0.01);
sim_faults('simbad', { fail_node => 'KSampler',
                       fail_message => 'Simulated failure in KSampler' });

my $HTTP = <<"HTTP";
    flowscale_database "\$TEST_NGINX_PG_DSN" pool=4;
    flowscale_zone flowscale:16m;

    upstream comfyui { server 127.0.0.1:\$TEST_NGINX_SIM1_PORT; }
    upstream bad     { server 127.0.0.1:\$TEST_NGINX_SIMBAD_PORT; }

    server {
        listen 127.0.0.1:\@PORT\@ reuseport;
        client_max_body_size 8m;

        location /v1/txt2img {
            flowscale_deployment txt2img;
            flowscale_workflow   $WF/txt2img.json;
            flowscale_input      prompt  6.text   label="Prompt" required;
            flowscale_input      seed    3.seed   default=random;
            flowscale_input      steps   3.steps  min=1 max=50;
            flowscale_input      sampler 3.sampler_name options=euler|ddim;
            flowscale_output     result  9 label="Result";
            flowscale_backend    comfyui;
            flowscale_app        public;
        }

        location /v1/invert {
            flowscale_deployment invert;
            flowscale_workflow   $WF/invert.json;
            flowscale_input      image  10.image  type=image required;
            flowscale_input      size   11.width  min=16 max=1024;
            flowscale_output     inverted 14;
            flowscale_backend    comfyui;
            flowscale_app        public;
        }

        location /v1/broken {
            flowscale_deployment broken;
            flowscale_workflow   $WF/txt2img.json;
            flowscale_input      prompt  6.text   required;
            flowscale_output     result  9;
            flowscale_backend    bad;
            flowscale_app        public;
        }

        location /v1/keyed {
            flowscale_deployment keyed;
            flowscale_workflow   $WF/txt2img.json;
            flowscale_input      prompt  6.text   required;
            flowscale_output     result  9;
            flowscale_backend    comfyui;
            flowscale_app        on;
        }

        location /v1/noapp {
            flowscale_deployment noapp;
            flowscale_workflow   $WF/txt2img.json;
            flowscale_output     result  9;
            flowscale_backend    comfyui;
        }
    }
HTTP

my $ng = FlowScale::Nginx->new(name => 'nginx', timeout => 15, http => $HTTP);
my $base = $ng->base_url;

# wait until the deployments are ready (capabilities read)
for (1 .. 100) {
    my $d = $ng->get('/v1/txt2img');
    last if $d->{status} == 200 && $d->{content} =~ /"ready"/;
    select undef, undef, undef, 0.1;
}

# ---- the page and its routes ------------------------------------------

{
    my $r = $ng->get('/v1/txt2img/app');
    is($r->{status}, 301, 'L/app redirects');
    like($r->{headers}{location} // '', qr{/v1/txt2img/app/$},
         '... to L/app/');

    $r = $ng->get('/v1/txt2img/app/');
    is($r->{status}, 200, 'the page');
    like($r->{headers}{'content-type'}, qr{^text/html}, '... is HTML');
    unlike($r->{content}, qr{https?://(?!www\.w3\.org)}i,
           '... refers to nothing outside (no CDN)');

    for my $f (qw(app.js app.css)) {
        $r = $ng->get("/v1/txt2img/app/$f");
        is($r->{status}, 200, "$f is served");
    }

    $r = $ng->get('/v1/txt2img/app/app.json');
    my $app = $J->decode($r->{content});
    is($app->{mode}, 'public', 'app.json: public');
    is(join(',', map { $_->{name} } @{ $app->{inputs} }),
       'prompt,seed,steps,sampler', 'app.json: the inputs in order');
    is($app->{inputs}[2]{maximum}, 50, 'app.json: a range');

    is($ng->get('/v1/noapp/app/')->{status}, 404, 'flowscale_app off: 404');
    is($ng->get('/v1/keyed/app/')->{status}, 200, 'flowscale_app on: a page');
    is($J->decode($ng->get('/v1/keyed/app/app.json')->{content})->{mode},
       'on', '... that asks for a key');
    is($ng->post_json('/v1/keyed/app/runs', { inputs => { prompt => 'x' } })
          ->{status}, 404, '... and has no keyless run route');
    is($ng->post_json('/v1/keyed', { inputs => { prompt => 'x' } })->{status},
       401, '... the API it uses needs a key');

    # public: runs through POST L's path, errors as the API's 422
    $r = $ng->post_json('/v1/txt2img/app/runs',
                        { inputs => { prompt => 'x', steps => 99 } });
    is($r->{status}, 422, 'public app: a 422 for a bad input');
    like($r->{content}, qr/"input":\s*"steps"/, '... naming it');

    $r = $ng->post_json('/v1/txt2img/app/runs',
                        { inputs => { prompt => 'a cat', steps => 2 } });
    is($r->{status}, 202, 'public app: a run without a key');
    my $run = $J->decode($r->{content});
    my $ev = $ng->get("/v1/txt2img/app/runs/$run->{id}/events", timeout => 15);
    like($ev->{content}, qr/event: succeeded/, '... its events end');
    my $out = $ng->get("/v1/txt2img/app/runs/$run->{id}/outputs/result/0");
    is($out->{status}, 200, '... its output is served');
}

# ---- Gradio's cancel: the run stops, its stream says so -----------------

{
    sim_faults('sim1', { slow => 4 });
    my $hash = 'cancel' . int(rand(1e9));
    my $r = $ng->post_json('/v1/txt2img/app/gradio_api/queue/join',
                           { data => ['a cat to cancel', 1, 20, 'euler'],
                             fn_index => 0, trigger_id => 1,
                             session_hash => $hash, event_data => undef });
    is($r->{status}, 200, 'gradio: queue/join');
    my $eid = eval { $J->decode($r->{content})->{event_id} } // '';
    select undef, undef, undef, 0.5;
    $r = $ng->post_json('/v1/txt2img/app/gradio_api/cancel',
                        { event_id => $eid, session_hash => $hash,
                          fn_index => 0 });
    is($r->{status}, 200, 'gradio: cancel');
    is(eval { $J->decode($r->{content})->{success} } ? 1 : 0, 1,
       '... {"success": true}');
    my $t0 = time;
    my $data = $ng->get("/v1/txt2img/app/gradio_api/queue/data?session_hash=$hash",
                        timeout => 15);
    like($data->{content} // '', qr/"msg":\s*"process_completed"/,
         '... the stream completes');
    like($data->{content} // '', qr/The run was canceled/, '... canceled');
    ok(time - $t0 < 3, '... before the run would have ended');
    my $run = $J->decode($ng->get("/v1/txt2img/app/runs/$eid")->{content} // '{}');
    is($run->{status}, 'canceled', 'the run is canceled');
    is($ng->post_json('/v1/txt2img/app/gradio_api/cancel', { session_hash => $hash })
          ->{status}, 400, 'gradio: cancel without event_id is 400');
    sim_faults('sim1', { slow => 0 });
}

# ---- Gradio's protocol: the real @gradio/client ------------------------

SKIP: {
    skip "npm packages not installed ($NodeModules): make deps", 1
        unless -d "$NodeModules/\@gradio/client";

    local $ENV{NODE_PATH} = $NodeModules;
    my @out = `node $Top/t/js/gradio.mjs $base 2>&1`;
    my $rc = $? >> 8;
    my $seen = 0;
    for (@out) {
        chomp;
        if (/^(not )?ok \d+ - (.*)$/) {
            ok(!$1, "gradio: $2");
            $seen++;
        } elsif (/^#/) {
            diag($_);
        } elsif (!/^1\.\.\d+$/) {
            note($_);
        }
    }
    ok($seen >= 10 && $rc == 0, "t/js/gradio.mjs ran to the end ($seen checks, "
                                . "exit $rc)");
}

# ---- the page in headless Chromium --------------------------------------

SKIP: {
    skip 'chromium or playwright-core missing: make deps', 1
        unless -x '/usr/bin/chromium'
               && -d "$NodeModules/playwright-core";

    local $ENV{NODE_PATH} = $NodeModules;
    my $art = "$Top/build/artefacts";
    system('mkdir', '-p', $art);
    my @out = `node $Top/t/js/app-browser.mjs $base $art 2>&1`;
    my $rc = $? >> 8;
    my $seen = 0;
    for (@out) {
        chomp;
        if (/^(not )?ok \d+ - (.*)$/) {
            ok(!$1, "browser: $2");
            $seen++;
        } elsif (/^#/) {
            diag($_);
        } elsif (!/^1\.\.\d+$/) {
            note($_);
        }
    }
    ok($seen >= 5 && $rc == 0, "t/js/app-browser.mjs ran to the end ($seen "
                               . "checks, exit $rc)");
}

$ng->stop;
done_testing();
