"""Whether encoded image bytes are whole: a JPEG up to its end-of-image marker, a PNG up to its IEND chunk.

Decoders disagree on a file cut short: libjpeg fills the missing rows with grey and only warns
("Premature end of JPEG file"), OpenCV's imread (and, depending on its version, imdecode) returns that
image, and TensorFlow's decode_jpeg refuses it, in the middle of training. Every reader of image files
checks the bytes here first, so a truncated file is unreadable everywhere, whatever the decoder.

A JPEG is followed segment by segment (segment lengths, then each scan's entropy-coded data up to
the next marker) to its EOI marker: an EOI byte pair inside an embedded thumbnail does not count,
and bytes after the EOI (padding, a phone's appended data) are allowed. A PNG is followed chunk by
chunk to IEND. Other formats are left to their decoder.
"""
import re

import cv2
import numpy as np

JPEG_START, PNG_START = b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"
_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")  # a marker: not byte stuffing (FF 00), not a restart
_NO_LENGTH = frozenset({0x01, 0xD8, *range(0xD0, 0xD8)})  # markers without a length field
_EOI, _SOS = 0xD9, 0xDA


class UnreadableImage(ValueError):
    """Bytes that are not a whole, decodable image; the message says why."""


def _jpeg_is_whole(data):
    """Whether the marker structure of the JPEG `data` reaches its EOI marker."""
    position = 2
    while True:
        position = data.find(b"\xff", position)  # bytes before a marker are skipped, as libjpeg does
        while 0 <= position < len(data) and data[position] == 0xFF:
            position += 1
        if position < 0 or position >= len(data):
            return False
        code = data[position]
        position += 1
        if code == _EOI:
            return True
        if code in _NO_LENGTH or code == 0x00:
            continue
        position += int.from_bytes(data[position:position + 2], "big")
        if position + 2 > len(data):  # the segment, or the next marker, lies past the end
            return False
        if code == _SOS:
            scan_end = _SCAN_END.search(data, position)
            if scan_end is None:
                return False
            position = scan_end.start()


def _png_is_whole(data):
    """Whether the chunks of the PNG `data` reach IEND."""
    position = len(PNG_START)
    while position + 12 <= len(data):
        length, kind = int.from_bytes(data[position:position + 4], "big"), data[position + 4:position + 8]
        position += 12 + length  # length, type, data, CRC
        if kind == b"IEND":
            return position <= len(data)
    return False


def truncation(data):
    """Why the JPEG or PNG `data` is cut short, or None (whole, or another format: not checked here)."""
    data = bytes(data)
    if data.startswith(JPEG_START) and not _jpeg_is_whole(data):
        return "truncated JPEG (the data ends before its end-of-image marker)"
    if data.startswith(PNG_START) and not _png_is_whole(data):
        return "truncated PNG (the data ends before its IEND chunk)"
    return None


def read_bgr(data):
    """Encoded image bytes → uint8 BGR (H, W, 3) by OpenCV; UnreadableImage if empty, cut short or undecodable."""
    data = bytes(data)
    if not data:
        raise UnreadableImage("empty file")
    reason = truncation(data)
    if reason:
        raise UnreadableImage(reason)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise UnreadableImage("not a decodable image")
    return image


def read_bgr_file(path):
    """The image file at `path` as uint8 BGR; UnreadableImage (or OSError) naming why not."""
    with open(path, "rb") as file:
        return read_bgr(file.read())
