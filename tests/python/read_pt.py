#!/usr/bin/python3
"""Reads a .pt file as torch.load does, without torch: a zip archive whose data.pkl refers to the
tensors' storages by persistent id. Prints one line per tensor: name, dtype, shape, first value.
Exits non-zero when the file is not a dict of tensors in that format."""
import pickle
import struct
import sys
import zipfile

DTYPES = {"FloatStorage": ("float32", "<f"), "DoubleStorage": ("float64", "<d"),
          "LongStorage": ("int64", "<q")}


class Unpickler(pickle.Unpickler):
    def __init__(self, data, archive, prefix):
        super().__init__(data)
        self.archive, self.prefix = archive, prefix

    def find_class(self, module, name):
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return lambda storage, offset, size, stride, *rest: (storage, offset, tuple(size))
        if module == "torch" and name in DTYPES:
            return name
        if (module, name) == ("torch.jit._pickle", "restore_type_tag"):
            return lambda value, tag: value
        if (module, name) == ("collections", "OrderedDict"):
            return dict
        raise pickle.UnpicklingError(f"unexpected global {module}.{name}")

    def persistent_load(self, pid):  # ('storage', type, key, location, numel)
        kind, storage_type, key, location, numel = pid
        dtype, fmt = DTYPES[storage_type]
        raw = self.archive.read(f"{self.prefix}data/{key}")
        return dtype, struct.unpack(f"<{numel}{fmt[1]}", raw[: numel * struct.calcsize(fmt)])


def main(path):
    with zipfile.ZipFile(path) as z:
        pkl = [n for n in z.namelist() if n.endswith("data.pkl")]
        if len(pkl) != 1:
            sys.exit(f"{path}: no data.pkl")
        prefix = pkl[0][: -len("data.pkl")]
        obj = Unpickler(z.open(pkl[0]), z, prefix).load()
    if not isinstance(obj, dict) or not obj:
        sys.exit(f"{path}: not a dict of tensors")
    for name, ((dtype, values), offset, shape) in obj.items():
        print(name, dtype, list(shape), values[offset])


if __name__ == "__main__":
    main(sys.argv[1])
