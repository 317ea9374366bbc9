// The admin page: checks the signed-in user (the chat page's token) is an admin, then shows
// the tabs. Each tab module has init() (once), show() (load, each time it is opened) and hide().

import { currentUser, token } from "../api.js";
import { $ } from "../dom.js";
import * as analytics from "./analytics.js";
import * as providers from "./providers.js";
import * as queues from "./queues.js";
import * as routing from "./routing.js";
import * as users from "./users.js";

const TABS = { providers, routing, analytics, queues, users };
let current = null;

function deny() {
  $("#admin-view").hidden = true;
  $("#admin-denied").hidden = false;
  if (current) TABS[current].hide();
  current = null;
}

function tabFromHash() {
  const name = location.hash.replace(/^#/, "");
  return name in TABS ? name : "providers";
}

async function open(name) {
  if (current === name) return;
  if (current) TABS[current].hide();
  current = name;
  for (const button of document.querySelectorAll("#admin-nav .tab")) {
    const selected = button.dataset.tab === name;
    button.classList.toggle("active", selected);
    button.setAttribute("aria-selected", String(selected));
  }
  for (const panel of document.querySelectorAll(".tab-panel")) panel.hidden = panel.dataset.tab !== name;
  if (location.hash !== `#${name}`) history.replaceState(null, "", `#${name}`);
  await TABS[name].show();
}

async function start() {
  if (!token()) return deny();
  let me;
  try {
    me = await currentUser();
  } catch {
    return deny(); // expired token, disabled user, server down: the chat page signs in again
  }
  if (!me?.is_admin) return deny();
  window.addEventListener("switchboard:logged-out", deny);
  $("#admin-email").textContent = me.email;
  $("#admin-view").hidden = false;
  for (const tab of Object.values(TABS)) tab.init();
  for (const button of document.querySelectorAll("#admin-nav .tab")) {
    button.addEventListener("click", () => open(button.dataset.tab));
  }
  window.addEventListener("hashchange", () => open(tabFromHash()));
  await open(tabFromHash());
}

start().finally(() => {
  document.documentElement.dataset.ready = "1";
});
