// "New chat": one person → direct chat, several (or a group name) → group.
import { h, openDialog } from "../dom.js";
import { t } from "../i18n.js";
import { peoplePicker } from "./people.js";

export function openNewChat(store, onOpen) {
  const title = h("input", { class: "group-name", maxlength: "64", placeholder: t("group_name"), "aria-label": t("group_name") });
  const error = h("p", { class: "form-error", role: "alert" });
  const go = h("button", { type: "submit", class: "primary", disabled: true }, t("start_chat"));
  const picker = peoplePicker(store, {
    onChange: (selected) => {
      go.disabled = selected.size === 0;
      go.textContent = selected.size > 1 || title.value.trim() ? t("create_group") : t("start_chat");
    },
  });
  title.addEventListener("input", () => {
    go.textContent = picker.selected.size > 1 || title.value.trim() ? t("create_group") : t("start_chat");
  });

  const dialog = h("dialog", { class: "sheet", "aria-label": t("new_chat") },
    h("form", {
      class: "sheet-body",
      onsubmit: async (e) => {
        e.preventDefault();
        const ids = [...picker.selected.keys()];
        if (!ids.length) return;
        const name = title.value.trim();
        go.disabled = true;
        try {
          const group = ids.length > 1 || name;
          const id = await store.createConversation(group ? "group" : "direct", ids, group ? name || defaultTitle(store, picker.selected) : undefined);
          dialog.close();
          onOpen(id);
        } catch (err) {
          error.textContent = t("error_generic", { message: err.message });
          go.disabled = false;
        }
      },
    },
      h("header", { class: "sheet-head" }, h("h2", {}, t("new_chat")),
        h("button", { type: "button", class: "icon", "aria-label": t("close"), onclick: () => dialog.close() }, "✕")),
      h("p", { class: "muted" }, t("new_chat_hint")),
      picker.el,
      h("label", { class: "field" }, h("span", {}, t("group_name")), title),
      error,
      h("div", { class: "sheet-actions" }, go)));
  openDialog(dialog);
  picker.focus();
}

function defaultTitle(store, selected) {
  const names = [store.me.display_name, ...selected.values()];
  const joined = names.slice(0, 4).join(", ");
  return Array.from(joined).slice(0, 60).join("");
}
