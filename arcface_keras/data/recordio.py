"""InsightFace `.rec/.idx` files (MXNet RecordIO) read and written without MXNet.

Framing: each chunk is a little-endian uint32 magic 0xced7230a, a uint32 whose low 29 bits are the
payload length and top 3 bits a continuation flag (0 whole record; 1 start, 2 middle, 3 end of a
split record), then the payload padded with zeros to a multiple of 4 bytes. A record is split
wherever the magic word appears at a 4-byte-aligned position of its payload; the magic bytes are
dropped when writing and put back between the parts when reading.

A record holds the 24-byte header "IfQQ" (flag uint32, label float32, id uint64, id2 uint64); when
flag > 0, `flag` float32 labels follow the header and replace the scalar label. Then the image bytes.
InsightFace sets record 0 as a header record with an empty image and label (end of images, end of
identities): images are keys 1 .. end of images − 1, the records after them describe identities.
"""
import collections
import os
import struct
from pathlib import Path

import numpy as np

from arcface_keras.io import atomic_path

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)
FRAME = struct.Struct("<II")
HEADER = struct.Struct("<IfQQ")
LENGTH_MASK = (1 << 29) - 1

IRHeader = collections.namedtuple("IRHeader", ["flag", "label", "id", "id2"])


class RecordIOError(ValueError):
    """A malformed .rec or .idx file; the message names the file and the offset."""


def default_index(rec_path):
    return Path(rec_path).with_suffix(".idx")


def read_index(idx_path):
    """`.idx` text (`key<TAB>offset` per line) → (keys, offsets): int64 arrays in file order."""
    try:
        table = np.loadtxt(idx_path, dtype=np.int64, ndmin=2, comments=None)
    except ValueError as error:
        raise RecordIOError(f"{idx_path}: expected 'key<TAB>offset' lines ({error})") from None
    if table.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if table.shape[1] != 2:
        raise RecordIOError(f"{idx_path}: expected 2 columns 'key<TAB>offset', found {table.shape[1]}")
    return table[:, 0], table[:, 1]


def _read_frame(f, offset):
    """The frame header at `offset` → (cflag, payload length)."""
    frame = os.pread(f.fileno(), FRAME.size, offset)
    if len(frame) < FRAME.size:
        raise RecordIOError(f"{f.name}: truncated record at offset {offset}: "
                            f"expected an {FRAME.size}-byte frame header, found {len(frame)} bytes")
    magic, lrecord = FRAME.unpack(frame)
    if magic != MAGIC:
        raise RecordIOError(f"{f.name}: bad RecordIO magic 0x{magic:08x} at offset {offset} (expected 0x{MAGIC:08x})")
    return lrecord >> 29, lrecord & LENGTH_MASK


def _next_chunk(offset, length):
    return offset + FRAME.size + (length + 3) // 4 * 4


def _read_chunk(f, offset):
    """One framed chunk at `offset` → (cflag, payload, offset of the next chunk)."""
    cflag, length = _read_frame(f, offset)
    payload = os.pread(f.fileno(), length, offset + FRAME.size)
    if len(payload) < length:
        raise RecordIOError(f"{f.name}: truncated record at offset {offset}: "
                            f"expected {length} bytes of payload, found {len(payload)}")
    return cflag, payload, _next_chunk(offset, length)


def _read_record(f, offset):
    cflag, payload, following = _read_chunk(f, offset)
    if cflag not in (0, 1):
        raise RecordIOError(f"{f.name}: offset {offset} is inside a split record (continuation flag {cflag})")
    parts = [payload]
    while cflag in (1, 2):
        cflag, payload, following = _read_chunk(f, following)
        if cflag not in (2, 3):
            raise RecordIOError(f"{f.name}: split record at offset {offset} is not continued (flag {cflag})")
        parts.append(payload)
    return MAGIC_BYTES.join(parts), following


def read_record(f, offset):
    """The record starting at byte `offset` of the open binary file `f`, split parts rejoined.

    Reads with `os.pread`, so threads may share `f` and its position is left alone.
    """
    return _read_record(f, offset)[0]


def scan_offsets(f):
    """Offsets of every record of `f` in file order, reading only the frame headers."""
    offsets, offset, size = [], 0, os.fstat(f.fileno()).st_size
    while offset < size:
        cflag, length = _read_frame(f, offset)
        if cflag in (0, 1):
            offsets.append(offset)
        offset = _next_chunk(offset, length)
    if offset > size:
        raise RecordIOError(f"{f.name}: truncated record at offset {offsets[-1]}: the file ends inside it")
    return offsets


def unpack(record):
    """Record bytes → (IRHeader, image bytes); `label` is a float, or a float32 array when flag > 0."""
    if len(record) < HEADER.size:
        raise RecordIOError(f"record of {len(record)} bytes is shorter than its {HEADER.size}-byte header")
    header = IRHeader(*HEADER.unpack_from(record))
    body = record[HEADER.size:]
    if header.flag > 0:
        if len(body) < 4 * header.flag:
            raise RecordIOError(f"record header announces {header.flag} labels but holds {len(body) // 4}")
        header = header._replace(label=np.frombuffer(body, np.float32, header.flag).copy())
        body = body[4 * header.flag:]
    return header, body


def class_label(header):
    """The identity of an image record: its scalar label, or the first of its labels."""
    label = header.label
    return int(label if np.isscalar(label) else label[0])


class RecordFile:
    """Random access to the records of a .rec file by key; thread-safe reads.

    Keys and offsets come from the `.idx` next to the file (or `idx_path`); without one, the
    file is scanned once and records are keyed by their position (0, 1, 2 …).
    """

    def __init__(self, rec_path, idx_path=None):
        self.path = Path(rec_path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such .rec file")
        idx_path = Path(idx_path) if idx_path else default_index(self.path)
        self.file = open(self.path, "rb")
        if idx_path.is_file():
            keys, offsets = read_index(idx_path)
        else:
            offsets = np.array(scan_offsets(self.file), np.int64)
            keys = np.arange(len(offsets))
        order = np.argsort(keys, kind="stable")
        self.keys, self.offsets = keys[order], offsets[order]
        self.header = self._header_record()

    def offset(self, key):
        position = np.searchsorted(self.keys, key)
        if position == len(self.keys) or self.keys[position] != key:
            raise KeyError(f"{self.path}: no record with key {key}")
        return int(self.offsets[position])

    def read(self, key):
        return read_record(self.file, self.offset(key))

    def _header_record(self):
        """Record 0's header when it is InsightFace's header record (an empty image), else None."""
        if not len(self.keys) or self.keys[0] != 0:
            return None
        header, image = self._unpack(0)
        return header if not image else None

    def image_keys(self):
        """Keys of the image records: 1 .. end − 1 after a header record, otherwise every key."""
        if self.header is None:
            return self.keys
        end = int(self.header.label if np.isscalar(self.header.label) else self.header.label[0])
        return range(1, end)

    def num_identities(self):
        """The identity count the header record announces (label[1] − label[0]), or None."""
        if self.header is None or np.isscalar(self.header.label) or len(self.header.label) < 2:
            return None
        return int(self.header.label[1]) - int(self.header.label[0])

    def _unpack(self, key):
        record = self.read(key)
        try:
            return unpack(record)
        except RecordIOError as error:
            raise RecordIOError(f"{self.path}: record {key} at offset {self.offset(key)}: {error}") from None

    def image(self, key):
        """(image bytes, identity label) of the record `key`."""
        header, image = self._unpack(key)
        return image, class_label(header)

    def close(self):
        self.file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def iter_images(rec_path, idx_path=None):
    """Stream (image bytes, int label) of every image record of an InsightFace .rec file."""
    with RecordFile(rec_path, idx_path) as records:
        for key in records.image_keys():
            yield records.image(int(key))


def _frame(cflag, payload):
    padding = b"\0" * (-len(payload) % 4)
    return FRAME.pack(MAGIC, cflag << 29 | len(payload)) + payload + padding


def frame_record(record):
    """Record bytes → framed chunks, split where the magic word sits at an aligned position."""
    cuts = [i for i in range(0, len(record) - 3, 4) if record[i:i + 4] == MAGIC_BYTES]
    if not cuts:
        return _frame(0, record)
    starts = [0] + [cut + 4 for cut in cuts]
    ends = cuts + [len(record)]
    flags = [1] + [2] * (len(cuts) - 1) + [3]
    return b"".join(_frame(flag, record[start:end]) for flag, start, end in zip(flags, starts, ends))


def pack(label, image_bytes, key=0):
    """An image record: IfQQ header (with a label array when `label` is a sequence) and the image."""
    if np.ndim(label) == 0:
        return HEADER.pack(0, float(label), key, 0) + image_bytes
    labels = np.asarray(label, np.float32)
    return HEADER.pack(len(labels), 0.0, key, 0) + labels.tobytes() + image_bytes


def write_rec(rec_path, idx_path, items):
    """Write (image bytes, int label) pairs as an InsightFace .rec/.idx pair.

    Record 0 is the header record, images are keys 1..N, then one record per identity whose
    labels are the first key and the last key + 1 of its images (exact when items come grouped
    by label, as InsightFace writes them). Returns the number of images written.
    """
    keys_of = collections.defaultdict(list)
    with atomic_path(rec_path) as rec_tmp, atomic_path(idx_path) as idx_tmp:
        with open(rec_tmp, "wb") as rec, open(idx_tmp, "w") as idx:
            header_size = len(frame_record(pack([0, 0], b"")))
            rec.write(b"\0" * header_size)  # the header record is written last, when the counts are known
            idx.write("0\t0\n")
            key = 0
            for key, (image, label) in enumerate(items, 1):
                idx.write(f"{key}\t{rec.tell()}\n")
                rec.write(frame_record(pack(int(label), image, key)))
                keys_of[int(label)].append(key)
            end_of_images = key + 1
            num_identities = max(keys_of, default=-1) + 1
            for label in range(num_identities):
                keys = keys_of.get(label)
                first, end = (min(keys), max(keys) + 1) if keys else (0, 0)
                idx.write(f"{end_of_images + label}\t{rec.tell()}\n")
                rec.write(frame_record(pack([first, end], b"", end_of_images + label)))
            header = frame_record(pack([end_of_images, end_of_images + num_identities], b""))
            if len(header) != header_size:
                raise RecordIOError(f"{rec_path}: header record changed size while writing")
            rec.seek(0)
            rec.write(header)
    return end_of_images - 1
