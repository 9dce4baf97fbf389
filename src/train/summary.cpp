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
    visit_summary(
        s, JsonReader{nlohmann::json::parse(read_regular_file(path, kMaxSummaryBytes, true))});
  } catch (const nlohmann::json::exception& e) {
    throw CheckpointError(fmt::format("{}: not an mmdflow summary ({})", path, e.what()));
  } catch (const std::runtime_error& e) {
    throw CheckpointError(e.what());
  }
  return s;
}

}  // namespace mmdflow
