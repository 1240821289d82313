// Tiny DOM helpers. User text only ever goes through textContent (never innerHTML).

/**
 * h("button", {class: "x", onclick: fn, "aria-label": "Send"}, "text", childNode)
 * Attributes starting with "on" become event listeners; `true`/`false` toggle boolean attributes.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      el.className = value;
    } else if (name === "dataset") {
      Object.assign(el.dataset, value);
    } else if (name === "value") {
      el.value = value;
    } else if (value === true) {
      el.setAttribute(name, "");
    } else {
      el.setAttribute(name, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

/** Reorder `container`'s children to exactly `nodes`, moving only what changed (keeps focus). */
export function reconcile(container, nodes) {
  let cursor = container.firstChild;
  for (const node of nodes) {
    if (node === cursor) {
      cursor = cursor.nextSibling;
      continue;
    }
    container.insertBefore(node, cursor);
  }
  while (cursor) {
    const next = cursor.nextSibling;
    container.removeChild(cursor);
    cursor = next;
  }
}

const AVATAR_COLORS = 8;

/** A round avatar with the first character of a name; the colour comes from a class, not inline style. */
export function avatar(name, id, size = "") {
  let hash = 0;
  for (const ch of String(id || name || "?")) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  const first = Array.from(String(name || "?").trim())[0] || "?";
  return h("span", { class: `avatar c${hash % AVATAR_COLORS} ${size}`, "aria-hidden": "true" }, first.toUpperCase());
}

/** Open a modal <dialog>; resolves when it closes. Removes itself afterwards. */
export function openDialog(dialog) {
  document.body.appendChild(dialog);
  dialog.addEventListener("close", () => dialog.remove(), { once: true });
  dialog.showModal();
  return dialog;
}

let toastTimer = 0;
export function toast(text) {
  let box = document.getElementById("toast");
  if (!box) {
    box = h("div", { id: "toast", role: "status", "aria-live": "polite" });
    document.body.appendChild(box);
  }
  box.textContent = text;
  box.classList.add("show");
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => box.classList.remove("show"), 3500);
}
