#!/usr/bin/python3
"""tools/join_shards.py on run folders crafted to break it (N4 in docs/reliability.md): a shard
that runs code when unpickled, names outside the run folder, ranges that do not tile the
particles, a linked output. Each is refused (exit status not 0) and writes nothing; a good folder
joins. Exits 77 (skipped) without PyTorch."""
import json
import os
import subprocess
import sys
import tempfile
import unittest

try:
    import torch
except ImportError:
    sys.exit(77)

TOOL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools", "join_shards.py")


class Payload:
    """Unpickled, runs a shell command (what a crafted shard can do to torch.load)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class JoinShards(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="join_shards_")
        self.run_dir = os.path.join(self.dir, "run")
        os.mkdir(self.run_dir)
        # Two processes' files of a student of 5 particles, A [5, 2] and B [5, 1, 2].
        self.A, self.B = torch.randn(5, 2), torch.randn(5, 1, 2)
        for r, (b, e) in enumerate([(0, 3), (3, 5)]):
            torch.save({"A": self.A[b:e].clone(), "B": self.B[b:e].clone()}, self.shard(r))
        self.write_index([(0, 0, 3), (1, 3, 5)])

    def shard(self, r):
        return os.path.join(self.run_dir, f"student-{r:05}-of-00002.pt")

    def write_index(self, shards, names=None):
        index = {"particles": 5, "tensors": {"A": [5, 2], "B": [5, 1, 2]},
                 "shards": [{"file": (names or {}).get(r, os.path.basename(self.shard(r))),
                             "begin": b, "end": e} for r, b, e in shards]}
        with open(os.path.join(self.run_dir, "student.index.json"), "w") as f:
            json.dump(index, f)

    def join(self, *extra):
        return subprocess.run([sys.executable, TOOL, self.run_dir, *extra],
                              capture_output=True, text=True)

    def out(self):
        return os.path.join(self.run_dir, "student.pt")

    def test_a_good_folder_joins(self):
        r = self.join()
        self.assertEqual(r.returncode, 0, r.stderr)
        joined = torch.load(self.out(), weights_only=True)
        self.assertTrue(torch.equal(joined["A"], self.A) and torch.equal(joined["B"], self.B))
        self.assertEqual([n for n in os.listdir(self.run_dir) if ".tmp." in n], [])

    def test_files_written_by_mmdflow_load(self):
        sys.path.insert(0, os.path.dirname(TOOL))
        import join_shards
        w = join_shards.load(os.path.join(os.path.dirname(TOOL), "..", "tests", "fuzz", "corpus",
                                          "pt", "block_student.pt"))
        self.assertEqual(sorted(w), ["A", "B", "a", "b"])

    def test_a_shard_that_runs_code_is_refused(self):
        marker = os.path.join(self.dir, "ran")
        torch.save({"A": Payload(marker), "B": self.B[:3].clone()}, self.shard(0))
        r = self.join()
        self.assertNotEqual(r.returncode, 0)
        self.assertFalse(os.path.exists(marker), "the shard's code ran")
        self.assertFalse(os.path.exists(self.out()))

    def test_names_outside_the_run_folder_are_refused(self):
        outside = os.path.join(self.dir, "outside.pt")
        torch.save({"A": self.A[:3].clone(), "B": self.B[:3].clone()}, outside)
        for name in ["../outside.pt", outside]:
            self.write_index([(0, 0, 3), (1, 3, 5)], {0: name})
            r = self.join()
            self.assertNotEqual(r.returncode, 0, name)
            self.assertIn("not a name in the run folder", r.stderr, name)
            self.assertFalse(os.path.exists(self.out()))

    def test_ranges_must_tile_the_particles(self):
        for shards in [[(0, -1, 3), (1, 3, 5)], [(0, 0, 3), (1, 2, 5)], [(0, 0, 2), (1, 3, 5)],
                       [(0, 0, 3), (1, 3, 10**18)]]:
            self.write_index(shards)
            r = self.join()
            self.assertNotEqual(r.returncode, 0, shards)
            self.assertIn("student.index.json", r.stderr, shards)
            self.assertFalse(os.path.exists(self.out()))

    def test_a_linked_output_is_refused(self):
        victim = os.path.join(self.dir, "victim")
        with open(victim, "w") as f:
            f.write("keep")
        os.symlink(victim, self.out())
        r = self.join()
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("symbolic link", r.stderr)
        with open(victim) as f:
            self.assertEqual(f.read(), "keep")


if __name__ == "__main__":
    unittest.main()
