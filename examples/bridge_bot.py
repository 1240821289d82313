"""A bridge bot: mirrors one group into another — messages, edits and recalls.

    python examples/bridge_bot.py --url http://127.0.0.1:8000 --token-file bridge-bot.token \\
        --from c_SOURCE --to c_TARGET

The bot's account must be a member of both groups (and allowed to write in the target). Each
message of the source appears in the target as `[display name] text`; an edit in the source
edits the mirrored copy, a recall recalls it (within the server's edit and recall windows).
One way only. For both ways run a second bridge with --from and --to swapped under the *same*
account: a bot never sees its own account's messages, so a mirrored copy is never mirrored
back (under two accounts each bridge would mirror the other's copies, forever).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from collections import OrderedDict
from pathlib import Path

from qunliao_sdk import Client, MessageEdited, MessageEvent, MessageRecalled, QunliaoError

logger = logging.getLogger("bridge_bot")

REMEMBERED = 10_000  # source → mirrored message ids kept for edits and recalls


class Bridge:
    def __init__(self, client: Client, source: str, target: str) -> None:
        if source == target:
            raise ValueError("a bridge needs two different conversations")
        self.client, self.source, self.target = client, source, target
        self.mirrored: OrderedDict[str, str] = OrderedDict()
        self.names: dict[str, str] = {}

    async def display_name(self, user_id: str) -> str:
        if user_id not in self.names:
            try:
                self.names[user_id] = str((await self.client.user(user_id))["display_name"])
            except QunliaoError:
                return user_id
        return self.names[user_id]

    async def on_message(self, event: MessageEvent) -> None:
        if event.conversation_id != self.source or event.text is None:
            return
        name = await self.display_name(event.sender_id)
        sent = await self.client.send_text(self.target, f"[{name}] {event.text}")
        self.mirrored[event.message_id] = sent.message_id
        while len(self.mirrored) > REMEMBERED:
            self.mirrored.popitem(last=False)

    async def on_edit(self, event: MessageEdited) -> None:
        copy = self.mirrored.get(event.message_id)
        text = (event.body or {}).get("text")
        if event.conversation_id != self.source or copy is None or not isinstance(text, str):
            return
        name = await self.display_name(event.sender_id)
        await self.client.edit(self.target, copy, f"[{name}] {text}")

    async def on_recall(self, event: MessageRecalled) -> None:
        copy = self.mirrored.pop(event.message_id, None)
        if event.conversation_id == self.source and copy is not None:
            await self.client.recall(self.target, copy)


def build(client: Client, source: str, target: str) -> Bridge:
    bridge = Bridge(client, source, target)
    client.on(MessageEvent)(bridge.on_message)
    client.on(MessageEdited)(bridge.on_edit)
    client.on(MessageRecalled)(bridge.on_recall)
    return bridge


async def main(url: str, token: str, source: str, target: str, since: str | None = None) -> None:
    async with Client(url, access_token=token) as client:
        build(client, source, target)
        print(f"bridge {client.user_id}: {source} → {target}", flush=True)
        await client.run(since=since)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default=os.environ.get("QUNLIAO_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--token-file", type=Path, default=os.environ.get("QUNLIAO_TOKEN_FILE"))
    parser.add_argument("--from", dest="source", required=True, help="conversation to mirror")
    parser.add_argument("--to", dest="target", required=True, help="conversation to write to")
    parser.add_argument("--since", help="a resume token: handle everything after it first")
    args = parser.parse_args()
    if args.token_file is None:
        parser.error("--token-file (or env QUNLIAO_TOKEN_FILE) is required")
    logging.basicConfig(level=logging.INFO)
    token = Path(args.token_file).read_text(encoding="utf-8").strip()
    try:
        asyncio.run(main(args.url, token, args.source, args.target, args.since))
    except KeyboardInterrupt:
        pass
