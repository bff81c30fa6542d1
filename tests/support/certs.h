// Certificates for the TLS tests, made at test time by the repository's scripts/make-certs (the
// openssl command): a CA per directory and one certificate per name, signed by it.
#pragma once

#include <string>
#include <vector>

namespace nexus::testing {

// Makes (or reuses) the CA in TempDir()/`dir` and a certificate for each of `names`, valid
// for `days` (negative: expired already), with `ip` as an IP subjectAltName too if given. Returns
// the directory, holding ca.pem and NAME.pem / NAME.key; aborts the test program if openssl fails.
std::string MakeCerts(const std::string& dir, const std::vector<std::string>& names, int days = 365,
                      const std::string& ip = "");

// The node flags --tls-cert, --tls-key, --tls-ca for `name` from `dir` (with `ca_dir`'s CA:
// by default the same directory's).
std::vector<std::string> TlsFlags(const std::string& dir, const std::string& name,
                                  const std::string& ca_dir = "");

}  // namespace nexus::testing
