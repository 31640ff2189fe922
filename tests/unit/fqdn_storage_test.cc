// The FQDN cache's compact storage: name arena, IP table, one-inline vector.
#include <map>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "lib/fqdn/inline_one_vector.h"
#include "lib/fqdn/ip_table.h"
#include "lib/fqdn/name_arena.h"
#include "lib/fqdn/name_store.h"

namespace acns::fqdn {
namespace {

TEST(NameArenaTest, StoresEveryLengthAndReusesFreedBlocksOfThatLength) {
  NameArena arena;
  std::vector<std::pair<uint32_t, std::string>> stored;
  for (size_t length = 1; length <= NameArena::kMaxLength; ++length) {
    std::string text(length, static_cast<char>('a' + length % 26));
    const uint32_t ref = arena.Store(text);
    ASSERT_NE(ref, NameArena::kNone);
    stored.emplace_back(ref, text);
  }
  for (const auto& [ref, text] : stored) EXPECT_EQ(arena.View(ref), text);

  const uint32_t freed = stored[29].first;  // 30 characters
  arena.Free(freed);
  EXPECT_EQ(arena.Store(std::string(30, 'z')), freed);
  EXPECT_EQ(arena.View(freed), std::string(30, 'z'));
  // Short names share the smallest block (it must hold a free-list link).
  const uint32_t one = stored[0].first;
  arena.Free(one);
  EXPECT_EQ(arena.Store("ab"), one);
  EXPECT_EQ(arena.View(one), "ab");
}

TEST(NameArenaTest, FillsManyChunksAndUsesTheTailOfAFullChunk) {
  NameArena arena;
  std::map<uint32_t, std::string> stored;
  std::mt19937 rng(7);
  for (int i = 0; i < 20000; ++i) {
    std::string text = absl::StrCat("n", i, std::string(rng() % 200, 'x'), ".");
    const uint32_t ref = arena.Store(text);
    ASSERT_TRUE(stored.emplace(ref, text).second) << "reference handed out twice";
  }
  EXPECT_GT(arena.chunk_count(), 10u);
  for (const auto& [ref, text] : stored) ASSERT_EQ(arena.View(ref), text);
  // Free every other name and store them again: no new chunk is needed.
  const size_t chunks = arena.chunk_count();
  std::vector<std::string> again;
  for (auto it = stored.begin(); it != stored.end();) {
    arena.Free(it->first);
    again.push_back(it->second);
    it = stored.erase(it);
    if (it != stored.end()) ++it;
  }
  for (const std::string& text : again) stored.emplace(arena.Store(text), text);
  EXPECT_EQ(arena.chunk_count(), chunks);
  for (const auto& [ref, text] : stored) ASSERT_EQ(arena.View(ref), text);
}

TEST(NameArenaTest, SparseOnceLengthsShiftAndRepackingRestoresTheBound) {
  NameArena arena;
  std::vector<uint32_t> refs;
  for (int i = 0; i < 30000; ++i) refs.push_back(arena.Store(std::string(40, 'a')));
  EXPECT_FALSE(arena.Sparse());
  // Every 40-character block freed, a third as many stored at 41: the old blocks stay free.
  for (uint32_t ref : refs) arena.Free(ref);
  refs.clear();
  for (int i = 0; i < 10000; ++i) refs.push_back(arena.Store(std::string(41, 'b')));
  EXPECT_TRUE(arena.Sparse());
  NameArena packed;
  for (uint32_t& ref : refs) ref = packed.Store(arena.View(ref));
  EXPECT_FALSE(packed.Sparse());
  EXPECT_EQ(packed.live_bytes(), 10000u * 42);
  EXPECT_LE(packed.chunk_count() * 65536, 2 * packed.live_bytes() + 2 * 65536);
  for (uint32_t ref : refs) ASSERT_EQ(packed.View(ref), std::string(41, 'b'));
}

TEST(NameStoreTest, NamesReadBackHashAndCompareAlikeWholeOrWithAParent) {
  NameStore store;
  std::vector<std::string> names = {"a.", "localhost", ".starts.with.dot.", "x..y.", std::string(254, 'l')};
  names.push_back(std::string(250, 'f') + ".ab.");  // a label too long to keep with a parent
  for (int i = 0; i < 300; ++i) {
    names.push_back(absl::StrCat("host-", i, ".svc", i % 7, ".example.com."));  // shared parents
    names.push_back(absl::StrCat("www.site", i, ".com."));                    // a parent each
  }
  std::vector<uint32_t> refs;
  for (const std::string& name : names) refs.push_back(store.Store(name));
  for (size_t i = 0; i < names.size(); ++i) {
    ASSERT_EQ(store.Text(refs[i]), names[i]);
    ASSERT_EQ(store.Hash(refs[i]), NameStore::HashOf(names[i])) << names[i];
    ASSERT_TRUE(store.Equals(refs[i], names[i]));
    ASSERT_FALSE(store.Equals(refs[i], names[(i + 1) % names.size()]));
    ASSERT_FALSE(store.Equals(refs[i], names[i] + "x"));
  }
  // The 7 shared parents were interned from their second name on; unique ones never.
  EXPECT_EQ(store.parent_count(), 7u);
  for (uint32_t ref : refs) store.Free(ref);
  EXPECT_EQ(store.parent_count(), 0u);
  EXPECT_EQ(store.Store(""), NameStore::kNone);
  EXPECT_EQ(store.Store(std::string(NameStore::kMaxLength + 1, 'a')), NameStore::kNone);
}

TEST(NameStoreTest, SharedParentsSaveRoomAndUniqueOnesCostNothing) {
  NameStore shared;
  NameStore unique;
  size_t whole = 0;
  for (int i = 0; i < 20000; ++i) {
    const std::string name = absl::StrCat("host-", i, ".svc", i % 100, ".example.com.");
    shared.Store(name);
    unique.Store(absl::StrCat("host-", i, ".svc", i, ".example.com."));  // no parent repeats
    whole += 1 + 1 + name.size();  // length byte, tag, text
  }
  EXPECT_EQ(shared.parent_count(), 100u);
  EXPECT_LT(shared.live_bytes(), whole * 6 / 10);
  EXPECT_EQ(unique.parent_count(), 0u);
  size_t unique_whole = 0;
  for (int i = 0; i < 20000; ++i) unique_whole += 2 + absl::StrCat("host-", i, ".svc", i, ".example.com.").size();
  EXPECT_EQ(unique.live_bytes(), unique_whole);
}

IpAddr Ip(const char* text) { return *IpAddr::Parse(text); }

TEST(IpTableTest, InternsV4AndV6SeparatelyAndReusesErasedIds) {
  IpTable table;
  const uint32_t a = table.Intern(Ip("198.51.100.1"), {.identity = 7, .names = 1});
  const uint32_t b = table.Intern(Ip("2001:db8::1"), {.identity = 8, .names = 2});
  const uint32_t mapped = table.Intern(Ip("::ffff:198.51.100.1"), {});
  EXPECT_EQ(mapped, a);  // the IPv4-mapped form is the IPv4 address
  EXPECT_NE(a, b);
  EXPECT_EQ(table.Find(Ip("198.51.100.1")), a);
  EXPECT_EQ(table.Find(Ip("2001:db8::1")), b);
  EXPECT_EQ(table.Find(Ip("198.51.100.2")), IpTable::kNone);
  EXPECT_EQ(table.Address(a), Ip("198.51.100.1"));
  EXPECT_EQ(table.Address(b), Ip("2001:db8::1"));
  EXPECT_EQ(table.rec(a).identity, 7u);
  EXPECT_EQ(table.rec(b).names, 2u);
  EXPECT_EQ(table.size(), 2u);

  table.Erase(a);
  EXPECT_EQ(table.Find(Ip("198.51.100.1")), IpTable::kNone);
  EXPECT_EQ(table.size(), 1u);
  const uint32_t c = table.Intern(Ip("203.0.113.9"), {.names = 3});
  EXPECT_EQ(c, a);  // the slot is reused
  EXPECT_EQ(table.Address(c), Ip("203.0.113.9"));

  std::map<uint32_t, IpAddr> seen;
  table.ForEach([&](uint32_t id, const IpTable::Rec&) { seen.emplace(id, table.Address(id)); });
  EXPECT_EQ(seen, (std::map<uint32_t, IpAddr>{{c, Ip("203.0.113.9")}, {b, Ip("2001:db8::1")}}));
}

TEST(IpTableTest, ManyAddressesOfBothFamilies) {
  IpTable table;
  std::vector<std::pair<IpAddr, uint32_t>> ids;
  for (uint32_t i = 0; i < 5000; ++i) {
    const uint8_t v4[4] = {198, 51, static_cast<uint8_t>(i >> 8), static_cast<uint8_t>(i)};
    uint8_t v6[16] = {0x20, 0x01, 0x0d, 0xb8};
    v6[14] = static_cast<uint8_t>(i >> 8);
    v6[15] = static_cast<uint8_t>(i);
    for (const IpAddr& ip : {IpAddr::V4(v4), IpAddr::V6(v6)}) {
      ids.emplace_back(ip, table.Intern(ip, {.names = i}));
    }
  }
  EXPECT_EQ(table.size(), 10000u);
  for (const auto& [ip, id] : ids) {
    ASSERT_EQ(table.Find(ip), id);
    ASSERT_EQ(table.Address(id), ip);
  }
}

struct Item {
  uint32_t a, b, c;
  friend bool operator==(const Item&, const Item&) = default;
};

TEST(InlineOneVectorTest, MatchesStdVectorThroughInsertsAndErases) {
  static_assert(sizeof(InlineOneVector<Item>) == 16);
  InlineOneVector<Item> v;
  std::vector<Item> model;
  std::mt19937 rng(3);
  for (int step = 0; step < 20000; ++step) {
    const bool grow = model.size() < 2 || rng() % 100 < 55;
    if (grow) {
      const size_t at = rng() % (model.size() + 1);
      const Item item{static_cast<uint32_t>(step), static_cast<uint32_t>(at), 1};
      v.insert(v.begin() + at, item);
      model.insert(model.begin() + static_cast<long>(at), item);
    } else {
      const size_t first = rng() % model.size();
      const size_t last = first + 1 + rng() % std::min<size_t>(3, model.size() - first);
      v.erase(v.begin() + first, v.begin() + last);
      model.erase(model.begin() + static_cast<long>(first), model.begin() + static_cast<long>(last));
    }
    ASSERT_EQ(v.size(), model.size());
    ASSERT_TRUE(std::equal(v.begin(), v.end(), model.begin(), model.end())) << "step " << step;
  }
  InlineOneVector<Item> moved = std::move(v);
  EXPECT_TRUE(v.empty());
  EXPECT_TRUE(std::equal(moved.begin(), moved.end(), model.begin(), model.end()));
  moved.clear();
  EXPECT_TRUE(moved.empty());
}

TEST(InlineOneVectorTest, OneElementStaysInlineAndComesBackInline) {
  InlineOneVector<Item> v;
  v.insert(v.begin(), Item{1, 2, 3});
  const Item* inline_slot = v.data();
  EXPECT_EQ(reinterpret_cast<const char*>(inline_slot) - reinterpret_cast<const char*>(&v), 4);
  v.insert(v.end(), Item{4, 5, 6});
  EXPECT_NE(v.data(), inline_slot);
  v.erase(v.begin(), v.begin() + 1);
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v.data(), inline_slot);
  EXPECT_EQ(v[0], (Item{4, 5, 6}));
}

}  // namespace
}  // namespace acns::fqdn
