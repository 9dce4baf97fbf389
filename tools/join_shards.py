#!/usr/bin/python3
"""Join the student weights of a run of several processes into one file, with PyTorch.

  join_shards.py RUN [-o student.pt]

RUN holds student.index.json and the files it names (student-RRRRR-of-WWWWW.pt, one per
process); the joined dict of tensors is written to RUN/student.pt unless -o says otherwise.
"""
import argparse
import json
import os
import sys

import torch


def join(run):
    with open(os.path.join(run, "student.index.json")) as f:
        index = json.load(f)
    parts = [torch.load(os.path.join(run, s["file"])) for s in index["shards"]]
    student = {name: torch.cat([p[name] for p in parts]) for name in index["tensors"]}
    for name, shape in index["tensors"].items():
        if list(student[name].shape) != shape:
            sys.exit(f"join_shards.py: {name} is {list(student[name].shape)}, the index says {shape}")
    return student


def main(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("run", help="a run folder with student.index.json")
    p.add_argument("-o", "--out", help="the file to write (default: RUN/student.pt)")
    a = p.parse_args(argv)
    out = a.out or os.path.join(a.run, "student.pt")
    torch.save(join(a.run), out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
