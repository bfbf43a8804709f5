#!/usr/bin/python3
"""comfyui_sim.py - a fake ComfyUI 0.8.0 server for FlowScale's tests and demos.

Speaks the protocol described in shared/comfyui.md with the shapes a real
ComfyUI 0.8.0 produces (checked against one): POST/GET /prompt, /queue,
/interrupt, /history[/ID], /object_info[/CLASS], /system_stats, /view,
/upload/image, /embeddings, /models, /features and the /ws WebSocket, every
route also under /api.  Prompts are validated against the simulator's own
/object_info specs with ComfyUI's error shapes, run one at a time in submit
order, report progress over /ws, and write real files (PNG, JPEG, WebP,
animated WebP, FLAC, MP4 with Motion-JPEG frames) that /view serves.
Needs only the standard library and aiohttp (Debian's python3-aiohttp):

    /usr/bin/python3 t/sim/comfyui_sim.py --port 8188 [--dir DIR] [faults]

prints "comfyui-sim listening on http://127.0.0.1:PORT" once ready and exits
cleanly on SIGTERM/SIGINT.  --dir holds input/ output/ temp/ (a fresh temp dir
by default, removed on exit).

Fault switches (CLI flag --name-with-dashes, or at run time with
POST /sim/faults {"name": value, ...}, merged into the current settings and
echoed back; GET /sim/faults reads them):

  step_time   float  seconds each executed node takes (default 0.01)
  slow        float  extra seconds per job (spent in its KSampler if any,
                     else in its first executed node)
  fail_node   str    node id or class_type that raises execution_error
  fail_message str   exception_message for fail_node
  missing_class list class names absent from /object_info (rejected as
                     invalid_prompt)
  models      list   checkpoint files (CheckpointLoaderSimple ckpt_name)
  reject      str    answer every POST /prompt with 400 and this error type
  hang        bool   jobs start and stop after `executing` of their first
                     node until hang is cleared (interrupt still works)
  die_mid_run bool   os._exit(1) in the next job after `executing` of its
                     first node
  no_success_message bool  never send execution_success (pre-2024 servers:
                     `executing` with node null is the only end signal)
  old_server  bool   pre-0.3.28 behaviour: prompt_id from the request is
                     ignored, node_errors is [] when empty, 400 `error` is a
                     plain string, /interrupt ignores prompt_id, no
                     progress_state frames
  version     str    comfyui_version in /system_stats (default 0.8.0)
  previews    bool   KSampler sends binary preview frames (type 1, PNG)
  max_history int    history entries kept (default 10000)

Control API: GET /sim/faults; POST /sim/faults {...}; GET /sim/log[?kind=K]
(list of events {"t", "kind", "prompt_id", ...}; kinds: prompt, upload,
interrupt, delete, clear, history_delete, history_clear, view, ws_connect,
ws_disconnect, run_start, run_end); POST /sim/reset (empties queue, history,
log and cache, interrupts the running job, restores the startup faults).
"""

import argparse
import asyncio
import copy
import hashlib
import heapq
import json
import math
import mimetypes
import os
import random
import shutil
import signal
import struct
import sys
import tempfile
import time
import urllib.parse
import uuid
import zlib

from aiohttp import web, WSMsgType

VERSION = "0.8.0"
MAX_RES = 16384
BIG = 9223372036854775807
SENSITIVE = ("auth_token_comfy_org", "api_key_comfy_org")
FAKE_ROOT = "/opt/ComfyUI"

DEFAULT_FAULTS = {
    "step_time": 0.01, "slow": 0.0, "fail_node": None,
    "fail_message": "Simulated failure (comfyui-sim fail_node)",
    "missing_class": [], "models": ["sd15.safetensors", "sdxl_base.safetensors"],
    "reject": None, "hang": False, "die_mid_run": False,
    "no_success_message": False, "old_server": False, "version": VERSION,
    "previews": False, "max_history": 10000,
}
FAULT_TYPES = {
    "step_time": float, "slow": float, "fail_node": str, "fail_message": str,
    "missing_class": list, "models": list, "reject": str, "hang": bool,
    "die_mid_run": bool, "no_success_message": bool, "old_server": bool,
    "version": str, "previews": bool, "max_history": int,
}

# ---------------------------------------------------------------- media files


def _chunk(kind, data):
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff))


def write_png(w, h, c1, c2, text=None, level=6):
    """RGB PNG, a horizontal gradient from colour c1 to c2."""
    row = bytearray(b"\x00")
    for x in range(w):
        f = x / (w - 1) if w > 1 else 0.0
        row += bytes(int(c1[i] + (c2[i] - c1[i]) * f) for i in range(3))
    raw = bytes(row) * h
    out = b"\x89PNG\r\n\x1a\n" + _chunk(
        b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    for k, v in (text or {}).items():
        out += _chunk(b"tEXt", k.encode("latin-1") + b"\x00"
                      + v.encode("latin-1", "replace"))
    return out + _chunk(b"IDAT", zlib.compress(raw, level)) + _chunk(b"IEND", b"")


def write_jpeg(w, h, rgb):
    """Baseline JPEG of one colour: every block has only a DC coefficient."""
    r, g, b = rgb
    ycc = (0.299 * r + 0.587 * g + 0.114 * b,
           128 - 0.168736 * r - 0.331264 * g + 0.5 * b,
           128 + 0.5 * r - 0.418688 * g - 0.081312 * b)
    dcs = [max(-1024, min(1016, round(8 * (v - 128)))) for v in ycc]
    bits, nbits, out = 0, 0, bytearray()

    def put(value, n):
        nonlocal bits, nbits
        bits = (bits << n) | (value & ((1 << n) - 1))
        nbits += n
        while nbits >= 8:
            byte = (bits >> (nbits - 8)) & 0xff
            out.append(byte)
            if byte == 0xff:
                out.append(0)
            nbits -= 8
    pred = [0, 0, 0]
    for _ in range(((w + 7) // 8) * ((h + 7) // 8)):
        for c in range(3):
            diff, pred[c] = dcs[c] - pred[c], dcs[c]
            cat = abs(diff).bit_length()
            put(cat, 4)                       # DC table: 12 codes of 4 bits
            if cat:
                put(diff if diff > 0 else diff + (1 << cat) - 1, cat)
            put(0, 1)                         # AC table: EOB is "0"
    if nbits:
        put((1 << (8 - nbits)) - 1, 8 - nbits)

    def seg(marker, data):
        return b"\xff" + bytes([marker]) + struct.pack(">H", len(data) + 2) + data
    return (b"\xff\xd8"
            + seg(0xe0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
            + seg(0xdb, b"\x00" + b"\x01" * 64)
            + seg(0xc0, struct.pack(">BHHB", 8, h, w, 3)
                  + b"\x01\x11\x00\x02\x11\x00\x03\x11\x00")
            + seg(0xc4, b"\x00" + bytes([0, 0, 0, 12] + [0] * 12) + bytes(range(12)))
            + seg(0xc4, b"\x10" + bytes([1] + [0] * 15) + b"\x00")
            + seg(0xda, b"\x03\x01\x00\x02\x00\x03\x00\x00\x3f\x00")
            + bytes(out) + b"\xff\xd9")


def _vp8l(w, h, rgb):
    """Lossless WebP bitstream of one colour (single-symbol prefix codes)."""
    acc, n = 0, 0

    def put(value, count):
        nonlocal acc, n
        acc |= value << n
        n += count
    put(0x2f, 8)
    put(w - 1, 14)
    put(h - 1, 14)
    put(0, 1)      # alpha unused
    put(0, 3)      # version
    put(0, 1)      # no transform
    put(0, 1)      # no colour cache
    put(0, 1)      # no meta prefix codes
    for sym in (rgb[1], rgb[0], rgb[2], 255):     # green, red, blue, alpha
        put(1, 1)
        put(0, 1)
        put(1, 1)
        put(sym, 8)
    put(1, 1)
    put(0, 1)
    put(0, 1)
    put(0, 1)      # distance code: symbol 0
    data = acc.to_bytes((n + 7) // 8, "little")
    return b"VP8L" + struct.pack("<I", len(data)) + data + b"\x00" * (len(data) & 1)


def write_webp(w, h, rgb):
    body = b"WEBP" + _vp8l(w, h, rgb)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def write_animated_webp(w, h, colours, fps):
    def u24(v):
        return struct.pack("<I", v)[:3]
    body = b"WEBP" + b"VP8X" + struct.pack("<I", 10) + bytes([0x02, 0, 0, 0]) \
        + u24(w - 1) + u24(h - 1)
    body += b"ANIM" + struct.pack("<I", 6) + b"\x00\x00\x00\x00\x00\x00"
    dur = max(1, int(round(1000 / fps)))
    for rgb in colours:
        frame = u24(0) + u24(0) + u24(w - 1) + u24(h - 1) + u24(dur) + b"\x00" \
            + _vp8l(w, h, rgb)
        body += b"ANMF" + struct.pack("<I", len(frame)) + frame
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _crc(data, poly, width):
    top, mask, crc = 1 << (width - 1), (1 << width) - 1, 0
    for byte in data:
        crc ^= byte << (width - 8)
        for _ in range(8):
            crc = ((crc << 1) ^ poly) & mask if crc & top else (crc << 1) & mask
    return crc


def write_flac(seconds, freq, rate=44100):
    """Mono 16-bit FLAC of a sine tone, verbatim subframes."""
    total = max(1, int(seconds * rate))
    samples = [int(8000 * math.sin(2 * math.pi * freq * i / rate))
               for i in range(total)]
    block = 4096
    info = struct.pack(">HH", block, block) + b"\x00" * 6
    packed = (rate << 44) | (0 << 41) | (15 << 36) | total
    info += packed.to_bytes(8, "big") + b"\x00" * 16
    out = b"fLaC" + bytes([0x80]) + len(info).to_bytes(3, "big") + info
    for fno, start in enumerate(range(0, total, block)):
        chunk = samples[start:start + block]
        hdr = b"\xff\xf8\x79\x08" + bytes([fno]) if fno < 128 else None
        if hdr is None:
            raise ValueError("audio too long")
        hdr += struct.pack(">H", len(chunk) - 1)
        hdr += bytes([_crc(hdr, 0x07, 8)])
        frame = hdr + b"\x02" + b"".join(struct.pack(">h", s) for s in chunk)
        out += frame + struct.pack(">H", _crc(frame, 0x8005, 16))
    return out


def write_mp4(w, h, colours, fps):
    """ISO BMFF (.mp4) with one Motion-JPEG ('jpeg') frame per colour."""
    frames = [write_jpeg(w, h, c) for c in colours]

    def box(kind, payload):
        return struct.pack(">I", 8 + len(payload)) + kind + payload

    def full(kind, version, flags, payload):
        return box(kind, bytes([version]) + flags.to_bytes(3, "big") + payload)
    scale = 1000
    delta = max(1, int(round(scale / fps)))
    dur = delta * len(frames)
    matrix = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
    ftyp = box(b"ftyp", b"isom" + struct.pack(">I", 512) + b"isomiso2mp41")
    entry = (b"\x00" * 6 + struct.pack(">H", 1) + b"\x00" * 16
             + struct.pack(">HHIIIH", w, h, 0x480000, 0x480000, 0, 1)
             + bytes([10]) + b"Photo JPEG".ljust(31, b"\x00")
             + struct.pack(">Hh", 24, -1))

    def moov(offset):
        stbl = box(b"stbl",
                   full(b"stsd", 0, 0, struct.pack(">I", 1) + box(b"jpeg", entry))
                   + full(b"stts", 0, 0, struct.pack(">III", 1, len(frames), delta))
                   + full(b"stsc", 0, 0, struct.pack(">IIII", 1, 1, len(frames), 1))
                   + full(b"stsz", 0, 0, struct.pack(">II", 0, len(frames))
                          + b"".join(struct.pack(">I", len(f)) for f in frames))
                   + full(b"stco", 0, 0, struct.pack(">II", 1, offset)))
        minf = box(b"minf", full(b"vmhd", 0, 1, b"\x00" * 8)
                   + box(b"dinf", full(b"dref", 0, 0, struct.pack(">I", 1)
                                       + full(b"url ", 0, 1, b"")))
                   + stbl)
        mdia = box(b"mdia", full(b"mdhd", 0, 0, struct.pack(
            ">IIIIHH", 0, 0, scale, dur, 0x55c4, 0))
            + full(b"hdlr", 0, 0, b"\x00" * 4 + b"vide" + b"\x00" * 12
                   + b"VideoHandler\x00")
            + minf)
        tkhd = full(b"tkhd", 0, 3, struct.pack(">IIIII", 0, 0, 1, 0, dur)
                    + b"\x00" * 8 + struct.pack(">hhhH", 0, 0, 0, 0) + matrix
                    + struct.pack(">II", w << 16, h << 16))
        mvhd = full(b"mvhd", 0, 0, struct.pack(">IIIIIH", 0, 0, scale, dur,
                                               0x10000, 0x100)
                    + b"\x00" * 10 + matrix + b"\x00" * 24 + struct.pack(">I", 2))
        return box(b"moov", mvhd + box(b"trak", tkhd + mdia))
    size = len(ftyp) + len(moov(0)) + 8
    return ftyp + moov(size) + box(b"mdat", b"".join(frames))


def image_size(data):
    """(width, height) of PNG/JPEG/WebP/GIF bytes, or None if not an image."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return struct.unpack("<HH", data[6:10])
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        if data[12:16] == b"VP8L":
            v = int.from_bytes(data[21:25], "little")
            return (v & 0x3fff) + 1, ((v >> 14) & 0x3fff) + 1
        if data[12:16] == b"VP8X":
            return (int.from_bytes(data[24:27], "little") + 1,
                    int.from_bytes(data[27:30], "little") + 1)
        if data[12:16] == b"VP8 ":
            return (struct.unpack("<H", data[26:28])[0] & 0x3fff,
                    struct.unpack("<H", data[28:30])[0] & 0x3fff)
        return 64, 64
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xff:
                i += 1
                continue
            marker = data[i + 1]
            if marker in (0xc0, 0xc1, 0xc2):
                h, w = struct.unpack(">HH", data[i + 5:i + 9])
                return w, h
            i += 2 + struct.unpack(">H", data[i + 2:i + 4])[0]
        return 64, 64
    return None

# ------------------------------------------------------------- value objects


def colour_of(*parts):
    d = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).digest()
    return (d[0], d[1], d[2]), (d[3], d[4], d[5])


class Img:
    def __init__(self, w, h, n, c1, c2=None):
        self.w, self.h, self.n = max(1, int(w)), max(1, int(h)), max(1, int(n))
        self.c1, self.c2 = tuple(c1), tuple(c2 or c1)

    def frame(self, i):
        if self.n == 1:
            return self.c1, self.c2
        return (tuple((v + 23 * i) % 256 for v in self.c1),
                tuple((v + 23 * i) % 256 for v in self.c2))

    def __str__(self):
        return ("tensor([[[[%.4f, %.4f, %.4f],\n          ...]]]) shape=[%d, %d, %d, 3]"
                % (self.c1[0] / 255, self.c1[1] / 255, self.c1[2] / 255,
                   self.n, self.h, self.w))


class Obj:
    """Opaque values (MODEL, CLIP, LATENT, ...) printed the way Python would."""

    def __init__(self, kind, **kw):
        self.kind = kind
        self.__dict__.update(kw)

    def __str__(self):
        if self.kind in ("LATENT", "AUDIO", "CONDITIONING", "VIDEO"):
            return "{'%s': tensor(...)}" % self.kind.lower()
        return "<comfy.%s object at 0x7f%010x>" % (self.kind.lower(), id(self) & 0xffffffffff)


class Interrupted(Exception):
    pass


class NodeError(Exception):
    def __init__(self, message, exc_type="RuntimeError", frames=None):
        super().__init__(message)
        self.exc_type, self.frames = exc_type, frames or []

# ----------------------------------------------------------- node class specs


def _v1(name, display, category, required, optional=None, output=(),
        output_node=False, module="nodes", description="", hidden=None,
        names=None, tooltips=None):
    inp = {"required": required}
    if optional:
        inp["optional"] = optional
    if hidden:
        inp["hidden"] = hidden
    info = {"input": inp,
            "input_order": {k: list(v.keys()) for k, v in inp.items()},
            "output": list(output), "output_is_list": [False] * len(output),
            "output_name": list(names or output), "name": name,
            "display_name": display, "description": description,
            "python_module": module, "category": category,
            "output_node": output_node}
    if tooltips:
        info["output_tooltips"] = tooltips
    return info


def _v3(name, display, category, required, optional=None, output=(),
        output_node=False, module="comfy_extras.nodes_images", description="",
        hidden=False, experimental=False):
    info = _v1(name, display, category, required, optional, output, output_node,
               module, description,
               {"prompt": ["PROMPT"], "extra_pnginfo": ["EXTRA_PNGINFO"]}
               if hidden else None)
    tooltips = [None] * len(output)
    keys = list(info.keys())
    pos = keys.index("output_name") + 1
    info = dict(list(info.items())[:pos] + [("output_tooltips", tooltips),
                                             ("output_matchtypes", None)]
                + list(info.items())[pos:])
    info.update(deprecated=False, experimental=experimental, api_node=False)
    return info


def combo(options, **kw):
    return ["COMBO", dict({"multiselect": False, "options": list(options)}, **kw)]


def INT(default=None, lo=None, hi=None, step=None, **kw):
    d = {}
    for k, v in (("default", default), ("min", lo), ("max", hi), ("step", step)):
        if v is not None:
            d[k] = v
    d.update(kw)
    return ["INT", d]


def FLOAT(default=None, lo=None, hi=None, step=None, **kw):
    d = INT(default, lo, hi, step, **kw)[1]
    return ["FLOAT", d]


UPSCALE = ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"]
SAMPLERS = ["euler", "euler_cfg_pp", "euler_ancestral", "euler_ancestral_cfg_pp",
            "heun", "heunpp2", "exp_heun_2_x0", "exp_heun_2_x0_sde", "dpm_2",
            "dpm_2_ancestral", "lms", "dpm_fast", "dpm_adaptive",
            "dpmpp_2s_ancestral", "dpmpp_2s_ancestral_cfg_pp", "dpmpp_sde",
            "dpmpp_sde_gpu", "dpmpp_2m", "dpmpp_2m_cfg_pp", "dpmpp_2m_sde",
            "dpmpp_2m_sde_gpu", "dpmpp_2m_sde_heun", "dpmpp_2m_sde_heun_gpu",
            "dpmpp_3m_sde", "dpmpp_3m_sde_gpu", "ddpm", "lcm", "ipndm", "ipndm_v",
            "deis", "res_multistep", "res_multistep_cfg_pp",
            "res_multistep_ancestral", "res_multistep_ancestral_cfg_pp",
            "gradient_estimation", "gradient_estimation_cfg_pp", "er_sde",
            "seeds_2", "seeds_3", "sa_solver", "sa_solver_pece", "ddim", "uni_pc",
            "uni_pc_bh2"]
SCHEDULERS = ["simple", "sgm_uniform", "karras", "exponential", "ddim_uniform",
              "beta", "normal", "linear_quadratic", "kl_optimal"]
SAVE_TIP = "Saves the input images to your ComfyUI output directory."
HIDDEN = {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}
FS = "custom_nodes.flowscale-io"


def node_specs(models, input_images, input_audio):
    """The /object_info entries, as a real 0.8.0 server shows them."""
    s = {}
    s["EmptyImage"] = _v1("EmptyImage", "EmptyImage", "image", {
        "width": INT(512, 1, MAX_RES, 1), "height": INT(512, 1, MAX_RES, 1),
        "batch_size": INT(1, 1, 4096),
        "color": INT(0, 0, 0xFFFFFF, 1, display="color")}, output=["IMAGE"])
    s["LoadImage"] = _v1("LoadImage", "Load Image", "image", {
        "image": [input_images, {"image_upload": True}]}, output=["IMAGE", "MASK"])
    s["ImageInvert"] = _v1("ImageInvert", "Invert Image", "image",
                           {"image": ["IMAGE"]}, output=["IMAGE"])
    s["ImageScale"] = _v1("ImageScale", "Upscale Image", "image/upscaling", {
        "image": ["IMAGE"], "upscale_method": [UPSCALE],
        "width": INT(512, 0, MAX_RES, 1), "height": INT(512, 0, MAX_RES, 1),
        "crop": [["disabled", "center"]]}, output=["IMAGE"])
    s["ImageScaleBy"] = _v1("ImageScaleBy", "Upscale Image By", "image/upscaling", {
        "image": ["IMAGE"], "upscale_method": [UPSCALE],
        "scale_by": FLOAT(1.0, 0.01, 8.0, 0.01)}, output=["IMAGE"])
    pp = "comfy_extras.nodes_post_processing"
    s["ImageBlur"] = _v3("ImageBlur", None, "image/postprocessing", {
        "image": ["IMAGE", {}], "blur_radius": INT(1, 1, 31, 1),
        "sigma": FLOAT(1.0, 0.1, 10.0, 0.1)}, output=["IMAGE"], module=pp)
    s["ImageFlip"] = _v3("ImageFlip", None, "image/transform", {
        "image": ["IMAGE", {}],
        "flip_method": combo(["x-axis: vertically", "y-axis: horizontally"])},
        output=["IMAGE"])
    s["ImageRotate"] = _v3("ImageRotate", None, "image/transform", {
        "image": ["IMAGE", {}],
        "rotation": combo(["none", "90 degrees", "180 degrees", "270 degrees"])},
        output=["IMAGE"])
    s["ImageCrop"] = _v3("ImageCrop", "Image Crop", "image/transform", {
        "image": ["IMAGE", {}], "width": INT(512, 1, MAX_RES, 1),
        "height": INT(512, 1, MAX_RES, 1), "x": INT(0, 0, MAX_RES, 1),
        "y": INT(0, 0, MAX_RES, 1)}, output=["IMAGE"])
    s["ImageBlend"] = _v3("ImageBlend", None, "image/postprocessing", {
        "image1": ["IMAGE", {}], "image2": ["IMAGE", {}],
        "blend_factor": FLOAT(0.5, 0.0, 1.0, 0.01),
        "blend_mode": combo(["normal", "multiply", "screen", "overlay",
                             "soft_light", "difference"])},
        output=["IMAGE"], module=pp)
    s["SolidMask"] = _v3("SolidMask", None, "mask", {
        "value": FLOAT(1.0, 0.0, 1.0, 0.01), "width": INT(512, 1, MAX_RES, 1),
        "height": INT(512, 1, MAX_RES, 1)}, output=["MASK"],
        module="comfy_extras.nodes_mask")
    prim = "comfy_extras.nodes_primitive"
    s["PrimitiveInt"] = _v3("PrimitiveInt", "Int", "utils/primitive", {
        "value": INT(None, -BIG, BIG, control_after_generate=True)},
        output=["INT"], module=prim)
    s["PrimitiveFloat"] = _v3("PrimitiveFloat", "Float", "utils/primitive", {
        "value": FLOAT(None, -BIG, BIG, 0.1)}, output=["FLOAT"], module=prim)
    s["PrimitiveString"] = _v3("PrimitiveString", "String", "utils/primitive", {
        "value": ["STRING", {"multiline": False}]}, output=["STRING"], module=prim)
    s["PrimitiveBoolean"] = _v3("PrimitiveBoolean", "Boolean", "utils/primitive", {
        "value": ["BOOLEAN", {}]}, output=["BOOLEAN"], module=prim)
    s["StringConcatenate"] = _v3("StringConcatenate", "Concatenate", "utils/string", {
        "string_a": ["STRING", {"multiline": True}],
        "string_b": ["STRING", {"multiline": True}],
        "delimiter": ["STRING", {"default": "", "multiline": False}]},
        output=["STRING"], module="comfy_extras.nodes_string")
    s["SaveImage"] = _v1("SaveImage", "Save Image", "image", {
        "images": ["IMAGE", {"tooltip": "The images to save."}],
        "filename_prefix": ["STRING", {"default": "ComfyUI"}]},
        output_node=True, description=SAVE_TIP, hidden=HIDDEN)
    s["PreviewImage"] = _v1("PreviewImage", "Preview Image", "image",
                            {"images": ["IMAGE"]}, output_node=True,
                            description=SAVE_TIP, hidden=HIDDEN)
    s["PreviewAny"] = _v1("PreviewAny", "Preview as Text", "utils",
                          {"source": ["*", {}]}, output_node=True,
                          module="comfy_extras.nodes_preview_any")
    s["CheckpointLoaderSimple"] = _v1(
        "CheckpointLoaderSimple", "Load Checkpoint", "loaders",
        {"ckpt_name": [list(models), {"tooltip": "The name of the checkpoint (model) to load."}]},
        output=["MODEL", "CLIP", "VAE"],
        description="Loads a diffusion model checkpoint, diffusion models are used to denoise latents.",
        tooltips=["The model used for denoising latents.",
                  "The CLIP model used for encoding text prompts.",
                  "The VAE model used for encoding and decoding images to and from latent space."])
    s["CLIPTextEncode"] = _v1(
        "CLIPTextEncode", "CLIP Text Encode (Prompt)", "conditioning",
        {"text": ["STRING", {"multiline": True, "dynamicPrompts": True}],
         "clip": ["CLIP", {}]}, output=["CONDITIONING"],
        tooltips=["A conditioning containing the embedded text used to guide the diffusion model."],
        description="Encodes a text prompt using a CLIP model into an embedding that can be used to guide the diffusion model towards generating specific images.")
    s["EmptyLatentImage"] = _v1(
        "EmptyLatentImage", "Empty Latent Image", "latent",
        {"width": INT(512, 16, MAX_RES, 8), "height": INT(512, 16, MAX_RES, 8),
         "batch_size": INT(1, 1, 4096)}, output=["LATENT"],
        tooltips=["The empty latent image batch."],
        description="Create a new batch of empty latent images to be denoised via sampling.")
    s["KSampler"] = _v1("KSampler", "KSampler", "sampling", {
        "model": ["MODEL", {}],
        "seed": INT(0, 0, 0xffffffffffffffff, control_after_generate=True),
        "steps": INT(20, 1, 10000), "cfg": FLOAT(8.0, 0.0, 100.0, 0.1, round=0.01),
        "sampler_name": [SAMPLERS, {}], "scheduler": [SCHEDULERS, {}],
        "positive": ["CONDITIONING", {}], "negative": ["CONDITIONING", {}],
        "latent_image": ["LATENT", {}], "denoise": FLOAT(1.0, 0.0, 1.0, 0.01)},
        output=["LATENT"], tooltips=["The denoised latent."],
        description="Uses the provided model, positive and negative conditioning to denoise the latent image.")
    s["VAEDecode"] = _v1("VAEDecode", "VAE Decode", "latent", {
        "samples": ["LATENT", {}], "vae": ["VAE", {}]}, output=["IMAGE"],
        tooltips=["The decoded image."], description="Decodes latent images back into pixel space images.")
    s["SaveAnimatedWEBP"] = _v3("SaveAnimatedWEBP", None, "image/animation", {
        "images": ["IMAGE", {}],
        "filename_prefix": ["STRING", {"default": "ComfyUI", "multiline": False}],
        "fps": FLOAT(6.0, 0.01, 1000.0, 0.01), "lossless": ["BOOLEAN", {"default": True}],
        "quality": INT(80, 0, 100), "method": combo(["default", "fastest", "slowest"])},
        output_node=True, hidden=True)
    au = "comfy_extras.nodes_audio"
    s["LoadAudio"] = _v3("LoadAudio", "Load Audio", "audio", {
        "audio": combo(input_audio, audio_upload=True)}, output=["AUDIO"], module=au)
    s["EmptyLatentAudio"] = _v3("EmptyLatentAudio", "Empty Latent Audio", "latent/audio", {
        "seconds": FLOAT(47.6, 1.0, 1000.0, 0.1),
        "batch_size": ["INT", {"tooltip": "The number of latent images in the batch.",
                               "default": 1, "min": 1, "max": 4096}]},
        output=["LATENT"], module=au)
    s["VAEDecodeAudio"] = _v3("VAEDecodeAudio", "VAE Decode Audio", "latent/audio", {
        "samples": ["LATENT", {}], "vae": ["VAE", {}]}, output=["AUDIO"], module=au)
    s["SaveAudio"] = _v3("SaveAudio", "Save Audio (FLAC)", "audio", {
        "audio": ["AUDIO", {}],
        "filename_prefix": ["STRING", {"default": "audio/ComfyUI", "multiline": False}]},
        output_node=True, module=au, hidden=True)
    vid = "comfy_extras.nodes_video"
    s["CreateVideo"] = _v3("CreateVideo", "Create Video", "image/video", {
        "images": ["IMAGE", {}], "fps": FLOAT(30.0, 1.0, 120.0, 1.0)},
        {"audio": ["AUDIO", {}]}, output=["VIDEO"], module=vid,
        description="Create a video from images.")
    s["SaveVideo"] = _v3("SaveVideo", "Save Video", "image/video", {
        "video": ["VIDEO", {}],
        "filename_prefix": ["STRING", {"default": "video/ComfyUI", "multiline": False}],
        "format": combo(["auto", "mp4"], default="auto"),
        "codec": combo(["auto", "h264"], default="auto")},
        output_node=True, module=vid, hidden=True, description=SAVE_TIP)
    label = {"label": ["STRING", {"default": "", "multiline": False}]}
    s["FSLoadText"] = _v1("FSLoadText", "FlowScale Load Text", "FlowScale/IO", {}, dict(
        {"default_value": ["STRING", {"default": "", "multiline": True}]}, **label),
        output=["STRING"], module=FS, names=["text"])
    s["FSLoadInteger"] = _v1("FSLoadInteger", "FlowScale Load Integer", "FlowScale/IO", {}, dict(
        {"default_value": INT(0, -BIG, BIG, 1)}, **label),
        output=["INT"], module=FS, names=["value"])
    s["FSLoadImage"] = _v1("FSLoadImage", "FlowScale Load Image", "FlowScale/IO", {
        "image": [input_images, {"image_upload": True}]}, dict(label),
        output=["IMAGE", "MASK"], module=FS)
    s["FSSaveImage"] = _v1("FSSaveImage", "FlowScale Save Image", "FlowScale/IO", {
        "images": ["IMAGE", {}],
        "filename_prefix": ["STRING", {"default": "FlowScale"}],
        "format": [["png", "jpg", "webp"], {"default": "png"}]}, dict(label),
        output_node=True, module=FS, hidden=HIDDEN)
    s["FSSaveText"] = _v1("FSSaveText", "FlowScale Save Text", "FlowScale/IO", {
        "text": ["STRING", {"forceInput": True}],
        "filename_prefix": ["STRING", {"default": "FlowScale"}]}, dict(label),
        output_node=True, module=FS)
    s["FSSaveVideo"] = _v1("FSSaveVideo", "FlowScale Save Video", "FlowScale/IO", {
        "images": ["IMAGE", {}],
        "filename_prefix": ["STRING", {"default": "FlowScale"}],
        "fps": FLOAT(8.0, 1.0, 120.0, 1.0)}, dict(label),
        output_node=True, module=FS)
    return s


IMAGE_VALIDATED = ("LoadImage", "FSLoadImage")   # VALIDATE_INPUTS(image)

# ------------------------------------------------------------------ the server


def is_link(v):
    return isinstance(v, list) and len(v) == 2 and isinstance(v[0], str) \
        and isinstance(v[1], int) and not isinstance(v[1], bool)


def types_match(received, wanted):
    if received == wanted or received == "*" or wanted == "*":
        return True
    if not isinstance(received, str) or not isinstance(wanted, str):
        return False
    a = {t.strip() for t in received.split(",")}
    return bool(a & {t.strip() for t in wanted.split(",")})


def fake_tb(frames):
    """A traceback list like traceback.format_tb() on the real server."""
    base = [("execution.py", 518, "execute",
             "output_data, output_ui, has_subgraph, has_pending_tasks = await "
             "get_output_data(prompt_id, unique_id, obj, input_data_all, "
             "execution_block_cb=execution_block_cb, pre_execute_cb=pre_execute_cb, "
             "v3_data=v3_data)"),
            ("execution.py", 329, "get_output_data",
             "return_values = await _async_map_node_over_list(prompt_id, unique_id, "
             "obj, input_data_all, obj.FUNCTION, allow_interrupt=True, "
             "execution_block_cb=execution_block_cb, pre_execute_cb=pre_execute_cb, "
             "v3_data=v3_data)"),
            ("execution.py", 303, "_async_map_node_over_list",
             "await process_inputs(input_dict, i)"),
            ("execution.py", 291, "process_inputs",
             "result = f(**inputs)")] + frames
    return ['  File "%s/%s", line %d, in %s\n    %s\n' % (FAKE_ROOT, f, n, fn, src)
            for f, n, fn, src in base]


class Sim:
    def __init__(self, workdir, faults):
        self.dir = os.path.abspath(workdir)
        self.dirs = {k: os.path.join(self.dir, k) for k in ("input", "output", "temp")}
        for d in self.dirs.values():
            os.makedirs(d, exist_ok=True)
        example = os.path.join(self.dirs["input"], "example.png")
        if not os.path.exists(example):      # a real install ships one too
            with open(example, "wb") as fh:
                fh.write(write_png(512, 512, (40, 90, 160), (230, 180, 60)))
        self.start_faults = dict(faults)
        self.faults = dict(faults)
        self.sockets = {}
        self.queue = []            # heap of (number, id, prompt, extra, outputs)
        self.running = None
        self.history = {}
        self.cache = {}            # signature -> (outputs tuple, ui or None)
        self.log = []
        self.number = 0
        self.seq = 0               # tie-break for equal numbers in the heap
        self.epoch = 0
        self.interrupt = False
        self.client_id = None
        self.last_node_id = None
        self.wake = asyncio.Event()
        self.worker = None

    # ----------------------------------------------------------- utilities
    def event(self, kind, **kw):
        e = {"t": time.time(), "kind": kind}
        e.update(kw)
        self.log.append(e)

    def f(self, name):
        return self.faults.get(name)

    def classes(self):
        inputs = self.dirs["input"]
        names = sorted(n for n in os.listdir(inputs)
                       if os.path.isfile(os.path.join(inputs, n)))
        images = [n for n in names if (mimetypes.guess_type(n)[0] or "").startswith("image/")]
        audio = [n for n in names if (mimetypes.guess_type(n)[0] or "").startswith(("audio/", "video/"))]
        specs = node_specs(self.f("models") or [], images, audio)
        for name in self.f("missing_class") or []:
            specs.pop(name, None)
        return specs

    def remaining(self):
        return len(self.queue) + (1 if self.running else 0)

    def queue_info(self):
        return {"exec_info": {"queue_remaining": self.remaining()}}

    async def send(self, event, data, sid=None):
        if self.f("old_server") and event == "progress_state":
            return
        msg = json.dumps({"type": event, "data": data})
        targets = list(self.sockets.values()) if sid is None else \
            [self.sockets[sid]] if sid in self.sockets else []
        for ws in targets:
            try:
                await ws.send_str(msg)
            except Exception:
                pass

    async def send_bytes(self, kind, payload, sid):
        ws = self.sockets.get(sid)
        if ws is not None:
            try:
                await ws.send_bytes(struct.pack(">I", kind) + payload)
            except Exception:
                pass

    async def queue_updated(self):
        await self.send("status", {"status": self.queue_info()})

    def annotated(self, name, default="input"):
        for t in ("input", "output", "temp"):
            if name.endswith(" [%s]" % t):
                return name[:-len(t) - 3], t
        return name, default

    def input_path(self, name):
        name, kind = self.annotated(name)
        path = os.path.abspath(os.path.join(self.dirs[kind], name))
        if os.path.commonpath((path, self.dirs[kind])) != self.dirs[kind]:
            return None
        return path

    # ---------------------------------------------------------- validation
    async def validate(self, prompt):
        specs = self.classes()
        outputs = []
        for nid, node in prompt.items():
            if not isinstance(node, dict) or "class_type" not in node:
                return False, {"type": "invalid_prompt",
                               "message": "Cannot execute because a node is missing the class_type property.",
                               "details": "Node ID '#%s'" % nid, "extra_info": {}}, [], {}
            ct = node["class_type"]
            if ct not in specs:
                return False, {"type": "invalid_prompt",
                               "message": "Cannot execute because node %s does not exist." % ct,
                               "details": "Node ID '#%s'" % nid, "extra_info": {}}, [], {}
            if specs[ct]["output_node"]:
                outputs.append(nid)
        if not outputs:
            return False, {"type": "prompt_no_outputs", "message": "Prompt has no outputs",
                           "details": "", "extra_info": {}}, [], {}
        good, errors, node_errors, validated = [], [], {}, {}
        for o in outputs:
            try:
                ok, reasons = self.validate_inputs(prompt, o, validated, specs)
            except Exception as ex:
                ok = False
                reasons = [{"type": "exception_during_validation",
                            "message": "Exception when validating node",
                            "details": str(ex),
                            "extra_info": {"exception_type": type(ex).__name__,
                                           "traceback": [
                                               '  File "%s/execution.py", line 1043, in '
                                               'validate_prompt\n    m = await validate_inputs('
                                               'prompt_id, prompt, o, validated)\n' % FAKE_ROOT,
                                               '  File "%s/execution.py", line 818, in '
                                               'validate_inputs\n    o_class_type = '
                                               "prompt[o_id]['class_type']\n" % FAKE_ROOT]}}]
                validated[o] = (False, reasons)
            if ok:
                good.append(o)
                continue
            errors.append((o, reasons))
            for nid, (vok, vreasons) in validated.items():
                if vok is not True and vreasons:
                    if nid not in node_errors:
                        node_errors[nid] = {"errors": vreasons, "dependent_outputs": [],
                                            "class_type": prompt[nid]["class_type"]}
                    node_errors[nid]["dependent_outputs"].append(o)
        if not good:
            details = "\n".join("%s: %s" % (e["message"], e["details"])
                                for _, rs in errors for e in rs)
            return False, {"type": "prompt_outputs_failed_validation",
                           "message": "Prompt outputs failed validation",
                           "details": details, "extra_info": {}}, [], node_errors
        return True, None, good, node_errors

    def validate_inputs(self, prompt, nid, validated, specs):
        if nid in validated:
            return validated[nid]
        node = prompt[nid]
        inputs = node.get("inputs", {})
        if not isinstance(inputs, dict):
            raise TypeError("'%s' object is not a mapping" % type(inputs).__name__)
        spec = specs[node["class_type"]]["input"]
        errors, valid = [], True
        custom = {"LoadImage": "image", "FSLoadImage": "image", "LoadAudio": "audio"}
        skip_combo = custom.get(node["class_type"])
        for cat in ("required", "optional"):
            for name, conf in spec.get(cat, {}).items():
                itype, extra = conf[0], conf[1] if len(conf) > 1 else {}
                info = [itype, extra]
                if name not in inputs:
                    if cat == "required":
                        errors.append({"type": "required_input_missing",
                                       "message": "Required input is missing",
                                       "details": name, "extra_info": {"input_name": name}})
                    continue
                val = inputs[name]
                if isinstance(val, list):
                    if len(val) != 2:
                        errors.append({"type": "bad_linked_input",
                                       "message": "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                                       "details": name,
                                       "extra_info": {"input_name": name, "input_config": info,
                                                      "received_value": val}})
                        continue
                    src = prompt[val[0]]
                    rtypes = tuple(specs[src["class_type"]]["output"])
                    received = rtypes[val[1]]
                    if not types_match(received, itype):
                        errors.append({"type": "return_type_mismatch",
                                       "message": "Return type mismatch between linked nodes",
                                       "details": "%s, received_type(%s) mismatch input_type(%s)"
                                       % (name, received, itype),
                                       "extra_info": {"input_name": name, "input_config": info,
                                                      "received_type": received,
                                                      "linked_node": val}})
                        continue
                    ok, _ = self.validate_inputs(prompt, val[0], validated, specs)
                    if not ok:
                        valid = False
                    continue
                try:
                    if isinstance(val, dict) and "__value__" in val:
                        val = inputs[name] = val["__value__"]
                    if itype == "INT":
                        val = int(val)
                    elif itype == "FLOAT":
                        val = float(val)
                    elif itype == "STRING":
                        val = str(val)
                    elif itype == "BOOLEAN":
                        val = bool(val)
                    inputs[name] = val
                except Exception as ex:
                    errors.append({"type": "invalid_input_type",
                                   "message": "Failed to convert an input value to a %s value" % itype,
                                   "details": "%s, %s, %s" % (name, val, ex),
                                   "extra_info": {"input_name": name, "input_config": info,
                                                  "received_value": val,
                                                  "exception_message": str(ex)}})
                    continue
                if name == skip_combo:
                    continue
                try:
                    if "min" in extra and val < extra["min"]:
                        errors.append({"type": "value_smaller_than_min",
                                       "message": "Value %s smaller than min of %s" % (val, extra["min"]),
                                       "details": name,
                                       "extra_info": {"input_name": name, "input_config": info,
                                                      "received_value": val}})
                        continue
                    if "max" in extra and val > extra["max"]:
                        errors.append({"type": "value_bigger_than_max",
                                       "message": "Value %s bigger than max of %s" % (val, extra["max"]),
                                       "details": name,
                                       "extra_info": {"input_name": name, "input_config": info,
                                                      "received_value": val}})
                        continue
                except TypeError as ex:
                    raise TypeError(str(ex))
                if isinstance(itype, list) or itype == "COMBO":
                    options = extra.get("options", []) if itype == "COMBO" else itype
                    if val not in options:
                        cfg, listed = info, str(options)
                        if len(options) > 20:
                            cfg, listed = None, "(list of length %d)" % len(options)
                        errors.append({"type": "value_not_in_list",
                                       "message": "Value not in list",
                                       "details": "%s: '%s' not in %s" % (name, val, listed),
                                       "extra_info": {"input_name": name, "input_config": cfg,
                                                      "received_value": val}})
        if skip_combo and skip_combo in inputs and not isinstance(inputs[skip_combo], list):
            val = inputs[skip_combo]
            path = self.input_path(str(val))
            if path is None or not os.path.isfile(path):
                what = "image" if skip_combo == "image" else "audio"
                errors.append({"type": "custom_validation_failed",
                               "message": "Custom validation failed for node",
                               "details": "%s - Invalid %s file: %s" % (skip_combo, what, val),
                               "extra_info": {"input_name": skip_combo}})
        ret = (not errors and valid, errors)
        validated[nid] = ret
        return ret

    # ----------------------------------------------------------- execution
    def signatures(self, prompt):
        sigs = {}

        def sig(nid):
            if nid in sigs:
                return sigs[nid]
            node = prompt[nid]
            items = []
            for k in sorted(node.get("inputs", {})):
                v = node["inputs"][k]
                if is_link(v) and v[0] in prompt:
                    items.append([k, sig(v[0]), v[1]])
                else:
                    items.append([k, json.dumps(v, sort_keys=True, default=str)])
            if node["class_type"] in ("LoadImage", "FSLoadImage", "LoadAudio"):
                path = self.input_path(str(node["inputs"].get("image", node["inputs"].get("audio", ""))))
                if path and os.path.isfile(path):
                    with open(path, "rb") as fh:
                        items.append(hashlib.sha256(fh.read()).hexdigest())
            sigs[nid] = hashlib.sha256(json.dumps([node["class_type"], items]).encode()).hexdigest()
            return sigs[nid]
        for nid in prompt:
            sig(nid)
        return sigs

    async def pause(self, seconds):
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while True:
            if self.interrupt:
                raise Interrupted()
            left = end - loop.time()
            if left <= 0:
                return
            await asyncio.sleep(min(left, 0.02))

    async def progress_state(self, pid, progress):
        nodes = {n: {"value": v, "max": m, "state": st, "node_id": n, "prompt_id": pid,
                     "display_node_id": n, "parent_node_id": None, "real_node_id": n}
                 for n, (v, m, st) in progress.items()}
        await self.send("progress_state", {"prompt_id": pid, "nodes": nodes})

    async def worker_loop(self):
        while True:
            while not self.queue:
                self.wake.clear()
                await self.wake.wait()
            _, _, item = heapq.heappop(self.queue)
            self.running = item
            await self.queue_updated()
            try:
                await self.run_job(item)
            except Exception as ex:          # a simulator bug: keep serving
                print("comfyui-sim: job failed: %r" % ex, file=sys.stderr)
                self.running = None

    async def run_job(self, item):
        number, pid, prompt, extra, outputs = item
        epoch = self.epoch
        sid = extra.get("client_id")
        self.client_id, self.interrupt = sid, False
        messages = []
        self.event("run_start", prompt_id=pid, number=number)

        async def add_message(event, data, broadcast=False):
            data = dict(data, timestamp=int(time.time() * 1000))
            messages.append([event, data])
            if sid is not None or broadcast:
                await self.send(event, data, sid)
        await add_message("execution_start", {"prompt_id": pid})
        sigs = self.signatures(prompt)
        keep = set(sigs.values())
        self.cache = {k: v for k, v in self.cache.items() if k in keep}
        cached = [n for n in prompt if sigs[n] in self.cache]
        await add_message("execution_cached", {"nodes": cached, "prompt_id": pid})
        values = {n: self.cache[sigs[n]][0] for n in cached}
        ui_outputs, executed, progress = {}, [], {}
        order = ExecList(prompt, set(cached), self.classes())
        for o in outputs:
            order.add_node(o)
        ksampler = [n for n in order.pending if prompt[n]["class_type"] == "KSampler"]
        slow_node = ksampler[0] if ksampler else None
        first, status = True, "success"
        while order.pending:
            nid = order.pick()
            ct = prompt[nid]["class_type"]
            if sigs[nid] in self.cache and nid in cached:
                ui = self.cache[sigs[nid]][1]
                if sid is not None:
                    await self.send("executed", {"node": nid, "display_node": nid,
                                                 "output": ui, "prompt_id": pid}, sid)
                if ui is not None:
                    ui_outputs[nid] = ui
                progress[nid] = (1, 1, "finished")
                await self.progress_state(pid, progress)
                order.complete(nid)
                continue
            progress[nid] = (0.0, 1.0, "running")
            await self.progress_state(pid, progress)
            self.last_node_id = nid
            if sid is not None:
                await self.send("executing", {"node": nid, "display_node": nid,
                                              "prompt_id": pid}, sid)
            inputs = {}
            for k, v in prompt[nid].get("inputs", {}).items():
                inputs[k] = values[v[0]][v[1]] if is_link(v) else v
            try:
                if first:
                    if self.f("die_mid_run"):
                        await asyncio.sleep(0.05)
                        os._exit(1)
                    while self.f("hang"):
                        await self.pause(0.02)
                    if slow_node is None:
                        slow_node = nid
                first = False
                delay = self.f("step_time") + (self.f("slow") if nid == slow_node else 0)
                ctx = {"nid": nid, "pid": pid, "sid": sid, "prompt": prompt,
                       "extra": extra, "delay": delay, "progress": progress}
                if self.f("fail_node") in (nid, ct):
                    await self.pause(delay)
                    raise NodeError(self.f("fail_message"), "RuntimeError",
                                    [("comfy/sample.py", 60, "sample",
                                      "samples = sampler.sample(noise, positive, negative, cfg=cfg)")])
                outs, ui = await RUNNERS[ct](self, ctx, **inputs)
            except Interrupted:
                status = "interrupted"
                await add_message("execution_interrupted", {
                    "prompt_id": pid, "node_id": nid, "node_type": ct,
                    "executed": list(executed)}, broadcast=True)
                break
            except NodeError as ex:
                status = "error"
                await add_message("execution_error", {
                    "prompt_id": pid, "node_id": nid, "node_type": ct,
                    "executed": list(executed), "exception_message": "%s\n" % ex,
                    "exception_type": ex.exc_type, "traceback": fake_tb(ex.frames),
                    "current_inputs": {k: [v if v is None or isinstance(v, (int, float, bool, str))
                                           else str(v)] for k, v in inputs.items()},
                    "current_outputs": list(reversed(list(prompt)))})
                break
            values[nid] = outs
            self.cache[sigs[nid]] = (outs, ui)
            if ui is not None:
                ui_outputs[nid] = ui
                if sid is not None:
                    await self.send("executed", {"node": nid, "display_node": nid,
                                                 "output": ui, "prompt_id": pid}, sid)
            progress[nid] = (1.0, progress[nid][1], "finished")
            await self.progress_state(pid, progress)
            executed.append(nid)
            order.complete(nid)
        else:
            if not self.f("no_success_message"):
                await add_message("execution_success", {"prompt_id": pid})
        self.last_node_id = None
        if epoch == self.epoch:
            while len(self.history) > max(0, self.f("max_history")):
                self.history.pop(next(iter(self.history)))
            self.history[pid] = {
                "prompt": [number, pid, prompt, extra, outputs],
                "outputs": ui_outputs,
                "status": {"status_str": "success" if status == "success" else "error",
                           "completed": status == "success", "messages": messages},
                "meta": {n: {"node_id": n, "display_node": n, "parent_node": None,
                             "real_node_id": n} for n in ui_outputs}}
            self.event("run_end", prompt_id=pid, status=status)
        self.running = None
        await self.queue_updated()
        if sid is not None:
            await self.send("executing", {"node": None, "prompt_id": pid}, sid)


class ExecList:
    """ComfyUI's ExecutionList: topological order with its UX-friendly pick."""

    def __init__(self, prompt, cached, specs):
        self.prompt, self.cached, self.specs = prompt, cached, specs
        self.pending, self.count, self.blocking = {}, {}, {}

    def add_node(self, nid):
        stack, links = [nid], []
        while stack:
            u = stack.pop()
            if u in self.pending:
                continue
            self.pending[u], self.count[u], self.blocking[u] = True, 0, {}
            for v in self.prompt[u].get("inputs", {}).values():
                if is_link(v):
                    if v[0] not in self.cached:
                        stack.append(v[0])
                    links.append((v[0], v[1], u))
        for src, slot, dst in links:
            if src not in self.cached:
                self.add_node(src)
                if dst not in self.blocking[src]:
                    self.blocking[src][dst] = {}
                    self.count[dst] += 1
                self.blocking[src][dst][slot] = True

    def is_output(self, nid):
        return self.specs[self.prompt[nid]["class_type"]]["output_node"]

    def pick(self):
        ready = [n for n in self.pending if self.count[n] == 0]
        for n in ready:
            if self.is_output(n):
                return n
        for n in ready:
            if any(self.is_output(b) for b in self.blocking[n]):
                return n
        for n in ready:
            if any(self.is_output(b1) for b in self.blocking[n] for b1 in self.blocking[b]):
                return n
        return ready[0]

    def complete(self, nid):
        del self.pending[nid]
        for b in self.blocking.pop(nid):
            self.count[b] -= 1

# -------------------------------------------------------------- node runners


RUNNERS = {}


def runner(*names):
    def deco(fn):
        for n in names:
            RUNNERS[n] = fn
        return fn
    return deco


def _rgb(color):
    return ((color >> 16) & 255, (color >> 8) & 255, color & 255)


def _mix(a, b, f):
    return tuple(int(x + (y - x) * f) for x, y in zip(a, b))


def save_path(sim, prefix, kind="output", w=0, h=0):
    out_dir = sim.dirs[kind]
    prefix = prefix.replace("%width%", str(w)).replace("%height%", str(h))
    norm = os.path.normpath(prefix)
    subfolder, filename = os.path.dirname(norm), os.path.basename(norm)
    full = os.path.join(out_dir, subfolder)
    common = os.path.commonpath((out_dir, os.path.abspath(full)))
    if common != out_dir:
        raise NodeError("**** ERROR: Saving image outside the output folder is not allowed."
                        "\n full_output_folder: %s\n         output_dir: %s"
                        "\n         commonpath: %s" % (os.path.abspath(full), out_dir, common),
                        "Exception", [("nodes.py", 1607, "save_images",
                                       "full_output_folder, filename, counter, subfolder, "
                                       "filename_prefix = folder_paths.get_save_image_path("
                                       "filename_prefix, self.output_dir)")])
    os.makedirs(full, exist_ok=True)
    plen, counter = len(filename), 0
    for name in os.listdir(full):
        head = name[:plen + 1]
        if head[:-1] == filename and head[-1:] == "_":
            try:
                counter = max(counter, int(name[plen + 1:].split("_")[0]))
            except ValueError:
                pass
    return full, filename, counter + 1, subfolder


def _save_images(sim, ctx, images, prefix, kind="output", fmt="png", level=4):
    full, name, counter, sub = save_path(sim, prefix, kind, images.w, images.h)
    text = {"prompt": json.dumps(ctx["prompt"])}
    for k, v in (ctx["extra"].get("extra_pnginfo") or {}).items():
        text[k] = json.dumps(v)
    results = []
    for i in range(images.n):
        c1, c2 = images.frame(i)
        fname = "%s_%05d_.%s" % (name.replace("%batch_num%", str(i)), counter, fmt)
        if fmt == "png":
            data = write_png(images.w, images.h, c1, c2, text, level)
        elif fmt == "jpg":
            data = write_jpeg(images.w, images.h, c1)
        else:
            data = write_webp(images.w, images.h, c1)
        with open(os.path.join(full, fname), "wb") as fh:
            fh.write(data)
        results.append({"filename": fname, "subfolder": sub, "type": kind})
        counter += 1
    return results


@runner("EmptyImage")
async def _empty_image(sim, ctx, width, height, batch_size, color):
    await sim.pause(ctx["delay"])
    return (Img(width, height, batch_size, _rgb(color)),), None


@runner("LoadImage", "FSLoadImage")
async def _load_image(sim, ctx, image, label=None):
    await sim.pause(ctx["delay"])
    path = sim.input_path(image)
    with open(path, "rb") as fh:
        data = fh.read()
    size = image_size(data)
    if size is None:
        raise NodeError("cannot identify image file '%s'" % path, "PIL.UnidentifiedImageError",
                        [("nodes.py", 1663, "load_image",
                          "img = node_helpers.pillow(Image.open, image_path)"),
                         ("/usr/lib/python3/dist-packages/PIL/Image.py", 3283, "open",
                          "raise UnidentifiedImageError(msg)")])
    c1, c2 = colour_of(hashlib.sha256(data).hexdigest())
    return (Img(size[0], size[1], 1, c1, c2), Obj("MASK", w=size[0], h=size[1])), None


@runner("ImageInvert")
async def _invert(sim, ctx, image):
    await sim.pause(ctx["delay"])
    return (Img(image.w, image.h, image.n, [255 - v for v in image.c1],
                [255 - v for v in image.c2]),), None


@runner("ImageScale")
async def _scale(sim, ctx, image, upscale_method, width, height, crop):
    await sim.pause(ctx["delay"])
    if width == 0 and height == 0:
        width, height = image.w, image.h
    elif width == 0:
        width = max(1, round(image.w * height / image.h))
    elif height == 0:
        height = max(1, round(image.h * width / image.w))
    return (Img(width, height, image.n, image.c1, image.c2),), None


@runner("ImageScaleBy")
async def _scale_by(sim, ctx, image, upscale_method, scale_by):
    await sim.pause(ctx["delay"])
    return (Img(round(image.w * scale_by), round(image.h * scale_by), image.n,
                image.c1, image.c2),), None


@runner("ImageBlur")
async def _blur(sim, ctx, image, blur_radius, sigma):
    await sim.pause(ctx["delay"])
    mid = _mix(image.c1, image.c2, 0.5)
    f = min(1.0, blur_radius * sigma / 31)
    return (Img(image.w, image.h, image.n, _mix(image.c1, mid, f),
                _mix(image.c2, mid, f)),), None


@runner("ImageFlip")
async def _flip(sim, ctx, image, flip_method):
    await sim.pause(ctx["delay"])
    swap = flip_method.startswith("y")
    return (Img(image.w, image.h, image.n, image.c2 if swap else image.c1,
                image.c1 if swap else image.c2),), None


@runner("ImageRotate")
async def _rotate(sim, ctx, image, rotation):
    await sim.pause(ctx["delay"])
    w, h = (image.h, image.w) if rotation in ("90 degrees", "270 degrees") else (image.w, image.h)
    swap = rotation == "180 degrees"
    return (Img(w, h, image.n, image.c2 if swap else image.c1,
                image.c1 if swap else image.c2),), None


@runner("ImageCrop")
async def _crop(sim, ctx, image, width, height, x, y):
    await sim.pause(ctx["delay"])
    x, y = min(x, image.w - 1), min(y, image.h - 1)
    return (Img(min(x + width, image.w) - x, min(y + height, image.h) - y, image.n,
                image.c1, image.c2),), None


@runner("ImageBlend")
async def _blend(sim, ctx, image1, image2, blend_factor, blend_mode):
    await sim.pause(ctx["delay"])
    return (Img(image1.w, image1.h, image1.n, _mix(image1.c1, image2.c1, blend_factor),
                _mix(image1.c2, image2.c2, blend_factor)),), None


@runner("SolidMask")
async def _solid_mask(sim, ctx, value, width, height):
    await sim.pause(ctx["delay"])
    return (Obj("MASK", w=width, h=height, value=value),), None


@runner("PrimitiveInt", "PrimitiveFloat", "PrimitiveString", "PrimitiveBoolean")
async def _primitive(sim, ctx, value):
    await sim.pause(ctx["delay"])
    return (value,), None


@runner("StringConcatenate")
async def _concat(sim, ctx, string_a, string_b, delimiter):
    await sim.pause(ctx["delay"])
    return (delimiter.join([string_a, string_b]),), None


@runner("SaveImage")
async def _save_image(sim, ctx, images, filename_prefix="ComfyUI"):
    await sim.pause(ctx["delay"])
    return (), {"images": _save_images(sim, ctx, images, filename_prefix)}


@runner("PreviewImage")
async def _preview_image(sim, ctx, images):
    await sim.pause(ctx["delay"])
    prefix = "ComfyUI_temp_" + "".join(random.choice("abcdefghijklmnopqrstupvxyz") for _ in range(5))
    return (), {"images": _save_images(sim, ctx, images, prefix, "temp", level=1)}


@runner("PreviewAny")
async def _preview_any(sim, ctx, source=None):
    await sim.pause(ctx["delay"])
    if isinstance(source, str):
        value = source
    elif isinstance(source, (int, float, bool)):
        value = str(source)
    elif source is None:
        value = "None"
    else:
        value = str(source)
    return (), {"text": [value]}


@runner("CheckpointLoaderSimple")
async def _ckpt(sim, ctx, ckpt_name):
    await sim.pause(ctx["delay"])
    if ckpt_name not in (sim.f("models") or []):
        raise NodeError("Model in folder 'checkpoints' with filename '%s' not found." % ckpt_name,
                        "FileNotFoundError",
                        [("nodes.py", 584, "load_checkpoint",
                          'ckpt_path = folder_paths.get_full_path_or_raise("checkpoints", ckpt_name)')])
    return (Obj("MODEL", name=ckpt_name), Obj("CLIP", name=ckpt_name),
            Obj("VAE", name=ckpt_name)), None


@runner("CLIPTextEncode")
async def _clip_encode(sim, ctx, text, clip):
    await sim.pause(ctx["delay"])
    return (Obj("CONDITIONING", text=text, model=clip.name),), None


@runner("EmptyLatentImage")
async def _empty_latent(sim, ctx, width, height, batch_size):
    await sim.pause(ctx["delay"])
    return (Obj("LATENT", w=width // 8, h=height // 8, n=batch_size, key=None),), None


@runner("EmptyLatentAudio")
async def _empty_latent_audio(sim, ctx, seconds, batch_size):
    await sim.pause(ctx["delay"])
    return (Obj("LATENT", w=8, h=8, n=batch_size, key=None, seconds=seconds),), None


@runner("KSampler")
async def _ksampler(sim, ctx, model, seed, steps, cfg, sampler_name, scheduler,
                    positive, negative, latent_image, denoise):
    nid, pid, sid = ctx["nid"], ctx["pid"], ctx["sid"]
    c1, c2 = colour_of(seed, steps, cfg, sampler_name, scheduler, denoise,
                       positive.text, negative.text, model.name, latent_image.key)
    for i in range(1, steps + 1):
        await sim.pause(ctx["delay"] / steps)
        ctx["progress"][nid] = (float(i), float(steps), "running")
        await sim.progress_state(pid, ctx["progress"])
        await sim.send("progress", {"value": i, "max": steps, "prompt_id": pid, "node": nid}, sid)
        if sim.f("previews") and sid is not None:
            await sim.send_bytes(1, struct.pack(">I", 2) + write_png(
                max(1, latent_image.w), max(1, latent_image.h), _mix((0, 0, 0), c1, i / steps),
                _mix((0, 0, 0), c2, i / steps)), sid)
    out = Obj("LATENT", w=latent_image.w, h=latent_image.h, n=latent_image.n,
              key=[c1, c2])
    if hasattr(latent_image, "seconds"):
        out.seconds = latent_image.seconds
    return (out,), None


@runner("VAEDecode")
async def _vae_decode(sim, ctx, samples, vae):
    await sim.pause(ctx["delay"])
    c1, c2 = samples.key or ((0, 0, 0), (0, 0, 0))
    return (Img(samples.w * 8, samples.h * 8, samples.n, c1, c2),), None


@runner("VAEDecodeAudio")
async def _vae_decode_audio(sim, ctx, samples, vae):
    await sim.pause(ctx["delay"])
    c1 = (samples.key or [(0, 0, 0)])[0]
    return (Obj("AUDIO", seconds=getattr(samples, "seconds", 1.0), freq=220 + 3 * sum(c1)),), None


@runner("LoadAudio")
async def _load_audio(sim, ctx, audio):
    await sim.pause(ctx["delay"])
    with open(sim.input_path(audio), "rb") as fh:
        c1, _ = colour_of(hashlib.sha256(fh.read()).hexdigest())
    return (Obj("AUDIO", seconds=1.0, freq=220 + 3 * sum(c1)),), None


@runner("SaveAudio")
async def _save_audio(sim, ctx, audio, filename_prefix="audio/ComfyUI"):
    await sim.pause(ctx["delay"])
    full, name, counter, sub = save_path(sim, filename_prefix)
    fname = "%s_%05d_.flac" % (name, counter)
    with open(os.path.join(full, fname), "wb") as fh:
        fh.write(write_flac(min(audio.seconds, 5.0), audio.freq))
    return (), {"audio": [{"filename": fname, "subfolder": sub, "type": "output"}]}


@runner("CreateVideo")
async def _create_video(sim, ctx, images, fps, audio=None):
    await sim.pause(ctx["delay"])
    return (Obj("VIDEO", images=images, fps=fps),), None


def _save_mp4(sim, images, fps, prefix):
    full, name, counter, sub = save_path(sim, prefix, "output", images.w, images.h)
    fname = "%s_%05d_.mp4" % (name, counter)
    with open(os.path.join(full, fname), "wb") as fh:
        fh.write(write_mp4(images.w, images.h, [images.frame(i)[0] for i in range(images.n)], fps))
    return {"filename": fname, "subfolder": sub, "type": "output"}


@runner("SaveVideo")
async def _save_video(sim, ctx, video, filename_prefix="video/ComfyUI", format="auto", codec="auto"):
    await sim.pause(ctx["delay"])
    return (), {"images": [_save_mp4(sim, video.images, video.fps, filename_prefix)],
                "animated": [True]}


@runner("SaveAnimatedWEBP")
async def _save_webp_anim(sim, ctx, images, filename_prefix="ComfyUI", fps=6.0,
                          lossless=True, quality=80, method="default"):
    await sim.pause(ctx["delay"])
    full, name, counter, sub = save_path(sim, filename_prefix, "output", images.w, images.h)
    fname = "%s_%05d_.webp" % (name, counter)
    with open(os.path.join(full, fname), "wb") as fh:
        fh.write(write_animated_webp(images.w, images.h,
                                     [images.frame(i)[0] for i in range(images.n)], fps))
    ui = {"images": [{"filename": fname, "subfolder": sub, "type": "output"}]}
    if images.n > 1:
        ui["animated"] = [True]
    return (), ui


@runner("FSLoadText")
async def _fs_load_text(sim, ctx, default_value="", label=""):
    await sim.pause(ctx["delay"])
    return (default_value,), None


@runner("FSLoadInteger")
async def _fs_load_int(sim, ctx, default_value=0, label=""):
    await sim.pause(ctx["delay"])
    return (default_value,), None


@runner("FSSaveImage")
async def _fs_save_image(sim, ctx, images, filename_prefix="FlowScale", format="png", label=""):
    await sim.pause(ctx["delay"])
    return (), {"images": _save_images(sim, ctx, images, filename_prefix, fmt=format)}


@runner("FSSaveText")
async def _fs_save_text(sim, ctx, text, filename_prefix="FlowScale", label=""):
    await sim.pause(ctx["delay"])
    return (), {"text": [text]}


@runner("FSSaveVideo")
async def _fs_save_video(sim, ctx, images, filename_prefix="FlowScale", fps=8.0, label=""):
    await sim.pause(ctx["delay"])
    entry = _save_mp4(sim, images, fps, filename_prefix)
    entry["format"] = "video/mp4"
    return (), {"videos": [entry]}

# -------------------------------------------------------------------- routes

REJECT_MESSAGES = {
    "prompt_no_outputs": "Prompt has no outputs",
    "no_prompt": "No prompt provided",
    "prompt_outputs_failed_validation": "Prompt outputs failed validation",
    "invalid_prompt": "Cannot execute because a node is missing the class_type property.",
}


def is_loopback(host):
    if not host:
        return False
    return host == "localhost" or host == "::1" or host.startswith("127.")


@web.middleware
async def origin_only(request, handler):
    """ComfyUI's guard: a loopback Host with a different Origin host is 403."""
    host, origin = request.headers.get("Host"), request.headers.get("Origin")
    if host is not None and origin is not None:
        host_l = host.lower()
        parsed = urllib.parse.urlparse(origin)
        origin_l = parsed.netloc.lower()
        hp = urllib.parse.urlsplit("//" + host_l)
        if parsed.port is None:
            host_l = hp.hostname
        if hp.port is None:
            origin_l = parsed.hostname
        if is_loopback(hp.hostname) and host_l and origin_l and host_l != origin_l:
            return web.Response(status=403)
    if request.method == "OPTIONS":
        return web.Response()
    return await handler(request)


def error_500():
    return web.Response(status=500, text="500 Internal Server Error\n\nServer got itself in trouble")


async def read_json(request):
    try:
        return await request.json()
    except ValueError:
        return None


def make_app(sim):
    routes = web.RouteTableDef()

    @routes.get("/ws")
    async def websocket(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sid = request.rel_url.query.get("clientId", "")
        if sid:
            sim.sockets.pop(sid, None)
        else:
            sid = uuid.uuid4().hex
        sim.sockets[sid] = ws
        sim.event("ws_connect", client_id=sid)
        try:
            await sim.send("status", {"status": sim.queue_info(), "sid": sid}, sid)
            if sim.client_id == sid and sim.last_node_id is not None:
                await sim.send("executing", {"node": sim.last_node_id}, sid)
            first = True
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    try:
                        data = json.loads(msg.data)
                        if first and isinstance(data, dict) and data.get("type") == "feature_flags":
                            await sim.send("feature_flags", features(), sid)
                    except ValueError:
                        pass
                    first = False
        finally:
            if sim.sockets.get(sid) is ws:
                sim.sockets.pop(sid, None)
            sim.event("ws_disconnect", client_id=sid)
        return ws

    def features():
        return {"supports_preview_metadata": True, "max_upload_size": 100 * 1024 * 1024,
                "extension": {"manager": {"supports_v4": True}}}

    @routes.get("/features")
    async def get_features(request):
        return web.json_response(features())

    @routes.get("/embeddings")
    async def embeddings(request):
        return web.json_response([])

    @routes.get("/extensions")
    async def extensions(request):
        return web.json_response([])

    @routes.get("/models")
    async def models(request):
        return web.json_response(["checkpoints", "loras", "vae", "text_encoders",
                                  "diffusion_models", "clip_vision", "upscale_models",
                                  "embeddings", "controlnet"])

    @routes.get("/models/{folder}")
    async def models_in(request):
        if request.match_info["folder"] == "checkpoints":
            return web.json_response(list(sim.f("models") or []))
        known = ("loras", "vae", "text_encoders", "diffusion_models", "clip_vision",
                 "upscale_models", "embeddings", "controlnet")
        if request.match_info["folder"] in known:
            return web.json_response([])
        return web.Response(status=404)

    @routes.get("/system_stats")
    async def system_stats(request):
        ram = 25276502016
        return web.json_response({
            "system": {"os": sys.platform, "ram_total": ram, "ram_free": ram - 673374208,
                       "comfyui_version": sim.f("version"),
                       "required_frontend_version": "1.35.9",
                       "installed_templates_version": None,
                       "required_templates_version": "0.7.67",
                       "python_version": sys.version, "pytorch_version": "2.5.1+cpu",
                       "embedded_python": False, "argv": ["main.py", "--cpu"]},
            "devices": [{"name": "cpu", "type": "cpu", "index": None, "vram_total": ram,
                         "vram_free": ram, "torch_vram_total": ram, "torch_vram_free": ram}]})

    @routes.get("/prompt")
    async def get_prompt(request):
        return web.json_response(sim.queue_info())

    @routes.post("/prompt")
    async def post_prompt(request):
        data = await read_json(request)
        if data is None or not isinstance(data, (dict, list, str)):
            return error_500()
        if not isinstance(data, dict):
            data = {}
        old = sim.f("old_server")
        if "number" in data:
            try:
                number = float(data["number"])
            except (TypeError, ValueError):
                return error_500()
        else:
            number = sim.number
            if data.get("front"):
                number = -number
            sim.number += 1
        entry = {"client_id": data.get("client_id"), "number": number,
                 "prompt": data.get("prompt"), "extra_data": data.get("extra_data"),
                 "requested_prompt_id": data.get("prompt_id")}

        def reply(status, body, prompt_id=None):
            entry.update(status=status, prompt_id=prompt_id)
            if status != 200:
                err = body.get("error")
                entry["error_type"] = err.get("type") if isinstance(err, dict) else err
                if old:
                    if isinstance(err, dict):
                        body["error"] = err["message"] + (
                            ": " + err["details"] if err["details"] else "")
            if old and not body.get("node_errors"):
                body["node_errors"] = []
            sim.event("prompt", **entry)
            return web.json_response(body, status=status)
        if sim.f("reject"):
            kind = sim.f("reject")
            return reply(400, {"error": {"type": kind, "message": REJECT_MESSAGES.get(
                kind, "Prompt rejected (comfyui-sim reject)"), "details": "",
                "extra_info": {}}, "node_errors": {}})
        if "prompt" not in data:
            return reply(400, {"error": {"type": "no_prompt", "message": "No prompt provided",
                                         "details": "No prompt provided", "extra_info": {}},
                               "node_errors": {}})
        prompt = data["prompt"]
        if not isinstance(prompt, dict):
            return error_500()
        pid = str(uuid.uuid4()) if old or "prompt_id" not in data else str(data["prompt_id"])
        ok, err, outputs, node_errors = await sim.validate(prompt)
        extra = dict(data.get("extra_data") or {}) if isinstance(data.get("extra_data"), dict) else {}
        if "client_id" in data:
            extra["client_id"] = data["client_id"]
        if not ok:
            return reply(400, {"error": err, "node_errors": node_errors}, pid)
        for k in SENSITIVE:
            extra.pop(k, None)
        extra["create_time"] = int(time.time() * 1000)
        sim.seq += 1
        heapq.heappush(sim.queue, (number, sim.seq, (number, pid, prompt, extra, outputs)))
        entry["outputs"] = outputs
        await sim.queue_updated()
        sim.wake.set()
        return reply(200, {"prompt_id": pid, "number": number, "node_errors": node_errors}, pid)

    @routes.get("/queue")
    async def get_queue(request):
        return web.json_response({"queue_running": [list(sim.running)] if sim.running else [],
                                  "queue_pending": [list(i[2]) for i in sim.queue]})

    @routes.post("/queue")
    async def post_queue(request):
        data = await read_json(request)
        if not isinstance(data, dict):
            return error_500()
        if data.get("clear"):
            sim.event("clear", prompt_ids=[i[2][1] for i in sim.queue])
            sim.queue = []
            await sim.queue_updated()
        for pid in data.get("delete", []) or []:
            before = len(sim.queue)
            sim.queue = [i for i in sim.queue if i[2][1] != pid]
            heapq.heapify(sim.queue)
            sim.event("delete", prompt_id=pid, removed=len(sim.queue) < before)
            if len(sim.queue) < before:
                await sim.queue_updated()
        return web.Response(status=200)

    @routes.post("/interrupt")
    async def interrupt(request):
        data = await read_json(request)
        if not isinstance(data, dict):
            data = {}
        wanted = None if sim.f("old_server") else data.get("prompt_id")
        running = sim.running[1] if sim.running else None
        hit = running is not None and (not wanted or wanted == running)
        if not wanted or hit:
            sim.interrupt = True
        sim.event("interrupt", prompt_id=data.get("prompt_id"), running=running,
                  interrupted=hit)
        return web.Response(status=200)

    @routes.post("/free")
    async def free(request):
        return web.Response(status=200)

    @routes.get("/history")
    async def get_history(request):
        q = request.rel_url.query
        max_items = int(q["max_items"]) if "max_items" in q else None
        offset = int(q.get("offset", -1))
        if offset < 0 and max_items is not None:
            offset = len(sim.history) - max_items
        out = {}
        for i, k in enumerate(sim.history):
            if i >= offset:
                out[k] = sim.history[k]
                if max_items is not None and len(out) >= max_items:
                    break
        return web.json_response(out)

    @routes.get("/history/{prompt_id}")
    async def get_history_one(request):
        pid = request.match_info["prompt_id"]
        return web.json_response({pid: sim.history[pid]} if pid in sim.history else {})

    @routes.post("/history")
    async def post_history(request):
        data = await read_json(request)
        if not isinstance(data, dict):
            return error_500()
        if data.get("clear"):
            sim.history.clear()
            sim.event("history_clear")
        for pid in data.get("delete", []) or []:
            sim.event("history_delete", prompt_id=pid, removed=sim.history.pop(pid, None) is not None)
        return web.Response(status=200)

    @routes.get("/object_info")
    async def object_info(request):
        return web.json_response(sim.classes())

    @routes.get("/object_info/{node_class}")
    async def object_info_one(request):
        name, specs = request.match_info["node_class"], sim.classes()
        return web.json_response({name: specs[name]} if name in specs else {})

    @routes.get("/view")
    async def view(request):
        q = request.rel_url.query
        status = 404
        resp = None
        if "filename" in q:
            name, kind = sim.annotated(q["filename"], None)
            if not name or name[0] == "/" or ".." in name:
                status = 400
            else:
                kind = kind or q.get("type", "output")
                base = sim.dirs.get(kind)
                if base is None:
                    status = 400
                else:
                    if "subfolder" in q:
                        full = os.path.join(base, q["subfolder"])
                        if os.path.commonpath((os.path.abspath(full), base)) != base:
                            status, base = 403, None
                        else:
                            base = full
                    if base is not None:
                        name = os.path.basename(name)
                        path = os.path.join(base, name)
                        if os.path.isfile(path):
                            ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
                            if ctype in ("text/html", "text/html-sandboxed",
                                         "application/xhtml+xml", "text/javascript", "text/css"):
                                ctype = "application/octet-stream"
                            status = 200
                            resp = web.FileResponse(path, headers={
                                "Content-Disposition": 'filename="%s"' % name,
                                "Content-Type": ctype})
        sim.event("view", filename=q.get("filename"), subfolder=q.get("subfolder"),
                  type=q.get("type"), status=status)
        return resp if resp is not None else web.Response(status=status)

    @routes.post("/upload/image")
    async def upload_image(request):
        post = await request.post()
        image = post.get("image")
        kind = post.get("type") or "input"
        if kind not in sim.dirs:
            kind = "input"
        base = sim.dirs[kind]
        if not isinstance(image, web.FileField) or not image.filename:
            return web.Response(status=400)
        filename = image.filename
        subfolder = post.get("subfolder", "")
        folder = os.path.join(base, os.path.normpath(subfolder))
        path = os.path.abspath(os.path.join(folder, filename))
        if os.path.commonpath((base, path)) != base:
            return web.Response(status=400)
        os.makedirs(folder, exist_ok=True)
        data = image.file.read()
        stem, ext = os.path.splitext(filename)
        duplicate = False
        if post.get("overwrite") not in ("true", "1"):
            i = 1
            while os.path.exists(path):
                with open(path, "rb") as fh:
                    if hashlib.sha256(fh.read()).digest() == hashlib.sha256(data).digest():
                        duplicate = True
                        break
                filename = "%s (%d)%s" % (stem, i, ext)
                path = os.path.join(folder, filename)
                i += 1
        if not duplicate:
            with open(path, "wb") as fh:
                fh.write(data)
        sim.event("upload", name=filename, subfolder=subfolder, type=kind, size=len(data),
                  requested_name=image.filename, duplicate=duplicate)
        return web.json_response({"name": filename, "subfolder": subfolder, "type": kind})

    @routes.get("/sim/faults")
    async def get_faults(request):
        return web.json_response(sim.faults)

    @routes.post("/sim/faults")
    async def post_faults(request):
        data = await read_json(request)
        if not isinstance(data, dict):
            return web.json_response({"error": "expected a JSON object"}, status=400)
        new = dict(sim.faults)
        for k, v in data.items():
            if k not in FAULT_TYPES:
                return web.json_response({"error": "unknown fault: %s" % k}, status=400)
            try:
                new[k] = coerce_fault(k, v)
            except (TypeError, ValueError) as ex:
                return web.json_response({"error": "%s: %s" % (k, ex)}, status=400)
        sim.faults = new
        return web.json_response(sim.faults)

    @routes.get("/sim/log")
    async def get_log(request):
        kind = request.rel_url.query.get("kind")
        return web.json_response([e for e in sim.log if kind is None or e["kind"] == kind])

    @routes.post("/sim/reset")
    async def reset(request):
        sim.epoch += 1
        sim.queue, sim.cache, sim.log = [], {}, []
        sim.history.clear()
        sim.faults = dict(sim.start_faults)
        if sim.running:
            sim.interrupt = True
        await sim.queue_updated()
        return web.json_response({"ok": True})

    app = web.Application(middlewares=[origin_only], client_max_size=100 * 1024 * 1024)
    app.add_routes(routes)
    api = web.RouteTableDef()
    for r in routes:
        api.route(r.method, "/api" + r.path)(r.handler)
    app.add_routes(api)

    async def close_sockets(app):
        for ws in list(sim.sockets.values()):
            await ws.close()
    app.on_shutdown.append(close_sockets)
    return app


def coerce_fault(name, value):
    kind = FAULT_TYPES[name]
    if value is None:
        if name in ("fail_node", "reject"):
            return None
        return copy.deepcopy(DEFAULT_FAULTS[name])
    if kind is bool:
        if isinstance(value, str):
            return value.lower() in ("1", "true", "yes", "on")
        return bool(value)
    if kind is list:
        if isinstance(value, str):
            return [v for v in value.split(",") if v]
        if not isinstance(value, list):
            raise TypeError("expected a list")
        return [str(v) for v in value]
    if kind is str:
        return str(value) if value != "" else None
    return kind(value)

# ---------------------------------------------------------------------- main


async def serve(args, faults):
    workdir = args.dir or tempfile.mkdtemp(prefix="comfyui-sim-")
    sim = Sim(workdir, faults)
    app = make_app(sim)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port, shutdown_timeout=1.0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    sim.worker = asyncio.ensure_future(sim.worker_loop())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("comfyui-sim listening on http://%s:%d" % (args.host, port), flush=True)
    await stop.wait()
    sim.worker.cancel()
    await runner.cleanup()
    if not args.dir:
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Fake ComfyUI %s server" % VERSION)
    ap.add_argument("--port", type=int, default=8188, help="0 picks a free port")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--dir", help="working dir (input/ output/ temp/); default: a temp dir")
    for name, default in DEFAULT_FAULTS.items():
        flag = "--" + name.replace("_", "-")
        if FAULT_TYPES[name] is bool:
            ap.add_argument(flag, action="store_true", default=None)
        else:
            ap.add_argument(flag, default=None, help="default: %s" % (
                ",".join(default) if isinstance(default, list) else default))
    args = ap.parse_args(argv)
    faults = copy.deepcopy(DEFAULT_FAULTS)
    for name in DEFAULT_FAULTS:
        value = getattr(args, name)
        if value is not None:
            faults[name] = coerce_fault(name, value)
    try:
        asyncio.run(serve(args, faults))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
