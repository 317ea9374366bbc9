// The chat page: log in, pick a chat, provider and model, send, and watch the reply stream.

import { api, currentUser, logIn, logOut, register, token } from "./api.js";
import { $, el, showError } from "./dom.js";
import { ChatList } from "./chat/chat-list.js";
import { loadMarkdown } from "./markdown.js";
import { ProviderCatalog, ProviderPicker, ROUTES } from "./chat/providers.js";
import { ReplyView } from "./chat/reply.js";
import { SystemPrompts } from "./chat/prompts.js";

const HISTORY_LIMIT = 200;
const TITLE_CHARS = 60;

const catalog = new ProviderCatalog();
let chatPicker;
let messagePicker;
let prompts;
let chats;
let currentChat = null; // null: a new chat, created with its first message
let replies = new Map();
let openedAt = 0; // which openChat call is the latest (a slow one must not win)

function showAuth() {
  for (const reply of replies.values()) reply.stop();
  replies = new Map();
  $("#app-view").hidden = true;
  $("#auth-view").hidden = false;
  $("#auth-email").focus();
}

async function showApp() {
  // One round trip for all four: the token is checked by each of them.
  const [user] = await Promise.all([currentUser(), catalog.refresh(), prompts.load(), chats.load()]);
  $("#user-email").textContent = user.email;
  $("#admin-link").hidden = !user.is_admin;
  // After a reload the page comes back to the chat it showed (its id is in the URL's hash).
  const chatId = /^#chat=([0-9a-f-]{36})$/.exec(location.hash)?.[1];
  let opened = false;
  if (chatId) {
    try {
      await openChat(await api(`/chats/${chatId}`));
      opened = true;
    } catch {
      // Deleted meanwhile, or not this user's: a new chat instead.
    }
  }
  if (!opened) newChat();
  // Shown once filled: a choice made in a half-loaded view would be overwritten.
  $("#auth-view").hidden = true;
  $("#app-view").hidden = false;
  $("#message-input").focus();
}

async function authenticate(action) {
  const email = $("#auth-email").value.trim();
  const password = $("#auth-password").value;
  const errorNode = $("#auth-error");
  showError(errorNode, null);
  if (!$("#auth-form").reportValidity()) return;
  try {
    await action(email, password);
    $("#auth-password").value = "";
    await showApp();
  } catch (error) {
    showError(errorNode, error);
  }
}

function newChat() {
  currentChat = null;
  chats.setActive(null);
  history.replaceState(null, "", location.pathname);
  stopFollowing();
  $("#chat-title").textContent = "New chat";
  $("#messages").replaceChildren(el("p", { class: "muted empty" }, "Pick a provider and a model, then say something."));
  chatPicker.set("", "");
  prompts.render(prompts.defaultPrompt?.id ?? "");
  updateStopButton();
  $("#message-input").focus();
}

function stopFollowing() {
  for (const reply of replies.values()) reply.stop();
  replies = new Map();
}

async function openChat(chat) {
  const opening = ++openedAt;
  stopFollowing();
  currentChat = chat;
  chats.setActive(chat.id);
  history.replaceState(null, "", `#chat=${chat.id}`);
  $("#chat-title").textContent = chat.title;
  chatPicker.set(chat.provider_name, chat.model_name);
  prompts.render(chat.system_prompt_id ?? "");
  const markdown = loadMarkdown().catch(() => {});
  let page = await api(`/chats/${chat.id}/messages?limit=${HISTORY_LIMIT}`);
  if (page.count > HISTORY_LIMIT) {
    page = await api(`/chats/${chat.id}/messages?limit=${HISTORY_LIMIT}&offset=${page.count - HISTORY_LIMIT}`);
  }
  await markdown;
  if (opening !== openedAt) return;
  $("#messages").replaceChildren();
  for (const message of page.data) appendMessage(message);
  scrollToEnd(true);
  updateStopButton();
}

function appendMessage(message) {
  const list = $("#messages");
  list.querySelector(".empty")?.remove();
  if (message.role === "user") {
    list.append(
      el(
        "article",
        { class: "message", dataset: { role: "user", messageId: message.id, status: message.status ?? "" } },
        el("div", { class: "message-body" }, message.content),
      ),
    );
    return null;
  }
  const reply = new ReplyView(message, { onRetry: retry, onFinal: updateStopButton });
  replies.set(reply.id, reply);
  list.append(reply.node);
  reply.follow();
  return reply;
}

function messageBody(text) {
  const body = { message: text };
  // This message's own provider and model, else the chat's (the server applies the chat's
  // stored choice when a field is absent).
  Object.assign(body, messagePicker.provider ? messagePicker.selection : chatPicker.selection);
  const temperature = $("#temperature").value;
  const maxTokens = $("#max-tokens").value;
  if (temperature !== "") body.temperature = Number(temperature);
  if (maxTokens !== "") body.max_tokens = Number(maxTokens);
  return body;
}

async function ensureChat(text) {
  if (currentChat) return currentChat;
  const body = { title: text.split("\n")[0].slice(0, TITLE_CHARS) || "New chat" };
  Object.assign(body, chatPicker.selection);
  if (prompts.select.value) body.system_prompt_id = prompts.select.value;
  const chat = await api("/chats", { method: "POST", body });
  currentChat = chat;
  chats.add(chat);
  chats.setActive(chat.id);
  history.replaceState(null, "", `#chat=${chat.id}`);
  $("#chat-title").textContent = chat.title;
  return chat;
}

async function submit(body) {
  const chat = await ensureChat(body.message);
  const accepted = await api(`/chats/${chat.id}/messages`, {
    method: "POST",
    body,
    // A retried request (a flaky network) never queues the message twice.
    headers: { "Idempotency-Key": crypto.randomUUID() },
  });
  const now = new Date().toISOString();
  appendMessage({ id: accepted.message_id, role: "user", content: body.message, status: null });
  appendMessage({
    id: accepted.reply_id,
    chat_id: chat.id,
    role: "assistant",
    status: accepted.status,
    content: "",
    provider: accepted.provider,
    model: accepted.model,
    usage: null,
    cost: null,
    error: null,
    created_at: now,
  });
  chats.touch(chat.id);
  scrollToEnd(true);
  updateStopButton();
}

async function send() {
  const input = $("#message-input");
  const text = input.value;
  const errorNode = $("#composer-error");
  if (!text.trim()) return;
  showError(errorNode, null);
  $("#send-button").disabled = true;
  try {
    await submit(messageBody(text));
    // Cleared only once the server has the message: a refused one stays to be edited.
    input.value = "";
  } catch (error) {
    showError(errorNode, error);
  } finally {
    $("#send-button").disabled = false;
    input.focus();
  }
}

async function retry(reply) {
  const node = reply.node.previousElementSibling;
  const text = node?.dataset.role === "user" ? node.querySelector(".message-body").textContent : null;
  const errorNode = $("#composer-error");
  if (!text) return;
  showError(errorNode, null);
  try {
    const body = { message: text };
    if (reply.message.provider) body.provider = reply.message.provider;
    if (reply.message.model) body.model = reply.message.model;
    await submit(body);
  } catch (error) {
    showError(errorNode, error);
  }
}

function runningReply() {
  return [...replies.values()].reverse().find((reply) => !reply.isFinal) ?? null;
}

function updateStopButton() {
  $("#stop-button").hidden = !runningReply();
}

async function stop() {
  const reply = runningReply();
  if (!reply) return;
  try {
    await api(`/messages/${reply.id}/cancel`, { method: "POST" });
  } catch (error) {
    // Finished meanwhile (409): its end event is on its way.
    if (error.status !== 409) showError($("#composer-error"), error);
  }
}

async function saveChatSettings(changes) {
  if (!currentChat) return;
  try {
    currentChat = await api(`/chats/${currentChat.id}`, { method: "PATCH", body: changes });
    showError($("#composer-error"), null);
  } catch (error) {
    showError($("#composer-error"), error);
  }
}

// Keeps the newest text in view, unless the reader has scrolled up to read.
function scrollToEnd(force = false) {
  const list = $("#messages");
  const nearEnd = list.scrollHeight - list.scrollTop - list.clientHeight < 120;
  if (force || nearEnd) list.scrollTop = list.scrollHeight;
}

function wire() {
  chatPicker = new ProviderPicker(catalog, $("#provider-select"), $("#model-select"), {
    provider: "Server default",
    model: "Provider default",
  });
  messagePicker = new ProviderPicker(catalog, $("#override-provider"), $("#override-model"), {
    provider: "The chat's provider",
    model: "Provider default",
  });
  prompts = new SystemPrompts({ select: $("#system-prompt-select"), dialog: $("#prompts-dialog") });
  chats = new ChatList($("#chat-list"), $("#more-chats"), {
    onOpen: (chat) => openChat(chat).catch((error) => showError($("#composer-error"), error)),
    onDeleted: (chat) => currentChat?.id === chat.id && newChat(),
  });
  chats.onRenamed = (chat) => {
    if (currentChat?.id === chat.id) {
      currentChat = chat;
      $("#chat-title").textContent = chat.title;
    }
  };

  $("#auth-form").addEventListener("submit", (event) => {
    event.preventDefault();
    authenticate(logIn);
  });
  $("#register-button").addEventListener("click", () => authenticate(register));
  $("#logout").addEventListener("click", logOut);
  window.addEventListener("switchboard:logged-out", showAuth);

  $("#new-chat").addEventListener("click", newChat);
  $("#composer").addEventListener("submit", (event) => {
    event.preventDefault();
    send();
  });
  $("#message-input").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send();
    }
  });
  $("#stop-button").addEventListener("click", stop);
  $("#manage-prompts").addEventListener("click", () => prompts.open());
  $("#prompts-dialog").addEventListener("close", () => prompts.render(currentChat?.system_prompt_id ?? prompts.select.value));

  // A route is saved once one is picked: the chat's model is then the route's name.
  $("#provider-select").addEventListener("change", () => {
    if (chatPicker.provider !== ROUTES) saveChatSettings({ provider: chatPicker.provider || null, model: null });
  });
  $("#model-select").addEventListener("change", () => {
    const { provider = null, model = null } = chatPicker.selection;
    if (chatPicker.provider !== ROUTES || model) saveChatSettings({ provider, model });
  });
  $("#system-prompt-select").addEventListener("change", () =>
    saveChatSettings({ system_prompt_id: prompts.select.value || null }),
  );

  $("#messages").addEventListener("reply:grew", () => scrollToEnd());
  // A tab in the background may have had its connections throttled or dropped: on return,
  // every unfinished reply resumes after its last event, and the lists are refreshed.
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState !== "visible" || $("#app-view").hidden) return;
    for (const reply of replies.values()) reply.reconnect();
    catalog.refresh().catch(() => {});
    chats.load().catch(() => {});
  });
  catalog.keepFresh();
}

async function main() {
  wire();
  if (token()) {
    try {
      await showApp();
    } catch {
      showAuth();
    }
  } else {
    showAuth();
  }
  document.documentElement.dataset.ready = "1";
  // Fetched once the page is usable, so the first reply renders as markdown at once.
  loadMarkdown().catch(() => {});
}

main();
