#include "src/train/summary.h"

#include <fmt/format.h>

#include "src/base/errors.h"
#include "src/base/io.h"
#include "src/base/json_fields.h"

namespace mmdflow {

std::string summary_json(const Summary& s) {
  nlohmann::json j;
  visit_summary(s, JsonWriter{j});
  return j.dump(2) + "\n";
}

Summary read_summary(const std::string& path) {
  Summary s;
  try {
    visit_summary(s, JsonReader{nlohmann::json::parse(read_file(path))});
  } catch (const nlohmann::json::exception& e) {
    throw CheckpointError(fmt::format("{}: not an mmdflow summary ({})", path, e.what()));
  }
  return s;
}

}  // namespace mmdflow
