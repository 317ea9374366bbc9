// The sidebar: the user's chats, newest first, with rename and delete in place.

import { api } from "../api.js";
import { el } from "../dom.js";

const PAGE = 50;

export class ChatList {
  constructor(listNode, moreButton, { onOpen, onDeleted }) {
    this.listNode = listNode;
    this.moreButton = moreButton;
    this.onOpen = onOpen;
    this.onDeleted = onDeleted;
    this.chats = [];
    this.count = 0;
    this.activeId = null;
    moreButton.addEventListener("click", () => this.load(this.chats.length));
  }

  async load(offset = 0) {
    const page = await api(`/chats?limit=${PAGE}&offset=${offset}`);
    this.chats = offset ? [...this.chats, ...page.data] : page.data;
    this.count = page.count;
    this.render();
  }

  add(chat) {
    this.chats = [chat, ...this.chats.filter((other) => other.id !== chat.id)];
    this.count += 1;
    this.render();
  }

  // A chat that just had a message moves to the top, as the server orders them.
  touch(chatId) {
    const chat = this.chats.find((other) => other.id === chatId);
    if (!chat) return;
    this.chats = [chat, ...this.chats.filter((other) => other.id !== chatId)];
    this.render();
  }

  setActive(chatId) {
    this.activeId = chatId;
    for (const item of this.listNode.children) {
      item.classList.toggle("active", item.dataset.chatId === chatId);
    }
  }

  render() {
    this.listNode.replaceChildren(...this.chats.map((chat) => this.item(chat)));
    this.moreButton.hidden = this.chats.length >= this.count;
  }

  item(chat) {
    const open = el("button", { type: "button", class: "chat-open", title: chat.title, onclick: () => this.onOpen(chat) }, chat.title);
    const item = el(
      "li",
      { class: chat.id === this.activeId ? "chat-item active" : "chat-item", dataset: { chatId: chat.id } },
      open,
      el("button", { type: "button", class: "chat-rename", title: "Rename", "aria-label": "Rename", onclick: () => this.rename(item, chat) }, "✎"),
      el("button", { type: "button", class: "chat-delete", title: "Delete", "aria-label": "Delete", onclick: (event) => this.remove(event.currentTarget, chat) }, "✕"),
    );
    return item;
  }

  rename(item, chat) {
    const input = el("input", { class: "chat-title-input", value: chat.title, maxlength: "200", "aria-label": "Chat title" });
    const finish = async (save) => {
      const title = input.value.trim();
      if (save && title && title !== chat.title) {
        try {
          Object.assign(chat, await api(`/chats/${chat.id}`, { method: "PATCH", body: { title } }));
          // The server counts a rename as activity: it lists the chat first from now on.
          this.chats = [chat, ...this.chats.filter((other) => other.id !== chat.id)];
        } catch (error) {
          input.setCustomValidity(error.message);
          input.reportValidity();
          return;
        }
      }
      this.render();
      this.onRenamed?.(chat);
    };
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter") finish(true);
      if (event.key === "Escape") finish(false);
    });
    input.addEventListener("blur", () => finish(true), { once: true });
    item.replaceChildren(input);
    input.focus();
    input.select();
  }

  // The first click asks, the second deletes: no modal dialog to dismiss.
  async remove(button, chat) {
    if (button.dataset.confirm !== "1") {
      button.dataset.confirm = "1";
      button.textContent = "Delete?";
      button.classList.add("danger");
      setTimeout(() => {
        if (button.isConnected) this.render();
      }, 4000);
      return;
    }
    await api(`/chats/${chat.id}`, { method: "DELETE" });
    this.chats = this.chats.filter((other) => other.id !== chat.id);
    this.count -= 1;
    this.render();
    this.onDeleted(chat);
  }
}
