"""The record of which Keras tensor holds which Caffe blob, in which layout.

Both converters build one while they work, and ``keraffe verify`` compares the
two models through it: values are moved between orders by the recorded
:class:`~keraffe.layout.Layout` only, never by trying permutations.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path

from keraffe.layout import Layout


@dataclasses.dataclass
class MapEntry:
    """One Caffe tensor (a blob, or one in-place version of it) and its Keras counterpart."""

    #: The Caffe tensor: the blob name, with "#k" for the k-th in-place rewrite.
    caffe_tensor: str
    #: The blob's name in Caffe's net.blobs (the same for every version).
    caffe_blob: str
    #: The Caffe layer that produced it.
    caffe_layer: str
    #: The Keras layer whose output holds it, or None when no Keras tensor does
    #: (a value fused into the next layer, or an alias of another tensor).
    keras_layer: str | None
    #: Which output of that Keras layer (0 for single-output layers).
    keras_output: int = 0
    #: Which call of that Keras layer (a layer shared by several Caffe tops is called once per top).
    keras_node: int = 0
    layout: Layout | None = None
    note: str = ""
    #: For a blob with a row per region proposal: the Caffe tensor of those proposals, whose real rows
    #: (keraffe.layout.proposal_rows) are this blob's Caffe rows; "" for every other blob.
    rows_of: str = ""

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        data["layout"] = self.layout.to_json() if self.layout else None
        return data

    @classmethod
    def from_json(cls, data: dict) -> "MapEntry":
        data = dict(data)
        data.setdefault("keras_node", 0)
        data["layout"] = Layout.from_json(data["layout"]) if data.get("layout") else None
        return cls(**data)


@dataclasses.dataclass
class TensorMap:
    entries: dict[str, MapEntry] = dataclasses.field(default_factory=dict)
    #: The model's inputs and outputs as Caffe tensor names, in model order.
    inputs: list[str] = dataclasses.field(default_factory=list)
    outputs: list[str] = dataclasses.field(default_factory=list)

    def add(self, entry: MapEntry) -> None:
        self.entries[entry.caffe_tensor] = entry

    def __getitem__(self, caffe_tensor: str) -> MapEntry:
        return self.entries[caffe_tensor]

    def materialised(self) -> list[MapEntry]:
        """Entries with a Keras tensor, in the order they were produced."""
        return [e for e in self.entries.values() if e.keras_layer is not None]

    def to_json(self) -> str:
        return json.dumps({
            "inputs": self.inputs,
            "outputs": self.outputs,
            "entries": [e.to_json() for e in self.entries.values()],
        }, indent=1)

    @classmethod
    def from_json(cls, text: str) -> "TensorMap":
        data = json.loads(text)
        result = cls(inputs=list(data["inputs"]), outputs=list(data["outputs"]))
        for item in data["entries"]:
            result.add(MapEntry.from_json(item))
        return result


# ------------------------------------------------------------------ the map beside an exported net

#: The header keraffe writes at the top of a prototxt it exports names the target this way.
_TARGET_IN_HEADER = re.compile(r"^#.* by keraffe for target '([A-Za-z0-9_]+)'")


def recorded_map_path(prototxt: str | os.PathLike) -> Path:
    """Where keraffe records an exported net's tensor map: beside the prototxt, NET.keraffe.json."""
    return Path(prototxt).with_suffix(".keraffe.json")


def write_recorded_map(prototxt: str | os.PathLike, tensor_map: TensorMap) -> Path:
    """Record the map of an export beside its prototxt (atomically), so a later verify needs no conversion."""
    from keraffe.files import atomic_output

    path = recorded_map_path(prototxt)
    with atomic_output(path, "w") as handle:
        handle.write(tensor_map.to_json())
    return path


def read_recorded_map(prototxt: str | os.PathLike) -> TensorMap | None:
    """The map recorded beside a prototxt, or None when there is none (or it cannot be read)."""
    path = recorded_map_path(prototxt)
    if not path.is_file():
        return None
    try:
        return TensorMap.from_json(path.read_text())
    except (OSError, ValueError, KeyError, TypeError):
        return None


def exported_target(prototxt: str | os.PathLike) -> str | None:
    """The target a keraffe-written prototxt names in its header, or None."""
    try:
        with open(prototxt, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if not line.startswith("#"):
                    return None
                match = _TARGET_IN_HEADER.match(line)
                if match:
                    return match.group(1)
    except OSError:
        return None
    return None
