"""An echo bot: answers every text message with what it said, as a reply, in the same chat.

Create its account once and save a token (a file only the bot's user can read)::

    qunliao admin users create echo-bot            # or any client: register, then log in
    curl -s -X POST http://127.0.0.1:8000/api/v1/sessions -H 'content-type: application/json' \\
      -d '{"username":"echo-bot","password":"…","device_name":"echo-bot"}' \\
      | python -c 'import json,sys; print(json.load(sys.stdin)["access_token"])' > echo-bot.token

then run it (it needs only `pip install ./sdk`)::

    python examples/echo_bot.py --url http://127.0.0.1:8000 --token-file echo-bot.token

Add it to a group, or write to it directly: `你好` → `echo: 你好`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from pathlib import Path

from qunliao_sdk import Client, MessageEvent


def build(client: Client) -> None:
    """The bot's handlers. Its own messages never reach them (no echo of an echo)."""

    @client.on(MessageEvent)
    async def echo(event: MessageEvent) -> None:
        if event.text is not None:
            await event.reply(f"echo: {event.text}")


async def main(url: str, token: str, since: str | None = None) -> None:
    async with Client(url, access_token=token) as client:
        build(client)
        # `user_id`/`device_id` are known here already: entering asked the server.
        print(f"echo bot {client.user_id} ({client.device_id}) listening", flush=True)
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
