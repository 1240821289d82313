"""A reminder bot: `remind 10m stretch` / `提醒 10分钟 喝水` → a reply now, a reminder later.

    python examples/reminder_bot.py --url http://127.0.0.1:8000 --token-file reminder-bot.token

Units: s, m, h (秒, 分钟, 小时; seconds when none is given), at most 7 days. The timers live
in the bot's memory: a restart forgets the reminders not yet due. Each timer is a task the
client owns (`client.spawn`), so leaving `async with Client(...)` cancels them cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from qunliao_sdk import Client, MessageEvent, QunliaoError

logger = logging.getLogger("reminder_bot")

MAX_DELAY_S = 7 * 24 * 3600
UNITS = {"": 1, "s": 1, "sec": 1, "秒": 1, "m": 60, "min": 60, "分": 60, "分钟": 60}
UNITS |= {"h": 3600, "小时": 3600}
COMMAND = re.compile(
    r"^\s*(?P<word>remind|提醒)\s*(?P<amount>\d+(?:\.\d+)?)\s*"
    r"(?P<unit>sec|min|s|m|h|秒|分钟|分|小时)?\s+(?P<what>\S.*)$",
    re.IGNORECASE | re.DOTALL,
)


@dataclass(frozen=True)
class Reminder:
    delay_s: float
    what: str
    chinese: bool


def parse(text: str) -> Reminder | None:
    """The reminder a message asks for; None when it is not a (valid) command."""
    match = COMMAND.match(text)
    if match is None:
        return None
    delay = float(match["amount"]) * UNITS[(match["unit"] or "").lower()]
    if not 0 < delay <= MAX_DELAY_S:
        return None
    return Reminder(delay, match["what"].strip(), chinese=match["word"] == "提醒")


def build(client: Client) -> None:
    @client.on(MessageEvent)
    async def remind(event: MessageEvent) -> None:
        reminder = parse(event.text or "")
        if reminder is None:
            return
        seconds = f"{reminder.delay_s:g}"
        await event.reply(
            f"好的，{seconds} 秒后提醒你：{reminder.what}"
            if reminder.chinese
            else f"OK, I will remind you in {seconds} s: {reminder.what}"
        )
        client.spawn(later(event, reminder), name=f"reminder-{event.message_id}")

    async def later(event: MessageEvent, reminder: Reminder) -> None:
        await asyncio.sleep(reminder.delay_s)
        try:
            await event.reply(f"⏰ {reminder.what}")
        except QunliaoError as error:  # left the group meanwhile, or the message was recalled
            logger.warning("reminder for %s not sent: %s", event.message_id, error)


async def main(url: str, token: str, since: str | None = None) -> None:
    async with Client(url, access_token=token) as client:
        build(client)
        print(f"reminder bot {client.user_id} listening", flush=True)
        await client.run(since=since)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default=os.environ.get("QUNLIAO_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--token-file", type=Path, default=os.environ.get("QUNLIAO_TOKEN_FILE"))
    parser.add_argument("--since", help="a resume token: handle everything after it first")
    args = parser.parse_args()
    if args.token_file is None:
        parser.error("--token-file (or env QUNLIAO_TOKEN_FILE) is required")
    logging.basicConfig(level=logging.INFO)
    token = Path(args.token_file).read_text(encoding="utf-8").strip()
    try:
        asyncio.run(main(args.url, token, args.since))
    except KeyboardInterrupt:
        pass
