/* FlowScale for nginx: the shareable app of a deployment (L/app/).
 * Builds its form from app.json, runs the workflow through the API's own
 * routes (L/app/runs when public, L with a key when "on"), follows the run
 * over Server-Sent Events and shows the outputs.  No dependencies. */
"use strict";

(function () {
  var cfg, key = null, busy = false;
  var $ = function (id) { return document.getElementById(id); };

  function el(tag, attrs, kids) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") e.textContent = attrs[k];
      else if (k in e && typeof attrs[k] !== "string") e[k] = attrs[k];
      else e.setAttribute(k, attrs[k]);
    });
    (kids || []).forEach(function (c) { if (c) e.appendChild(c); });
    return e;
  }

  function headers(extra) {
    var h = extra || {};
    if (key) h["X-API-Key"] = key;
    return h;
  }

  /* where runs are made and read: public apps have their own routes */
  function runsUrl(rest) {
    return cfg.mode === "public" ? "runs" + (rest || "")
                                 : cfg.api + "/runs" + (rest || "");
  }

  function fileUrl(url) {
    if (cfg.mode === "public" && url.indexOf(cfg.api + "/runs/") === 0) {
      return cfg.api + "/app/runs/" + url.slice((cfg.api + "/runs/").length);
    }
    return url;
  }

  function keyName() { return "flowscale-key:" + location.host + cfg.api; }

  function askKey(message) {
    return new Promise(function (resolve) {
      var d = $("key-dialog");
      $("key-error").hidden = !message;
      $("key-error").textContent = message || "";
      $("key-form").onsubmit = function () {
        key = $("key").value.trim();
        if (key) localStorage.setItem(keyName(), key);
        $("forget-key").hidden = false;
        resolve();
      };
      if (d.showModal) d.showModal(); else d.setAttribute("open", "");
    });
  }

  /* ---- the form ------------------------------------------------------- */

  function field(inp) {
    var id = "in-" + inp.name, ctl, wrap, value;
    value = inp["default"] !== undefined && inp["default"] !== null
            ? inp["default"] : inp.value;
    var isNum = inp.type === "integer" || inp.type === "number";
    var step = inp.type === "integer" ? "1" : "any";

    if (inp.options) {
      ctl = el("select", { id: id, name: inp.name });
      if (!inp.required || value === undefined) {
        ctl.appendChild(el("option", { value: "", text: "—" }));
      }
      inp.options.forEach(function (o) {
        var opt = el("option", { value: String(o), text: String(o) });
        if (value !== undefined && String(o) === String(value)) opt.selected = true;
        ctl.appendChild(opt);
      });
    } else if (isNum && inp.minimum !== undefined && inp.maximum !== undefined
               && !inp.random) {
      var range = el("input", { type: "range", min: String(inp.minimum),
                                max: String(inp.maximum), step: step,
                                "aria-label": inp.label + " slider" });
      ctl = el("input", { type: "number", id: id, name: inp.name, step: step,
                          min: String(inp.minimum), max: String(inp.maximum) });
      if (value !== undefined && value !== null) {
        range.value = String(value); ctl.value = String(value);
      }
      range.oninput = function () { ctl.value = range.value; };
      ctl.oninput = function () { range.value = ctl.value; };
      wrap = el("div", { "class": "range" }, [range, ctl]);
    } else if (isNum) {
      ctl = el("input", { type: "number", id: id, name: inp.name, step: step,
                          inputmode: inp.type === "integer" ? "numeric" : "decimal" });
      if (inp.minimum !== undefined) ctl.min = String(inp.minimum);
      if (inp.maximum !== undefined) ctl.max = String(inp.maximum);
      if (inp.random) ctl.placeholder = "random";
      else if (value !== undefined && value !== null) ctl.value = String(value);
    } else if (inp.type === "boolean") {
      ctl = el("input", { type: "checkbox", id: id, name: inp.name });
      ctl.checked = value === true;
      var f = el("div", { "class": "field", "data-input": inp.name }, [
        el("label", { "class": "check" }, [ctl, document.createTextNode(inp.label)])
      ]);
      if (inp.description) f.appendChild(el("p", { "class": "hint", text: inp.description }));
      f.appendChild(el("p", { "class": "error", hidden: true }));
      return f;
    } else if (["image", "video", "audio", "file"].indexOf(inp.type) >= 0) {
      ctl = el("input", { type: "file", id: id, name: inp.name });
      if (inp.type !== "file") ctl.accept = inp.type + "/*";
      var preview = el("img", { "class": "preview", alt: "", hidden: true });
      ctl.onchange = function () {
        var file = ctl.files && ctl.files[0];
        if (file && inp.type === "image") {
          preview.src = URL.createObjectURL(file);
          preview.alt = "Preview of " + file.name;
          preview.hidden = false;
        } else {
          preview.hidden = true;
        }
      };
      wrap = el("div", {}, [ctl, preview]);
    } else {
      ctl = el("textarea", { id: id, name: inp.name, rows: "3" });
      if (value !== undefined && value !== null) ctl.value = String(value);
    }

    var label = inp.label + (inp.required ? " *" : "");
    var kids = [el("label", { "for": id, text: label }), wrap || ctl];
    if (inp.description) kids.push(el("p", { "class": "hint", text: inp.description }));
    kids.push(el("p", { "class": "error", hidden: true }));
    return el("div", { "class": "field", "data-input": inp.name }, kids);
  }

  function clearErrors() {
    Array.prototype.forEach.call(document.querySelectorAll(".field"), function (f) {
      f.classList.remove("invalid");
      var e = f.querySelector(".error");
      e.hidden = true; e.textContent = "";
    });
    $("form-error").hidden = true;
  }

  function showError(input, message) {
    var f = input && document.querySelector('.field[data-input="' + input + '"]');
    if (!f) {
      $("form-error").hidden = false;
      $("form-error").textContent += ($("form-error").textContent ? " " : "") + message;
      return;
    }
    f.classList.add("invalid");
    var e = f.querySelector(".error");
    e.hidden = false;
    e.textContent = message;
  }

  function body() {
    var fd = new FormData();
    cfg.inputs.forEach(function (inp) {
      var c = $("in-" + inp.name);
      if (!c) return;
      if (c.type === "file") {
        if (c.files && c.files[0]) fd.append(inp.name, c.files[0], c.files[0].name);
      } else if (c.type === "checkbox") {
        fd.append(inp.name, c.checked ? "true" : "false");
      } else if (c.value !== "") {
        fd.append(inp.name, c.value);
      }
    });
    return fd;
  }

  /* ---- a run ---------------------------------------------------------- */

  function status(text) { $("status").textContent = text; }

  function progress(value, max) {
    var p = $("progress");
    p.hidden = false;
    if (max > 0) { p.max = max; p.value = value; }
    else { p.removeAttribute("value"); }
  }

  async function run(ev) {
    ev.preventDefault();
    if (busy) return;
    clearErrors();
    busy = true;
    $("run").disabled = true;
    $("outputs").textContent = "";
    status("Sending…");
    try {
      var res = await fetch(runsUrl(""), { method: "POST", body: body(),
                                           headers: headers() });
      if (res.status === 401 || res.status === 403) {
        localStorage.removeItem(keyName());
        key = null;
        await askKey("That key was refused. Give a key of this project.");
        return run(ev);
      }
      var doc = await res.json().catch(function () { return {}; });
      if (res.status === 422 && doc.errors) {
        doc.errors.forEach(function (e) { showError(e.input, e.message); });
        status("Some inputs need a change.");
        return;
      }
      if (!res.ok) {
        showError(null, doc.detail || doc.title || ("The server answered " + res.status + "."));
        status("");
        return;
      }
      await follow(doc);
    } catch (e) {
      showError(null, "The server cannot be reached: " + e.message);
      status("");
    } finally {
      busy = false;
      $("run").disabled = false;
    }
  }

  async function follow(r) {
    progress(0, 0);
    status(r.queue_position ? "Waiting in the queue: position " + r.queue_position
                            : "Starting…");
    var res = await fetch(runsUrl("/" + r.id + "/events"),
                          { headers: headers({ Accept: "text/event-stream" }) });
    var type = res.headers.get("Content-Type") || "";
    if (type.indexOf("text/event-stream") < 0) {
      return finish(await res.json());
    }
    var reader = res.body.getReader(), dec = new TextDecoder(), buf = "";
    for (;;) {
      var chunk = await reader.read();
      if (chunk.done) break;
      buf += dec.decode(chunk.value, { stream: true });
      var i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        var block = buf.slice(0, i); buf = buf.slice(i + 2);
        var name = "message", data = "";
        block.split("\n").forEach(function (line) {
          if (line.indexOf("event: ") === 0) name = line.slice(7);
          else if (line.indexOf("data: ") === 0) data += line.slice(6);
        });
        if (!data) continue;
        var d = JSON.parse(data);
        if (name === "queued") {
          status("Waiting in the queue: position " + d.position);
        } else if (name === "started") {
          status("Running…");
        } else if (name === "progress") {
          status("Running: step " + d.value + " of " + d.max);
          progress(d.value, d.max);
        } else if (["succeeded", "failed", "canceled"].indexOf(name) >= 0) {
          reader.cancel().catch(function () {});
          return finish(d);
        }
      }
    }
    /* the stream ended early: ask for the run itself */
    var again = await fetch(runsUrl("/" + r.id), { headers: headers() });
    return finish(await again.json());
  }

  async function finish(r) {
    $("progress").hidden = true;
    if (r.status !== "succeeded") {
      status("");
      var msg = r.status === "canceled" ? "The run was canceled."
              : "The run failed: " + ((r.error && (r.error.message || r.error.type))
                                      || "unknown error");
      showError(null, msg);
      return;
    }
    var secs = r.started_at && r.finished_at
      ? ((Date.parse(r.finished_at) - Date.parse(r.started_at)) / 1000).toFixed(1) + " s"
      : "";
    status("Done" + (secs ? " in " + secs : "") + ".");
    for (var k = 0; k < cfg.outputs.length; k++) {
      var out = cfg.outputs[k], items = (r.outputs || {})[out.name] || [];
      var box = el("div", { "class": "output", "data-output": out.name },
                   [el("h3", { text: out.label })]);
      $("outputs").appendChild(box);
      for (var j = 0; j < items.length; j++) await item(box, items[j]);
    }
  }

  async function item(box, it) {
    if (it.kind === "text") {
      box.appendChild(el("pre", { text: typeof it.text === "string"
                                          ? it.text : JSON.stringify(it.text) }));
      return;
    }
    var res = await fetch(fileUrl(it.url), { headers: headers() });
    var blob = await res.blob();
    var url = URL.createObjectURL(blob), ct = it.content_type || blob.type || "";
    var media;
    if (ct.indexOf("image/") === 0) media = el("img", { src: url, alt: it.filename });
    else if (ct.indexOf("video/") === 0) media = el("video", { src: url, controls: true });
    else if (ct.indexOf("audio/") === 0) media = el("audio", { src: url, controls: true });
    if (media) box.appendChild(media);
    box.appendChild(el("a", { "class": "download", href: url,
                              download: it.filename || "output",
                              text: "Download " + (it.filename || "file") }));
  }

  /* ---- start ---------------------------------------------------------- */

  async function start() {
    cfg = await (await fetch("app.json")).json();
    document.title = cfg.title + " · FlowScale";
    $("title").textContent = cfg.title;
    $("description").textContent = cfg.description;
    cfg.inputs.forEach(function (inp) { $("inputs").appendChild(field(inp)); });
    $("form").addEventListener("submit", run);
    if (cfg.mode === "on") {
      key = localStorage.getItem(keyName());
      $("forget-key").hidden = !key;
      $("forget-key").onclick = function (e) {
        e.preventDefault();
        localStorage.removeItem(keyName());
        key = null;
        askKey();
      };
      if (!key) await askKey();
    }
    document.body.setAttribute("data-ready", "1");
  }

  start().catch(function (e) {
    $("title").textContent = "This app cannot start";
    $("description").textContent = e.message;
  });
})();
