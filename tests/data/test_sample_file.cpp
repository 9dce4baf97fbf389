// Sample files: .npy, .pt and .csv read back as written; labelled data sets (.csv with a header,
// .npy, .npz, .pt) split into inputs and outputs; every malformed file refused with one line
// naming it and what is wrong.
#include <ATen/ATen.h>
#include <caffe2/serialize/inline_container.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <torch/csrc/jit/serialization/pickle.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "data/sample_file.h"
#include "src/base/errors.h"
#include "src/base/io.h"
#include "tests/helpers.h"

namespace fs = std::filesystem;

namespace mmdflow {
namespace {

std::string folder() {
  const std::string dir = testing::TempDir() + "/mmdflow_samples_" + std::to_string(getpid());
  fs::create_directories(dir);
  return dir;
}

// A file of these bytes in the test folder: its path.
std::string file(const std::string& name, const std::string& bytes) {
  const std::string path = folder() + "/" + name;
  write_file_atomic(path, bytes);
  return path;
}

std::string bytes_of(const at::Tensor& t) {
  return std::string(static_cast<const char*>(t.data_ptr()), t.nbytes());
}

// A .npy file: magic, version, header length (2 bytes for version 1, else 4), header, data.
std::string npy(const std::string& dict, const std::string& data, int version = 1) {
  std::string out = std::string("\x93NUMPY", 6) + char(version) + '\0';
  const std::string header = dict + "\n";
  for (int k = 0; k < (version == 1 ? 2 : 4); ++k) out += char(header.size() >> (8 * k) & 0xff);
  return out + header + data;
}

std::string npy_dict(const std::string& descr, bool fortran, const std::string& shape) {
  return fmt::format("{{'descr': '{}', 'fortran_order': {}, 'shape': {}, }}", descr,
                     fortran ? "True" : "False", shape);
}

std::string pickled(const c10::IValue& v) {
  const std::vector<char> bytes = torch::jit::pickle_save(v);
  return std::string(bytes.begin(), bytes.end());
}

// x [3, 2] float64, exact in float32 and as integers.
at::Tensor small() {
  return at::tensor({1.0, -2.0, 3.5, 40.0, -0.25, 6.0}, at::kDouble).view({3, 2});
}

void expect_reads(const std::string& path, const at::Tensor& want) {
  const at::Tensor x = read_samples(path);
  EXPECT_EQ(x.scalar_type(), at::kDouble) << path;
  EXPECT_TRUE(x.is_contiguous()) << path;
  EXPECT_TRUE(at::equal(x, want)) << path << "\n" << x << "\n" << want;
}

TEST(SampleFile, NpyReadsBackAsWritten) {
  const at::Tensor x = test::inputs(50, 3, 1);
  const std::string path = folder() + "/x.npy";
  write_npy(path, x);
  expect_reads(path, x);
  const std::string bytes = read_file(path);
  EXPECT_EQ((bytes.size() - x.nbytes()) % 64, 0u);  // the data aligned, as numpy writes
  const std::string dict = "{'descr': '<f8', 'fortran_order': False, 'shape': (50, 3), }";
  EXPECT_EQ(bytes.substr(10, dict.size()), dict);
  EXPECT_EQ(bytes[bytes.size() - x.nbytes() - 1], '\n');
}

// float32 and integers, C and Fortran order, format 2.0, keys in another order, double quotes.
TEST(SampleFile, NpyDtypesAndOrders) {
  const at::Tensor x = small();
  const std::string f4 = bytes_of(x.to(at::kFloat));
  expect_reads(file("f4.npy", npy(npy_dict("<f4", false, "(3, 2)"), f4)), x);
  expect_reads(
      file("f8_fortran.npy", npy(npy_dict("<f8", true, "(3, 2)"), bytes_of(x.t().contiguous()))),
      x);
  expect_reads(file("f4_fortran.npy", npy(npy_dict("<f4", true, "(3,2)"),
                                          bytes_of(x.t().contiguous().to(at::kFloat)))),
               x);
  const at::Tensor n = at::tensor({1, -2, 3, 4, -5, 6}, at::kLong).view({3, 2});
  for (const auto& [descr, type] : std::vector<std::pair<std::string, c10::ScalarType>>{
           {"<i8", at::kLong}, {"<i4", at::kInt}, {"<i2", at::kShort}, {"|i1", at::kChar}})
    expect_reads(file("int.npy", npy(npy_dict(descr, false, "(3, 2)"), bytes_of(n.to(type)))),
                 n.to(at::kDouble));
  expect_reads(
      file("u1.npy", npy(npy_dict("|u1", false, "(3, 2)"), bytes_of(n.abs().to(at::kByte)))),
      n.abs().to(at::kDouble));
  expect_reads(file("v2.npy", npy(npy_dict("<f8", false, "(3, 2)"), bytes_of(x), 2)), x);
  expect_reads(file("v3.npy", npy(npy_dict("<f8", false, "(3, 2)"), bytes_of(x), 3)), x);
  const std::string dict = "{\"shape\":(3,2),\"fortran_order\":False,\"descr\":\"<f8\"}  ";
  expect_reads(file("order.npy", npy(dict, bytes_of(x))), x);
  expect_reads(file("one.npy", npy(npy_dict("<f8", false, "(1, 1)"), bytes_of(x[0][0].view({1})))),
               x[0][0].view({1, 1}));
}

// torch.save(tensor) and torch.save({name: tensor}): any real dtype, any strides.
TEST(SampleFile, PtReadsBackAsWritten) {
  const at::Tensor x = test::inputs(20, 4, 2);
  expect_reads(file("bare.pt", pickled(x)), x);
  const at::Tensor view = x.to(at::kFloat).t();  // [4, 20], strides [1, 4]
  expect_reads(file("view.pt", pickled(view)), view.to(at::kDouble));
  const at::Tensor rows = x.narrow(0, 5, 10);  // offset 20 into a storage of 80
  expect_reads(file("rows.pt", pickled(rows)), rows);
  const std::string path = folder() + "/dict.pt";
  save_tensors(path, {{"samples", x}});
  expect_reads(path, x);
  const at::Tensor n = at::arange(6, at::kLong).view({2, 3});
  save_tensors(path, {{"u", n}});
  expect_reads(path, n.to(at::kDouble));
}

TEST(SampleFile, CsvWithAndWithoutHeader) {
  const at::Tensor x = small();
  const std::string plain = "1,-2\n3.5,40\n-0.25,6\n";
  expect_reads(file("plain.csv", plain), x);
  expect_reads(file("no_end.csv", "1,-2\n3.5,40\n-0.25,6"), x);
  expect_reads(file("header.csv", "x, y\n" + plain), x);
  expect_reads(
      file("quoted.csv", "\"u_1\",\"u_2\"\r\n 1 , -2\r\n\r\n3.5e0,+4e1\r\n-0.25,\t6\r\n\n"), x);
  expect_reads(file("one.csv", "2.5\n"), at::full({1, 1}, 2.5, at::kDouble));
}

// The error read_samples throws for path: a ConfigError (exit 2) of one line naming the file.
std::string error_of(const std::string& path) {
  try {
    read_samples(path);
  } catch (const ConfigError& e) {
    const std::string what = e.what();
    EXPECT_EQ(exit_code_of(std::current_exception()), kBadInput);
    EXPECT_NE(what.find(path + ": "), std::string::npos) << what;
    EXPECT_EQ(what.find('\n'), std::string::npos) << what;
    return what;
  }
  ADD_FAILURE() << path << " was read";
  return "";
}

void expect_error(const std::string& path, const std::string& fragment) {
  const std::string e = error_of(path);
  EXPECT_NE(e.find(fragment), std::string::npos) << "'" << fragment << "' not in: " << e;
}

TEST(SampleFile, UnreadableOrUnknownFiles) {
  const std::string dir = folder();
  expect_error(dir + "/missing.npy", "cannot read " + dir + "/missing.npy: No such file");
  expect_error(file("x.txt", "1,2\n"), "unknown extension '.txt' (.npy, .pt or .csv are read)");
  expect_error(file("x", "1,2\n"), "unknown extension ''");
  fs::create_directories(dir + "/folder.csv");
  expect_error(dir + "/folder.csv", "not a regular file");
  fs::remove(dir + "/fifo.csv");
  ASSERT_EQ(::mkfifo((dir + "/fifo.csv").c_str(), 0600), 0);
  expect_error(dir + "/fifo.csv", "not a regular file");  // refused, not waited on
  // A sparse file one byte over the bound: refused before a byte is read.
  const std::string big = dir + "/big.csv";
  std::ofstream(big) << "1\n";
  fs::resize_file(big, kMaxSampleBytes + 1);
  expect_error(big, fmt::format("{} bytes, more than the {} it may hold", kMaxSampleBytes + 1,
                                kMaxSampleBytes));
  fs::remove(big);
  // Followed through a link (sample files are the user's, not a run folder's).
  write_npy(dir + "/target.npy", small());
  fs::remove(dir + "/link.npy");
  fs::create_symlink(dir + "/target.npy", dir + "/link.npy");
  expect_reads(dir + "/link.npy", small());
}

TEST(SampleFile, NonFiniteValuesNameTheirRow) {
  at::Tensor x = small();
  x[2][1] = std::nan("");
  expect_error(file("nan.npy", npy(npy_dict("<f8", false, "(3, 2)"), bytes_of(x))),
               "row 2 (counted from 0) holds NaN");
  x = small();
  x[1][0] = -INFINITY;
  expect_error(file("inf.npy", npy(npy_dict("<f4", true, "(3, 2)"),
                                   bytes_of(x.t().contiguous().to(at::kFloat)))),
               "row 1 (counted from 0) holds -inf");
  x = small();
  x[0][1] = INFINITY;
  expect_error(file("inf.pt", pickled(x)), "row 0 (counted from 0) holds inf");
  expect_error(file("nan.csv", "a,b\n1,2\n3,nan\n"), "line 3 holds NaN");
  expect_error(file("inf.csv", "1,2\n\n-inf,2\n"), "line 3 holds -inf");
  expect_error(file("huge.csv", "1,2\n1e999,2\n"), "line 2, column 1: '1e999' is not a number");
}

TEST(SampleFile, WrongRankOrNoRows) {
  const at::Tensor x = small();
  expect_error(file("1d.npy", npy(npy_dict("<f8", false, "(6,)"), bytes_of(x))),
               "a 1-D array of shape (6), samples are 2-D [M, d]");
  expect_error(file("0d.npy", npy(npy_dict("<f8", false, "()"), bytes_of(x[0][0]))),
               "a 0-D array of shape ()");
  expect_error(file("3d.pt", pickled(x.view({3, 2, 1}))), "its tensor is 3-D [3, 2, 1]");
  expect_error(file("1d.pt", pickled(x.view({6}))), "its tensor is 1-D [6]");
  expect_error(file("empty.npy", npy(npy_dict("<f8", false, "(0, 2)"), "")), "no rows (samples)");
  expect_error(file("flat.npy", npy(npy_dict("<f8", false, "(3, 0)"), "")), "rows of no numbers");
  expect_error(file("empty.pt", pickled(at::zeros({0, 2}, at::kDouble))), "no rows (samples)");
  expect_error(file("empty.csv", ""), "no rows (samples)");
  expect_error(file("blank.csv", "\n \n\r\n"), "no rows (samples)");
  expect_error(file("header_only.csv", "x,y\n"), "no rows (samples)");
}

TEST(SampleFile, MalformedCsv) {
  expect_error(file("ragged.csv", "x,y\n1,2\n3,4,5\n"), "line 3 has 3 numbers, line 2 has 2");
  expect_error(file("short.csv", "1,2\n3\n"), "line 2 has 1 numbers, line 1 has 2");
  expect_error(file("word.csv", "1,2\n3,abc\n"), "line 2, column 2: 'abc' is not a number");
  expect_error(file("mixed_header.csv", "x,1\n1,2\n"), "line 1, column 1: 'x' is not a number");
  expect_error(file("trailing.csv", "1,2,\n"), "line 1, column 3: '' is not a number");
  expect_error(file("second_header.csv", "x,y\nu,v\n1,2\n"),
               "line 2, column 1: 'u' is not a number");
  expect_error(file("control.csv", "1,2\n3,\x01\x1b[2J\n"), "'\\x01\\x1b[2J' is not a number");
}

// Writes the records of a .pt file back with the data record cut to `keep` bytes.
std::string cut_storage(const std::string& pt, size_t keep) {
  const std::string in = file("whole.pt", pt), out = folder() + "/cut.pt";
  caffe2::serialize::PyTorchStreamReader reader(in);
  caffe2::serialize::PyTorchStreamWriter writer(out);
  for (const std::string& name : reader.getAllRecords()) {
    if (name == "version" || name == ".data/version") continue;  // the writer adds its own
    const auto [data, size] = reader.getRecord(name);
    writer.writeRecord(name, data.get(), name.rfind("data/", 0) == 0 ? keep : size);
  }
  writer.writeEndOfFile();
  return out;
}

TEST(SampleFile, MalformedPt) {
  const at::Tensor x = small();
  const std::string dir = folder();
  save_tensors(dir + "/none.pt", {});
  expect_error(dir + "/none.pt", "holds no tensor (an empty dict)");
  save_tensors(dir + "/two.pt", {{"a", x}, {"b\n", x}});
  expect_error(dir + "/two.pt", "holds 2 tensors ('a', 'b\\n', ...), one is read");
  expect_error(file("int.pt", pickled(c10::IValue(int64_t(3)))),
               "not a tensor or a dict of tensors in torch.save's format (neither a tensor nor "
               "a dict of tensors but a Int)");
  expect_error(file("garbage.pt", "not a zip archive"),
               "not a tensor or a dict of tensors in torch.save's format (");
  expect_error(file("bool.pt", pickled(x > 0)),
               "its tensor holds Bool (floating or integer numbers");
  expect_error(cut_storage(pickled(x), 40),
               "its tensor does not lie within its storage (sizes [3, 2], strides [2, 1], offset "
               "0, 40 bytes of storage)");
  EXPECT_TRUE(at::equal(read_samples(cut_storage(pickled(x), 48)), x));  // the cut is the cause
  // Zero strides: 10^10 numbers over one.
  expect_error(
      file("expanded.pt", pickled(at::zeros({1, 1}, at::kDouble).expand({100000, 100000}))),
      "[100000, 100000] samples, more than the 134217728 numbers");
}

TEST(SampleFile, MalformedNpy) {
  const std::string x = bytes_of(small());
  const std::string ok = npy_dict("<f8", false, "(3, 2)");
  expect_reads(file("ok.npy", npy(ok, x)), small());
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"PK\x03\x04 not numpy", "not a .npy file (no \\x93NUMPY at its start)"},
      {npy(ok, x, 4), ".npy format 4 (1 to 3 are read)"},
      {npy(ok, x).substr(0, 9), "not a .npy file"},
      {npy(ok, x, 2).substr(0, 11), ".npy header past the end of the file"},
      {npy(ok, "").substr(0, 40), ".npy header past the end of the file"},
      {npy(std::string(10001, ' '), x), ".npy header of 10002 bytes, more than 10000"},
      {npy(npy_dict(">f8", false, "(3, 2)"), x), "big-endian dtype '>f8' (only little-endian"},
      {npy(npy_dict("<c16", false, "(3, 2)"), x), "dtype '<c16' (float32, float64, int8"},
      {npy(npy_dict("|b1", false, "(3, 2)"), x), "dtype '|b1'"},
      {npy(npy_dict("<u4", false, "(3, 2)"), x), "dtype '<u4'"},
      {npy(ok, x.substr(8)), "shape (3, 2) of <f8 needs 48 bytes of data, the file holds 40"},
      {npy(ok, x + "extra"), "needs 48 bytes of data, the file holds 53"},
      {npy(npy_dict("<f8", false, "(100000, 100000)"), x),
       "[100000, 100000] samples, more than the 134217728 numbers"},
      {npy(npy_dict("<f8", false, "(4294967296, 4294967296)"), x), "[4294967296, 4294967296]"},
      {npy(npy_dict("<f8", false, "(99999999999999999999, 1)"), x), "a size expected"},
      {npy(npy_dict("<f8", false, "(-3, 2)"), x), "a size expected"},
      {npy("{'descr': '<f8', 'shape': (3, 2)}", x),
       "keys 'descr', 'fortran_order' and 'shape' expected"},
      {npy("{'descr': '<f8', 'fortran_order': False, 'shape': (3, 2), 'extra': 1}", x),
       "unknown key 'extra'"},
      {npy("{'descr': '<f8', 'descr': '<f8', 'fortran_order': False, 'shape': (3, 2)}", x),
       "key 'descr' twice"},
      {npy("{'descr': '<f8', 'fortran_order': 0, 'shape': (3, 2)}", x), "True or False expected"},
      {npy("{'descr': [('a', '<f8')], 'fortran_order': False, 'shape': (3, 2)}", x),
       "a string expected"},
      {npy("{'descr' '<f8', 'fortran_order': False, 'shape': (3, 2)}", x), "':' expected"},
      {npy("{'de\nscr\x01': '<f8'}", x), "unknown key 'de\\nscr\\x01'"},
      {npy(ok + " ,", x), "bytes after the dict"},
      {npy("{'descr': '<f8' 'fortran_order': False}", x), "'}' expected"},
      {npy("{'descr': '<f8", x), "a string without its end"},
  };
  for (size_t k = 0; k < cases.size(); ++k)
    expect_error(file(fmt::format("bad{}.npy", k), cases[k].first), cases[k].second);
}

// ---- labelled data sets (data.input file) ---------------------------------------------------

std::string labelled_error(const std::string& path, int64_t outputs = 1) {
  try {
    read_labelled(path, outputs);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

void expect_labelled(const std::string& path, const at::Tensor& x, const at::Tensor& y,
                     int64_t outputs = 1) {
  const LabelledData d = read_labelled(path, outputs);
  EXPECT_TRUE(at::equal(d.x, x)) << path << "\n" << d.x;
  EXPECT_TRUE(at::equal(d.y, y)) << path << "\n" << d.y;
}

// The header names the outputs (y, y0, y_name), wherever they stand; the rest are inputs.
TEST(LabelledFile, CsvHeaderNamesInputsAndOutputs) {
  const at::Tensor x = small(), y = at::tensor({7.0, 8.0, 9.0}, at::kDouble).view({3, 1});
  expect_labelled(file("a.csv", "u,v,y\n1,-2,7\n3.5,40,8\n-0.25,6,9\n"), x, y);
  expect_labelled(file("b.csv", " y , age,year\n7,1,-2\n8,3.5,40\n9,-0.25,6\n"), x, y);
  const at::Tensor y2 = at::cat({y, -y}, 1);
  expect_labelled(file("c.csv", "y_a,x1,y_b,x2\n7,1,-7,-2\n8,3.5,-8,40\n9,-0.25,-9,6\n"), x, y2, 2);
  expect_labelled(file("d.csv", "x0,x1,y0,y1\n1,-2,7,-7\n3.5,40,8,-8\n-0.25,6,9,-9\n"), x, y2, 2);
}

// A .npy's last `outputs` columns; an .npz's x and y (numpy's own files, stored and deflated);
// a .pt dict {x, y}; a 1-D y is a column.
TEST(LabelledFile, NpyNpzAndPt) {
  const at::Tensor x = small(), y = at::tensor({7.0, 8.0, 9.0}, at::kDouble).view({3, 1});
  const std::string npy_path = folder() + "/xy.npy";
  write_npy(npy_path, at::cat({x, y}, 1));
  expect_labelled(npy_path, x, y);
  expect_labelled(npy_path, x.narrow(1, 0, 1), at::cat({x.narrow(1, 1, 1), y}, 1), 2);
  EXPECT_NE(labelled_error(npy_path, 3).find("rows of 3 numbers: the last 3 are the outputs"),
            std::string::npos);
  const std::string pt = folder() + "/xy.pt";
  save_tensors(pt, {{"x", x.to(at::kFloat)}, {"y", y.view({3})}});
  expect_labelled(pt, x, y);
  if (std::system("/usr/bin/python3 -c 'import numpy' 2>/dev/null") != 0)
    GTEST_SKIP() << "no python3 with numpy to write .npz files";
  for (const char* how : {"savez", "savez_compressed"}) {
    const std::string path = folder() + "/" + how + ".npz";
    const std::string cmd = fmt::format(
        "/usr/bin/python3 -c 'import numpy as np; np.{}(\"{}\", x=np.array([[1,-2],[3.5,40],"
        "[-0.25,6]]), y=np.array([7.,8.,9.]))'",
        how, path);
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    expect_labelled(path, x, y);
  }
}

// Each malformed data file: one line naming the file and what is wrong (the row, the column).
TEST(LabelledFile, MalformedFilesNameFileAndRow) {
  const std::vector<std::pair<std::string, std::string>> csv = {
      {"1,2,3\n4,5,6\n", "no header line: name the columns"},
      {"a,b,c\n1,2,3\n", "its header names no output column"},
      {"y,y1\n1,2\n", "its header names no input column"},
      {"a,a,y\n1,2,3\n", "header names column 'a' twice"},
      {"a,,y\n1,2,3\n", "header column 2 has no name"},
      {"a,b,y\n1,2\n", "its header names 3 columns, its rows hold 2"},
      {"a,b,y\n1,2,3\n4,nan,6\n", "line 3 holds NaN"},
      {"a,b,y\n1,2,3\n4,x,6\n", "line 3, column 2: 'x' is not a number"},
      {"a,b,y\n", "no rows"},
  };
  for (size_t k = 0; k < csv.size(); ++k) {
    const std::string path = file(fmt::format("bad{}.csv", k), csv[k].first);
    const std::string e = labelled_error(path);
    EXPECT_EQ(e.rfind(path + ": ", 0), 0u) << e;
    EXPECT_NE(e.find(csv[k].second), std::string::npos)
        << "'" << csv[k].second << "' not in: " << e;
  }
  const std::string pt = folder() + "/bad.pt";
  save_tensors(pt, {{"x", small()}});
  EXPECT_NE(labelled_error(pt).find("holds no tensor 'y'"), std::string::npos);
  save_tensors(pt, {{"x", small()}, {"y", at::ones({2, 1})}});
  EXPECT_NE(labelled_error(pt).find("3 inputs and 2 outputs"), std::string::npos);
  save_tensors(pt, {{"x", small()}, {"y", at::ones({3, 1})}, {"z", at::ones({3, 1})}});
  EXPECT_NE(labelled_error(pt).find("holds a tensor 'z'"), std::string::npos);
  at::Tensor bad = small().clone();
  bad[2][1] = INFINITY;
  save_tensors(pt, {{"x", bad}, {"y", at::ones({3, 1})}});
  EXPECT_NE(labelled_error(pt).find("row 2 (counted from 0) holds inf"), std::string::npos);
  EXPECT_NE(labelled_error(file("x.npz", "PK not a zip")).find("not an .npz archive"),
            std::string::npos);
  EXPECT_NE(labelled_error(file("x.txt", "a,y\n1,2\n")).find(".csv, .npy, .npz or .pt are read"),
            std::string::npos);
}

}  // namespace
}  // namespace mmdflow
