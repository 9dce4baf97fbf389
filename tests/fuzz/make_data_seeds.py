#!/usr/bin/python3
"""Writes the seeds of fuzz_data (tests/fuzz/fuzz_data.cpp) into tests/fuzz/corpus/data: numpy's
and torch's own files, each after the byte that picks its format (0 .npy, 1 .npz, 2 .csv, 3 .pt).
Run from the repository root: tests/fuzz/make_data_seeds.py"""
import io
import os

import numpy as np
import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "data")
rng = np.random.default_rng(0)


def write(name, fmt, data):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(bytes([fmt]) + data)


def npy(a):
    b = io.BytesIO()
    np.save(b, a)
    return b.getvalue()


def npz(save, **arrays):
    b = io.BytesIO()
    save(b, **arrays)
    return b.getvalue()


def pt(obj):
    b = io.BytesIO()
    torch.save(obj, b)
    return b.getvalue()


os.makedirs(OUT, exist_ok=True)
x = rng.standard_normal((5, 3))
write("f64.npy", 0, npy(x))
write("f32_fortran.npy", 0, npy(np.asfortranarray(x.astype(np.float32))))
write("int16.npy", 0, npy(np.arange(12, dtype=np.int16).reshape(4, 3)))
write("stored.npz", 1, npz(np.savez, x=x[:, :2], y=x[:, 2]))
write("deflated.npz", 1, npz(np.savez_compressed, x=x[:, :2], y=x[:, 1:]))
write("header.csv", 2, b"a,b,y\n1,2,3\n4.5,-6e-3,7\n\n8,9,10\n")
write("header_names.csv", 2, b"x0,y_price,x1,y1\n1,2,3,4\n5,6,7,8\n")
write("plain.csv", 2, b"1,2,3\n4,5,6\n")
write("dict.pt", 3, pt({"x": torch.from_numpy(x[:, :2]), "y": torch.from_numpy(x[:, 2:])}))
write("tensor.pt", 3, pt(torch.arange(6, dtype=torch.float32).reshape(3, 2)))
write("int_dict.pt", 3, pt({"x": torch.arange(6).reshape(3, 2), "y": torch.arange(3)}))
