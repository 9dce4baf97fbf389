// A run folder against what else may be there: a second process, a folder in place of a file,
// temporaries of a run killed at its start, symbolic links, foreign or corrupt weight files.
#include <ATen/ATen.h>
#include <caffe2/serialize/inline_container.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>

#include "src/base/io.h"
#include "tests/cli.h"

namespace fs = std::filesystem;

namespace mmdflow {
namespace {

using test::run;
using test::scratch;
using test::snapshot;

// 60 epochs of 100 steps, a checkpoint every 7: about a second on one thread.
const std::string kArgs =
    " --threads 1 --set train.epochs=60 --set train.batch=5 --set train.checkpoint_every=7"
    " --set student.particles=100 --set compare.samples=200";

std::string reference() {
  const std::string ref = scratch("ref");
  test::Result r = run("train --out " + ref + kArgs);
  EXPECT_EQ(r.code, 0) << r.output;
  return ref;
}

void expect_same_run(const std::string& dir, const std::string& ref) {
  EXPECT_EQ(test::lines_without_seconds(read_file(dir + "/losses.csv")),
            test::lines_without_seconds(read_file(ref + "/losses.csv")));
  EXPECT_EQ(read_file(dir + "/student.pt"), read_file(ref + "/student.pt"));
}

int64_t temporaries(const std::string& dir) {
  int64_t n = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    n += e.path().filename().string().find(".tmp.") != std::string::npos;
  return n;
}

// Two processes started at once into one new folder: one runs, the other exits 2 (the folder in
// use, or already filled) and leaves the winner's run whole.
TEST(RunFolder, TwoRunsStartedAtOnceIntoOneFolder) {
  const std::string ref = reference();
  for (int k = 0; k < 3; ++k) {
    const std::string out = scratch("race" + std::to_string(k));
    const auto codes = test::wait_all({test::spawn("train --out " + out + kArgs, out + ".a"),
                                       test::spawn("train --out " + out + kArgs, out + ".b")},
                                      std::chrono::minutes(2));
    ASSERT_EQ(std::min(codes[0], codes[1]), 0) << read_file(out + ".a") << read_file(out + ".b");
    ASSERT_EQ(std::max(codes[0], codes[1]), 2) << read_file(out + ".a") << read_file(out + ".b");
    const std::string loser = read_file(codes[0] == 2 ? out + ".a" : out + ".b");
    EXPECT_TRUE(loser.find("in use by another mmdflow process") != std::string::npos ||
                loser.find("already exists and is not an empty folder") != std::string::npos)
        << loser;
    EXPECT_EQ(std::count(loser.begin(), loser.end(), '\n'), 1) << loser;
    expect_same_run(out, ref);
  }
}

// While a run holds its folder (here stopped with SIGSTOP, so nothing changes meanwhile), a
// second --resume, --out or compare of it exits 2 and changes nothing; the run then ends as if
// alone.
TEST(RunFolder, SecondProcessOnARunningFolderTouchesNothing) {
  const std::string ref = reference();
  const std::string out = scratch("held");
  ASSERT_EQ(run("train --out " + out + kArgs + " --set train.epochs=20").code, 0);
  const pid_t pid = test::spawn("train --resume " + out + " --set train.epochs=60", out + ".log");
  ASSERT_TRUE(test::wait_for_epochs(out, pid, 25)) << read_file(out + ".log");
  kill(pid, SIGSTOP);
  const auto before = snapshot(out);
  for (const std::string& args :
       {"train --resume " + out, "train --resume " + out + kArgs, "train --out " + out + kArgs}) {
    test::Result r = run(args);
    EXPECT_EQ(r.code, 2) << args << "\n" << r.output;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
    EXPECT_TRUE(snapshot(out) == before) << args;
  }
  EXPECT_NE(run("train --resume " + out).output.find(out + ": in use by another mmdflow process"),
            std::string::npos);
  kill(pid, SIGCONT);
  EXPECT_EQ(test::wait_code(pid), 0) << read_file(out + ".log");
  expect_same_run(out, ref);
}

// N13: the run folder removed (rm -rf) or swapped for another mid-run: the run stops with exit
// 4 naming it, and writes no new folder in its place.
TEST(RunFolder, FolderRemovedOrReplacedMidRunExitsFour) {
  for (const bool swap : {false, true}) {
    const std::string out = scratch(swap ? "swapped" : "removed");
    const pid_t pid =
        test::spawn("train --out " + out + kArgs + " --set train.epochs=100000", out + ".log");
    ASSERT_TRUE(test::wait_for_epochs(out, pid, 3)) << read_file(out + ".log");
    fs::remove_all(out);
    if (swap) fs::create_directories(out);  // another folder under the same name
    EXPECT_EQ(test::wait_code(pid), 4) << read_file(out + ".log");
    EXPECT_NE(read_file(out + ".log").find("the run folder was removed or replaced during the run"),
              std::string::npos)
        << read_file(out + ".log");
    EXPECT_EQ(fs::exists(out), swap);
    if (swap) {
      EXPECT_TRUE(fs::is_empty(out));
    }
  }
}

// A finished run whose config.yaml became a folder (or a link): --resume refuses it and deletes
// nothing.
TEST(RunFolder, ResumeWhoseConfigIsNotAFileDeletesNothing) {
  const std::string out = scratch("config_dir"), elsewhere = scratch("config_elsewhere");
  ASSERT_EQ(run("train --out " + out + kArgs + " --set train.epochs=10").code, 0);
  const std::string config = read_file(out + "/config.yaml");
  fs::create_directories(elsewhere);
  write_file_atomic(elsewhere + "/config.yaml", config);
  for (const bool link : {false, true}) {
    fs::remove_all(out + "/config.yaml");
    if (link)
      fs::create_symlink(elsewhere + "/config.yaml", out + "/config.yaml");
    else
      fs::create_directories(out + "/config.yaml/inside");
    const auto before = snapshot(out);
    test::Result r = run("train --resume " + out + " --set train.epochs=20");
    EXPECT_EQ(r.code, 2) << r.output;
    EXPECT_NE(r.output.find("--resume " + out + ": no config.yaml there"), std::string::npos)
        << r.output;
    EXPECT_TRUE(snapshot(out) == before) << (link ? "link" : "folder");
  }
  EXPECT_EQ(read_file(elsewhere + "/config.yaml"), config);
}

// What a run killed while writing its first config.yaml leaves (the lock and a temporary) is an
// empty folder to --out, which removes the temporary; --resume says to start it again so.
TEST(RunFolder, FolderOfTemporariesOnlyIsStartedAgainWithOut) {
  const std::string ref = reference();
  const std::string out = scratch("only_temporaries");
  fs::create_directories(out);
  std::ofstream(out + "/.lock");
  std::ofstream(out + "/config.yaml.tmp.4242.0") << "seed: 0\ntrain:\n  epo";
  test::Result r = run("train --resume " + out);
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("start that run again with --out " + out), std::string::npos) << r.output;
  r = run("train --out " + out + kArgs);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(temporaries(out), 0);
  expect_same_run(out, ref);
}

// Symbolic links planted in a run folder are never written through: links named as temporaries
// are removed, a linked losses.csv or config.yaml is refused on --resume, a linked student.pt is
// replaced by a file; the files they point to stay as they were.
TEST(RunFolder, SymbolicLinksAreNeverFollowed) {
  const std::string elsewhere = scratch("victims");
  fs::create_directories(elsewhere);
  for (const char* name : {"a", "b", "losses.csv", "config.yaml", "student.pt"})
    write_file_atomic(elsewhere + "/" + name, std::string("keep ") + name);
  const auto victims = snapshot(elsewhere);

  const std::string out = scratch("links");
  fs::create_directories(out);
  fs::create_symlink(elsewhere + "/a", out + "/config.yaml.tmp.1.0");
  fs::create_symlink(elsewhere + "/b", out + "/losses.csv.tmp.1.1");
  test::Result r = run("train --out " + out + kArgs + " --set train.epochs=20");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(temporaries(out), 0);
  EXPECT_EQ(fs::symlink_status(out + "/config.yaml").type(), fs::file_type::regular);

  for (const auto& [name, expect] :
       {std::pair{"losses.csv", out + "/losses.csv: missing"},
        std::pair{"config.yaml", "--resume " + out + ": no config.yaml there"}}) {
    const std::string saved = read_file(out + "/" + name);
    write_file_atomic(elsewhere + "/" + name, saved);  // a link to a good copy is still refused
    fs::remove(out + "/" + name);
    fs::create_symlink(elsewhere + "/" + name, out + "/" + name);
    const auto before = snapshot(out);
    r = run("train --resume " + out + " --set train.epochs=30");
    EXPECT_EQ(r.code, 2) << name << "\n" << r.output;
    EXPECT_NE(r.output.find(expect), std::string::npos) << r.output;
    EXPECT_TRUE(snapshot(out) == before) << name;
    EXPECT_EQ(read_file(elsewhere + "/" + name), saved) << name;
    fs::remove(out + "/" + name);
    write_file_atomic(out + "/" + name, saved);
    write_file_atomic(elsewhere + "/" + name, std::string("keep ") + name);
  }

  fs::rename(out + "/student.pt", elsewhere + "/student.pt");
  write_file_atomic(elsewhere + "/student.pt", "keep student.pt");
  fs::create_symlink(elsewhere + "/student.pt", out + "/student.pt");
  r = run("compare --run " + out);
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find(out + "/student.pt: a symbolic link, not a regular file"),
            std::string::npos)
      << r.output;
  r = run("train --resume " + out + " --set train.epochs=30");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(fs::symlink_status(out + "/student.pt").type(), fs::file_type::regular);
  EXPECT_EQ(load_tensors(out + "/student.pt").size(), 2u);
  EXPECT_TRUE(snapshot(elsewhere) == victims);
}

// The .pt archive at path with its records as they are but data.pkl, given to edit.
void edit_pickle(const std::string& path, const std::function<void(std::string&)>& edit) {
  std::vector<std::pair<std::string, std::string>> records;
  {
    caffe2::serialize::PyTorchStreamReader in(path);
    for (const std::string& name : in.getAllRecords()) {
      if (name == "version" || name == ".data/version") continue;  // the writer adds it
      const auto [data, size] = in.getRecord(name);
      records.emplace_back(name, std::string(static_cast<const char*>(data.get()), size));
    }
  }
  caffe2::serialize::PyTorchStreamWriter out(path);
  for (auto& [name, data] : records) {
    if (name == "data.pkl") edit(data);
    out.writeRecord(name, data.data(), data.size());
  }
  out.writeEndOfFile();
}

// Replaces the one occurrence of `from` in s by `to`.
void replace_once(std::string& s, const std::string& from, const std::string& to) {
  const size_t at = s.find(from);
  ASSERT_NE(at, std::string::npos);
  ASSERT_EQ(s.find(from, at + 1), std::string::npos);
  s.replace(at, from.size(), to);
}

// compare on weight files that cannot be this run's: each exits 2 with one line naming the file
// and what is wrong; none reads past a tensor's storage or crashes.
TEST(RunFolder, BadWeightFilesExitTwoNamingTheFile) {
  const std::string run_dir = scratch("weights"), other = scratch("other_teacher");
  const std::string args = " --threads 1 --set train.epochs=3 --set student.particles=100";
  ASSERT_EQ(run("train --out " + run_dir + args).code, 0);
  ASSERT_EQ(run("train --out " + other + args + " --set teacher.particles=3").code, 0);
  const std::string student = run_dir + "/student.pt", teacher = run_dir + "/teacher.pt";
  const std::string good_student = read_file(student), good_teacher = read_file(teacher);
  const NamedTensors w = load_tensors(student);  // A [100, 3, 10] strides [30, 10, 1], B

  const std::string edited = scratch("edited.pt");
  auto edit = [&](const std::function<void(std::string&)>& f) {
    write_file_atomic(edited, good_student);
    edit_pickle(edited, f);
    return read_file(edited);
  };
  auto saved = [&](const NamedTensors& t) {
    save_tensors(edited, t);
    return read_file(edited);
  };
  at::Tensor nan_B = w[1].second.clone();
  nan_B[7][0][1] = NAN;
  struct Case {
    std::string file, content, expect;
  };
  const std::vector<Case> cases = {
      {student, "", "not a dict of tensors in torch.save's format"},
      {student, "garbage, not a zip archive", "not a dict of tensors in torch.save's format"},
      {teacher, read_file(other + "/teacher.pt"),
       "tensor 'A' is [3, 3, 10], the config needs [1, 3, 10]"},
      {student, saved({w[0]}), "tensor 'B' is missing"},
      {student, saved({w[1], w[0]}), "unexpected tensor 'B' where 'A' belongs"},
      {student, saved({w[0], {"B", nan_B}}), "tensor 'B' holds non-finite values"},
      {student, saved({w[0], {"B", w[1].second.to(at::kDouble)}}),
       "tensor 'B' is Double, the config needs Float"},
      // A's first stride 30 -> 255: rows 1.. would lie far past its storage.
      {student, edit([](std::string& p) { replace_once(p, "(K\x1eK\nK\x01t", "(K\xffK\nK\x01t"); }),
       "tensor 'A' does not lie within its storage (strides [255, 10, 1]"},
      // A's storage offset 0 -> 255: its last 255 values past its storage.
      {student,
       edit([](std::string& p) { replace_once(p, std::string("\x07K\x00(", 4), "\x07K\xff("); }),
       "tensor 'A' does not lie within its storage (strides [30, 10, 1], offset 255"},
      // A's storage as float64: the same bytes hold half as many values.
      {student,
       edit([](std::string& p) { replace_once(p, "torch\nFloatStorage", "torch\nDoubleStorage"); }),
       "tensor 'A' is Double"},
      // A memo index of 2^32 - 1, which torch's unpickler would grow its memo to (64 GB).
      {student, edit([](std::string& p) { replace_once(p, "q\x01", "r\xff\xff\xff\xff"); }),
       "memo index 4294967295"},
  };
  for (const Case& c : cases) {
    write_file_atomic(student, good_student);
    write_file_atomic(teacher, good_teacher);
    write_file_atomic(c.file, c.content);
    test::Result r = run("compare --run " + run_dir);
    EXPECT_EQ(r.code, 2) << c.expect << "\n" << r.output;
    EXPECT_NE(r.output.find("mmdflow: error: " + c.file + ": "), std::string::npos) << r.output;
    EXPECT_NE(r.output.find(c.expect), std::string::npos) << c.expect << "\n" << r.output;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
  }
  write_file_atomic(student, good_student);
  write_file_atomic(teacher, good_teacher);
  EXPECT_EQ(run("compare --run " + run_dir).code, 0);
}

// compare sharded over 2 processes reads its rows of a one-process run's student.pt and gives
// the one-process comparison (float32: 1/2 MMD^2 to 1e-5). Found before: each rank took all rows
// for its shard, exit 1.
TEST(RunFolder, ShardedCompareReadsItsRowsOfAOneProcessStudent) {
  const std::string dir = scratch("one_process");
  ASSERT_EQ(
      run("train --out " + dir + kArgs + " --set train.epochs=3 --set student.particles=300").code,
      0);
  test::Result one = run("compare --run " + dir);
  ASSERT_EQ(one.code, 0) << one.output;
  const std::string log = dir + ".ranks";
  const auto codes =
      test::wait_all(test::spawn_ranks("compare --run " + dir, 2, test::free_port(), log),
                     std::chrono::seconds(120));
  EXPECT_EQ(codes, (std::vector<int>{0, 0})) << read_file(log + ".0") << read_file(log + ".1");
  // The same table; 1/2 MMD^2 summed over the shards in another order (float32).
  const std::string sharded = read_file(log + ".0");
  auto mmd = [](const std::string& out) { return std::stod(out.substr(out.find("inputs: ") + 8)); };
  EXPECT_NEAR(mmd(sharded), mmd(one.output), 1e-5 * mmd(one.output)) << sharded;
  EXPECT_EQ(sharded.substr(sharded.find('\n')), one.output.substr(one.output.find('\n')));
}

}  // namespace
}  // namespace mmdflow
