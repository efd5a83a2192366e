"""Operator start-up: kopf settings, the API client and platform settings in `memo`."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from .. import naming
from ..clients.kube import Kube
from ..settings import OperatorSettings


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    platform = OperatorSettings.from_env()
    memo.settings = platform
    memo.kube = Kube.connect(platform.field_manager)
    settings.persistence.finalizer = naming.FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=naming.KOPF_PREFIX
    )
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=naming.KOPF_PREFIX, key="last-handled-configuration"
    )
    # Our own events are posted on transitions; kopf's per-handler chatter is not.
    settings.posting.level = logging.WARNING
    settings.execution.max_workers = 8
    settings.watching.server_timeout = 600
    settings.watching.client_timeout = 660
    settings.networking.request_timeout = 60
    # At most this many objects are processed at once; the rest wait their turn.
    settings.batching.worker_limit = 64
