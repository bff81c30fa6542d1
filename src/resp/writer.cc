#include "resp/writer.h"

#include <charconv>
#include <cmath>

namespace nexus::resp {

void Writer::Header(char type, int64_t n) {
  char buf[24];
  buf[0] = type;
  char* end = std::to_chars(buf + 1, buf + sizeof buf - 2, n).ptr;
  *end++ = '\r';
  *end++ = '\n';
  out_->append(buf, static_cast<size_t>(end - buf));
}

void Writer::Simple(std::string_view text) {
  out_->push_back('+');
  out_->append(text);
  out_->append("\r\n");
}

void Writer::Error(std::string_view text) {
  out_->push_back('-');
  const size_t start = out_->size();
  out_->append(text);
  for (size_t i = start; i < out_->size(); ++i) {
    if ((*out_)[i] == '\r' || (*out_)[i] == '\n') (*out_)[i] = ' ';
  }
  out_->append("\r\n");
}

void Writer::Integer(int64_t value) { Header(':', value); }

void Writer::Bulk(std::string_view value) {
  Header('$', static_cast<int64_t>(value.size()));
  out_->append(value);
  out_->append("\r\n");
}

void Writer::Null() { out_->append(protocol_ >= 3 ? "_\r\n" : "$-1\r\n"); }
void Writer::NullArray() { out_->append(protocol_ >= 3 ? "_\r\n" : "*-1\r\n"); }
void Writer::Array(size_t n) { Header('*', static_cast<int64_t>(n)); }

void Writer::Map(size_t n) {
  if (protocol_ >= 3) return Header('%', static_cast<int64_t>(n));
  Header('*', static_cast<int64_t>(2 * n));
}

void Writer::Set(size_t n) { Header(protocol_ >= 3 ? '~' : '*', static_cast<int64_t>(n)); }

void Writer::Bool(bool value) {
  if (protocol_ >= 3) return out_->append(value ? "#t\r\n" : "#f\r\n"), void();
  Integer(value ? 1 : 0);
}

void Writer::Double(double value) {
  char buf[64];
  std::string_view text;
  if (std::isinf(value)) {
    text = value > 0 ? "inf" : "-inf";
  } else if (std::isnan(value)) {
    text = "nan";
  } else {
    text = std::string_view(
        buf, static_cast<size_t>(std::to_chars(buf, buf + sizeof buf, value).ptr - buf));
  }
  if (protocol_ < 3) return Bulk(text);
  out_->push_back(',');
  out_->append(text);
  out_->append("\r\n");
}

void Writer::Verbatim(std::string_view text) {
  if (protocol_ < 3) return Bulk(text);
  Header('=', static_cast<int64_t>(text.size() + 4));
  out_->append("txt:");
  out_->append(text);
  out_->append("\r\n");
}

}  // namespace nexus::resp
