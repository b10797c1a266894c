"""Committed workflow histories: where they live, their file format, and the manifest.

`tests/replay/histories/<version>/<scenario>.json` holds every run of one recorded engagement
(continue-as-new makes one run per billing period), oldest first:

    {"scenario": ..., "description": ..., "workflow_id": ..., "workflow_type": "EngagementWorkflow",
     "recorded_at": ..., "code_commit": ..., "q2c_version": ..., "payloads": "decoded",
     "runs": [{"run_id": ..., "history": <the history as Temporal's JSON, events and all>}, ...]}

Payloads are stored *decoded* (the codec's ciphertext opened at recording time): the files do
not depend on a codec key that rotates, nor on the codec's own format, and what an engagement
carried can be read with `base64 -d`. They are replayed through the worker's own data converter
(codec included), which, as in production for histories written before encryption was turned
on, passes a payload that is not encrypted through unchanged.

`manifest.json` in each version folder lists the scenarios with their workflow ID, run count,
event count, bytes, recording time and code commit.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from temporalio.api.history.v1 import History
from temporalio.client import WorkflowHistory
from temporalio.converter import PayloadCodec

ROOT = Path(__file__).resolve().parents[1]
HISTORIES = ROOT / "tests" / "replay" / "histories"
MANIFEST = "manifest.json"
PAYLOAD = "temporal.api.common.v1.Payload"


def q2c_version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


@dataclass(frozen=True)
class RecordedRun:
    run_id: str
    history: WorkflowHistory


@dataclass(frozen=True)
class HistoryFile:
    path: Path
    scenario: str
    workflow_id: str
    meta: dict
    runs: list[RecordedRun]

    @property
    def label(self) -> str:
        """How failures name this file: relative to the repository."""
        try:
            return str(self.path.relative_to(ROOT))
        except ValueError:
            return str(self.path)


def load(path: Path) -> HistoryFile:
    data = json.loads(path.read_text())
    runs = [
        RecordedRun(run_id=r["run_id"], history=WorkflowHistory.from_json(data["workflow_id"], r["history"]))
        for r in data["runs"]
    ]
    meta = {k: v for k, v in data.items() if k != "runs"}
    return HistoryFile(path=path, scenario=data["scenario"], workflow_id=data["workflow_id"], meta=meta, runs=runs)


def all_files(root: Path = HISTORIES) -> list[Path]:
    """Every committed history, every version folder (never only the newest)."""
    return sorted(p for p in root.glob("*/*.json") if p.name != MANIFEST)


async def decode_history(history: History, codec: PayloadCodec | None) -> History:
    """A copy of the history with every payload opened by the codec (inputs, results, signal
    and update arguments, memo, failures' encoded attributes, headers)."""
    copy = History()
    copy.CopyFrom(history)
    if codec is not None:
        await _decode_in_place(copy, codec)
    return copy


async def _decode_in_place(message: Message, codec: PayloadCodec) -> None:
    if message.DESCRIPTOR.full_name == PAYLOAD:
        [clear] = await codec.decode([message])
        message.CopyFrom(clear)
        return
    for field, value in message.ListFields():
        if field.type != FieldDescriptor.TYPE_MESSAGE:
            continue
        if field.message_type.GetOptions().map_entry:
            if field.message_type.fields_by_name["value"].type == FieldDescriptor.TYPE_MESSAGE:
                for key in value:
                    await _decode_in_place(value[key], codec)
        elif field.is_repeated:
            for item in value:
                await _decode_in_place(item, codec)
        else:
            await _decode_in_place(value, codec)


def history_dict(history: History) -> dict:
    return MessageToDict(history)


def patch_markers(history: WorkflowHistory) -> list[str]:
    """The `workflow.patched` IDs a run recorded (its marker events), in order."""
    from temporalio.converter import PayloadConverter

    ids: list[str] = []
    for event in history.events:
        if event.HasField("marker_recorded_event_attributes"):
            attrs = event.marker_recorded_event_attributes
            if attrs.marker_name == "core_patch" and "patch-data" in attrs.details:
                [data] = PayloadConverter.default.from_payloads(attrs.details["patch-data"].payloads)
                ids.append(data["id"] if isinstance(data, dict) else str(data))
    return ids


def manifest_entry(path: Path) -> dict:
    """What the manifest says of one scenario file, computed from the file itself."""
    recorded = load(path)
    histories = [r.history for r in recorded.runs]
    return {
        "scenario": recorded.scenario,
        "file": path.name,
        "description": recorded.meta.get("description", ""),
        "workflow_id": recorded.workflow_id,
        "runs": len(histories),
        "events": sum(len(h.events) for h in histories),
        "bytes": path.stat().st_size,
        "patches": sorted({p for h in histories for p in patch_markers(h)}),
        "recorded_at": recorded.meta.get("recorded_at"),
        "code_commit": recorded.meta.get("code_commit"),
    }


def write_manifest(folder: Path) -> dict:
    """The folder's manifest, from its scenario files (so it can never disagree with them)."""
    entries = [manifest_entry(p) for p in sorted(folder.glob("*.json")) if p.name != MANIFEST]
    manifest = {
        "q2c_version": folder.name,
        "workflow_type": "EngagementWorkflow",
        "payloads": "decoded",
        "scenarios": entries,
        "total_bytes": sum(e["bytes"] for e in entries),
        "total_events": sum(e["events"] for e in entries),
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest
