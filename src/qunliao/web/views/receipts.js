// "Who has read my message": the DingTalk-style receipt list, refreshed while it is open.
import { avatar, h, openDialog } from "../dom.js";
import { t } from "../i18n.js";
import { shorten } from "./message.js";

export function openReceipts(store, conversationId, msg) {
  const readList = h("ul", { class: "people" });
  const unreadList = h("ul", { class: "people" });
  const readHead = h("h3", {}, t("read_by", { n: "…" }));
  const unreadHead = h("h3", {}, t("unread_by", { n: "…" }));
  const person = (userId) => h("li", { class: "person" }, avatar(store.nameOf(userId, conversationId), userId), h("span", {}, store.nameOf(userId, conversationId)));

  let pending = false;
  async function refresh() {
    if (pending) return;
    pending = true;
    try {
      const data = await store.receipts(conversationId, msg.seq);
      const readBy = data.read_by || [];
      const unreadBy = data.unread_by || [];
      readHead.textContent = t("read_by", { n: readBy.length });
      unreadHead.textContent = t("unread_by", { n: unreadBy.length });
      readList.replaceChildren(...readBy.map(person));
      unreadList.replaceChildren(...unreadBy.map(person));
    } catch (err) {
      readHead.textContent = t("error_generic", { message: err.message });
    } finally {
      pending = false;
    }
  }

  const dialog = h("dialog", { class: "sheet receipts", "aria-label": t("receipts") },
    h("div", { class: "sheet-body" },
      h("header", { class: "sheet-head" }, h("h2", {}, t("receipts")),
        h("button", { type: "button", class: "icon", "aria-label": t("close"), onclick: () => dialog.close() }, "✕")),
      h("p", { class: "muted quote-line" }, shorten(msg.body && msg.body.text, 80)),
      h("div", { class: "receipt-columns" },
        h("section", { class: "unread-col" }, unreadHead, unreadList),
        h("section", { class: "read-col" }, readHead, readList))));
  const off = store.on("messages", (id) => { if (id === conversationId) refresh(); });
  dialog.addEventListener("close", off);
  openDialog(dialog);
  refresh();
}
