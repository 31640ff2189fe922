// A plain HTTP/1.0 GET to a local API (the agent's), for tests.
#ifndef ACNS_TESTS_SUPPORT_HTTP_H_
#define ACNS_TESTS_SUPPORT_HTTP_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string>

namespace acns::testing {

struct HttpResponse {
  int status = 0;  // 0: no answer
  std::string body;
};

// GET `path` from 127.0.0.1:port in the calling thread's network namespace.
inline HttpResponse HttpGet(uint16_t port, const std::string& path) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  std::string raw;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    const std::string request = "GET " + path + " HTTP/1.0\r\n\r\n";
    ::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
    char buf[4096];
    for (ssize_t n; (n = ::recv(fd, buf, sizeof(buf), 0)) > 0;) raw.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  HttpResponse r;
  const size_t body = raw.find("\r\n\r\n");
  if (raw.size() < 12 || body == std::string::npos) return r;
  r.status = std::atoi(raw.substr(9, 3).c_str());
  r.body = raw.substr(body + 4);
  return r;
}

}  // namespace acns::testing

#endif  // ACNS_TESTS_SUPPORT_HTTP_H_
