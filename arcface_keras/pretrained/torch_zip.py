"""PyTorch's zip checkpoint format (torch.save since 1.6) read into numpy, without running any code.

The archive holds `<name>/data.pkl`, a pickle whose tensors are `torch._utils._rebuild_tensor_v2(
storage, offset, size, stride, ...)` calls on persistent ids `("storage", torch.FloatStorage, key,
location, numel)`, and each storage's raw bytes in `<name>/data/<key>` (byte order in
`<name>/byteorder`, little-endian when absent). The unpickler here knows only those few globals and
builds numpy arrays itself: a file naming any other global is refused. Each tensor's storage offset,
shape and strides are checked against its storage's bytes before any view of them, so a damaged or
hostile file fails naming the tensor instead of reading past its storage.
"""
import collections
import io
import math
import pickle
import typing
import zipfile
from pathlib import Path

import numpy as np

STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": "bfloat16", "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class UnsafeCheckpointError(ValueError):
    """A checkpoint names a global that a state dict of tensors never needs."""


class _StorageType:
    def __init__(self, name):
        self.name = name


class _Storage:
    """One storage of the archive: its raw bytes (None when the archive lacks them), element type, and the
    element count its persistent id declares; turned into a numpy array once, when a tensor needs it."""

    def __init__(self, key, type_name, raw, declared, byteorder):
        self.key, self.type_name, self.raw, self.declared, self.byteorder = key, type_name, raw, declared, byteorder
        self.itemsize = 2 if STORAGE_DTYPES[type_name] == "bfloat16" else np.dtype(STORAGE_DTYPES[type_name]).itemsize
        self._array = None

    def problem(self):
        """Why these bytes are not a whole storage of their type, or None."""
        if self.raw is None:
            return f"its storage data/{self.key} is missing from the archive"
        held = f"storage {self.key} holds {len(self.raw)} bytes"
        if len(self.raw) % self.itemsize:
            return f"{held}, not a whole number of {self.itemsize}-byte {self.type_name} elements"
        if _is_count(self.declared) and self.declared * self.itemsize != len(self.raw):
            return f"{held}, its header declares {self.declared} elements of {self.itemsize} bytes"
        return None

    @property
    def numel(self):
        return len(self.raw) // self.itemsize

    def array(self):
        if self._array is None:
            dtype = STORAGE_DTYPES[self.type_name]
            if dtype == "bfloat16":  # numpy has no bfloat16: its 16 bits are the top half of a float32
                bits = np.frombuffer(self.raw, np.dtype(np.uint16).newbyteorder(self.byteorder)).astype(np.uint32)
                self._array = (bits << 16).view(np.float32)
            else:
                self._array = np.frombuffer(self.raw, np.dtype(dtype).newbyteorder(self.byteorder)).astype(dtype)
        return self._array


class _Tensor(typing.NamedTuple):
    """The arguments of torch._utils._rebuild_tensor_v2, kept until the tensor's name is known."""

    storage: object
    offset: object
    size: object
    stride: object


def _rebuild_tensor(storage, offset, size, stride, *unused):
    return _Tensor(storage, offset, size, stride)


def _rebuild_parameter(data, *unused):
    return data


def _is_count(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_layout(tensor):
    """Why `tensor`'s storage, offset, shape and strides do not describe elements inside its storage, or None."""
    storage, offset, size, stride = tensor
    if not isinstance(storage, _Storage):
        return f"its storage is a {type(storage).__name__}, not a storage of the archive"
    damaged = storage.problem()
    if damaged:
        return damaged
    if not _is_count(offset):
        return f"storage offset {offset!r}: expected an integer >= 0"
    if not (isinstance(size, tuple) and all(_is_count(n) for n in size)):
        return f"shape {size!r}: expected a tuple of integers >= 0"
    if not (isinstance(stride, tuple) and len(stride) == len(size) and all(_is_count(n) for n in stride)):
        return f"strides {stride!r}: expected {len(size)} integers >= 0 for shape {size}"
    numel = math.prod(size)
    if numel == 0:
        return None
    needed = offset + 1 + sum((n - 1) * s for n, s in zip(size, stride))
    if needed > storage.numel:
        return f"storage holds {storage.numel * storage.itemsize} bytes, the tensor needs {needed * storage.itemsize}"
    if numel > storage.numel:  # overlapping strides would make the copy larger than the file
        return f"shape {size} has {numel} elements, more than the {storage.numel} of its storage"
    return None


def tensor_array(name, tensor, source):
    """The numpy array of one tensor, its layout checked against its storage before any view of it."""
    problem = _check_layout(tensor)
    if problem:
        raise ValueError(f"{source}: {name}: {problem}")
    storage, offset, size, stride = tensor
    array = storage.array()
    if math.prod(size) == 0:
        return np.zeros(size, array.dtype)
    strides = tuple(s * array.itemsize if n > 1 else 0 for n, s in zip(size, stride))  # a size-1 stride is moot
    view = np.lib.stride_tricks.as_strided(array[offset:], shape=size, strides=strides, writeable=False)
    return np.array(view, order="C")  # a C-ordered copy (0-d stays 0-d)


_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(name) for name in STORAGE_DTYPES},
}


class _StateDictUnpickler(pickle.Unpickler):
    def __init__(self, file, archive, prefix, source):
        super().__init__(file)
        self.archive, self.prefix, self.source = archive, prefix, source
        self.members, self.storages = set(archive.namelist()), {}
        self.byteorder = "<"
        if f"{prefix}byteorder" in archive.namelist() and archive.read(f"{prefix}byteorder").strip() == b"big":
            self.byteorder = ">"

    def find_class(self, module, name):
        if (module, name) in _GLOBALS:
            return _GLOBALS[module, name]
        raise UnsafeCheckpointError(
            f"{self.source}: refusing to load global {module}.{name} (a state dict holds only tensors)"
        )

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 3 and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
            raise UnsafeCheckpointError(f"{self.source}: unexpected persistent id {pid!r:.80}")
        key = str(pid[2])
        if key not in self.storages:
            name = f"{self.prefix}data/{key}"
            raw = self.archive.read(name) if name in self.members else None
            declared = pid[4] if len(pid) > 4 else None
            self.storages[key] = _Storage(key, pid[1].name, raw, declared, self.byteorder)
        return self.storages[key]


def read_state_dict(path):
    """{name: numpy array} of a torch.save'd state dict (zip format), unpickled without running code.

    A dict holding the state dict under "state_dict_backbone" or "state_dict" (training checkpoints)
    is unwrapped, and a "module." prefix (DataParallel) is dropped.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not a zip-format torch checkpoint (saved by torch < 1.6 or not a checkpoint)")
    with zipfile.ZipFile(path) as archive:
        pickles = [name for name in archive.namelist() if name.endswith("data.pkl")]
        if len(pickles) != 1:
            raise ValueError(f"{path}: expected one data.pkl in the archive, found {len(pickles)}")
        prefix = pickles[0][: -len("data.pkl")]
        try:
            data = _StateDictUnpickler(io.BytesIO(archive.read(pickles[0])), archive, prefix, path).load()
        except UnsafeCheckpointError:
            raise
        except Exception as error:  # a damaged pickle can fail in many ways; all mean the same here
            raise ValueError(f"{path}: not a readable state dict ({type(error).__name__}: {error})") from None
    for key in ("state_dict_backbone", "state_dict"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, _Tensor) for k, v in data.items()):
        raise ValueError(f"{path}: expected a state dict of tensors, got {type(data).__name__}")
    return {name.removeprefix("module."): tensor_array(name, tensor, path) for name, tensor in data.items()}
