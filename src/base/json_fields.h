// A struct to and from JSON through its list of fields: visit(s, f) calls f(key, field) for each,
// so a key is spelled once. Fields: numbers, strings, vectors, std::optional (null when empty,
// and read back empty when null or absent) and structs with their own to_json / from_json.
#pragma once
#include <nlohmann/json.hpp>
#include <optional>

namespace mmdflow {

struct JsonWriter {
  nlohmann::json& j;
  template <typename T>
  void operator()(const char* key, const T& v) {
    j[key] = v;
  }
  template <typename T>
  void operator()(const char* key, const std::optional<T>& v) {
    j[key] = v ? nlohmann::json(*v) : nlohmann::json(nullptr);
  }
};

// Throws nlohmann::json::exception for a missing key or a value of the wrong type.
struct JsonReader {
  const nlohmann::json& j;
  template <typename T>
  void operator()(const char* key, T& v) {
    j.at(key).get_to(v);
  }
  template <typename T>
  void operator()(const char* key, std::optional<T>& v) {
    if (j.contains(key) && !j.at(key).is_null())
      v = j.at(key).template get<T>();
    else
      v.reset();
  }
};

}  // namespace mmdflow
