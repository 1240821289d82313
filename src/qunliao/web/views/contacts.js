// Contacts: find people, friend requests (send / accept / decline), friends list, remark, block.
import { ApiError } from "../api.js";
import { avatar, h, toast } from "../dom.js";
import { t } from "../i18n.js";

export class ContactsView {
  constructor(store, onOpen) {
    this.store = store;
    this.onOpen = onOpen;
    this.results = null;
    this.timer = 0;
    this.query = h("input", {
      type: "search", class: "search", placeholder: t("search_users_hint"), "aria-label": t("search_users"),
      oninput: () => { clearTimeout(this.timer); this.timer = setTimeout(() => this.search(), 200); },
    });
    this.body = h("div", { class: "contacts-body" });
    this.el = h("div", { class: "contacts" }, h("div", { class: "search-row" }, this.query), this.body);
    this.off = [store.on("contacts", () => this.render()), store.on("users", () => this.render())];
    this.render();
    store.loadContacts().catch(() => {});
  }

  destroy() {
    for (const off of this.off) off();
    clearTimeout(this.timer);
  }

  async search() {
    const q = this.query.value.trim();
    if (!q) {
      this.results = null;
      this.render();
      return;
    }
    try {
      const data = await this.store.http.searchUsers(q);
      this.results = (data.users || []).filter((u) => u.user_id !== this.store.me.user_id);
      for (const u of this.results) this.store.rememberUser(u);
    } catch {
      this.results = [];
    }
    this.render();
  }

  render() {
    const store = this.store;
    const sections = [];
    if (this.results) {
      const rows = this.results.map((u) => this.searchRow(u));
      sections.push(h("section", {}, h("h3", {}, t("search_users")),
        rows.length ? h("ul", { class: "people" }, rows) : h("p", { class: "muted empty" }, t("no_results"))));
    }
    const incoming = store.pendingIncoming();
    if (incoming.length) {
      sections.push(h("section", { class: "requests" }, h("h3", {}, t("friend_requests")),
        h("ul", { class: "people" }, incoming.map((r) => h("li", { class: "person request" },
          avatar(r.from_display_name, r.from_user_id),
          h("span", { class: "pick-name" }, r.from_display_name, h("span", { class: "muted block" }, r.note || t("wants_to_be_friends"))),
          h("button", { class: "primary small", "aria-label": `${t("accept")} ${r.from_display_name}`, onclick: () => this.act(store.http.acceptFriendRequest(r.request_id)) }, t("accept")),
          h("button", { class: "secondary small", "aria-label": `${t("decline")} ${r.from_display_name}`, onclick: () => this.act(store.http.declineFriendRequest(r.request_id)) }, t("decline")))))));
    }
    const invitations = store.pendingInvitations();
    if (invitations.length) {
      sections.push(h("section", { class: "requests invitations" }, h("h3", {}, t("group_invitations")),
        h("ul", { class: "people" }, invitations.map((i) => {
          const title = i.title || t("group_chat");
          return h("li", { class: "person request" },
            avatar(title, i.conversation_id),
            h("span", { class: "pick-name" }, title, h("span", { class: "muted block" }, t("invites_you", { name: store.nameOf(i.inviter_id) || i.inviter_display_name }))),
            h("button", { class: "primary small", "aria-label": `${t("accept")} ${title}`, onclick: () => this.act(store.http.acceptGroupInvitation(i.invitation_id)) }, t("accept")),
            h("button", { class: "secondary small", "aria-label": `${t("decline")} ${title}`, onclick: () => this.act(store.http.declineGroupInvitation(i.invitation_id)) }, t("decline")));
        }))));
    }
    const contacts = [...store.contacts.values()].sort((a, b) => store.nameOf(a.user_id).localeCompare(store.nameOf(b.user_id), "zh-CN"));
    sections.push(h("section", {}, h("h3", {}, `${t("friends")} (${contacts.length})`),
      contacts.length
        ? h("ul", { class: "people" }, contacts.map((c) => h("li", {},
            h("button", { class: "person as-button", onclick: () => this.onOpen(c.user_id) },
              avatar(store.nameOf(c.user_id), c.user_id), h("span", { class: "pick-name" }, store.nameOf(c.user_id)),
              c.remark ? h("span", { class: "muted" }, c.display_name) : null,
              store.blocks.has(c.user_id) ? h("span", { class: "role" }, t("blocked")) : null))))
        : h("p", { class: "muted empty" }, t("no_contacts"))));
    this.body.replaceChildren(...sections);
  }

  searchRow(user) {
    const store = this.store;
    const name = store.nameOf(user.user_id);
    const outgoing = store.requests.outgoing.find((r) => r.to_user_id === user.user_id && r.status === "pending");
    let action;
    if (store.contacts.has(user.user_id)) {
      action = h("button", { class: "secondary small", onclick: () => this.onOpen(user.user_id) }, t("friends"));
    } else if (outgoing) {
      action = h("span", { class: "muted" }, t("request_sent"));
    } else {
      action = h("button", { class: "primary small", "aria-label": `${t("add_friend")} ${name}`, onclick: () => this.act(store.http.sendFriendRequest(user.user_id)) }, t("add_friend"));
    }
    return h("li", { class: "person" }, avatar(name, user.user_id),
      h("span", { class: "pick-name" }, name, h("span", { class: "muted block" }, `@${user.username || ""}`)), action);
  }

  async act(promise) {
    try {
      await this.store.act(promise);
    } catch (err) {
      toast(t("error_generic", { message: err.message }));
    }
  }
}

/** The main pane for one contact: profile, remark, message, block, remove. */
export function contactDetail(store, userId, { back, openChat }) {
  const contact = store.contacts.get(userId);
  const user = store.user(userId) || contact || { user_id: userId };
  const name = store.nameOf(userId);
  const remark = h("input", { value: (contact && contact.remark) || "", maxlength: "64", "aria-label": t("remark"), placeholder: t("remark_hint") });
  const blocked = store.blocks.has(userId);
  const fail = (err) => toast(t("error_generic", { message: err instanceof ApiError ? err.message : String(err) }));
  return h("section", { class: "contact-detail", "aria-labelledby": "contact-title" },
    h("header", { class: "chat-head" },
      h("button", { class: "icon back", "aria-label": t("back"), onclick: back }, "‹"),
      h("div", { class: "chat-heading" }, h("h2", { class: "chat-title", id: "contact-title" }, name))),
    h("div", { class: "contact-card" },
      avatar(name, userId, "big"),
      h("div", {}, h("strong", { class: "contact-name" }, user.display_name || name), h("div", { class: "muted" }, `@${user.username || ""}`)),
      contact ? h("form", {
        class: "remark-form",
        onsubmit: async (e) => {
          e.preventDefault();
          try {
            await store.act(store.http.setRemark(userId, remark.value.trim()));
            toast(t("saved"));
          } catch (err) {
            fail(err);
          }
        },
      }, h("label", { class: "field" }, h("span", {}, t("remark")), remark), h("button", { class: "secondary", type: "submit" }, t("save"))) : null,
      h("div", { class: "sheet-actions" },
        h("button", {
          class: "primary",
          onclick: async () => {
            try {
              openChat(await store.createConversation("direct", [userId]));
            } catch (err) {
              fail(err);
            }
          },
        }, t("send_message")),
        h("button", {
          class: "secondary",
          onclick: () => store.act(blocked ? store.http.unblock(userId) : store.http.block(userId)).then(() => back()).catch(fail),
        }, blocked ? t("unblock") : t("block")),
        contact ? h("button", {
          class: "danger",
          onclick: () => store.act(store.http.deleteContact(userId)).then(() => back()).catch(fail),
        }, t("delete_friend")) : null)));
}
