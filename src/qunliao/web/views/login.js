// Sign-in / register screen. The aria-labels "Username", "Password", "Sign in" and "Register"
// are a contract with external tests and stay English whatever the UI language (so is "Invite
// code"). The server's registration policy (GET /api/v1/server) shapes the form: "invite" adds
// the invite-code field, "closed" takes registering away and says so.
import { ApiError } from "../api.js";
import { h } from "../dom.js";
import { t } from "../i18n.js";
import { languagePicker } from "./settings.js";

export function renderLogin(store) {
  const username = h("input", {
    id: "login-username", name: "username", autocomplete: "username", "aria-label": "Username",
    autocapitalize: "none", spellcheck: "false", required: true,
  });
  const password = h("input", {
    id: "login-password", name: "password", type: "password", autocomplete: "current-password",
    "aria-label": "Password", required: true,
  });
  const displayName = h("input", {
    id: "login-display-name", name: "display_name", autocomplete: "nickname", "aria-label": t("display_name"),
    maxlength: "64",
  });
  const inviteCode = h("input", {
    id: "login-invite-code", name: "invite_code", autocomplete: "off", "aria-label": "Invite code",
    autocapitalize: "none", spellcheck: "false", maxlength: "128",
  });
  const error = h("p", { class: "form-error", role: "alert", "aria-live": "assertive" });
  const signInButton = h("button", { type: "submit", class: "primary", "aria-label": "Sign in" }, t("sign_in"));
  const registerButton = h("button", { type: "button", class: "secondary", "aria-label": "Register" }, t("register"));
  const displayNameField = h("label", { class: "field optional" }, h("span", {}, t("display_name_hint")), displayName);
  const inviteField = h("label", { class: "field optional", hidden: true }, h("span", {}, t("invite_code_hint")), inviteCode);
  const closedNote = h("p", { class: "hint registration-closed", role: "status", hidden: true }, t("registration_closed"));
  let policy = "open";

  function applyPolicy(info) {
    policy = (info && info.registration) || "open";
    inviteField.hidden = policy !== "invite";
    closedNote.hidden = policy !== "closed";
    registerButton.hidden = displayNameField.hidden = policy === "closed";
  }

  async function run(action) {
    error.textContent = "";
    const name = username.value.trim().toLowerCase();
    if (!name || !password.value) {
      error.textContent = `${t("username_rules")} ${t("password_rules")}`;
      return;
    }
    signInButton.disabled = registerButton.disabled = true;
    const code = inviteCode.value.trim();
    if (action === "register" && policy === "invite" && !code) {
      error.textContent = t("invite_code_needed");
      inviteCode.focus();
      signInButton.disabled = registerButton.disabled = false;
      return;
    }
    try {
      if (action === "register") {
        await store.register(name, password.value, displayName.value.trim() || name, policy === "invite" ? code : undefined);
      } else {
        await store.signIn(name, password.value);
      }
    } catch (err) {
      if (action === "register" && err instanceof ApiError && err.status === 403) {
        applyPolicy(await store.serverInfo({ fresh: true })); // the policy may have changed since
        error.textContent = policy === "closed" ? t("registration_closed") : t(code ? "invite_code_invalid" : "invite_code_needed");
      } else {
        error.textContent = describe(err, action);
      }
      signInButton.disabled = registerButton.disabled = false;
    }
  }

  const form = h(
    "form",
    { class: "login-form", novalidate: true, onsubmit: (e) => { e.preventDefault(); run("signin"); } },
    h("label", { class: "field" }, h("span", {}, t("username")), username),
    h("label", { class: "field" }, h("span", {}, t("password")), password),
    displayNameField,
    inviteField,
    error,
    h("div", { class: "login-actions" }, signInButton, registerButton),
    closedNote,
    h("p", { class: "hint" }, t("username_rules"), h("br"), t("password_rules")),
  );
  registerButton.addEventListener("click", () => run("register"));
  applyPolicy(store.server);
  store.serverInfo().then(applyPolicy);

  setTimeout(() => username.focus(), 0);
  return h(
    "main",
    { class: "login" },
    h(
      "section",
      { class: "login-card", "aria-labelledby": "login-title" },
      h("div", { class: "login-brand" }, h("span", { class: "logo", "aria-hidden": "true" }, "群"),
        h("div", {}, h("h1", { id: "login-title" }, "qunliao 群聊"), h("p", { class: "tagline" }, t("tagline")))),
      form,
      h("div", { class: "login-footer" }, languagePicker()),
    ),
  );
}

function describe(err, action) {
  if (err instanceof ApiError) {
    if (err.status === 401) return t("bad_credentials");
    if (err.status === 409) return t("username_taken");
    if (err.status === 429) return t("too_many_attempts");
    if (err.status === 400) return action === "register" ? `${t("username_rules")} ${t("password_rules")}` : t("bad_credentials");
    return t("error_generic", { message: err.message });
  }
  return t("error_generic", { message: String(err.message || err) });
}
