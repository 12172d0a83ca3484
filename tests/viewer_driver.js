// Drives the 一张蓝图 viewer in Debian's Chromium with playwright-core (no browser download) and reports what
// a person would see, as JSON on stdout. It knows no expected answers: tests/test_viewer.py compares the report
// with the registry, the demo truth and Lantu's own endpoints. Usage: node viewer_driver.js PLAN.json
// PLAN: {url, out_dir, chromium, point: [lon, lat], layer_zh, town_query, site_file, project_name, rule_set,
//        screenshots_dir (optional: docs screenshots), bench (optional: only time the first full render)}
"use strict";
const fs = require("fs");
const path = require("path");
const { chromium } = require("playwright-core");

const plan = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const report = { external: [], console_errors: [], steps: {} };
const LOOPBACK = new Set(["127.0.0.1", "localhost", "[::1]"]);

function isExternal(url) {
  if (/^(data|blob|about|chrome|devtools):/.test(url)) return false;
  try { return !LOOPBACK.has(new URL(url).hostname); } catch (e) { return true; }
}

async function newPage(browser, viewport, label) {
  const context = await browser.newContext({ viewport, acceptDownloads: true, locale: "zh-CN" });
  // Every request is seen here; one that would leave 127.0.0.1 is recorded and refused.
  await context.route("**/*", (route) => {
    const url = route.request().url();
    if (isExternal(url)) { report.external.push(url); return route.abort(); }
    return route.continue();
  });
  context.on("request", (req) => { if (isExternal(req.url())) report.external.push(req.url()); });
  const page = await context.newPage();
  page.on("console", (m) => { if (m.type() === "error") report.console_errors.push(`${label}: ${m.text()}`); });
  page.on("pageerror", (e) => report.console_errors.push(`${label}: ${e.message}`));
  page.on("websocket", (ws) => { if (isExternal(ws.url())) report.external.push(ws.url()); });
  return { context, page };
}

async function settle(page, timeout = 60000) {
  await page.waitForFunction(() => document.body.dataset.ready === "1", null, { timeout });
  await page.waitForFunction(() => {
    const m = window.lantuViewer.map;
    return m.loaded() && m.areTilesLoaded() && !m.isMoving();
  }, null, { timeout, polling: 100 });
  await page.waitForTimeout(250);  // one more frame after the last tile
  await page.waitForFunction(() => window.lantuViewer.map.areTilesLoaded(), null, { timeout });
}

async function pixelAt(page, lonlat, file) {
  const xy = await page.evaluate((p) => {
    const m = window.lantuViewer.map, pt = m.project(p), r = m.getContainer().getBoundingClientRect();
    return [Math.round(r.left + pt.x), Math.round(r.top + pt.y)];
  }, lonlat);
  await page.screenshot({ path: file, clip: { x: xy[0] - 1, y: xy[1] - 1, width: 3, height: 3 } });
  return xy;
}

async function glyphRenders(page, ch) {
  // Draw the character and a private-use code point (no font has it: the fallback box) in the page's font;
  // a font that lacks `ch` draws the same box for both.
  return page.evaluate((c) => {
    const font = "32px " + getComputedStyle(document.body).fontFamily;
    function bitmap(text) {
      const cv = document.createElement("canvas"); cv.width = cv.height = 48;
      const g = cv.getContext("2d"); g.font = font; g.fillStyle = "#000"; g.fillText(text, 4, 38);
      return Array.from(g.getImageData(0, 0, 48, 48).data).join(",");
    }
    const ink = bitmap(c), box = bitmap("\uE000");
    return { differs_from_missing_glyph: ink !== box, has_ink: /[1-9]/.test(ink), font };
  }, ch);
}

async function run() {
  const args = ["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
                "--disable-background-networking", "--disable-component-update", "--no-pings", "--disable-sync",
                "--disable-domain-reliability", "--metrics-recording-only"];
  const browser = await chromium.launch({ executablePath: plan.chromium || "/usr/bin/chromium", args });
  try {
    if (plan.bench) return await bench(browser);
    await desktop(browser);
  } finally {
    await browser.close();
  }
}

async function bench(browser) {
  // A fresh context (empty browser cache) per run: the start view and layers are in the URL.
  const b = plan.bench;
  const { page, context } = await newPage(browser, b.viewport || { width: 1366, height: 768 }, "bench");
  await page.goto(`${plan.url}/viewer?layers=${b.layers.join(",")}#${b.zoom}/${b.center[1]}/${b.center[0]}`);
  await page.waitForFunction(() => document.body.dataset.rendered === "1", null, { timeout: 600000, polling: 50 });
  report.steps.bench = await page.evaluate(() => {
    const tiles = performance.getEntriesByType("resource").filter((r) => /\/tiles\/|\/wmts\//.test(r.name));
    const m = window.lantuViewer.map;
    return { first_full_render_ms: window.lantuViewer.state.firstFullRender, tiles: tiles.length,
             tile_bytes: tiles.reduce((a, r) => a + (r.transferSize || r.encodedBodySize || 0), 0),
             slowest_tile_ms: Math.max(0, ...tiles.map((r) => r.duration)), zoom: m.getZoom(),
             last_tile_end_ms: Math.max(0, ...tiles.map((r) => r.responseEnd)),
             tiles_loaded: m.areTilesLoaded() };
  });
  await context.close();
}

const T0 = Date.now();
function mark(name) { report.timings = report.timings || {}; report.timings[name] = Date.now() - T0; }

async function desktop(browser) {
  const { page } = await newPage(browser, { width: 1366, height: 768 }, "1366x768");
  const steps = report.steps;
  const headersSeen = [];
  page.on("request", (req) => {
    const u = req.url();
    if (/\/(tiles|collections|processes|jobs|viewer\/config)/.test(u)) headersSeen.push([u, req.headers()["x-api-key"] || null]);
  });
  await page.goto(plan.url + "/viewer");
  await settle(page);
  const countyCentre = await page.evaluate(() => window.lantuViewer.map.getCenter().toArray());
  steps.load = { console_errors: report.console_errors.length, title: await page.title(),
                 glyph: await glyphRenders(page, "㮾"),
                 tree_layers: await page.$$eval("#tree .layer .name", (els) => els.map((e) => e.textContent)) };
  const shots = plan.screenshots_dir;

  mark("before 1."); report["errors_before_1"] = report.console_errors.length;
  // 1. 生态保护红线 on: the colour at the planted polygon's pixel
  // the base maps off through the tree (fewer WMTS renders at zoom 14; the colour test blends with what is under)
  for (const id of plan.basemaps_off || []) await page.locator(`#tree input[data-toggle="${id}"]`).uncheck();
  await page.evaluate((p) => window.lantuViewer.map.jumpTo({ center: p, zoom: 14 }), plan.point);
  await settle(page);
  const before = path.join(plan.out_dir, "pixel-before.png"), after = path.join(plan.out_dir, "pixel-after.png");
  steps.pixel = { xy: await pixelAt(page, plan.point, before) };
  const row = page.locator("#tree .layer", { has: page.locator(".name", { hasText: new RegExp("^" + plan.layer_zh + "$") }) });
  await row.locator("input[type=checkbox]").check();
  await settle(page);
  await pixelAt(page, plan.point, after);
  Object.assign(steps.pixel, { before, after, checked: await row.locator("input[type=checkbox]").isChecked() });

  mark("before 2."); report["errors_before_2"] = report.console_errors.length;
  // 2. identify: click the planted feature, read the popup
  await page.mouse.click(steps.pixel.xy[0], steps.pixel.xy[1]);
  await page.waitForSelector(".maplibregl-popup .popup td[data-field=BSM]", { timeout: 15000 });
  steps.identify = await page.$eval(".maplibregl-popup .popup", (el) => ({
    layer: el.dataset.layer, bsm: el.querySelector("td[data-field=BSM]").textContent, text: el.innerText }));
  await page.evaluate(() => document.querySelectorAll(".maplibregl-popup").forEach((p) => p.remove()));

  mark("before 3."); report["errors_before_3"] = report.console_errors.length;
  // 3. search a town by name
  await page.selectOption("#search-kind", "town");
  await page.fill("#search-text", plan.town_query);
  await page.click("#search button[type=submit]");
  await page.waitForFunction(() => document.getElementById("search").dataset.result, null, { timeout: 15000 });
  await settle(page);
  steps.search = await page.evaluate(() => {
    const m = window.lantuViewer.map, b = m.getBounds();
    return { result: document.getElementById("search").dataset.result, zoom: m.getZoom(),
             bounds: [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()], center: m.getCenter().toArray() };
  });
  // 3b. search a BSM in the layers that are on (the red line is on)
  await page.selectOption("#search-kind", "bsm");
  await page.fill("#search-text", plan.bsm_query);
  await page.click("#search button[type=submit]");
  await page.waitForSelector(".maplibregl-popup .popup td[data-field=BSM]", { timeout: 15000 });
  steps.search_bsm = await page.$eval(".maplibregl-popup .popup", (el) => ({
    layer: el.dataset.layer, bsm: el.querySelector("td[data-field=BSM]").textContent }));
  await page.evaluate(() => document.querySelectorAll(".maplibregl-popup").forEach((p) => p.remove()));
  await page.selectOption("#search-kind", "town");
  await page.fill("#search-text", plan.town_query);
  if (shots) {
    await page.evaluate(() => ["planned_land_use", "eco_red_line", "basic_farmland", "urban_dev_boundary"].forEach((id) => window.lantuViewer.setVisible(id, true)));
    await page.evaluate((c) => window.lantuViewer.map.jumpTo({ center: c, zoom: 10.4 }), countyCentre);
    await settle(page);
    await page.screenshot({ path: path.join(shots, "viewer-overview.png") });
  }

  mark("before 4."); report["errors_before_4"] = report.console_errors.length;
  // 4. project check: upload the site, run control-line-check asynchronously, read the verdict
  await page.click("#tabs button[data-tab=check]");
  await page.fill("#project-name", plan.project_name);
  // drawing a site: three clicks on the map, then 完成绘制
  await page.click("#draw-start");
  const mapBox = await page.locator("#map").boundingBox();
  for (const [dx, dy] of [[0.4, 0.4], [0.6, 0.4], [0.5, 0.6]]) await page.mouse.click(mapBox.x + mapBox.width * dx, mapBox.y + mapBox.height * dy);
  await page.click("#draw-finish");
  steps.draw = await page.evaluate(() => ({ status: document.getElementById("site-status").textContent,
    enabled: !document.getElementById("check-run").disabled, site: window.lantuViewer.state.site }));
  await page.setInputFiles("#site-file", plan.site_file);
  await page.waitForFunction(() => !document.getElementById("check-run").disabled, null, { timeout: 10000 });
  const progress = [];
  await page.click("#check-run");
  const t0 = Date.now();
  while (Date.now() - t0 < 60000) {
    const st = await page.evaluate(() => {
      const p = document.querySelector("#check-progress");
      return { shown: !p.hidden, value: p.querySelector("progress").value, status: p.querySelector(".msg").dataset.status || "",
               text: p.querySelector(".msg").textContent, verdict: !!document.getElementById("verdict") };
    });
    progress.push(st);
    if (st.verdict) break;
    await page.waitForTimeout(100);
  }
  await page.waitForFunction(() => window.lantuViewer.state.hitFeatures, null, { timeout: 15000 }).catch(() => {});
  await settle(page);
  steps.check = await page.evaluate(() => ({
    verdict: document.getElementById("verdict") && document.getElementById("verdict").textContent,
    hits: Array.from(document.querySelectorAll("#check-result .hit")).map((h) => [h.dataset.layer, h.dataset.bsm]),
    hit_features_drawn: (window.lantuViewer.state.hitFeatures || []).length
  }));
  steps.check.progress = progress;
  if (shots) await page.screenshot({ path: path.join(shots, "viewer-check.png") });
  const [pdf] = await Promise.all([page.waitForEvent("download", { timeout: 30000 }), page.click("#report-pdf")]);
  steps.check.pdf = path.join(plan.out_dir, "report.pdf");
  await pdf.saveAs(steps.check.pdf);
  steps.check.pdf_name = pdf.suggestedFilename();

  mark("before 5."); report["errors_before_5"] = report.console_errors.length;
  // 4b. the same site as a zipped Shapefile (sent as base64 with its media type)
  if (plan.site_zip) {
    await page.setInputFiles("#site-file", plan.site_zip);
    await page.waitForFunction(() => /\.zip/.test(document.getElementById("site-status").textContent), null, { timeout: 10000 });
    await page.click("#check-run");
    await page.waitForSelector("#verdict", { timeout: 60000 });
    steps.check_zip = await page.evaluate(() => ({
      verdict: document.getElementById("verdict").textContent,
      hits: Array.from(document.querySelectorAll("#check-result .hit")).map((h) => [h.dataset.layer, h.dataset.bsm]) }));
  }

  // 5. 差异图斑: conflict-check with a rule set, the summary by class, the CSV export
  if (shots) await page.evaluate(() => ["planned_land_use", "eco_red_line", "basic_farmland", "urban_dev_boundary"].forEach((id) => window.lantuViewer.setVisible(id, false)));
  await page.click("#tabs button[data-tab=conflict]");
  await page.selectOption("#rule-set", plan.rule_set);
  await page.click("#conflict-run");
  await page.waitForSelector("#conflict-classes", { timeout: 60000 });
  await settle(page);
  steps.conflict = await page.evaluate(() => ({
    classes: Array.from(document.querySelectorAll("#conflict-classes tr[data-class]")).map((r) => [r.dataset.class, +r.querySelector(".count").textContent]),
    patches_drawn: window.lantuViewer.state.lastConflict.patches.features.length,
    colours: Object.fromEntries(window.lantuViewer.state.lastConflict.patches.features.map((f) => [f.properties["class"], f.properties.colour]))
  }));
  if (shots) await page.screenshot({ path: path.join(shots, "viewer-conflict.png") });
  const [csv] = await Promise.all([page.waitForEvent("download", { timeout: 15000 }), page.click("#conflict-csv")]);
  steps.conflict.csv = path.join(plan.out_dir, "conflict.csv");
  await csv.saveAs(steps.conflict.csv);

  mark("before 6."); report["errors_before_6"] = report.console_errors.length;
  // 6. English switch
  await page.click("#lang");
  steps.english = { tab: await page.textContent("#tabs button[data-tab=layers]"),
                    tree_layers: await page.$$eval("#tree .layer .name", (els) => els.map((e) => e.textContent)) };
  await page.click("#lang");

  mark("before 7."); report["errors_before_7"] = report.console_errors.length;
  // 6b. the same page at 390×844
  await page.setViewportSize({ width: 390, height: 844 });
  await settle(page);
  report.steps.phone = await page.evaluate(() => {
    const box = (id) => { const r = document.getElementById(id).getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; };
    return { scroll_width: document.documentElement.scrollWidth, inner_width: innerWidth,
             map: box("map"), side: box("side"), search: box("search-text"), tabs: box("tabs"),
             canvas: window.lantuViewer.map.getCanvas().getBoundingClientRect().height };
  });
  await page.setViewportSize({ width: 1366, height: 768 });

  // 7. identity box: a key is sent with every request to Lantu; the page shows what that caller may see, and
  // what the server says about a key it refuses
  await page.click("#identity-toggle");
  steps.identity = {};
  for (const [name, key] of [["good", plan.good_key], ["bad", plan.api_key]]) {
    if (!key) continue;
    await page.fill("#identity-key", key);
    headersSeen.length = 0;
    await Promise.all([page.waitForEvent("load"), page.click("#identity button[type=submit]")]);
    await page.waitForFunction(() => document.body.dataset.identity, null, { timeout: 15000 });
    if (name === "good") await settle(page);
    steps.identity[name] = { status: await page.textContent("#identity-status"), outcome: await page.evaluate(() => document.body.dataset.identity),
                             requests: headersSeen.slice(),
                             tree_layers: await page.$$eval("#tree .layer .name", (els) => els.map((e) => e.textContent)) };
    if (name === "good") await page.click("#identity-toggle");
  }
  await page.evaluate(() => sessionStorage.removeItem("lantu.key"));
}

run().then(() => { process.stdout.write(JSON.stringify(report)); }, (err) => {
  report.error = String(err && err.stack || err);
  process.stdout.write(JSON.stringify(report));
  process.exitCode = 1;
});
