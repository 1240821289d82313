"""Typed events: `decode_event(frame)` turns the server's JSON into a frozen dataclass.

Each event class names its wire `type` in `TYPE` and declares the fields it reads; the
registry `EVENT_TYPES` maps each `type` to its class, so decoding is one lookup and one check
per declared field — no chain of `if type == …`. A bot adds its own types with
`register_event_type`.

Decoding never raises on what a server sends: an unknown `type`, a missing required field or a
field of the wrong type gives an `UnknownEvent` that keeps the original JSON, so a bot built
against an older SDK skips what it does not understand instead of dying on it.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, NamedTuple, Protocol, TypeVar

from qunliao_sdk.models import SendResult

EVENT_TYPES: dict[str, type[Event]] = {}
"""Wire `type` → event class. Filled by `register_event_type`; read by `decode_event`."""

_REST = "qunliao_sdk.rest"  # field metadata: this dict collects the keys no other field takes
_ENVELOPE = frozenset({"type", "at"})  # never part of a "rest" dict
_FIELDS = "__dataclass_fields__"  # in the class's own __dict__ only when @dataclass made it

E = TypeVar("E", bound="Event")


class Replier(Protocol):
    """What an event needs to answer: `Client.send_text` (a Client, or a test's fake)."""

    async def send_text(
        self,
        conversation_id: str,
        text: str,
        *,
        reply_to: str | None = None,
        mentions: list[str] | Literal["all"] | None = None,
    ) -> SendResult: ...


class _Malformed(Exception):
    """A known type whose fields do not fit its class (caught inside `decode_event`)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """What every event has: the base of `StoredEvent`, `StateEvent` and `UnknownEvent`.

    `token` is the resume token pushed with stored events (None in history and state); `raw`
    is the JSON the event came from, kept for fields this SDK does not know yet; `client` is
    the client that received it (set by `Client.run` handlers and `decode_event(..., client=)`),
    which `reply` uses. Neither `raw` nor `client` is part of `==` or `repr`.
    """

    TYPE: ClassVar[str]

    conversation_id: str | None = None
    seq: int | None = None
    token: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    client: Replier | None = field(default=None, compare=False, repr=False)

    async def reply(
        self, text: str, *, mentions: list[str] | Literal["all"] | None = None
    ) -> SendResult:
        """Send `text` to this event's conversation (for a message: as a reply to it)."""
        if self.client is None:
            raise RuntimeError(
                "this event has no client: decode it with decode_event(..., client=)"
            )
        if self.conversation_id is None:
            raise RuntimeError(f"a {type(self).__name__} has no conversation to reply in")
        reply_to = getattr(self, "message_id", None)
        return await self.client.send_text(
            self.conversation_id,
            text,
            reply_to=reply_to if isinstance(reply_to, str) else None,
            mentions=mentions,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredEvent(Event):
    """An event of a conversation's (or a user's own `i_…` stream's) log: it has a seq."""

    conversation_id: str
    seq: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StateEvent(Event):
    """State pushed on the WebSocket (`read`, `typing`): not stored, so no seq and no token."""

    conversation_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class UnknownEvent(Event):
    """A `type` nobody registered, or a known one whose fields did not fit (`reason` says
    which). `conversation_id`, `seq` and `token` are None when missing or of the wrong type;
    `raw` is what came in, even if it was not a JSON object."""

    TYPE: ClassVar[str] = ""

    type: str | None
    reason: str | None = field(default=None, compare=False)
    raw: Any = field(default=None, compare=False, repr=False)


def register_event_type(cls: type[E], *, replace: bool = False) -> type[E]:
    """Decode events whose `type` is `cls.TYPE` as `cls`; usable as a class decorator.

    `cls` is a dataclass subclass of `Event` (frozen and slotted like the SDK's own) whose
    fields are named as in the JSON and annotated with JSON types (`str`, `int`, `float`,
    `bool`, `list[...]`, `dict[str, ...]`, `Any`, unions with None). A `type` that is already
    registered to another class raises ValueError unless `replace=True`.
    """
    if not (isinstance(cls, type) and issubclass(cls, Event) and _FIELDS in cls.__dict__):
        raise TypeError(f"{cls!r} is not a dataclass subclass of qunliao_sdk.Event")
    name = getattr(cls, "TYPE", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__name__} needs its wire type in `TYPE: ClassVar[str] = ...`")
    _fields_of(cls)  # a field we could not check fails here, not when an event arrives
    known = EVENT_TYPES.get(name)
    if known is not None and known is not cls and not replace:
        raise ValueError(f"event type {name!r} is already decoded as {known.__name__}")
    EVENT_TYPES[name] = cls
    return cls


def decode_event(data: object, *, client: Replier | None = None) -> Event:
    """The typed event for one JSON event (sync, `listen()`, `ws.events()`); never raises.

    With `client`, `event.reply(text)` answers through it.

    The registered class for `data["type"]` is built from the fields it declares: keys it does
    not declare are ignored, a missing field whose type allows None is None. A required field
    that is missing or of the wrong type, an unknown `type`, data that is not an object at all,
    or a ValueError from the class's own `__post_init__` gives an `UnknownEvent`.
    """
    if not isinstance(data, dict):
        return UnknownEvent(type=None, reason="not a JSON object", raw=data, client=client)
    kind = data.get("type")
    cls = EVENT_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        return _unknown(data, None, client)
    try:
        return cls(**_arguments(cls, data), raw=data, client=client)
    except (_Malformed, ValueError) as exc:  # ValueError: a class's own __post_init__ refused
        return _unknown(data, str(exc), client)


def _unknown(data: dict[str, Any], reason: str | None, client: Replier | None) -> UnknownEvent:
    def taken(key: str, kind: type) -> Any:
        value = data.get(key)
        return value if isinstance(value, kind) and not isinstance(value, bool) else None

    return UnknownEvent(
        type=taken("type", str),
        conversation_id=taken("conversation_id", str),
        seq=taken("seq", int),
        token=taken("token", str),
        reason=reason,
        raw=data,
        client=client,
    )


# -- how a class is built from JSON -----------------------------------------------------------


class _Field(NamedTuple):
    name: str
    check: Callable[[object], bool]
    expected: str
    # When the key is absent: pass None (the type allows it), let the dataclass default
    # apply, or give up (required).
    if_missing: typing.Literal["none", "default", "required"]
    rest: bool


def _arguments(cls: type[Event], data: dict[str, Any]) -> dict[str, Any]:
    arguments: dict[str, Any] = {}
    rest_field: str | None = None
    for name, check, expected, if_missing, rest in _fields_of(cls):
        if rest:
            rest_field = name
        elif name in data:
            value = data[name]
            if not check(value):
                raise _Malformed(f"{name}: expected {expected}, got {type(value).__name__}")
            arguments[name] = value
        elif if_missing == "none":
            arguments[name] = None
        elif if_missing == "required":
            raise _Malformed(f"{name}: missing")
    if rest_field is not None:
        taken = _ENVELOPE.union(spec.name for spec in _fields_of(cls))
        arguments[rest_field] = {k: v for k, v in data.items() if k not in taken}
    return arguments


_FIELD_SPECS: dict[type[Event], tuple[_Field, ...]] = {}


def _fields_of(cls: type[Event]) -> tuple[_Field, ...]:
    """The fields `cls` is built from, worked out once per class."""
    specs = _FIELD_SPECS.get(cls)
    if specs is None:
        specs = _FIELD_SPECS[cls] = _read_fields(cls)
    return specs


def _read_fields(cls: type[Event]) -> tuple[_Field, ...]:
    hints = typing.get_type_hints(cls)
    specs = []
    for f in dataclasses.fields(cls):
        if not f.init or f.name in ("raw", "client"):
            continue
        hint = hints[f.name]
        has_default = f.default is not dataclasses.MISSING or (
            f.default_factory is not dataclasses.MISSING
        )
        check = _checker(hint)
        if_missing: typing.Literal["none", "default", "required"] = (
            "default" if has_default else "none" if check(None) else "required"
        )
        plain = typing.get_origin(hint) is None and isinstance(hint, type)
        expected = hint.__name__ if plain else str(hint).replace("typing.", "")
        rest = bool(f.metadata.get(_REST, False))
        specs.append(_Field(f.name, check, expected, if_missing, rest))
    return tuple(specs)


def _checker(hint: Any) -> Callable[[object], bool]:
    """A test that a decoded JSON value fits the annotation `hint` (run per field per event,
    so the common shapes get a test without a loop)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is object:
        return _anything
    if hint is None or hint is type(None):
        return lambda value: value is None
    if origin is typing.Union or origin is types.UnionType:
        options = [_checker(arg) for arg in args if arg is not type(None)]
        if len(options) < len(args):  # `X | None`
            if len(options) == 1:
                only = options[0]
                return lambda value: value is None or only(value)
            return lambda value: value is None or any(check(value) for check in options)
        return lambda value: any(check(value) for check in options)
    if hint is int:  # a JSON true is a Python int too
        return lambda value: isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return lambda value: isinstance(value, int | float) and not isinstance(value, bool)
    if origin is list:
        item = _checker(args[0]) if args else _anything
        if item is _anything:
            return lambda value: isinstance(value, list)
        return lambda value: isinstance(value, list) and all(map(item, value))
    if origin is dict:
        item = _checker(args[1]) if args else _anything
        if item is _anything:
            return lambda value: isinstance(value, dict)
        return lambda value: isinstance(value, dict) and all(map(item, value.values()))
    if origin is typing.Literal:
        return lambda value: any(type(value) is type(a) and value == a for a in args)
    if origin is None and hint in (str, bool, list, dict):
        return lambda value: isinstance(value, hint)
    raise TypeError(f"an event field annotated {hint!r} cannot be read from JSON")


def _anything(value: object) -> bool:
    return True


# -- the server's events (docs/api.md, "Events") ----------------------------------------------


@register_event_type
@dataclass(frozen=True, slots=True, kw_only=True)
class Message(StoredEvent):
    """A message; `body` is None once it was recalled (`recalled_at` says when)."""

    TYPE: ClassVar[str] = "message"

    message_id: str
    sender_id: str
    msg_type: str
    body: dict[str, Any] | None
    sent_at: int
    reply_to: str | None = None
    mentions: list[str] = field(default_factory=list)  # user ids, or ["all"]
    edited_at: int | None = None
    recalled_at: int | None = None

    @property
    def text(self) -> str | None:
        """The text of a text message; None for other kinds and once recalled."""
        if self.msg_type != "text" or self.body is None:
            return None
        text = self.body.get("text")
        return text if isinstance(text, str) else None


MessageEvent = Message
"""The name the handler style reads best with: `@client.on(MessageEvent)`."""


@register_event_type
@dataclass(frozen=True, slots=True, kw_only=True)
class MessageEdited(StoredEvent):
    """The new body of `message_id` (None once the message was recalled)."""

    TYPE: ClassVar[str] = "message.edited"

    message_id: str
    body: dict[str, Any] | None
    edited_at: int
    sender_id: str


@register_event_type
@dataclass(frozen=True, slots=True, kw_only=True)
class MessageRecalled(StoredEvent):
    TYPE: ClassVar[str] = "message.recalled"

    message_id: str
    by: str
    recalled_at: int


@register_event_type
@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationCreated(StoredEvent):
    TYPE: ClassVar[str] = "conversation.created"

    kind: str  # "direct" | "group"
    title: str | None
    by: str
    member_ids: list[str]


@register_event_type
@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationUpdated(StoredEvent):
    """`changes` holds whatever changed: `{"title": …}`, `{"announcement": …}`, …"""

    TYPE: ClassVar[str] = "conversation.updated"

    by: str
    changes: dict[str, Any] = field(default_factory=dict, metadata={_REST: True})


@register_event_type
@dataclass(frozen=True, slots=True, kw_only=True)
class MembersAdded(StoredEvent):
    TYPE: ClassVar[str] = "members.added"

    user_ids: list[str]
    by: str


@register_event_type
@dataclass(frozen=True, slots=True, kw_only=True)
class MembersRemoved(StoredEvent):
    TYPE: ClassVar[str] = "members.removed"

    user_ids: list[str]
    by: str
    reason: str  # "left" | "removed"


@register_event_type
@dataclass(frozen=True, slots=True, kw_only=True)
class MemberUpdated(StoredEvent):
    """A member's role or mute changed (`muted_until` ms, None when not muted)."""

    TYPE: ClassVar[str] = "member.updated"

    user_id: str
    by: str
    role: str
    muted_until: int | None


@register_event_type
@dataclass(frozen=True, slots=True, kw_only=True)
class FriendRequestReceived(StoredEvent):
    """On my own `i_…` stream; `request` as `Client.friend_requests()` lists it."""

    TYPE: ClassVar[str] = "friend_request.received"

    request: dict[str, Any]


@register_event_type
@dataclass(frozen=True, slots=True, kw_only=True)
class FriendRequestAccepted(StoredEvent):
    """On both users' own `i_…` streams."""

    TYPE: ClassVar[str] = "friend_request.accepted"

    request: dict[str, Any]


@register_event_type
@dataclass(frozen=True, slots=True, kw_only=True)
class GroupInvitationReceived(StoredEvent):
    """On my own `i_…` stream: someone invited me into a group (I asked to consent first);
    `invitation` as `Client.group_invitations()` lists it."""

    TYPE: ClassVar[str] = "group_invitation.received"

    invitation: dict[str, Any]


@register_event_type
@dataclass(frozen=True, slots=True, kw_only=True)
class GroupInvitationAnswered(StoredEvent):
    """On my own `i_…` stream: I accepted or declined an invitation (on some device)."""

    TYPE: ClassVar[str] = "group_invitation.answered"

    invitation: dict[str, Any]


@register_event_type
@dataclass(frozen=True, slots=True, kw_only=True)
class Read(StateEvent):
    """State, not stored (no seq): `user_id` has read up to `read_seq`."""

    TYPE: ClassVar[str] = "read"

    user_id: str
    read_seq: int


@register_event_type
@dataclass(frozen=True, slots=True, kw_only=True)
class Typing(StateEvent):
    """State, not stored (no seq): `user_id` started (True) or stopped (False) typing."""

    TYPE: ClassVar[str] = "typing"

    user_id: str
    typing: bool
