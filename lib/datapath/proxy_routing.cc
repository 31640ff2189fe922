#include "lib/datapath/proxy_routing.h"

#include <linux/fib_rules.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netlink/netlink.h>
#include <netlink/route/route.h>
#include <netlink/route/rule.h>
#include <unistd.h>

#include <memory>

#include "absl/strings/str_cat.h"
#include "bpf/include/acns/maps.h"

namespace acns::datapath {
namespace {

struct SocketDeleter {
  void operator()(nl_sock* s) const { nl_socket_free(s); }
};
struct RuleDeleter {
  void operator()(rtnl_rule* r) const { rtnl_rule_put(r); }
};
struct RouteDeleter {
  void operator()(rtnl_route* r) const { rtnl_route_put(r); }
};
struct AddrDeleter {
  void operator()(nl_addr* a) const { nl_addr_put(a); }
};

absl::Status NetlinkError(int err, absl::string_view what) {
  return absl::InternalError(absl::StrCat(what, ": ", nl_geterror(err)));
}

absl::Status AddFor(nl_sock* sock, int family) {
  const char* name = family == AF_INET ? "IPv4" : "IPv6";
  std::unique_ptr<rtnl_rule, RuleDeleter> rule(rtnl_rule_alloc());
  if (!rule) return absl::ResourceExhaustedError("rtnl_rule_alloc");
  rtnl_rule_set_family(rule.get(), family);
  rtnl_rule_set_prio(rule.get(), kProxyRulePriority);
  rtnl_rule_set_mark(rule.get(), ACNS_MARK_TO_PROXY);
  rtnl_rule_set_mask(rule.get(), ACNS_MARK_TO_PROXY_MASK);
  rtnl_rule_set_table(rule.get(), kProxyRoutingTable);
  rtnl_rule_set_action(rule.get(), FR_ACT_TO_TBL);
  if (int err = rtnl_rule_add(sock, rule.get(), NLM_F_CREATE | NLM_F_EXCL); err < 0 && err != -NLE_EXIST) {
    return NetlinkError(err, absl::StrCat("add the ", name, " proxy routing rule"));
  }

  std::unique_ptr<rtnl_route, RouteDeleter> route(rtnl_route_alloc());
  if (!route) return absl::ResourceExhaustedError("rtnl_route_alloc");
  const unsigned char zero[16] = {};
  std::unique_ptr<nl_addr, AddrDeleter> dst(nl_addr_build(family, zero, family == AF_INET ? 4 : 16));
  if (!dst) return absl::ResourceExhaustedError("nl_addr_build");
  nl_addr_set_prefixlen(dst.get(), 0);
  rtnl_route_set_family(route.get(), family);
  rtnl_route_set_table(route.get(), kProxyRoutingTable);
  rtnl_route_set_type(route.get(), RTN_LOCAL);
  rtnl_route_set_scope(route.get(), RT_SCOPE_HOST);
  rtnl_route_set_protocol(route.get(), RTPROT_STATIC);
  if (int err = rtnl_route_set_dst(route.get(), dst.get()); err < 0) return NetlinkError(err, "route destination");
  rtnl_nexthop* nh = rtnl_route_nh_alloc();  // owned by the route once added
  if (nh == nullptr) return absl::ResourceExhaustedError("rtnl_route_nh_alloc");
  rtnl_route_nh_set_ifindex(nh, static_cast<int>(if_nametoindex("lo")));
  rtnl_route_add_nexthop(route.get(), nh);
  if (int err = rtnl_route_add(sock, route.get(), NLM_F_CREATE | NLM_F_REPLACE); err < 0) {
    return NetlinkError(err, absl::StrCat("add the ", name, " local route of table ", kProxyRoutingTable));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status EnsureProxyRouting() {
  std::unique_ptr<nl_sock, SocketDeleter> sock(nl_socket_alloc());
  if (!sock) return absl::ResourceExhaustedError("nl_socket_alloc");
  if (int err = nl_connect(sock.get(), NETLINK_ROUTE); err < 0) return NetlinkError(err, "connect to rtnetlink");
  if (absl::Status s = AddFor(sock.get(), AF_INET); !s.ok()) return s;
  // A kernel (or namespace) without IPv6 has no IPv6 pods to redirect.
  if (::access("/proc/net/if_inet6", F_OK) == 0) return AddFor(sock.get(), AF_INET6);
  return absl::OkStatus();
}

}  // namespace acns::datapath
