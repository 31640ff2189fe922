#include "lib/observe/json_printer.h"

#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/util/json_util.h"

namespace acns::observe {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

// Printing stops (false) at what this printer does not write as protobuf does: the caller then
// uses protobuf's printer for the whole message.
class Printer {
 public:
  explicit Printer(std::string* out) : out_(out) {}

  bool Object(const Message& m) {
    const Descriptor* d = m.GetDescriptor();
    const Reflection* r = m.GetReflection();
    if (d->well_known_type() != Descriptor::WELLKNOWNTYPE_UNSPECIFIED) return WellKnown(m);
    std::vector<const FieldDescriptor*> fields;
    r->ListFields(m, &fields);  // the fields set, by number: protobuf's order
    out_->push_back('{');
    bool first = true;
    for (const FieldDescriptor* f : fields) {
      if (f->is_map()) return false;
      if (!first) out_->push_back(',');
      first = false;
      out_->push_back('"');
      out_->append(f->name());
      out_->append("\":");
      if (f->is_repeated()) {
        out_->push_back('[');
        const int n = r->FieldSize(m, f);
        for (int i = 0; i < n; ++i) {
          if (i > 0) out_->push_back(',');
          if (!Value(m, f, i)) return false;
        }
        out_->push_back(']');
      } else if (!Value(m, f, -1)) {
        return false;
      }
    }
    out_->push_back('}');
    return true;
  }

 private:
  // Field `f` of `m` (element `i` of a repeated field, or -1).
  bool Value(const Message& m, const FieldDescriptor* f, int i) {
    const Reflection* r = m.GetReflection();
    const bool rep = i >= 0;
    switch (f->cpp_type()) {
      case FieldDescriptor::CPPTYPE_INT32:
        absl::StrAppend(out_, rep ? r->GetRepeatedInt32(m, f, i) : r->GetInt32(m, f));
        return true;
      case FieldDescriptor::CPPTYPE_UINT32:
        absl::StrAppend(out_, rep ? r->GetRepeatedUInt32(m, f, i) : r->GetUInt32(m, f));
        return true;
      case FieldDescriptor::CPPTYPE_INT64:  // 64-bit integers are strings in protojson
        absl::StrAppend(out_, "\"", rep ? r->GetRepeatedInt64(m, f, i) : r->GetInt64(m, f), "\"");
        return true;
      case FieldDescriptor::CPPTYPE_UINT64:
        absl::StrAppend(out_, "\"", rep ? r->GetRepeatedUInt64(m, f, i) : r->GetUInt64(m, f), "\"");
        return true;
      case FieldDescriptor::CPPTYPE_BOOL:
        out_->append((rep ? r->GetRepeatedBool(m, f, i) : r->GetBool(m, f)) ? "true" : "false");
        return true;
      case FieldDescriptor::CPPTYPE_ENUM: {
        const int v = rep ? r->GetRepeatedEnumValue(m, f, i) : r->GetEnumValue(m, f);
        const auto* value = f->enum_type()->FindValueByNumber(v);
        if (value == nullptr) {
          absl::StrAppend(out_, v);
        } else {
          absl::StrAppend(out_, "\"", value->name(), "\"");
        }
        return true;
      }
      case FieldDescriptor::CPPTYPE_STRING: {
        if (f->type() == FieldDescriptor::TYPE_BYTES) return false;
        std::string scratch;
        const std::string& s = rep ? r->GetRepeatedStringReference(m, f, i, &scratch) : r->GetStringReference(m, f, &scratch);
        return String(s);
      }
      case FieldDescriptor::CPPTYPE_MESSAGE:
        return Object(rep ? r->GetRepeatedMessage(m, f, i) : r->GetMessage(m, f));
      default:  // float, double
        return false;
    }
  }

  // protobuf's escaping: quotes, backslashes, controls, DEL and <, > as escapes; other ASCII as
  // is. Beyond ASCII its rules go further (U+2028 ...): left to protobuf.
  bool String(const std::string& s) {
    out_->push_back('"');
    for (const char ch : s) {
      const auto c = static_cast<unsigned char>(ch);
      if (c >= 0x80) return false;
      switch (c) {
        case '"': out_->append("\\\""); break;
        case '\\': out_->append("\\\\"); break;
        case '\b': out_->append("\\b"); break;
        case '\t': out_->append("\\t"); break;
        case '\n': out_->append("\\n"); break;
        case '\f': out_->append("\\f"); break;
        case '\r': out_->append("\\r"); break;
        case '<': out_->append("\\u003c"); break;
        case '>': out_->append("\\u003e"); break;
        default:
          if (c < 0x20 || c == 0x7f) {
            absl::StrAppendFormat(out_, "\\u%04x", c);
          } else {
            out_->push_back(static_cast<char>(c));
          }
      }
    }
    out_->push_back('"');
    return true;
  }

  bool WellKnown(const Message& m) {
    const Descriptor* d = m.GetDescriptor();
    const Reflection* r = m.GetReflection();
    switch (d->well_known_type()) {
      case Descriptor::WELLKNOWNTYPE_TIMESTAMP: {
        const int64_t seconds = r->GetInt64(m, d->FindFieldByNumber(1));
        const int32_t nanos = r->GetInt32(m, d->FindFieldByNumber(2));
        if (nanos < 0 || nanos > 999999999) return false;
        const absl::Time t = absl::FromUnixSeconds(seconds);
        out_->push_back('"');
        out_->append(absl::FormatTime("%Y-%m-%dT%H:%M:%S", t, absl::UTCTimeZone()));
        // Fractions in groups of three digits, as few as the value needs.
        if (nanos % 1000000 == 0 && nanos != 0) {
          absl::StrAppendFormat(out_, ".%03d", nanos / 1000000);
        } else if (nanos % 1000 == 0 && nanos != 0) {
          absl::StrAppendFormat(out_, ".%06d", nanos / 1000);
        } else if (nanos != 0) {
          absl::StrAppendFormat(out_, ".%09d", nanos);
        }
        out_->append("Z\"");
        return true;
      }
      case Descriptor::WELLKNOWNTYPE_BOOLVALUE:
      case Descriptor::WELLKNOWNTYPE_INT32VALUE:
      case Descriptor::WELLKNOWNTYPE_UINT32VALUE:
      case Descriptor::WELLKNOWNTYPE_INT64VALUE:
      case Descriptor::WELLKNOWNTYPE_UINT64VALUE:
      case Descriptor::WELLKNOWNTYPE_STRINGVALUE:
        return Value(m, d->FindFieldByNumber(1), -1);
      default:
        return false;
    }
  }

  std::string* const out_;
};

}  // namespace

void AppendProtoJson(const Message& message, std::string* out) {
  const size_t start = out->size();
  if (Printer(out).Object(message)) return;
  out->resize(start);
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  std::string json;
  (void)google::protobuf::util::MessageToJsonString(message, &json, options);  // fails only on bad Any
  out->append(json);
}

}  // namespace acns::observe
