"""Tests for comfyui_sim.py, over real HTTP and WebSocket.

    /usr/bin/python3 -m unittest discover -s t/sim -v

Every test starts its own simulator (a subprocess on a free port, in a
throw-away directory) and stops it.
"""

import asyncio
import json
import os
import re
import shutil
import signal
import struct
import sys
import tempfile
import time
import unittest
import uuid
import zlib

import aiohttp

HERE = os.path.dirname(os.path.abspath(__file__))
SIM = os.path.join(HERE, "comfyui_sim.py")
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def t2i(seed=42, steps=4, width=64, height=48, prefix="t2i", text="a cat"):
    """The usual text-to-image graph."""
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}},
        "5": {"class_type": "EmptyLatentImage",
              "inputs": {"width": width, "height": height, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": text, "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "3": {"class_type": "KSampler",
              "inputs": {"seed": seed, "steps": steps, "cfg": 7.0, "sampler_name": "euler",
                         "scheduler": "normal", "denoise": 1.0, "model": ["4", 0],
                         "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": prefix}},
    }


def simple(width=32, height=16, color=0xff0000, prefix="simple"):
    return {
        "1": {"class_type": "EmptyImage",
              "inputs": {"width": width, "height": height, "batch_size": 1, "color": color}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": prefix}},
    }


def png_chunks(data):
    """Parse a PNG, checking the signature and every CRC."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "bad PNG signature"
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xffffffff, "bad CRC in %r" % kind
        chunks.append((kind, body))
        pos += 12 + length
    return chunks


class SimCase(unittest.IsolatedAsyncioTestCase):
    sim_args = []

    async def asyncSetUp(self):
        self.dir = tempfile.mkdtemp(prefix="simtest-")
        self.proc = await self.start_sim(*self.sim_args)
        self.http = aiohttp.ClientSession()
        self.sockets = []

    async def asyncTearDown(self):
        for ws in self.sockets:
            await ws.close()
        await self.http.close()
        if self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    async def start_sim(self, *args):
        proc = await asyncio.create_subprocess_exec(
            PYTHON, SIM, "--port", "0", "--dir", self.dir, *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
        m = re.match(r"^comfyui-sim listening on (http://127\.0\.0\.1:\d+)\n$", line)
        self.assertIsNotNone(m, line)
        self.base = m.group(1)
        return proc

    # ----------------------------------------------------------- helpers
    async def get(self, path, **kw):
        async with self.http.get(self.base + path, **kw) as r:
            body = await r.read()
            return r.status, r.headers, body

    async def get_json(self, path):
        status, _, body = await self.get(path)
        self.assertEqual(status, 200, path)
        return json.loads(body)

    async def post(self, path, body=None, raw=None, headers=None):
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        async with self.http.post(self.base + path, data=data, headers=headers or {}) as r:
            text = await r.text()
            try:
                return r.status, json.loads(text)
            except ValueError:
                return r.status, text

    async def submit(self, graph, client_id=None, prompt_id=None, expect=200):
        body = {"prompt": graph}
        if client_id:
            body["client_id"] = client_id
        if prompt_id:
            body["prompt_id"] = prompt_id
        status, reply = await self.post("/prompt", body)
        self.assertEqual(status, expect, reply)
        return reply

    async def ws(self, client_id=None):
        client_id = client_id or uuid.uuid4().hex
        ws = await self.http.ws_connect(self.base + "/ws?clientId=" + client_id)
        self.sockets.append(ws)
        first = await ws.receive_json(timeout=5)
        self.assertEqual(first["type"], "status")
        self.assertEqual(first["data"]["sid"], client_id)
        return ws, client_id

    async def frames_until_done(self, ws, prompt_id, timeout=10):
        frames = []
        while True:
            msg = await ws.receive(timeout=timeout)
            if msg.type == aiohttp.WSMsgType.BINARY:
                frames.append({"type": "<binary>", "data": msg.data})
                continue
            self.assertEqual(msg.type, aiohttp.WSMsgType.TEXT, msg)
            f = json.loads(msg.data)
            frames.append(f)
            if f["type"] == "executing" and f["data"]["node"] is None \
                    and f["data"]["prompt_id"] == prompt_id:
                return frames

    async def wait_history(self, prompt_id, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            h = await self.get_json("/history/" + prompt_id)
            if h:
                return h[prompt_id]
            await asyncio.sleep(0.02)
        self.fail("no history for " + prompt_id)

    async def wait_running(self, prompt_id, timeout=5):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            q = await self.get_json("/queue")
            if q["queue_running"] and q["queue_running"][0][1] == prompt_id:
                return q
            await asyncio.sleep(0.02)
        self.fail("%s never ran" % prompt_id)

    async def faults(self, **kw):
        status, reply = await self.post("/sim/faults", kw)
        self.assertEqual(status, 200, reply)
        return reply

    async def view(self, entry):
        status, headers, body = await self.get("/view", params=entry)
        self.assertEqual(status, 200, entry)
        return headers, body

    def assert_error_entry(self, entry, etype, input_name, message=None):
        self.assertEqual(entry["type"], etype)
        self.assertEqual(entry["extra_info"]["input_name"], input_name)
        self.assertIn("details", entry)
        if message is not None:
            self.assertEqual(entry["message"], message)

    async def reject(self, graph):
        status, body = await self.post("/prompt", {"prompt": graph})
        self.assertEqual(status, 400, body)
        self.assertEqual(set(body), {"error", "node_errors"})
        self.assertEqual(set(body["error"]), {"type", "message", "details", "extra_info"})
        for ne in body["node_errors"].values():
            self.assertEqual(set(ne), {"errors", "dependent_outputs", "class_type"})
        return body


class TestInfo(SimCase):
    async def test_object_info_specs(self):
        info = await self.get_json("/object_info")
        for name in ("EmptyImage", "LoadImage", "ImageInvert", "ImageScale", "ImageScaleBy",
                     "ImageBlur", "ImageFlip", "ImageRotate", "ImageCrop", "ImageBlend",
                     "SolidMask", "PrimitiveInt", "PrimitiveFloat", "PrimitiveString",
                     "PrimitiveBoolean", "StringConcatenate", "SaveImage", "PreviewImage",
                     "PreviewAny", "CheckpointLoaderSimple", "CLIPTextEncode",
                     "EmptyLatentImage", "KSampler", "VAEDecode", "SaveAnimatedWEBP",
                     "SaveAudio", "SaveVideo", "CreateVideo", "FSLoadText", "FSLoadInteger",
                     "FSLoadImage", "FSSaveImage", "FSSaveText"):
            self.assertIn(name, info)
            self.assertEqual(info[name]["name"], name)
            for key in ("input", "output", "output_node", "display_name", "category",
                        "input_order", "output_name", "python_module"):
                self.assertIn(key, info[name])
        self.assertEqual(info["EmptyImage"]["input"]["required"]["width"],
                         ["INT", {"default": 512, "min": 1, "max": 16384, "step": 1}])
        self.assertEqual(info["ImageScale"]["input"]["required"]["upscale_method"],
                         [["nearest-exact", "bilinear", "area", "bicubic", "lanczos"]])
        flip = info["ImageFlip"]["input"]["required"]["flip_method"]
        self.assertEqual(flip[0], "COMBO")
        self.assertIn("y-axis: horizontally", flip[1]["options"])
        self.assertEqual(info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0],
                         ["sd15.safetensors", "sdxl_base.safetensors"])
        self.assertEqual(info["CheckpointLoaderSimple"]["output"], ["MODEL", "CLIP", "VAE"])
        self.assertIn("euler", info["KSampler"]["input"]["required"]["sampler_name"][0])
        self.assertIn("karras", info["KSampler"]["input"]["required"]["scheduler"][0])
        self.assertTrue(info["SaveImage"]["output_node"])
        self.assertFalse(info["EmptyImage"]["output_node"])
        self.assertEqual(info["PreviewAny"]["input"]["required"]["source"], ["*", {}])
        fs = info["FSSaveImage"]
        self.assertTrue(fs["output_node"])
        self.assertEqual(fs["input"]["required"]["filename_prefix"][1]["default"], "FlowScale")
        self.assertEqual(fs["input"]["required"]["format"][0], ["png", "jpg", "webp"])
        self.assertIn("label", fs["input"]["optional"])
        self.assertTrue(info["FSSaveText"]["input"]["required"]["text"][1]["forceInput"])
        self.assertTrue(info["FSSaveText"]["output_node"])
        self.assertTrue(info["FSLoadImage"]["input"]["required"]["image"][1]["image_upload"])
        self.assertEqual(info["FSLoadText"]["input"]["optional"]["default_value"][0], "STRING")
        self.assertTrue(info["FSLoadText"]["input"]["optional"]["default_value"][1]["multiline"])
        self.assertEqual(info["FSLoadInteger"]["input"]["optional"]["default_value"][0], "INT")
        self.assertEqual(info["FSLoadInteger"]["output"], ["INT"])
        one = await self.get_json("/object_info/KSampler")
        self.assertEqual(list(one), ["KSampler"])
        self.assertEqual(await self.get_json("/object_info/NoSuchNode"), {})

    async def test_system_stats_and_misc(self):
        stats = await self.get_json("/system_stats")
        self.assertEqual(stats["system"]["comfyui_version"], "0.8.0")
        self.assertIn("python_version", stats["system"])
        self.assertEqual(stats["devices"][0]["type"], "cpu")
        self.assertEqual(await self.get_json("/embeddings"), [])
        self.assertEqual(await self.get_json("/prompt"), {"exec_info": {"queue_remaining": 0}})
        self.assertEqual(await self.get_json("/queue"), {"queue_running": [], "queue_pending": []})
        status, headers, body = await self.get("/no/such/route")
        self.assertEqual(status, 404)

    async def test_api_prefix(self):
        info = await self.get_json("/api/object_info/EmptyImage")
        self.assertIn("EmptyImage", info)
        status, reply = await self.post("/api/prompt", {"prompt": simple(), "prompt_id": "api-1"})
        self.assertEqual(status, 200)
        h = await self.wait_history("api-1")
        h2 = await self.get_json("/api/history/api-1")
        self.assertEqual(h2["api-1"]["outputs"], h["outputs"])
        status, _, body = await self.get("/api/view", params=h["outputs"]["3"]["images"][0])
        self.assertEqual(status, 200)
        self.assertEqual((await self.get_json("/api/system_stats"))["system"]["comfyui_version"],
                         "0.8.0")
        self.assertEqual(await self.get_json("/api/queue"),
                         {"queue_running": [], "queue_pending": []})
        self.assertEqual((await self.get_json("/api/sim/faults"))["step_time"], 0.01)


class TestValidation(SimCase):
    async def test_bigger_than_max_exact_shape(self):
        g = simple()
        g["1"]["inputs"]["width"] = 99999
        body = await self.reject(g)
        self.assertEqual(body["error"], {
            "type": "prompt_outputs_failed_validation",
            "message": "Prompt outputs failed validation", "details": "", "extra_info": {}})
        self.assertEqual(body["node_errors"], {"1": {
            "errors": [{"type": "value_bigger_than_max",
                        "message": "Value 99999 bigger than max of 16384",
                        "details": "width",
                        "extra_info": {"input_name": "width",
                                       "input_config": ["INT", {"default": 512, "min": 1,
                                                                "max": 16384, "step": 1}],
                                       "received_value": 99999}}],
            "dependent_outputs": ["3"], "class_type": "EmptyImage"}})

    async def test_each_error_type(self):
        g = simple()
        del g["1"]["inputs"]["height"]
        g["1"]["inputs"]["width"] = 0
        g["1"]["inputs"]["batch_size"] = "abc"
        errs = (await self.reject(g))["node_errors"]["1"]["errors"]
        by_type = {e["type"]: e for e in errs}
        self.assert_error_entry(by_type["required_input_missing"], "required_input_missing",
                                "height", "Required input is missing")
        self.assert_error_entry(by_type["value_smaller_than_min"], "value_smaller_than_min",
                                "width", "Value 0 smaller than min of 1")
        self.assertEqual(by_type["value_smaller_than_min"]["extra_info"]["received_value"], 0)
        bad = by_type["invalid_input_type"]
        self.assert_error_entry(bad, "invalid_input_type", "batch_size",
                                "Failed to convert an input value to a INT value")
        self.assertEqual(bad["extra_info"]["received_value"], "abc")
        self.assertIn("invalid literal for int()", bad["extra_info"]["exception_message"])

        g = simple()
        g["2"] = {"class_type": "ImageScale", "inputs": {
            "image": ["1", 0], "upscale_method": "zzz", "width": 8, "height": 8,
            "crop": "disabled"}}
        ne = (await self.reject(g))["node_errors"]["2"]
        e = ne["errors"][0]
        self.assert_error_entry(e, "value_not_in_list", "upscale_method", "Value not in list")
        self.assertEqual(e["details"], "upscale_method: 'zzz' not in "
                         "['nearest-exact', 'bilinear', 'area', 'bicubic', 'lanczos']")
        self.assertEqual(e["extra_info"]["input_config"],
                         [["nearest-exact", "bilinear", "area", "bicubic", "lanczos"], {}])
        self.assertEqual(ne["class_type"], "ImageScale")

        g = simple()
        g["2"] = {"class_type": "ImageFlip", "inputs": {"image": ["1", 0], "flip_method": "up"}}
        e = (await self.reject(g))["node_errors"]["2"]["errors"][0]
        self.assert_error_entry(e, "value_not_in_list", "flip_method")
        self.assertEqual(e["extra_info"]["input_config"][0], "COMBO")

        g = t2i()
        g["3"]["inputs"]["sampler_name"] = "nope"
        e = (await self.reject(g))["node_errors"]["3"]["errors"][0]
        self.assertEqual(e["details"], "sampler_name: 'nope' not in (list of length 44)")
        self.assertIsNone(e["extra_info"]["input_config"])

        g = {"1": {"class_type": "PrimitiveString", "inputs": {"value": "a"}},
             "3": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}}
        body = await self.reject(g)
        e = body["node_errors"]["3"]["errors"][0]
        self.assert_error_entry(e, "return_type_mismatch", "images",
                                "Return type mismatch between linked nodes")
        self.assertEqual(e["details"], "images, received_type(STRING) mismatch input_type(IMAGE)")
        self.assertEqual(e["extra_info"]["received_type"], "STRING")
        self.assertEqual(e["extra_info"]["linked_node"], ["1", 0])
        self.assertEqual(body["error"]["details"], "Return type mismatch between linked nodes: "
                         "images, received_type(STRING) mismatch input_type(IMAGE)")

        g = simple()
        g["3"]["inputs"]["images"] = ["2", 0, 1]
        e = (await self.reject(g))["node_errors"]["3"]["errors"][0]
        self.assert_error_entry(e, "bad_linked_input", "images")
        self.assertEqual(e["extra_info"]["received_value"], ["2", 0, 1])

        g = {"1": {"class_type": "LoadImage", "inputs": {"image": "nope.png"}},
             "3": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}}
        e = (await self.reject(g))["node_errors"]["1"]["errors"][0]
        self.assert_error_entry(e, "custom_validation_failed", "image")
        self.assertEqual(e["details"], "image - Invalid image file: nope.png")

        g = {"3": {"class_type": "SaveImage", "inputs": {"images": ["9", 0], "filename_prefix": "x"}}}
        e = (await self.reject(g))["node_errors"]["3"]["errors"][0]
        self.assertEqual(e["type"], "exception_during_validation")
        self.assertEqual(e["extra_info"]["exception_type"], "KeyError")

    async def test_prompt_level_errors(self):
        body = await self.reject({"1": {"class_type": "Nope", "inputs": {}}})
        self.assertEqual(body, {"error": {"type": "invalid_prompt",
                                          "message": "Cannot execute because node Nope does not exist.",
                                          "details": "Node ID '#1'", "extra_info": {}},
                                "node_errors": {}})
        body = await self.reject({"1": {"inputs": {}}})
        self.assertEqual(body["error"]["type"], "invalid_prompt")
        self.assertIn("missing the class_type", body["error"]["message"])
        body = await self.reject({"1": simple()["1"]})
        self.assertEqual(body["error"]["type"], "prompt_no_outputs")
        status, body = await self.post("/prompt", {"client_id": "x"})
        self.assertEqual((status, body["error"]["type"]), (400, "no_prompt"))
        async with self.http.post(self.base + "/prompt", data="{nope") as r:
            self.assertEqual(r.status, 500)
            self.assertTrue(r.headers["Content-Type"].startswith("text/plain"))
        status, _ = await self.post("/prompt", {"prompt": simple()},
                                    headers={"Origin": "http://evil.example"})
        self.assertEqual(status, 403)
        host = self.base.split("//")[1]
        status, reply = await self.post("/prompt", {"prompt": simple()},
                                        headers={"Origin": "http://" + host})
        self.assertEqual(status, 200)

    async def test_partial_outputs_accepted(self):
        g = simple()
        g["4"] = {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 99999,
                                                         "batch_size": 1, "color": 0}}
        g["5"] = {"class_type": "SaveImage", "inputs": {"images": ["4", 0], "filename_prefix": "y"}}
        reply = await self.submit(g, prompt_id="partial")
        self.assertEqual(reply["node_errors"]["4"]["dependent_outputs"], ["5"])
        self.assertEqual(reply["node_errors"]["4"]["errors"][0]["type"], "value_bigger_than_max")
        h = await self.wait_history("partial")
        self.assertEqual(list(h["outputs"]), ["3"])
        self.assertEqual(h["prompt"][4], ["3"])

    async def test_prompt_ids_and_numbers(self):
        r1 = await self.submit(simple(), prompt_id="mine-1")
        self.assertEqual(r1["prompt_id"], "mine-1")
        self.assertEqual(r1["node_errors"], {})
        r2 = await self.submit(simple(color=1))
        self.assertRegex(r2["prompt_id"], UUID_RE)
        self.assertGreater(r2["number"], r1["number"])
        self.assertEqual(set(r2), {"prompt_id", "number", "node_errors"})
        log = await self.get_json("/sim/log?kind=prompt")
        self.assertEqual([e["prompt_id"] for e in log], ["mine-1", r2["prompt_id"]])
        self.assertEqual(log[0]["prompt"]["1"]["class_type"], "EmptyImage")


class TestRun(SimCase):
    async def test_ws_event_order_and_history(self):
        ws, cid = await self.ws()
        pid = str(uuid.uuid4())
        await self.submit(t2i(steps=5), client_id=cid, prompt_id=pid)
        frames = await self.frames_until_done(ws, pid)
        mine = [f for f in frames if f["type"] not in ("status", "progress_state")]
        types = [f["type"] for f in mine]
        self.assertEqual(types[:2], ["execution_start", "execution_cached"])
        self.assertEqual(types[-2:], ["execution_success", "executing"])
        self.assertEqual(mine[1]["data"]["nodes"], [])
        executing = [f["data"]["node"] for f in mine if f["type"] == "executing"][:-1]
        self.assertEqual(sorted(executing), sorted(t2i()))
        self.assertEqual(executing.index("4") < executing.index("3") < executing.index("8")
                         < executing.index("9"), True)
        progress = [f["data"] for f in mine if f["type"] == "progress"]
        self.assertEqual([p["value"] for p in progress], [1, 2, 3, 4, 5])
        self.assertTrue(all(p["max"] == 5 and p["node"] == "3" and p["prompt_id"] == pid
                            for p in progress))
        # progress frames come between KSampler's executing and the next executing
        i3 = types.index("progress")
        self.assertEqual(mine[i3 - 1]["data"]["node"], "3")
        executed = [f["data"] for f in mine if f["type"] == "executed"]
        self.assertEqual([e["node"] for e in executed], ["9"])
        self.assertEqual(types.index("executed"), types.index("execution_success") - 1)
        for f in mine:
            if f["type"] != "status":
                self.assertEqual(f["data"]["prompt_id"], pid)
        self.assertIn("status", [f["type"] for f in frames])
        h = await self.get_json("/history/" + pid)
        self.assertEqual(list(h), [pid])
        h = h[pid]
        self.assertEqual(list(h), ["prompt", "outputs", "status", "meta"])
        self.assertEqual(h["prompt"][1], pid)
        self.assertEqual(h["prompt"][3]["client_id"], cid)
        self.assertEqual(h["prompt"][4], ["9"])
        self.assertEqual(h["status"]["status_str"], "success")
        self.assertTrue(h["status"]["completed"])
        self.assertEqual([m[0] for m in h["status"]["messages"]],
                         ["execution_start", "execution_cached", "execution_success"])
        self.assertEqual(h["meta"]["9"]["node_id"], "9")
        img = h["outputs"]["9"]["images"][0]
        self.assertEqual(img, {"filename": "t2i_00001_.png", "subfolder": "", "type": "output"})
        self.assertEqual(executed[0]["output"], h["outputs"]["9"])
        headers, data = await self.view(img)
        self.assertEqual(headers["Content-Type"], "image/png")
        chunks = png_chunks(data)
        self.assertEqual(chunks[0][0], b"IHDR")
        w, h_, depth, ctype = struct.unpack(">IIBB", chunks[0][1][:10])
        self.assertEqual((w, h_, depth, ctype), (64, 48, 8, 2))
        raw = zlib.decompress(b"".join(b for k, b in chunks if k == b"IDAT"))
        self.assertEqual(len(raw), 48 * (1 + 64 * 3))
        self.assertEqual(chunks[-1][0], b"IEND")
        await ws.close()

    async def test_different_prompts_give_different_bytes(self):
        r1 = await self.submit(t2i(seed=1, prefix="a"))
        r2 = await self.submit(t2i(seed=2, prefix="a"))
        h1 = await self.wait_history(r1["prompt_id"])
        h2 = await self.wait_history(r2["prompt_id"])
        f1, f2 = h1["outputs"]["9"]["images"][0], h2["outputs"]["9"]["images"][0]
        self.assertEqual((f1["filename"], f2["filename"]), ("a_00001_.png", "a_00002_.png"))
        _, b1 = await self.view(f1)
        _, b2 = await self.view(f2)
        self.assertNotEqual(b1, b2)
        png_chunks(b2)

    async def test_prefix_subfolder_and_counter(self):
        r = await self.submit(simple(prefix="flowscale/RUN"))
        h = await self.wait_history(r["prompt_id"])
        self.assertEqual(h["outputs"]["3"]["images"],
                         [{"filename": "RUN_00001_.png", "subfolder": "flowscale", "type": "output"}])
        self.assertTrue(os.path.isfile(os.path.join(self.dir, "output", "flowscale", "RUN_00001_.png")))
        r = await self.submit(simple(prefix="flowscale/RUN", color=5))
        h = await self.wait_history(r["prompt_id"])
        self.assertEqual(h["outputs"]["3"]["images"][0]["filename"], "RUN_00002_.png")
        g = simple(prefix="x")
        g["1"]["inputs"]["batch_size"] = 2
        h = await self.wait_history((await self.submit(g))["prompt_id"])
        self.assertEqual([i["filename"] for i in h["outputs"]["3"]["images"]],
                         ["x_00001_.png", "x_00002_.png"])

    async def test_caching(self):
        ws, cid = await self.ws()
        r1 = await self.submit(t2i(), client_id=cid)
        await self.frames_until_done(ws, r1["prompt_id"])
        r2 = await self.submit(t2i(), client_id=cid)
        frames = await self.frames_until_done(ws, r2["prompt_id"])
        mine = [f for f in frames if f["type"] not in ("status", "progress_state")]
        self.assertEqual(sorted(mine[1]["data"]["nodes"]), sorted(t2i()))
        self.assertEqual([f["type"] for f in mine],
                         ["execution_start", "execution_cached", "executed",
                          "execution_success", "executing"])
        h1 = await self.wait_history(r1["prompt_id"])
        h2 = await self.wait_history(r2["prompt_id"])
        self.assertEqual(h1["outputs"], h2["outputs"])
        self.assertEqual(mine[2]["data"]["output"], h1["outputs"]["9"])
        # a new filename_prefix re-runs only the output node
        r3 = await self.submit(t2i(prefix="flowscale/r3"), client_id=cid)
        frames = await self.frames_until_done(ws, r3["prompt_id"])
        executing = [f["data"]["node"] for f in frames if f["type"] == "executing"]
        self.assertEqual(executing, ["9", None])
        h3 = await self.wait_history(r3["prompt_id"])
        self.assertEqual(h3["outputs"]["9"]["images"][0]["filename"], "r3_00001_.png")
        await ws.close()

    async def test_output_kinds(self):
        g = {
            "1": {"class_type": "EmptyImage", "inputs": {"width": 40, "height": 30,
                                                         "batch_size": 3, "color": 0x336699}},
            "2": {"class_type": "SaveAnimatedWEBP", "inputs": {
                "images": ["1", 0], "filename_prefix": "anim", "fps": 6.0, "lossless": True,
                "quality": 80, "method": "default"}},
            "3": {"class_type": "PrimitiveString", "inputs": {"value": "hello"}},
            "4": {"class_type": "PreviewAny", "inputs": {"source": ["3", 0]}},
            "5": {"class_type": "FSSaveText", "inputs": {"text": ["3", 0], "filename_prefix": "t"}},
            "6": {"class_type": "CreateVideo", "inputs": {"images": ["1", 0], "fps": 8.0}},
            "7": {"class_type": "SaveVideo", "inputs": {"video": ["6", 0], "filename_prefix": "video/v",
                                                        "format": "auto", "codec": "auto"}},
            "8": {"class_type": "FSSaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "j",
                                                          "format": "jpg"}},
            "9": {"class_type": "FSSaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "w",
                                                          "format": "webp"}},
            "10": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
            "11": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}},
            "12": {"class_type": "EmptyLatentAudio", "inputs": {"seconds": 1.0, "batch_size": 1}},
            "13": {"class_type": "VAEDecodeAudio", "inputs": {"samples": ["12", 0], "vae": ["11", 2]}},
            "14": {"class_type": "SaveAudio", "inputs": {"audio": ["13", 0], "filename_prefix": "audio/a"}},
            "15": {"class_type": "FSSaveVideo", "inputs": {"images": ["1", 0], "filename_prefix": "fv",
                                                           "fps": 8.0}},
            "16": {"class_type": "FSLoadInteger", "inputs": {"default_value": 7}},
            "17": {"class_type": "PreviewAny", "inputs": {"source": ["16", 0]}},
            "18": {"class_type": "FSLoadText", "inputs": {"default_value": "from FS"}},
            "19": {"class_type": "FSSaveText", "inputs": {"text": ["18", 0], "filename_prefix": "t"}},
        }
        h = await self.wait_history((await self.submit(g))["prompt_id"])
        out = h["outputs"]
        self.assertEqual(out["4"], {"text": ["hello"]})
        self.assertEqual(out["5"], {"text": ["hello"]})
        self.assertEqual(out["17"], {"text": ["7"]})
        self.assertEqual(out["19"], {"text": ["from FS"]})
        self.assertEqual(out["2"]["animated"], [True])
        _, data = await self.view(out["2"]["images"][0])
        self.assertEqual((data[:4], data[8:16]), (b"RIFF", b"WEBPVP8X"))
        self.assertEqual(data.count(b"ANMF"), 3)
        self.assertEqual(out["7"]["animated"], [True])
        self.assertEqual(out["7"]["images"][0]["subfolder"], "video")
        headers, data = await self.view(out["7"]["images"][0])
        self.assertEqual(headers["Content-Type"], "video/mp4")
        self.assertEqual(data[4:8], b"ftyp")
        self.assertEqual(len(out["8"]["images"]), 3)
        headers, data = await self.view(out["8"]["images"][0])
        self.assertEqual((headers["Content-Type"], data[:2], data[-2:]),
                         ("image/jpeg", b"\xff\xd8", b"\xff\xd9"))
        self.assertEqual(struct.unpack(">HH", data[data.index(b"\xff\xc0") + 5:][:4]), (30, 40))
        headers, data = await self.view(out["9"]["images"][0])
        self.assertEqual((headers["Content-Type"], data[8:16]), ("image/webp", b"WEBPVP8L"))
        self.assertEqual(out["10"]["images"][0]["type"], "temp")
        self.assertRegex(out["10"]["images"][0]["filename"], r"^ComfyUI_temp_[a-z]{5}_00001_\.png$")
        await self.view(out["10"]["images"][0])
        self.assertEqual(out["14"]["audio"][0]["subfolder"], "audio")
        headers, data = await self.view(out["14"]["audio"][0])
        self.assertEqual(data[:4], b"fLaC")
        self.assertEqual(out["15"]["videos"][0]["filename"], "fv_00001_.mp4")

    async def test_load_image_uses_uploaded_size(self):
        from comfyui_sim import write_png
        form = aiohttp.FormData()
        form.add_field("image", write_png(21, 13, (1, 2, 3), (4, 5, 6)), filename="in.png",
                       content_type="image/png")
        form.add_field("subfolder", "up")
        async with self.http.post(self.base + "/upload/image", data=form) as r:
            up = await r.json()
        self.assertEqual(up, {"name": "in.png", "subfolder": "up", "type": "input"})
        g = {"1": {"class_type": "FSLoadImage", "inputs": {"image": "up/in.png"}},
             "2": {"class_type": "ImageScaleBy", "inputs": {"image": ["1", 0],
                                                            "upscale_method": "bilinear",
                                                            "scale_by": 2.0}},
             "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "l"}}}
        h = await self.wait_history((await self.submit(g))["prompt_id"])
        _, data = await self.view(h["outputs"]["3"]["images"][0])
        self.assertEqual(struct.unpack(">II", png_chunks(data)[0][1][:8]), (42, 26))
        # a file that is not an image fails at run time, like PIL would
        form = aiohttp.FormData()
        form.add_field("image", b"not an image", filename="bad.png")
        async with self.http.post(self.base + "/upload/image", data=form) as r:
            self.assertEqual(r.status, 200)
        g["1"]["inputs"]["image"] = "bad.png"
        h = await self.wait_history((await self.submit(g))["prompt_id"])
        err = h["status"]["messages"][-1]
        self.assertEqual(err[0], "execution_error")
        self.assertEqual(err[1]["exception_type"], "PIL.UnidentifiedImageError")


class TestFiles(SimCase):
    async def test_view_codes(self):
        h = await self.wait_history((await self.submit(simple(prefix="v/x")))["prompt_id"])
        entry = h["outputs"]["3"]["images"][0]
        await self.view(entry)
        for params, code in (({"filename": "nope.png"}, 404),
                             ({"filename": "../x.png"}, 400),
                             ({"filename": "x.png", "subfolder": "../.."}, 403),
                             ({"filename": "x_00001_.png", "subfolder": "v", "type": "zzz"}, 400),
                             ({}, 404),
                             ({"filename": "example.png", "type": "input"}, 200)):
            status, _, _ = await self.get("/view", params=params)
            self.assertEqual(status, code, params)
        status, headers, body = await self.get("/view", params=entry, headers={"Range": "bytes=0-3"})
        self.assertEqual((status, body), (206, b"\x89PNG"))

    async def test_upload_renaming(self):
        async def upload(data, name="in.png", **fields):
            form = aiohttp.FormData()
            form.add_field("image", data, filename=name, content_type="image/png")
            for k, v in fields.items():
                form.add_field(k, v)
            async with self.http.post(self.base + "/upload/image", data=form) as r:
                self.assertEqual(r.status, 200)
                return await r.json()
        self.assertEqual(await upload(b"one"), {"name": "in.png", "subfolder": "", "type": "input"})
        self.assertEqual((await upload(b"one"))["name"], "in.png")
        self.assertEqual((await upload(b"two"))["name"], "in (1).png")
        self.assertEqual((await upload(b"three"))["name"], "in (2).png")
        self.assertEqual((await upload(b"two"))["name"], "in (1).png")
        self.assertEqual((await upload(b"four", overwrite="true"))["name"], "in.png")
        self.assertEqual(await upload(b"x", subfolder="s", type="temp"),
                         {"name": "in.png", "subfolder": "s", "type": "temp"})
        with open(os.path.join(self.dir, "input", "in.png"), "rb") as fh:
            self.assertEqual(fh.read(), b"four")
        _, _, body = await self.get("/view", params={"filename": "in (1).png", "type": "input"})
        self.assertEqual(body, b"two")
        info = await self.get_json("/object_info/LoadImage")
        self.assertIn("in (2).png", info["LoadImage"]["input"]["required"]["image"][0])
        log = await self.get_json("/sim/log?kind=upload")
        self.assertEqual([e["name"] for e in log][:3], ["in.png", "in.png", "in (1).png"])
        async with self.http.post(self.base + "/upload/image", data={"x": "1"}) as r:
            self.assertEqual(r.status, 400)


class TestQueue(SimCase):
    sim_args = ["--hang"]

    async def test_queue_delete_and_clear(self):
        a = await self.submit(simple(color=1), prompt_id="A")
        await self.wait_running("A")
        await self.submit(simple(color=2), prompt_id="B")
        await self.submit(simple(color=3), prompt_id="C")
        q = await self.get_json("/queue")
        self.assertEqual([i[1] for i in q["queue_running"]], ["A"])
        self.assertEqual(sorted(i[1] for i in q["queue_pending"]), ["B", "C"])
        self.assertEqual(len(q["queue_pending"][0]), 5)
        self.assertEqual(q["queue_running"][0][0], a["number"])
        self.assertEqual((await self.get_json("/prompt"))["exec_info"]["queue_remaining"], 3)
        self.assertEqual(await self.get_json("/history/A"), {})
        status, _ = await self.post("/queue", {"delete": ["B"]})
        self.assertEqual(status, 200)
        q = await self.get_json("/queue")
        self.assertEqual([i[1] for i in q["queue_pending"]], ["C"])
        await self.post("/queue", {"delete": ["A"]})   # running: not removed
        self.assertEqual([i[1] for i in (await self.get_json("/queue"))["queue_running"]], ["A"])
        await self.submit(simple(color=4), prompt_id="D")
        await self.post("/queue", {"clear": True})
        self.assertEqual((await self.get_json("/queue"))["queue_pending"], [])
        await self.faults(hang=False)
        await self.wait_history("A")
        await asyncio.sleep(0.2)
        for pid in ("B", "C", "D"):
            self.assertEqual(await self.get_json("/history/" + pid), {})
        log = await self.get_json("/sim/log?kind=delete")
        self.assertEqual([(e["prompt_id"], e["removed"]) for e in log], [("B", True), ("A", False)])

    async def test_interrupt_targets(self):
        ws, cid = await self.ws()
        await self.submit(simple(color=1), client_id=cid, prompt_id="A")
        await self.wait_running("A")
        await self.submit(simple(color=2), client_id=cid, prompt_id="B")
        status, _ = await self.post("/interrupt", {"prompt_id": "B"})
        self.assertEqual(status, 200)
        await asyncio.sleep(0.2)
        await self.wait_running("A")
        self.assertEqual(await self.get_json("/history/A"), {})
        await self.post("/interrupt", {"prompt_id": "A"})
        frames = await self.frames_until_done(ws, "A")
        types = [f["type"] for f in frames if f["type"] not in ("status", "progress_state")]
        self.assertEqual(types[-2:], ["execution_interrupted", "executing"])
        intr = [f for f in frames if f["type"] == "execution_interrupted"][0]["data"]
        self.assertEqual((intr["prompt_id"], intr["node_id"], intr["node_type"]),
                         ("A", "1", "EmptyImage"))
        self.assertEqual(intr["executed"], [])
        h = await self.wait_history("A")
        self.assertEqual((h["status"]["status_str"], h["status"]["completed"]), ("error", False))
        self.assertEqual(h["status"]["messages"][-1][0], "execution_interrupted")
        self.assertEqual(h["outputs"], {})
        # B runs next (and hangs); an empty body interrupts whatever runs
        await self.wait_running("B")
        async with self.http.post(self.base + "/interrupt") as r:
            self.assertEqual(r.status, 200)
        h = await self.wait_history("B")
        self.assertEqual(h["status"]["messages"][-1][0], "execution_interrupted")
        log = await self.get_json("/sim/log?kind=interrupt")
        self.assertEqual([(e["prompt_id"], e["interrupted"]) for e in log],
                         [("B", False), ("A", True), (None, True)])
        await ws.close()

    async def test_hang_then_clear(self):
        ws, cid = await self.ws()
        await self.submit(simple(), client_id=cid, prompt_id="H")
        seen = []
        with self.assertRaises(asyncio.TimeoutError):
            while True:
                f = await ws.receive_json(timeout=0.5)
                seen.append(f["type"])
        self.assertIn("executing", seen)
        self.assertNotIn("execution_success", seen)
        self.assertEqual(await self.get_json("/history/H"), {})
        await self.faults(hang=False)
        frames = await self.frames_until_done(ws, "H")
        self.assertIn("execution_success", [f["type"] for f in frames])
        await ws.close()


class TestFaults(SimCase):
    async def test_fail_node_by_class_and_id(self):
        await self.faults(fail_node="KSampler")
        ws, cid = await self.ws()
        r = await self.submit(t2i(), client_id=cid)
        frames = await self.frames_until_done(ws, r["prompt_id"])
        types = [f["type"] for f in frames if f["type"] not in ("status", "progress_state")]
        self.assertEqual(types[-2:], ["execution_error", "executing"])
        self.assertNotIn("execution_success", types)
        err = [f for f in frames if f["type"] == "execution_error"][0]["data"]
        self.assertEqual((err["node_id"], err["node_type"]), ("3", "KSampler"))
        for key in ("exception_message", "exception_type", "traceback", "current_inputs",
                    "executed", "current_outputs", "timestamp"):
            self.assertIn(key, err)
        self.assertTrue(any("/opt/ComfyUI/" in line for line in err["traceback"]))
        self.assertEqual(err["current_inputs"]["seed"], [42])
        self.assertIn("4", err["executed"])
        h = await self.wait_history(r["prompt_id"])
        self.assertEqual((h["status"]["status_str"], h["status"]["completed"]), ("error", False))
        self.assertEqual(h["status"]["messages"][-1][0], "execution_error")
        await self.faults(fail_node="8", fail_message="boom")
        r = await self.submit(t2i(seed=9))
        h = await self.wait_history(r["prompt_id"])
        self.assertEqual(h["status"]["messages"][-1][1]["node_id"], "8")
        self.assertEqual(h["status"]["messages"][-1][1]["exception_message"], "boom\n")
        await self.faults(fail_node=None)
        h = await self.wait_history((await self.submit(t2i(seed=9)))["prompt_id"])
        self.assertEqual(h["status"]["status_str"], "success")

    async def test_missing_class_models_reject(self):
        await self.faults(missing_class=["ImageInvert"], models=["only.ckpt"])
        info = await self.get_json("/object_info")
        self.assertNotIn("ImageInvert", info)
        self.assertEqual(info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0],
                         ["only.ckpt"])
        body = await self.reject(simple())
        self.assertEqual(body["error"]["type"], "invalid_prompt")
        body = await self.reject(t2i())
        self.assertEqual(body["node_errors"]["4"]["errors"][0]["type"], "value_not_in_list")
        await self.faults(reject="prompt_outputs_failed_validation", missing_class=[])
        body = await self.reject(simple())
        self.assertEqual(body["error"]["type"], "prompt_outputs_failed_validation")
        faults = await self.get_json("/sim/faults")
        self.assertEqual(faults["reject"], "prompt_outputs_failed_validation")
        self.assertEqual(faults["models"], ["only.ckpt"])
        status, body = await self.post("/sim/faults", {"no_such_fault": 1})
        self.assertEqual(status, 400)

    async def test_no_success_message(self):
        await self.faults(no_success_message=True)
        ws, cid = await self.ws()
        r = await self.submit(simple(), client_id=cid)
        frames = await self.frames_until_done(ws, r["prompt_id"])
        types = [f["type"] for f in frames]
        self.assertNotIn("execution_success", types)
        self.assertEqual(types[-1], "executing")
        h = await self.wait_history(r["prompt_id"])
        self.assertEqual(h["status"]["status_str"], "success")
        await ws.close()

    async def test_old_server(self):
        await self.faults(old_server=True)
        r = await self.submit(simple(), prompt_id="ignored")
        self.assertNotEqual(r["prompt_id"], "ignored")
        self.assertEqual(r["node_errors"], [])
        await self.wait_history(r["prompt_id"])
        status, body = await self.post("/prompt", {"prompt": {"1": simple()["1"]}})
        self.assertEqual((status, body), (400, {"error": "Prompt has no outputs",
                                                "node_errors": []}))
        g = simple()
        g["1"]["inputs"]["width"] = 99999
        status, body = await self.post("/prompt", {"prompt": g})
        self.assertEqual(status, 400)
        self.assertIsInstance(body["error"], str)
        self.assertEqual(body["node_errors"]["1"]["errors"][0]["type"], "value_bigger_than_max")
        # /interrupt ignores prompt_id: interrupts whatever runs
        await self.faults(hang=True)
        r = await self.submit(simple(color=7))
        await self.wait_running(r["prompt_id"])
        await self.post("/interrupt", {"prompt_id": "someone-else"})
        h = await self.wait_history(r["prompt_id"])
        self.assertEqual(h["status"]["messages"][-1][0], "execution_interrupted")

    async def test_slow_and_step_time(self):
        await self.faults(slow=0.6, step_time=0.0)
        t0 = time.monotonic()
        h = await self.wait_history((await self.submit(t2i()))["prompt_id"])
        self.assertGreaterEqual(time.monotonic() - t0, 0.6)
        self.assertEqual(h["status"]["status_str"], "success")
        await self.faults(slow=0.0, step_time=0.0)
        t0 = time.monotonic()
        await self.wait_history((await self.submit(t2i(seed=3)))["prompt_id"])
        self.assertLess(time.monotonic() - t0, 0.5)

    async def test_die_mid_run(self):
        await self.faults(die_mid_run=True)
        ws, cid = await self.ws()
        r = await self.submit(simple(), client_id=cid)
        frames = []
        while True:
            msg = await ws.receive(timeout=5)
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            frames.append(json.loads(msg.data))
        self.assertEqual(frames[-1]["type"], "executing")
        self.assertEqual(frames[-1]["data"], {"node": "1", "display_node": "1",
                                              "prompt_id": r["prompt_id"]})
        self.assertNotEqual(await asyncio.wait_for(self.proc.wait(), 5), 0)

    async def test_previews_binary_frames(self):
        await self.faults(previews=True)
        ws, cid = await self.ws()
        r = await self.submit(t2i(steps=3), client_id=cid)
        frames = await self.frames_until_done(ws, r["prompt_id"])
        binary = [f["data"] for f in frames if f["type"] == "<binary>"]
        self.assertEqual(len(binary), 3)
        self.assertEqual(struct.unpack(">II", binary[0][:8]), (1, 2))
        png_chunks(binary[0][8:])
        await ws.close()

    async def test_reset_and_history_limits(self):
        await self.faults(max_history=2, fail_node="nothing")
        ids = []
        for c in range(4):
            ids.append((await self.submit(simple(color=c)))["prompt_id"])
            await self.wait_history(ids[-1])
        hist = await self.get_json("/history")
        self.assertLessEqual(len(hist), 3)
        self.assertNotIn(ids[0], hist)
        self.assertEqual(list(await self.get_json("/history?max_items=1")), [ids[-1]])
        await self.post("/history", {"delete": [ids[-1]]})
        self.assertEqual(await self.get_json("/history/" + ids[-1]), {})
        status, body = await self.post("/sim/reset", {})
        self.assertEqual(status, 200)
        self.assertEqual(await self.get_json("/history"), {})
        self.assertEqual(await self.get_json("/sim/log"), [])
        faults = await self.get_json("/sim/faults")
        self.assertEqual((faults["max_history"], faults["fail_node"]), (10000, None))

    async def test_reused_client_id_detaches_old_socket(self):
        ws1, cid = await self.ws()
        ws2, _ = await self.ws(cid)
        r = await self.submit(simple(), client_id=cid)
        await self.frames_until_done(ws2, r["prompt_id"])
        with self.assertRaises(asyncio.TimeoutError):
            while True:
                f = await ws1.receive_json(timeout=0.3)
                self.assertIn(f["type"], ("status", "progress_state"))
        await ws1.close()
        await ws2.close()


class TestCli(SimCase):
    sim_args = ["--fail-node", "SaveImage", "--models", "a.safetensors,b.safetensors",
                "--missing-class", "ImageBlur", "--version", "0.3.10", "--step-time", "0.02"]

    async def test_flags(self):
        faults = await self.get_json("/sim/faults")
        self.assertEqual(faults["fail_node"], "SaveImage")
        self.assertEqual(faults["models"], ["a.safetensors", "b.safetensors"])
        self.assertEqual(faults["missing_class"], ["ImageBlur"])
        self.assertEqual(faults["step_time"], 0.02)
        stats = await self.get_json("/system_stats")
        self.assertEqual(stats["system"]["comfyui_version"], "0.3.10")
        self.assertNotIn("ImageBlur", await self.get_json("/object_info"))
        h = await self.wait_history((await self.submit(simple()))["prompt_id"])
        self.assertEqual(h["status"]["messages"][-1][0], "execution_error")
        await self.post("/sim/reset", {})
        self.assertEqual((await self.get_json("/sim/faults"))["fail_node"], "SaveImage")

    async def test_sigterm_exits_cleanly(self):
        ws, _ = await self.ws()
        self.proc.send_signal(signal.SIGTERM)
        self.assertEqual(await asyncio.wait_for(self.proc.wait(), 5), 0)
        await ws.close()


if __name__ == "__main__":
    unittest.main()
