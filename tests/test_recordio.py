"""InsightFace .rec/.idx import: framing built here byte by byte with struct, independently of the writer."""
import importlib.util
import struct

import cv2
import numpy as np
import pytest

from arcface_keras.data import recordio
from arcface_keras.data.tfrecord import read_examples, read_manifest

MAGIC = 0xCED7230A


def chunk(cflag, payload):
    """One RecordIO chunk: magic, (cflag << 29 | length), payload padded to 4 bytes."""
    return struct.pack("<II", MAGIC, cflag << 29 | len(payload)) + payload + b"\0" * (-len(payload) % 4)


def ir_header(label, key):
    """IfQQ header; a list label becomes flag = len(labels) float32 labels after the header."""
    if isinstance(label, list):
        return struct.pack("<IfQQ", len(label), 0.0, key, 0) + struct.pack(f"<{len(label)}f", *label)
    return struct.pack("<IfQQ", 0, float(label), key, 0)


def jpeg(rng, comment=b""):
    data = cv2.imencode(".jpg", rng.integers(0, 255, (10, 10, 3), dtype=np.uint8))[1].tobytes()
    if comment:  # a COM segment right after SOI: lets the test place bytes at chosen offsets
        data = data[:2] + b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment + data[2:]
    return data


def insightface_rec(tmp_path, with_header=True):
    """A .rec/.idx pair as InsightFace lays it out; returns (rec path, [(image, label)], identities)."""
    rng = np.random.default_rng(1)
    magic = struct.pack("<I", MAGIC)
    # In the record, the image starts at byte 24; the comment at 24 + 6, so "xx" puts the magic at 32.
    split_image = jpeg(rng, comment=b"xx" + magic + b"abcd" + magic + b"efgh")
    images = [(jpeg(rng), 0, 0.0), (jpeg(rng), 0, 0.0), (split_image, 1, 1.0),
              (jpeg(rng), 2, [2.0, 7.0]), (jpeg(rng), 2, 2.0)]
    chunks, index, offset = [], [], 0

    def add(key, framed):
        nonlocal offset
        chunks.append(framed)
        index.append(f"{key}\t{offset}")
        offset += len(framed)

    first_key = 1 if with_header else 0
    end = first_key + len(images)
    if with_header:
        add(0, chunk(0, ir_header([float(end), float(end + 3)], 0)))
    for key, (image, _, label) in enumerate(images, first_key):
        record = ir_header(label, key) + image
        if image is split_image:
            assert record[32:36] == magic and record[40:44] == magic
            framed = chunk(1, record[:32]) + chunk(2, record[36:40]) + chunk(3, record[44:])
        else:
            framed = chunk(0, record)
        add(key, framed)
    if with_header:
        for i, (start, stop) in enumerate([(1, 3), (3, 4), (4, 6)]):
            add(end + i, chunk(0, ir_header([float(start), float(stop)], end + i)))
    rec = tmp_path / "train.rec"
    rec.write_bytes(b"".join(chunks))
    rec.with_suffix(".idx").write_text("\n".join(index) + "\n")
    return rec, [(image, label) for image, label, _ in images]


def test_make_tfrecord_converts_rec(tmp_path, repo_root):
    rec, expected = insightface_rec(tmp_path)
    spec = importlib.util.spec_from_file_location("make_tfrecord", repo_root / "tools" / "make_tfrecord.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    tool.main(["--rec", str(rec), "--out", str(tmp_path / "out"), "--shards", "2", "--verify", "--quiet"])

    manifest = read_manifest(tmp_path / "out")
    assert manifest["num_classes"] == 3  # from the header record: label[1] − label[0]
    assert manifest["sources"][0]["kind"] == "rec" and manifest["num_images"] == len(expected)
    got = sorted((image.numpy(), int(label)) for image, label in read_examples(tmp_path / "out"))
    assert got == sorted(expected)


def test_iter_images_with_and_without_index(tmp_path):
    rec, expected = insightface_rec(tmp_path)
    assert list(recordio.iter_images(rec)) == expected
    rec.with_suffix(".idx").unlink()
    assert list(recordio.iter_images(rec)) == expected  # sequential scan, header record still honoured


def test_rec_without_header_record_counts_classes_from_labels(tmp_path, repo_root):
    from arcface_keras.data.sources import rec_source

    rec, expected = insightface_rec(tmp_path, with_header=False)
    assert list(recordio.iter_images(rec)) == expected
    source = rec_source(rec)
    assert source.num_classes == 3 and [source.read(i) for i in range(len(source))] == expected


def test_writer_round_trip_and_header(tmp_path):
    rng = np.random.default_rng(2)
    magic = struct.pack("<I", MAGIC)
    items = [(jpeg(rng), 0), (b"\0" * 4 + magic + b"tail" + magic, 1), (jpeg(rng), 1), (jpeg(rng), 3)]
    assert recordio.write_rec(tmp_path / "a.rec", tmp_path / "a.idx", items) == 4
    assert list(recordio.iter_images(tmp_path / "a.rec")) == items
    with recordio.RecordFile(tmp_path / "a.rec") as records:
        assert list(records.image_keys()) == [1, 2, 3, 4] and records.num_identities() == 4
        header, image = recordio.unpack(records.read(6))  # identity 1: keys 2 and 3
        assert image == b"" and header.label.tolist() == [2.0, 4.0]


def test_errors_name_file_and_offset(tmp_path):
    rec, _ = insightface_rec(tmp_path)
    data = rec.read_bytes()
    offset = int(rec.with_suffix(".idx").read_text().splitlines()[2].split("\t")[1])

    bad = tmp_path / "bad.rec"
    bad.write_bytes(data[:offset] + b"XXXX" + data[offset + 4:])
    bad.with_suffix(".idx").write_text(rec.with_suffix(".idx").read_text())
    with pytest.raises(recordio.RecordIOError, match=f"bad.rec: bad RecordIO magic 0x58585858 at offset {offset}"):
        list(recordio.iter_images(bad))

    short = tmp_path / "short.rec"
    short.write_bytes(data[:offset + 20])
    with pytest.raises(recordio.RecordIOError, match=f"short.rec: truncated record at offset {offset}"):
        list(recordio.iter_images(short))
