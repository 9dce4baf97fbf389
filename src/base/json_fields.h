// A struct to and from JSON through its list of fields: visit(s, f) calls f(key, field) for each,
// so a key is spelled once. Fields: numbers, strings, vectors, std::optional (null when empty,
// and read back empty when null or absent) and structs with their own to_json / from_json.
#pragma once
#include <cstdint>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

namespace mmdflow {

namespace json_detail {

template <typename T>
struct is_vector : std::false_type {};
template <typename U, typename A>
struct is_vector<std::vector<U, A>> : std::true_type {};
template <typename T>
struct is_string_map : std::false_type {};
template <typename U>
struct is_string_map<std::map<std::string, U>> : std::true_type {};

// Whether j is an integer that T holds.
template <typename T>
bool fits(const nlohmann::json& j) {
  using L = std::numeric_limits<T>;
  if (j.is_number_unsigned()) return j.get<uint64_t>() <= uint64_t(L::max());
  if (!j.is_number_integer()) return false;
  const int64_t i = j.get<int64_t>();
  if constexpr (std::is_signed_v<T>)
    return i >= int64_t(L::min()) && i <= int64_t(L::max());
  else
    return i >= 0 && uint64_t(i) <= uint64_t(L::max());
}

}  // namespace json_detail

// v from j, through vectors and string-keyed maps, each integer checked to be one that fits:
// nlohmann's own conversion casts a number such as 1e76 to int64_t unchecked (undefined
// behaviour). Throws nlohmann::json::exception.
template <typename T>
void read_json(const nlohmann::json& j, T& v) {
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    if (!json_detail::fits<T>(j))
      throw nlohmann::json::out_of_range::create(406, "not an integer in range: " + j.dump(), &j);
    v = j.get<T>();
  } else if constexpr (json_detail::is_vector<T>::value) {
    if (!j.is_array())
      throw nlohmann::json::type_error::create(302, "not an array: " + j.dump(), &j);
    v.clear();
    for (const nlohmann::json& e : j) read_json(e, v.emplace_back());
  } else if constexpr (json_detail::is_string_map<T>::value) {
    if (!j.is_object())
      throw nlohmann::json::type_error::create(302, "not an object: " + j.dump(), &j);
    v.clear();
    for (auto e = j.begin(); e != j.end(); ++e) read_json(e.value(), v[e.key()]);
  } else {
    j.get_to(v);
  }
}

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

// Throws nlohmann::json::exception for a missing key or a value of the wrong type or range.
struct JsonReader {
  const nlohmann::json& j;
  template <typename T>
  void operator()(const char* key, T& v) {
    read_json(j.at(key), v);
  }
  template <typename T>
  void operator()(const char* key, std::optional<T>& v) {
    if (j.contains(key) && !j.at(key).is_null())
      read_json(j.at(key), v.emplace());
    else
      v.reset();
  }
};

}  // namespace mmdflow
