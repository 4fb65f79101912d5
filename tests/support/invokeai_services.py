"""Real InvokeAI services without a server: in-memory sqlite, temporary image storage, InvokeAI's model manager.

Importing InvokeAI takes ~15 s, so build this once per test session.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace


class RecordingEvents:
    """An event service that records progress messages (the real one needs a running web server)."""

    def __init__(self):
        from invokeai.app.services.events.events_base import EventServiceBase

        class _Events(EventServiceBase):
            def __init__(inner):
                inner.progress = []

            def emit_invocation_progress(inner, queue_item, invocation, message, percentage=None, image=None):
                inner.progress.append((message, percentage))

        self.service = _Events()


def build_services(root: Path):
    from invokeai.app.services.board_image_records.board_image_records_sqlite import SqliteBoardImageRecordStorage
    from invokeai.app.services.board_images.board_images_default import BoardImagesService
    from invokeai.app.services.board_records.board_records_sqlite import SqliteBoardRecordStorage
    from invokeai.app.services.boards.boards_default import BoardService
    from invokeai.app.services.config.config_default import InvokeAIAppConfig
    from invokeai.app.services.image_files.image_files_disk import DiskImageFileStorage
    from invokeai.app.services.image_records.image_records_sqlite import SqliteImageRecordStorage
    from invokeai.app.services.images.images_default import ImageService
    from invokeai.app.services.download.download_default import DownloadQueueService
    from invokeai.app.services.model_manager.model_manager_default import ModelManagerService
    from invokeai.app.services.model_records.model_records_sql import ModelRecordServiceSQL
    from invokeai.app.services.invocation_services import InvocationServices
    from invokeai.app.services.invoker import Invoker
    from invokeai.app.services.names.names_default import SimpleNameService
    import torch
    from invokeai.app.services.object_serializer.object_serializer_disk import ObjectSerializerDisk
    from invokeai.app.services.shared.sqlite.sqlite_util import init_db
    from invokeai.app.services.urls.urls_default import LocalUrlService

    config = InvokeAIAppConfig(use_memory_db=True, node_cache_size=0)
    config._root = root  # models_path and outputs resolve under the temporary root
    logger = logging.getLogger("invokeai-test")
    image_files = DiskImageFileStorage(root / "outputs" / "images")
    db = init_db(config=config, logger=logger, image_files=image_files)
    events = RecordingEvents().service
    (root / "models").mkdir(parents=True, exist_ok=True)
    model_manager = ModelManagerService.build_model_manager(  # InvokeAI's real model cache, as the server has it
        app_config=config, model_record_service=ModelRecordServiceSQL(db=db, logger=logger),
        download_queue=DownloadQueueService(app_config=config, event_bus=events), events=events)
    fields = dict.fromkeys(InvocationServices.__init__.__code__.co_varnames[1:InvocationServices.__init__.__code__.co_argcount])
    fields.update(
        board_images=BoardImagesService(),
        board_image_records=SqliteBoardImageRecordStorage(db=db),
        boards=BoardService(),
        board_records=SqliteBoardRecordStorage(db=db),
        configuration=config,
        events=events,
        images=ImageService(),
        image_files=image_files,
        image_records=SqliteImageRecordStorage(db=db),
        logger=logger,
        model_manager=model_manager,
        names=SimpleNameService(),
        urls=LocalUrlService(),
        tensors=ObjectSerializerDisk[torch.Tensor](root / "outputs" / "tensors", safe_globals=[torch.Tensor]),
    )
    services = InvocationServices(**fields)
    Invoker(services)
    return services


def run_node(services, node, is_canceled=lambda: False):
    """Invoke ``node`` with a real InvocationContext, as InvokeAI's session runner does."""
    from invokeai.app.services.shared.invocation_context import InvocationContextData, build_invocation_context

    queue_item = SimpleNamespace(
        user_id="system", workflow=None, session=SimpleNamespace(graph=None), session_id="test-session",
        item_id=1, batch_id="b", queue_id="default", origin=None, destination=None,
    )
    context = build_invocation_context(
        services,
        InvocationContextData(queue_item=queue_item, invocation=node, source_invocation_id=node.id),
        is_canceled=is_canceled,
    )
    return node.invoke_internal(context=context, services=services)
