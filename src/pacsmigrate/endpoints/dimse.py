"""DIMSE endpoints (pynetdicom): C-ECHO, C-FIND, C-MOVE / C-GET, C-STORE.

Received data sets are never decoded here: pynetdicom writes them to a file as
received (``STORE_RECV_CHUNKED_DATASET``) and sends files as stored
(``STORE_SEND_CHUNKED_DATASET``), so instances keep their own transfer syntax
byte for byte and are never held whole in memory.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from pydicom import config as pydicom_config
from pydicom.dataset import Dataset
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AE, _config, build_context, build_role, evt
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu_primitives import A_ASSOCIATE
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from pacsmigrate.endpoints._tcp import TCP_HANDLERS
from pacsmigrate.endpoints.base import (
    Capabilities,
    DimseAddress,
    InstanceSink,
    ReceivedInstance,
    RetrieveResult,
    TruncatedAnswer,
)
from pacsmigrate.endpoints.status import (
    CANCEL,
    MOVE_DESTINATION_UNKNOWN,
    OUT_OF_RESOURCES_SUBOPS,
    SUCCESS,
    is_pending,
)
from pacsmigrate.errors import (
    AssociationRejected,
    ContextRefused,
    MoveDestinationUnknown,
    PeerUnreachable,
    ProtocolError,
    TransientError,
)

__all__ = ["MAX_CONTEXTS", "DimseEndpoint", "Timeouts", "received_instance"]

LOGGER = logging.getLogger(__name__)

# Keep raw bytes on both sides of the relay, and keep identifiers (PHI) out of
# pynetdicom's own logs.
_config.STORE_RECV_CHUNKED_DATASET = True
_config.STORE_SEND_CHUNKED_DATASET = True
_config.LOG_REQUEST_IDENTIFIERS = False
_config.LOG_RESPONSE_IDENTIFIERS = False
# Values are relayed, not judged: pydicom's per-value validation (regexes run on
# every UID pynetdicom builds, ~100 000 per 200 instances here) costs CPU and
# would only warn about data we must pass through unchanged anyway.
pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE
pydicom_config.settings.writing_validation_mode = pydicom_config.IGNORE

#: An association may carry at most 128 presentation contexts (PS3.8 9.3.2.2).
MAX_CONTEXTS = 128


#: Transfer syntaxes offered per SOP class for C-GET, one context each, so the
#: source sends each instance in the syntax it holds (FIELD-NOTES 9).
RETRIEVE_SYNTAXES = (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    JPEG2000Lossless,
    JPEG2000,
    RLELossless,
)


@dataclass(frozen=True)
class Timeouts:
    connect: float = 10.0
    acse: float = 30.0
    dimse: float = 300.0
    max_pdu: int = 0


def _contexts(pairs: Sequence[tuple[str, str]]) -> list[PresentationContext]:
    """One presentation context per (SOP class, transfer syntax) actually stored.

    One context per pair (not one per SOP class with many syntaxes) so the peer
    cannot pick another syntax and transcode (FIELD-NOTES 9).
    """
    return [build_context(sop_class, [syntax]) for sop_class, syntax in sorted(set(pairs))]


class _DimseStoreSession:
    """C-STORE over one established association."""

    def __init__(self, assoc: Association, label: str) -> None:
        self._assoc = assoc
        self._label = label
        self._accepted = {
            (cx.abstract_syntax, cx.transfer_syntax[0]) for cx in assoc.accepted_contexts
        }

    def store(self, path: Path, sop_class_uid: str, transfer_syntax_uid: str) -> int:
        if (sop_class_uid, transfer_syntax_uid) not in self._accepted:
            raise ContextRefused(
                f"{self._label} accepted no presentation context for SOP class"
                f" {sop_class_uid} in transfer syntax {transfer_syntax_uid}"
            )
        if not self._assoc.is_established:
            raise TransientError(f"association with {self._label} was lost")
        status = self._assoc.send_c_store(path)
        if "Status" not in status:
            raise TransientError(
                f"no C-STORE response from {self._label} (association aborted or timed out)"
            )
        return int(status.Status)


class DimseEndpoint:
    """A DICOM peer reached over DIMSE. Read-only use as a source is the caller's duty:
    this class issues C-STORE only through :meth:`store_session`."""

    capabilities = Capabilities(can_query=True, can_retrieve=True, can_store=True, can_delete=False)

    def __init__(
        self,
        address: DimseAddress,
        timeouts: Timeouts | None = None,
        *,
        move_destination: str | None = None,
    ) -> None:
        self.address = address
        self.timeouts = timeouts or Timeouts()
        self.move_destination = move_destination or address.calling_ae

    @property
    def label(self) -> str:
        return self.address.label

    def _ae(self) -> AE:
        ae = AE(ae_title=self.address.calling_ae)
        ae.connection_timeout = self.timeouts.connect
        ae.acse_timeout = self.timeouts.acse
        ae.dimse_timeout = self.timeouts.dimse
        ae.network_timeout = max(self.timeouts.dimse, 60.0)
        ae.maximum_pdu_size = self.timeouts.max_pdu
        return ae

    @contextmanager
    def association(
        self,
        contexts: list[PresentationContext],
        *,
        handlers: Sequence[tuple[Any, Any]] = (),
        ext_neg: list[Any] | None = None,
    ) -> Iterator[Association]:
        """An established association; released (or aborted) on exit, whatever happens."""
        rejections: list[A_ASSOCIATE] = []

        def on_acse(event: evt.Event) -> None:
            primitive = event.primitive  # type: ignore[attr-defined]
            if isinstance(primitive, A_ASSOCIATE) and primitive.result not in (None, 0):
                rejections.append(primitive)

        assoc = self._ae().associate(
            self.address.host,
            self.address.port,
            contexts=contexts,
            ae_title=self.address.called_ae,
            ext_neg=ext_neg,
            evt_handlers=[(evt.EVT_ACSE_RECV, on_acse), *TCP_HANDLERS, *handlers],
        )
        if not assoc.is_established:
            raise self._association_error(rejections)
        _keep_replies_for_the_caller(assoc)
        try:
            yield assoc
        finally:
            if assoc.is_established:
                assoc.release()
            if assoc.is_established:  # release did not complete
                assoc.abort()

    def _association_error(self, rejections: list[A_ASSOCIATE]) -> Exception:
        where = f"{self.address.host}:{self.address.port}"
        if rejections:
            rsp = rejections[0]
            message = (
                f"{self.label} rejected the association from calling AE"
                f" {self.address.calling_ae!r} to called AE {self.address.called_ae!r}:"
                f" {rsp.result_str}, {rsp.source_str}, {rsp.reason_str}."
                " Check that both AE titles are configured on the peer."
            )
            if rsp.result == 0x02:  # rejected-transient: e.g. local limit exceeded
                return TransientError(message)
            return AssociationRejected(message)
        try:
            with socket.create_connection(
                (self.address.host, self.address.port), timeout=self.timeouts.connect
            ):
                pass
        except OSError as exc:
            return PeerUnreachable(
                f"cannot connect to {self.label}: {exc.strerror or exc}."
                f" Check that the peer runs and listens on {where}"
            )
        return AssociationRejected(
            f"{self.label} accepted the connection but did not complete association"
            " negotiation (aborted, timed out, or accepted none of our presentation contexts)."
            " Check the called AE title and the SOP classes the peer accepts"
        )

    def echo(self) -> None:
        with self.association([build_context(Verification)]) as assoc:
            status = assoc.send_c_echo()
            if status.get("Status") != SUCCESS:
                raise ProtocolError(f"{self.label} answered C-ECHO with {_status_text(status)}")

    def find(self, identifier: Dataset) -> Iterator[Dataset]:
        """Yield each C-FIND match (Study Root) on a new association."""
        with self.query_session() as find:
            yield from find(identifier)

    @contextmanager
    def query_session(self) -> Iterator[Callable[[Dataset], Iterator[Dataset]]]:
        """Many C-FINDs over one association, one query at a time. After an abort
        the next query opens a new association, so callers can simply retry."""
        model = StudyRootQueryRetrieveInformationModelFind
        with ExitStack() as stack:
            current: list[Association] = []

            def established() -> Association:
                if not current or not current[-1].is_established:
                    current.append(stack.enter_context(self.association([build_context(model)])))
                return current[-1]

            def find(identifier: Dataset) -> Iterator[Dataset]:
                assoc = established()
                matches = 0
                for status, match in assoc.send_c_find(identifier, model):
                    code = status.get("Status")
                    if code is None:
                        raise TransientError(
                            f"C-FIND to {self.label} got no response (aborted or timed out)"
                        )
                    if is_pending(code):
                        if match is not None:
                            matches += 1
                            yield match
                    elif code == CANCEL or (code != SUCCESS and matches):
                        # we never cancel: the peer stopped early (e.g. Orthanc's
                        # LimitFindResults answers 0xFE00 after N matches)
                        raise TruncatedAnswer(f"{_status_text(status)} after {matches} matches")
                    elif code != SUCCESS:
                        raise ProtocolError(
                            f"{self.label} answered C-FIND with {_status_text(status)}"
                        )

            yield find

    def retrieve(
        self,
        identifier: Dataset,
        sink: InstanceSink,
        sop_classes: Sequence[str],
    ) -> RetrieveResult:
        """C-MOVE to :attr:`move_destination` or C-GET into ``sink``, by the URL's setting.

        With C-MOVE the instances reach our Storage SCP, which routes them to the
        caller's sink; the caller registered the route before calling.
        """
        if self.address.retrieve == "get":
            return self._get(identifier, sink, sop_classes)
        return self._move(identifier)

    def _move(self, identifier: Dataset) -> RetrieveResult:
        model = StudyRootQueryRetrieveInformationModelMove
        with self.association([build_context(model)]) as assoc:
            final = _final_status(assoc.send_c_move(identifier, self.move_destination, model))
        return self._result(final, "C-MOVE")

    def _get(
        self, identifier: Dataset, sink: InstanceSink, sop_classes: Sequence[str]
    ) -> RetrieveResult:
        model = StudyRootQueryRetrieveInformationModelGet
        pairs = [(c, str(ts)) for c in sorted(set(sop_classes)) for ts in RETRIEVE_SYNTAXES]
        contexts = [build_context(model), *_contexts(pairs)]
        if len(contexts) > MAX_CONTEXTS:
            raise ProtocolError(
                f"C-GET of {len(set(sop_classes))} SOP classes needs {len(contexts)} presentation"
                f" contexts (limit {MAX_CONTEXTS}); use C-MOVE for this source (retrieve=move)"
            )
        roles = [build_role(sop_class, scp_role=True) for sop_class in sorted(set(sop_classes))]

        def on_store(event: evt.Event) -> int:
            return sink(received_instance(event))

        with self.association(
            contexts, handlers=[(evt.EVT_C_STORE, on_store)], ext_neg=roles
        ) as assoc:
            final = _final_status(assoc.send_c_get(identifier, model))
        return self._result(final, "C-GET")

    def _result(self, final: Dataset, operation: str) -> RetrieveResult:
        code = final.get("Status")
        if code is None:
            raise TransientError(
                f"{operation} from {self.label} got no final response (aborted or timed out)"
            )
        if code == MOVE_DESTINATION_UNKNOWN:
            raise MoveDestinationUnknown(
                f"{self.label} does not know the move destination {self.move_destination!r}"
                " (status 0xA801)"
            )
        if code == OUT_OF_RESOURCES_SUBOPS or (code & 0xFF00) == 0xA700:
            raise TransientError(f"{self.label} is out of resources ({_status_text(final)})")
        return RetrieveResult(
            status=int(code),
            completed=int(final.get("NumberOfCompletedSuboperations", 0) or 0),
            failed=int(final.get("NumberOfFailedSuboperations", 0) or 0),
            warning=int(final.get("NumberOfWarningSuboperations", 0) or 0),
            error_comment=str(final.get("ErrorComment", "") or ""),
        )

    def probe(self, pairs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        """The (SOP class, transfer syntax) pairs the peer accepts, by association
        negotiation only (no data is sent). Each association also offers Verification,
        so one that accepts none of the pairs still completes and says so."""
        wanted = sorted(set(pairs))
        accepted: set[tuple[str, str]] = set()
        size = MAX_CONTEXTS - 1
        for start in range(0, len(wanted), size):
            contexts = [build_context(Verification), *_contexts(wanted[start : start + size])]
            with self.association(contexts) as assoc:
                accepted |= {
                    (str(cx.abstract_syntax), str(cx.transfer_syntax[0]))
                    for cx in assoc.accepted_contexts
                }
        return accepted

    @contextmanager
    def store_session(self, contexts: list[tuple[str, str]]) -> Iterator[_DimseStoreSession]:
        requested = _contexts(contexts)
        if len(requested) > MAX_CONTEXTS:
            raise ValueError(
                f"at most {MAX_CONTEXTS} contexts per association, got {len(requested)}"
            )
        with self.association(requested) as assoc:
            yield _DimseStoreSession(assoc, self.label)


def received_instance(event: evt.Event) -> ReceivedInstance:
    """What a C-STORE request handed us (the data set is in a file, still encoded)."""
    request = cast(C_STORE, event.request)
    return ReceivedInstance(
        path=Path(event.dataset_path),
        sop_class_uid=str(request.AffectedSOPClassUID),
        sop_instance_uid=str(request.AffectedSOPInstanceUID),
        transfer_syntax_uid=str(event.context.transfer_syntax),
    )


def _keep_replies_for_the_caller(assoc: Association) -> None:
    """Keep the association's reactor thread away from the reply queue.

    In pynetdicom 3.0.4 the reactor thread can take a reply off the DIMSE queue
    in the window between ``_reactor_checkpoint.wait()`` returning and
    ``_is_paused`` going false, and then drops it ("Received unexpected ...
    service message"): the caller waits for a reply that never comes (seen
    here: C-FIND matches lost, C-STORE stalls until the DIMSE timeout, more
    often with quick ACKs). On associations we request, every message is read
    by the thread that sent the request (C-STORE sub-operations of a C-GET
    included), so the reactor never needs one.
    """
    get_msg = assoc.dimse.get_msg

    def guarded(block: bool = False) -> tuple[int | None, Any]:
        if threading.current_thread() is assoc:
            return None, None
        return get_msg(block)

    assoc.dimse.get_msg = guarded  # type: ignore[method-assign,assignment]


def _final_status(responses: Iterator[tuple[Dataset, Dataset | None]]) -> Dataset:
    """Drain C-MOVE/C-GET responses and return the last status data set."""
    final = Dataset()
    for status, _identifier in responses:
        final = status
        code = status.get("Status")
        if code is None or not is_pending(code):
            break
    return final


def _status_text(status: Dataset) -> str:
    code = status.get("Status")
    if code is None:
        return "no status (association aborted or timed out)"
    comment = status.get("ErrorComment", "")
    return f"status 0x{int(code):04X}" + (f" ({comment})" if comment else "")
