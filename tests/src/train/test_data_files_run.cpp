// Own data through the binary: a run's data sets written by log.data (and exported as CSV) train
// the same run again bit for bit, with or without its teacher's file; a student's weights start
// a run (warm start); a run without a teacher compares on its validation set; data files that do
// not fit the model exit 2 naming the key, the file and what is wrong, before anything is
// written.
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "src/base/io.h"
#include "tests/cli.h"

namespace fs = std::filesystem;

namespace mmdflow {
namespace {

using test::run;
using test::scratch;

// Noise injection at beta = 1 over 30 epochs: any difference in data, order or noise shows.
const std::string kArgs =
    "train --threads 1 --set student.particles=300 --set teacher.particles=2 --set data.dim=5"
    " --set data.train_size=100 --set data.valid_size=50 --set train.batch=25"
    " --set train.epochs=30 --set noise.beta0=1 --set noise.every=10 --set flow.step_size=2"
    " --set compare.samples=500";

void expect_same_student(const std::string& a, const std::string& b) {
  for (const char* w : {"A", "B"})
    EXPECT_TRUE(
        at::equal(test::tensor_of(a + "/student.pt", w), test::tensor_of(b + "/student.pt", w)))
        << w << " of " << a << " and " << b;
}

nlohmann::json summary(const std::string& dir) {
  return nlohmann::json::parse(read_file(dir + "/summary.json"));
}

// rows of x and y as CSV: a header x0.., y; every value in 17 significant digits (exact in
// float64).
void write_csv(const std::string& path, const at::Tensor& x, const at::Tensor& y) {
  std::ofstream f(path);
  for (int64_t j = 0; j < x.size(1); ++j) f << "in" << j << ",";
  f << "y\n";
  const at::Tensor X = x.to(at::kDouble), Y = y.to(at::kDouble);
  for (int64_t i = 0; i < X.size(0); ++i) {
    for (int64_t j = 0; j < X.size(1); ++j) f << fmt::format("{:.17g},", X[i][j].item<double>());
    f << fmt::format("{:.17g}\n", Y[i][0].item<double>());
  }
}

// float32: the run's own train_data.pt and valid_data.pt give the same losses and weights, with
// its teacher.pt and without a teacher; the test loss without one is the last validation loss,
// and the zero student's is 1/2 mean y^2 of valid_data.pt; with the teacher, the nearest
// particles are listed too.
TEST(DataFiles, ARunFromItsOwnDataFilesIsTheSameRunBitForBit) {
  const std::string a = scratch("drawn"), b = scratch("files"), c = scratch("files_alone");
  ASSERT_EQ(run(kArgs + " --set log.data=true --out " + a).code, 0);
  for (const char* f : {"train_data.pt", "valid_data.pt"}) {
    EXPECT_EQ(test::tensor_of(a + "/" + f, "x").scalar_type(), at::kFloat) << f;
    EXPECT_EQ(test::tensor_of(a + "/" + f, "y").size(1), 1) << f;
  }
  EXPECT_EQ(test::tensor_of(a + "/train_data.pt", "x").sizes(), (std::vector<int64_t>{100, 5}));
  const std::string files = fmt::format(
      " --set data.input=file --set data.train_file={0}/train_data.pt"
      " --set data.valid_file={0}/valid_data.pt",
      a);
  const test::Result rb =
      run(kArgs + files + " --set teacher.file=" + a + "/teacher.pt --out " + b);
  ASSERT_EQ(rb.code, 0) << rb.output;
  EXPECT_EQ(test::losses_without_seconds(a), test::losses_without_seconds(b));
  expect_same_student(a, b);
  const test::Result rc = run(kArgs + files + " --out " + c);
  ASSERT_EQ(rc.code, 0) << rc.output;
  EXPECT_EQ(test::losses_without_seconds(a), test::losses_without_seconds(c));
  expect_same_student(a, c);
  EXPECT_FALSE(fs::exists(c + "/teacher.pt"));
  EXPECT_NE(rc.output.find("test loss 1/2 mean ||f_student(x) - y||^2 over the 50 validation rows"),
            std::string::npos)
      << rc.output;
  const nlohmann::json s = summary(c);
  EXPECT_EQ(s["compare"]["samples"], 50);
  EXPECT_NEAR(s["compare"]["test_loss"].get<double>(), s["final_valid_loss"].get<double>(),
              1e-6 * s["final_valid_loss"].get<double>());
  const at::Tensor y = test::tensor_of(a + "/valid_data.pt", "y").to(at::kDouble);
  EXPECT_NEAR(s["compare"]["zero_test_loss"].get<double>(), 0.5 * y.pow(2).mean().item<double>(),
              1e-12);
  // compare --run reads the run's copy of the validation set (valid_data.pt needs log.data:
  // without it, data.valid_file)
  const test::Result cmp = run("compare --run " + c);
  EXPECT_EQ(cmp.code, 0) << cmp.output;
  EXPECT_NE(cmp.output.find(fmt::format("{:.6e}", s["compare"]["test_loss"].get<double>())),
            std::string::npos)
      << cmp.output;
  const auto nearest = [](const nlohmann::json& sum) {
    const nlohmann::json& c = sum.at("compare");
    return c.contains("nearest_mod_unit_order") ? c.at("nearest_mod_unit_order") : nullptr;
  };
  EXPECT_TRUE(nearest(s).is_null()) << s.dump();
  EXPECT_EQ(cmp.output.find("Nearest student particles"), std::string::npos) << cmp.output;
  // With its teacher, the run on data files lists the nearest particles of the same student to
  // the same teacher as the run that drew the data: the same table, in the summary and printed.
  const nlohmann::json sa = summary(a), sb = summary(b);
  ASSERT_TRUE(nearest(sa).is_array()) << sa.dump();
  EXPECT_EQ(nearest(sa).size(), 2u);
  EXPECT_EQ(nearest(sb), nearest(sa));
  EXPECT_TRUE(sb["compare"].contains("test_loss")) << sb.dump();
  const test::Result cmp_b = run("compare --run " + b);
  EXPECT_EQ(cmp_b.code, 0) << cmp_b.output;
  for (const char* line : {"test loss 1/2 mean", "Nearest student particles"})
    EXPECT_NE(cmp_b.output.find(line), std::string::npos) << line << "\n" << cmp_b.output;
}

// float64: the data exported as CSV with a header (17 digits) train the same run again.
TEST(DataFiles, ARunFromItsDataExportedAsCsvIsTheSameRunBitForBit) {
  const std::string a = scratch("drawn64"), b = scratch("csv64"), dir = scratch("csv");
  const std::string args = kArgs + " --set dtype=float64";
  ASSERT_EQ(run(args + " --set log.data=true --out " + a).code, 0);
  fs::create_directories(dir);
  for (const char* set : {"train", "valid"}) {
    const std::string pt = fmt::format("{}/{}_data.pt", a, set);
    write_csv(fmt::format("{}/{}.csv", dir, set), test::tensor_of(pt, "x"),
              test::tensor_of(pt, "y"));
  }
  const test::Result r =
      run(args + fmt::format(" --set data.input=file --set data.train_file={0}/train.csv"
                             " --set data.valid_file={0}/valid.csv --out {1}",
                             dir, b));
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(test::losses_without_seconds(a), test::losses_without_seconds(b));
  expect_same_student(a, b);
  // the resolved sizes are the files' rows
  EXPECT_NE(read_file(b + "/config.yaml").find("train_size: 100"), std::string::npos);
}

// A student's weights start a run: with no epochs it is the run it came from.
TEST(DataFiles, AWarmStartBeginsWhereTheRunItCameFromEnded) {
  const std::string a = scratch("first"), b = scratch("warm");
  ASSERT_EQ(run(kArgs + " --set dtype=float64 --out " + a).code, 0);
  const test::Result r = run(kArgs +
                             " --set dtype=float64 --set train.epochs=0"
                             " --set student.init_file=" +
                             a + "/student.pt --out " + b);
  ASSERT_EQ(r.code, 0) << r.output;
  expect_same_student(a, b);
  EXPECT_EQ(summary(b)["initial_valid_loss"], summary(a)["final_valid_loss"]);
  EXPECT_EQ(summary(b)["compare"]["half_mmd2"], summary(a)["compare"]["half_mmd2"]);
}

// A run on data files resumes only on the data it started with (log.data keeps them): a file
// edited between the runs is refused, naming the run's copy, and nothing is written.
TEST(DataFiles, ResumeOnAChangedDataFileIsRefused) {
  const std::string a = scratch("kept"), b = scratch("changing"), dir = scratch("edited");
  const std::string args = kArgs + " --set dtype=float64";
  ASSERT_EQ(run(args + " --set log.data=true --set train.epochs=0 --out " + a).code, 0);
  fs::create_directories(dir);
  for (const char* set : {"train", "valid"}) {
    const std::string pt = fmt::format("{}/{}_data.pt", a, set);
    write_csv(fmt::format("{}/{}.csv", dir, set), test::tensor_of(pt, "x"),
              test::tensor_of(pt, "y"));
  }
  const std::string files = fmt::format(
      " --set data.input=file --set data.train_file={0}/train.csv"
      " --set data.valid_file={0}/valid.csv --set log.data=true",
      dir);
  ASSERT_EQ(run(args + files + " --set train.epochs=4 --out " + b).code, 0);
  const at::Tensor x = test::tensor_of(a + "/train_data.pt", "x");
  write_csv(dir + "/train.csv", x + 1e-9, test::tensor_of(a + "/train_data.pt", "y"));
  const auto before = test::snapshot(b);
  const test::Result r = run("train --resume " + b + " --set train.epochs=8");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find(b + "/train_data.pt: the run's data differ from those it started with "
                              "(a data file changed?)"),
            std::string::npos)
      << r.output;
  EXPECT_EQ(test::snapshot(b), before);
}

// Files that do not fit: exit 2, one line naming the key, the file and what is wrong; no folder.
TEST(DataFiles, FilesThatDoNotFitExit2NamingKeyFileAndWhat) {
  const std::string a = scratch("source"), dir = scratch("bad");
  ASSERT_EQ(run(kArgs + " --set log.data=true --set train.epochs=0 --out " + a).code, 0);
  fs::create_directories(dir);
  std::ofstream(dir + "/nan.csv") << "a,b,c,d,e,y\n1,2,3,4,5,6\n1,2,nan,4,5,6\n";
  const std::string files = fmt::format(
      " --set data.input=file --set data.train_file={0}/train_data.pt"
      " --set data.valid_file={0}/valid_data.pt",
      a);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {files + " --set data.dim=4",
       "data.train_file: " + a + "/train_data.pt has 5 input columns, data.dim is 4"},
      {files + " --set model.outputs=2", "data.train_file: " + a +
                                             "/train_data.pt has 1 output column, model.outputs "
                                             "is 2"},
      {" --set data.input=file --set data.train_file=" + dir +
           "/nan.csv --set data.valid_file=" + a + "/valid_data.pt",
       "data.train_file: " + dir + "/nan.csv: line 3 holds NaN"},
      {files + " --set train.batch=200 --set data.train_size=500",
       "train.batch: must be at most the 100 rows of data.train_file"},
      {" --set data.input=file", "data.train_file: data.input file needs it"},
      {" --set data.train_file=x.csv", "data.train_file: read only with data.input file"},
      {files + " --set data.fresh=true", "data.fresh: new inputs need a law to draw from"},
      {files + " --set flow.method=drmmd", "flow.method: drmmd needs the teacher's particles"},
      {" --set teacher.file=" + a + "/teacher.pt --set teacher.particles=3",
       "teacher.file: " + a + "/teacher.pt: tensor 'A' is [2, 3, 5], the config needs [3, 3, 5]"},
      {" --set student.init_file=" + a + "/teacher.pt", "student.init_file: " + a + "/teacher.pt"},
  };
  for (size_t k = 0; k < cases.size(); ++k) {
    const std::string out = scratch(fmt::format("refused{}", k));
    const test::Result r = run(kArgs + cases[k].first + " --out " + out);
    EXPECT_EQ(r.code, 2) << cases[k].first << "\n" << r.output;
    EXPECT_NE(r.output.find(cases[k].second), std::string::npos)
        << "'" << cases[k].second << "' not in: " << r.output;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
    EXPECT_FALSE(fs::exists(out)) << cases[k].first;
  }
}

}  // namespace
}  // namespace mmdflow
