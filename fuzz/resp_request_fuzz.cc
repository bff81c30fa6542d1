// Fuzz target: the RESP command parser (resp/parser.h) on any bytes a client could send,
// with small limits so that they are reached.
//
// Checked beyond the sanitizers: the same bytes fed whole and in pieces (as a socket delivers
// them, the unconsumed rest kept in front of the next piece) give the same commands and end
// the same way (an error with the same text, or the same partial rest); every command has at
// least one argument and none is longer than the bulk limit; `used` never exceeds the input.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "pieces.h"
#include "resp/parser.h"

namespace {

using nexus::resp::Parser;
using nexus::resp::ParserLimits;

void Fail(const char* what) {
  std::fprintf(stderr, "%s\n", what);
  std::abort();
}

struct Outcome {
  std::vector<std::vector<std::string>> commands;
  std::string error;  // empty: no error
  std::string rest;   // bytes of an incomplete command
};

Outcome Parse(std::string_view bytes, size_t piece, const ParserLimits& limits) {
  Parser parser(limits);
  Outcome out;
  std::string pending;
  nexus::fuzz::FeedInPieces(bytes, piece, pending, [&](std::string& buffer) {
    for (;;) {
      // A copy each time: the parser must keep offsets, not pointers, across Feeds.
      const std::string copy = buffer;
      const Parser::Fed fed = parser.Feed(copy);
      if (fed.used > copy.size()) Fail("used more than the input");
      if (fed.state == Parser::State::kError) {
        if (parser.error().rfind("Protocol error: ", 0) != 0) Fail("error without its prefix");
        out.error = parser.error();
        buffer.clear();
        return false;
      }
      if (fed.state == Parser::State::kCommand) {
        if (parser.args().empty()) Fail("a command without arguments");
        std::vector<std::string> args;
        for (std::string_view a : parser.args()) {
          if (a.size() > limits.max_bulk_bytes && a.size() > limits.max_line_bytes) {
            Fail("an argument over the limits");
          }
          args.emplace_back(a);
        }
        out.commands.push_back(std::move(args));
      }
      buffer.erase(0, fed.used);
      if (fed.state == Parser::State::kNeedMore) return true;
    }
  });
  out.rest = pending;
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  ParserLimits limits;
  limits.max_bulk_bytes = in.ConsumeIntegralInRange<size_t>(0, 64);
  limits.max_args = in.ConsumeIntegralInRange<size_t>(1, 16);
  limits.max_command_bytes = in.ConsumeIntegralInRange<size_t>(8, 512);
  limits.max_line_bytes = in.ConsumeIntegralInRange<size_t>(4, 128);
  const size_t piece = in.ConsumeIntegralInRange<size_t>(1, 17);
  const std::string bytes = in.ConsumeRemainingBytesAsString();

  const Outcome whole = Parse(bytes, 0, limits);
  const Outcome split = Parse(bytes, piece, limits);
  if (whole.commands != split.commands) {
    for (const Outcome* o : {&whole, &split}) {
      std::fprintf(stderr, "%s (pieces of %zu):\n", o == &whole ? "whole" : "split", piece);
      for (const auto& c : o->commands) {
        std::string line;
        for (const std::string& a : c) line += "[" + a + "]";
        std::fprintf(stderr, "  %s\n", line.c_str());
      }
      std::fprintf(stderr, "  error '%s'\n", o->error.c_str());
    }
    Fail("whole and split commands differ");
  }
  if (whole.error != split.error) {
    // A line limit is met earlier or later depending on where the bytes stop: an incomplete
    // line over the limit fails as soon as it is too long, a complete one only when checked.
    // Both must still fail, and only when one of them is a length error.
    auto is_length = [](const std::string& e) { return e.find("too big") != std::string::npos; };
    if (whole.error.empty() || split.error.empty() ||
        !(is_length(whole.error) || is_length(split.error))) {
      std::fprintf(stderr, "whole: '%s' split: '%s'\n", whole.error.c_str(), split.error.c_str());
      Fail("whole and split end differently");
    }
  }
  if (whole.error.empty() && whole.rest != split.rest) Fail("whole and split rests differ");
  return 0;
}
