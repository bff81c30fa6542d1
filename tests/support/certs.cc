#include "support/certs.h"

#include <cstdio>
#include <cstdlib>

#include "support/process.h"

namespace nexus::testing {

std::string MakeCerts(const std::string& dir, const std::vector<std::string>& names, int days,
                      const std::string& ip) {
  const std::string path = TempDir() + "/" + dir;
  std::string command = std::string(NEXUS_SOURCE_DIR) + "/scripts/make-certs --days " +
                        std::to_string(days) + (ip.empty() ? "" : " --ip " + ip) + " " + path;
  for (const std::string& name : names) command += " " + name;
  command += " >/dev/null";
  if (std::system(command.c_str()) != 0) {
    std::fprintf(stderr, "certs: '%s' failed\n", command.c_str());
    std::abort();
  }
  return path;
}

std::vector<std::string> TlsFlags(const std::string& dir, const std::string& name,
                                  const std::string& ca_dir) {
  return {"--tls-cert", dir + "/" + name + ".pem",
          "--tls-key",  dir + "/" + name + ".key",
          "--tls-ca",   (ca_dir.empty() ? dir : ca_dir) + "/ca.pem"};
}

}  // namespace nexus::testing
