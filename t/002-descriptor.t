# GET L answers the deployment descriptor: name, version, state, inputs
# with their JSON Schema, outputs and links.

use Test::Nginx::Socket 'no_plan';
use Cwd qw(abs_path);

$ENV{TEST_NGINX_WORKFLOWS} ||= abs_path('conf/workflows');

no_shuffle();

add_block_preprocessor(sub {
    my $block = shift;

    if (!defined $block->http_config) {
        $block->set_value("http_config", <<'_EOC_');
    flowscale_database "hostaddr=127.0.0.1 port=5432 dbname=flowscale user=flowscale";
    upstream comfyui { server 127.0.0.1:8188; }
_EOC_
    }

    if (!defined $block->no_error_log) {
        $block->set_value("no_error_log", "[alert]\n[emerg]\n[crit]");
    }
});

run_tests();

__DATA__

=== TEST 1: the descriptor of a text-to-image deployment
--- config
    location /v1/txt2img {
        flowscale_deployment txt2img;
        flowscale_workflow $TEST_NGINX_WORKFLOWS/txt2img.json;
        flowscale_input prompt 6.text label="Prompt" description="What to draw" required;
        flowscale_input seed 3.seed default=random;
        flowscale_input steps 3.steps min=1 max=50;
        flowscale_input cfg 3.cfg min=0.5 max=20;
        flowscale_input sampler 3.sampler_name options=euler|ddim|dpmpp_2m;
        flowscale_output result 9 label="Result image";
        flowscale_backend comfyui;
    }
--- request
GET /v1/txt2img
--- error_code: 200
--- response_headers
Content-Type: application/json
--- response_body_like eval
qr{^\{
  "name": "txt2img",
  "version": "[0-9a-f]{8}",
  "state": "(?:preparing|deploying|ready|failed)",
  "inputs": \[
    \{
      "name": "prompt",
      "label": "Prompt",
      "type": "string",
      "required": true,
      "schema": \{
        "type": "string",
        "title": "Prompt",
        "description": "What to draw"
      \},
      "description": "What to draw"
    \},
    \{
      "name": "seed",
      "label": "seed",
      "type": "integer",
      "required": false,
      "schema": \{
        "type": "integer",
        "title": "seed",
        "description": "Drawn at random for each run when not given"
      \}
    \},
    \{
      "name": "steps",
      "label": "steps",
      "type": "integer",
      "required": false,
      "schema": \{
        "type": "integer",
        "title": "steps",
        "default": 20,
        "minimum": 1,
        "maximum": 50
      \}
    \},
    \{
      "name": "cfg",
      "label": "cfg",
      "type": "number",
      "required": false,
      "schema": \{
        "type": "number",
        "title": "cfg",
        "default": 8,
        "minimum": 0.5,
        "maximum": 20.0
      \}
    \},
    \{
      "name": "sampler",
      "label": "sampler",
      "type": "string",
      "required": false,
      "schema": \{
        "type": "string",
        "title": "sampler",
        "default": "euler",
        "enum": \[
          "euler",
          "ddim",
          "dpmpp_2m"
        \]
      \}
    \}
  \],
  "outputs": \[
    \{
      "name": "result",
      "label": "Result image"
    \}
  \],
  "input_schema": \{
    "type": "object",
    "properties": \{
      "prompt": .*
    \},
    "required": \[
      "prompt"
    \],
    "additionalProperties": false
  \},
  "links": \{
    "self": "/v1/txt2img",
    "runs": "/v1/txt2img/runs",
    "openapi": "/v1/txt2img/openapi.json"
  \}
\}
$}s



=== TEST 2: a trailing slash and HEAD answer the same
--- config
    location /v1/txt2img/ {
        flowscale_deployment txt2img;
        flowscale_workflow $TEST_NGINX_WORKFLOWS/txt2img.json;
        flowscale_output result 9;
        flowscale_backend comfyui;
    }
--- request
HEAD /v1/txt2img/
--- error_code: 200
--- response_headers
Content-Type: application/json
--- response_body



=== TEST 3: FlowScale's own I/O nodes are inputs and outputs by themselves
--- config
    location /v1/fs {
        flowscale_deployment fs;
        flowscale_workflow $TEST_NGINX_WORKFLOWS/fs_io.json;
        flowscale_backend comfyui;
    }
--- request
GET /v1/fs
--- error_code: 200
--- response_body_like eval
qr{"inputs": \[\s*\{\s*"name": "caption",\s*"label": "Caption",\s*"type": "string",\s*"required": false,\s*"schema": \{\s*"type": "string",\s*"title": "Caption",\s*"default": "a red fox"\s*\}\s*\},\s*\{\s*"name": "image_size",\s*"label": "Image Size",\s*"type": "integer".*"outputs": \[\s*\{\s*"name": "picture",\s*"label": "Picture"\s*\},\s*\{\s*"name": "echo",\s*"label": "Echo"\s*\}\s*\]}s



=== TEST 4: an image input is a base64 or data: URL string in JSON
--- config
    location /v1/invert {
        flowscale_deployment invert;
        flowscale_workflow $TEST_NGINX_WORKFLOWS/invert.json;
        flowscale_input image 10.image type=image required;
        flowscale_input size 11.width min=16 max=1024;
        flowscale_output inverted 14;
        flowscale_backend comfyui;
    }
--- request
GET /v1/invert
--- error_code: 200
--- response_body_like eval
qr{"name": "image",\s*"label": "image",\s*"type": "image",\s*"required": true,\s*"schema": \{\s*"type": "string",\s*"contentEncoding": "base64",\s*"contentMediaType": "image/\*",\s*"title": "image",\s*"description": "A file part in multipart/form-data, or a data: URL or base64 string in JSON"\s*\}}s



=== TEST 5: flowscale_io declares the same as directives, with typed values
--- user_files
>>> io.json
{"inputs": [
   {"name": "prompt", "node": "6.text", "label": "Prompt", "required": true},
   {"name": "steps", "node": "3", "input": "steps", "default": 25, "minimum": 1, "maximum": 60},
   {"name": "sampler", "node": "3", "input": "sampler_name", "options": ["euler", "ddim"]}
 ],
 "outputs": {"image": {"node": "9", "label": "Image"}}}
--- config
    location /v1/io {
        flowscale_deployment io;
        flowscale_workflow $TEST_NGINX_WORKFLOWS/txt2img.json;
        flowscale_io $TEST_NGINX_SERVER_ROOT/html/io.json;
        flowscale_backend comfyui;
    }
--- request
GET /v1/io
--- error_code: 200
--- response_body_like eval
qr{"name": "steps",.*"default": 25,\s*"minimum": 1,\s*"maximum": 60.*"enum": \[\s*"euler",\s*"ddim"\s*\].*"outputs": \[\s*\{\s*"name": "image",\s*"label": "Image"\s*\}\s*\].*"required": \[\s*"prompt"\s*\]}s



=== TEST 6: other methods on L are refused with Allow
--- config
    location /v1/txt2img {
        flowscale_deployment txt2img;
        flowscale_workflow $TEST_NGINX_WORKFLOWS/txt2img.json;
        flowscale_output result 9;
        flowscale_backend comfyui;
    }
--- request
PUT /v1/txt2img
--- error_code: 405
--- response_headers
Allow: GET, HEAD, POST
Content-Type: application/problem+json
--- response_body_like eval
qr{^\{"type":"urn:flowscale:problem:method-not-allowed","title":"Method Not Allowed","status":405,"detail":"[^"]+","instance":"/v1/txt2img"\}\n$}



=== TEST 7: an unknown path under L is a problem+json 404
--- config
    location /v1/txt2img {
        flowscale_deployment txt2img;
        flowscale_workflow $TEST_NGINX_WORKFLOWS/txt2img.json;
        flowscale_output result 9;
        flowscale_backend comfyui;
    }
--- request
GET /v1/txt2img/nothing/here
--- error_code: 404
--- response_headers
Content-Type: application/problem+json
--- response_body_like eval
qr{"type":"urn:flowscale:problem:not-found".*"status":404.*"instance":"/v1/txt2img/nothing/here"}
