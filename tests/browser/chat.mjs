// Browser test of the web chat page: two browser contexts register, log in
// and exchange messages both ways (1:1), then chat in a group; then the v1.1
// features: unread badges and read ticks, typing, presence, recall (live and
// after a reload), and group administration (rename, promote, mute a member,
// kick, mute the group, dissolve) with their system notices.
// Usage: node chat.mjs http://127.0.0.1:PORT SCREENSHOT.png
// Screenshots go next to SCREENSHOT.png (browser-unread.png, browser-recall.png,
// browser-group.png, browser-kicked.png).
// Needs playwright-core (NODE_PATH) and Debian's chromium (/usr/bin/chromium).
// Every wait is on a DOM condition; there are no fixed sleeps.
import { createRequire } from "module";
import path from "path";
const require = createRequire(import.meta.url);
const { chromium } = require("playwright-core");

const [base, shot] = process.argv.slice(2);
const dir = path.dirname(shot);
const T = 10000;
let browser;
const fail = async (m) => {
  console.error("FAIL:", m);
  if (browser) {
    for (const [i, ctx] of browser.contexts().entries()) {
      for (const p of ctx.pages()) await p.screenshot({ path: path.join(dir, `browser-fail-${i}.png`) }).catch(() => {});
    }
  }
  process.exit(1);
};

browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const stamp = Date.now().toString(36);
async function person(name) {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 760 } });
  const page = await ctx.newPage();
  page.on("pageerror", (e) => fail(`${name}: page error ${e}`));
  // Console errors are printed, not fatal: the refused rename below logs one expected 400.
  page.on("console", (m) => { if (m.type() === "error") console.error(`[${name} console] ${m.text()}`); });
  await page.goto(base + "/");
  await page.fill("#username", name);
  await page.fill("#password", "password123");
  await page.click("#register");
  await page.waitForSelector("#meid:not(:empty)");
  await page.waitForSelector("#dot.on", { timeout: T });
  const id = (await page.textContent("#meid")).trim();
  return { page, id, name };
}
// Waits until `selector` reaches `state` (default visible) on p's page, or fails with `what`.
async function until(p, selector, what, state = "visible", timeout = T) {
  await p.page.locator(selector).first().waitFor({ state, timeout })
    .catch(() => fail(`${p.name}: ${what} (waited for ${selector} to be ${state})`));
}
async function say(p, text) {
  await p.page.fill("#text", text);
  await p.page.press("#text", "Enter");
}
async function sees(p, text) {
  await p.page.waitForSelector(`#messages .msg:has-text("${text}")`, { timeout: T })
    .catch(() => fail(`${p.name} never saw "${text}"`));
}
const conv = (id) => `[data-testid=conv][data-conv-id="${id}"]`;
const msg = (text) => `#messages [data-testid=message]:has([data-testid=message-body]:text-is("${text}"))`;
const notice = (event, text) => `#messages [data-testid=system-notice][data-event=${event}]:has-text('${text}')`;
const snap = async (p, name) => { const f = path.join(dir, name); await p.page.screenshot({ path: f }); return f; };

try {
  const alice = await person("alice_" + stamp);
  const bob = await person("bob_" + stamp);
  const direct = BigInt(alice.id) < BigInt(bob.id) ? `u:${alice.id}:${bob.id}` : `u:${bob.id}:${alice.id}`;

  // --- 1:1: Alice opens a chat with Bob by id and writes; Bob sees it and answers.
  await alice.page.fill("#peer", bob.id);
  await alice.page.click("#open");
  await say(alice, "Hello Bob, it is Alice");
  await sees(alice, "Hello Bob, it is Alice");
  await until(bob, conv(direct), "has no conversation with alice");
  await bob.page.click(conv(direct));
  await sees(bob, "Hello Bob, it is Alice");
  await say(bob, "Hi Alice! Bob here.");
  await sees(alice, "Hi Alice! Bob here.");
  // Presence: Alice's open 1:1 shows Bob online.
  await until(alice, "[data-testid=presence].on", "does not see bob online");

  // --- Group: Alice creates it, adds Bob, both write.
  const team = "Team " + stamp;
  await alice.page.fill("#gname", team);
  await alice.page.click("#mkgroup");
  await alice.page.waitForSelector("#groupbar:not(.hidden)");
  const group = await alice.page.getAttribute("[data-testid=conv].active", "data-conv-id");
  if (!group || !group.startsWith("g:")) await fail(`alice's open conversation is not a group: ${group}`);
  await alice.page.fill("#newmember", bob.id);
  await alice.page.click("#addmember");
  await alice.page.waitForSelector('#toast:has-text("Added user")', { timeout: 5000 }).catch(() => fail("adding bob failed"));
  await until(alice, notice("member_added", `You added user ${bob.id}`), "no notice of adding bob");
  await say(alice, "Welcome to the team");
  await sees(alice, "Welcome to the team");
  await until(bob, `${conv(group)}:has-text("${team}")`, "never got the group conversation (with its name)");
  await bob.page.click(conv(group));
  await sees(bob, "Welcome to the team");
  await until(bob, notice("member_added", `User ${alice.id} added you`), "no notice of being added");
  await say(bob, "Thanks!");
  await sees(alice, "Thanks!");
  await snap(alice, path.basename(shot));

  // --- Unread badges and read ticks: Bob keeps the group open while Alice
  // writes three messages in the 1:1.
  await alice.page.click(conv(direct));
  for (const t of ["Unread one", "Unread two", "Unread three"]) await say(alice, t);
  for (const t of ["Unread one", "Unread two", "Unread three"]) {
    await until(alice, `${msg(t)} [data-testid=tick][data-state=sent]`, `"${t}" is not marked sent (✓)`);
  }
  await until(bob, `${conv(direct)} [data-testid=unread-badge]:text-is("3")`, "no unread badge of 3 on the 1:1");
  if (await bob.page.locator(`${conv(group)} [data-testid=unread-badge]`).count()) await fail("bob: the open group has an unread badge");
  const tickText = await alice.page.textContent(`${msg("Unread three")} [data-testid=tick]`);
  if (tickText !== "✓") await fail(`alice: an unread message shows "${tickText}", expected ✓`);
  await snap(bob, "browser-unread.png");
  await bob.page.click(conv(direct));
  await sees(bob, "Unread three");
  await until(bob, `${conv(direct)} [data-testid=unread-badge]`, "the badge did not clear after opening", "detached");
  for (const t of ["Unread one", "Unread two", "Unread three"]) {
    await until(alice, `${msg(t)} [data-testid=tick][data-state=read]:text-is("✓✓")`, `"${t}" never showed read (✓✓)`);
  }
  await snap(alice, "browser-read.png");

  // --- Typing: Bob types without sending (for 3 s, longer than the page's
  // 2 s throttle of typing frames); Alice sees it, and it fades.
  const typing = bob.page.locator("#text").pressSequentially("I am typing something slowly", { delay: 110 });
  await until(alice, `[data-testid=typing]:has-text("user ${bob.id} is typing")`, "never saw bob typing");
  await typing;
  await until(alice, `${conv(direct)} [data-testid=conv-last]:has-text("is typing")`, "the list does not show bob typing");
  await alice.page.waitForFunction(() => document.querySelector("[data-testid=typing]").textContent === "", null, { timeout: T })
    .catch(() => fail("alice: the typing indicator did not fade"));
  await bob.page.fill("#text", "");

  // --- Recall: Alice recalls a message; Bob sees it recalled live and after a reload.
  const oops = "Oops, this was for someone else " + stamp;
  await say(alice, oops);
  await until(alice, `${msg(oops)}[data-msg-id]`, "her message was not acked");
  const oopsId = await alice.page.getAttribute(msg(oops), "data-msg-id");
  await sees(bob, oops);
  await alice.page.click(`${msg(oops)} [data-testid=recall]`);
  const recalled = `[data-testid=message][data-msg-id="${oopsId}"][data-recalled=true]:has([data-testid=message-body]:text-is("message recalled"))`;
  await until(alice, recalled, "her message does not show recalled");
  await until(bob, recalled, "the message does not show recalled (live)");
  if (await bob.page.locator(`#messages :text("${oops}")`).count()) await fail("bob still shows the recalled text");
  await until(bob, `${conv(direct)} [data-testid=conv-last]:text-is("message recalled")`, "the list preview is not 'message recalled'");
  await snap(bob, "browser-recall.png");
  await bob.page.reload();
  await until(bob, "#dot.on", "did not reconnect after the reload");
  await until(bob, `[data-testid=conv].active${conv(direct)}`, "the 1:1 was not reopened after the reload");
  await sees(bob, "Unread three");
  await until(bob, recalled, "history after the reload does not show the message recalled");
  if (await bob.page.locator(`#messages :text("${oops}")`).count()) await fail("bob: history after the reload shows the recalled text");
  await until(bob, `${conv(group)}:has-text("${team}")`, "the group is missing from the list after the reload");
  await bob.page.waitForFunction(() => !document.querySelector("[data-testid=unread-badge]") && document.querySelectorAll("[data-testid=conv]").length >= 2, null, { timeout: T })
    .catch(() => fail("bob: unread badges after the reload although everything was read"));
  await snap(bob, "browser-recall-reload.png");

  // --- Group administration: rename, promote, kick; system notices on both sides.
  await alice.page.click(conv(group));
  await bob.page.click(conv(group));
  await alice.page.click("[data-testid=manage-group]");
  await until(alice, `[data-testid=group-panel] [data-testid=gp-member][data-user-id="${bob.id}"][data-role=member]`, "the panel does not list bob as a member");
  await until(alice, `[data-testid=gp-member][data-user-id="${alice.id}"] [data-testid=gp-role]:text-is("owner")`, "the panel does not show her as owner");
  const renamed = "Renamed " + stamp;
  await alice.page.fill("[data-testid=gp-name-input]", renamed);
  await alice.page.click("[data-testid=gp-rename]");
  await until(alice, notice("group_renamed", `You renamed the group to "${renamed}"`), "no rename notice");
  await until(bob, notice("group_renamed", `User ${alice.id} renamed the group to "${renamed}"`), "no rename notice");
  await until(bob, `[data-testid=chat-title]:text-is("${renamed}")`, "the title did not follow the rename");
  await until(bob, `${conv(group)} [data-testid=conv-title]:text-is("${renamed}")`, "the list did not follow the rename");
  await alice.page.click(`[data-testid=gp-member][data-user-id="${bob.id}"] [data-testid=gp-promote]`);
  await until(alice, `[data-testid=gp-member][data-user-id="${bob.id}"][data-role=admin]`, "bob is not shown as admin");
  await until(bob, notice("role_changed", `User ${alice.id} made you an admin`), "no promotion notice");
  // A refused request shows the server's error in the panel: a 70-character name is a 400.
  await alice.page.fill("[data-testid=gp-name-input]", "x".repeat(70));
  await alice.page.click("[data-testid=gp-rename]");
  await until(alice, "[data-testid=gp-error]:has-text('Rename failed')", "no error shown for a refused rename");
  // Mute Bob (10 minutes, the default): his send is refused with an error.
  await alice.page.click(`[data-testid=gp-member][data-user-id="${bob.id}"] [data-testid=gp-mute-member]`);
  await until(alice, `[data-testid=gp-member][data-user-id="${bob.id}"] [data-testid=gp-muted]`, "bob is not shown muted");
  await until(bob, notice("member_muted", `User ${alice.id} muted you until`), "no notice of being muted");
  await say(bob, "Can I still talk?");
  await until(bob, "#toast:has-text('permission_denied')", "a muted member's send showed no error");
  if (await bob.page.locator(msg("Can I still talk?")).count()) await fail("bob: the refused message is still shown");
  await alice.page.click(`[data-testid=gp-member][data-user-id="${bob.id}"] [data-testid=gp-kick]`);
  await until(alice, `[data-testid=gp-member][data-user-id="${bob.id}"]`, "bob is still listed after the kick", "detached");
  await until(alice, notice("member_removed", `You removed user ${bob.id}`), "no kick notice");
  await until(bob, notice("member_removed", `User ${alice.id} removed you`), "no notice of being removed");
  await until(bob, "#text:disabled", "the composer is still enabled after being removed");
  await until(bob, `${conv(group)} [data-testid=unread-badge]`, "the open group keeps an unread badge after the removal", "detached");
  await snap(alice, "browser-group.png");
  await snap(bob, "browser-kicked.png");
  // Mute and unmute the whole group, then dissolve it (confirmed in a dialog).
  await alice.page.selectOption("[data-testid=gp-duration]", "");
  await alice.page.click("[data-testid=gp-mute-group]");
  await until(alice, notice("group_muted", "You muted the group"), "no group mute notice");
  await until(alice, "[data-testid=gp-mute-state]:has-text('Muted until unmuted')", "the panel does not show the group muted");
  await alice.page.click("[data-testid=gp-mute-group]:text-is('Unmute group')");
  await until(alice, notice("group_unmuted", "You unmuted the group"), "no group unmute notice");
  alice.page.once("dialog", (d) => d.accept());
  await alice.page.click("[data-testid=gp-dissolve]");
  await until(alice, notice("group_dissolved", "You dissolved the group"), "no dissolve notice");
  await until(alice, "#text:disabled", "the composer is still enabled in a dissolved group");
  await until(alice, "[data-testid=group-panel]", "the panel stays open for a dissolved group", "hidden");

  console.log(`browser test passed: ${alice.name} (${alice.id}) and ${bob.name} (${bob.id}) chatted 1:1 and in a group; ` +
    `unread badge, read ticks, typing, presence, recall (live and after reload) and group administration (rename, promote, mute member, kick, mute group, dissolve) checked; ` +
    `screenshots in ${dir}`);
} finally {
  await browser.close();
}
