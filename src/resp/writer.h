// resp::Writer: encodes replies in RESP2 or RESP3 (after HELLO 3) into a string, so that a
// command writes one reply shape and each connection gets its own protocol's encoding:
//
//   what           RESP2                      RESP3
//   Null           $-1 (a null bulk string)   _
//   NullArray      *-1                        _
//   Map(n)         *<2n> (flat pairs)         %<n>
//   Set(n)         *<n>                       ~<n>
//   Bool           :0 / :1                    #f / #t
//   Double         $<len> (a bulk string)     ,<value>
//   Verbatim       $<len> (the text)          =<len+4>\r\ntxt:<text>
//
// Thread-safety: none.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace nexus::resp {

class Writer {
 public:
  explicit Writer(std::string* out, int protocol = 2) : out_(out), protocol_(protocol) {}

  int protocol() const { return protocol_; }
  void set_protocol(int protocol) { protocol_ = protocol; }

  // "+OK": `text` must hold no CR or LF.
  void Simple(std::string_view text);
  void Ok() { out_->append("+OK\r\n"); }
  // "-ERR ...": `text` starts with the error code ("ERR", "WRONGTYPE", "NOAUTH"...); CR and LF
  // in it are replaced by spaces.
  void Error(std::string_view text);
  void Integer(int64_t value);
  void Bulk(std::string_view value);
  void Null();
  void NullArray();
  void Array(size_t n);
  void Map(size_t n);
  void Set(size_t n);
  void Bool(bool value);
  void Double(double value);
  void Verbatim(std::string_view text);

 private:
  void Header(char type, int64_t n);

  std::string* out_;
  int protocol_;
};

}  // namespace nexus::resp
