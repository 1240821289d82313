// Language picker and the "me" dialog: display name, language, group invitation consent, sign out.
import { avatar, h, openDialog, toast } from "../dom.js";
import { fullTime, lastSeen } from "../format.js";
import { LANGUAGES, lang, setLang, t } from "../i18n.js";

export function languagePicker() {
  const select = h(
    "select",
    { class: "lang-picker", "aria-label": t("language"), onchange: (e) => setLang(e.target.value) },
    LANGUAGES.map(([code, name]) => h("option", { value: code, selected: code === lang() }, name)),
  );
  return h("label", { class: "lang" }, h("span", { class: "lang-icon", "aria-hidden": "true" }, "文/A"), select);
}

/** The signed-in devices, each with when it was last used; `load()` (again) fills it. */
function deviceList(store) {
  const list = h("ul", { class: "devices", "aria-label": t("devices") });
  const load = () => store.http.sessions().then(({ devices }) => {
    const now = Date.now();
    list.replaceChildren(...devices.map((device) => h("li", { class: "device" },
      h("span", { class: "device-name" }, device.device_name,
        device.current ? h("span", { class: "device-tag" }, t("this_device")) : null),
      h("time", { class: "muted", datetime: new Date(device.last_seen_at).toISOString(), title: fullTime(device.last_seen_at) },
        lastSeen(device.last_seen_at, now)))));
  }).catch((err) => toast(t("error_generic", { message: err.message })));
  load();
  return { list, load };
}

export function openSettings(store) {
  const me = store.me;
  const devices = deviceList(store);
  const name = h("input", { value: me.display_name || "", maxlength: "64", "aria-label": t("display_name") });
  // Saved as soon as it is switched (not with the form): the server's answer is the truth.
  const consent = h("input", {
    type: "checkbox", disabled: true,
    onchange: async () => {
      const wanted = consent.checked;
      consent.disabled = true;
      try {
        const settings = await store.http.updateSettings({ group_invite_consent: wanted });
        consent.checked = Boolean(settings.group_invite_consent);
      } catch (err) {
        consent.checked = !wanted;
        toast(t("error_generic", { message: err.message }));
      } finally {
        consent.disabled = false;
      }
    },
  });
  store.http.settings().then((settings) => {
    consent.checked = Boolean(settings.group_invite_consent);
    consent.disabled = false;
  }).catch(() => {});
  const dialog = h(
    "dialog",
    { class: "sheet", "aria-label": t("settings") },
    h("form", {
      method: "dialog",
      class: "sheet-body",
      onsubmit: async (e) => {
        e.preventDefault();
        const value = name.value.trim();
        if (value && value !== me.display_name) {
          try {
            const profile = await store.http.updateMe(value);
            Object.assign(store.me, profile);
            store.rememberUser(profile);
            store.emit("users");
          } catch (err) {
            toast(t("error_generic", { message: err.message }));
            return;
          }
        }
        dialog.close();
      },
    },
      h("header", { class: "sheet-head" }, h("h2", {}, t("settings")),
        h("button", { type: "button", class: "icon", "aria-label": t("close"), onclick: () => dialog.close() }, "✕")),
      h("div", { class: "profile" }, avatar(me.display_name, me.user_id, "big"),
        h("div", {}, h("strong", {}, me.display_name), h("div", { class: "muted" }, `@${me.username}`))),
      h("label", { class: "field" }, h("span", {}, t("display_name")), name),
      h("div", { class: "field" }, h("span", {}, t("language")), languagePicker()),
      h("label", { class: "toggle-field" }, consent,
        h("span", {}, t("invite_consent"), h("span", { class: "muted block" }, t("invite_consent_hint")))),
      h("div", { class: "sheet-actions" },
        h("button", { type: "submit", class: "primary" }, t("save")),
        h("button", { type: "button", class: "danger", onclick: () => { dialog.close(); store.signOut(); } }, t("sign_out"))),
      h("h3", {}, t("devices")),
      devices.list,
      h("button", {
        type: "button", class: "link other-devices",
        onclick: () => store.http.del("/sessions/others").then(() => { toast(t("others_signed_out")); devices.load(); }).catch((err) => toast(t("error_generic", { message: err.message }))),
      }, t("sign_out_others")),
    ),
  );
  openDialog(dialog);
}
