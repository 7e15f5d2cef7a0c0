"""PyTorch's zip checkpoint format (torch.save since 1.6) read into numpy, without running any code.

The archive holds `<name>/data.pkl`, a pickle whose tensors are `torch._utils._rebuild_tensor_v2(
storage, offset, size, stride, ...)` calls on persistent ids `("storage", torch.FloatStorage, key,
location, numel)`, and each storage's raw bytes in `<name>/data/<key>` (byte order in
`<name>/byteorder`, little-endian when absent). The unpickler here knows only those few globals and
builds numpy arrays itself: a file naming any other global is refused.
"""
import collections
import io
import pickle
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


def _rebuild_tensor(storage, offset, size, stride, *unused):
    """numpy twin of torch._utils._rebuild_tensor_v2: a strided view of the storage, copied."""
    if not size:
        return np.array(storage[offset])
    itemsize = storage.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage[offset:], shape=tuple(size), strides=tuple(s * itemsize for s in stride), writeable=False
    )
    return np.ascontiguousarray(view)


def _rebuild_parameter(data, *unused):
    return data


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
        return self._storage(pid[1].name, str(pid[2]))

    def _storage(self, type_name, key):
        raw = self.archive.read(f"{self.prefix}data/{key}")
        dtype = STORAGE_DTYPES[type_name]
        if dtype == "bfloat16":  # numpy has no bfloat16: its 16 bits are the top half of a float32
            bits = np.frombuffer(raw, np.dtype(np.uint16).newbyteorder(self.byteorder)).astype(np.uint32)
            return (bits << 16).view(np.float32)
        return np.frombuffer(raw, np.dtype(dtype).newbyteorder(self.byteorder)).astype(dtype)


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
    if not isinstance(data, dict) or not all(isinstance(v, np.ndarray) for v in data.values()):
        raise ValueError(f"{path}: expected a state dict of tensors, got {type(data).__name__}")
    return {name.removeprefix("module."): value for name, value in data.items()}
