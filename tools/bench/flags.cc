#include "tools/bench/flags.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <optional>

#include "absl/strings/str_format.h"
#include "common/parse.h"
#include "tools/bench/strings.h"

namespace nexus::bench {

namespace {

bool ParseDouble(std::string_view v, double* out) {
  if (v.empty()) return false;
  const std::string text(v);
  char* end = nullptr;
  const double d = std::strtod(text.c_str(), &end);
  if (end != text.c_str() + text.size() || !std::isfinite(d)) return false;
  *out = d;
  return true;
}

// Go's strconv.ParseBool.
bool ParseBool(std::string_view v, bool* out) {
  for (std::string_view t : {"1", "t", "T", "TRUE", "true", "True"}) {
    if (v == t) return *out = true, true;
  }
  for (std::string_view f : {"0", "f", "F", "FALSE", "false", "False"}) {
    if (v == f) return *out = false, true;
  }
  return false;
}

}  // namespace

absl::StatusOr<std::chrono::nanoseconds> ParseGoDuration(std::string_view text) {
  const std::string original(text);
  auto bad = [&] {
    return absl::InvalidArgumentError("time: invalid duration \"" + original + "\"");
  };
  if (text.empty()) return bad();
  if (text == "0") return std::chrono::nanoseconds(0);
  double total = 0;
  while (!text.empty()) {
    size_t i = 0;
    while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.'))
      ++i;
    if (i == 0) return bad();
    double number = 0;
    if (!ParseDouble(text.substr(0, i), &number)) return bad();
    text.remove_prefix(i);
    size_t u = 0;
    while (u < text.size() && !std::isdigit(static_cast<unsigned char>(text[u])) && text[u] != '.')
      ++u;
    const std::string_view unit = text.substr(0, u);
    text.remove_prefix(u);
    double scale;
    if (unit == "ns")
      scale = 1;
    else if (unit == "us" || unit == "µs")
      scale = 1e3;
    else if (unit == "ms")
      scale = 1e6;
    else if (unit == "s")
      scale = 1e9;
    else if (unit == "m")
      scale = 60e9;
    else if (unit == "h")
      scale = 3600e9;
    else
      return bad();  // Go requires a unit ("missing unit in duration")
    total += number * scale;
  }
  if (total > 9.2e18) return bad();
  return std::chrono::nanoseconds(static_cast<int64_t>(std::llround(total)));
}

std::string FormatGoDuration(std::chrono::nanoseconds d) {
  const int64_t ns = d.count();
  if (ns == 0) return "0s";
  if (ns % 3'600'000'000'000 == 0) return Cat(ns / 3'600'000'000'000, "h0m0s");
  if (ns % 60'000'000'000 == 0) return Cat(ns / 60'000'000'000, "m0s");
  if (ns % 1'000'000'000 == 0) return Cat(ns / 1'000'000'000, "s");
  if (ns % 1'000'000 == 0) return Cat(ns / 1'000'000, "ms");
  return Cat(ns, "ns");
}

void FlagSet::String(std::string name, std::string* target, std::string help) {
  flags_.push_back({std::move(name), "string", std::move(help), "\"" + *target + "\"", false,
                    [target](std::string_view v) {
                      *target = std::string(v);
                      return true;
                    }});
}

void FlagSet::Int(std::string name, int* target, std::string help) {
  flags_.push_back({std::move(name), "int", std::move(help), std::to_string(*target), false,
                    [target](std::string_view v) { return ParseInt(v, target); }});
}

void FlagSet::Double(std::string name, double* target, std::string help) {
  flags_.push_back({std::move(name), "float", std::move(help), absl::StrFormat("%g", *target),
                    false, [target](std::string_view v) { return ParseDouble(v, target); }});
}

void FlagSet::Bool(std::string name, bool* target, std::string help) {
  flags_.push_back({std::move(name), "", std::move(help), *target ? "true" : "false", true,
                    [target](std::string_view v) { return ParseBool(v, target); }});
}

void FlagSet::Duration(std::string name, std::chrono::nanoseconds* target, std::string help) {
  flags_.push_back({std::move(name), "duration", std::move(help), FormatGoDuration(*target), false,
                    [target](std::string_view v) {
                      auto d = ParseGoDuration(v);
                      if (!d.ok()) return false;
                      *target = *d;
                      return true;
                    }});
}

FlagSet::Flag* FlagSet::Find(std::string_view name) {
  for (Flag& f : flags_) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

absl::Status FlagSet::Parse(int argc, const char* const* argv, bool* help) {
  *help = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg.size() < 2 || arg[0] != '-') {
      return absl::InvalidArgumentError(Cat("unexpected argument: ", arg));
    }
    arg.remove_prefix(arg[1] == '-' ? 2 : 1);
    std::string_view name = arg;
    std::optional<std::string_view> value;
    if (const size_t eq = arg.find('='); eq != std::string_view::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
    }
    if (name == "h" || name == "help") {
      *help = true;
      return absl::OkStatus();
    }
    Flag* flag = Find(name);
    if (flag == nullptr) {
      return absl::InvalidArgumentError(Cat("flag provided but not defined: -", name));
    }
    if (!value) {
      if (flag->is_bool) {
        value = "true";
      } else if (i + 1 < argc) {
        value = argv[++i];
      } else {
        return absl::InvalidArgumentError(Cat("flag needs an argument: -", name));
      }
    }
    if (!flag->set(*value)) {
      return absl::InvalidArgumentError(
          Cat("invalid value \"", *value, "\" for flag -", name, ": parse error"));
    }
  }
  return absl::OkStatus();
}

std::string FlagSet::Usage() const {
  std::string out = Cat("Usage of ", program_, ":\n");
  std::vector<const Flag*> sorted;
  for (const Flag& f : flags_) sorted.push_back(&f);
  std::sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) { return a->name < b->name; });
  for (const Flag* f : sorted) {
    AppendTo(out, "  -", f->name, f->type.empty() ? std::string() : " " + f->type, "\n    \t",
             f->help);
    if (f->default_text != "false" && f->default_text != "\"\"" && f->default_text != "0") {
      AppendTo(out, " (default ", f->default_text, ")");
    }
    AppendTo(out, "\n");
  }
  return out;
}

}  // namespace nexus::bench
