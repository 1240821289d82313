// A search-as-you-type user picker shared by "New chat" and "Add members".
import { avatar, h } from "../dom.js";
import { t } from "../i18n.js";

/**
 * Returns {el, selected: Map(user_id → name)}. Shows my contacts first; typing searches all users.
 * `exclude` hides users (e.g. current members).
 */
export function peoplePicker(store, { exclude = new Set(), onChange = () => {} } = {}) {
  const selected = new Map();
  const list = h("ul", { class: "pick-list", "aria-label": t("search_users") });
  const count = h("p", { class: "muted pick-count", "aria-live": "polite" });
  let results = null;
  let timer = 0;
  let seq = 0;

  const query = h("input", {
    type: "search", class: "search", placeholder: t("search_users_hint"), "aria-label": t("search_users"),
    oninput: () => {
      clearTimeout(timer);
      timer = setTimeout(search, 200);
    },
  });

  async function search() {
    const q = query.value.trim();
    const mine = ++seq;
    if (!q) {
      results = null;
      render();
      return;
    }
    try {
      const data = await store.http.searchUsers(q);
      if (mine !== seq) return;
      results = (data.users || []).filter((u) => u.user_id !== store.me.user_id);
      for (const u of results) store.rememberUser(u);
    } catch {
      results = [];
    }
    render();
  }

  function render() {
    const people = results ?? [...store.contacts.values()];
    const rows = people.filter((p) => !exclude.has(p.user_id)).map((p) => {
      const name = store.nameOf(p.user_id);
      const box = h("input", {
        type: "checkbox", checked: selected.has(p.user_id),
        "aria-label": name,
        onchange: () => {
          if (box.checked) selected.set(p.user_id, name);
          else selected.delete(p.user_id);
          count.textContent = t("selected_n", { n: selected.size });
          onChange(selected);
        },
      });
      return h("li", {}, h("label", { class: "pick" }, box, avatar(name, p.user_id), h("span", { class: "pick-name" }, name),
        p.username ? h("span", { class: "muted" }, `@${p.username}`) : null));
    });
    list.replaceChildren(...rows);
    if (!rows.length) list.appendChild(h("li", { class: "muted empty" }, results ? t("no_results") : t("no_contacts")));
  }

  render();
  count.textContent = t("selected_n", { n: 0 });
  return { el: h("div", { class: "people-picker" }, query, list, count), selected, focus: () => query.focus() };
}
