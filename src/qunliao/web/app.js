// Entry point: show the sign-in screen or the chat shell, and switch when the session changes.
import { ApiError } from "./api.js";
import { onLangChange, t } from "./i18n.js";
import { Store } from "./store.js";
import { renderLogin } from "./views/login.js";
import { Shell } from "./views/shell.js";

const root = document.getElementById("app");
const store = new Store();
let shell = null;

function render() {
  root.classList.remove("booting");
  if (shell) {
    shell.destroy();
    shell = null;
  }
  if (store.signedIn && store.me) {
    shell = new Shell(store, root);
  } else {
    root.replaceChildren(renderLogin(store));
  }
}

store.on("session", render);
onLangChange(() => {
  if (shell) shell.rerender();
  else render();
});

async function boot() {
  if (store.signedIn) {
    try {
      await store.start();
      return; // start() emitted "session"
    } catch (err) {
      if (store.signedIn && !(err instanceof ApiError)) {
        // The server is unreachable: keep the session (and the offline queue) and try again.
        root.classList.remove("booting");
        root.replaceChildren(Object.assign(document.createElement("p"), { className: "boot-note", textContent: t("connecting") }));
        setTimeout(boot, 2000);
        return;
      }
      store.forget(); // the saved token no longer works: sign in again
    }
  }
  render();
}

// Exposed for tests and debugging only; the UI never reads it.
window.qunliao = store;
boot();
