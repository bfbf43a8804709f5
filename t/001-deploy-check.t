# nginx -t is the deploy check: every broken deployment stops nginx from
# starting with one line naming the directive, deployment, node, input,
# what is wrong and the file and line.

use Test::Nginx::Socket 'no_plan';

no_shuffle();

our $WF = <<'_EOC_';
{"3": {"class_type": "KSampler", "inputs": {"seed": 5, "steps": 20, "cfg": 7.5,
       "sampler_name": "euler", "denoise": 1, "model": ["4", 0]}},
 "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}},
 "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]}},
 "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
 "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x", "images": ["8", 0]}}}
_EOC_

add_block_preprocessor(sub {
    my $block = shift;

    if (!defined $block->http_config) {
        $block->set_value("http_config", <<'_EOC_');
    flowscale_database "hostaddr=127.0.0.1 port=5432 dbname=flowscale user=flowscale";
    upstream comfyui { server 127.0.0.1:8188; }
_EOC_
    }

    if (!defined $block->user_files) {
        $block->set_value("user_files", ">>> wf.json\n$main::WF");
    }

    if (defined $block->must_die && !defined $block->request) {
        $block->set_value("request", "GET /t");
    }
});

run_tests();

__DATA__

=== TEST 1: a valid deployment starts
--- config
    location /v1/t {
        flowscale_deployment t;
        flowscale_workflow $TEST_NGINX_SERVER_ROOT/html/wf.json;
        flowscale_input prompt 6.text required;
        flowscale_input seed 3.seed default=random;
        flowscale_output result 9;
        flowscale_backend comfyui;
    }
--- request
GET /v1/t
--- error_code: 200
--- no_error_log
[emerg]
[alert]



=== TEST 2: the workflow is not JSON
--- user_files
>>> wf.json
{"3": {"class_type": "KSampler",
--- config
    location /v1/t {
        flowscale_deployment t;
        flowscale_workflow $TEST_NGINX_SERVER_ROOT/html/wf.json;
        flowscale_output result 9;
        flowscale_backend comfyui;
    }
--- must_die
--- error_log eval
qr{\[emerg\] .*flowscale_workflow: workflow ".*/wf\.json" is not valid JSON \(.*line \d+, column \d+\); export it from ComfyUI with "Save \(API Format\)" in .*nginx\.conf:\d+}



=== TEST 3: a UI-format save instead of the API format
--- user_files
>>> wf.json
{"last_node_id": 9, "nodes": [{"id": 3, "type": "KSampler"}], "links": [[1, 4, 0, 3, 0, "MODEL"]], "version": 0.4}
--- config
    location /v1/t {
        flowscale_deployment t;
        flowscale_workflow $TEST_NGINX_SERVER_ROOT/html/wf.json;
        flowscale_output result 9;
        flowscale_backend comfyui;
    }
--- must_die
--- error_log eval
qr{\[emerg\] .*flowscale_workflow: workflow ".*/wf\.json" is in ComfyUI's UI format \(it has "nodes" and "links"\).*"Save \(API Format\)" instead in .*nginx\.conf:\d+}



=== TEST 4: a node without class_type
--- user_files
>>> wf.json
{"3": {"inputs": {"seed": 1}}}
--- config
    location /v1/t {
        flowscale_deployment t;
        flowscale_workflow $TEST_NGINX_SERVER_ROOT/html/wf.json;
        flowscale_output result 3;
        flowscale_backend comfyui;
    }
--- must_die
--- error_log eval
qr{\[emerg\] .*workflow ".*/wf\.json": node "3" has no "class_type"; this is not an API-format workflow}



=== TEST 5: an input on a node that does not exist
--- config
    location /v1/t {
        flowscale_deployment t;
        flowscale_workflow $TEST_NGINX_SERVER_ROOT/html/wf.json;
        flowscale_input prompt 60.text;
        flowscale_output result 9;
        flowscale_backend comfyui;
    }
--- must_die
--- error_log eval
qr{\[emerg\] .*flowscale_input in deployment "t": input "prompt": workflow ".*/wf\.json" has no node "60" \(its nodes: 3, 4, 6, 8, 9\); use NODE\.INPUT with a node id from the API-format file in .*nginx\.conf:\d+}



=== TEST 6: an input that the node does not have
--- config
    location /v1/t {
        flowscale_deployment t;
        flowscale_workflow $TEST_NGINX_SERVER_ROOT/html/wf.json;
        flowscale_input steps 3.stepz min=1;
        flowscale_output result 9;
        flowscale_backend comfyui;
    }
--- must_die
--- error_log eval
qr{\[emerg\] .*flowscale_input in deployment "t": input "steps": node "3" \(KSampler\) of workflow ".*/wf\.json" has no input "stepz" \(its inputs: .*seed.*steps.*\) in .*nginx\.conf:\d+}



=== TEST 7: an input that is a link, not a value
--- config
    location /v1/t {
        flowscale_deployment t;
        flowscale_workflow $TEST_NGINX_SERVER_ROOT/html/wf.json;
        flowscale_input model 3.model;
        flowscale_output result 9;
        flowscale_backend comfyui;
    }
--- must_die
--- error_log eval
qr{\[emerg\] .*flowscale_input in deployment "t": input "model": 3\.model \(KSampler\) is a link from node "4", not a value; declare the input on a value of node "4" instead}



=== TEST 8: a type that does not fit the workflow's value
--- config
    location /v1/t {
        flowscale_deployment t;
        flowscale_workflow $TEST_NGINX_SERVER_ROOT/html/wf.json;
        flowscale_input steps 3.steps type=string;
        flowscale_output result 9;
        flowscale_backend comfyui;
    }
--- must_die
--- error_log eval
qr{\[emerg\] .*flowscale_input in deployment "t": input "steps": type string does not fit 3\.steps \(KSampler\), whose value in the workflow is 20; fix type= or the NODE\.INPUT in .*nginx\.conf:\d+}



=== TEST 9: a default that does not fit the type
--- config
    location /v1/t {
        flowscale_deployment t;
        flowscale_workflow $TEST_NGINX_SERVER_ROOT/html/wf.json;
        flowscale_input steps 3.steps default=twenty;
        flowscale_output result 9;
        flowscale_backend comfyui;
    }
--- must_die
--- error_log eval
qr{\[emerg\] .*flowscale_input in deployment "t": input "steps": default="twenty" does not fit its type integer; use a whole number in .*nginx\.conf:\d+}



=== TEST 10: default=random on a string
--- config
    location /v1/t {
        flowscale_deployment t;
        flowscale_workflow $TEST_NGINX_SERVER_ROOT/html/wf.json;
        flowscale_input cfg 3.cfg default=random;
        flowscale_output result 9;
        flowscale_backend comfyui;
    }
--- must_die
--- error_log eval
qr{\[emerg\] .*input "cfg": default=random only applies to integer inputs \(seeds\), and this one is number}



=== TEST 11: min above max
--- config
    location /v1/t {
        flowscale_deployment t;
        flowscale_workflow $TEST_NGINX_SERVER_ROOT/html/wf.json;
        flowscale_input steps 3.steps min=50 max=1;
        flowscale_output result 9;
        flowscale_backend comfyui;
    }
--- must_die
--- error_log eval
qr{\[emerg\] .*flowscale_input in deployment "t": input "steps": min=50 is above max=1 in .*nginx\.conf:\d+}



=== TEST 12: min on a string input
--- config
    location /v1/t {
        flowscale_deployment t;
        flowscale_workflow $TEST_NGINX_SERVER_ROOT/html/wf.json;
        flowscale_input prompt 6.text min=1;
        flowscale_output result 9;
        flowscale_backend comfyui;
    }
--- must_die
--- error_log eval
qr{\[emerg\] .*input "prompt": min= and max= only apply to integer and number inputs, and this one is string}



=== TEST 13: a max that is not a number
--- config
    location /v1/t {
        flowscale_deployment t;
        flowscale_workflow $TEST_NGINX_SERVER_ROOT/html/wf.json;
        flowscale_input cfg 3.cfg max=lots;
        flowscale_output result 9;
        flowscale_backend comfyui;
    }
--- must_die
--- error_log eval
qr{\[emerg\] .*input "cfg": max="lots" does not fit its type number; use a number}



=== TEST 14: a default outside min..max
--- config
    location /v1/t {
        flowscale_deployment t;
        flowscale_workflow $TEST_NGINX_SERVER_ROOT/html/wf.json;
        flowscale_input steps 3.steps min=1 max=50 default=80;
        flowscale_output result 9;
        flowscale_backend comfyui;
    }
--- must_die
--- error_log eval
qr{\[emerg\] .*input "steps": default=80 is outside min\.\.max}



=== TEST 15: a default that is not one of the options
--- config
    location /v1/t {
        flowscale_deployment t;
        flowscale_workflow $TEST_NGINX_SERVER_ROOT/html/wf.json;
        flowscale_input sampler 3.sampler_name options=euler|ddim default=heun;
        flowscale_output result 9;
        flowscale_backend comfyui;
    }
--- must_die
--- error_log eval
qr{\[emerg\] .*input "sampler": default="heun" is not one of options=}



=== TEST 16: an empty option
--- config
    location /v1/t {
        flowscale_deployment t;
        flowscale_workflow $TEST_NGINX_SERVER_ROOT/html/wf.json;
        flowscale_input sampler 3.sampler_name options=euler||ddim;
        flowscale_output result 9;
        flowscale_backend comfyui;
    }
--- must_die
--- error_log eval
qr{\[emerg\] .*input "sampler": options= has an empty item; separate options with a single "\|"}



=== TEST 17: options that do not fit the type
--- config
    location /v1/t {
        flowscale_deployment t;
        flowscale_workflow $TEST_NGINX_SERVER_ROOT/html/wf.json;
        flowscale_input steps 3.steps options=10|twenty;
        flowscale_output result 9;
        flowscale_backend comfyui;
    }
--- must_die
--- error_log eval
qr{\[emerg\] .*input "steps": options="twenty" does not fit its type integer}



=== TEST 18: the same input name twice
--- config
    location /v1/t {
        flowscale_deployment t;
        flowscale_workflow $TEST_NGINX_SERVER_ROOT/html/wf.json;
        flowscale_input prompt 6.text;
        flowscale_input prompt 3.sampler_name;
        flowscale_output result 9;
        flowscale_backend comfyui;
    }
--- must_die
--- error_log eval
qr{\[emerg\] .*flowscale_input in deployment "t": input "prompt" is declared twice \(node "6" and node "3"\); give each input its own name in .*nginx\.conf:\d+}



=== TEST 19: two inputs writing the same NODE.INPUT
--- config
    location /v1/t {
        flowscale_deployment t;
        flowscale_workflow $TEST_NGINX_SERVER_ROOT/html/wf.json;
        flowscale_input prompt 6.text;
        flowscale_input text 6.text;
        flowscale_output result 9;
        flowscale_backend comfyui;
    }
--- must_die
--- error_log eval
qr{\[emerg\] .*inputs "prompt" and "text" both write 6\.text; declare each NODE\.INPUT once}



=== TEST 20: an input name that is not an identifier
--- config
    location /v1/t {
        flowscale_deployment t;
        flowscale_workflow $TEST_NGINX_SERVER_ROOT/html/wf.json;
        flowscale_input 2prompt 6.text;
        flowscale_output result 9;
        flowscale_backend comfyui;
    }
--- must_die
--- error_log eval
qr{\[emerg\] .*flowscale_input: input name "2prompt" is not an identifier: use letters, digits and "_", not starting with a digit, at most 64 characters in .*nginx\.conf:\d+}



=== TEST 21: a slot that is not NODE.INPUT
--- config
    location /v1/t {
        flowscale_deployment t;
        flowscale_workflow $TEST_NGINX_SERVER_ROOT/html/wf.json;
        flowscale_input prompt text;
        flowscale_output result 9;
        flowscale_backend comfyui;
    }
--- must_die
--- error_log eval
qr{\[emerg\] .*flowscale_input: input "prompt": "text" is not NODE\.INPUT, for example 6\.text}



=== TEST 22: an unknown parameter
--- config
    location /v1/t {
        flowscale_deployment t;
        flowscale_workflow $TEST_NGINX_SERVER_ROOT/html/wf.json;
        flowscale_input prompt 6.text lable=Prompt;
        flowscale_output result 9;
        flowscale_backend comfyui;
    }
--- must_die
--- error_log eval
qr{\[emerg\] .*flowscale_input: input "prompt": unknown parameter "lable=Prompt"; use type=, label=, description=, default=, min=, max=, options= or required}



=== TEST 23: an unknown type
--- config
    location /v1/t {
        flowscale_deployment t;
        flowscale_workflow $TEST_NGINX_SERVER_ROOT/html/wf.json;
        flowscale_input prompt 6.text type=text;
        flowscale_output result 9;
        flowscale_backend comfyui;
    }
--- must_die
--- error_log eval
qr{\[emerg\] .*input "prompt": unknown type "text"; use string, integer, number, boolean, image, video, audio or file}



=== TEST 24: required with a default
--- config
    location /v1/t {
        flowscale_deployment t;
        flowscale_workflow $TEST_NGINX_SERVER_ROOT/html/wf.json;
        flowscale_input prompt 6.text required default=dog;
        flowscale_output result 9;
        flowscale_backend comfyui;
    }
--- must_die
--- error_log eval
qr{\[emerg\] .*input "prompt": "required" and "default=" contradict each other; keep one}



=== TEST 25: an output node that does not exist
--- config
    location /v1/t {
        flowscale_deployment t;
        flowscale_workflow $TEST_NGINX_SERVER_ROOT/html/wf.json;
        flowscale_output result 90;
        flowscale_backend comfyui;
    }
--- must_die
--- error_log eval
qr{\[emerg\] .*flowscale_output in deployment "t": output "result": workflow ".*/wf\.json" has no node "90"; name a node that saves files \(node "9" is SaveImage\) in .*nginx\.conf:\d+}



=== TEST 26: no outputs at all
--- config
    location /v1/t {
        flowscale_deployment t;
        flowscale_workflow $TEST_NGINX_SERVER_ROOT/html/wf.json;
        flowscale_input prompt 6.text;
        flowscale_backend comfyui;
    }
--- must_die
--- error_log eval
qr{\[emerg\] .*flowscale_workflow in deployment "t": workflow ".*/wf\.json" has no declared output; add "flowscale_output NAME NODE" for the node whose files the API returns \(node "9" is SaveImage\) in .*nginx\.conf:\d+}



=== TEST 27: the same output name twice
--- config
    location /v1/t {
        flowscale_deployment t;
        flowscale_workflow $TEST_NGINX_SERVER_ROOT/html/wf.json;
        flowscale_output result 9;
        flowscale_output result 8;
        flowscale_backend comfyui;
    }
--- must_die
--- error_log eval
qr{\[emerg\] .*output "result" is declared twice; give each output its own name}



=== TEST 28: a regex location
--- config
    location ~ ^/v1/t {
        flowscale_deployment t;
        flowscale_workflow $TEST_NGINX_SERVER_ROOT/html/wf.json;
        flowscale_output result 9;
        flowscale_backend comfyui;
    }
--- must_die
--- error_log eval
qr{\[emerg\] .*flowscale_deployment "t" must be in a plain prefix location such as "location /v1/t", not in "location ~ \^/v1/t": its runs, outputs and documents live under that prefix in .*nginx\.conf:\d+}



=== TEST 29: an exact-match location
--- config
    location = /v1/t {
        flowscale_deployment t;
        flowscale_workflow $TEST_NGINX_SERVER_ROOT/html/wf.json;
        flowscale_output result 9;
        flowscale_backend comfyui;
    }
--- must_die
--- error_log eval
qr{\[emerg\] .*flowscale_deployment "t" must be in a plain prefix location .* not in "location = /v1/t"}



=== TEST 30: a backend that is not an upstream
--- config
    location /v1/t {
        flowscale_deployment t;
        flowscale_workflow $TEST_NGINX_SERVER_ROOT/html/wf.json;
        flowscale_output result 9;
        flowscale_backend gpus;
    }
--- must_die
--- error_log eval
qr{\[emerg\] .*flowscale_backend in deployment "t": no upstream "gpus" is defined; add "upstream gpus \{ server HOST:PORT; \}" with the ComfyUI servers in the http block in .*nginx\.conf:\d+}



=== TEST 31: no backend at all
--- config
    location /v1/t {
        flowscale_deployment t;
        flowscale_workflow $TEST_NGINX_SERVER_ROOT/html/wf.json;
        flowscale_output result 9;
    }
--- must_die
--- error_log eval
qr{\[emerg\] .*flowscale_deployment in deployment "t": no backend: add "flowscale_backend UPSTREAM"}



=== TEST 32: no workflow
--- config
    location /v1/t {
        flowscale_deployment t;
        flowscale_output result 9;
        flowscale_backend comfyui;
    }
--- must_die
--- error_log eval
qr{\[emerg\] .*flowscale_deployment in deployment "t": no workflow: add "flowscale_workflow FILE\.json"}



=== TEST 33: a workflow file that does not exist
--- config
    location /v1/t {
        flowscale_deployment t;
        flowscale_workflow $TEST_NGINX_SERVER_ROOT/html/missing.json;
        flowscale_output result 9;
        flowscale_backend comfyui;
    }
--- must_die
--- error_log eval
qr{\[emerg\] .*flowscale_workflow: cannot open ".*/missing\.json"}



=== TEST 34: no flowscale_database
--- http_config
    upstream comfyui { server 127.0.0.1:8188; }
--- config
    location /v1/t {
        flowscale_deployment t;
        flowscale_workflow $TEST_NGINX_SERVER_ROOT/html/wf.json;
        flowscale_output result 9;
        flowscale_backend comfyui;
    }
--- must_die
--- error_log eval
qr{\[emerg\] .*flowscale_deployment needs "flowscale_database" in the http block}



=== TEST 35: a database host name that would block on DNS
--- http_config
    flowscale_database "host=db.example.com dbname=flowscale";
    upstream comfyui { server 127.0.0.1:8188; }
--- config
    location /v1/t {
        flowscale_deployment t;
        flowscale_workflow $TEST_NGINX_SERVER_ROOT/html/wf.json;
        flowscale_output result 9;
        flowscale_backend comfyui;
    }
--- must_die
--- error_log eval
qr{\[emerg\] .*flowscale_database: host=db\.example\.com would be looked up with a blocking DNS query in every worker; give its address with hostaddr=}



=== TEST 36: an invalid connection string and pool
--- http_config
    flowscale_database "dbname=flowscale nosuchoption=1";
--- config
--- must_die
--- error_log eval
qr{\[emerg\] .*flowscale_database: invalid connection string "dbname=flowscale nosuchoption=1": invalid connection option "nosuchoption"}



=== TEST 37: a zone without a size
--- http_config
    flowscale_zone flowscale;
--- config
--- must_die
--- error_log eval
qr{\[emerg\] .*flowscale_zone "flowscale" must be NAME:SIZE, for example flowscale:32m}



=== TEST 38: an invalid deployment name
--- config
    location /v1/t {
        flowscale_deployment "t x";
        flowscale_workflow $TEST_NGINX_SERVER_ROOT/html/wf.json;
        flowscale_output result 9;
        flowscale_backend comfyui;
    }
--- must_die
--- error_log eval
qr{\[emerg\] .*flowscale_deployment name "t x" is invalid: use 1 to 64 letters, digits, "_", "-" and "\."}



=== TEST 39: flowscale_io with an input on a missing node
--- user_files
>>> wf.json
{"6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]}},
 "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}},
 "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x", "images": ["4", 0]}}}
>>> io.json
{"inputs": [{"name": "prompt", "node": "7", "input": "text"}],
 "outputs": [{"name": "result", "node": "9"}]}
--- config
    location /v1/t {
        flowscale_deployment t;
        flowscale_workflow $TEST_NGINX_SERVER_ROOT/html/wf.json;
        flowscale_io $TEST_NGINX_SERVER_ROOT/html/io.json;
        flowscale_backend comfyui;
    }
--- must_die
--- error_log eval
qr{\[emerg\] .*flowscale_io in deployment "t": input "prompt": workflow ".*/wf\.json" has no node "7" \(its nodes: 4, 6, 9\)}



=== TEST 40: flowscale_io that is not JSON
--- user_files
>>> wf.json
{"9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x", "images": ["9", 0]}}}
>>> io.json
{"inputs": [
--- config
    location /v1/t {
        flowscale_deployment t;
        flowscale_workflow $TEST_NGINX_SERVER_ROOT/html/wf.json;
        flowscale_io $TEST_NGINX_SERVER_ROOT/html/io.json;
        flowscale_backend comfyui;
    }
--- must_die
--- error_log eval
qr{\[emerg\] .*flowscale_io: I/O file ".*/io\.json" is not valid JSON}



=== TEST 41: a link to a node that is not in the workflow
--- user_files
>>> wf.json
{"9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x", "images": ["8", 0]}}}
--- config
    location /v1/t {
        flowscale_deployment t;
        flowscale_workflow $TEST_NGINX_SERVER_ROOT/html/wf.json;
        flowscale_output result 9;
        flowscale_backend comfyui;
    }
--- must_die
--- error_log eval
qr{\[emerg\] .*workflow ".*/wf\.json": node "9" \(SaveImage\) input "images" links to node "8", which is not in the workflow}



=== TEST 42: a deployment inside an if block is refused by nginx itself
--- config
    location /v1/t {
        if ($arg_x) {
            flowscale_deployment t;
        }
    }
--- must_die
--- error_log eval
qr{\[emerg\] .*"flowscale_deployment" directive is not allowed here}



=== TEST 43: a lease too short to outlive a missed beat
--- http_config
    flowscale_database "hostaddr=127.0.0.1 port=5432 dbname=flowscale user=flowscale";
    flowscale_lease 2s;
    upstream comfyui { server 127.0.0.1:8188; }
--- config
    location /v1/t {
        flowscale_deployment t;
        flowscale_workflow $TEST_NGINX_SERVER_ROOT/html/wf.json;
        flowscale_output result 9;
        flowscale_backend comfyui;
    }
--- must_die
--- error_log eval
qr{\[emerg\] .*"flowscale_lease" directive must be at least 3s: the lease is renewed every second in .*nginx\.conf:\d+}



=== TEST 44: flowscale_lease is an http-level setting
--- config
    location /v1/t {
        flowscale_lease 10s;
    }
--- must_die
--- error_log eval
qr{\[emerg\] .*"flowscale_lease" directive is not allowed here}
