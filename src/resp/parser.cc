#include "resp/parser.h"

#include <algorithm>
#include <cctype>
#include <utility>

#include "common/parse.h"

namespace nexus::resp {
namespace {

bool IsSpace(char c) {
  return c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '\v' || c == '\f';
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

bool ParseInteger(std::string_view text, int64_t* out) {
  return text.size() <= 20 && ParseInt(text, out);
}

bool SplitInline(std::string_view line, std::vector<std::string>* words) {
  const size_t end = line.size();
  size_t p = 0;
  for (;;) {
    while (p < end && (IsSpace(line[p]) || line[p] == '\0')) ++p;
    if (p == end) return true;
    std::string word;
    bool in_double = false;
    bool in_single = false;
    for (bool done = false; !done;) {
      if (in_double) {
        if (p == end) return false;
        const char c = line[p];
        if (c == '\\' && p + 3 < end && line[p + 1] == 'x' && HexValue(line[p + 2]) >= 0 &&
            HexValue(line[p + 3]) >= 0) {
          word.push_back(static_cast<char>(HexValue(line[p + 2]) * 16 + HexValue(line[p + 3])));
          p += 3;
        } else if (c == '\\' && p + 1 < end) {
          ++p;
          switch (line[p]) {
            case 'n':
              word.push_back('\n');
              break;
            case 'r':
              word.push_back('\r');
              break;
            case 't':
              word.push_back('\t');
              break;
            case 'b':
              word.push_back('\b');
              break;
            case 'a':
              word.push_back('\a');
              break;
            default:
              word.push_back(line[p]);
              break;
          }
        } else if (c == '"') {
          // The closing quote must be followed by a space or nothing.
          if (p + 1 < end && !IsSpace(line[p + 1])) return false;
          done = true;
        } else {
          word.push_back(c);
        }
      } else if (in_single) {
        if (p == end) return false;
        const char c = line[p];
        if (c == '\\' && p + 1 < end && line[p + 1] == '\'') {
          ++p;
          word.push_back('\'');
        } else if (c == '\'') {
          if (p + 1 < end && !IsSpace(line[p + 1])) return false;
          done = true;
        } else {
          word.push_back(c);
        }
      } else {
        if (p == end) break;
        switch (line[p]) {
          case ' ':
          case '\n':
          case '\r':
          case '\t':
          case '\v':
          case '\f':
          case '\0':
            done = true;
            break;
          case '"':
            in_double = true;
            break;
          case '\'':
            in_single = true;
            break;
          default:
            word.push_back(line[p]);
            break;
        }
      }
      if (p < end) ++p;
    }
    words->push_back(std::move(word));
  }
}

void Parser::Reset() {
  phase_ = Phase::kStart;
  pos_ = 0;
  scanned_ = 0;
  remaining_ = 0;
  bulk_length_ = 0;
  spans_.clear();
  args_.clear();
  inline_args_.clear();
  error_.clear();
}

Parser::Fed Parser::Fail(std::string text) {
  phase_ = Phase::kFailed;
  error_ = std::move(text);
  return {State::kError, 0};
}

void Parser::BeginCommand() {
  phase_ = Phase::kStart;
  pos_ = 0;
  scanned_ = 0;
}

bool Parser::FindLine(std::string_view in, size_t from, size_t* cr, const char* too_long) {
  const size_t p = in.find('\r', std::max(from, scanned_));
  if (p == std::string_view::npos || p + 1 >= in.size()) {
    // (A '\r' whose '\n' has not arrived ends the line as far as its length goes, as when
    // the whole line is there.)
    scanned_ = p == std::string_view::npos ? in.size() : p;
    if (scanned_ - from > limits_.max_line_bytes) Fail(std::string("Protocol error: ") + too_long);
    return false;
  }
  if (p - from > limits_.max_line_bytes) {
    Fail(std::string("Protocol error: ") + too_long);
    return false;
  }
  *cr = p;
  return true;
}

Parser::Fed Parser::Feed(std::string_view input) {
  if (phase_ == Phase::kFailed) return {State::kError, 0};
  size_t skipped = 0;  // empty commands before the current one
  for (;;) {
    const std::string_view in = input.substr(skipped);
    if (phase_ == Phase::kStart) {
      if (in.empty()) return {State::kNeedMore, skipped};
      if (in[0] != '*') {
        // An inline command: one line up to '\n' (a '\r' before it is dropped).
        const size_t nl = in.find('\n', scanned_);
        if (nl == std::string_view::npos) {
          scanned_ = in.size();
          if (in.size() > limits_.max_line_bytes) {
            return Fail("Protocol error: too big inline request");
          }
          return {State::kNeedMore, skipped};
        }
        if (nl > limits_.max_line_bytes) return Fail("Protocol error: too big inline request");
        std::string_view line = in.substr(0, nl);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        inline_args_.clear();
        if (!SplitInline(line, &inline_args_)) {
          return Fail("Protocol error: unbalanced quotes in request");
        }
        BeginCommand();
        if (inline_args_.empty()) {
          skipped += nl + 1;
          continue;
        }
        args_.assign(inline_args_.begin(), inline_args_.end());
        return {State::kCommand, skipped + nl + 1};
      }
      size_t cr = 0;
      if (!FindLine(in, 0, &cr, "too big mbulk count string")) {
        return phase_ == Phase::kFailed ? Fed{State::kError, 0} : Fed{State::kNeedMore, skipped};
      }
      int64_t n = 0;
      if (in[cr + 1] != '\n' || !ParseInteger(in.substr(1, cr - 1), &n) ||
          n > static_cast<int64_t>(limits_.max_args)) {
        return Fail("Protocol error: invalid multibulk length");
      }
      if (n <= 0) {
        skipped += cr + 2;
        BeginCommand();
        continue;
      }
      remaining_ = n;
      spans_.clear();
      spans_.reserve(static_cast<size_t>(std::min<int64_t>(n, 1024)));
      pos_ = cr + 2;
      scanned_ = pos_;
      phase_ = Phase::kBulkHeader;
    }
    for (;;) {
      if (phase_ == Phase::kBulkHeader) {
        if (pos_ >= in.size()) return {State::kNeedMore, skipped};
        if (in[pos_] != '$') {
          return Fail(std::string("Protocol error: expected '$', got '") + in[pos_] + "'");
        }
        size_t cr = 0;
        if (!FindLine(in, pos_, &cr, "too big bulk count string")) {
          return phase_ == Phase::kFailed ? Fed{State::kError, 0} : Fed{State::kNeedMore, skipped};
        }
        int64_t length = 0;
        if (in[cr + 1] != '\n' || !ParseInteger(in.substr(pos_ + 1, cr - pos_ - 1), &length) ||
            length < 0 || static_cast<uint64_t>(length) > limits_.max_bulk_bytes) {
          return Fail("Protocol error: invalid bulk length");
        }
        bulk_length_ = static_cast<size_t>(length);
        if (cr + 2 + bulk_length_ + 2 > limits_.max_command_bytes) {
          return Fail("Protocol error: command longer than " +
                      std::to_string(limits_.max_command_bytes) + " bytes");
        }
        pos_ = cr + 2;
        phase_ = Phase::kBulkBody;
      }
      // kBulkBody
      if (in.size() < pos_ + bulk_length_ + 2) return {State::kNeedMore, skipped};
      if (in[pos_ + bulk_length_] != '\r' || in[pos_ + bulk_length_ + 1] != '\n') {
        return Fail("Protocol error: expected CRLF after a bulk string");
      }
      spans_.emplace_back(pos_, bulk_length_);
      pos_ += bulk_length_ + 2;
      scanned_ = pos_;
      phase_ = Phase::kBulkHeader;
      if (--remaining_ == 0) {
        args_.clear();
        args_.reserve(spans_.size());
        for (const auto& [offset, length] : spans_) args_.push_back(in.substr(offset, length));
        const size_t used = skipped + pos_;
        BeginCommand();
        return {State::kCommand, used};
      }
    }
  }
}

}  // namespace nexus::resp
