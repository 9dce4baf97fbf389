// One name table per enum, specialised beside the enum (Names<E>), read by the config's parser
// and writer, by error messages and by --help: a choice is spelled in one place only.
#pragma once
#include <array>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace mmdflow {

// template <> struct Names<E> {
//   static constexpr const char* what = "activation";   // for messages
//   static constexpr std::array<std::pair<E, const char*>, K> table{{...}};
// };
template <typename E>
struct Names;

template <typename E>
const char* name_of(E value) {
  for (const auto& [v, name] : Names<E>::table)
    if (v == value) return name;
  return "?";
}

// "a, b, c"
template <typename E>
std::string name_list() {
  std::string out;
  for (const auto& entry : Names<E>::table) {
    if (!out.empty()) out += ", ";
    out += entry.second;
  }
  return out;
}

template <typename E>
std::optional<E> from_name(std::string_view name) {
  for (const auto& [v, n] : Names<E>::table)
    if (name == n) return v;
  return std::nullopt;
}

// Throws std::invalid_argument naming the valid choices.
template <typename E>
E parse_name(std::string_view name) {
  if (auto v = from_name<E>(name)) return *v;
  throw std::invalid_argument("unknown " + std::string(Names<E>::what) + " '" + std::string(name) +
                              "' (valid: " + name_list<E>() + ")");
}

}  // namespace mmdflow
