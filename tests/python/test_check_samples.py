#!/usr/bin/python3
"""tests/python/check_samples.py on synthetic run folders of `problem: samples` whose particles a
plain numpy loop moved (samples_fixture.py): it agrees with them (exit 0), finds particles or a
1/2 MMD^2 off by 1e-8 (exit 1), and refuses bad files and configurations it does not cover
(exit 2). Exits 77 (skipped) without PyTorch."""
import contextlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import types
import unittest

try:
    import numpy as np
    import torch
except ImportError:
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))
import check_samples  # noqa: E402
import samples_fixture  # noqa: E402
import samples_run  # noqa: E402

TOOL = os.path.join(HERE, "check_samples.py")


class CheckSamples(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="check_samples_")
        cls.good = os.path.join(cls.dir, "good")
        rng = np.random.default_rng(0)
        samples_fixture.make_run(cls.good, samples_fixture.rings(60), rng.normal(0, 0.5, (40, 2)),
                                 epochs=12, every=4, s=0.7, gamma=1.5)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir)

    def copy(self):
        folder = tempfile.mkdtemp(dir=self.dir)
        shutil.rmtree(folder)
        shutil.copytree(self.good, folder)
        return folder

    def check(self, folder, *extra):
        """check_samples.py run in this process (no second start of PyTorch per case)."""
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = check_samples.main([folder, *extra])
            except SystemExit as e:
                rc = e.code
        return types.SimpleNamespace(returncode=rc, stdout=out.getvalue(), stderr=err.getvalue())

    def run_script(self, folder, *extra):
        return subprocess.run([sys.executable, TOOL, folder, *extra], capture_output=True,
                              text=True, timeout=120)

    @staticmethod
    def write(path, text):
        with open(path, "w") as f:
            f.write(text)

    def edit(self, folder, name, old, new):
        path = os.path.join(folder, name)
        with open(path) as f:
            text = f.read()
        self.assertIn(old, text)
        with open(path, "w") as f:
            f.write(text.replace(old, new))

    def test_the_numpy_loops_run_agrees(self):
        r = self.run_script(self.good)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(len(r.stdout.splitlines()), 1, r.stdout)
        self.assertRegex(r.stdout, r"OK: 12 steps .* max \|Z - particles.pt\| = [0-9.e-]+")
        self.assertIn("summary.json", r.stdout)
        self.assertIn("losses.csv", r.stdout)

    def test_fewer_steps_compare_with_their_snapshot(self):
        r = self.check(self.good, "--steps", "8")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("snapshots.pt step 8", r.stdout)
        r = self.check(self.good, "--steps", "5")
        self.assertEqual(r.returncode, 2)
        self.assertIn("no step 5", r.stderr)

    def test_particles_off_by_1e_8_fail(self):
        folder = self.copy()
        path = os.path.join(folder, "particles.pt")
        Z = samples_run.load_pt(path)["Z"]
        Z[7, 1] += 1e-8
        torch.save({"Z": Z}, path)
        r = self.run_script(folder)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("MISMATCH", r.stdout)

    def test_a_snapshot_off_by_1e_8_fails(self):
        folder = self.copy()
        path = os.path.join(folder, "snapshots.pt")
        s = samples_run.load_pt(path)
        s["Z"][1, 3, 0] -= 1e-8  # step 4
        torch.save(dict(s), path)
        r = self.check(folder)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("(step 4)", r.stdout)

    def test_a_final_loss_off_fails(self):
        folder = self.copy()
        run = samples_run.Run(folder)
        exact = run.summary["final_valid_loss"]
        self.edit(folder, "summary.json", repr(exact), repr(exact * (1 + 1e-8)))
        r = self.check(folder)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        logged = f"{run.rows[-1]['valid_loss']:.9g}"
        folder = self.copy()
        self.edit(folder, "losses.csv", logged, f"{float(logged) * (1 + 1e-6):.9g}")
        r = self.check(folder)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)

    def test_configurations_it_does_not_cover_are_refused(self):
        for old, new, why in [("beta0: 0", "beta0: 0.5", "noise.beta0"),
                              ("name: gaussian", "name: laplace", "kernel.name"),
                              ("method: mmd", "method: sobolev", "flow.method"),
                              ("dtype: float64", "dtype: float32", "dtype"),
                              ("step_schedule: constant", "step_schedule: plateau",
                               "flow.step_schedule"),
                              ("problem: samples", "problem: student_teacher", "problem")]:
            folder = self.copy()
            self.edit(folder, "config.yaml", old, new)
            r = self.check(folder)
            self.assertEqual(r.returncode, 2, f"{new}: {r.stdout}{r.stderr}")
            self.assertIn(why, r.stderr)
            self.assertEqual(len(r.stderr.splitlines()), 1, r.stderr)

    def test_bad_files_are_refused_by_name(self):
        cases = {"target.pt": lambda p: os.remove(p),
                 "particles.pt": lambda p: torch.save({"X": torch.zeros(40, 2)}, p),
                 "snapshots.pt": lambda p: torch.save({"step": torch.tensor([0]),
                                                       "Z": torch.zeros(1, 40, 3)}, p),
                 "config.yaml": lambda p: self.write(p, "problem: [samples\n"),
                 "losses.csv": lambda p: self.write(p, "epoch,train_loss,valid_loss\n1,x,2\n")}
        for name, spoil in cases.items():
            folder = self.copy()
            spoil(os.path.join(folder, name))
            r = self.check(folder)
            self.assertEqual(r.returncode, 2, f"{name}: {r.stdout}{r.stderr}")
            self.assertIn(name, r.stderr)
        folder = self.copy()
        os.remove(os.path.join(folder, "snapshots.pt"))
        self.assertEqual(self.check(folder).returncode, 2)
        r = self.check(os.path.join(self.dir, "absent"))
        self.assertEqual(r.returncode, 2)
        self.assertIn("no such folder", r.stderr)

    def test_an_unfinished_run_is_refused(self):
        folder = self.copy()
        path = os.path.join(folder, "losses.csv")
        with open(path) as f:
            lines = f.readlines()
        with open(path, "w") as f:
            f.writelines(lines[:-2])
        r = self.check(folder)
        self.assertEqual(r.returncode, 2)
        self.assertIn("ends at epoch 10 of train.epochs 12", r.stderr)

    def test_the_minimal_yaml_reader_agrees_with_pyyaml(self):
        with open(os.path.join(self.good, "config.yaml")) as f:
            text = f.read()
        ours = samples_run.parse_yaml(text)
        self.assertEqual(samples_run.setting(ours, "kernel.bandwidth"), 0.7)
        self.assertIsNone(samples_run.setting(ours, "log.theory"))
        try:
            import yaml
        except ImportError:
            return
        self.assertEqual(ours, yaml.safe_load(text))


if __name__ == "__main__":
    unittest.main()
