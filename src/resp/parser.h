// resp::Parser: the socket-free, incremental parser of client commands in the Redis
// serialization protocol (RESP), in the shape of Dragonfly's redis_parser: bytes in, one
// command (its arguments) out, no I/O.
//
// A command is either a multibulk (an array of bulk strings: "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
// what every client library sends) or an inline command (a line of words, "GET k\r\n", what
// telnet sends; quoting and escapes as Redis's sdssplitargs: "a b" 'c d' "\x41\n"). Nothing
// nests: a client command is one flat array, so '*' inside it is refused as Redis refuses it.
// Empty commands ("*0\r\n", "*-1\r\n", a blank line) are skipped, as Redis skips them.
//
// Incremental: Feed is given the unconsumed input, which starts at the current command; a
// partial command is not consumed and is handed again with more bytes after it (the caller's
// buffer may move in between: the parser keeps offsets, not pointers, and never scans a byte
// twice, so a large value arriving in small reads costs nothing extra).
//
// Errors are Redis's texts (what Redis answers before closing the connection):
//   "Protocol error: invalid multibulk length"   (not a number, or more than max_args)
//   "Protocol error: invalid bulk length"        (not a number, negative, > max_bulk_bytes)
//   "Protocol error: expected '$', got 'X'"
//   "Protocol error: too big mbulk count string" / "too big bulk count string" / "too big
//   inline request"                              (a line longer than max_line_bytes)
//   "Protocol error: unbalanced quotes in request"
// and ours: "Protocol error: expected CRLF after a bulk string", "Protocol error: command
// longer than N bytes" (max_command_bytes: what one command may make the connection buffer).
// After an error the parser stays failed until Reset.
//
// Thread-safety: none (one per connection).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace nexus::resp {

struct ParserLimits {
  size_t max_bulk_bytes = 512 << 20;    // one argument (Redis: proto-max-bulk-len)
  size_t max_args = 1 << 20;            // arguments of one command (Redis: 1024 * 1024)
  size_t max_command_bytes = 64 << 20;  // one command with its framing
  size_t max_line_bytes = 64 << 10;     // an inline command; a "*N" / "$N" line (Redis: 64 KiB)
};

class Parser {
 public:
  enum class State { kNeedMore, kCommand, kError };
  struct Fed {
    State state;
    // Bytes of `input` that are done with: the command (kCommand) and any empty commands
    // before it. The caller consumes them (after using args(), which point into them).
    size_t used;
  };

  explicit Parser(ParserLimits limits = {}) : limits_(limits) {}

  // Parses the next command from `input`: see the top of the file.
  Fed Feed(std::string_view input);
  // After kCommand: the arguments (at least one), views into the input given to Feed (or into
  // the parser, for an inline command with escapes), valid until the next Feed or Reset.
  std::span<const std::string_view> args() const { return args_; }
  // After kError: the reply text, without "ERR ": "Protocol error: ...".
  const std::string& error() const { return error_; }
  // Forgets any partial command and error.
  void Reset();

  const ParserLimits& limits() const { return limits_; }

 private:
  enum class Phase : uint8_t { kStart, kBulkHeader, kBulkBody, kFailed };

  Fed Fail(std::string text);
  // Finds the '\r' ending the line that starts at `from` (*cr); false if it has not arrived,
  // or (the parser failed) the line is longer than max_line_bytes: `too_long` says which.
  bool FindLine(std::string_view input, size_t from, size_t* cr, const char* too_long);
  void BeginCommand();

  const ParserLimits limits_;
  Phase phase_ = Phase::kStart;
  size_t pos_ = 0;          // next byte of the current command to parse (offset in it)
  size_t scanned_ = 0;      // a line is searched for its CRLF from here (never twice)
  int64_t remaining_ = 0;   // arguments still to come (multibulk)
  size_t bulk_length_ = 0;  // of the bulk string whose body comes next
  std::vector<std::pair<size_t, size_t>> spans_;  // argument offsets and lengths
  std::vector<std::string_view> args_;
  std::vector<std::string> inline_args_;  // an inline command's unescaped words
  std::string error_;
};

// A decimal integer as a RESP count or a command's numeric argument: an optional '-' and digits,
// at most 20 characters (Redis's LONG_STR_SIZE), nothing else; false on overflow.
bool ParseInteger(std::string_view text, int64_t* out);

// Splits an inline command line as Redis's sdssplitargs does; false for unbalanced quotes.
bool SplitInline(std::string_view line, std::vector<std::string>* words);

}  // namespace nexus::resp
