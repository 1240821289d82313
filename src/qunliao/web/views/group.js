// Group info: name, announcement, members with roles, add/remove, leave.
import { avatar, h, openDialog, toast } from "../dom.js";
import { t } from "../i18n.js";
import { peoplePicker } from "./people.js";

const ROLE_ORDER = { owner: 0, admin: 1, member: 2 };

export function openGroupInfo(store, conversationId) {
  const body = h("div", { class: "sheet-body" });
  const dialog = h("dialog", { class: "sheet group-info", "aria-label": t("group_info") }, body);
  const fail = (err) => toast(t("error_generic", { message: err.message }));

  function render() {
    const conv = store.conversations.get(conversationId);
    if (!conv) {
      dialog.close();
      return;
    }
    const manager = conv.my_role === "owner" || conv.my_role === "admin";
    const title = h("input", { value: conv.title || "", maxlength: "64", "aria-label": t("group_name"), readonly: !manager });
    const announcement = h("textarea", { rows: "3", "aria-label": t("announcement"), readonly: !manager });
    announcement.value = conv.announcement || "";
    const members = [...(store.members.get(conversationId)?.values() || [])].sort(
      (a, b) => (ROLE_ORDER[a.role] ?? 3) - (ROLE_ORDER[b.role] ?? 3) || store.nameOf(a.user_id, conversationId).localeCompare(store.nameOf(b.user_id, conversationId)));
    const memberRows = members.map((m) => {
      const name = store.nameOf(m.user_id, conversationId);
      const mayRemove = m.user_id !== store.me.user_id && m.role !== "owner" && (conv.my_role === "owner" || (conv.my_role === "admin" && m.role === "member"));
      return h("li", { class: "person" }, avatar(name, m.user_id), h("span", { class: "pick-name" }, name),
        m.user_id === store.me.user_id ? h("span", { class: "muted" }, `(${t("you")})`) : null,
        h("span", { class: `role role-${m.role}` }, t(`role_${m.role}`)),
        conv.my_role === "owner" && m.role !== "owner"
          ? h("button", {
              class: "link",
              "aria-label": `${m.role === "admin" ? t("unmake_admin") : t("make_admin")} ${name}`,
              onclick: () => store.http.setMemberRole(conversationId, m.user_id, m.role === "admin" ? "member" : "admin").then(() => store.loadMembers(conversationId)).catch(fail),
            }, m.role === "admin" ? t("unmake_admin") : t("make_admin"))
          : null,
        mayRemove ? h("button", { class: "link danger", "aria-label": `${t("remove")} ${name}`, onclick: () => store.http.removeMember(conversationId, m.user_id).then(() => store.loadMembers(conversationId)).catch(fail) }, t("remove")) : null);
    });
    const picker = peoplePicker(store, { exclude: new Set(members.map((m) => m.user_id)) });
    const addBox = h("details", { class: "add-members" }, h("summary", {}, t("add_members")), picker.el,
      h("button", {
        type: "button", class: "primary",
        onclick: async () => {
          const ids = [...picker.selected.keys()];
          if (!ids.length) return;
          try {
            const result = await store.http.addMembers(conversationId, ids);
            if (result.invited && result.invited.length) toast(t("invited_n", { n: result.invited.length }));
            await store.loadMembers(conversationId);
            await store.refreshConversation(conversationId);
          } catch (err) {
            fail(err);
          }
        },
      }, t("add")));

    body.replaceChildren(
      h("header", { class: "sheet-head" }, h("h2", {}, t("group_info")),
        h("button", { type: "button", class: "icon", "aria-label": t("close"), onclick: () => dialog.close() }, "✕")),
      h("form", {
        class: "group-form",
        onsubmit: async (e) => {
          e.preventDefault();
          const fields = {};
          if (title.value.trim() !== (conv.title || "")) fields.title = title.value.trim();
          if (announcement.value !== (conv.announcement || "")) fields.announcement = announcement.value;
          if (!Object.keys(fields).length) return;
          try {
            await store.updateConversation(conversationId, fields);
            toast(t("saved"));
          } catch (err) {
            fail(err);
          }
        },
      },
        h("label", { class: "field" }, h("span", {}, t("group_name")), title),
        h("label", { class: "field" }, h("span", {}, t("announcement")), announcement),
        manager ? h("div", { class: "sheet-actions" }, h("button", { type: "submit", class: "primary" }, t("save"))) : null),
      h("h3", {}, `${t("members")} (${members.length})`),
      h("ul", { class: "people members", "aria-label": t("members") }, memberRows),
      addBox,
      h("div", { class: "sheet-actions" },
        h("button", {
          type: "button", class: "danger",
          onclick: async () => {
            if (!window.confirm(t("leave_confirm"))) return;
            try {
              await store.http.removeMember(conversationId, store.me.user_id);
              dialog.close();
              store.conversations.delete(conversationId);
              store.setActive(null);
              store.emit("conversations");
            } catch (err) {
              fail(err);
            }
          },
        }, t("leave_group"))));
  }

  // Re-render on changes, but never under the user's fingers while they edit a field.
  const editing = () => dialog.contains(document.activeElement) && /^(INPUT|TEXTAREA)$/.test(document.activeElement.tagName);
  const refresh = (id) => { if (id === conversationId && !editing()) render(); };
  const offs = [store.on("members", refresh), store.on("conversation", refresh)];
  dialog.addEventListener("close", () => offs.forEach((off) => off()));
  render();
  openDialog(dialog);
  store.loadMembers(conversationId).catch(() => {});
}
