// Browser test of the web chat page: two browser contexts register, log in
// and exchange messages both ways (1:1), then chat in a group.
// Usage: node chat.mjs http://127.0.0.1:PORT SCREENSHOT.png
// Needs playwright-core (NODE_PATH) and Debian's chromium (/usr/bin/chromium).
import { createRequire } from "module";
const require = createRequire(import.meta.url);
const { chromium } = require("playwright-core");

const [base, shot] = process.argv.slice(2);
const fail = (m) => { console.error("FAIL:", m); process.exit(1); };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const stamp = Date.now().toString(36);
async function person(name) {
  const ctx = await browser.newContext({ viewport: { width: 1100, height: 700 } });
  const page = await ctx.newPage();
  page.on("pageerror", (e) => fail(`${name}: page error ${e}`));
  await page.goto(base + "/");
  await page.fill("#username", name);
  await page.fill("#password", "password123");
  await page.click("#register");
  await page.waitForSelector("#meid:not(:empty)");
  await page.waitForSelector("#dot.on", { timeout: 10000 });
  const id = (await page.textContent("#meid")).trim();
  return { page, id, name };
}
async function say(p, text) {
  await p.page.fill("#text", text);
  await p.page.press("#text", "Enter");
}
async function sees(p, text) {
  await p.page.waitForSelector(`#messages .msg:has-text("${text}")`, { timeout: 10000 })
    .catch(() => fail(`${p.name} never saw "${text}"`));
}

try {
  const alice = await person("alice_" + stamp);
  const bob = await person("bob_" + stamp);
  // Alice opens a chat with Bob by id and writes; Bob sees it and answers.
  await alice.page.fill("#peer", bob.id);
  await alice.page.click("#open");
  await say(alice, "Hello Bob, it is Alice");
  await sees(alice, "Hello Bob, it is Alice");
  await bob.page.waitForSelector(".conv", { timeout: 10000 }).catch(() => fail("bob has no conversation"));
  await bob.page.click(".conv");
  await sees(bob, "Hello Bob, it is Alice");
  await say(bob, "Hi Alice! Bob here.");
  await sees(alice, "Hi Alice! Bob here.");
  // A group: Alice creates it, adds Bob, both write.
  await alice.page.fill("#gname", "Team " + stamp);
  await alice.page.click("#mkgroup");
  await alice.page.waitForSelector("#groupbar:not(.hidden)");
  await alice.page.fill("#newmember", bob.id);
  await alice.page.click("#addmember");
  await alice.page.waitForSelector('#toast:has-text("Added user")', { timeout: 5000 }).catch(() => fail("adding bob failed"));
  await say(alice, "Welcome to the team");
  await sees(alice, "Welcome to the team");
  await bob.page.waitForSelector('.conv:has-text("group")', { timeout: 10000 }).catch(() => fail("bob never got the group conversation"));
  await bob.page.click('.conv:has-text("group")');
  await sees(bob, "Welcome to the team");
  await say(bob, "Thanks!");
  await sees(alice, "Thanks!");
  await alice.page.screenshot({ path: shot });
  console.log(`browser test passed: ${alice.name} (${alice.id}) and ${bob.name} (${bob.id}) chatted 1:1 and in a group; screenshot ${shot}`);
} finally {
  await browser.close();
}
