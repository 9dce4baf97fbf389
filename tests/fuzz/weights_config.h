// The runs whose weight files fuzz_pt and fuzz_shard read (tests/fuzz/fuzz_pt.cpp,
// fuzz_shard.cpp), shared with the test that their seeds still read back
// (tests/src/train/test_fuzz_regressions.cpp). The seeds in tests/fuzz/corpus/pt and
// tests/fuzz/corpus/shard are the files of these two runs (layout block and dense):
//   mmdflow train --out RUN --threads 1 --set data.dim=3 --set model.hidden=2
//     --set model.hidden_bias=true --set model.output_bias=true --set student.particles=4
//     --set teacher.particles=2 --set data.train_size=6 --set data.valid_size=6
//     --set train.batch=2 --set train.epochs=2 --set compare.samples=10 --set compare.nearest=1
//     [--set student.layout=dense]
// pt/: block_student.pt, dense_student.pt, teacher.pt and each one's data.pkl (*.pkl);
// shard/: block.bin, dense.bin (RUN/checkpoint.shards/g000001-00000-of-00001.bin).
// The weights files fuzz_index reads (tests/fuzz/index/) and the seed tests/fuzz/corpus/index/
// student.index.json are those of the block run with --set student.particles=130 at 2 processes
// (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT set as torchrun sets them): 128 particles and 2.
#pragma once
#include <caffe2/serialize/inline_container.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "src/train/config.h"

namespace mmdflow::fuzz {

inline Config weights_config(Layout layout) {
  Config c;
  c.data.dim = 3;
  c.model.hidden = 2;
  c.model.hidden_bias = true;
  c.model.output_bias = true;
  c.student.particles = 4;
  c.student.layout = layout;
  c.teacher.particles = 2;
  c.data.train_size = 6;
  c.data.valid_size = 6;
  c.train.batch = 2;
  c.train.epochs = 2;
  return c;
}

// fuzz_index's run: two files of the block layout, one a noise block of particles.
inline Config index_config() {
  Config c = weights_config(Layout::Block);
  c.student.particles = 130;
  return c;
}
inline const std::string kIndexFiles = std::string(MMDFLOW_SOURCE_DIR) + "/tests/fuzz/index/";

// A .pt archive (torch.save's zip) holding `pickle` as its data.pkl and storages data/0 ..
// data/7 of 128 bytes each.
inline std::string pt_archive(const std::string& pickle) {
  std::string zip;
  caffe2::serialize::PyTorchStreamWriter w([&](const void* data, size_t n) {
    zip.append(static_cast<const char*>(data), n);
    return n;
  });
  w.writeRecord("data.pkl", pickle.data(), pickle.size());
  const std::string storage(128, '\x3f');
  for (int k = 0; k < 8; ++k)
    w.writeRecord("data/" + std::to_string(k), storage.data(), storage.size());
  w.writeEndOfFile();
  return zip;
}

// A fuzzer's scratch folder, made at the first call (with the folder `sub` inside unless empty),
// removed at exit.
inline const std::string& scratch_folder(const std::string& name, const std::string& sub = "") {
  static const std::string* dir = [&] {
    std::string t = std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp";
    t += "/" + name + ".XXXXXX";
    if (!::mkdtemp(t.data())) std::abort();
    if (!sub.empty()) std::filesystem::create_directory(t + "/" + sub);
    std::atexit([] { std::filesystem::remove_all(*dir); });
    return new std::string(t);
  }();
  return *dir;
}

}  // namespace mmdflow::fuzz
