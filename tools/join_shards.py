#!/usr/bin/python3
"""Join the student weights of a run of several processes into one file, with PyTorch.

  join_shards.py RUN [-o student.pt]

RUN holds student.index.json and the files it names (student-RRRRR-of-WWWWW.pt, one per
process); the joined dict of tensors is written to RUN/student.pt unless -o says otherwise.
The files are read as data only (torch.load's weights_only: a crafted file runs no code), the
index's names must lie in RUN and its ranges tile the particles, and the output is written
whole (a temporary renamed over it); a symbolic link at the output is refused.
"""
import argparse
import json
import os
import sys
import tempfile

import torch


def fail(why):
    sys.exit(f"join_shards.py: {why}")


def check_index(index):
    """The shard files' names and ranges, checked: plain names in RUN (no '/', no '..', not
    absolute), ranges [begin, end) that tile [0, particles) in order."""
    try:
        total = index["particles"]
        shards = [(s["file"], s["begin"], s["end"]) for s in index["shards"]]
        tensors = index["tensors"]
    except (KeyError, TypeError):
        fail("student.index.json: not a weights index")
    if not isinstance(total, int) or isinstance(total, bool) or total < 0:
        fail(f"student.index.json: particles is {total!r}")
    if not shards:
        fail("student.index.json: no shards")
    next_ = 0
    for name, begin, end in shards:
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
    for name, begin, end in shards:
        path = os.path.join(run, name)
        if os.path.islink(path):
            fail(f"{path}: a symbolic link, not a weights file")
        part = torch.load(path, weights_only=True)
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
