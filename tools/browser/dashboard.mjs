// Drives the runtime's dashboard (/ui) in headless Chromium (Debian's
// chromium, through playwright-core) for spec/dashboard_spec.lua.
//
//   node tools/browser/dashboard.mjs '<config JSON>'
//
// config: { ui_url, org_token, admin_token, fail: { integration, fault_url, fault },
//           expect_status: { id: status }, xss: integration id, screenshot, chromium }
// Steps: opens /ui, enters the organization token, reads the table; arms the
// simulator fault (POST fault_url with `fault`) and waits, without reloading,
// until the failing integration's status reads "unhealthy"; then enters the
// admin token, waits until every status in expect_status shows and until the
// `xss` integration's recent errors show the markup its connector raised (as
// text, running nothing), and saves a screenshot. Prints one JSON document with what it saw:
// { headers, org_rows, before, after, reloaded, admin_rows, console_errors,
//   html_in_rows, token_in_url, storage_token, xss_text, xss_ran,
//   html_in_rows_admin }.
import { chromium } from "playwright-core";

const config = JSON.parse(process.argv[2] ?? "{}");
const WAIT_MS = 90000;

function rowsOf(page) {
  return page.$$eval("#rows tr", (trs) =>
    trs.map((tr) => ({
      id: tr.dataset.integration,
      org: tr.children[1].textContent,
      provider: tr.children[2].textContent,
      status: tr.querySelector(".status").textContent,
      statusClass: tr.querySelector(".status").className,
    })),
  );
}

async function statusOf(page, id) {
  return page.$eval(`#rows tr[data-integration="${id}"] .status`, (e) => e.textContent).catch(
    () => null,
  );
}

async function waitFor(fn, what) {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const out = { console_errors: [] };
const browser = await chromium.launch({
  executablePath: config.chromium ?? "/usr/bin/chromium",
  args: ["--no-sandbox"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1500, height: 520 } });
  page.on("console", (m) => {
    if (m.type() === "error") out.console_errors.push(m.text());
  });
  page.on("pageerror", (e) => out.console_errors.push(String(e)));

  const resp = await page.goto(config.ui_url);
  out.headers = resp.headers();
  out.page_status = resp.status();

  // the organization's token: its integrations only
  await page.fill("#token", config.org_token);
  await page.click("#use-token");
  await waitFor(async () => (await rowsOf(page)).length > 0, "the organization's rows");
  const target = config.fail.integration;
  await waitFor(async () => (await statusOf(page, target)) === "healthy", `${target} healthy`);
  out.org_rows = await rowsOf(page);
  out.before = await statusOf(page, target);
  out.storage_token = await page.evaluate(() => sessionStorage.getItem("junction.token"));
  out.token_in_url = page.url().includes(config.org_token);

  // a marker that a reload would wipe
  await page.evaluate(() => {
    window.__junctionNoReload = true;
  });
  const armed = await fetch(config.fail.fault_url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(config.fail.fault),
  });
  if (!armed.ok) throw new Error(`arming the fault: ${armed.status}`);
  await waitFor(async () => (await statusOf(page, target)) === "unhealthy", `${target} unhealthy`);
  out.after = await statusOf(page, target);
  out.after_class = await page.$eval(
    `#rows tr[data-integration="${target}"] .status`,
    (e) => e.className,
  );
  out.reloaded = !(await page.evaluate(() => window.__junctionNoReload === true));
  out.updated = await page.textContent("#updated");
  out.html_in_rows = await page.$$eval("#rows script, #rows img, #rows iframe", (e) => e.length);
  out.recent_errors = await page.$eval(
    `#rows tr[data-integration="${target}"]`,
    (tr) => tr.children[10].textContent,
  );

  // the admin token: every integration, for the screenshot
  await page.fill("#token", config.admin_token);
  await page.click("#use-token");
  await waitFor(async () => {
    for (const [id, status] of Object.entries(config.expect_status ?? {})) {
      if ((await statusOf(page, id)) !== status) return false;
    }
    return true;
  }, "the expected statuses");
  out.admin_rows = await rowsOf(page);
  // an error text holding markup is shown as text and runs nothing
  if (config.xss) {
    out.xss_text = await waitFor(
      () =>
        page
          .$eval(`#rows tr[data-integration="${config.xss}"]`, (tr) => tr.children[10].textContent)
          .then((t) => (t.includes("<img") ? t : null))
          .catch(() => null),
      "the markup in the recent errors",
    );
    out.xss_ran = await page.evaluate(() => window.__junctionXss === 1);
    out.html_in_rows_admin = await page.$$eval("#rows script, #rows img, #rows h1", (e) => e.length);
  }
  if (config.screenshot) await page.screenshot({ path: config.screenshot, fullPage: true });
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
