"""Our embedded Storage SCP: the C-MOVE destination in relay mode.

It accepts, in every transfer syntax (so the source never has to transcode),
the SOP classes the inventory found, plus every storage SOP class when some
instance's class is not known (none inventoried yet, or C-FIND left it out).
Keeping the list short matters: pynetdicom deep-copies the
supported contexts for each incoming association, which took 100-800 ms per
association here with all ~170 storage classes. Each
received instance is routed to the sink of the retrieve that expects it: by
SOP Instance UID, else by the Study Instance UID read from the received
header. Instances nobody expects are kept in ``unrouted/`` and counted, never
dropped.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pydicom import dcmread
from pynetdicom import (
    AE,
    ALL_TRANSFER_SYNTAXES,
    AllStoragePresentationContexts,
    evt,
)
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer

from pacsmigrate.endpoints._tcp import TCP_HANDLERS
from pacsmigrate.endpoints.base import InstanceSink, ReceivedInstance
from pacsmigrate.endpoints.dimse import received_instance
from pacsmigrate.endpoints.status import PROCESSING_FAILURE, SUCCESS
from pacsmigrate.errors import ConfigError

__all__ = ["StorageSCP"]

LOGGER = logging.getLogger(__name__)


class StorageSCP:
    def __init__(
        self,
        ae_title: str,
        host: str,
        port: int,
        spool_dir: Path,
        *,
        sop_classes: Iterable[str] = (),
        all_storage: bool = True,
        max_pdu: int = 0,
    ) -> None:
        self.ae_title = ae_title
        self.host = host
        self.port = port
        self.spool_dir = spool_dir
        self.unrouted_dir = spool_dir / "unrouted"
        self.unrouted = 0
        self._sop_classes = sorted(set(sop_classes))
        self._all_storage = all_storage
        self._max_pdu = max_pdu
        self._lock = threading.Lock()
        self._by_sop: dict[str, InstanceSink] = {}
        self._by_study: dict[str, InstanceSink] = {}
        self._server: ThreadedAssociationServer | None = None

    def _build_ae(self) -> AE:
        ae = AE(ae_title=self.ae_title)
        ae.maximum_pdu_size = self._max_pdu
        ae.maximum_associations = 64
        ae.require_called_aet = True
        ae.add_supported_context(Verification)
        classes = set(self._sop_classes)
        if self._all_storage or not classes:
            classes |= {str(cx.abstract_syntax) for cx in AllStoragePresentationContexts}
        for sop_class in sorted(classes):
            ae.add_supported_context(sop_class, ALL_TRANSFER_SYNTAXES)
        return ae

    def start(self) -> None:
        incoming = self.spool_dir / "incoming"
        incoming.mkdir(parents=True, exist_ok=True)
        # Partial receptions of a process that died (kill -9) are incomplete
        # by definition; the caller holds the project lock, so none is live.
        for leftover in incoming.glob("tmp*.dcm"):
            leftover.unlink(missing_ok=True)
        # pynetdicom streams each received data set into a tempfile; put that
        # on the spool's file system so handing it on is a rename, not a copy.
        tempfile.tempdir = str(incoming)
        try:
            self._server = self._build_ae().start_server(
                (self.host, self.port),
                block=False,
                evt_handlers=[(evt.EVT_C_STORE, self._on_store), *TCP_HANDLERS],
            )
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {self.host}:{self.port} for our Storage SCP ({exc.strerror});"
                " choose a free port with local.port or stop what uses it"
            ) from exc

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def __enter__(self) -> StorageSCP:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @contextmanager
    def route(self, study_uid: str, sop_uids: Iterable[str], sink: InstanceSink) -> Iterator[None]:
        """Send instances of this study (or with these SOP Instance UIDs) to ``sink``."""
        sops = list(sop_uids)
        with self._lock:
            self._by_study[study_uid] = sink
            self._by_sop.update(dict.fromkeys(sops, sink))
        try:
            yield
        finally:
            with self._lock:
                self._by_study.pop(study_uid, None)
                for sop in sops:
                    self._by_sop.pop(sop, None)

    def _sink_for(self, path: Path, sop_uid: str) -> InstanceSink | None:
        with self._lock:
            sink = self._by_sop.get(sop_uid)
            if sink is not None or not self._by_study:
                return sink
        try:
            header = dcmread(path, stop_before_pixels=True, specific_tags=["StudyInstanceUID"])
            study_uid = str(header.get("StudyInstanceUID", ""))
        except Exception:  # an unreadable header: keep the bytes, route nowhere
            return None
        with self._lock:
            return self._by_study.get(study_uid)

    def _on_store(self, event: evt.Event) -> int:
        received = received_instance(event)
        sink = self._sink_for(received.path, received.sop_instance_uid)
        if sink is not None:
            return sink(received)
        return self._keep_unrouted(received)

    def _keep_unrouted(self, received: ReceivedInstance) -> int:
        try:
            self.unrouted_dir.mkdir(parents=True, exist_ok=True)
            shutil.move(received.path, self.unrouted_dir / f"{received.sop_instance_uid}.dcm")
        except OSError:
            LOGGER.exception("could not keep an unexpected instance")
            return PROCESSING_FAILURE
        with self._lock:
            self.unrouted += 1
        LOGGER.warning("received an instance no retrieve expects; kept in %s", self.unrouted_dir)
        return SUCCESS
