"""The messages feature: installed by app.py, used by no other feature."""

from functools import partial

from qunliao.features.accounts import AccountService
from qunliao.features.contacts import ContactService
from qunliao.features.conversations import ConversationService
from qunliao.features.messages import api
from qunliao.features.messages.export import Exporter
from qunliao.features.messages.export_jobs import ExportJobs
from qunliao.features.messages.service import MessageService, same_send
from qunliao.features.wiring import Wiring
from qunliao.storage.group_commit import GroupCommit


def install(wiring: Wiring) -> None:
    metrics, settings = wiring.metrics, wiring.settings

    def on_batch(size: int, seconds: float) -> None:
        metrics.commit_batch.observe(size)
        metrics.commit_seconds.observe(seconds)

    writer = GroupCommit(
        wiring.db, wiring.clock, wiring.on_committed, hooks=wiring.registry.append_hooks,
        same_send=same_send, on_batch=on_batch,
    )  # fmt: skip
    wiring.starts.append(writer.start)
    wiring.stops.append(writer.stop)
    metrics.counter("qunliao_messages_committed", "Messages stored by group commit",
                    lambda: writer.committed)  # fmt: skip
    metrics.counter("qunliao_commit_batches", "Group-commit transactions", lambda: writer.batches)
    messages = MessageService(
        wiring.db, wiring.clock, wiring.ids, writer, wiring.need(ConversationService),
        wiring.need(ContactService), wiring.log, wiring.limiter, wiring.on_committed,
        wiring.hub.broadcast_state, recall_window_s=settings.recall_window_s,
        edit_window_s=settings.edit_window_s,
    )  # fmt: skip
    messages.register(wiring.registry)
    exporter = wiring.provide(
        Exporter(messages, wiring.need(ConversationService), wiring.need(AccountService),
                 wiring.clock)
    )  # fmt: skip
    jobs = ExportJobs(exporter, settings.export_path(), wiring.clock)
    wiring.stops.append(jobs.stop)
    wiring.routers.append(partial(api.export_router, jobs))
    wiring.routers.append(partial(api.router, messages))


__all__ = ["Exporter", "install"]
