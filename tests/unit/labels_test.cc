#include "lib/policy/labels.h"

#include "gtest/gtest.h"

namespace acns::policy {
namespace {

SelectorRequirement Req(const char* source, const char* key, SelectorRequirement::Op op,
                        std::vector<std::string> values = {}) {
  return SelectorRequirement{source, key, op, std::move(values)};
}

TEST(LabelsTest, ParseLabel) {
  auto l = ParseLabel("k8s:app=web", kSourceK8s);
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->ToString(), "k8s:app=web");
  EXPECT_EQ(ParseLabel("app=web", kSourceK8s)->source, "k8s");
  EXPECT_EQ(ParseLabel("reserved:host", kSourceK8s)->value, "");
  EXPECT_EQ(ParseLabel("a=b=c", kSourceK8s)->value, "b=c");
  EXPECT_FALSE(ParseLabel("=x", kSourceK8s).ok());
  EXPECT_FALSE(ParseLabel(":k=x", kSourceK8s).ok());
}

TEST(LabelsTest, SelectorOperatorsAndSources) {
  using Op = SelectorRequirement::Op;
  const LabelSet set = EndpointLabels("ns1", {*ParseLabel("app=web", kSourceK8s),
                                              *ParseLabel("container:tier=front", kSourceK8s)});
  EXPECT_EQ(set.ToString(), "container:tier=front,k8s:app=web,k8s:io.kubernetes.pod.namespace=ns1");
  EXPECT_TRUE(Req("any", "app", Op::kIn, {"web", "api"}).Matches(set));
  EXPECT_TRUE(Req("k8s", "app", Op::kIn, {"web"}).Matches(set));
  EXPECT_FALSE(Req("container", "app", Op::kIn, {"web"}).Matches(set));
  EXPECT_FALSE(Req("any", "app", Op::kIn, {"api"}).Matches(set));
  EXPECT_TRUE(Req("any", "app", Op::kNotIn, {"api"}).Matches(set));
  EXPECT_FALSE(Req("any", "app", Op::kNotIn, {"web"}).Matches(set));
  EXPECT_TRUE(Req("any", "missing", Op::kNotIn, {"web"}).Matches(set));
  EXPECT_TRUE(Req("any", "tier", Op::kExists).Matches(set));
  EXPECT_FALSE(Req("k8s", "tier", Op::kExists).Matches(set));
  EXPECT_TRUE(Req("any", "missing", Op::kDoesNotExist).Matches(set));
  EXPECT_FALSE(Req("any", "app", Op::kDoesNotExist).Matches(set));
  LabelSelector empty;
  EXPECT_TRUE(empty.Matches(set));
  EXPECT_TRUE(empty.Matches(LabelSet()));
  LabelSelector both{{Req("any", "app", Op::kIn, {"web"}), Req("k8s", std::string(kNamespaceLabelKey).c_str(), Op::kIn, {"ns2"})}};
  EXPECT_FALSE(both.Matches(set));
  EXPECT_TRUE(both.MentionsKey(kNamespaceLabelKey));
}

TEST(LabelsTest, SetReplacesSameSourceAndKey) {
  LabelSet set;
  set.Set({"k8s", "a", "1"});
  set.Set({"k8s", "a", "2"});
  set.Set({"other", "a", "3"});
  EXPECT_EQ(set.ToString(), "k8s:a=2,other:a=3");
}

}  // namespace
}  // namespace acns::policy
