"""HTTP handlers for messages, read positions, receipts and typing."""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import FileResponse, JSONResponse
from pydantic import Field

from qunliao.core.http import NOT_BLANK, AuthDependency, Body, WholeNumber, errors, ok
from qunliao.core.principal import Principal
from qunliao.features.messages.export_jobs import ExportJobs
from qunliao.features.messages.service import (
    MAX_MENTIONS,
    MAX_TEXT_BYTES,
    MAX_TXN_ID,
    MessageService,
    check_send,
)

MAX_INT = 2**62  # positions, seqs and times all fit far below 64 bits
MentionList = Annotated[list[Annotated[str, Field(max_length=40)]], Field(max_length=MAX_MENTIONS)]


# 403: not a member (or not allowed); 404: no such conversation or message
MEMBERS_ONLY = errors(403, 404)


class TextBody(Body):
    # at most MAX_TEXT_BYTES bytes of UTF-8: a longer text (in bytes) is 413 too_large
    text: str = Field(max_length=MAX_TEXT_BYTES, pattern=NOT_BLANK)


class NewMessage(Body):
    # the same bounds as check_send, which validates the frame again on every transport
    client_txn_id: str = Field(min_length=1, max_length=MAX_TXN_ID)
    msg_type: Literal["text"] = "text"
    body: TextBody
    reply_to: str | None = Field(None, max_length=40)
    mentions: MentionList | Literal["all"] | None = None


class Edit(Body):
    body: TextBody


class ReadPosition(Body):
    seq: WholeNumber


class Typing(Body):
    typing: bool = True


def router(messages: MessageService, auth: AuthDependency) -> APIRouter:
    api = APIRouter(prefix="/api/v1/conversations/{conversation_id}", tags=["messages"])
    Caller = Annotated[Principal, Depends(auth)]

    @api.post(
        "/messages",
        status_code=201,
        summary="Send a message (idempotent by client_txn_id)",
        responses={
            200: ok("a repeated client_txn_id: the original message_id, seq, sent_at"),
            **errors(403, 404, 409, s409="client_txn_id used for another message"),
        },
    )
    async def send(conversation_id: str, body: NewMessage, caller: Caller) -> Any:
        request = check_send({**body.model_dump(), "conversation_id": conversation_id})
        result, duplicate = await messages.do_send(caller, request)
        return JSONResponse(result, status_code=200 if duplicate else 201)

    @api.get("/messages", summary="Message history, newest first", responses=MEMBERS_ONLY)
    async def history(
        conversation_id: str,
        caller: Caller,
        before_seq: Annotated[int | None, Query(ge=0, le=MAX_INT)] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
    ) -> dict[str, Any]:
        return {"messages": await messages.history(caller, conversation_id, before_seq, limit)}

    @api.get("/messages/{message_id}", summary="One message", responses=MEMBERS_ONLY)
    async def get_message(conversation_id: str, message_id: str, caller: Caller) -> dict[str, Any]:
        return await messages.get_message(caller, conversation_id, message_id)

    @api.patch(
        "/messages/{message_id}",
        summary="Edit my message",
        responses=errors(403, 404, 409, s409="a recalled message cannot be edited"),
    )
    async def edit(
        conversation_id: str, message_id: str, body: Edit, caller: Caller
    ) -> dict[str, Any]:
        return await messages.do_edit(caller, conversation_id, message_id, body.body.model_dump())

    @api.post("/messages/{message_id}/recall", summary="Recall a message (its body is deleted)",
              responses=MEMBERS_ONLY)  # fmt: skip
    async def recall(conversation_id: str, message_id: str, caller: Caller) -> dict[str, Any]:
        return await messages.do_recall(caller, conversation_id, message_id)

    @api.post("/read", status_code=204, summary="Move my read position forward",
              responses=MEMBERS_ONLY)  # fmt: skip
    async def read(conversation_id: str, body: ReadPosition, caller: Caller) -> Response:
        await messages.do_read(caller, conversation_id, body.seq)
        return Response(status_code=204)

    @api.get("/receipts", summary="Who has and hasn't read the message at seq",
             responses=MEMBERS_ONLY)  # fmt: skip
    async def receipts(
        conversation_id: str, caller: Caller, seq: Annotated[int, Query(ge=0, le=MAX_INT)]
    ) -> dict[str, Any]:
        return await messages.receipts(caller, conversation_id, seq)

    @api.post("/typing", status_code=204, summary="Tell the others I am typing",
              responses=MEMBERS_ONLY)  # fmt: skip
    async def typing(conversation_id: str, body: Typing, caller: Caller) -> Response:
        await messages.do_typing(caller, conversation_id, body.typing)
        return Response(status_code=204)

    return api


def export_router(jobs: ExportJobs, auth: AuthDependency) -> APIRouter:
    """A user's own data export ("download my data"): a job, then a link to its zip."""
    api = APIRouter(prefix="/api/v1/me/export", tags=["export"])
    Caller = Annotated[Principal, Depends(auth)]

    @api.post("", status_code=202, summary="Export my data (a job; poll its state)")
    async def start_export(caller: Caller) -> dict[str, str]:
        return {"export_id": await jobs.do_start(caller)}

    @api.get("/{export_id}", summary="The state of my export, and its link when ready",
             responses=errors(404, s404="no such export of mine"))  # fmt: skip
    async def export_state(export_id: str, caller: Caller) -> dict[str, Any]:
        found = await jobs.state(caller, export_id)
        if found["state"] == "ready":
            found["url"] = f"/api/v1/me/export/{export_id}/download"
        return found

    @api.get(
        "/{export_id}/download",
        summary="Download my export (a zip: JSON and an HTML page)",
        response_class=FileResponse,
        responses={
            200: {"description": "the zip", "content": {"application/zip": {}}},
            **errors(404, s404="no such export of mine, or not ready"),
        },
    )
    async def download_export(export_id: str, caller: Caller) -> FileResponse:
        archive = await jobs.archive(caller, export_id)
        return FileResponse(
            archive, media_type="application/zip", filename=f"qunliao-export-{export_id}.zip"
        )

    return api
