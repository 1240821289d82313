"""qunliao.sdk typed events: decode_event over the JSON the server emits (pure, no server)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

import qunliao.sdk
from qunliao.sdk import (
    EVENT_TYPES,
    ConversationCreated,
    ConversationUpdated,
    Event,
    FriendRequestAccepted,
    FriendRequestReceived,
    GroupInvitationAnswered,
    GroupInvitationReceived,
    MembersAdded,
    MembersRemoved,
    MemberUpdated,
    Message,
    MessageEdited,
    MessageRecalled,
    Read,
    StateEvent,
    StoredEvent,
    Typing,
    UnknownEvent,
    decode_event,
    register_event_type,
)

GROUP = "c_01HZX3GROUP"
INBOX = "i_01HZX3BOB"
ALICE, BOB, CAROL = "u_01ALICE", "u_01BOB", "u_01CAROL"
T0 = 1_718_000_000_000

FRIEND_REQUEST = {
    "request_id": "fr_01REQ",
    "from_user_id": ALICE,
    "to_user_id": BOB,
    "note": "我是 Alice，上次会议见过",
    "status": "pending",
    "created_at": T0,
    "from_display_name": "爱丽丝",
    "to_display_name": "Bob",
}

# (the JSON as the server sends it on a socket or in a sync page, the event it decodes to)
KNOWN: list[tuple[dict[str, Any], Event]] = [
    (
        {
            "type": "message", "conversation_id": GROUP, "seq": 12, "message_id": "m_01A",
            "sender_id": ALICE, "msg_type": "text", "body": {"text": "大家好 👋 hello"},
            "sent_at": T0, "reply_to": "m_01Z", "mentions": [BOB, "all"], "edited_at": None,
            "recalled_at": None, "token": "s_42",
        },
        Message(
            conversation_id=GROUP, seq=12, token="s_42", message_id="m_01A", sender_id=ALICE,
            msg_type="text", body={"text": "大家好 👋 hello"}, sent_at=T0, reply_to="m_01Z",
            mentions=[BOB, "all"],
        ),
    ),
    (
        {
            "type": "message.edited", "conversation_id": GROUP, "seq": 13, "message_id": "m_01A",
            "body": {"text": "大家好 (edited)"}, "edited_at": T0 + 5_000, "sender_id": ALICE,
            "at": T0 + 5_000, "token": "s_43",
        },
        MessageEdited(
            conversation_id=GROUP, seq=13, token="s_43", message_id="m_01A",
            body={"text": "大家好 (edited)"}, edited_at=T0 + 5_000, sender_id=ALICE,
        ),
    ),
    (
        {
            "type": "message.recalled", "conversation_id": GROUP, "seq": 14,
            "message_id": "m_01A", "by": ALICE, "recalled_at": T0 + 9_000, "at": T0 + 9_000,
            "token": "s_44",
        },
        MessageRecalled(
            conversation_id=GROUP, seq=14, token="s_44", message_id="m_01A", by=ALICE,
            recalled_at=T0 + 9_000,
        ),
    ),
    (
        {
            "type": "conversation.created", "conversation_id": GROUP, "seq": 1, "kind": "group",
            "title": "项目组 Project", "by": ALICE, "member_ids": [ALICE, BOB], "at": T0,
            "token": "s_1",
        },
        ConversationCreated(
            conversation_id=GROUP, seq=1, token="s_1", kind="group", title="项目组 Project",
            by=ALICE, member_ids=[ALICE, BOB],
        ),
    ),
    (
        {
            "type": "conversation.updated", "conversation_id": GROUP, "seq": 2, "by": ALICE,
            "title": "新名字", "announcement": "周五发布 release on Friday", "at": T0,
            "token": "s_2",
        },
        ConversationUpdated(
            conversation_id=GROUP, seq=2, token="s_2", by=ALICE,
            changes={"title": "新名字", "announcement": "周五发布 release on Friday"},
        ),
    ),
    (
        {
            "type": "members.added", "conversation_id": GROUP, "seq": 3, "user_ids": [CAROL],
            "by": ALICE, "at": T0, "token": "s_3",
        },
        MembersAdded(conversation_id=GROUP, seq=3, token="s_3", user_ids=[CAROL], by=ALICE),
    ),
    (
        {
            "type": "members.removed", "conversation_id": GROUP, "seq": 4, "user_ids": [CAROL],
            "by": CAROL, "reason": "left", "at": T0, "token": "s_4",
        },
        MembersRemoved(
            conversation_id=GROUP, seq=4, token="s_4", user_ids=[CAROL], by=CAROL, reason="left"
        ),
    ),
    (
        {
            "type": "member.updated", "conversation_id": GROUP, "seq": 5, "user_id": BOB,
            "by": ALICE, "role": "member", "muted_until": T0 + 3_600_000, "at": T0,
            "token": "s_5",
        },
        MemberUpdated(
            conversation_id=GROUP, seq=5, token="s_5", user_id=BOB, by=ALICE, role="member",
            muted_until=T0 + 3_600_000,
        ),
    ),
    (
        {
            "type": "friend_request.received", "conversation_id": INBOX, "seq": 1,
            "request": FRIEND_REQUEST, "at": T0, "token": "s_6",
        },
        FriendRequestReceived(conversation_id=INBOX, seq=1, token="s_6", request=FRIEND_REQUEST),
    ),
    (
        {
            "type": "friend_request.accepted", "conversation_id": INBOX, "seq": 2,
            "request": {**FRIEND_REQUEST, "status": "accepted"}, "at": T0, "token": "s_7",
        },
        FriendRequestAccepted(
            conversation_id=INBOX, seq=2, token="s_7",
            request={**FRIEND_REQUEST, "status": "accepted"},
        ),
    ),
    (
        {
            "type": "group_invitation.received", "conversation_id": INBOX, "seq": 3,
            "invitation": {"invitation_id": "gi_1", "title": "读书会"}, "at": T0, "token": "s_8",
        },
        GroupInvitationReceived(
            conversation_id=INBOX, seq=3, token="s_8",
            invitation={"invitation_id": "gi_1", "title": "读书会"},
        ),
    ),
    (
        {
            "type": "group_invitation.answered", "conversation_id": INBOX, "seq": 4,
            "invitation": {"invitation_id": "gi_1", "state": "declined"}, "at": T0,
        },
        GroupInvitationAnswered(
            conversation_id=INBOX, seq=4, invitation={"invitation_id": "gi_1", "state": "declined"}
        ),
    ),
    (
        {"type": "read", "conversation_id": GROUP, "user_id": BOB, "read_seq": 12},
        Read(conversation_id=GROUP, user_id=BOB, read_seq=12),
    ),
    (
        {"type": "typing", "conversation_id": GROUP, "user_id": BOB, "typing": False},
        Typing(conversation_id=GROUP, user_id=BOB, typing=False),
    ),
]  # fmt: skip

KNOWN_IDS = [data["type"] for data, _ in KNOWN]


@pytest.fixture
def registry() -> Iterator[dict[str, type[Event]]]:
    """EVENT_TYPES as it was before the test, whatever the test registers."""
    saved = dict(EVENT_TYPES)
    yield EVENT_TYPES
    EVENT_TYPES.clear()
    EVENT_TYPES.update(saved)


def test_every_server_type_is_registered_and_tested() -> None:
    assert set(EVENT_TYPES) == set(KNOWN_IDS)
    assert {cls.TYPE for cls in EVENT_TYPES.values()} == set(EVENT_TYPES)


@pytest.mark.parametrize(("data", "expected"), KNOWN, ids=KNOWN_IDS)
def test_each_known_type_decodes(data: dict[str, Any], expected: Event) -> None:
    event = decode_event(data)
    assert type(event) is type(expected)
    assert event == expected
    assert event.TYPE == data["type"]
    assert event.raw is data  # the original, for fields this SDK does not know


@pytest.mark.parametrize(("data", "expected"), KNOWN, ids=KNOWN_IDS)
def test_stored_events_have_a_seq_and_state_has_none(data: dict[str, Any], expected: Event) -> None:
    event = decode_event(data)
    if data["type"] in ("read", "typing"):
        assert isinstance(event, StateEvent)
        assert (event.seq, event.token) == (None, None)
    else:
        assert isinstance(event, StoredEvent)
        assert isinstance(event.seq, int)


def test_a_recalled_message_from_history() -> None:
    """History has no token; a recalled message keeps its place but loses its body."""
    data = {
        "type": "message", "conversation_id": GROUP, "seq": 12, "message_id": "m_01A",
        "sender_id": ALICE, "msg_type": "text", "body": None, "sent_at": T0, "reply_to": None,
        "mentions": [], "edited_at": None, "recalled_at": T0 + 9_000,
    }  # fmt: skip
    event = decode_event(data)
    assert isinstance(event, Message)
    assert (event.body, event.recalled_at, event.token) == (None, T0 + 9_000, None)


def test_missing_optional_fields_are_none_and_extra_fields_are_ignored() -> None:
    data = {
        "type": "message", "conversation_id": GROUP, "seq": 7, "message_id": "m_01B",
        "sender_id": BOB, "msg_type": "text", "body": {"text": "only the required fields"},
        "sent_at": T0, "reactions": {"👍": [ALICE]},  # a field of some newer server
    }  # fmt: skip
    event = decode_event(data)
    assert event == Message(
        conversation_id=GROUP, seq=7, message_id="m_01B", sender_id=BOB, msg_type="text",
        body={"text": "only the required fields"}, sent_at=T0,
    )  # fmt: skip
    assert isinstance(event, Message)
    assert (event.reply_to, event.edited_at, event.recalled_at, event.token) == (None,) * 4
    assert event.mentions == []
    assert event.raw["reactions"] == {"👍": [ALICE]}


def test_conversation_updated_changes_leave_out_the_envelope() -> None:
    data = {
        "type": "conversation.updated", "conversation_id": GROUP, "seq": 9, "by": BOB,
        "muted_all": True, "at": T0, "token": "s_9",
    }  # fmt: skip
    event = decode_event(data)
    assert isinstance(event, ConversationUpdated)
    assert event.changes == {"muted_all": True}


def test_unknown_type_keeps_what_it_can() -> None:
    data = {
        "type": "poll.closed", "conversation_id": GROUP, "seq": 30, "poll_id": "p_1",
        "winner": "火锅", "at": T0, "token": "s_30",
    }  # fmt: skip
    event = decode_event(data)
    assert event == UnknownEvent(type="poll.closed", conversation_id=GROUP, seq=30, token="s_30")
    assert isinstance(event, UnknownEvent)
    assert event.raw is data
    assert event.reason is None


def test_synced_frame_is_unknown() -> None:
    """`ws.events()` yields `synced` too; a bot loop sees it as an UnknownEvent."""
    event = decode_event({"type": "synced", "next_token": "s_99"})
    assert event == UnknownEvent(type="synced")


MALFORMED = [  # the data, how UnknownEvent.reason starts
    pytest.param(
        {"type": "members.added", "conversation_id": GROUP, "seq": 3, "by": ALICE},
        "user_ids: missing",
        id="missing required",
    ),
    pytest.param(
        {"type": "members.added", "conversation_id": GROUP, "user_ids": [BOB], "by": ALICE},
        "seq: missing",
        id="missing seq",
    ),
    pytest.param(
        {"type": "read", "user_id": BOB, "read_seq": 1},
        "conversation_id: missing",
        id="missing conversation",
    ),
    pytest.param(
        {
            "type": "message.recalled",
            "conversation_id": GROUP,
            "seq": "14",
            "message_id": "m_1",
            "by": ALICE,
            "recalled_at": T0,
        },
        "seq: expected int",
        id="seq as text",
    ),
    pytest.param(
        {"type": "read", "conversation_id": GROUP, "user_id": BOB, "read_seq": True},
        "read_seq: expected int",
        id="bool for int",
    ),
    pytest.param(
        {"type": "typing", "conversation_id": GROUP, "user_id": BOB, "typing": 1},
        "typing: expected bool",
        id="int for bool",
    ),
    pytest.param(
        {
            "type": "members.removed",
            "conversation_id": GROUP,
            "seq": 4,
            "user_ids": [BOB],
            "by": ALICE,
            "reason": None,
        },
        "reason: expected str",
        id="null for required",
    ),
    pytest.param(
        {
            "type": "members.added",
            "conversation_id": GROUP,
            "seq": 3,
            "user_ids": [BOB, 7],
            "by": ALICE,
        },
        "user_ids: expected list[str]",
        id="list of wrong items",
    ),
    pytest.param(
        {
            "type": "message.edited",
            "conversation_id": GROUP,
            "seq": 13,
            "message_id": "m_1",
            "body": "纯文本",
            "edited_at": T0,
            "sender_id": ALICE,
        },
        "body: expected dict[str, Any] | None",
        id="body not an object",
    ),
    pytest.param(
        {
            "type": "friend_request.received",
            "conversation_id": INBOX,
            "seq": 1,
            "request": ["fr_1"],
        },
        "request: expected dict",
        id="request not an object",
    ),
    pytest.param(
        {"type": "typing", "conversation_id": 5, "user_id": BOB, "typing": True},
        "conversation_id: expected str",
        id="conversation id not text",
    ),
]


@pytest.mark.parametrize(("data", "reason"), MALFORMED)
def test_malformed_known_types_become_unknown(data: dict[str, Any], reason: str) -> None:
    event = decode_event(data)
    assert isinstance(event, UnknownEvent)
    assert event.type == data["type"]
    assert event.raw is data
    assert event.reason is not None and event.reason.startswith(reason)
    # What the data says of where the event is, where it says it plainly enough.
    seq, conversation_id = data.get("seq"), data.get("conversation_id")
    assert event.seq == (seq if isinstance(seq, int) and not isinstance(seq, bool) else None)
    assert event.conversation_id == (conversation_id if isinstance(conversation_id, str) else None)


@pytest.mark.parametrize(
    "data",
    [None, "message", 42, ["type", "message"], b'{"type": "message"}'],
    ids=["null", "text", "number", "list", "bytes"],
)
def test_data_that_is_not_an_object_becomes_unknown(data: object) -> None:
    event = decode_event(data)
    assert event == UnknownEvent(type=None)
    assert isinstance(event, UnknownEvent)
    assert event.raw is data


@pytest.mark.parametrize(
    ("data", "seq"),
    [({}, None), ({"type": None, "seq": 1}, 1), ({"type": ["message"]}, None),
     ({"type": 3, "seq": True}, None)],
)  # fmt: skip
def test_a_missing_or_odd_type_becomes_unknown(data: dict[str, Any], seq: int | None) -> None:
    assert decode_event(data) == UnknownEvent(type=None, seq=seq)


FIELD_NAMES = sorted({key for data, _ in KNOWN for key in data} | {"raw", "changes", "client"})
SCALAR = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=4)
)
JSON = st.recursive(
    SCALAR,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=4,
)


@given(
    example=st.sampled_from([data for data, _ in KNOWN] + [{"type": "synced"}]),
    dropped=st.sets(st.sampled_from(FIELD_NAMES), max_size=3),
    replaced=st.dictionaries(st.sampled_from(FIELD_NAMES), JSON, max_size=3),
)
def test_decoding_never_raises(
    example: dict[str, Any], dropped: set[str], replaced: dict[str, Any]
) -> None:
    """A real event with fields dropped or swapped for any JSON: a typed event or UnknownEvent."""
    data = {k: v for k, v in example.items() if k not in dropped} | replaced
    event = decode_event(data)
    assert event.raw is data
    kind = data.get("type")
    registered = EVENT_TYPES.get(kind) if isinstance(kind, str) else None
    assert isinstance(event, UnknownEvent) or type(event) is registered
    if not dropped and not replaced and registered is not None:
        assert type(event) is registered


def test_events_are_frozen_and_raw_is_not_compared_or_shown() -> None:
    data, _ = KNOWN[-1]
    event = decode_event(data)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.seq = 3  # type: ignore[misc]
    assert not hasattr(event, "__dict__")  # slotted
    assert event == decode_event(dict(data, ignored="x"))  # a different raw, the same event
    assert "raw" not in repr(event)


def test_a_match_statement_reads_naturally() -> None:
    def describe(event: Event) -> str:
        match event:
            case Message(body={"text": text}, sender_id=sender):
                return f"{sender}: {text}"
            case Message(recalled_at=int()):
                return "recalled"
            case MembersAdded(user_ids=users):
                return "joined: " + ", ".join(users)
            case Typing(user_id=user, typing=True):
                return f"{user} is typing"
            case UnknownEvent(type=kind):
                return f"skipped {kind}"
            case _:
                return "other"

    assert [describe(decode_event(d)) for d, _ in KNOWN[:1] + KNOWN[5:6]] == [
        f"{ALICE}: 大家好 👋 hello",
        f"joined: {CAROL}",
    ]
    assert describe(decode_event({"type": "typing", "conversation_id": GROUP, "user_id": BOB,
                                  "typing": True})) == f"{BOB} is typing"  # fmt: skip
    assert describe(decode_event({"type": "mystery"})) == "skipped mystery"


# -- a bot's own types ------------------------------------------------------------------------


def test_a_bot_registers_its_own_type(registry: dict[str, type[Event]]) -> None:
    @register_event_type
    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
    class PollClosed(StoredEvent):
        TYPE: ClassVar[str] = "poll.closed"

        poll_id: str
        winner: str
        votes: dict[str, int]
        note: str | None

    assert registry["poll.closed"] is PollClosed
    data = {
        "type": "poll.closed", "conversation_id": GROUP, "seq": 30, "poll_id": "p_1",
        "winner": "火锅 hotpot", "votes": {"火锅 hotpot": 5, "pizza": 2}, "at": T0,
        "token": "s_30",
    }  # fmt: skip
    event = decode_event(data)
    assert event == PollClosed(
        conversation_id=GROUP, seq=30, token="s_30", poll_id="p_1", winner="火锅 hotpot",
        votes={"火锅 hotpot": 5, "pizza": 2}, note=None,
    )  # fmt: skip
    assert event.raw is data
    assert isinstance(decode_event(dict(data, votes={"pizza": "2"})), UnknownEvent)


def test_a_bot_may_replace_a_built_in_type(registry: dict[str, type[Event]]) -> None:
    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
    class MyTyping(Typing):
        def __str__(self) -> str:
            return f"{self.user_id} ✍️"

    with pytest.raises(ValueError, match="already decoded as Typing"):
        register_event_type(MyTyping)
    register_event_type(MyTyping, replace=True)
    register_event_type(MyTyping)  # the same class again is fine
    data, _ = KNOWN[-1]
    assert str(decode_event(data)) == f"{BOB} ✍️"


def test_a_post_init_may_refuse_an_event(registry: dict[str, type[Event]]) -> None:
    @register_event_type
    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
    class Dice(StoredEvent):
        TYPE: ClassVar[str] = "dice"
        value: int

        def __post_init__(self) -> None:
            if not 1 <= self.value <= 6:
                raise ValueError(f"value: {self.value} is not on a die")

    base = {"type": "dice", "conversation_id": GROUP, "seq": 1}
    assert decode_event({**base, "value": 6}) == Dice(conversation_id=GROUP, seq=1, value=6)
    refused = decode_event({**base, "value": 7})
    assert isinstance(refused, UnknownEvent)
    assert refused.reason == "value: 7 is not on a die"


def test_registering_a_class_that_cannot_be_decoded_fails_at_once(
    registry: dict[str, type[Event]],
) -> None:
    class NotADataclass(StoredEvent):
        TYPE: ClassVar[str] = "not.a.dataclass"

    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
    class NoType(StoredEvent):
        pass

    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
    class Unreadable(StoredEvent):
        TYPE: ClassVar[str] = "unreadable"
        when: complex

    with pytest.raises(TypeError, match="not a dataclass subclass"):
        register_event_type(NotADataclass)
    with pytest.raises(TypeError, match="not a dataclass subclass"):
        register_event_type(dict)  # type: ignore[type-var]
    with pytest.raises(TypeError, match="needs its wire type"):
        register_event_type(NoType)
    with pytest.raises(TypeError, match="cannot be read from JSON"):
        register_event_type(Unreadable)
    assert set(registry) == set(KNOWN_IDS)


def test_the_package_exports_every_event_class() -> None:
    exported = set(qunliao.sdk.__all__)
    assert {cls.__name__ for cls in EVENT_TYPES.values()} <= exported
    assert {"decode_event", "register_event_type", "UnknownEvent", "Event"} <= exported
