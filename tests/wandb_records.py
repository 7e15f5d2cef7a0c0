"""Read the records of an offline W&B run file (`run-<id>.wandb`, a LevelDB-style log of protobufs)."""
import json
import struct

from wandb.proto import wandb_internal_pb2

BLOCK = 32768
HEADER = 7  # file: ":W&B", magic 0xBEE1, version; record: crc32, length, type
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def raw_records(path):
    data = open(path, "rb").read()
    assert data[:4] == b":W&B", f"{path}: not a W&B run file"
    pos, pending = HEADER, b""
    while pos + HEADER <= len(data):
        left_in_block = BLOCK - pos % BLOCK
        if left_in_block < HEADER:
            pos += left_in_block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        payload = data[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        if kind == FULL:
            yield payload
        elif kind in (FIRST, MIDDLE):
            pending += payload
        elif kind == LAST:
            yield pending + payload
            pending = b""
        else:
            break


def history_and_summary(path):
    """(list of history rows, summary dict) logged to the run."""
    history, summary = [], {}
    for payload in raw_records(path):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind == "history":
            history.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item})
        elif kind == "summary":
            summary.update({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.summary.update})
    return history, summary
