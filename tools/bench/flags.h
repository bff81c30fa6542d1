// FlagSet: command-line flags in Go's `flag` syntax, because nexus-bench keeps the seed's load
// test flags (`-duration=30s -concurrency=50 ...`) and the scripts that call it. CLI11 (used by
// the server) wants `--` before long names, so this small parser exists instead:
//   -name value | -name=value | --name value | --name=value
//   booleans: -name (true) or -name=true|false
//   durations: Go's syntax, "30s", "1m30s", "500ms", "1.5h"
//   -h, -help: usage
// Errors use Go's wording ("flag provided but not defined: -x").
//
// Thread-safety: none; used once from main.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace nexus::bench {

absl::StatusOr<std::chrono::nanoseconds> ParseGoDuration(std::string_view text);
std::string FormatGoDuration(std::chrono::nanoseconds d);

class FlagSet {
 public:
  explicit FlagSet(std::string program) : program_(std::move(program)) {}

  // Each registers a flag whose current value of *target is its default.
  void String(std::string name, std::string* target, std::string help);
  void Int(std::string name, int* target, std::string help);
  void Double(std::string name, double* target, std::string help);
  void Bool(std::string name, bool* target, std::string help);
  void Duration(std::string name, std::chrono::nanoseconds* target, std::string help);

  // Parses argv[1..]. Sets *help when -h/-help is given (and stops there).
  absl::Status Parse(int argc, const char* const* argv, bool* help);
  std::string Usage() const;

 private:
  struct Flag {
    std::string name;
    std::string type;  // for the usage text: "string", "int", ...
    std::string help;
    std::string default_text;
    bool is_bool = false;
    std::function<bool(std::string_view)> set;
  };
  Flag* Find(std::string_view name);

  std::string program_;
  std::vector<Flag> flags_;
};

}  // namespace nexus::bench
