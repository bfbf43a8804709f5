// The app's Gradio protocol with the real @gradio/client (issue 9).
//
//   node t/js/gradio.mjs BASE_URL      (NODE_PATH=build/npm/node_modules)
//
// BASE_URL serves /v1/txt2img (prompt required, steps 1..50, sampler
// options), /v1/invert (image required) and /v1/broken (its simulator
// fails a node), each with `flowscale_app public`.  Prints TAP; exits 1 on
// any failure.

import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(path.join(process.env.NODE_PATH || ".", "x"));
const { Client } = await import(require.resolve("@gradio/client"));

const base = process.argv[2];
let n = 0, failed = 0;

function ok(cond, name, extra) {
    n++;
    if (!cond) failed++;
    console.log(`${cond ? "ok" : "not ok"} ${n} - ${name}`);
    if (!cond && extra !== undefined) {
        console.log("# " + JSON.stringify(extra).slice(0, 600));
    }
}

async function attempt(name, fn) {
    try {
        await fn();
    } catch (e) {
        ok(false, `${name}: threw`, e && (e.message || e));
    }
}

// a small PNG (2x2 red), the kind of thing a caller uploads
const png = Buffer.from(
    "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGP8z8DAwMDAxMDAwMDAAAANHQEDasKb6QAAAABJRU5ErkJggg==",
    "base64");

const origin = new URL(base).origin;
let app;

await attempt("connect", async () => {
    app = await Client.connect(`${base}/v1/txt2img/app`);
    ok(app && app.config && app.config.protocol === "sse_v3",
       "Client.connect to L/app: sse_v3 config");
});

await attempt("view_api", async () => {
    const api = await app.view_api();
    const ep = api.named_endpoints["/predict"];
    ok(ep && ep.parameters.map(p => p.parameter_name).join(",")
             === "prompt,seed,steps,sampler",
       "view_api: /predict with the inputs in declaration order", ep);
    ok(ep && ep.returns.length === 1 && ep.returns[0].component === "Image",
       "view_api: one Image output", ep && ep.returns);
});

await attempt("predict keywords", async () => {
    const r = await app.predict("/predict", { prompt: "a cat", steps: 3 });
    const fd = r.data && r.data[0];
    ok(fd && typeof fd.url === "string" && fd.url.startsWith(origin + "/")
       && fd.url.includes("/v1/txt2img/app/gradio_api/file="),
       "predict with keywords: FileData with an absolute URL", r.data);
    const res = await fetch(fd.url);
    const body = Buffer.from(await res.arrayBuffer());
    ok(res.status === 200 && body.subarray(1, 4).toString() === "PNG",
       "the output file downloads as a PNG", res.status);
});

await attempt("predict positional", async () => {
    const r = await app.predict("/predict", ["a dog", 7, 2, "euler"]);
    ok(r.data && r.data[0] && r.data[0].meta
       && r.data[0].meta._type === "gradio.FileData",
       "predict positionally returns a FileData", r.data);
});

await attempt("status events", async () => {
    const seen = [];
    const live = await Client.connect(`${base}/v1/txt2img/app`,
                                      { events: ["data", "status"] });
    const job = live.submit("/predict", { prompt: "events", steps: 5 });
    for await (const m of job) {
        seen.push(m.type === "status"
                  ? `${m.stage}${m.progress_data ? "+progress" : ""}`
                  : m.type);
        if (m.type === "status" && m.stage === "complete") break;
    }
    ok(seen.includes("data") && seen.some(s => /^pending/.test(s)),
       "submit: status messages and the data arrive", seen);
    ok(seen.some(s => /progress/.test(s)),
       "submit: progress while it runs", seen);
});

await attempt("two concurrent", async () => {
    const [a, b] = await Promise.all([
        app.predict("/predict", { prompt: "one", steps: 4 }),
        app.predict("/predict", { prompt: "two", steps: 4 }),
    ]);
    ok(a.data[0] && b.data[0] && a.data[0].url !== b.data[0].url,
       "two concurrent predicts on one client both finish", [a.data, b.data]);
});

await attempt("validation", async () => {
    let err;
    try {
        await app.predict("/predict", { prompt: "x", steps: 500 });
    } catch (e) {
        err = e;
    }
    const text = JSON.stringify(err && (err.message ?? err));
    ok(err && /steps/.test(text), "a validation error names the input",
       err);
});

await attempt("upload", async () => {
    const inv = await Client.connect(`${base}/v1/invert/app`);
    const r = await inv.predict("/predict", { image: png });
    const fd = r.data && r.data[0];
    ok(fd && fd.url && fd.url.startsWith(origin),
       "an image input uploaded from a Buffer runs", r.data);
    const res = fd ? await fetch(fd.url, { method: "HEAD" }) : null;
    ok(res && res.status === 200, "HEAD on file= answers 200",
       res && res.status);
});

await attempt("failing run", async () => {
    const broken = await Client.connect(`${base}/v1/broken/app`);
    let err;
    try {
        await broken.predict("/predict", { prompt: "x" });
    } catch (e) {
        err = e;
    }
    ok(err && /fail/i.test(JSON.stringify(err.message ?? err)),
       "a failing run rejects with the error in plain words", err);
});

console.log(`1..${n}`);
process.exit(failed ? 1 : 0);
