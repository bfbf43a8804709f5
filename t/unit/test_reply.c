
/*
 * Unit tests of the pure C reply layer: ComfyUI's answers to POST /prompt,
 * GET /history/ID and its /ws messages, read into our own terms.
 *
 * The FX_* bodies were captured from t/sim/comfyui_sim.py (which follows
 * a real ComfyUI 0.8.0 and its older shapes, see shared/comfyui.md); the
 * ones built by hand here cover what the simulator does not make (gifs,
 * custom kinds, NaN and 2^64 seeds, very old entries, malformed replies).
 *
 * Built and run by "make unit" (see the build line in the Makefile).
 */


#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "ngx_http_flowscale_workflow.h"
#include "ngx_http_flowscale_reply.h"


/* ------------------------------------------------------------ fixtures */

/* HTTP 200 */
static const char FX_PROMPT_OK[] =
    "{\"prompt_id\": \"p-ok\", \"number\": 0, \"node_errors\": {}}";

/* HTTP 200 */
static const char FX_OLD_200[] =
    "{\"prompt_id\": \"3823daad-c36a-4bb3-9154-da6bbe7c759b\", \"number\": 9,"
    " \"node_errors\": []}";

/* HTTP 200 */
static const char FX_200_NODE_ERRORS[] =
    "{\"prompt_id\": \"p-part\", \"number\": 8, \"node_errors\": {\"1\": {\"e"
    "rrors\": [{\"type\": \"value_bigger_than_max\", \"message\": \"Value 999"
    "99 bigger than max of 16384\", \"details\": \"width\", \"extra_info\": {"
    "\"input_name\": \"width\", \"input_config\": [\"INT\", {\"default\": 512"
    ", \"min\": 1, \"max\": 16384, \"step\": 1}], \"received_value\": 99999}}"
    "], \"dependent_outputs\": [\"2\"], \"class_type\": \"EmptyImage\"}}}";

/* HTTP 400 */
static const char FX_400_VALIDATION[] =
    "{\"error\": {\"type\": \"prompt_outputs_failed_validation\", \"message\""
    ": \"Prompt outputs failed validation\", \"details\": \"Required input is"
    " missing: filename_prefix\\nReturn type mismatch between linked nodes: i"
    "mages, received_type(MASK) mismatch input_type(IMAGE)\\nException when v"
    "alidating node: 'str' object is not a mapping\", \"extra_info\": {}}, \""
    "node_errors\": {\"1\": {\"errors\": [{\"type\": \"value_bigger_than_max"
    "\", \"message\": \"Value 99999 bigger than max of 16384\", \"details\": "
    "\"width\", \"extra_info\": {\"input_name\": \"width\", \"input_config\":"
    " [\"INT\", {\"default\": 512, \"min\": 1, \"max\": 16384, \"step\": 1}],"
    " \"received_value\": 99999}}, {\"type\": \"value_smaller_than_min\", \"m"
    "essage\": \"Value 0 smaller than min of 1\", \"details\": \"height\", \""
    "extra_info\": {\"input_name\": \"height\", \"input_config\": [\"INT\", {"
    "\"default\": 512, \"min\": 1, \"max\": 16384, \"step\": 1}], \"received_"
    "value\": 0}}, {\"type\": \"invalid_input_type\", \"message\": \"Failed t"
    "o convert an input value to a INT value\", \"details\": \"batch_size, ab"
    "c, invalid literal for int() with base 10: 'abc'\", \"extra_info\": {\"i"
    "nput_name\": \"batch_size\", \"input_config\": [\"INT\", {\"default\": 1"
    ", \"min\": 1, \"max\": 4096}], \"received_value\": \"abc\", \"exception_"
    "message\": \"invalid literal for int() with base 10: 'abc'\"}}], \"depen"
    "dent_outputs\": [\"2\", \"4\", \"6\", \"8\", \"10\", \"12\", \"13\"], \""
    "class_type\": \"EmptyImage\"}, \"2\": {\"errors\": [{\"type\": \"require"
    "d_input_missing\", \"message\": \"Required input is missing\", \"details"
    "\": \"filename_prefix\", \"extra_info\": {\"input_name\": \"filename_pre"
    "fix\"}}], \"dependent_outputs\": [\"2\", \"4\", \"6\", \"8\", \"10\", \""
    "12\", \"13\"], \"class_type\": \"SaveImage\"}, \"3\": {\"errors\": [{\"t"
    "ype\": \"value_not_in_list\", \"message\": \"Value not in list\", \"deta"
    "ils\": \"flip_method: 'diagonal' not in ['x-axis: vertically', 'y-axis: "
    "horizontally']\", \"extra_info\": {\"input_name\": \"flip_method\", \"in"
    "put_config\": [\"COMBO\", {\"multiselect\": false, \"options\": [\"x-axi"
    "s: vertically\", \"y-axis: horizontally\"]}], \"received_value\": \"diag"
    "onal\"}}], \"dependent_outputs\": [\"4\", \"6\", \"8\", \"10\", \"12\", "
    "\"13\"], \"class_type\": \"ImageFlip\"}, \"5\": {\"errors\": [{\"type\":"
    " \"bad_linked_input\", \"message\": \"Bad linked input, must be a length"
    "-2 list of [node_id, slot_index]\", \"details\": \"image\", \"extra_info"
    "\": {\"input_name\": \"image\", \"input_config\": [\"IMAGE\", {}], \"rec"
    "eived_value\": [\"1\", 0, 1]}}], \"dependent_outputs\": [\"6\", \"8\", "
    "\"10\", \"12\", \"13\"], \"class_type\": \"ImageInvert\"}, \"8\": {\"err"
    "ors\": [{\"type\": \"return_type_mismatch\", \"message\": \"Return type "
    "mismatch between linked nodes\", \"details\": \"images, received_type(MA"
    "SK) mismatch input_type(IMAGE)\", \"extra_info\": {\"input_name\": \"ima"
    "ges\", \"input_config\": [\"IMAGE\", {\"tooltip\": \"The images to save."
    "\"}], \"received_type\": \"MASK\", \"linked_node\": [\"7\", 0]}}], \"dep"
    "endent_outputs\": [\"8\", \"10\", \"12\", \"13\"], \"class_type\": \"Sav"
    "eImage\"}, \"9\": {\"errors\": [{\"type\": \"custom_validation_failed\","
    " \"message\": \"Custom validation failed for node\", \"details\": \"imag"
    "e - Invalid image file: missing.png\", \"extra_info\": {\"input_name\": "
    "\"image\"}}], \"dependent_outputs\": [\"10\", \"12\", \"13\"], \"class_t"
    "ype\": \"LoadImage\"}, \"11\": {\"errors\": [{\"type\": \"required_input"
    "_missing\", \"message\": \"Required input is missing\", \"details\": \"h"
    "eight\", \"extra_info\": {\"input_name\": \"height\"}}], \"dependent_out"
    "puts\": [\"12\", \"13\"], \"class_type\": \"EmptyImage\"}, \"13\": {\"er"
    "rors\": [{\"type\": \"exception_during_validation\", \"message\": \"Exce"
    "ption when validating node\", \"details\": \"'str' object is not a mappi"
    "ng\", \"extra_info\": {\"exception_type\": \"TypeError\", \"traceback\":"
    " [\"  File \\\"/opt/ComfyUI/execution.py\\\", line 1043, in validate_pro"
    "mpt\\n    m = await validate_inputs(prompt_id, prompt, o, validated)\\n"
    "\", \"  File \\\"/opt/ComfyUI/execution.py\\\", line 818, in validate_in"
    "puts\\n    o_class_type = prompt[o_id]['class_type']\\n\"]}}], \"depende"
    "nt_outputs\": [\"13\"], \"class_type\": \"SaveImage\"}}}";

/* HTTP 400 */
static const char FX_400_CLASS[] =
    "{\"error\": {\"type\": \"invalid_prompt\", \"message\": \"Cannot execute"
    " because node Nope does not exist.\", \"details\": \"Node ID '#1'\", \"e"
    "xtra_info\": {}}, \"node_errors\": {}}";

/* HTTP 400 */
static const char FX_400_NOCLASS[] =
    "{\"error\": {\"type\": \"invalid_prompt\", \"message\": \"Cannot execute"
    " because a node is missing the class_type property.\", \"details\": \"No"
    "de ID '#1'\", \"extra_info\": {}}, \"node_errors\": {}}";

/* HTTP 400 */
static const char FX_400_NO_OUTPUTS[] =
    "{\"error\": {\"type\": \"prompt_no_outputs\", \"message\": \"Prompt has "
    "no outputs\", \"details\": \"\", \"extra_info\": {}}, \"node_errors\": {"
    "}}";

/* HTTP 400 */
static const char FX_400_NO_PROMPT[] =
    "{\"error\": {\"type\": \"no_prompt\", \"message\": \"No prompt provided"
    "\", \"details\": \"No prompt provided\", \"extra_info\": {}}, \"node_err"
    "ors\": {}}";

/* HTTP 500 */
static const char FX_500[] =
    "500 Internal Server Error\n\nServer got itself in trouble";

/* HTTP 400 */
static const char FX_OLD_400_VALIDATION[] =
    "{\"error\": \"Prompt outputs failed validation: Required input is missin"
    "g: filename_prefix\\nReturn type mismatch between linked nodes: images, "
    "received_type(MASK) mismatch input_type(IMAGE)\\nException when validati"
    "ng node: 'str' object is not a mapping\", \"node_errors\": {\"1\": {\"er"
    "rors\": [{\"type\": \"value_bigger_than_max\", \"message\": \"Value 9999"
    "9 bigger than max of 16384\", \"details\": \"width\", \"extra_info\": {"
    "\"input_name\": \"width\", \"input_config\": [\"INT\", {\"default\": 512"
    ", \"min\": 1, \"max\": 16384, \"step\": 1}], \"received_value\": 99999}}"
    ", {\"type\": \"value_smaller_than_min\", \"message\": \"Value 0 smaller "
    "than min of 1\", \"details\": \"height\", \"extra_info\": {\"input_name"
    "\": \"height\", \"input_config\": [\"INT\", {\"default\": 512, \"min\": "
    "1, \"max\": 16384, \"step\": 1}], \"received_value\": 0}}, {\"type\": \""
    "invalid_input_type\", \"message\": \"Failed to convert an input value to"
    " a INT value\", \"details\": \"batch_size, abc, invalid literal for int("
    ") with base 10: 'abc'\", \"extra_info\": {\"input_name\": \"batch_size\""
    ", \"input_config\": [\"INT\", {\"default\": 1, \"min\": 1, \"max\": 4096"
    "}], \"received_value\": \"abc\", \"exception_message\": \"invalid litera"
    "l for int() with base 10: 'abc'\"}}], \"dependent_outputs\": [\"2\", \"4"
    "\", \"6\", \"8\", \"10\", \"12\", \"13\"], \"class_type\": \"EmptyImage"
    "\"}, \"2\": {\"errors\": [{\"type\": \"required_input_missing\", \"messa"
    "ge\": \"Required input is missing\", \"details\": \"filename_prefix\", "
    "\"extra_info\": {\"input_name\": \"filename_prefix\"}}], \"dependent_out"
    "puts\": [\"2\", \"4\", \"6\", \"8\", \"10\", \"12\", \"13\"], \"class_ty"
    "pe\": \"SaveImage\"}, \"3\": {\"errors\": [{\"type\": \"value_not_in_lis"
    "t\", \"message\": \"Value not in list\", \"details\": \"flip_method: 'di"
    "agonal' not in ['x-axis: vertically', 'y-axis: horizontally']\", \"extra"
    "_info\": {\"input_name\": \"flip_method\", \"input_config\": [\"COMBO\","
    " {\"multiselect\": false, \"options\": [\"x-axis: vertically\", \"y-axis"
    ": horizontally\"]}], \"received_value\": \"diagonal\"}}], \"dependent_ou"
    "tputs\": [\"4\", \"6\", \"8\", \"10\", \"12\", \"13\"], \"class_type\": "
    "\"ImageFlip\"}, \"5\": {\"errors\": [{\"type\": \"bad_linked_input\", \""
    "message\": \"Bad linked input, must be a length-2 list of [node_id, slot"
    "_index]\", \"details\": \"image\", \"extra_info\": {\"input_name\": \"im"
    "age\", \"input_config\": [\"IMAGE\", {}], \"received_value\": [\"1\", 0,"
    " 1]}}], \"dependent_outputs\": [\"6\", \"8\", \"10\", \"12\", \"13\"], "
    "\"class_type\": \"ImageInvert\"}, \"8\": {\"errors\": [{\"type\": \"retu"
    "rn_type_mismatch\", \"message\": \"Return type mismatch between linked n"
    "odes\", \"details\": \"images, received_type(MASK) mismatch input_type(I"
    "MAGE)\", \"extra_info\": {\"input_name\": \"images\", \"input_config\": "
    "[\"IMAGE\", {\"tooltip\": \"The images to save.\"}], \"received_type\": "
    "\"MASK\", \"linked_node\": [\"7\", 0]}}], \"dependent_outputs\": [\"8\","
    " \"10\", \"12\", \"13\"], \"class_type\": \"SaveImage\"}, \"9\": {\"erro"
    "rs\": [{\"type\": \"custom_validation_failed\", \"message\": \"Custom va"
    "lidation failed for node\", \"details\": \"image - Invalid image file: m"
    "issing.png\", \"extra_info\": {\"input_name\": \"image\"}}], \"dependent"
    "_outputs\": [\"10\", \"12\", \"13\"], \"class_type\": \"LoadImage\"}, \""
    "11\": {\"errors\": [{\"type\": \"required_input_missing\", \"message\": "
    "\"Required input is missing\", \"details\": \"height\", \"extra_info\": "
    "{\"input_name\": \"height\"}}], \"dependent_outputs\": [\"12\", \"13\"],"
    " \"class_type\": \"EmptyImage\"}, \"13\": {\"errors\": [{\"type\": \"exc"
    "eption_during_validation\", \"message\": \"Exception when validating nod"
    "e\", \"details\": \"'str' object is not a mapping\", \"extra_info\": {\""
    "exception_type\": \"TypeError\", \"traceback\": [\"  File \\\"/opt/Comfy"
    "UI/execution.py\\\", line 1043, in validate_prompt\\n    m = await valid"
    "ate_inputs(prompt_id, prompt, o, validated)\\n\", \"  File \\\"/opt/Comf"
    "yUI/execution.py\\\", line 818, in validate_inputs\\n    o_class_type = "
    "prompt[o_id]['class_type']\\n\"]}}], \"dependent_outputs\": [\"13\"], \""
    "class_type\": \"SaveImage\"}}}";

/* HTTP 400 */
static const char FX_OLD_400_CLASS[] =
    "{\"error\": \"Cannot execute because node Nope does not exist.: Node ID "
    "'#1'\", \"node_errors\": []}";

/* HTTP 200 */
static const char FX_OLD_200_NODE_ERRORS[] =
    "{\"prompt_id\": \"6e887564-e0de-4e2b-a505-d9128d9955a7\", \"number\": 12"
    ", \"node_errors\": {\"1\": {\"errors\": [{\"type\": \"value_bigger_than_"
    "max\", \"message\": \"Value 99999 bigger than max of 16384\", \"details"
    "\": \"width\", \"extra_info\": {\"input_name\": \"width\", \"input_confi"
    "g\": [\"INT\", {\"default\": 512, \"min\": 1, \"max\": 16384, \"step\": "
    "1}], \"received_value\": 99999}}], \"dependent_outputs\": [\"2\"], \"cla"
    "ss_type\": \"EmptyImage\"}}}";

/* HTTP 200 */
static const char FX_HISTORY_SUCCESS[] =
    "{\"p-ok\": {\"prompt\": [0, \"p-ok\", {\"1\": {\"class_type\": \"EmptyIm"
    "age\", \"inputs\": {\"width\": 8, \"height\": 8, \"batch_size\": 2, \"co"
    "lor\": 255}}, \"2\": {\"class_type\": \"SaveImage\", \"inputs\": {\"imag"
    "es\": [\"1\", 0], \"filename_prefix\": \"fs/a\"}}, \"3\": {\"class_type"
    "\": \"PrimitiveString\", \"inputs\": {\"value\": \"hello\"}}, \"4\": {\""
    "class_type\": \"PreviewAny\", \"inputs\": {\"source\": [\"3\", 0]}}, \"5"
    "\": {\"class_type\": \"SaveAnimatedWEBP\", \"inputs\": {\"images\": [\"1"
    "\", 0], \"filename_prefix\": \"fs/w\", \"fps\": 6.0, \"lossless\": true,"
    " \"quality\": 80, \"method\": \"default\"}}, \"6\": {\"class_type\": \"C"
    "reateVideo\", \"inputs\": {\"images\": [\"1\", 0], \"fps\": 8.0}}, \"7\""
    ": {\"class_type\": \"SaveVideo\", \"inputs\": {\"video\": [\"6\", 0], \""
    "filename_prefix\": \"fs/v\", \"format\": \"auto\", \"codec\": \"auto\"}}"
    ", \"8\": {\"class_type\": \"FSSaveVideo\", \"inputs\": {\"images\": [\"1"
    "\", 0], \"filename_prefix\": \"fs/fv\", \"fps\": 8.0}}, \"10\": {\"class"
    "_type\": \"CheckpointLoaderSimple\", \"inputs\": {\"ckpt_name\": \"sd15."
    "safetensors\"}}, \"11\": {\"class_type\": \"EmptyLatentAudio\", \"inputs"
    "\": {\"seconds\": 1.0, \"batch_size\": 1}}, \"12\": {\"class_type\": \"V"
    "AEDecodeAudio\", \"inputs\": {\"samples\": [\"11\", 0], \"vae\": [\"10\""
    ", 2]}}, \"13\": {\"class_type\": \"SaveAudio\", \"inputs\": {\"audio\": "
    "[\"12\", 0], \"filename_prefix\": \"fs/au\"}}, \"14\": {\"class_type\": "
    "\"PreviewImage\", \"inputs\": {\"images\": [\"1\", 0]}}}, {\"client_id\""
    ": \"C1\", \"create_time\": 1795987107795}, [\"2\", \"4\", \"5\", \"7\", "
    "\"8\", \"13\", \"14\"]], \"outputs\": {\"2\": {\"images\": [{\"filename"
    "\": \"a_00001_.png\", \"subfolder\": \"fs\", \"type\": \"output\"}, {\"f"
    "ilename\": \"a_00002_.png\", \"subfolder\": \"fs\", \"type\": \"output\""
    "}]}, \"5\": {\"images\": [{\"filename\": \"w_00001_.webp\", \"subfolder"
    "\": \"fs\", \"type\": \"output\"}], \"animated\": [true]}, \"8\": {\"vid"
    "eos\": [{\"filename\": \"fv_00001_.mp4\", \"subfolder\": \"fs\", \"type"
    "\": \"output\", \"format\": \"video/mp4\"}]}, \"14\": {\"images\": [{\"f"
    "ilename\": \"ComfyUI_temp_iuvbq_00001_.png\", \"subfolder\": \"\", \"typ"
    "e\": \"temp\"}, {\"filename\": \"ComfyUI_temp_iuvbq_00002_.png\", \"subf"
    "older\": \"\", \"type\": \"temp\"}]}, \"4\": {\"text\": [\"hello\"]}, \""
    "7\": {\"images\": [{\"filename\": \"v_00001_.mp4\", \"subfolder\": \"fs"
    "\", \"type\": \"output\"}], \"animated\": [true]}, \"13\": {\"audio\": ["
    "{\"filename\": \"au_00001_.flac\", \"subfolder\": \"fs\", \"type\": \"ou"
    "tput\"}]}}, \"status\": {\"status_str\": \"success\", \"completed\": tru"
    "e, \"messages\": [[\"execution_start\", {\"prompt_id\": \"p-ok\", \"time"
    "stamp\": 1795987107795}], [\"execution_cached\", {\"nodes\": [], \"promp"
    "t_id\": \"p-ok\", \"timestamp\": 1795987107795}], [\"execution_success\""
    ", {\"prompt_id\": \"p-ok\", \"timestamp\": 1795987108007}]]}, \"meta\": "
    "{\"2\": {\"node_id\": \"2\", \"display_node\": \"2\", \"parent_node\": n"
    "ull, \"real_node_id\": \"2\"}, \"5\": {\"node_id\": \"5\", \"display_nod"
    "e\": \"5\", \"parent_node\": null, \"real_node_id\": \"5\"}, \"8\": {\"n"
    "ode_id\": \"8\", \"display_node\": \"8\", \"parent_node\": null, \"real_"
    "node_id\": \"8\"}, \"14\": {\"node_id\": \"14\", \"display_node\": \"14"
    "\", \"parent_node\": null, \"real_node_id\": \"14\"}, \"4\": {\"node_id"
    "\": \"4\", \"display_node\": \"4\", \"parent_node\": null, \"real_node_i"
    "d\": \"4\"}, \"7\": {\"node_id\": \"7\", \"display_node\": \"7\", \"pare"
    "nt_node\": null, \"real_node_id\": \"7\"}, \"13\": {\"node_id\": \"13\","
    " \"display_node\": \"13\", \"parent_node\": null, \"real_node_id\": \"13"
    "\"}}}}";

/* HTTP 200 */
static const char FX_HISTORY_ERROR[] =
    "{\"p-err\": {\"prompt\": [1, \"p-err\", {\"1\": {\"class_type\": \"Empty"
    "Image\", \"inputs\": {\"width\": 7, \"height\": 8, \"batch_size\": 2, \""
    "color\": 255}}, \"2\": {\"class_type\": \"SaveImage\", \"inputs\": {\"im"
    "ages\": [\"1\", 0], \"filename_prefix\": \"fs/a\"}}}, {\"client_id\": \""
    "C1\", \"create_time\": 1795987108312}, [\"2\"]], \"outputs\": {}, \"stat"
    "us\": {\"status_str\": \"error\", \"completed\": false, \"messages\": [["
    "\"execution_start\", {\"prompt_id\": \"p-err\", \"timestamp\": 179598710"
    "8312}], [\"execution_cached\", {\"nodes\": [], \"prompt_id\": \"p-err\","
    " \"timestamp\": 1795987108313}], [\"execution_error\", {\"prompt_id\": "
    "\"p-err\", \"node_id\": \"1\", \"node_type\": \"EmptyImage\", \"executed"
    "\": [], \"exception_message\": \"Error while loading /opt/ComfyUI/models"
    "/x.safetensors\\nTraceback (most recent call last):\\n  File \\\"/opt/Co"
    "mfyUI/a.py\\\"\\n\", \"exception_type\": \"RuntimeError\", \"traceback\""
    ": [\"  File \\\"/opt/ComfyUI/execution.py\\\", line 518, in execute\\n  "
    "  output_data, output_ui, has_subgraph, has_pending_tasks = await get_ou"
    "tput_data(prompt_id, unique_id, obj, input_data_all, execution_block_cb="
    "execution_block_cb, pre_execute_cb=pre_execute_cb, v3_data=v3_data)\\n\""
    ", \"  File \\\"/opt/ComfyUI/execution.py\\\", line 329, in get_output_da"
    "ta\\n    return_values = await _async_map_node_over_list(prompt_id, uniq"
    "ue_id, obj, input_data_all, obj.FUNCTION, allow_interrupt=True, executio"
    "n_block_cb=execution_block_cb, pre_execute_cb=pre_execute_cb, v3_data=v3"
    "_data)\\n\", \"  File \\\"/opt/ComfyUI/execution.py\\\", line 303, in _a"
    "sync_map_node_over_list\\n    await process_inputs(input_dict, i)\\n\", "
    "\"  File \\\"/opt/ComfyUI/execution.py\\\", line 291, in process_inputs"
    "\\n    result = f(**inputs)\\n\", \"  File \\\"/opt/ComfyUI/comfy/sample"
    ".py\\\", line 60, in sample\\n    samples = sampler.sample(noise, positi"
    "ve, negative, cfg=cfg)\\n\"], \"current_inputs\": {\"width\": [7], \"hei"
    "ght\": [8], \"batch_size\": [2], \"color\": [255]}, \"current_outputs\":"
    " [\"2\", \"1\"], \"timestamp\": 1795987108324}]]}, \"meta\": {}}}";

/* HTTP 200 */
static const char FX_HISTORY_INTERRUPTED[] =
    "{\"p-int\": {\"prompt\": [2, \"p-int\", {\"1\": {\"class_type\": \"Empty"
    "Image\", \"inputs\": {\"width\": 9, \"height\": 8, \"batch_size\": 2, \""
    "color\": 255}}, \"2\": {\"class_type\": \"SaveImage\", \"inputs\": {\"im"
    "ages\": [\"1\", 0], \"filename_prefix\": \"fs/a\"}}}, {\"client_id\": \""
    "C1\", \"create_time\": 1795987108367}, [\"2\"]], \"outputs\": {}, \"stat"
    "us\": {\"status_str\": \"error\", \"completed\": false, \"messages\": [["
    "\"execution_start\", {\"prompt_id\": \"p-int\", \"timestamp\": 179598710"
    "8368}], [\"execution_cached\", {\"nodes\": [], \"prompt_id\": \"p-int\","
    " \"timestamp\": 1795987108368}], [\"execution_interrupted\", {\"prompt_i"
    "d\": \"p-int\", \"node_id\": \"1\", \"node_type\": \"EmptyImage\", \"exe"
    "cuted\": [], \"timestamp\": 1795987108672}]]}, \"meta\": {}}}";

/* HTTP 200 */
static const char FX_HISTORY_PENDING[] =
    "{}";

static const char FX_WS_STATUS[] =
    "{\"type\": \"status\", \"data\": {\"status\": {\"exec_info\": {\"queue_r"
    "emaining\": 0}}, \"sid\": \"C1\"}}";

static const char FX_WS_STATUS_B[] =
    "{\"type\": \"status\", \"data\": {\"status\": {\"exec_info\": {\"queue_r"
    "emaining\": 1}}}}";

static const char FX_WS_EXECUTION_START[] =
    "{\"type\": \"execution_start\", \"data\": {\"prompt_id\": \"p-ok\", \"ti"
    "mestamp\": 1795987107795}}";

static const char FX_WS_EXECUTION_CACHED[] =
    "{\"type\": \"execution_cached\", \"data\": {\"nodes\": [], \"prompt_id\""
    ": \"p-ok\", \"timestamp\": 1795987107795}}";

static const char FX_WS_PROGRESS_STATE[] =
    "{\"type\": \"progress_state\", \"data\": {\"prompt_id\": \"p-ok\", \"nod"
    "es\": {\"1\": {\"value\": 0.0, \"max\": 1.0, \"state\": \"running\", \"n"
    "ode_id\": \"1\", \"prompt_id\": \"p-ok\", \"display_node_id\": \"1\", \""
    "parent_node_id\": null, \"real_node_id\": \"1\"}}}}";

static const char FX_WS_EXECUTING[] =
    "{\"type\": \"executing\", \"data\": {\"node\": \"1\", \"display_node\": "
    "\"1\", \"prompt_id\": \"p-ok\"}}";

static const char FX_WS_EXECUTED[] =
    "{\"type\": \"executed\", \"data\": {\"node\": \"2\", \"display_node\": "
    "\"2\", \"output\": {\"images\": [{\"filename\": \"a_00001_.png\", \"subf"
    "older\": \"fs\", \"type\": \"output\"}, {\"filename\": \"a_00002_.png\","
    " \"subfolder\": \"fs\", \"type\": \"output\"}]}, \"prompt_id\": \"p-ok\""
    "}}";

static const char FX_WS_EXECUTION_SUCCESS[] =
    "{\"type\": \"execution_success\", \"data\": {\"prompt_id\": \"p-ok\", \""
    "timestamp\": 1795987108007}}";

static const char FX_WS_EXECUTING_NULL[] =
    "{\"type\": \"executing\", \"data\": {\"node\": null, \"prompt_id\": \"p-"
    "ok\"}}";

static const char FX_WS_EXECUTION_ERROR[] =
    "{\"type\": \"execution_error\", \"data\": {\"prompt_id\": \"p-err\", \"n"
    "ode_id\": \"1\", \"node_type\": \"EmptyImage\", \"executed\": [], \"exce"
    "ption_message\": \"Error while loading /opt/ComfyUI/models/x.safetensors"
    "\\nTraceback (most recent call last):\\n  File \\\"/opt/ComfyUI/a.py\\\""
    "\\n\", \"exception_type\": \"RuntimeError\", \"traceback\": [\"  File \\"
    "\"/opt/ComfyUI/execution.py\\\", line 518, in execute\\n    output_data,"
    " output_ui, has_subgraph, has_pending_tasks = await get_output_data(prom"
    "pt_id, unique_id, obj, input_data_all, execution_block_cb=execution_bloc"
    "k_cb, pre_execute_cb=pre_execute_cb, v3_data=v3_data)\\n\", \"  File \\"
    "\"/opt/ComfyUI/execution.py\\\", line 329, in get_output_data\\n    retu"
    "rn_values = await _async_map_node_over_list(prompt_id, unique_id, obj, i"
    "nput_data_all, obj.FUNCTION, allow_interrupt=True, execution_block_cb=ex"
    "ecution_block_cb, pre_execute_cb=pre_execute_cb, v3_data=v3_data)\\n\", "
    "\"  File \\\"/opt/ComfyUI/execution.py\\\", line 303, in _async_map_node"
    "_over_list\\n    await process_inputs(input_dict, i)\\n\", \"  File \\\""
    "/opt/ComfyUI/execution.py\\\", line 291, in process_inputs\\n    result "
    "= f(**inputs)\\n\", \"  File \\\"/opt/ComfyUI/comfy/sample.py\\\", line "
    "60, in sample\\n    samples = sampler.sample(noise, positive, negative, "
    "cfg=cfg)\\n\"], \"current_inputs\": {\"width\": [7], \"height\": [8], \""
    "batch_size\": [2], \"color\": [255]}, \"current_outputs\": [\"2\", \"1\""
    "], \"timestamp\": 1795987108324}}";

static const char FX_WS_EXECUTION_INTERRUPTED[] =
    "{\"type\": \"execution_interrupted\", \"data\": {\"prompt_id\": \"p-int"
    "\", \"node_id\": \"1\", \"node_type\": \"EmptyImage\", \"executed\": [],"
    " \"timestamp\": 1795987108672}}";


/* the graph the 400 fixture was made from, valid enough to deploy */
static const char WF_ERR[] =
    "{\"1\": {\"class_type\": \"EmptyImage\", \"inputs\": {\"width\": 512,"
    "    \"height\": 512, \"batch_size\": 1, \"color\": 0}},"
    " \"2\": {\"class_type\": \"SaveImage\", \"inputs\": {"
    "    \"images\": [\"1\", 0], \"filename_prefix\": \"x\"}},"
    " \"3\": {\"class_type\": \"ImageFlip\", \"inputs\": {"
    "    \"image\": [\"1\", 0], \"flip_method\": \"x-axis: vertically\"}},"
    " \"4\": {\"class_type\": \"SaveImage\", \"inputs\": {"
    "    \"images\": [\"3\", 0], \"filename_prefix\": \"x\"}},"
    " \"5\": {\"class_type\": \"ImageInvert\", \"inputs\": {"
    "    \"image\": [\"1\", 0]}},"
    " \"6\": {\"class_type\": \"SaveImage\", \"inputs\": {"
    "    \"images\": [\"5\", 0], \"filename_prefix\": \"x\"}},"
    " \"7\": {\"class_type\": \"SolidMask\", \"inputs\": {\"value\": 1.0,"
    "    \"width\": 8, \"height\": 8}},"
    " \"8\": {\"class_type\": \"SaveImage\", \"inputs\": {"
    "    \"images\": [\"7\", 0], \"filename_prefix\": \"x\"}},"
    " \"9\": {\"class_type\": \"LoadImage\", \"inputs\": {"
    "    \"image\": \"in.png\"}},"
    " \"10\": {\"class_type\": \"SaveImage\", \"inputs\": {"
    "    \"images\": [\"9\", 0], \"filename_prefix\": \"x\"}},"
    " \"11\": {\"class_type\": \"EmptyImage\", \"inputs\": {\"width\": 8,"
    "    \"height\": 8, \"batch_size\": 1, \"color\": 0}},"
    " \"12\": {\"class_type\": \"SaveImage\", \"inputs\": {"
    "    \"images\": [\"11\", 0], \"filename_prefix\": \"x\"}},"
    " \"13\": {\"class_type\": \"SaveImage\", \"inputs\": {"
    "    \"images\": [\"1\", 0], \"filename_prefix\": \"y\"}},"
    " \"20\": {\"class_type\": \"KSampler\", \"inputs\": {\"steps\": 20,"
    "    \"seed\": 1, \"sampler_name\": \"euler\", \"model\": [\"1\", 0]}}}";

static const char *IN_ERR[] = {
    "width", "1.width", "height", "1.height", "batch", "1.batch_size",
    "flip", "3.flip_method", "picture", "9.image", "steps", "20.steps",
    "seed", "20.seed", "sampler", "20.sampler_name", NULL
};

static const char *OUT_ERR[] = { "result", "2", "flipped", "4", NULL };


/* the graph the history fixtures were made from */
static const char WF_BIG[] =
    "{\"1\": {\"class_type\": \"EmptyImage\", \"inputs\": {\"width\": 8,"
    "    \"height\": 8, \"batch_size\": 2, \"color\": 255}},"
    " \"2\": {\"class_type\": \"SaveImage\", \"inputs\": {"
    "    \"images\": [\"1\", 0], \"filename_prefix\": \"fs/a\"}},"
    " \"3\": {\"class_type\": \"PrimitiveString\","
    "    \"inputs\": {\"value\": \"hello\"}},"
    " \"4\": {\"class_type\": \"PreviewAny\","
    "    \"inputs\": {\"source\": [\"3\", 0]}},"
    " \"5\": {\"class_type\": \"SaveAnimatedWEBP\", \"inputs\": {"
    "    \"images\": [\"1\", 0], \"filename_prefix\": \"fs/w\"}},"
    " \"6\": {\"class_type\": \"CreateVideo\", \"inputs\": {"
    "    \"images\": [\"1\", 0], \"fps\": 8.0}},"
    " \"7\": {\"class_type\": \"SaveVideo\", \"inputs\": {"
    "    \"video\": [\"6\", 0], \"filename_prefix\": \"fs/v\"}},"
    " \"8\": {\"class_type\": \"FSSaveVideo\", \"inputs\": {"
    "    \"images\": [\"1\", 0], \"filename_prefix\": \"fs/fv\"}},"
    " \"9\": {\"class_type\": \"VHS_VideoCombine\", \"inputs\": {"
    "    \"images\": [\"1\", 0]}},"
    " \"13\": {\"class_type\": \"SaveAudio\", \"inputs\": {"
    "    \"filename_prefix\": \"fs/au\"}},"
    " \"14\": {\"class_type\": \"PreviewImage\", \"inputs\": {"
    "    \"images\": [\"1\", 0]}},"
    " \"15\": {\"class_type\": \"SaveImage\", \"inputs\": {"
    "    \"images\": [\"1\", 0], \"filename_prefix\": \"never\"}}}";

static const char *IN_BIG[] = { "width", "1.width", NULL };

static const char *OUT_BIG[] = {
    "image", "2", "caption", "4", "webp", "5", "video", "7", "clip", "8",
    "combined", "9", "audio", "13", "preview", "14", "unused", "15", NULL
};


/* ------------------------------------------------------------- helpers */


static fs_deployment_t *
deploy(const char *wf, const char **inputs, const char **outputs)
{
    size_t            i;
    fs_error_t        err;
    fs_deployment_t  *d;

    d = fs_deployment_new();
    assert_non_null(d);

    memset(&err, 0, sizeof(err));
    assert_int_equal(fs_workflow_load(d, "test.json", wf, strlen(wf), &err),
                     0);

    for (i = 0; inputs[i]; i += 2) {
        if (fs_input_declare(d, inputs[i], inputs[i + 1], 0, NULL, NULL,
                             &err) != 0)
        {
            fail_msg("input %s: %s", inputs[i], err.msg);
        }
    }

    for (i = 0; outputs[i]; i += 2) {
        if (fs_output_declare(d, outputs[i], outputs[i + 1], 0, NULL, NULL,
                              &err) != 0)
        {
            fail_msg("output %s: %s", outputs[i], err.msg);
        }
    }

    if (fs_deployment_check(d, &err) != 0) {
        fail_msg("deploy: %s", err.msg);
    }

    return d;
}


static char *
dump(json_t *j)
{
    char  *s;

    s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS);
    assert_non_null(s);

    return s;
}


#define assert_has(j, needle)                                                 \
    do {                                                                      \
        char *s_ = dump(j);                                                   \
        if (strstr(s_, (needle)) == NULL) {                                   \
            fail_msg("%s\n    lacks \"%s\"", s_, (needle));                   \
        }                                                                     \
        free(s_);                                                             \
    } while (0)

#define assert_lacks(j, needle)                                               \
    do {                                                                      \
        char *s_ = dump(j);                                                   \
        if (strstr(s_, (needle)) != NULL) {                                   \
            fail_msg("%s\n    has \"%s\"", s_, (needle));                     \
        }                                                                     \
        free(s_);                                                             \
    } while (0)

#define assert_str(j, key, want)                                              \
    do {                                                                      \
        const char *v_ = json_string_value(json_object_get((j), (key)));      \
        if (v_ == NULL || strcmp(v_, (want)) != 0) {                          \
            fail_msg("\"%s\" is \"%s\", not \"%s\"", (key),                   \
                     v_ ? v_ : "(none)", (want));                             \
        }                                                                     \
    } while (0)

#define assert_starts(s, prefix)                                              \
    do {                                                                      \
        const char *v_ = (s);                                                 \
        if (v_ == NULL || strncmp(v_, (prefix), strlen(prefix)) != 0) {       \
            fail_msg("\"%s\" does not start with \"%s\"",                     \
                     v_ ? v_ : "(null)", (prefix));                           \
        }                                                                     \
    } while (0)


/* nothing ComfyUI says about its insides may reach a caller */

static void
assert_safe(json_t *j)
{
    assert_lacks(j, "/opt/");
    assert_lacks(j, "Traceback");
    assert_lacks(j, "execution.py");
    assert_lacks(j, "File \\\"");
    assert_lacks(j, "current_inputs");
    assert_lacks(j, "safetensors");
    assert_lacks(j, "tensor([");
}


static int
prompt(const fs_deployment_t *d, int status, const char *body, char **id,
    long *number, json_t **problem)
{
    return fs_prompt_reply(d, status, body, strlen(body), id, number,
                           problem);
}


/* the errors entry of a node and input (input NULL: any), or fail */

static json_t *
entry(json_t *problem, const char *node, const char *msg_part)
{
    size_t       i;
    json_t      *e;
    const char  *m;

    json_array_foreach(json_object_get(problem, "errors"), i, e) {
        m = json_string_value(json_object_get(e, "message"));

        if (strcmp(json_string_value(json_object_get(e, "node")), node) == 0
            && m && strstr(m, msg_part))
        {
            return e;
        }
    }

    assert_has(problem, msg_part);
    fail_msg("no entry for node %s with \"%s\"", node, msg_part);

    return NULL;
}


static void
assert_input(json_t *e, const char *name)
{
    json_t  *in;

    in = json_object_get(e, "input");

    if (name == NULL) {
        assert_true(json_is_null(in));
        return;
    }

    assert_str(e, "input", name);
}


/* ------------------------------------------------------- POST /prompt */


static void
test_prompt_accepted(void **state)
{
    char             *id;
    long              number;
    json_t           *problem;
    fs_deployment_t  *d;

    (void) state;

    d = deploy(WF_ERR, IN_ERR, OUT_ERR);

    assert_int_equal(prompt(d, 200, FX_PROMPT_OK, &id, &number, &problem),
                     0);
    assert_string_equal(id, "p-ok");
    assert_int_equal(number, 0);
    assert_null(problem);
    free(id);

    /* older servers: their own id, node_errors [] */
    assert_int_equal(prompt(d, 200, FX_OLD_200, &id, &number, &problem), 0);
    assert_string_equal(id, "3823daad-c36a-4bb3-9154-da6bbe7c759b");
    assert_int_equal(number, 9);
    free(id);

    /* no number; a real number (a "number" sent in the request) */
    assert_int_equal(prompt(d, 200, "{\"prompt_id\": \"a\"}", &id, &number,
                            &problem), 0);
    assert_int_equal(number, -1);
    free(id);

    assert_int_equal(prompt(d, 200, "{\"prompt_id\": \"a\", \"number\": 5.0,"
                            " \"node_errors\": {}}", &id, &number, &problem),
                     0);
    assert_int_equal(number, 5);
    free(id);

    fs_deployment_free(d);
}


static void
test_prompt_200_node_errors(void **state)
{
    char             *id;
    long              number;
    json_t           *problem, *e;
    fs_deployment_t  *d, *other;

    static const char *out_other[] = { "result", "4", NULL };
    static const char *out_failing[] = { "first", "1", NULL };

    (void) state;

    /* node 1 fails and output 2 depends on it: our "result" never runs */
    d = deploy(WF_ERR, IN_ERR, OUT_ERR);

    assert_int_equal(prompt(d, 200, FX_200_NODE_ERRORS, &id, &number,
                            &problem), -1);
    assert_non_null(problem);
    assert_string_equal(id, "p-part");       /* queued anyway: cancel it */
    assert_str(problem, "comfyui_type", "prompt_outputs_failed_validation");

    e = entry(problem, "1", "width must be at most 16384 on this backend "
              "(got 99999)");
    assert_input(e, "width");
    assert_starts(json_string_value(json_object_get(problem, "detail")),
                  "the backend cannot run this workflow's outputs: width "
                  "must be at most 16384");
    assert_int_equal(json_array_size(json_object_get(problem, "errors")), 1);
    json_decref(problem);
    free(id);

    /* the same on an old server */
    assert_int_equal(prompt(d, 200, FX_OLD_200_NODE_ERRORS, &id, &number,
                            &problem), -1);
    assert_non_null(id);
    entry(problem, "1", "width must be at most 16384");
    json_decref(problem);
    free(id);

    /* output 4 does not depend on node 1: accepted */
    other = deploy(WF_ERR, IN_ERR, out_other);

    assert_int_equal(prompt(other, 200, FX_200_NODE_ERRORS, &id, &number,
                            &problem), 0);
    assert_null(problem);
    assert_string_equal(id, "p-part");
    assert_int_equal(number, 8);
    free(id);
    fs_deployment_free(other);

    /* a declared output that is itself the failing node */
    other = deploy(WF_ERR, IN_ERR, out_failing);

    assert_int_equal(prompt(other, 200, FX_200_NODE_ERRORS, &id, &number,
                            &problem), -1);
    entry(problem, "1", "width");
    json_decref(problem);
    free(id);
    fs_deployment_free(other);

    fs_deployment_free(d);
}


static void
test_prompt_400_every_error_type(void **state)
{
    int               old;
    char             *id;
    long              number;
    json_t           *problem, *e;
    const char       *body;
    fs_deployment_t  *d;

    (void) state;

    d = deploy(WF_ERR, IN_ERR, OUT_ERR);

    for (old = 0; old < 2; old++) {
        body = old ? FX_OLD_400_VALIDATION : FX_400_VALIDATION;

        assert_int_equal(prompt(d, 400, body, &id, &number, &problem), -1);
        assert_null(id);
        assert_non_null(problem);

        /* old servers send a plain string: the type is read from it */
        assert_str(problem, "comfyui_type",
                   "prompt_outputs_failed_validation");
        assert_int_equal(json_array_size(json_object_get(problem, "errors")),
                         10);
        assert_starts(json_string_value(json_object_get(problem, "detail")),
                      "the backend rejected this run: width must be at most "
                      "16384 on this backend (got 99999) (and 9 more "
                      "problems)");

        /* value_bigger_than_max, value_smaller_than_min, invalid_input_type
         * on our declared inputs */
        e = entry(problem, "1", "width must be at most 16384 on this "
                  "backend (got 99999)");
        assert_input(e, "width");
        e = entry(problem, "1", "height must be at least 1 on this backend "
                  "(got 0)");
        assert_input(e, "height");
        e = entry(problem, "1", "batch must be an integer (got \"abc\")");
        assert_input(e, "batch");

        /* required_input_missing on a slot we do not declare */
        e = entry(problem, "2", "input \"filename_prefix\" of node 2 "
                  "(SaveImage) is required but has no value");
        assert_input(e, NULL);

        /* value_not_in_list with the options of a COMBO */
        e = entry(problem, "3", "flip must be one of \"x-axis: vertically\", "
                  "\"y-axis: horizontally\" on this backend (got "
                  "\"diagonal\")");
        assert_input(e, "flip");

        /* bad_linked_input, return_type_mismatch */
        e = entry(problem, "5", "input \"image\" of node 5 (ImageInvert) has "
                  "a malformed link");
        assert_input(e, NULL);
        e = entry(problem, "8", "input \"images\" of node 8 (SaveImage) is "
                  "linked to an output of type MASK where the backend "
                  "expects IMAGE");
        assert_input(e, NULL);

        /* custom_validation_failed on a declared file input */
        e = entry(problem, "9", "picture was refused by the node's own "
                  "checks on this backend");
        assert_input(e, "picture");

        /* exception_during_validation: the type, never the traceback */
        e = entry(problem, "13", "node 13 (SaveImage) could not be checked "
                  "by the backend (TypeError)");
        assert_input(e, NULL);

        entry(problem, "11", "input \"height\" of node 11 (EmptyImage) is "
              "required");

        assert_safe(problem);
        assert_lacks(problem, "invalid literal");
        assert_lacks(problem, "not a mapping");
        json_decref(problem);
    }

    fs_deployment_free(d);
}


/* the remaining error types, and shapes the simulator does not make */

static void
test_prompt_400_more(void **state)
{
    char             *id;
    long              number;
    json_t           *problem, *e;
    fs_deployment_t  *d;

    static const char  steps[] =
        "{\"error\": {\"type\": \"prompt_outputs_failed_validation\","
        " \"message\": \"Prompt outputs failed validation\", \"details\":"
        " \"\", \"extra_info\": {}}, \"node_errors\": {\"20\": {\"errors\": ["
        " {\"type\": \"value_bigger_than_max\", \"message\": \"Value 99 "
        "bigger than max of 50\", \"details\": \"steps\", \"extra_info\": "
        "{\"input_name\": \"steps\", \"input_config\": [\"INT\", {\"min\": 1,"
        " \"max\": 50}], \"received_value\": 99}},"
        " {\"type\": \"value_bigger_than_max\", \"message\": \"x\","
        " \"details\": \"seed\", \"extra_info\": {\"input_name\": \"seed\","
        " \"input_config\": [\"INT\", {\"min\": 0,"
        " \"max\": 18446744073709551615}], \"received_value\": NaN}},"
        " {\"type\": \"value_not_in_list\", \"message\": \"Value not in "
        "list\", \"details\": \"sampler_name: 'x' not in (list of length "
        "40)\", \"extra_info\": {\"input_name\": \"sampler_name\", "
        "\"input_config\": null, \"received_value\": \"x\"}},"
        " {\"type\": \"exception_during_inner_validation\", \"message\": "
        "\"Exception when validating inner node\", \"details\": "
        "\"/opt/ComfyUI/nodes.py boom\", \"extra_info\": {\"input_name\": "
        "\"model\", \"exception_message\": \"/opt/x\", \"exception_type\": "
        "\"KeyError\", \"traceback\": [\"File /opt/ComfyUI/nodes.py\"]}},"
        " {\"type\": \"some_new_type\", \"message\": \"/etc/passwd\","
        " \"details\": \"C:\\\\ComfyUI\\\\x.py\", \"extra_info\": {}},"
        " {\"message\": \"no type\"}],"
        " \"dependent_outputs\": [\"2\"], \"class_type\": \"KSampler\"},"
        " \"7\": {\"errors\": [], \"dependent_outputs\": [2],"
        "  \"class_type\": \"SolidMask\"}}}";

    (void) state;

    d = deploy(WF_ERR, IN_ERR, OUT_ERR);

    assert_int_equal(prompt(d, 400, steps, &id, &number, &problem), -1);

    /* the example of the brief, in our input's name */
    e = entry(problem, "20", "steps must be at most 50 on this backend "
              "(got 99)");
    assert_input(e, "steps");

    /* 2^64 - 1 and NaN do not make the reply unreadable */
    e = entry(problem, "20", "seed must be at most 18446744073709551615 on "
              "this backend");
    assert_input(e, "seed");

    /* a list too long to send: no options, still our name */
    e = entry(problem, "20", "sampler is not one of the options this "
              "backend offers (got \"x\")");
    assert_input(e, "sampler");

    e = entry(problem, "20", "input \"model\" of node 20 (KSampler) could "
              "not be checked by the backend (KeyError)");
    assert_input(e, NULL);

    entry(problem, "20", "node 20 (KSampler) was rejected by the backend "
          "(some_new_type)");
    entry(problem, "20", "node 20 (KSampler) was rejected by the backend");

    /* an entry with no errors of its own still counts */
    entry(problem, "7", "node 7 (SolidMask) failed validation");

    assert_safe(problem);
    assert_lacks(problem, "passwd");
    assert_lacks(problem, "ComfyUI\\\\");
    json_decref(problem);

    fs_deployment_free(d);
}


static void
test_prompt_400_whole_prompt(void **state)
{
    char             *id;
    long              number;
    json_t           *problem, *e;
    fs_deployment_t  *d;

    (void) state;

    d = deploy(WF_ERR, IN_ERR, OUT_ERR);

    /* invalid_prompt: the class comes from our workflow, node "#1" */
    assert_int_equal(prompt(d, 400, FX_400_CLASS, &id, &number, &problem),
                     -1);
    assert_str(problem, "comfyui_type", "invalid_prompt");
    assert_str(problem, "detail", "the backend does not have node class "
               "\"EmptyImage\" (node 1); install it there or use another "
               "backend");
    e = entry(problem, "1", "does not have node class");
    assert_input(e, NULL);
    assert_lacks(problem, "Nope");
    json_decref(problem);

    assert_int_equal(prompt(d, 400, FX_OLD_400_CLASS, &id, &number,
                            &problem), -1);
    assert_str(problem, "comfyui_type", "invalid_prompt");
    entry(problem, "1", "does not have node class \"EmptyImage\"");
    json_decref(problem);

    assert_int_equal(prompt(d, 400, FX_400_NOCLASS, &id, &number, &problem),
                     -1);
    assert_str(problem, "comfyui_type", "invalid_prompt");
    json_decref(problem);

    /* a node id we do not have: no class is made up */
    assert_int_equal(prompt(d, 400, "{\"error\": {\"type\": "
                            "\"invalid_prompt\", \"details\": \"Node ID "
                            "'#99'\"}, \"node_errors\": {}}", &id, &number,
                            &problem), -1);
    assert_str(problem, "detail", "the backend cannot run a node of this "
               "workflow (an unknown node class)");
    json_decref(problem);

    assert_int_equal(prompt(d, 400, FX_400_NO_OUTPUTS, &id, &number,
                            &problem), -1);
    assert_str(problem, "comfyui_type", "prompt_no_outputs");
    assert_has(problem, "no output it can run");
    json_decref(problem);

    assert_int_equal(prompt(d, 400, FX_400_NO_PROMPT, &id, &number,
                            &problem), -1);
    assert_str(problem, "comfyui_type", "no_prompt");
    assert_str(problem, "detail", "the backend received no workflow");
    json_decref(problem);

    /* an unknown type with nothing else */
    assert_int_equal(prompt(d, 400, "{\"error\": {\"type\": \"brand new!\"}}",
                            &id, &number, &problem), -1);
    assert_str(problem, "comfyui_type", "brandnew");
    assert_str(problem, "detail", "the backend rejected this run "
               "(brandnew)");
    json_decref(problem);

    /* an old plain string we cannot place */
    assert_int_equal(prompt(d, 400, "{\"error\": \"Something /opt/x\", "
                            "\"node_errors\": []}", &id, &number, &problem),
                     -1);
    assert_true(json_is_null(json_object_get(problem, "comfyui_type")));
    assert_str(problem, "detail", "the backend rejected this run");
    json_decref(problem);

    fs_deployment_free(d);
}


static void
test_prompt_generic(void **state)
{
    char             *id;
    long              number;
    json_t           *problem;
    fs_deployment_t  *d;

    (void) state;

    d = deploy(WF_ERR, IN_ERR, OUT_ERR);

    /* 500 text/plain for a body ComfyUI could not parse */
    assert_int_equal(prompt(d, 500, FX_500, &id, &number, &problem), -1);
    assert_null(id);
    assert_str(problem, "detail", "the backend failed to read the gateway's "
               "request (HTTP 500)");
    assert_true(json_is_null(json_object_get(problem, "comfyui_type")));
    assert_int_equal(json_array_size(json_object_get(problem, "errors")), 0);
    assert_lacks(problem, "trouble");
    json_decref(problem);

    /* 403 from the Origin check, with an empty body */
    assert_int_equal(fs_prompt_reply(d, 403, "", 0, &id, &number, &problem),
                     -1);
    assert_has(problem, "HTTP 403");
    json_decref(problem);

    assert_int_equal(fs_prompt_reply(d, 403, NULL, 0, &id, &number,
                                     &problem), -1);
    json_decref(problem);

    assert_int_equal(prompt(d, 502, "<html>bad gateway</html>", &id, &number,
                            &problem), -1);
    assert_str(problem, "detail", "the backend answered the prompt with "
               "HTTP 502");
    json_decref(problem);

    /* 400 and 200 that cannot be read */
    assert_int_equal(prompt(d, 400, "{\"error\": ", &id, &number, &problem),
                     -1);
    assert_has(problem, "could not be read");
    json_decref(problem);

    assert_int_equal(prompt(d, 400, "[1, 2]", &id, &number, &problem), -1);
    assert_has(problem, "could not be read");
    json_decref(problem);

    assert_int_equal(prompt(d, 200, "not json", &id, &number, &problem), -1);
    assert_null(id);
    assert_has(problem, "did not name the run");
    json_decref(problem);

    /* ids we could not put into a URL as they are */
    assert_int_equal(prompt(d, 200, "{\"prompt_id\": \"../x\"}", &id,
                            &number, &problem), -1);
    json_decref(problem);
    assert_int_equal(prompt(d, 200, "{\"prompt_id\": \"\"}", &id, &number,
                            &problem), -1);
    json_decref(problem);
    assert_int_equal(prompt(d, 200, "{\"prompt_id\": 7}", &id, &number,
                            &problem), -1);
    json_decref(problem);

    fs_deployment_free(d);
}


/* ------------------------------------------------------ GET /history/ID */


static int
history(const fs_deployment_t *d, const char *id, const char *body,
    fs_history_state_e *st, json_t **outputs, json_t **error)
{
    return fs_history_parse(d, id, body, strlen(body), st, outputs, error);
}


static void
assert_file(json_t *item, const char *kind, const char *filename,
    const char *subfolder, const char *type, const char *ct)
{
    assert_non_null(item);
    assert_str(item, "kind", kind);
    assert_str(item, "filename", filename);
    assert_str(item, "subfolder", subfolder);
    assert_str(item, "type", type);
    assert_str(item, "content_type", ct);
    assert_null(json_object_get(item, "text"));
}


static void
test_history_success(void **state)
{
    json_t              *outputs, *error, *list;
    fs_deployment_t     *d;
    fs_history_state_e   st;

    (void) state;

    d = deploy(WF_BIG, IN_BIG, OUT_BIG);

    assert_int_equal(history(d, "p-ok", FX_HISTORY_SUCCESS, &st, &outputs,
                             &error), 0);
    assert_int_equal(st, FS_HISTORY_SUCCEEDED);
    assert_null(error);
    assert_non_null(outputs);

    /* every declared output, by our names, and nothing else */
    assert_int_equal(json_object_size(outputs), 9);

    list = json_object_get(outputs, "image");
    assert_int_equal(json_array_size(list), 2);
    assert_file(json_array_get(list, 0), "images", "a_00001_.png", "fs",
                "output", "image/png");
    assert_file(json_array_get(list, 1), "images", "a_00002_.png", "fs",
                "output", "image/png");

    list = json_object_get(outputs, "caption");
    assert_int_equal(json_array_size(list), 1);
    assert_str(json_array_get(list, 0), "kind", "text");
    assert_str(json_array_get(list, 0), "text", "hello");
    assert_null(json_object_get(json_array_get(list, 0), "filename"));

    /* "animated": [true] is a marker, not a file */
    list = json_object_get(outputs, "webp");
    assert_int_equal(json_array_size(list), 1);
    assert_file(json_array_get(list, 0), "images", "w_00001_.webp", "fs",
                "output", "image/webp");

    list = json_object_get(outputs, "video");
    assert_int_equal(json_array_size(list), 1);
    assert_file(json_array_get(list, 0), "images", "v_00001_.mp4", "fs",
                "output", "video/mp4");

    list = json_object_get(outputs, "clip");
    assert_file(json_array_get(list, 0), "videos", "fv_00001_.mp4", "fs",
                "output", "video/mp4");

    list = json_object_get(outputs, "audio");
    assert_file(json_array_get(list, 0), "audio", "au_00001_.flac", "fs",
                "output", "audio/flac");

    list = json_object_get(outputs, "preview");
    assert_int_equal(json_array_size(list), 2);
    assert_str(json_array_get(list, 0), "type", "temp");
    assert_str(json_array_get(list, 0), "subfolder", "");

    /* declared, ran nothing (node 9 is not in this entry): [] */
    assert_int_equal(json_array_size(json_object_get(outputs, "combined")),
                     0);
    assert_int_equal(json_array_size(json_object_get(outputs, "unused")), 0);

    /* the prompt echoed back by ComfyUI is not ours to pass on */
    assert_lacks(outputs, "filename_prefix");
    json_decref(outputs);

    fs_deployment_free(d);
}


/* gifs (VHS), a custom file kind, text lists and oddities, by hand */

static void
test_history_kinds(void **state)
{
    json_t              *outputs, *error, *list;
    fs_deployment_t     *d;
    fs_history_state_e   st;

    static const char  body[] =
        "{\"r1\": {\"prompt\": [], \"outputs\": {"
        " \"9\": {\"gifs\": [{\"filename\": \"c_00001.gif\", \"subfolder\":"
        "    \"\", \"type\": \"output\", \"format\": \"image/gif\","
        "    \"frame_rate\": 8.0}],"
        "  \"meshes\": [{\"filename\": \"m.GLB\", \"subfolder\": \"3d\"}],"
        "  \"text\": [\"one\", [\"two\", \"three\"], 4, [[\"deep\"]], null],"
        "  \"animated\": [true, false],"
        "  \"odd\": \"not a list\","
        "  \"blobs\": [{\"no_filename\": 1}, {\"filename\": 5}],"
        "  \"latents\": [{\"filename\": \"x.latent\", \"type\": \"output\","
        "    \"format\": \"image/svg+xml\"}],"
        "  \"clips\": [{\"filename\": \"x.bin\", \"format\": \"video/mp4\"}],"
        "  \"values\": [\"plain\", 1.5]},"
        " \"2\": {}},"
        " \"status\": {\"status_str\": \"success\", \"completed\": true,"
        "  \"messages\": []}}}";

    (void) state;

    d = deploy(WF_BIG, IN_BIG, OUT_BIG);

    assert_int_equal(history(d, "r1", body, &st, &outputs, &error), 0);
    assert_int_equal(st, FS_HISTORY_SUCCEEDED);

    list = json_object_get(outputs, "combined");

    /* in ComfyUI's order across kinds */
    assert_file(json_array_get(list, 0), "gifs", "c_00001.gif", "",
                "output", "image/gif");
    assert_file(json_array_get(list, 1), "meshes", "m.GLB", "3d",
                "output", "application/octet-stream");
    assert_str(json_array_get(list, 2), "text", "one");
    assert_str(json_array_get(list, 3), "text", "two");
    assert_str(json_array_get(list, 4), "text", "three");
    assert_str(json_array_get(list, 5), "text", "4");
    assert_str(json_array_get(list, 5), "kind", "text");

    /* never a type a browser would run, from "format" */
    assert_file(json_array_get(list, 6), "latents", "x.latent", "",
                "output", "application/octet-stream");
    assert_file(json_array_get(list, 7), "clips", "x.bin", "", "output",
                "video/mp4");

    /* a string in a custom kind is kept as text of that kind */
    assert_str(json_array_get(list, 8), "kind", "values");
    assert_str(json_array_get(list, 8), "text", "plain");
    assert_int_equal(json_array_size(list), 9);

    /* a node present with nothing in it */
    assert_int_equal(json_array_size(json_object_get(outputs, "image")), 0);
    json_decref(outputs);

    fs_deployment_free(d);
}


static void
test_history_empty_and_pending(void **state)
{
    size_t               i;
    json_t              *outputs, *error, *v;
    const char          *k;
    fs_deployment_t     *d;
    fs_history_state_e   st;

    static const char *bad[] = {
        "", "not json", "[]", "null", "\"x\"", "{\"e\": 5}", "{\"e\": []}",
        "{\"e\": {}", NULL
    };

    (void) state;

    d = deploy(WF_BIG, IN_BIG, OUT_BIG);

    /* {}: queued, running, unknown or evicted */
    assert_int_equal(history(d, "p-ok", FX_HISTORY_PENDING, &st, &outputs,
                             &error), 0);
    assert_int_equal(st, FS_HISTORY_PENDING);
    assert_null(outputs);
    assert_null(error);

    /* another run's entry only */
    assert_int_equal(history(d, "mine", FX_HISTORY_SUCCESS, &st, &outputs,
                             &error), 0);
    assert_int_equal(st, FS_HISTORY_PENDING);
    assert_null(outputs);

    /* finished without outputs: all declared, all [] */
    assert_int_equal(history(d, "e", "{\"e\": {\"outputs\": {}, \"status\":"
                             " {\"status_str\": \"success\", \"completed\":"
                             " true, \"messages\": []}}}", &st, &outputs,
                             &error), 0);
    assert_int_equal(st, FS_HISTORY_SUCCEEDED);
    assert_int_equal(json_object_size(outputs), 9);

    json_object_foreach(outputs, k, v) {
        assert_true(json_is_array(v));
        assert_int_equal(json_array_size(v), 0);
    }

    json_decref(outputs);

    /* an entry from before "status" and "outputs" existed */
    assert_int_equal(history(d, "e", "{\"e\": {\"prompt\": []}}", &st,
                             &outputs, &error), 0);
    assert_int_equal(st, FS_HISTORY_SUCCEEDED);
    json_decref(outputs);

    /* no id given: the one entry there is */
    assert_int_equal(history(d, NULL, FX_HISTORY_SUCCESS, &st, &outputs,
                             &error), 0);
    assert_int_equal(st, FS_HISTORY_SUCCEEDED);
    json_decref(outputs);

    /* unparsable replies */
    for (i = 0; bad[i]; i++) {
        assert_int_equal(history(d, "e", bad[i], &st, &outputs, &error), -1);
        assert_int_equal(st, FS_HISTORY_PENDING);
        assert_null(outputs);
        assert_null(error);
    }

    fs_deployment_free(d);
}


static void
test_history_error(void **state)
{
    json_t              *outputs, *error;
    fs_deployment_t     *d;
    fs_history_state_e   st;

    (void) state;

    d = deploy(WF_BIG, IN_BIG, OUT_BIG);

    assert_int_equal(history(d, "p-err", FX_HISTORY_ERROR, &st, &outputs,
                             &error), 0);
    assert_int_equal(st, FS_HISTORY_FAILED);
    assert_non_null(error);
    assert_str(error, "type", "execution_error");
    assert_str(error, "node", "1");
    assert_str(error, "node_type", "EmptyImage");

    /* the type and the first line, its path hidden */
    assert_str(error, "message", "RuntimeError: Error while loading [path]");
    assert_safe(error);
    assert_int_equal(json_object_size(error), 4);

    /* partial outputs come too: here none */
    assert_int_equal(json_array_size(json_object_get(outputs, "image")), 0);
    json_decref(outputs);
    json_decref(error);

    /* status "error" with no message saying why */
    assert_int_equal(history(d, "e", "{\"e\": {\"outputs\": {\"2\": "
                             "{\"images\": [{\"filename\": \"a.png\"}]}}, "
                             "\"status\": {\"status_str\": \"error\", "
                             "\"completed\": false, \"messages\": 3}}}", &st,
                             &outputs, &error), 0);
    assert_int_equal(st, FS_HISTORY_FAILED);
    assert_str(error, "message", "the run failed on the backend");
    assert_true(json_is_null(json_object_get(error, "node")));
    assert_file(json_array_get(json_object_get(outputs, "image"), 0),
                "images", "a.png", "", "output", "image/png");
    json_decref(outputs);
    json_decref(error);

    fs_deployment_free(d);
}


static void
test_history_interrupted(void **state)
{
    json_t              *outputs, *error;
    fs_deployment_t     *d;
    fs_history_state_e   st;

    (void) state;

    d = deploy(WF_BIG, IN_BIG, OUT_BIG);

    assert_int_equal(history(d, "p-int", FX_HISTORY_INTERRUPTED, &st,
                             &outputs, &error), 0);
    assert_int_equal(st, FS_HISTORY_INTERRUPTED);
    assert_str(error, "type", "interrupted");
    assert_str(error, "node", "1");
    assert_str(error, "node_type", "EmptyImage");
    assert_str(error, "message", "the run was interrupted on the backend at "
               "node 1 (EmptyImage)");
    assert_int_equal(json_object_size(outputs), 9);
    json_decref(outputs);
    json_decref(error);

    fs_deployment_free(d);
}


/* ------------------------------------------------------------ cleaning */


static void
test_clean(void **state)
{
    size_t   i;
    char     out[64], big[600];
    json_t  *j;

    static const struct {
        const char  *in;
        const char  *out;
    } cases[] = {
        { "Error while loading /opt/ComfyUI/models/x.safetensors",
          "Error while loading [path]" },
        { "No such file or directory: '/srv/a b/c'", "No such file or "
          "directory: '[path] b/c'" },
        { "open C:\\ComfyUI\\models\\x.ckpt failed", "open [path] failed" },
        { "at C:/ComfyUI/x", "at [path]" },
        { "Program Files\\ComfyUI\\x here", "Program [path] here" },
        { "share \\\\server\\x", "share [path]" },
        { "home ~/x and ./y and ../z", "home [path] and [path] and [path]" },
        { "(/tmp/x) [file:///etc/p]", "([path] [file:[path]" },
        { "image/png and a / b", "image/png and a / b" },
        { "\n\n  first line\nTraceback (most recent call last):",
          "first line" },
        { "bad value tensor([[1., 2.]]) x", "bad value tensor(...)" },
        { "tab\there\x01", "tab here" },
        { "caf\xc3\xa9 \xff ok", "caf\xc3\xa9 ? ok" },
        { "", "" },
        { NULL, NULL }
    };

    (void) state;

    for (i = 0; cases[i].in; i++) {
        fs_reply_clean(cases[i].in, out, sizeof(out));
        if (strcmp(out, cases[i].out) != 0) {
            fail_msg("clean(\"%s\") is \"%s\", not \"%s\"", cases[i].in, out,
                     cases[i].out);
        }
    }

    fs_reply_clean(NULL, out, sizeof(out));
    assert_string_equal(out, "");

    /* capped with "...", never inside a UTF-8 sequence */
    for (i = 0; i + 2 < sizeof(big); i += 2) {
        big[i] = '\xc3';
        big[i + 1] = '\xa9';
    }
    big[i] = '\0';

    fs_reply_clean(big, out, sizeof(out));
    assert_true(strlen(out) < sizeof(out));
    assert_string_equal(out + strlen(out) - 3, "...");
    assert_int_equal((strlen(out) - 3) % 2, 0);

    /* still a valid JSON string */
    j = json_string(out);
    assert_non_null(j);
    json_decref(j);

    /* too small to say anything */
    fs_reply_clean("abc", out, 4);
    assert_string_equal(out, "");
}


static void
test_content_type(void **state)
{
    size_t  i;

    static const char *cases[] = {
        "a.png", "image/png", "a.JPG", "image/jpeg", "a.jpeg", "image/jpeg",
        "a.webp", "image/webp", "a.gif", "image/gif", "a.mp4", "video/mp4",
        "a.webm", "video/webm", "a.mov", "video/quicktime", "a.wav",
        "audio/wav", "a.flac", "audio/flac", "a.mp3", "audio/mpeg", "a.ogg",
        "audio/ogg", "a.opus", "audio/opus", "a.txt", "text/plain",
        "a.json", "application/json", "a.svg", "application/octet-stream",
        "a.html", "application/octet-stream", "noext",
        "application/octet-stream", "dir.png/x", "application/octet-stream",
        "a.", "application/octet-stream", NULL
    };

    (void) state;

    for (i = 0; cases[i]; i += 2) {
        assert_string_equal(fs_content_type(cases[i]), cases[i + 1]);
    }

    assert_string_equal(fs_content_type(NULL), "application/octet-stream");
}


/* ----------------------------------------------------------------- /ws */


static void
ws(const char *text, int rc, fs_ws_type_e type, fs_ws_event_t *ev)
{
    int  got;

    got = fs_ws_event_parse(text, strlen(text), ev);

    if (got != rc || (rc == 0 && ev->type != type)) {
        fail_msg("%s\n    gave %d, type %d; wanted %d, type %d", text, got,
                 ev->type, rc, type);
    }
}


static void
test_ws_run(void **state)
{
    fs_ws_event_t  ev;

    (void) state;

    ws(FX_WS_STATUS, 0, FS_WS_STATUS, &ev);
    assert_int_equal(ev.queue_remaining, 0);
    assert_string_equal(ev.prompt_id, "");
    fs_ws_event_clear(&ev);

    ws(FX_WS_STATUS_B, 0, FS_WS_STATUS, &ev);
    assert_int_equal(ev.queue_remaining, 1);
    fs_ws_event_clear(&ev);

    ws(FX_WS_EXECUTION_START, 0, FS_WS_EXECUTION_START, &ev);
    assert_string_equal(ev.prompt_id, "p-ok");
    fs_ws_event_clear(&ev);

    ws(FX_WS_EXECUTION_CACHED, 0, FS_WS_EXECUTION_CACHED, &ev);
    assert_string_equal(ev.prompt_id, "p-ok");
    fs_ws_event_clear(&ev);

    /* newer servers' per-node state: not ours to follow */
    ws(FX_WS_PROGRESS_STATE, 0, FS_WS_OTHER, &ev);
    assert_string_equal(ev.prompt_id, "p-ok");
    assert_string_equal(ev.node, "");
    fs_ws_event_clear(&ev);

    /* with the display_node extra */
    ws(FX_WS_EXECUTING, 0, FS_WS_EXECUTING, &ev);
    assert_string_equal(ev.node, "1");
    assert_string_equal(ev.prompt_id, "p-ok");
    fs_ws_event_clear(&ev);

    ws("{\"type\": \"progress\", \"data\": {\"value\": 3, \"max\": 20, "
       "\"prompt_id\": \"p-ok\", \"node\": \"3\"}}", 0, FS_WS_PROGRESS, &ev);
    assert_int_equal(ev.value, 3);
    assert_int_equal(ev.max, 20);
    assert_string_equal(ev.node, "3");
    assert_string_equal(ev.prompt_id, "p-ok");
    fs_ws_event_clear(&ev);

    ws("{\"type\": \"progress\", \"data\": {\"value\": 2.0, \"max\": NaN, "
       "\"prompt_id\": \"p\", \"node\": null}}", 0, FS_WS_PROGRESS, &ev);
    assert_int_equal(ev.value, 2);
    assert_int_equal(ev.max, -1);
    fs_ws_event_clear(&ev);

    ws(FX_WS_EXECUTED, 0, FS_WS_EXECUTED, &ev);
    assert_string_equal(ev.node, "2");
    assert_string_equal(ev.prompt_id, "p-ok");
    assert_non_null(ev.output);
    assert_int_equal(json_array_size(json_object_get(ev.output, "images")),
                     2);
    fs_ws_event_clear(&ev);
    assert_null(ev.output);

    ws(FX_WS_EXECUTION_SUCCESS, 0, FS_WS_SUCCESS, &ev);
    assert_string_equal(ev.prompt_id, "p-ok");
    fs_ws_event_clear(&ev);

    /* the reliable end: sent after the history entry is written */
    ws(FX_WS_EXECUTING_NULL, 0, FS_WS_DONE, &ev);
    assert_string_equal(ev.prompt_id, "p-ok");
    assert_string_equal(ev.node, "");
    fs_ws_event_clear(&ev);

    ws(FX_WS_EXECUTION_ERROR, 0, FS_WS_ERROR, &ev);
    assert_string_equal(ev.prompt_id, "p-err");
    assert_string_equal(ev.node, "1");
    assert_str(ev.error, "type", "execution_error");
    assert_str(ev.error, "message", "RuntimeError: Error while loading "
               "[path]");
    assert_str(ev.error, "node_type", "EmptyImage");
    assert_safe(ev.error);
    fs_ws_event_clear(&ev);
    assert_null(ev.error);

    ws(FX_WS_EXECUTION_INTERRUPTED, 0, FS_WS_INTERRUPTED, &ev);
    assert_string_equal(ev.prompt_id, "p-int");
    assert_string_equal(ev.node, "1");
    assert_str(ev.error, "type", "interrupted");
    fs_ws_event_clear(&ev);
}


static void
test_ws_odd(void **state)
{
    size_t         i;
    char           longid[200];
    fs_ws_event_t  ev;

    static const char *malformed[] = {
        "", "not json", "[]", "{}", "{\"type\": 5}", "{\"data\": {}}",
        "{\"type\": \"executing\"}",
        "{\"type\": \"executing\", \"data\": []}",
        "{\"type\": \"executing\", \"data\": {\"node\": 5}}",
        "{\"type\": \"executed\", \"data\": {\"node\": \"2\"}}",
        "{\"type\": \"executed\", \"data\": {\"node\": \"2\", \"output\": []}}",
        "{\"type\": \"executed\", \"data\": {\"output\": {}}}",
        "{\"type\": \"status\", \"data\": null}",
        NULL
    };

    (void) state;

    for (i = 0; malformed[i]; i++) {
        ws(malformed[i], -1, FS_WS_OTHER, &ev);
        assert_int_equal(ev.type, FS_WS_OTHER);
        assert_null(ev.output);
        assert_null(ev.error);
        fs_ws_event_clear(&ev);
    }

    /* unknown types, with or without data */
    ws("{\"type\": \"feature_flags\", \"data\": {\"x\": 1}}", 0, FS_WS_OTHER,
       &ev);
    fs_ws_event_clear(&ev);
    ws("{\"type\": \"crystools.monitor\", \"data\": 5}", 0, FS_WS_OTHER, &ev);
    fs_ws_event_clear(&ev);
    ws("{\"type\": \"progress_text\"}", 0, FS_WS_OTHER, &ev);
    fs_ws_event_clear(&ev);

    /* executing on reconnect carries no prompt_id; missing node is done */
    ws("{\"type\": \"executing\", \"data\": {\"node\": \"4\"}}", 0,
       FS_WS_EXECUTING, &ev);
    assert_string_equal(ev.prompt_id, "");
    assert_string_equal(ev.node, "4");
    fs_ws_event_clear(&ev);

    ws("{\"type\": \"executing\", \"data\": {\"prompt_id\": \"p\"}}", 0,
       FS_WS_DONE, &ev);
    fs_ws_event_clear(&ev);

    /* status without its numbers */
    ws("{\"type\": \"status\", \"data\": {\"status\": {}}}", 0, FS_WS_STATUS,
       &ev);
    assert_int_equal(ev.queue_remaining, -1);
    fs_ws_event_clear(&ev);

    /* ids that cannot be ours: someone else's business */
    memset(longid, 'a', sizeof(longid));
    memcpy(longid, "{\"type\": \"execution_start\", \"data\": "
           "{\"prompt_id\": \"", 51);
    strcpy(longid + 150, "\"}}");
    ws(longid, 0, FS_WS_OTHER, &ev);
    assert_string_equal(ev.prompt_id, "");
    fs_ws_event_clear(&ev);

    ws("{\"type\": \"executed\", \"data\": {\"node\": \"a/b\", \"output\": "
       "{}, \"prompt_id\": \"p\"}}", 0, FS_WS_OTHER, &ev);
    assert_null(ev.output);
    fs_ws_event_clear(&ev);

    /* an error with nothing in it */
    ws("{\"type\": \"execution_error\", \"data\": {}}", 0, FS_WS_ERROR, &ev);
    assert_str(ev.error, "message", "the run failed on the backend");
    fs_ws_event_clear(&ev);

    /* clearing twice is fine */
    fs_ws_event_clear(&ev);
}


static void
test_executed_outputs(void **state)
{
    json_t           *items;
    const char       *name;
    fs_ws_event_t     ev;
    fs_deployment_t  *d;

    static const char  anim[] =
        "{\"type\": \"executed\", \"data\": {\"node\": \"5\", \"display_node\":"
        " \"5\", \"output\": {\"images\": [{\"filename\": \"w.webp\", "
        "\"subfolder\": \"fs\", \"type\": \"output\"}], \"animated\": "
        "[true]}, \"prompt_id\": \"p\"}}";

    (void) state;

    d = deploy(WF_BIG, IN_BIG, OUT_BIG);

    ws(FX_WS_EXECUTED, 0, FS_WS_EXECUTED, &ev);
    name = NULL;
    items = fs_executed_outputs(d, ev.node, ev.output, &name);
    assert_non_null(items);
    assert_string_equal(name, "image");
    assert_int_equal(json_array_size(items), 2);
    assert_file(json_array_get(items, 0), "images", "a_00001_.png", "fs",
                "output", "image/png");
    json_decref(items);
    fs_ws_event_clear(&ev);

    ws(anim, 0, FS_WS_EXECUTED, &ev);
    items = fs_executed_outputs(d, ev.node, ev.output, &name);
    assert_string_equal(name, "webp");
    assert_int_equal(json_array_size(items), 1);
    json_decref(items);
    fs_ws_event_clear(&ev);

    /* not a declared output */
    name = NULL;
    assert_null(fs_executed_outputs(d, "3", NULL, &name));
    assert_null(name);
    assert_null(fs_executed_outputs(d, NULL, NULL, &name));

    /* declared, odd output: no items */
    items = fs_executed_outputs(d, "15", NULL, &name);
    assert_int_equal(json_array_size(items), 0);
    json_decref(items);

    fs_deployment_free(d);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prompt_accepted),
        cmocka_unit_test(test_prompt_200_node_errors),
        cmocka_unit_test(test_prompt_400_every_error_type),
        cmocka_unit_test(test_prompt_400_more),
        cmocka_unit_test(test_prompt_400_whole_prompt),
        cmocka_unit_test(test_prompt_generic),
        cmocka_unit_test(test_history_success),
        cmocka_unit_test(test_history_kinds),
        cmocka_unit_test(test_history_empty_and_pending),
        cmocka_unit_test(test_history_error),
        cmocka_unit_test(test_history_interrupted),
        cmocka_unit_test(test_clean),
        cmocka_unit_test(test_content_type),
        cmocka_unit_test(test_ws_run),
        cmocka_unit_test(test_ws_odd),
        cmocka_unit_test(test_executed_outputs),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
