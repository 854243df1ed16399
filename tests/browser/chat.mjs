// Browser test of the web chat page: two browser contexts register, log in
// and exchange messages both ways (1:1), then chat in a group; then the v1.1
// features: unread badges and read ticks, typing, presence, recall (live and
// after a reload), and group administration (rename, promote, mute a member,
// kick, mute the group, dissolve) with their system notices; then scheduled
// delivery (send later, pending bubble, cancel, the server's list after a
// reload, delivery at the time to both sides); then the v1.2 people
// features: display names everywhere (never a raw id), a chat opened by
// username, a contact request and its acceptance, an edit seen live, a block
// refusing sends (and unblock), read ticks from the server after a reload,
// and a group's join cutoff and @mentions with a third user.
// Usage: node chat.mjs http://127.0.0.1:PORT SCREENSHOT.png
// Screenshots go next to SCREENSHOT.png (browser-unread.png, browser-recall.png,
// browser-group.png, browser-kicked.png, browser-scheduled.png,
// browser-send-later.png, browser-scheduled-delivered.png, browser-people.png,
// browser-contacts.png, browser-edited.png, browser-blocked.png,
// browser-mention.png, browser-join-cutoff.png; SCREENSHOT.png itself is
// taken again at the end).
// Needs playwright-core (NODE_PATH) and Debian's chromium (/usr/bin/chromium).
// Every wait is on a DOM condition; there are no fixed sleeps.
import { createRequire } from "module";
import path from "path";
import zlib from "zlib";
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
async function person(name, display) {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 760 } });
  const page = await ctx.newPage();
  // Every WebSocket frame the page receives, with the time it arrived.
  const frames = [];
  page.on("websocket", (ws) => ws.on("framereceived", (f) => frames.push({ t: Date.now(), data: String(f.payload) })));
  page.on("pageerror", (e) => fail(`${name}: page error ${e}`));
  // Console errors are printed, not fatal: the refused rename below logs one expected 400.
  page.on("console", (m) => { if (m.type() === "error") console.error(`[${name} console] ${m.text()}`); });
  await page.goto(base + "/");
  await page.fill("#username", name);
  await page.fill("#password", "password123");
  await page.fill("#displayname", display);
  await page.click("#register");
  await page.waitForSelector("#meid:not(:empty)");
  await page.waitForSelector("#dot.on", { timeout: T });
  await page.waitForSelector(`#mename:text-is("${display}")`, { timeout: T }).catch(() => fail(`${name}: the header does not show the display name ${display}`));
  const id = (await page.textContent("#meid")).trim();
  return { page, id, name, display, frames };
}
// No text node in the conversation list, the chat header or the message view
// looks like an id (15+ digits), nor is one of the given users' ids.
async function noIds(p, ids) {
  const bad = await p.page.evaluate((ids) => {
    const found = [];
    for (const sel of ["#convs", "#messages", "#chathead"]) {
      const root = document.querySelector(sel); if (!root) continue;
      const walk = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
      for (let n = walk.nextNode(); n; n = walk.nextNode()) {
        const t = n.textContent;
        if (/\b\d{15,}\b/.test(t) || ids.some(id => new RegExp("\\b" + id + "\\b").test(t))) found.push(sel + ": " + t);
      }
    }
    return found;
  }, ids.filter(id => id.length >= 4));
  if (bad.length) await fail(`${p.name}: raw ids shown: ${bad.slice(0, 5).join(" | ")}`);
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
// A real PNG (w × h, a gradient), so the page can decode and show it.
function png(w, h) {
  const crc = (buf) => { let c = ~0; for (const b of buf) { c ^= b; for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1)); } return ~c >>> 0; };
  const chunk = (type, data) => { const len = Buffer.alloc(4); len.writeUInt32BE(data.length); const td = Buffer.concat([Buffer.from(type), data]); const c = Buffer.alloc(4); c.writeUInt32BE(crc(td)); return Buffer.concat([len, td, c]); };
  const ihdr = Buffer.alloc(13); ihdr.writeUInt32BE(w, 0); ihdr.writeUInt32BE(h, 4); ihdr[8] = 8; ihdr[9] = 2; ihdr[10] = 0; ihdr[11] = 0; ihdr[12] = 0;
  const raw = Buffer.alloc((w * 3 + 1) * h);
  for (let y = 0; y < h; y++) { raw[y * (w * 3 + 1)] = 0; for (let x = 0; x < w; x++) { const o = y * (w * 3 + 1) + 1 + x * 3; raw[o] = 255; raw[o + 1] = Math.floor(80 + 150 * y / h); raw[o + 2] = Math.floor(40 + 200 * x / w); } }
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk("IHDR", ihdr), chunk("IDAT", zlib.deflateSync(raw)), chunk("IEND", Buffer.alloc(0))]);
}
const msg = (text) => `#messages [data-testid=message]:has([data-testid=message-body]:text-is("${text}"))`;
// A message whose body has elements inside (e.g. set-off @mentions): matched by its whole text.
const msgWith = (text) => `#messages [data-testid=message]:has([data-testid=message-body]:has-text("${text}"))`;
const notice = (event, text) => `#messages [data-testid=system-notice][data-event=${event}]:has-text('${text}')`;
const snap = async (p, name) => { const f = path.join(dir, name); await p.page.screenshot({ path: f }); return f; };

try {
  const alice = await person("alice_" + stamp, "Alice Liddell");
  const bob = await person("bob_" + stamp, "Bob Stone");
  const direct = BigInt(alice.id) < BigInt(bob.id) ? `u:${alice.id}:${bob.id}` : `u:${bob.id}:${alice.id}`;

  // --- 1:1: Alice opens a chat with Bob by his username and writes; Bob sees it and answers.
  await alice.page.fill("#peer", bob.name);
  await alice.page.click("#open");
  await until(alice, `[data-testid=chat-title]:text-is("${bob.display}")`, "the chat opened by username is not titled with bob's display name");
  await say(alice, "Hello Bob, it is Alice");
  await sees(alice, "Hello Bob, it is Alice");
  await until(bob, conv(direct), "has no conversation with alice");
  await until(bob, `${conv(direct)} [data-testid=conv-title]:text-is("${alice.display}")`, "the 1:1 is not listed under alice's display name");
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
  await alice.page.fill("#newmember", bob.name);
  await alice.page.click("#addmember");
  await alice.page.waitForSelector(`#toast:has-text("Added ${bob.display}")`, { timeout: 5000 }).catch(() => fail("adding bob failed"));
  await until(alice, notice("member_added", `You added ${bob.display}`), "no notice of adding bob");
  await say(alice, "Welcome to the team");
  await sees(alice, "Welcome to the team");
  await until(bob, `${conv(group)}:has-text("${team}")`, "never got the group conversation (with its name)");
  await bob.page.click(conv(group));
  await sees(bob, "Welcome to the team");
  await until(bob, notice("member_added", `${alice.display} added you`), "no notice of being added");
  await until(bob, `#messages [data-testid=message]:has([data-testid=message-body]:text-is("Welcome to the team")) [data-testid=message-from]:text-is("${alice.display}")`,
    "the group message does not show its sender's display name");
  await say(bob, "Thanks!");
  await sees(alice, "Thanks!");
  await until(alice, `#messages [data-testid=message]:has([data-testid=message-body]:text-is("Thanks!")) [data-testid=message-from]:text-is("${bob.display}")`,
    "bob's group message does not show his display name");
  await until(alice, `${conv(direct)} [data-testid=conv-title]:text-is("${bob.display}")`, "the 1:1 is not listed under bob's display name");
  for (const p of [alice, bob]) await noIds(p, [alice.id, bob.id]);
  await snap(alice, path.basename(shot));
  await snap(bob, "browser-people.png");

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
  await until(alice, `[data-testid=typing]:has-text("${bob.display} is typing")`, "never saw bob typing");
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
  await until(bob, notice("group_renamed", `${alice.display} renamed the group to "${renamed}"`), "no rename notice");
  await until(bob, `[data-testid=chat-title]:text-is("${renamed}")`, "the title did not follow the rename");
  await until(bob, `${conv(group)} [data-testid=conv-title]:text-is("${renamed}")`, "the list did not follow the rename");
  await alice.page.click(`[data-testid=gp-member][data-user-id="${bob.id}"] [data-testid=gp-promote]`);
  await until(alice, `[data-testid=gp-member][data-user-id="${bob.id}"][data-role=admin]`, "bob is not shown as admin");
  await until(bob, notice("role_changed", `${alice.display} made you an admin`), "no promotion notice");
  // A refused request shows the server's error in the panel: a 70-character name is a 400.
  await alice.page.fill("[data-testid=gp-name-input]", "x".repeat(70));
  await alice.page.click("[data-testid=gp-rename]");
  await until(alice, "[data-testid=gp-error]:has-text('Rename failed')", "no error shown for a refused rename");
  // Mute Bob (10 minutes, the default): his send is refused with an error.
  await alice.page.click(`[data-testid=gp-member][data-user-id="${bob.id}"] [data-testid=gp-mute-member]`);
  await until(alice, `[data-testid=gp-member][data-user-id="${bob.id}"] [data-testid=gp-muted]`, "bob is not shown muted");
  await until(bob, notice("member_muted", `${alice.display} muted you until`), "no notice of being muted");
  await say(bob, "Can I still talk?");
  await until(bob, "#toast:has-text('permission_denied')", "a muted member's send showed no error");
  // The first permission_denied may answer his typing frame (muted members cannot type);
  // the send's own error removes the pending bubble (an accepted send would keep it, with a seq).
  await until(bob, `#messages .msg:has-text("Can I still talk?")`, "the refused message is still shown", "detached");
  await alice.page.click(`[data-testid=gp-member][data-user-id="${bob.id}"] [data-testid=gp-kick]`);
  await until(alice, `[data-testid=gp-member][data-user-id="${bob.id}"]`, "bob is still listed after the kick", "detached");
  await until(alice, notice("member_removed", `You removed ${bob.display}`), "no kick notice");
  await until(bob, notice("member_removed", `${alice.display} removed you`), "no notice of being removed");
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

  // --- Scheduled delivery (§6.8) in the 1:1: Alice schedules two messages for
  // the same time ~8 s ahead and cancels the second one.
  await alice.page.click(conv(direct));
  await bob.page.click(conv(direct));
  await sees(bob, "Unread three");
  const held = (text) => `#messages [data-testid=scheduled]:has([data-testid=message-body]:text-is("${text}"))`;
  const localInput = (ms) => { const d = new Date(ms); d.setMinutes(d.getMinutes() - d.getTimezoneOffset()); return d.toISOString().slice(0, 19); };
  async function later(p, text, at, shotName) {
    await p.page.fill("#text", text);
    await p.page.click("[data-testid=send-later]");
    await until(p, "[data-testid=later-panel]", "the send-later panel did not open");
    await p.page.fill("[data-testid=later-at]", await p.page.evaluate(`(${localInput})(${at})`)); // in the browser's time zone
    if (shotName) await snap(p, shotName);
    await p.page.click("[data-testid=later-send]");
    await until(p, "[data-testid=later-panel]", "the send-later panel stays open after scheduling", "hidden");
  }
  // Past the 30-day horizon: the server's error is shown and nothing is held.
  const tooFar = "Too far ahead " + stamp;
  await later(alice, tooFar, Date.now() + 40 * 86400000);
  await until(alice, "#toast:has-text('invalid_argument')", "no error shown for a send 40 days ahead");
  await until(alice, `#messages .msg:has-text("${tooFar}")`, "the refused scheduled send is still shown", "detached");
  // Bob's page notes when each scheduled text first shows up in its DOM.
  const first = "Happy birthday, Bob! " + stamp, second = "Never mind this one " + stamp;
  await bob.page.evaluate((texts) => {
    window.__firstSeen = {};
    new MutationObserver(() => {
      for (const t of texts) if (!window.__firstSeen[t] && document.body.textContent.includes(t)) window.__firstSeen[t] = Date.now();
    }).observe(document.body, { subtree: true, childList: true, characterData: true });
  }, [first, second]);
  const at = Math.ceil((Date.now() + 8000) / 1000) * 1000;
  await later(alice, first, at, "browser-send-later.png");
  await until(alice, `${held(first)} [data-testid=scheduled-time]:has-text("scheduled for")`, "no pending bubble for her scheduled message");
  await later(alice, second, at);
  await until(alice, held(second), "no pending bubble for her second scheduled message");
  const firstId = await alice.page.getAttribute(held(first), "data-msg-id");
  const secondId = await alice.page.getAttribute(held(second), "data-msg-id");
  if (await alice.page.getAttribute(held(first), "data-deliver-at") !== String(at)) await fail(`alice: the pending bubble is not for ${at}`);
  await until(alice, `${conv(direct)} [data-testid=conv-scheduled]:text-is("2 scheduled")`, "the list does not show 2 scheduled");
  await alice.page.click(`${held(second)} [data-testid=cancel-scheduled]`);
  await until(alice, held(second), "the cancelled message still shows pending", "detached");
  await until(alice, "#toast:has-text('Scheduled message cancelled')", "no confirmation of the cancel");
  // After a reload, the pending bubble comes from GET /messages/scheduled.
  await alice.page.reload();
  await until(alice, "#dot.on", "did not reconnect after the reload");
  await until(alice, held(first), "after a reload her pending bubble is not loaded from the server");
  await until(alice, `${conv(direct)} [data-testid=conv-scheduled]:text-is("1 scheduled")`, "the list does not show 1 scheduled after the reload");
  // Read ticks come from the server (peer_read_seq, reads), not from the browser's storage.
  if (await alice.page.evaluate(() => Object.keys(localStorage).some(k => (localStorage.getItem(k) || "").includes("peerRead")))) await fail("alice: read ticks are still kept in localStorage");
  await until(alice, `${msg("Unread three")} [data-testid=tick][data-state=read]`, "after a reload the read ticks are not restored from the server");
  if (await alice.page.locator(held(second)).count()) await fail("alice: the cancelled message is listed again after the reload");
  await snap(alice, "browser-scheduled.png");
  // Nothing has reached Bob yet (checked while it is still before the time).
  const bobSees = (t) => bob.page.evaluate((t) => document.body.textContent.includes(t), t);
  const early = (await bobSees(first)) || (await bobSees(second)) || bob.frames.some(f => f.data.includes(firstId) || f.data.includes(secondId));
  if (Date.now() >= at) await fail(`the test reached its "before the time" check only ${Date.now() - at} ms after the time`);
  if (early) await fail("bob got a scheduled message before its time");
  // At the time: Bob receives the first; Alice's pending bubble becomes the delivered message.
  await bob.page.waitForSelector(msg(first), { timeout: at - Date.now() + T }).catch(() => fail(`bob never got "${first}"`));
  const shownAt = await bob.page.evaluate((t) => window.__firstSeen[t], first);
  const frameAt = (bob.frames.find(f => f.data.includes(firstId)) || {}).t;
  if (!(shownAt >= at) || !(frameAt >= at)) await fail(`bob got it early: frame at ${frameAt}, shown at ${shownAt}, deliver_at ${at}`);
  const delivered = `[data-testid=message][data-msg-id="${firstId}"]:has([data-testid=message-body]:text-is("${first}"))`;
  await until(alice, delivered, "her scheduled message did not turn into a delivered one");
  await until(alice, held(first), "her pending bubble stays after the delivery", "detached");
  await until(alice, `${conv(direct)} [data-testid=conv-scheduled]`, "the list still shows a scheduled message", "detached");
  for (const p of [alice, bob]) {
    const seq = Number(await p.page.getAttribute(`[data-testid=message][data-msg-id="${firstId}"]`, "data-seq"));
    if (!(seq > 0)) await fail(`${p.name}: the delivered message has no seq (${seq})`);
  }
  if (await alice.page.locator("[data-testid=scheduled]").count()) await fail("alice: a pending bubble is left");
  // The cancelled one never shows up: not now, nor after later ordinary messages.
  const cancelledShows = async () => (await bobSees(second)) || bob.frames.some(f => f.data.includes(secondId) || f.data.includes(second)) ||
    (await alice.page.locator(`#messages :text("${second}")`).count()) > 0;
  if (await cancelledShows()) await fail("the cancelled message showed up after the first was delivered");
  await say(bob, "Thank you! " + stamp);
  await sees(alice, "Thank you! " + stamp);
  await say(alice, "You are welcome " + stamp);
  await sees(bob, "You are welcome " + stamp);
  if (await cancelledShows()) await fail("the cancelled message showed up after later messages");
  await snap(alice, "browser-scheduled-delivered.png");

  // --- Attachments (v1.2): Alice sends a picture and a file in the 1:1;
  // Bob sees the picture inline (loaded from its presigned URL) and the file
  // with its name and size.
  await alice.page.click(conv(direct));
  await bob.page.click(conv(direct));
  await alice.page.setInputFiles("#file", { name: "sunset.png", mimeType: "image/png", buffer: png(160, 100) });
  await until(alice, "[data-testid=attachment-image]", "her own picture is not shown");
  await alice.page.setInputFiles("#file", { name: "notes.txt", mimeType: "text/plain", buffer: Buffer.from("minutes of the meeting\n".repeat(40)) });
  await until(alice, '[data-testid=attachment-file][data-name="notes.txt"]', "her own file is not shown");
  await until(bob, "[data-testid=attachment-image]", "never got the picture");
  await until(bob, '[data-testid=attachment-file][data-name="notes.txt"]', "never got the file");
  await bob.page.waitForFunction(() => { const i = document.querySelector("[data-testid=attachment-image]"); return i && i.complete && i.naturalWidth === 160; }, null, { timeout: T })
    .catch(() => fail("bob: the picture did not load from its download URL (160 px wide)"));
  const fileText = await bob.page.textContent('[data-testid=attachment-file][data-name="notes.txt"]');
  if (!fileText.includes("notes.txt") || !fileText.includes("920 B")) await fail(`bob: the file shows "${fileText}"`);
  await snap(bob, "browser-attachments.png");

  // --- Contacts (v1.2): Alice asks Bob by username; Bob accepts from his list.
  await alice.page.fill("[data-testid=contact-input]", bob.name);
  await alice.page.click("[data-testid=contact-request]");
  await until(alice, `[data-testid=outgoing-request][data-user-id="${bob.id}"]:has-text("${bob.display}")`, "her pending request to bob is not listed");
  const request = `[data-testid=request][data-user-id="${alice.id}"]`;
  await until(bob, `${request}:has-text("${alice.display}")`, "alice's contact request did not show up (live)");
  await until(bob, "[data-testid=request-count]:text-is('1')", "no count of pending requests");
  await snap(bob, "browser-contacts.png");
  await bob.page.click(`${request} [data-testid=accept-request]`);
  await until(bob, request, "the accepted request is still listed", "detached");
  await until(bob, `[data-testid=contact][data-user-id="${alice.id}"]:has-text("${alice.display}")`, "alice is not in his contacts");
  await until(alice, `[data-testid=contact][data-user-id="${bob.id}"]:has-text("${bob.display}")`, "bob is not in her contacts (live)");
  await until(alice, `[data-testid=outgoing-request][data-user-id="${bob.id}"]`, "her request is still pending after bob accepted", "detached");

  // --- Edit (v1.2): Alice corrects a message; Bob sees the new text, marked edited.
  await alice.page.click(conv(direct));
  await bob.page.click(conv(direct));
  const typo = "Lets meet at 5 " + stamp, fixed = "Let's meet at 6 " + stamp;
  await say(alice, typo);
  await until(alice, `${msg(typo)}[data-msg-id]`, "her message was not acked");
  const typoId = await alice.page.getAttribute(msg(typo), "data-msg-id");
  await sees(bob, typo);
  await alice.page.click(`${msg(typo)} [data-testid=edit]`);
  await alice.page.fill("[data-testid=edit-input]", fixed);
  await alice.page.click("[data-testid=edit-save]");
  const edited = `[data-testid=message][data-msg-id="${typoId}"]:has([data-testid=message-body]:text-is("${fixed}")):has([data-testid=edited]:text-is("(edited)"))`;
  await until(alice, edited, "her message does not show the edit");
  await until(bob, edited, "the edit did not reach bob (live)");
  if (await bob.page.locator(`#messages :text("${typo}")`).count()) await fail("bob still shows the text before the edit");
  await until(bob, `${conv(direct)} [data-testid=conv-last]:text-is("${fixed}")`, "the list preview does not follow the edit");
  await snap(bob, "browser-edited.png");

  // --- Block (v1.2): Bob blocks Alice; her send is refused with the server's error; then he unblocks.
  bob.page.once("dialog", (d) => d.accept());
  await bob.page.click("[data-testid=block]");
  await until(bob, "[data-testid=block][data-blocked=true]:text-is('Unblock')", "the header does not offer Unblock");
  await until(bob, "[data-testid=chat-sub]:has-text('blocked')", "the header does not say alice is blocked");
  const refused = "Are you there? " + stamp;
  await say(alice, refused);
  await until(alice, "[data-testid=send-error]:has-text('permission_denied')", "her send to someone who blocked her shows no error");
  await until(alice, `#messages .msg:has-text("${refused}")`, "the refused message still shows as sent", "detached");
  await snap(alice, "browser-blocked.png");
  if (await bob.page.locator(`#messages :text("${refused}")`).count()) await fail("bob got a message from someone he blocked");
  await bob.page.click("[data-testid=block]");
  await until(bob, "[data-testid=block][data-blocked=false]:text-is('Block')", "the header does not offer Block again");
  const again = "Back again " + stamp;
  await say(alice, again);
  await sees(bob, again);
  await until(alice, "[data-testid=send-error]", "the send error stays after an accepted send", "detached");

  // --- A group's join cutoff and mentions (v1.2): Carol is added after a
  // message; she sees what came after her join only. Alice mentions her.
  const carol = await person("carol_" + stamp, "Carol Danvers");
  const history = "History " + stamp;
  await alice.page.fill("#gname", history);
  await alice.page.click("#mkgroup");
  await alice.page.waitForSelector("#groupbar:not(.hidden)");
  await until(alice, `[data-testid=chat-title]:text-is("${history}")`, "the new group is not open");
  const hgroup = await alice.page.getAttribute("[data-testid=conv].active", "data-conv-id");
  const before = "Before Carol joined " + stamp;
  await say(alice, before);
  await until(alice, `${msg(before)}[data-seq]:not(.pending)`, "her group message was not acked");
  await alice.page.fill("#newmember", carol.name);
  await alice.page.click("#addmember");
  await until(alice, notice("member_added", `You added ${carol.display}`), "no notice of adding carol");
  const after = "After Carol joined " + stamp;
  await say(alice, after);
  const mention = `Welcome @${carol.name}, glad you are here`;
  await say(alice, mention);
  await until(alice, `${msgWith(mention)} [data-testid=mention]:text-is("@${carol.name}")`, "the mention is not set off in her message");
  await until(carol, `${conv(hgroup)}:has-text("${history}")`, "carol never got the group");
  await until(carol, `${conv(hgroup)} [data-testid=mention-badge]`, "no mention badge on the group (live)");
  // After a reload the badge comes from the server's list (`mentioned`).
  await carol.page.reload();
  await until(carol, "#dot.on", "did not reconnect after the reload");
  await until(carol, `${conv(hgroup)} [data-testid=mention-badge]`, "no mention badge on the group after a reload (server's list)");
  await snap(carol, "browser-mention.png");
  await carol.page.click(conv(hgroup));
  await sees(carol, after);
  await until(carol, `${msgWith(mention)}[data-mentioned=true]`, "the message mentioning her is not marked");
  await until(carol, notice("member_added", `${alice.display} added you`), "no notice of being added");
  if (await carol.page.locator(`#messages :text("${before}")`).count()) await fail("carol sees a group message from before she joined");
  await until(carol, `${conv(hgroup)} [data-testid=mention-badge]`, "the mention badge stays after reading", "detached");
  await noIds(carol, [alice.id, bob.id, carol.id]);
  // The server agrees: her history starts after her join.
  const login = await (await fetch(base + "/api/v1/sessions", { method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ username: carol.name, password: "password123" }) })).json();
  const hist = await (await fetch(`${base}/api/v1/conversations/${hgroup}/messages?after_seq=0&limit=100`, { headers: { authorization: "Bearer " + login.token } })).json();
  const bodies = (hist.messages || []).map(m => m.body);
  if (bodies.includes(before) || !bodies.includes(after)) await fail(`carol's history over HTTP: ${JSON.stringify(bodies)}`);
  await snap(carol, "browser-join-cutoff.png");
  await alice.page.click(conv(direct));
  await until(alice, edited, "her edited message is not shown in the 1:1");
  for (const p of [alice, bob]) await noIds(p, [alice.id, bob.id, carol.id]);
  await snap(alice, path.basename(shot));

  console.log(`browser test passed: ${alice.name} (${alice.id}) and ${bob.name} (${bob.id}) chatted 1:1 and in a group; ` +
    `unread badge, read ticks, typing, presence, recall (live and after reload) and group administration (rename, promote, mute member, kick, mute group, dissolve) and scheduled delivery (refused horizon, pending bubble, cancel, list after reload, delivery at ${at} to both) checked; ` +
    `attachments (a picture shown inline, a file with name and size) checked; ` +
    `people: display names without ids, chat by username, contact request and accept, live edit, block and unblock, server read ticks, join cutoff and mentions checked; screenshots in ${dir}`);
} finally {
  await browser.close();
}
