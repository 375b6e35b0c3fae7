// Drives the Pod Manager in headless Chromium and prints, as one JSON
// object, what the user saw at each step; the Go test (cmd/nocrd's
// TestPodManager) checks it, and the cluster, afterwards.
//
//   node pod-manager.mjs http <base-url> <token> <template>
//     the page as nocrd serves it at <base-url>/ui
//   node pod-manager.mjs app <base-url> <token> <template> <page.html>
//     the page read as the ui://nogoo9/app resource (page.html), rendered
//     in a sandboxed frame of a host page whose bridge passes the frame's
//     tools/call requests to nocrd through the TypeScript MCP SDK
//
// Either way the page spawns one workspace from <template> and keeps it,
// and spawns and stops another, and shows the logs of alice-pre.
import { readFileSync } from "node:fs";
import { chromium } from "playwright-core";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [mode, base, token, template, pageFile] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
const report = { mode, steps: {} };
const consoleErrors = [];

try {
  const page = await browser.newPage();
  page.setDefaultTimeout(20000);
  page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
  page.on("pageerror", (e) => consoleErrors.push(String(e)));

  let ui; // the frame the Pod Manager runs in
  if (mode === "http") {
    await page.goto(base + "/ui");
    ui = page.mainFrame();
    // No token yet: the page must say that nocrd wants one.
    await ui.waitForFunction(() => document.getElementById("status").textContent.includes("401"));
    report.steps.noToken = await text(ui, "#status");
    await ui.fill("#token", "not-a-token");
    await ui.click("#token-use");
    await ui.waitForFunction(() => document.getElementById("claims").textContent.includes("not a JWT"));
    await ui.waitForFunction(() => document.getElementById("status").textContent.includes("401"));
    report.steps.badToken = { status: await text(ui, "#status"), claims: await text(ui, "#claims") };
    await ui.fill("#token", "Bearer " + token);
    await ui.click("#token-use");
  } else {
    const client = new Client({ name: "pod-manager-host", version: "1" });
    await client.connect(new StreamableHTTPClientTransport(new URL(base + "/mcp"), {
      requestInit: { headers: { Authorization: "Bearer " + token } },
    }));
    report.steps.bridged = [];
    await page.exposeFunction("hostCall", async (method, params) => {
      report.steps.bridged.push(method + (params && params.name ? " " + params.name : ""));
      if (method === "ui/initialize") {
        return { protocolVersion: params.protocolVersion, hostInfo: { name: "test-host", version: "1" }, hostCapabilities: {}, hostContext: {} };
      }
      if (method === "tools/call") return client.callTool(params);
      throw new Error("the test host does not answer " + method);
    });
    await page.setContent(`<!doctype html><body><iframe id="app" sandbox="allow-scripts" style="width:100%;height:90vh"></iframe>
<script>
const frame = document.getElementById("app");
window.addEventListener("message", async (e) => {
  const m = e.data;
  if (e.source !== frame.contentWindow || !m || m.jsonrpc !== "2.0") return;
  if (m.id === undefined) { window.notified = (window.notified || []).concat(m.method); return; }
  try {
    frame.contentWindow.postMessage({ jsonrpc: "2.0", id: m.id, result: await window.hostCall(m.method, m.params) }, "*");
  } catch (err) {
    frame.contentWindow.postMessage({ jsonrpc: "2.0", id: m.id, error: { code: -32603, message: String(err.message || err) } }, "*");
  }
});
</script></body>`);
    await page.$eval("#app", (f, html) => { f.srcdoc = html; }, readFileSync(pageFile, "utf8"));
    await page.waitForFunction(() => window.frames.length === 1);
    ui = page.frames().find((f) => f !== page.mainFrame());
    await ui.waitForSelector("#scope");
  }

  await ui.waitForFunction(() => document.getElementById("scope").textContent.includes("mode"));
  report.steps.signedIn = {
    scope: await text(ui, "#scope"),
    claims: await text(ui, "#claims"),
    tokenPanelHidden: await ui.$eval("#token-panel", (e) => e.hidden),
    status: await text(ui, "#status"),
  };
  await ui.waitForSelector(`#templates tr[data-name="${template}"]`);
  report.steps.listed = { workspaces: await ids(ui), templates: await ui.$$eval("#templates tbody tr", (rs) => rs.map((r) => r.dataset.name)) };

  // An ID the tool would refuse is refused on the page.
  await ui.fill("#spawn-id", "not valid!");
  await ui.click(`#templates tr[data-name="${template}"] button`);
  await ui.waitForFunction(() => document.getElementById("status").className === "error");
  report.steps.badID = await text(ui, "#status");

  // Spawn one to keep and one to stop.
  for (const id of [mode + "-keep", mode + "-stop"]) {
    await ui.fill("#spawn-id", id);
    await ui.click(`#templates tr[data-name="${template}"] button`);
    await ui.waitForSelector(`#workspaces tr[data-id="${id}"]`);
    report.steps["spawned " + id] = await text(ui, "#status");
  }
  // Spawning an existing ID again says so rather than failing.
  await ui.fill("#spawn-id", mode + "-keep");
  await ui.click(`#templates tr[data-name="${template}"] button`);
  await ui.waitForFunction((id) => document.getElementById("status").textContent.includes("already exists"), mode + "-keep");
  report.steps.again = await text(ui, "#status");

  if (mode === "http") {
    // A template that needs context: refused without it (nocrd names the
    // key), a malformed field refused on the page, spawned with it.
    const needs = `#templates tr[data-name="needs-repo"] button`;
    await ui.fill("#spawn-id", "http-ctx");
    await ui.click(needs);
    await ui.waitForFunction(() => document.getElementById("status").className === "error");
    report.steps.noContext = await text(ui, "#status");
    await ui.fill("#spawn-context", "oops");
    await ui.click(needs);
    await ui.waitForFunction(() => document.getElementById("status").textContent.includes("KEY=value"));
    report.steps.badContext = await text(ui, "#status");
    await ui.fill("#spawn-context", "REPO=https://example.com/r.git, BRANCH=main");
    await ui.click(needs);
    await ui.waitForSelector(`#workspaces tr[data-id="http-ctx"]`);
    report.steps.withContext = await text(ui, "#status");
    await ui.fill("#spawn-context", "");
  }

  await ui.click(`#workspaces tr[data-id="alice-pre"] button:has-text("Logs")`);
  await ui.waitForFunction(() => !document.getElementById("logs-panel").hidden || document.getElementById("status").className === "error");
  report.steps.logs = { panelShown: !(await ui.$eval("#logs-panel", (e) => e.hidden)), pod: await text(ui, "#logs-pod"), logs: await text(ui, "#logs"), status: await text(ui, "#status") };

  await ui.click(`#workspaces tr[data-id="${mode}-stop"] button:has-text("Stop")`);
  report.steps.armed = await text(ui, `#workspaces tr[data-id="${mode}-stop"] td.actions`);
  await ui.click(`#workspaces tr[data-id="${mode}-stop"] button:has-text("Really stop?")`);
  await ui.waitForFunction((id) => !document.querySelector(`#workspaces tr[data-id="${id}"]`) ||
    document.querySelector(`#workspaces tr[data-id="${id}"]`).cells[1].textContent === "Terminating", mode + "-stop");
  report.steps.stopped = { status: await text(ui, "#status"), workspaces: await ids(ui) };
  if (mode === "http") {
    report.steps.openLink = await ui.$eval(`#workspaces tr[data-id="${mode}-keep"] a`, (a) => a.href);
    await ui.click("#token-forget");
    await page.reload();
    await ui.waitForFunction(() => document.getElementById("status").textContent.includes("401"));
    report.steps.forgotten = await text(ui, "#status");
  } else {
    report.steps.notified = await page.evaluate(() => window.notified || []);
    report.steps.openLinks = await ui.$$eval("#workspaces a", (as) => as.length);
  }
} catch (e) {
  report.error = String(e.stack || e);
} finally {
  report.consoleErrors = consoleErrors;
  await browser.close();
}
console.log(JSON.stringify(report));
process.exit(0); // the host's MCP session would keep node running

async function text(frame, sel) { return (await frame.textContent(sel)).trim(); }
async function ids(frame) { return frame.$$eval("#workspaces tbody tr", (rs) => rs.map((r) => r.dataset.id)); }
