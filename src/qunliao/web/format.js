// Dates and times the way chat apps show them: "14:05", "Yesterday", "Mon", "2026/11/03".
import { lang, t } from "./i18n.js";

const DAY_MS = 24 * 60 * 60 * 1000;

function locale() {
  return lang() === "zh" ? "zh-CN" : "en-GB";
}

function startOfDay(ms) {
  const d = new Date(ms);
  d.setHours(0, 0, 0, 0);
  return d.getTime();
}

export function dayKey(ms) {
  const d = new Date(ms);
  return `${d.getFullYear()}-${d.getMonth() + 1}-${d.getDate()}`;
}

export function clock(ms) {
  return new Intl.DateTimeFormat(locale(), { hour: "2-digit", minute: "2-digit", hour12: false }).format(ms);
}

/** Short time for the conversation list. */
export function listTime(ms, now = Date.now()) {
  if (!ms) return "";
  const days = Math.round((startOfDay(now) - startOfDay(ms)) / DAY_MS);
  if (days <= 0) return clock(ms);
  if (days === 1) return t("yesterday");
  if (days < 7) return new Intl.DateTimeFormat(locale(), { weekday: "short" }).format(ms);
  return new Intl.DateTimeFormat(locale(), { year: "numeric", month: "2-digit", day: "2-digit" }).format(ms);
}

/** Label of a date separator in the chat. */
export function dayLabel(ms, now = Date.now()) {
  const days = Math.round((startOfDay(now) - startOfDay(ms)) / DAY_MS);
  if (days <= 0) return t("today");
  if (days === 1) return t("yesterday");
  const sameYear = new Date(ms).getFullYear() === new Date(now).getFullYear();
  const options = sameYear
    ? { month: "long", day: "numeric", weekday: "long" }
    : { year: "numeric", month: "long", day: "numeric" };
  return new Intl.DateTimeFormat(locale(), options).format(ms);
}

/** When a device was last used ("Active just now", "Last active 14:05"); its time is kept to the minute. */
export function lastSeen(ms, now = Date.now()) {
  if (now - ms < 2 * 60 * 1000) return t("seen_just_now");
  return t("last_seen", { time: listTime(ms, now) });
}

export function fullTime(ms) {
  return new Intl.DateTimeFormat(locale(), { dateStyle: "medium", timeStyle: "short" }).format(ms);
}
