# Issue 8: the OpenAPI 3.1 documents (GET L/openapi.json, flowscale_openapi)
# and the Swagger UI page (flowscale_docs).  Each block picks key parts of
# a document as "path = JSON value" lines (pick() below) and compares them.

use Test::Nginx::Socket 'no_plan';

no_shuffle();

# a workflow with a slot for every input type
our $WF = <<'_EOC_';
{"3": {"class_type": "KSampler", "inputs": {"seed": 42, "steps": 20, "cfg": 7.5,
       "sampler_name": "euler", "denoise": 1, "model": ["4", 0]}},
 "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}},
 "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]}},
 "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x", "images": ["3", 0]}},
 "10": {"class_type": "LoadImage", "inputs": {"image": "example.png"}},
 "11": {"class_type": "LoadVideo", "inputs": {"file": "clip.mp4"}},
 "12": {"class_type": "LoadAudio", "inputs": {"audio": "voice.wav"}},
 "13": {"class_type": "LoadFile", "inputs": {"path": "data.bin"}},
 "14": {"class_type": "PrimitiveBoolean", "inputs": {"value": true}},
 "15": {"class_type": "SaveText", "inputs": {"text": ["6", 0]}}}
_EOC_

our $EVERY = <<'_EOC_';
    location /v1/every {
        flowscale_deployment every;
        flowscale_workflow $TEST_NGINX_SERVER_ROOT/html/wf.json;
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
        flowscale_output caption 15;
        flowscale_backend comfyui;
    }
_EOC_

# the JSON values at the given paths ("a/b/0/c"; "~1" is "/"), one a line
sub main::pick {
    my @paths = @_;
    require JSON::PP;
    my $json = JSON::PP->new->utf8->canonical->allow_nonref;
    return sub {
        my $doc = eval { $json->decode($_[0]) };
        return "not JSON: $@" unless defined $doc;
        my $out = '';
        for my $p (@paths) {
            my $v = $doc;
            for my $k (split m{/}, $p) {
                $k =~ s/~1/\//g;
                $v = ref $v eq 'ARRAY' ? $v->[$k]
                   : ref $v eq 'HASH' ? $v->{$k} : undef;
            }
            $out .= "$p = " . (defined $v ? $json->encode($v) : 'missing')
                    . "\n";
        }
        return $out;
    };
}

# the operations of a document: "METHOD PATH: codes"
sub main::operations {
    require JSON::PP;
    my $json = JSON::PP->new->utf8->canonical;
    return sub {
        my $doc = $json->decode($_[0]);
        my $out = '';
        for my $path (sort keys %{ $doc->{paths} }) {
            for my $m (qw(get post delete)) {
                my $op = $doc->{paths}{$path}{$m} or next;
                $out .= uc($m) . " $path: "
                        . join(' ', sort keys %{ $op->{responses} })
                        . ($op->{security} && @{ $op->{security} }
                           ? ' (key)' : '') . "\n";
            }
        }
        return $out;
    };
}

add_block_preprocessor(sub {
    my $block = shift;

    if (!defined $block->http_config) {
        $block->set_value("http_config", <<'_EOC_');
    flowscale_database "hostaddr=127.0.0.1 port=5432 dbname=flowscale user=flowscale";
    upstream comfyui { server 127.0.0.1:8188; }
_EOC_
    }

    if (!defined $block->user_files) {
        $block->set_value("user_files", ">>> wf.json\n$main::WF"
            . ">>> swagger/swagger-ui-bundle.js\n/* a stand-in */\n"
            . ">>> swagger/swagger-ui.css\nbody { }\n");
    }

    if (!defined $block->no_error_log) {
        $block->set_value("no_error_log", "[alert]\n[emerg]\n[crit]");
    }
});

run_tests();

__DATA__

=== TEST 1: the document of a deployment with every input type: the inputs
--- config eval: $main::EVERY
--- request
GET /v1/every/openapi.json
--- more_headers
Host: api.example.com:8443
--- response_headers
Content-Type: application/json
--- response_body_filters eval
main::pick(qw(openapi servers info/title
              components/schemas/every.Inputs/properties/prompt
              components/schemas/every.Inputs/properties/seed
              components/schemas/every.Inputs/properties/steps
              components/schemas/every.Inputs/properties/cfg
              components/schemas/every.Inputs/properties/sampler
              components/schemas/every.Inputs/properties/denoise
              components/schemas/every.Inputs/properties/flag
              components/schemas/every.Inputs/properties/image
              components/schemas/every.Inputs/properties/video/contentMediaType
              components/schemas/every.Inputs/properties/audio/contentMediaType
              components/schemas/every.Inputs/properties/file/contentMediaType
              components/schemas/every.Inputs/required
              components/schemas/every.Inputs/additionalProperties))
--- response_body
openapi = "3.1.0"
servers = [{"url":"http://api.example.com:8443"}]
info/title = "FlowScale deployment every"
components/schemas/every.Inputs/properties/prompt = {"description":"What to draw","title":"Prompt","type":"string"}
components/schemas/every.Inputs/properties/seed = {"description":"Drawn at random for each run when not given","title":"seed","type":"integer"}
components/schemas/every.Inputs/properties/steps = {"default":20,"maximum":50,"minimum":1,"title":"Steps","type":"integer"}
components/schemas/every.Inputs/properties/cfg = {"default":7.5,"maximum":20,"minimum":0.5,"title":"cfg","type":"number"}
components/schemas/every.Inputs/properties/sampler = {"default":"euler","enum":["euler","ddim","dpmpp_2m"],"title":"sampler","type":"string"}
components/schemas/every.Inputs/properties/denoise = {"default":1,"title":"denoise","type":"number"}
components/schemas/every.Inputs/properties/flag = {"default":true,"title":"Flag","type":"boolean"}
components/schemas/every.Inputs/properties/image = {"contentEncoding":"base64","contentMediaType":"image/*","description":"A file part in multipart/form-data, or a data: URL or base64 string in JSON","title":"Source image","type":"string"}
components/schemas/every.Inputs/properties/video/contentMediaType = "video/*"
components/schemas/every.Inputs/properties/audio/contentMediaType = "audio/*"
components/schemas/every.Inputs/properties/file/contentMediaType = "application/octet-stream"
components/schemas/every.Inputs/required = ["prompt","image"]
components/schemas/every.Inputs/additionalProperties = false



=== TEST 2: the request bodies: JSON, multipart (files as binary), urlencoded
--- config eval: $main::EVERY
--- request
GET /v1/every/openapi.json
--- response_body_filters eval
main::pick(map { "paths/~1v1~1every/post/requestBody/content/$_" }
    'application~1json/schema',
    'application~1json/example/inputs/prompt',
    'application~1json/example/inputs/steps',
    'application~1json/example/inputs/cfg',
    'application~1json/example/inputs/sampler',
    'application~1json/example/inputs/flag',
    'application~1json/example/inputs/seed',
    'multipart~1form-data/schema/properties/image',
    'multipart~1form-data/schema/properties/video/format',
    'multipart~1form-data/schema/properties/steps/type',
    'multipart~1form-data/schema/required',
    'application~1x-www-form-urlencoded/example/steps',
    'application~1x-www-form-urlencoded/example/flag')
--- response_body
paths/~1v1~1every/post/requestBody/content/application~1json/schema = {"$ref":"#/components/schemas/every.RunRequest"}
paths/~1v1~1every/post/requestBody/content/application~1json/example/inputs/prompt = "a cat"
paths/~1v1~1every/post/requestBody/content/application~1json/example/inputs/steps = 20
paths/~1v1~1every/post/requestBody/content/application~1json/example/inputs/cfg = 7.5
paths/~1v1~1every/post/requestBody/content/application~1json/example/inputs/sampler = "euler"
paths/~1v1~1every/post/requestBody/content/application~1json/example/inputs/flag = true
paths/~1v1~1every/post/requestBody/content/application~1json/example/inputs/seed = missing
paths/~1v1~1every/post/requestBody/content/multipart~1form-data/schema/properties/image = {"contentMediaType":"image/*","description":"The file, as a file part.","format":"binary","title":"Source image","type":"string"}
paths/~1v1~1every/post/requestBody/content/multipart~1form-data/schema/properties/video/format = "binary"
paths/~1v1~1every/post/requestBody/content/multipart~1form-data/schema/properties/steps/type = "integer"
paths/~1v1~1every/post/requestBody/content/multipart~1form-data/schema/required = ["prompt","image"]
paths/~1v1~1every/post/requestBody/content/application~1x-www-form-urlencoded/example/steps = "20"
paths/~1v1~1every/post/requestBody/content/application~1x-www-form-urlencoded/example/flag = "true"



=== TEST 3: every route with its status codes; a key on run routes only
--- config eval: $main::EVERY
--- request
GET /v1/every/openapi.json
--- response_body_filters eval
main::operations()
--- response_body
GET /v1/every: 200
POST /v1/every: 200 202 400 401 403 413 415 422 429 502 503 (key)
GET /v1/every/openapi.json: 200
GET /v1/every/runs: 200 400 401 403 503 (key)
GET /v1/every/runs/{id}: 200 401 403 404 503 (key)
DELETE /v1/every/runs/{id}: 200 401 403 404 409 503 (key)
GET /v1/every/runs/{id}/events: 200 401 403 404 503 (key)
GET /v1/every/runs/{id}/outputs/{name}/{n}: 200 206 401 403 404 502 503 (key)



=== TEST 4: headers, schemes, the run, the list, events, problems
--- config eval: $main::EVERY
--- request
GET /v1/every/openapi.json
--- response_body_filters eval
main::pick(qw(paths/~1v1~1every/post/parameters/0/name
              paths/~1v1~1every/post/parameters/1/name
              paths/~1v1~1every/post/security
              components/securitySchemes
              paths/~1v1~1every/post/responses/202/headers/Location/schema
              paths/~1v1~1every/post/responses/202/content/application~1json/example/status
              paths/~1v1~1every/post/responses/200/content/application~1json/example/outputs/result/0/url
              paths/~1v1~1every~1runs~1{id}~1outputs~1{name}~1{n}/parameters/1/schema/enum
              paths/~1v1~1every~1runs/get/parameters/1/schema
              paths/~1v1~1every~1runs~1{id}~1events/get/responses/200/content/text~1event-stream/schema/type
              components/schemas/RunList/required
              components/schemas/Run/properties/status
              components/schemas/RunStatus/enum
              components/schemas/Problem/required
              components/schemas/Problem/properties/errors/items
              components/responses/TooManyRequests/content/application~1problem+json/example/type
              components/responses/Unprocessable/content/application~1problem+json/example/errors/0/code))
--- response_body
paths/~1v1~1every/post/parameters/0/name = "Prefer"
paths/~1v1~1every/post/parameters/1/name = "Idempotency-Key"
paths/~1v1~1every/post/security = [{"bearerAuth":[]},{"apiKeyHeader":[]}]
components/securitySchemes = {"apiKeyHeader":{"description":"The same API key as `X-API-Key: fs_...`.","in":"header","name":"X-API-Key","type":"apiKey"},"bearerAuth":{"description":"An API key of the deployment's project as `Authorization: Bearer fs_...`.","scheme":"bearer","type":"http"}}
paths/~1v1~1every/post/responses/202/headers/Location/schema = {"format":"uri-reference","type":"string"}
paths/~1v1~1every/post/responses/202/content/application~1json/example/status = "queued"
paths/~1v1~1every/post/responses/200/content/application~1json/example/outputs/result/0/url = "/v1/every/runs/0193a4c2-7d3e-7a61-9c1f-3b5e2d4f6a80/outputs/result/0"
paths/~1v1~1every~1runs~1{id}~1outputs~1{name}~1{n}/parameters/1/schema/enum = ["result","caption"]
paths/~1v1~1every~1runs/get/parameters/1/schema = {"default":20,"maximum":200,"minimum":1,"type":"integer"}
paths/~1v1~1every~1runs~1{id}~1events/get/responses/200/content/text~1event-stream/schema/type = "string"
components/schemas/RunList/required = ["runs","next_cursor"]
components/schemas/Run/properties/status = {"$ref":"#/components/schemas/RunStatus"}
components/schemas/RunStatus/enum = ["queued","running","succeeded","failed","canceled"]
components/schemas/Problem/required = ["type","title","status"]
components/schemas/Problem/properties/errors/items = {"$ref":"#/components/schemas/ProblemError"}
components/responses/TooManyRequests/content/application~1problem+json/example/type = "urn:flowscale:problem:too-many-runs"
components/responses/Unprocessable/content/application~1problem+json/example/errors/0/code = "range"



=== TEST 5: no key needed for the document, HEAD too; other methods refused
--- config eval: $main::EVERY
--- request eval
["HEAD /v1/every/openapi.json", "POST /v1/every/openapi.json\n{}"]
--- error_code eval
[200, 405]
--- response_headers eval
["Content-Type: application/json", "Allow: GET, HEAD"]



=== TEST 6: flowscale_api_key off: a public deployment has no security at all
--- config
    flowscale_api_key off;
    location /v1/open/ {
        flowscale_deployment open;
        flowscale_workflow $TEST_NGINX_SERVER_ROOT/html/wf.json;
        flowscale_input prompt 6.text;
        flowscale_output result 9;
        flowscale_backend comfyui;
    }
--- request
GET /v1/open/openapi.json
--- response_body_filters eval
main::operations()
--- response_body
GET /v1/open/: 200
POST /v1/open/: 200 202 400 413 415 422 429 502 503
GET /v1/open/openapi.json: 200
GET /v1/open/runs: 200 400 503
GET /v1/open/runs/{id}: 200 404 503
DELETE /v1/open/runs/{id}: 200 404 409 503
GET /v1/open/runs/{id}/events: 200 404 503
GET /v1/open/runs/{id}/outputs/{name}/{n}: 200 206 404 502 503



=== TEST 7: flowscale_openapi: every deployment of this server, and only it
--- http_config
    flowscale_database "hostaddr=127.0.0.1 port=5432 dbname=flowscale user=flowscale";
    upstream comfyui { server 127.0.0.1:8188; }
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location /other {
            flowscale_deployment other;
            flowscale_workflow $TEST_NGINX_SERVER_ROOT/html/wf.json;
            flowscale_output result 9;
            flowscale_backend comfyui;
        }
    }
--- config eval
$main::EVERY . <<'_EOC_';
    location /v2/small {
        flowscale_deployment small;
        flowscale_workflow $TEST_NGINX_SERVER_ROOT/html/wf.json;
        flowscale_input prompt 6.text required;
        flowscale_output result 9;
        flowscale_backend comfyui;
        flowscale_api_key off;
    }
    location = /openapi.json { flowscale_openapi; }
_EOC_
--- request
GET /openapi.json
--- more_headers
X-Forwarded-Proto: https
Host: docs.example.com
--- response_body_filters eval
sub {
    my $doc = JSON::PP->new->utf8->decode($_[0]);
    return CORE::join("\n", "servers: $doc->{servers}[0]{url}",
                "title: $doc->{info}{title}",
                "version: " . ($doc->{info}{version} =~ /^[0-9a-f]{8}$/ ? 'ok' : $doc->{info}{version}),
                "tags: " . CORE::join(' ', map { $_->{name} } @{ $doc->{tags} }),
                "paths: " . CORE::join(' ', sort grep { !m{/runs/} } keys %{ $doc->{paths} }),
                "small is public: " . (@{ $doc->{paths}{'/v2/small'}{post}{security} } ? 'no' : 'yes'),
                "every needs a key: " . (@{ $doc->{paths}{'/v1/every'}{post}{security} } ? 'yes' : 'no'),
                "schemas: " . CORE::join(' ', grep { /\./ } sort keys %{ $doc->{components}{schemas} }))
           . "\n";
}
--- response_body
servers: https://docs.example.com
title: FlowScale API: every, small
version: ok
tags: every small
paths: /v1/every /v1/every/openapi.json /v1/every/runs /v2/small /v2/small/openapi.json /v2/small/runs
small is public: yes
every needs a key: yes
schemas: every.Inputs every.Run every.RunRequest small.Inputs small.Run small.RunRequest



=== TEST 8: flowscale_docs: the page loads Swagger UI from its own location
--- config eval
$main::EVERY . <<'_EOC_';
    location = /openapi.json { flowscale_openapi; }
    location /docs/ { flowscale_docs assets=$TEST_NGINX_SERVER_ROOT/html/swagger; }
_EOC_
--- request eval
["GET /docs/", "GET /docs/flowscale-docs.js", "GET /docs/swagger-ui-bundle.js",
 "GET /docs/swagger-ui.css", "GET /docs/index.js", "GET /docs/swagger-ui.css.map"]
--- error_code eval
[200, 200, 200, 200, 404, 404]
--- response_headers eval
["Content-Type: text/html; charset=utf-8",
 "Content-Type: application/javascript; charset=utf-8",
 "Content-Type: application/javascript",
 "Content-Type: text/css", "", ""]
--- response_body_like eval
[qr{<link rel="stylesheet" href="/docs/swagger-ui.css">.*<script src="/docs/swagger-ui-bundle.js"></script>.*<script src="/docs/flowscale-docs.js"></script>}s,
 qr{^/\*.*\nwindow\.ui = SwaggerUIBundle\(Object\.assign\(\{[^\n]*"persistAuthorization":true[^\n]*"url":"/openapi\.json"\}, \{.*layout: "BaseLayout"}s,
 qr{^/\* a stand-in \*/$},
 qr{^body \{ \}$}, qr{.}, qr{.}]
--- no_error_log
[alert]
[emerg]
[crit]



=== TEST 9: flowscale_docs without a server document: each deployment's, in a list
--- config eval
$main::EVERY . <<'_EOC_';
    location /v2/small {
        flowscale_deployment small;
        flowscale_workflow $TEST_NGINX_SERVER_ROOT/html/wf.json;
        flowscale_output result 9;
        flowscale_backend comfyui;
    }
    location /docs { flowscale_docs assets=$TEST_NGINX_SERVER_ROOT/html/swagger/; }
_EOC_
--- request
GET /docs/flowscale-docs.js
--- response_body_like
"urls":\[\{"url":"/v1/every/openapi.json","name":"every"\},\{"url":"/v2/small/openapi.json","name":"small"\}\].*layout: "StandaloneLayout"



=== TEST 10: flowscale_docs url=: the given document; /docs redirects to /docs/
--- config eval
$main::EVERY . <<'_EOC_';
    location /docs/ { flowscale_docs url=/v1/every/openapi.json assets=$TEST_NGINX_SERVER_ROOT/html/swagger; }
_EOC_
--- request eval
["GET /docs/flowscale-docs.js", "GET /docs"]
--- error_code eval
[200, 301]
--- response_body_like eval
[qr{"url":"/v1/every/openapi.json"}, qr{.*}]



=== TEST 11: flowscale_docs without Swagger UI's files is a deploy error
--- config
    location /docs/ { flowscale_docs assets=/nonexistent/swagger-ui; }
--- must_die
--- error_log
flowscale_docs: no Swagger UI in "/nonexistent/swagger-ui"
--- no_error_log
[alert]



=== TEST 12: flowscale_docs only in a prefix location, with known parameters
--- config
    location = /docs { flowscale_docs assets=$TEST_NGINX_SERVER_ROOT/html/swagger; }
--- must_die
--- error_log
flowscale_docs must be in a plain prefix location
--- no_error_log
[alert]



=== TEST 13: an unknown flowscale_docs parameter
--- config
    location /docs/ { flowscale_docs theme=dark; }
--- must_die
--- error_log
flowscale_docs: unknown parameter "theme=dark"
--- no_error_log
[alert]
