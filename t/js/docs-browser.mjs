// The API docs page (Swagger UI, flowscale_docs) in headless Chromium
// (Debian's /usr/bin/chromium) driven by playwright-core (issue 8).
//
//   node t/js/docs-browser.mjs BASE_URL API_KEY ARTEFACT_DIR
//                                     (NODE_PATH=build/npm/node_modules)
//
// BASE_URL serves /docs/ (Swagger UI on the server's /openapi.json) and the
// deployment /v1/txt2img.  It checks that the operations render, that
// "Authorize" with API_KEY and "Try it out" of POST /v1/txt2img return 202,
// and that the key survives a reload (persistAuthorization).  Prints TAP;
// the screenshot goes to ARTEFACT_DIR/docs.png.

import { createRequire } from "node:module";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const require = createRequire(path.join(process.env.NODE_PATH || ".", "x"));
const { chromium } = require("playwright-core");

const [base, key, art] = process.argv.slice(2);
let n = 0, failed = 0;

function ok(cond, name, extra) {
    n++;
    if (!cond) failed++;
    console.log(`${cond ? "ok" : "not ok"} ${n} - ${name}`);
    if (!cond && extra !== undefined) {
        console.log("# " + String(extra).slice(0, 800).replace(/\n/g, "\n# "));
    }
}

fs.mkdirSync(art, { recursive: true });

const profile = fs.mkdtempSync(path.join(os.tmpdir(), "flowscale-chromium-"));
const browser = await chromium.launchPersistentContext(profile, {
    executablePath: "/usr/bin/chromium",
    headless: true,
    viewport: { width: 1280, height: 900 },
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking",
           "--disable-component-update", "--disable-sync"],
});

const page = await browser.newPage();
const errors = [];
const outside = [];
page.on("pageerror", e => errors.push(e.message));
page.on("request", r => {
    // no CDN: everything comes from this nginx
    if (!r.url().startsWith(base) && !/^(data|blob):/.test(r.url())) {
        outside.push(r.url());
    }
});

try {
    await page.goto(`${base}/docs/`, { waitUntil: "load" });
    await page.waitForSelector(".opblock", { timeout: 20000 });

    const ops = await page.$$eval(".opblock", els => els.map(e =>
        (e.querySelector(".opblock-summary-method")?.textContent ?? "") + " "
        + (e.querySelector(".opblock-summary-path")?.textContent ?? "")
            .replace(/\u200b/g, "")));
    console.log("# operations: " + ops.join(", "));
    ok(ops.includes("POST /v1/txt2img"), "POST /v1/txt2img is rendered",
       ops.join("\n"));
    ok(ops.includes("GET /v1/txt2img/runs/{id}/events")
       && ops.includes("DELETE /v1/txt2img/runs/{id}")
       && ops.includes("GET /v1/invert/runs"),
       "the run routes of every deployment are rendered", ops.join("\n"));
    ok(outside.length === 0, "every file comes from nginx (no CDN)",
       outside.join("\n"));

    // Authorize: the key as a bearer token
    await page.click(".auth-wrapper .authorize");
    const modal = page.locator(".modal-ux");
    await modal.waitFor();
    await modal.locator("input").first().fill(key);
    await modal.locator("button.authorize").first().click();
    await modal.locator("button.btn-done").first().click();
    await modal.waitFor({ state: "detached" });

    // Try it out: POST /v1/txt2img with the example built from the workflow
    const op = page.locator(".opblock-post").filter({
        has: page.locator(".opblock-summary-path", { hasText: /^\/v1\/txt2img$/ })
    }).first();
    await op.locator(".opblock-summary").first().click();
    await op.locator(".try-out__btn").click();
    const body = await op.locator("textarea.body-param__text").inputValue();
    ok(/"prompt"/.test(body), "the example body holds the workflow's values",
       body);
    await op.locator("button.execute").click();
    const status = op.locator(
        ".live-responses-table tr.response .response-col_status").first();
    await status.waitFor({ timeout: 20000 });
    const code = (await status.textContent()).trim();
    const reply = await op.locator(
        ".live-responses-table tr.response .response-col_description "
        + ".microlight").first().textContent().catch(() => "");
    ok(code === "202", "Try it out: POST /v1/txt2img with the key is 202",
       `${code}\n${reply}`);
    ok(/"status": "(queued|running)"/.test(reply), "the reply is the run",
       reply);

    // the answer on screen, and the whole page beside it
    await op.locator(".live-responses-table").first().scrollIntoViewIfNeeded();
    await page.screenshot({ path: path.join(art, "docs.png") });
    await page.screenshot({ path: path.join(art, "docs-full.png"),
                            fullPage: true });

    // persistAuthorization: the key is still there after a reload
    await page.reload({ waitUntil: "load" });
    await page.waitForSelector(".opblock");
    const kept = await page.evaluate(() => localStorage.getItem("authorized"));
    ok(kept && kept.includes("bearerAuth"), "the key survives a reload",
       kept);

    ok(errors.length === 0, "no script errors", errors.join("\n"));
} catch (e) {
    ok(false, "the docs page works", e.stack || e.message);
    await page.screenshot({ path: path.join(art, "docs-failed.png"),
                            fullPage: true }).catch(() => {});
} finally {
    await browser.close();
    fs.rmSync(profile, { recursive: true, force: true });
}

console.log(`1..${n}`);
process.exit(failed ? 1 : 0);
