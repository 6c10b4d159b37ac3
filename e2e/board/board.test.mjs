// End-to-end test of the coffee board in headless Chromium, against
// `coffee all` (embedded Kafka, every port picked by the OS):
//   - an order placed through the form reaches "completed" on the board;
//   - an order cancelled before it brews is shown cancelled;
//   - an order the API refuses shows the API's error in words;
//   - the page works at phone width; screenshots are kept as artifacts.
//
// Run: node board.test.mjs [path/to/coffee]   (scripts/test.sh does)
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const root = resolve(import.meta.dirname, "../..");
const binary = process.argv[2] || join(root, "target/debug/coffee");
const artifacts = join(root, "target/e2e");
mkdirSync(artifacts, { recursive: true });

function startCoffee() {
  const args = ["all", "--speed-factor", "0.1",
    // One barista worker: a second order waits while the first brews, so
    // it can be cancelled before any barista claims it.
    "--set", "barista.workers=1"];
  for (const key of ["producer.server_port", "producer.grpc_port", "gateway.server_port",
    "streams.query_port", "streams.metrics_port", "barista.metrics_port"]) {
    args.push("--set", `${key}=0`);
  }
  const child = spawn(binary, args, { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, LOG_LEVEL: "warn" } });
  return new Promise((resolvePort, reject) => {
    const timer = setTimeout(() => reject(new Error("coffee all did not print its banner within 60 s")), 60_000);
    child.on("exit", (code) => reject(new Error(`coffee all exited with ${code}`)));
    const lines = createInterface({ input: child.stdout });
    lines.on("line", (line) => {
      const match = line.match(/API gateway\s+http:\/\/localhost:(\d+)/);
      if (match) {
        clearTimeout(timer);
        resolvePort({ child, port: Number(match[1]) });
      }
    });
  });
}

// Ready when the pipeline answers lists: it has its partitions.
async function waitUntilReady(port) {
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      const response = await fetch(`http://localhost:${port}/v1/orders?page_size=1`);
      if (response.ok) return;
    } catch (error) {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error("the pipeline did not become ready within 60 s");
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

async function main() {
  const { child, port } = await startCoffee();
  await waitUntilReady(port);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const failures = [];
  const page = await browser.newPage({ viewport: { width: 1280, height: 1100 } });
  page.on("pageerror", (error) => failures.push(`page error: ${error.message}`));
  page.on("response", (response) => {
    if (response.status() >= 400 && response.status() !== 400) {
      failures.push(`${response.status()} for ${response.url()}`);
    }
  });
  page.on("console", (message) => {
    // The refused order below answers 400 on purpose; any other failed
    // load or script error fails the test.
    if (message.type() === "error" && !message.text().includes("status of 400")) {
      failures.push(`console error: ${message.text()}`);
    }
  });
  try {
    await page.goto(`http://localhost:${port}/`);
    await page.getByText("Live", { exact: true }).waitFor({ timeout: 30_000 });
    // The menu comes from the pipeline.
    await page.locator("#drink option", { hasText: "Cappuccino" }).waitFor({ state: "attached" });

    // Every form control has a label; buttons have names.
    for (const id of ["customer", "drink"]) {
      assert.equal(await page.locator(`label[for="${id}"]`).count(), 1, `#${id} has no label`);
    }

    // 1. Place an order through the form; watch it brew and complete.
    await page.getByLabel("Your name", { exact: true }).fill("Ada");
    await page.getByLabel("Drink", { exact: true }).selectOption("Cappuccino");
    await page.getByRole("button", { name: "Place order" }).click();
    await page.getByRole("alert").getByText("Order for Ada placed successfully!").waitFor();
    const brewing = page.locator('ul[data-status="brewing"] li', { hasText: "Ada" });
    await brewing.waitFor({ timeout: 30_000 });

    // 2. While Ada's drink brews, order another and cancel it before a
    //    barista can claim it.
    await page.getByLabel("Your name", { exact: true }).fill("Bob");
    await page.getByLabel("Drink", { exact: true }).selectOption("Espresso");
    await page.getByRole("button", { name: "Place order" }).click();
    const bob = page.locator("li.order", { hasText: "Bob" });
    await bob.getByRole("button", { name: "Cancel Bob's Espresso" }).click();
    await page.locator('ul[data-status="cancelled"] li', { hasText: "Bob" }).waitFor({ timeout: 15_000 });

    await page.locator('ul[data-status="completed"] li', { hasText: "Ada" }).waitFor({ timeout: 30_000 });
    // Bob's order never reached a barista.
    assert.equal(await page.locator('ul[data-status="brewing"] li', { hasText: "Bob" }).count(), 0);
    assert.equal(await page.locator('ul[data-status="completed"] li', { hasText: "Bob" }).count(), 0);

    // 3. An order the API refuses: its error, in words.
    await page.getByLabel("Your name", { exact: true }).fill("x".repeat(150));
    await page.getByLabel("Drink", { exact: true }).selectOption("Latte");
    await page.getByRole("button", { name: "Place order" }).click();
    const alert = page.getByRole("alert");
    await alert.getByText(/longer than|too long|characters/i).waitFor({ timeout: 10_000 });
    assert.match(await alert.getAttribute("class"), /error/);

    // The demand chart counted the accepted orders; the topology is drawn.
    assert.ok(await page.locator("#demand-chart svg rect").count() > 0, "the demand chart is empty");
    const topology = page.locator("#topology");
    await topology.waitFor();
    assert.ok(await topology.evaluate((img) => img.complete && img.naturalWidth > 0), "the topology did not load");

    await page.screenshot({ path: join(artifacts, "board.png"), fullPage: true });

    // 4. Phone width: nothing wider than the screen but the scrollable topology.
    await page.setViewportSize({ width: 390, height: 844 });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the page is ${overflow}px wider than a phone`);
    await page.screenshot({ path: join(artifacts, "board-phone.png"), fullPage: true });

    // Keyboard: from the top of the page, Tab reaches the skip link, then
    // the form in order, and Enter on the skip link moves to the board.
    await page.reload();
    await page.locator("#drink option", { hasText: "Latte" }).waitFor({ state: "attached" });
    const tabTo = async () => {
      await page.keyboard.press("Tab");
      return page.evaluate(() => document.activeElement.id || document.activeElement.textContent.trim());
    };
    assert.equal(await tabTo(), "Skip to the board");
    assert.equal(await tabTo(), "customer");
    assert.equal(await tabTo(), "drink");
    assert.equal(await tabTo(), "place");

    assert.deepEqual(failures, []);
    console.log(`board e2e passed; screenshots in ${artifacts}`);
  } catch (error) {
    await page.screenshot({ path: join(artifacts, "board-failure.png"), fullPage: true }).catch(() => {});
    const message = await page.locator("#form-message").textContent().catch(() => "");
    throw new Error(`${error.message}\n(the page said: ${message}; screenshot: target/e2e/board-failure.png)`);
  } finally {
    await browser.close();
    child.kill("SIGTERM");
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
