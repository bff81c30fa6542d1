// Opens /dashboard of a live cluster in headless Chromium, sends traffic to every node and
// waits until the page shows it. Run by tests/e2e/dashboard_browser_test.cc:
//
//   node dashboard.mjs <screenshot.png> <http://node1> <http://node2> ...
//
// The dashboard of the first node is opened. Prints one JSON line with what the page showed
// and exits 0, or prints the reason and exits 1. Chromium is Debian's (/usr/bin/chromium, or
// $CHROMIUM); playwright-core only drives it.
import { chromium } from "playwright-core";

const [screenshot, ...nodes] = process.argv.slice(2);
if (!screenshot || nodes.length === 0) {
  console.error("usage: node dashboard.mjs <screenshot.png> <node url>...");
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking"],
});
// Whatever happens, never leave a browser behind.
const watchdog = setTimeout(async () => {
  console.error("dashboard.mjs: gave up after 60 s");
  await browser.close();
  process.exit(1);
}, 60_000);

let trafficOn = true;
let sent = 0;
// Alternates a hit and a miss on every node, so each node's rate moves and the cluster's
// GET hit rate is about 50 %.
async function traffic() {
  for (const [i, base] of nodes.entries()) {
    const r = await fetch(`${base}/api/set`, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: `key=e2e-${i}&value=v${i}&expire=5`,
    });
    if (r.status !== 200) throw new Error(`set on ${base}: ${r.status} ${await r.text()}`);
  }
  while (trafficOn) {
    for (const [i, base] of nodes.entries()) {
      await (await fetch(`${base}/api/get?key=e2e-${i}`)).text();
      await (await fetch(`${base}/api/get?key=e2e-missing-${i}`)).text();
      sent += 2;
    }
    await new Promise(resolve => setTimeout(resolve, 5));
  }
}

const text = (page, selector) => page.locator(selector).first().textContent();

try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 760 } });
  const pageErrors = [];
  page.on("pageerror", e => pageErrors.push(String(e)));
  await page.goto(`${nodes[0]}/dashboard`);

  // Every member listed and up.
  await page.waitForFunction(n => {
    const status = [...document.querySelectorAll("#nodes td.status")];
    return status.length === n && status.every(td => td.textContent === "up");
  }, nodes.length, { timeout: 15_000 });
  // The first rates appear after two polls; with no traffic yet they are 0.
  await page.waitForFunction(() => document.getElementById("rps").textContent !== "-",
                             null, { timeout: 15_000 });
  const idleRps = parseFloat(await text(page, "#rps"));

  const load = traffic();
  // The numbers change: the cluster's rate and every node's rate go above zero, a hit rate
  // and latency percentiles appear.
  await page.waitForFunction(n => {
    const rows = [...document.querySelectorAll("#nodes tr")];
    return parseFloat(document.getElementById("rps").textContent) > 5 &&
        document.getElementById("hit").textContent.endsWith("%") &&
        rows.length === n && rows.every(tr => parseFloat(tr.querySelector("td.rps").textContent) > 0);
  }, nodes.length, { timeout: 20_000 });
  // Let one more refresh land under load for a representative screenshot.
  await page.waitForTimeout(1200);
  const shown = {
    idle_rps: idleRps,
    rps: parseFloat(await text(page, "#rps")),
    hit: await text(page, "#hit"),
    latency: await text(page, "#lat"),
    bytes: await text(page, "#bytes"),
    up: await text(page, "#up"),
    node_rps: await page.$$eval("#nodes tr", rows => rows.map(
        tr => [tr.dataset.node, parseFloat(tr.querySelector("td.rps").textContent)])),
    status: await text(page, "#status"),
  };
  await page.screenshot({ path: screenshot, fullPage: true });
  trafficOn = false;
  await load;
  shown.requests_sent = sent;
  shown.page_errors = pageErrors;
  console.log(JSON.stringify(shown));
  if (pageErrors.length > 0) throw new Error("script errors on the page: " + pageErrors.join("; "));
} catch (e) {
  console.error("dashboard.mjs: " + (e && e.stack ? e.stack : e));
  process.exitCode = 1;
} finally {
  trafficOn = false;
  clearTimeout(watchdog);
  await browser.close();
}
