"""The pods of a training job: which ones a replica name selects, and their log streams as lines.

Pure helpers of ``backends.kubernetes`` (no Kubernetes import): pods are plain JSON data, streams are iterators.
Replica names are ``<type>`` (all of them) or ``<type>-<index>``, case-insensitive: ``master``, ``worker-1``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Any

from expctl.backends.kubernetes.manifests import KindInfo
from expctl.core.errors import ExpctlError

INDEX_LABELS = ("training.kubeflow.org/replica-index", "jobset.sigs.k8s.io/job-index")


def select_pods(pods: list[dict[str, Any]], info: KindInfo, replica: str | None) -> list[str]:
    """Pure: the pod names matching ``replica`` (``<type>`` or ``<type>-<index>``, case-insensitive)."""
    chosen = []
    for pod in pods:
        meta = pod.get("metadata") or {}
        labels = meta.get("labels") or {}
        if replica:
            role = str(labels.get(info.replica_label, "")).lower()
            index = next((str(labels[k]) for k in INDEX_LABELS if k in labels), "")
            if replica.lower() not in (role, f"{role}-{index}"):
                continue
        chosen.append(str(meta.get("name")))
    return sorted(chosen)


def replica_names(pods: list[dict[str, Any]], info: KindInfo) -> list[str]:
    """Pure: ``<type>-<index>`` of each pod (what ``select_pods`` matches), for the logs kept per replica."""
    names = []
    for pod in pods:
        labels = (pod.get("metadata") or {}).get("labels") or {}
        role = str(labels.get(info.replica_label, "")).lower()
        index = next((str(labels[k]) for k in INDEX_LABELS if k in labels), "")
        if role:
            names.append(f"{role}-{index}" if index else role)
    return sorted(set(names))


def split_lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """Pure: the text lines of a byte stream whose chunks split lines anywhere."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        yield from (line.decode("utf-8", "replace") for line in lines)
    if pending:
        yield pending.decode("utf-8", "replace")


def merge_streams(streams: dict[str, Iterator[str]]) -> Iterator[str]:
    """Lines of several followed streams as they come, each prefixed with its pod."""
    lines: queue.Queue[tuple[str, str | None]] = queue.Queue()

    def pump(pod: str, stream: Iterator[str]) -> None:
        try:
            for line in stream:
                lines.put((pod, line))
        except ExpctlError as exc:
            lines.put((pod, f"<{exc}>"))
        finally:
            lines.put((pod, None))

    for pod, stream in streams.items():
        threading.Thread(target=pump, args=(pod, stream), daemon=True).start()
    open_streams = len(streams)
    while open_streams:
        pod, line = lines.get()
        if line is None:
            open_streams -= 1
        else:
            yield f"[{pod}] {line}"
