// The app page in headless Chromium (Debian's /usr/bin/chromium) driven by
// playwright-core (issue 9).
//
//   node t/js/app-browser.mjs BASE_URL ARTEFACT_DIR
//                                     (NODE_PATH=build/npm/node_modules)
//
// BASE_URL serves /v1/txt2img and /v1/invert with `flowscale_app public`.
// Prints TAP; screenshots go to ARTEFACT_DIR (desktop and phone).

import { createRequire } from "node:module";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const require = createRequire(path.join(process.env.NODE_PATH || ".", "x"));
const { chromium } = require("playwright-core");

const [base, art] = process.argv.slice(2);
let n = 0, failed = 0;

function ok(cond, name, extra) {
    n++;
    if (!cond) failed++;
    console.log(`${cond ? "ok" : "not ok"} ${n} - ${name}`);
    if (!cond && extra !== undefined) {
        console.log("# " + String(extra).slice(0, 600).replace(/\n/g, "\n# "));
    }
}

const png = Buffer.from(
    "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGP8z8DAwMDAxMDAwMDAAAANHQEDasKb6QAAAABJRU5ErkJggg==",
    "base64");

const profile = fs.mkdtempSync(path.join(os.tmpdir(), "flowscale-chromium-"));
// a fresh --user-data-dir: playwright passes it for a persistent context
const browser = await chromium.launchPersistentContext(profile, {
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking",
           "--disable-component-update", "--disable-sync"],
});

async function scenario(name, viewport, fn) {
    const page = await browser.newPage();
    await page.setViewportSize(viewport);
    const errors = [];
    page.on("pageerror", e => errors.push(e.message));
    page.on("requestfailed", r => {
        // the page itself ends an event stream once the run ended
        if (/^blob:/.test(r.url())
            || (/\/events$/.test(r.url())
                && /ABORTED/.test(r.failure()?.errorText ?? ""))) return;
        errors.push(`request failed: ${r.url()} ${r.failure()?.errorText}`);
    });
    try {
        await fn(page);
        ok(errors.length === 0, `${name}: no script errors`, errors.join("\n"));
    } catch (e) {
        ok(false, `${name}: threw`, e.stack || e.message);
        await page.screenshot({ path: path.join(art, `${name}-failure.png`),
                                fullPage: true }).catch(() => {});
    }
    await page.close();
}

// txt2img: fill the inputs, press Run, see progress and the image
await scenario("txt2img-desktop", { width: 1280, height: 900 }, async page => {
    await page.goto(`${base}/v1/txt2img/app/`);
    await page.waitForSelector("body[data-ready]");
    ok(await page.textContent("h1") === "txt2img", "the page has its title");
    ok(await page.locator("textarea#in-prompt").count() === 1,
       "a text area for the prompt");
    ok(await page.locator('.field[data-input="steps"] input[type=range]').count() === 1,
       "a slider for a ranged number");
    ok(await page.locator("select#in-sampler option").count() >= 2,
       "an option list");

    // a bad value: the error is shown next to its input
    await page.fill("#in-prompt", "a cat on a phone");
    await page.fill("#in-steps", "99");
    await page.click("#run");
    await page.waitForSelector('.field[data-input="steps"].invalid .error:not([hidden])');
    ok(/50/.test(await page.textContent('.field[data-input="steps"] .error')),
       "a 422 shows in plain words next to the input");

    await page.fill("#in-steps", "25");
    await page.click("#run");
    await page.waitForSelector("#progress:not([hidden])", { timeout: 10000 });
    ok(true, "a progress bar while it runs");
    await page.waitForFunction(() => /step \d+ of \d+|queue/.test(
        document.querySelector("#status").textContent), null,
        { timeout: 10000 });
    ok(true, "the status tells the step or the queue position");
    await page.screenshot({ path: path.join(art, "app-running.png") });
    await page.waitForSelector('.output[data-output="result"] img',
                               { timeout: 30000 });
    const w = await page.$eval('.output[data-output="result"] img',
                               i => i.naturalWidth);
    ok(w > 0, "the output image shows");
    ok(await page.locator(".output a.download").count() >= 1,
       "with a download link");
    await page.screenshot({ path: path.join(art, "app-desktop.png"),
                            fullPage: true });
});

// invert: upload an image (preview), run, see the result; at phone size
await scenario("invert-phone", { width: 390, height: 844 }, async page => {
    await page.goto(`${base}/v1/invert/app/`);
    await page.waitForSelector("body[data-ready]");
    await page.setInputFiles("#in-image", { name: "cat.png",
                                             mimeType: "image/png",
                                             buffer: png });
    await page.waitForSelector('.field[data-input="image"] img.preview:not([hidden])');
    ok(true, "an uploaded image shows a preview");
    const wide = await page.evaluate(() =>
        document.documentElement.scrollWidth <= window.innerWidth + 1);
    ok(wide, "nothing overflows a phone-sized screen");
    await page.click("#run");
    await page.waitForSelector('.output[data-output="inverted"] img',
                               { timeout: 30000 });
    ok(true, "the uploaded image runs and the result shows");
    await page.screenshot({ path: path.join(art, "app-phone.png"),
                            fullPage: true });
});

await browser.close();
fs.rmSync(profile, { recursive: true, force: true });

console.log(`1..${n}`);
process.exit(failed ? 1 : 0);
