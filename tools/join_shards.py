#!/usr/bin/python3
"""Join the student weights of a run of several processes into one file, with PyTorch.

  join_shards.py RUN [-o student.pt]

RUN holds student.index.json and the files it names (student-RRRRR-of-WWWWW.pt, one per
process); the joined dict of tensors is written to RUN/student.pt unless -o says otherwise.
The files are read as data only (an unpickler that admits tensors only: a crafted file runs no
code), the index's names must lie in RUN and its ranges tile the particles, and the output is
written whole (a temporary renamed over it); a symbolic link at the output is refused.
"""
import argparse
import collections
import io
import json
import os
import pickle
import sys
import tempfile
import zipfile
import zlib

import torch


# Storage classes a weights file may name, by their dtypes.
DTYPES = {"FloatStorage": torch.float32, "DoubleStorage": torch.float64,
          "HalfStorage": torch.float16, "BFloat16Storage": torch.bfloat16,
          "LongStorage": torch.int64, "IntStorage": torch.int32, "ByteStorage": torch.uint8}


def rebuild_tensor(storage, offset, size, stride, *_):
    return storage.as_strided(size, stride, offset).clone()  # as_strided checks the bounds


class DataOnlyUnpickler(pickle.Unpickler):
    """A dict of tensors (mmdflow's torch::pickle_save or torch.save) from a zip archive, and
    nothing else: no global but a tensor's rebuild, OrderedDict and restore_type_tag is
    admitted, so a crafted file cannot run code, and each tensor lies within its record's
    bytes. (torch.load's weights_only=True of torch 1.13 refuses restore_type_tag, which every
    file of mmdflow's holds, and its pickle_module is ignored.)"""

    def __init__(self, data, records):
        super().__init__(data)
        self.records = records

    def find_class(self, module, name):
        if module == "torch" and name in DTYPES:
            return DTYPES[name]
        allowed = {("torch._utils", "_rebuild_tensor_v2"): rebuild_tensor,
                   ("collections", "OrderedDict"): collections.OrderedDict,
                   ("torch.jit._pickle", "restore_type_tag"): lambda value, _: value}
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a weights file")
        return allowed[(module, name)]

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and
                isinstance(pid[1], torch.dtype) and isinstance(pid[2], str)):
            raise pickle.UnpicklingError(f"not a storage: {pid!r}")
        data = bytearray(self.records(pid[2]))
        return torch.frombuffer(data, dtype=pid[1]) if data else torch.empty(0, dtype=pid[1])


def load(path):
    """The dict of tensors in a .pt file, read as data only."""
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        prefix = names[0].split("/")[0] if names else ""
        pickled = io.BytesIO(z.read(f"{prefix}/data.pkl"))
        return DataOnlyUnpickler(pickled, lambda key: z.read(f"{prefix}/data/{key}")).load()


def fail(why):
    sys.exit(f"join_shards.py: {why}")


def check_index(index):
    """The shard files' names and ranges, checked: plain names in RUN (no '/', no '..', not
    absolute), ranges [begin, end) that tile [0, particles) in order."""
    try:
        total = index["particles"]
        shards = [(s["file"], s["begin"], s["end"], s.get("crc")) for s in index["shards"]]
        tensors = index["tensors"]
    except (KeyError, TypeError):
        fail("student.index.json: not a weights index")
    if not isinstance(total, int) or isinstance(total, bool) or total < 0:
        fail(f"student.index.json: particles is {total!r}")
    if not shards:
        fail("student.index.json: no shards")
    next_ = 0
    for name, begin, end, _ in shards:
        if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\0" in name:
            fail(f"student.index.json: shard file {name!r} is not a name in the run folder")
        for v in (begin, end):
            if not isinstance(v, int) or isinstance(v, bool):
                fail(f"student.index.json: shard {name!r} has range [{begin!r}, {end!r})")
        if begin != next_ or end < begin or end > total:
            fail(f"student.index.json: shard {name!r} [{begin}, {end}) does not follow [0, {next_})")
        next_ = end
    if next_ != total:
        fail(f"student.index.json: its shards hold {next_} particles, it says {total}")
    return shards, tensors


def join(run):
    with open(os.path.join(run, "student.index.json")) as f:
        index = json.load(f)
    shards, tensors = check_index(index)
    parts = []
    for name, begin, end, crc in shards:
        path = os.path.join(run, name)
        if os.path.islink(path):
            fail(f"{path}: a symbolic link, not a weights file")
        if crc is not None:  # CRC-32 of the file; indexes of earlier versions have none
            with open(path, "rb") as f:
                if zlib.crc32(f.read()) != crc:
                    fail(f"{path}: its checksum is not the one student.index.json gives "
                         "(a file of another run?)")
        part = load(path)
        for tensor in tensors:
            if not isinstance(part, dict) or not torch.is_tensor(part.get(tensor)) or \
                    part[tensor].dim() < 1 or part[tensor].shape[0] != end - begin:
                fail(f"{path}: no tensor {tensor} of {end - begin} particles")
        parts.append(part)
    student = {name: torch.cat([p[name] for p in parts]) for name in tensors}
    for name, shape in tensors.items():
        if list(student[name].shape) != shape:
            fail(f"{name} is {list(student[name].shape)}, the index says {shape}")
    return student


def save(student, out):
    """Writes out whole: a temporary beside it, renamed over it; a link at out is refused."""
    if os.path.islink(out):
        fail(f"{out}: a symbolic link; not written through")
    folder = os.path.dirname(os.path.abspath(out))
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(out) + ".tmp.", dir=folder)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            torch.save(student, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("run", help="a run folder with student.index.json")
    p.add_argument("-o", "--out", help="the file to write (default: RUN/student.pt)")
    a = p.parse_args(argv)
    out = a.out or os.path.join(a.run, "student.pt")
    save(join(a.run), out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
