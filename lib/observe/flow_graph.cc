#include "lib/observe/flow_graph.h"

#include <algorithm>
#include <array>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "lib/observe/flow_printer.h"

namespace acns::observe {
namespace {

std::string VerdictClass(flow::Verdict v) {
  switch (v) {
    case flow::FORWARDED:
    case flow::REDIRECTED: return "allowed";
    case flow::DROPPED: return "dropped";
    case flow::AUDIT: return "audit";
    default: return "error";
  }
}

std::string PortOf(const flow::Flow& f) {
  if (f.has_l7() && f.l7().has_dns()) return "DNS";
  if (f.l4().has_tcp()) return absl::StrCat("TCP/", f.l4().tcp().destination_port());
  if (f.l4().has_udp()) return absl::StrCat("UDP/", f.l4().udp().destination_port());
  if (f.l4().has_icmpv4()) return "ICMPv4";
  if (f.l4().has_icmpv6()) return "ICMPv6";
  return "";
}

struct Style {
  const char* color;
  const char* dash;
};
Style VerdictStyle(const std::string& verdict) {
  if (verdict == "allowed") return {"#15803d", ""};
  if (verdict == "dropped") return {"#dc2626", "6 4"};
  if (verdict == "audit") return {"#7c3aed", "2 3"};
  return {"#d97706", "2 3"};
}
const char* KindFill(const std::string& kind) {
  if (kind == "pod") return "#dbeafe";
  if (kind == "fqdn") return "#fef3c7";
  if (kind == "reserved") return "#e0e7ff";
  return "#f3f4f6";
}

std::string EdgeLabel(const FlowGraph::EdgeKey& key, const FlowGraph::Edge& edge) {
  std::string label = absl::StrCat(key.port.empty() ? key.verdict : key.port, " (", edge.flows, ")");
  if (!edge.names.empty()) {
    absl::StrAppend(&label, ": ", absl::StrJoin(edge.names, ", "));
    if (edge.more_names > 0) absl::StrAppend(&label, " and ", edge.more_names, " more");
  }
  return label;
}

std::string DotQuote(absl::string_view s) {
  return absl::StrCat("\"", absl::StrReplaceAll(s, {{"\\", "\\\\"}, {"\"", "\\\""}, {"\n", " "}}), "\"");
}

std::string HtmlEscape(absl::string_view s) {
  return absl::StrReplaceAll(s, {{"&", "&amp;"}, {"<", "&lt;"}, {">", "&gt;"}, {"\"", "&quot;"}, {"'", "&#39;"}});
}

// Layout of the page's drawing, in pixels: labels are in a monospace font whose advance is at
// most kCharWidth at kFontSize (DejaVu Sans Mono, Liberation Mono: 0.6 em).
constexpr double kFontSize = 13;
constexpr double kCharWidth = 8.0;
constexpr double kBoxPadding = 24, kBoxHeight = 30, kRowHeight = 50;
constexpr double kColumnGap = 300, kMargin = 24, kSameColumnBulge = 90;

}  // namespace

size_t FlowGraph::NodeOf(const std::string& ip, const flow::Endpoint& ep,
                         const google::protobuf::RepeatedPtrField<std::string>& names) {
  Node node;
  const absl::string_view reserved = ReservedIdentityName(ep.identity());
  const bool world = ep.identity() == 2 || ep.identity() == 9 || ep.identity() == 10;
  if (!ep.pod_name().empty()) {
    node = {ep.namespace_().empty() ? ep.pod_name() : absl::StrCat(ep.namespace_(), "/", ep.pod_name()), "pod"};
  } else if (!names.empty()) {
    node = {absl::StrJoin(names, ","), "fqdn"};
  } else if (!reserved.empty() && !world && ep.identity() != 0) {
    node = {absl::StrCat(reserved, ip.empty() ? "" : " ", ip), "reserved"};
  } else {
    node = {ip.empty() ? "unknown" : ip, "world"};
  }
  auto [it, added] = index_.emplace(node.name, nodes_.size());
  if (added) nodes_.push_back(std::move(node));
  return it->second;
}

void FlowGraph::Add(const flow::Flow& f) {
  if (f.is_reply().value() || !f.has_ip()) return;
  EdgeKey key;
  key.from = NodeOf(f.ip().source(), f.source(), f.source_names());
  key.to = NodeOf(f.ip().destination(), f.destination(), f.destination_names());
  key.port = PortOf(f);
  key.verdict = VerdictClass(f.verdict());
  Edge& edge = edges_[key];
  ++edge.flows;
  if (f.has_l7() && f.l7().has_dns() && !f.l7().dns().query().empty()) {
    const std::string& q = f.l7().dns().query();
    if (edge.names.count(q) == 0) {
      if (edge.names.size() < kMaxNames) {
        edge.names.insert(q);
      } else {
        ++edge.more_names;
      }
    }
  }
}

std::string FlowGraph::Dot() const {
  std::string out =
      "digraph flows {\n  rankdir=LR;\n  node [shape=box, style=\"rounded,filled\", fontname=\"monospace\"];\n"
      "  edge [fontname=\"monospace\", fontsize=10];\n";
  for (size_t i = 0; i < nodes_.size(); ++i) {
    absl::StrAppend(&out, "  n", i, " [label=", DotQuote(nodes_[i].name), ", fillcolor=\"",
                    KindFill(nodes_[i].kind), "\", tooltip=", DotQuote(nodes_[i].kind), "];\n");
  }
  for (const auto& [key, edge] : edges_) {
    const Style style = VerdictStyle(key.verdict);
    absl::StrAppend(&out, "  n", key.from, " -> n", key.to, " [label=", DotQuote(EdgeLabel(key, edge)),
                    ", color=\"", style.color, "\", fontcolor=\"", style.color, "\"",
                    *style.dash != '\0' ? ", style=dashed" : "", "];\n");
  }
  out += "}\n";
  return out;
}

std::string FlowGraph::Html(absl::string_view title) const {
  // Columns: nodes that only send (left), that send and receive (middle), that only receive
  // (right); rows in order of first appearance.
  std::vector<bool> sends(nodes_.size()), receives(nodes_.size());
  for (const auto& [key, edge] : edges_) sends[key.from] = true, receives[key.to] = true;
  std::array<std::vector<size_t>, 3> columns;
  std::vector<size_t> column_of(nodes_.size());
  for (size_t i = 0; i < nodes_.size(); ++i) {
    column_of[i] = sends[i] && receives[i] ? 1 : sends[i] ? 0 : 2;
    columns[column_of[i]].push_back(i);
  }
  std::array<double, 3> x{}, width{};
  double cursor = kMargin;
  for (size_t c = 0; c < 3; ++c) {
    for (size_t n : columns[c]) width[c] = std::max(width[c], nodes_[n].name.size() * kCharWidth + kBoxPadding);
    x[c] = cursor;
    if (!columns[c].empty()) cursor += width[c] + kColumnGap;
  }
  size_t rows = 1;
  for (const auto& col : columns) rows = std::max(rows, col.size());
  const double svg_width =
      nodes_.empty() ? 2 * kMargin : cursor - kColumnGap + kMargin + (columns[1].empty() ? 0 : kSameColumnBulge);
  const double svg_height = kMargin * 2 + rows * kRowHeight;
  std::vector<double> node_y(nodes_.size());
  for (const auto& col : columns) {
    for (size_t r = 0; r < col.size(); ++r) node_y[col[r]] = kMargin + r * kRowHeight;
  }

  std::string svg = absl::StrFormat(
      "<svg id=\"graph\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" font-family=\"monospace\" "
      "font-size=\"%.0f\">\n<defs>",
      svg_width, svg_height, svg_width, svg_height, kFontSize);
  for (const char* verdict : {"allowed", "dropped", "audit", "error"}) {
    absl::StrAppendFormat(&svg,
                          "<marker id=\"arrow-%s\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"8\" "
                          "markerHeight=\"8\" orient=\"auto\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"%s\"/></marker>",
                          verdict, VerdictStyle(verdict).color);
  }
  svg += "</defs>\n";
  // Edges first, under the boxes; several between the same two nodes are spread apart.
  std::map<std::pair<size_t, size_t>, int> seen;
  for (const auto& [key, edge] : edges_) {
    const Style style = VerdictStyle(key.verdict);
    const int nth = seen[{key.from, key.to}]++;
    const double spread = (nth % 2 ? 1 : -1) * ((nth + 1) / 2) * 12.0;
    const size_t cf = column_of[key.from], ct = column_of[key.to];
    const double x1 = x[cf] + width[cf], y1 = node_y[key.from] + kBoxHeight / 2 + spread;
    double x2 = x[ct], y2 = node_y[key.to] + kBoxHeight / 2 + spread;
    std::string path;
    double lx, ly;
    const char* anchor = "middle";
    if (key.from == key.to) {
      path = absl::StrFormat("M%.1f,%.1f C%.1f,%.1f %.1f,%.1f %.1f,%.1f", x1, y1 - 8, x1 + 50, y1 - 30, x1 + 50,
                             y1 + 30, x1, y1 + 8);
      lx = x1 + 42, ly = y1;
    } else if (cf == ct) {  // within the middle column: out of the right side, back into it
      x2 = x[ct] + width[ct];
      path = absl::StrFormat("M%.1f,%.1f C%.1f,%.1f %.1f,%.1f %.1f,%.1f", x1, y1, x1 + kSameColumnBulge, y1,
                             x2 + kSameColumnBulge, y2, x2, y2);
      lx = x1 + kSameColumnBulge * 0.75, ly = (y1 + y2) / 2;
    } else {
      const double dx = (x2 - x1) / 2;
      path = absl::StrFormat("M%.1f,%.1f C%.1f,%.1f %.1f,%.1f %.1f,%.1f", x1, y1, x1 + dx, y1, x2 - dx, y2, x2, y2);
      // Above the arrowhead, where edges fanning out of one node have come apart.
      lx = x2 - 12, ly = y2;
      anchor = "end";
    }
    const std::string label = EdgeLabel(key, edge);
    absl::StrAppendFormat(&svg,
                          "<g class=\"edge %s\"><title>%s -> %s: %s</title><path class=\"edge\" d=\"%s\" "
                          "fill=\"none\" stroke=\"%s\" stroke-width=\"1.6\" stroke-dasharray=\"%s\" "
                          "marker-end=\"url(#arrow-%s)\"/><text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" "
                          "text-anchor=\"%s\" fill=\"%s\">%s</text></g>\n",
                          key.verdict, HtmlEscape(nodes_[key.from].name), HtmlEscape(nodes_[key.to].name),
                          HtmlEscape(label), path, style.color, style.dash, key.verdict, lx, ly - 3, anchor, style.color,
                          HtmlEscape(key.port.empty() ? key.verdict : absl::StrCat(key.port, " (", edge.flows, ")")));
  }
  for (size_t i = 0; i < nodes_.size(); ++i) {
    const size_t c = column_of[i];
    absl::StrAppendFormat(&svg,
                          "<g class=\"node %s\"><title>%s (%s)</title><rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" "
                          "height=\"%.1f\" rx=\"6\" fill=\"%s\" stroke=\"#475569\"/><text x=\"%.1f\" y=\"%.1f\" "
                          "text-anchor=\"middle\" dominant-baseline=\"central\">%s</text></g>\n",
                          nodes_[i].kind, HtmlEscape(nodes_[i].name), nodes_[i].kind, x[c], node_y[i], width[c],
                          kBoxHeight, KindFill(nodes_[i].kind), x[c] + width[c] / 2, node_y[i] + kBoxHeight / 2,
                          HtmlEscape(nodes_[i].name));
  }
  svg += "</svg>\n";

  std::string table = "<table>\n<tr><th>from</th><th>to</th><th>port</th><th>verdict</th><th>flows</th><th>DNS names</th></tr>\n";
  for (const auto& [key, edge] : edges_) {
    std::string names = absl::StrJoin(edge.names, ", ");
    if (edge.more_names > 0) absl::StrAppend(&names, " and ", edge.more_names, " more");
    absl::StrAppend(&table, "<tr class=\"", key.verdict, "\"><td>", HtmlEscape(nodes_[key.from].name), "</td><td>",
                    HtmlEscape(nodes_[key.to].name), "</td><td>", HtmlEscape(key.port), "</td><td>", key.verdict,
                    "</td><td>", edge.flows, "</td><td>", HtmlEscape(names), "</td></tr>\n");
  }
  table += "</table>\n";

  return absl::StrCat(
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>", HtmlEscape(title),
      "</title>\n<style>\nbody{font-family:sans-serif;margin:16px;color:#0f172a}\nh1{font-size:20px}\n"
      "table{border-collapse:collapse;font-family:monospace;font-size:13px;margin-top:16px}\n"
      "td,th{border:1px solid #cbd5e1;padding:3px 8px;text-align:left}\n"
      "tr.dropped td{color:#dc2626}\n.legend span{margin-right:16px}\n</style>\n</head>\n<body>\n<h1>",
      HtmlEscape(title), "</h1>\n<p class=\"legend\"><span style=\"color:#15803d\">&#9472; allowed</span>"
      "<span style=\"color:#dc2626\">- - dropped</span><span>", nodes_.size(), " endpoints, ", edges_.size(),
      " connections</span></p>\n", svg, table,
      // The page checks its own drawing once a browser has laid it out: every name must fit its
      // box (the layout assumes a monospace advance of at most 0.62 em). The result is in
      // <body data-labels-fit>, "yes" or the names that overflow.
      "<script>\n(function () {\n  const bad = [];\n"
      "  for (const g of document.querySelectorAll('g.node')) {\n"
      "    const box = g.querySelector('rect').width.baseVal.value;\n"
      "    const text = g.querySelector('text');\n"
      "    if (text.getComputedTextLength() > box - 4) bad.push(text.textContent);\n  }\n"
      "  document.body.dataset.labelsFit = bad.length ? bad.join(', ') : 'yes';\n"
      "  document.body.dataset.nodes = document.querySelectorAll('g.node').length;\n"
      "  document.body.dataset.edges = document.querySelectorAll('path.edge').length;\n"
      "})();\n</script>\n</body>\n</html>\n");
}

}  // namespace acns::observe
