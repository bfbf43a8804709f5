# Issue 8 end to end: the OpenAPI documents of every deployment in
# conf/nginx.conf and of the test configuration (t/007-openapi.t's
# deployment with every input type) pass `redocly lint --extends spec`,
# and the docs page (Swagger UI) works in headless Chromium: it renders
# the operations, and "Try it out" of POST /v1/txt2img with a key is 202
# (t/js/docs-browser.mjs; screenshot in build/artefacts/docs.png).
#
#   make deps    # build/npm: swagger-ui-dist, @redocly/cli, playwright-core
#   TEST_NGINX_LOAD_MODULES=build/ngx_http_flowscale_module.so \
#       prove -It/lib t/e2e/docs.t

use strict;
use warnings;

use Test::More;
use File::Path ();
use JSON::PP ();
use Time::HiRes qw(time sleep);

use FlowScale::Fixture qw(postgres psql simulator free_port);
use FlowScale::Nginx;

plan skip_all => 'TEST_NGINX_LOAD_MODULES (the module .so) is not set'
    unless $ENV{TEST_NGINX_LOAD_MODULES};

my $Top = $FlowScale::Nginx::Root;
my $NodeModules = $ENV{FLOWSCALE_NODE_MODULES} // "$Top/build/npm/node_modules";
my $SwaggerUI = "$NodeModules/swagger-ui-dist";
my $Redocly = "$NodeModules/.bin/redocly";
my $Art = "$Top/build/artefacts";
my $J = JSON::PP->new->utf8->canonical->pretty;

plan skip_all => "no $SwaggerUI: run make deps"
    unless -f "$SwaggerUI/swagger-ui-bundle.js" && -x $Redocly;

postgres();
simulator('sim1', step_time => 0.05);

psql("select flowscale.create_project('demo')");
my $key = psql("select flowscale.create_api_key('demo', 'docs')");
like $key, qr/^fs_\w+_\S+$/, 'a key of project demo';

# conf/nginx.conf's http{} as `make run` rewrites it: database, backends,
# port, workflow and Swagger UI paths
open my $in, '<', "$Top/conf/nginx.conf" or die "conf/nginx.conf: $!";
my $conf = do { local $/; <$in> };
close $in;
my ($http) = $conf =~ /^http \{\n(.*)\}\s*$/ms or die "no http{} in conf";
$http =~ s/^\s*(?:access_log|default_type) [^\n]*\n//mg;
$http =~ s/flowscale_database "[^"]*"/flowscale_database "\$TEST_NGINX_PG_DSN"/;
$http =~ s/^(\s*)server 127\.0\.0\.1:8188;\n\s*server 127\.0\.0\.1:8189;/$1server 127.0.0.1:\$TEST_NGINX_SIM1_PORT;/m;
$http =~ s/listen 8080;/listen 127.0.0.1:\@PORT\@;/;
$http =~ s{workflows/}{$Top/conf/workflows/}g;
$http =~ s{assets=swagger-ui;}{assets=$SwaggerUI;};

# the test configuration's deployment with every input type
my $port2 = free_port();
my $every = <<"WF";
{"3": {"class_type": "KSampler", "inputs": {"seed": 42, "steps": 20, "cfg": 7.5,
       "sampler_name": "euler", "denoise": 1, "model": ["4", 0]}},
 "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}},
 "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]}},
 "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x", "images": ["3", 0]}},
 "10": {"class_type": "LoadImage", "inputs": {"image": "example.png"}},
 "11": {"class_type": "LoadVideo", "inputs": {"file": "clip.mp4"}},
 "12": {"class_type": "LoadAudio", "inputs": {"audio": "voice.wav"}},
 "13": {"class_type": "LoadFile", "inputs": {"path": "data.bin"}},
 "14": {"class_type": "PrimitiveBoolean", "inputs": {"value": true}}}
WF

$http .= <<"HTTP";
    server {
        listen 127.0.0.1:$port2;
        location /v1/every {
            flowscale_deployment every;
            flowscale_workflow every.json;
            flowscale_input prompt  6.text label="Prompt" description="What to draw" required;
            flowscale_input seed    3.seed default=random;
            flowscale_input steps   3.steps min=1 max=50 label="Steps";
            flowscale_input cfg     3.cfg min=0.5 max=20;
            flowscale_input sampler 3.sampler_name options=euler|ddim|dpmpp_2m;
            flowscale_input denoise 3.denoise type=number;
            flowscale_input flag    14.value label="Flag";
            flowscale_input image   10.image type=image required label="Source image";
            flowscale_input video   11.file type=video;
            flowscale_input audio   12.audio type=audio;
            flowscale_input file    13.path type=file;
            flowscale_output result 9 label="Result";
            flowscale_backend comfyui;
        }
        location /v1/open/ {
            flowscale_deployment open;
            flowscale_workflow every.json;
            flowscale_input prompt 6.text;
            flowscale_output result 9;
            flowscale_backend comfyui;
            flowscale_api_key off;
        }
        location = /openapi.json { flowscale_openapi; }
    }
HTTP

my $ng = FlowScale::Nginx->new(http => $http, files => { 'every.json' => $every });

# --- every document, linted -------------------------------------------------

File::Path::make_path("$Art/openapi");
my @files;

sub fetch_doc {
    my ($base, $path, $name) = @_;
    my $res = HTTP::Tiny->new(timeout => 10)->get("$base$path");
    is $res->{status}, 200, "GET $base$path";
    my $doc = eval { JSON::PP->new->utf8->decode($res->{content}) };
    ok $doc, "$path is JSON" or return;
    is $doc->{openapi}, '3.1.0', "$path is OpenAPI 3.1";
    my $file = "$Art/openapi/$name.json";
    open my $out, '>', $file or die "$file: $!";
    print $out $J->encode($doc);
    close $out;
    push @files, $file;
    return $doc;
}

for my $base ($ng->base_url, "http://127.0.0.1:$port2") {
    my $server = fetch_doc($base, '/openapi.json',
                           $base eq $ng->base_url ? 'conf-server' : 'test-server')
        or next;
    is $server->{servers}[0]{url}, $base, "servers: $base (the request's own)";
    for my $p (sort grep { m{/openapi\.json$} } keys %{ $server->{paths} }) {
        (my $name = $p) =~ s{^/|/openapi\.json$}{}g;
        $name =~ s{/}{-}g;
        fetch_doc($base, $p, $name);
    }
}

is scalar(@files), 7, 'documents: 2 server documents and 5 deployments';

{
    my @cmd = ($Redocly, 'lint', '--extends', 'spec', '--format', 'stylish',
               @files);
    my $out = `@{[ join ' ', map { "'$_'" } @cmd ]} 2>&1`;
    my $rc = $? >> 8;
    is $rc, 0, 'redocly lint --extends spec: every document is valid'
        or diag $out;
    # the recommended rules too, for information only
    my $rec = `'$Redocly' lint --format summary @{[ join ' ', map { "'$_'" } @files ]} 2>&1`;
    note "redocly lint (recommended):\n$rec" if $ENV{TEST_VERBOSE};
}

# --- the docs page in headless Chromium -------------------------------------

SKIP: {
    skip 'no /usr/bin/chromium', 1 unless -x '/usr/bin/chromium';

    # the deployment is ready once the simulator's /object_info was read
    my $deadline = time + 20;
    my $state = '';
    while (time < $deadline) {
        my $res = $ng->get('/v1/txt2img');
        $state = $res->{json}{state} // '';
        last if $state eq 'ready';
        sleep 0.2;
    }
    is $state, 'ready', 'txt2img is ready';

    local $ENV{NODE_PATH} = $NodeModules;
    my $base = $ng->base_url;
    my @out = `node $Top/t/js/docs-browser.mjs $base '$key' $Art 2>&1`;
    my $rc = $? >> 8;
    my $tap = join '', @out;
    note $tap;
    for (@out) {
        if (/^(not )?ok \d+ - (.*)$/) {
            ok !$1, "browser: $2";
        }
    }
    is $rc, 0, 'the browser test passed' or diag $tap;
    ok -s "$Art/docs.png", "screenshot: $Art/docs.png";

    # the run that Swagger UI created is a run of the demo key's project
    my $runs = $ng->get('/v1/txt2img/runs',
                        headers => { Authorization => "Bearer $key" });
    is $runs->{status}, 200, 'GET /v1/txt2img/runs with the key';
    ok scalar @{ $runs->{json}{runs} // [] } >= 1, 'the run is in the log';
}

$ng->stop;
done_testing;
