"""TensorBoard event files read back without TensorBoard: TFRecords (length, crc, event, crc)
parsed with tensorboardX's own protobuf."""

from __future__ import annotations

import struct
from pathlib import Path


def event_values(folder: Path) -> dict[str, list[tuple[int, float | None]]]:
    """tag -> (step, value) of every summary in `folder`'s event files; the value is None for a
    histogram."""
    from tensorboardX.proto import event_pb2

    out: dict[str, list[tuple[int, float | None]]] = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data, i = path.read_bytes(), 0
        while i < len(data):
            (n,) = struct.unpack("<Q", data[i:i + 8])
            event = event_pb2.Event.FromString(data[i + 12:i + 12 + n])
            i += 12 + n + 4
            for value in event.summary.value:
                scalar = None if value.HasField("histo") else value.simple_value
                out.setdefault(value.tag, []).append((event.step, scalar))
    return out


def event_tags(folder: Path) -> dict[str, list[int]]:
    """tag -> the steps it was written at."""
    return {tag: [step for step, _ in values] for tag, values in event_values(folder).items()}
