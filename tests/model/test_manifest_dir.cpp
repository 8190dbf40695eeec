// ManifestDirSource on a real temp directory: inotify-driven re-reads of exactly the files
// that changed, editor/atomic/in-place writes, deletes, bad input that loses nothing.
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "agent/source/source.h"
#include "support.h"

namespace fs = std::filesystem;
using namespace ferry::model;
using ferry::source::ManifestDirSource;
using ferry::source::SourceError;

namespace {

// A fresh directory under the system temp dir, removed at the end (also on failure).
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "ferry-model-test-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

  // An in-place write: open (truncating) the file itself and write.
  void write(const std::string& name, const std::string& text) const {
    std::ofstream out(file(name), std::ios::trunc);
    out << text;
  }
  // An atomic write: a hidden temp file renamed over the target (what kubectl cp/ConfigMaps/
  // careful tools do).
  void write_atomically(const std::string& name, const std::string& text) const {
    write("." + name + ".tmp", text);
    fs::rename(file("." + name + ".tmp"), file(name));
  }

 private:
  fs::path path_;
};

std::string ns_yaml(const std::string& name, const std::string& team = "a") {
  return "apiVersion: v1\nkind: Namespace\nmetadata: {name: " + name + ", labels: {team: " + team + "}}\n";
}

std::string pod_yaml(const std::string& name, const std::string& node) {
  return "apiVersion: v1\nkind: Pod\nmetadata: {name: " + name + ", namespace: x}\nspec: {nodeName: " + node + "}\n";
}

// Waits (generously: the machine is shared) until inotify has something, then handles it once.
bool wait_and_handle(ManifestDirSource& src) {
  pollfd p{src.fd(), POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 10000), 1) << "no inotify event";
  return src.handle_events();
}

std::vector<std::string> keys(const ManifestDirSource& src) {
  std::vector<std::string> out;
  for (const auto& o : src.objects()) out.push_back(key_of(o).str());
  return out;
}

const Object* find(const std::vector<Object>& objects, const ObjectKey& key) {
  for (const auto& o : objects)
    if (key_of(o) == key) return &o;
  return nullptr;
}

bool any_error_contains(const ManifestDirSource& src, const std::string& text) {
  auto errors = src.errors();
  return std::any_of(errors.begin(), errors.end(), [&](const auto& e) { return e.find(text) != e.npos; });
}

}  // namespace

TEST(ManifestDirSource, LoadsManifestsAndIgnoresEverythingElse) {
  TempDir dir;
  dir.write("a.yaml", ns_yaml("from-yaml"));
  dir.write("b.yml", ns_yaml("from-yml"));
  dir.write("c.json", R"({"apiVersion":"v1","kind":"Namespace","metadata":{"name":"from-json"}})");
  for (const char* ignored : {".hidden.yaml", "a.yaml~", ".#a.yaml", "a.yaml.swp", "notes.txt", "4913", "README"})
    dir.write(ignored, ns_yaml("ignored"));
  fs::create_directory(dir.path() / "sub.yaml");

  ManifestDirSource src(dir.path().string());
  EXPECT_TRUE(src.load());
  EXPECT_EQ(keys(src), (std::vector<std::string>{"Namespace from-json", "Namespace from-yaml", "Namespace from-yml"}));
  EXPECT_TRUE(src.errors().empty());
  EXPECT_FALSE(src.handle_events());  // nothing happened since
}

TEST(ManifestDirSource, ManifestNames) {
  for (const char* yes : {"a.yaml", "pods.yml", "x.json", "a.b.yaml"}) EXPECT_TRUE(ManifestDirSource::is_manifest_name(yes)) << yes;
  for (const char* no : {"", ".a.yaml", "..data", "a.yaml~", ".#a.yaml", "a.yaml.swp", "a.swp", "a.txt", "4913", "yaml", "a.yaml.tmp"})
    EXPECT_FALSE(ManifestDirSource::is_manifest_name(no)) << no;
}

TEST(ManifestDirSource, MissingDirectoryThrows) {
  EXPECT_THROW(ManifestDirSource("/nonexistent/ferry-model-test"), SourceError);
  TempDir dir;
  dir.write("file.yaml", "");
  EXPECT_THROW(ManifestDirSource(dir.file("file.yaml")), SourceError);  // not a directory
}

TEST(ManifestDirSource, FdIsNonBlocking) {
  TempDir dir;
  ManifestDirSource src(dir.path().string());
  src.load();
  pollfd p{src.fd(), POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 0), 0);  // nothing to read: not readable, and handle_events returns
  EXPECT_FALSE(src.handle_events());
}

TEST(ManifestDirSource, CreateModifyInPlaceAtomicRenameDelete) {
  TempDir dir;
  ManifestDirSource src(dir.path().string());
  src.load();
  EXPECT_TRUE(src.objects().empty());

  dir.write("ns.yaml", ns_yaml("shop", "a"));  // create
  EXPECT_TRUE(wait_and_handle(src));
  ASSERT_EQ(keys(src), std::vector<std::string>{"Namespace shop"});

  dir.write("ns.yaml", ns_yaml("shop", "b"));  // modify in place
  EXPECT_TRUE(wait_and_handle(src));
  auto objects = src.objects();
  ASSERT_TRUE(find(objects, {Kind::Namespace, "", "shop"}));
  EXPECT_EQ(std::get<Namespace>(*find(objects, {Kind::Namespace, "", "shop"})).meta.labels.at("team"), "b");

  dir.write_atomically("ns.yaml", ns_yaml("shop", "c") + "---\n" + ns_yaml("web"));  // temp + rename
  EXPECT_TRUE(wait_and_handle(src));
  objects = src.objects();
  EXPECT_EQ(keys(src), (std::vector<std::string>{"Namespace shop", "Namespace web"}));
  EXPECT_EQ(std::get<Namespace>(*find(objects, {Kind::Namespace, "", "shop"})).meta.labels.at("team"), "c");

  dir.write("ns.yaml", ns_yaml("shop", "c") + "---\n" + ns_yaml("web"));  // same content again
  EXPECT_FALSE(wait_and_handle(src));

  fs::remove(dir.file("ns.yaml"));  // delete
  EXPECT_TRUE(wait_and_handle(src));
  EXPECT_TRUE(src.objects().empty());
  EXPECT_TRUE(src.errors().empty());
}

TEST(ManifestDirSource, RenamesInAndOutOfTheDirectoryAndBetweenNames) {
  TempDir dir, outside;
  outside.write("pods.yaml", pod_yaml("a", "n1"));
  ManifestDirSource src(dir.path().string());
  src.load();

  fs::rename(outside.file("pods.yaml"), dir.file("pods.yaml"));  // moved in
  EXPECT_TRUE(wait_and_handle(src));
  EXPECT_EQ(keys(src), std::vector<std::string>{"Pod x/a"});

  fs::rename(dir.file("pods.yaml"), dir.file("pods.yaml.disabled"));  // renamed to a non-manifest name
  EXPECT_TRUE(wait_and_handle(src));
  EXPECT_TRUE(src.objects().empty());

  fs::rename(dir.file("pods.yaml.disabled"), dir.file("pods.yaml"));
  EXPECT_TRUE(wait_and_handle(src));
  fs::rename(dir.file("pods.yaml"), outside.file("pods.yaml"));  // moved out
  EXPECT_TRUE(wait_and_handle(src));
  EXPECT_TRUE(src.objects().empty());
}

TEST(ManifestDirSource, OnlyTheChangedFileIsReRead) {
  TempDir dir;
  dir.write("a.yaml", ns_yaml("a"));
  dir.write("b.yaml", ns_yaml("b"));
  ManifestDirSource src(dir.path().string());
  src.load();
  // Make b.yaml unreadable as YAML behind inotify's back (no event: written via a hard link
  // outside the watched directory). If handle_events re-read everything, it would notice.
  TempDir other;
  fs::create_hard_link(dir.file("b.yaml"), other.file("b-link.yaml"));
  EXPECT_FALSE(src.handle_events());
  {
    std::ofstream out(other.file("b-link.yaml"), std::ios::trunc);
    out << ns_yaml("b-changed");
  }
  dir.write("a.yaml", ns_yaml("a2"));
  EXPECT_TRUE(wait_and_handle(src));
  EXPECT_EQ(keys(src), (std::vector<std::string>{"Namespace a2", "Namespace b"}));  // b not re-read
}

TEST(ManifestDirSource, MalformedFileKeepsItsLastGoodObjects) {
  TempDir dir;
  dir.write("pods.yaml", pod_yaml("a", "n1") + "---\n" + pod_yaml("b", "n1"));
  dir.write("other.yaml", ns_yaml("x"));
  ManifestDirSource src(dir.path().string());
  src.load();
  ASSERT_EQ(src.objects().size(), 3u);

  dir.write("pods.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: a\n");  // syntax error
  EXPECT_FALSE(wait_and_handle(src));  // nothing lost, nothing changed
  EXPECT_EQ(keys(src), (std::vector<std::string>{"Namespace x", "Pod x/a", "Pod x/b"}));
  auto errors = src.errors();
  ASSERT_EQ(errors.size(), 2u);
  EXPECT_EQ(errors[0].rfind("pods.yaml: line ", 0), 0u) << errors[0];
  EXPECT_NE(errors[0].find("YAML syntax error"), std::string::npos) << errors[0];
  EXPECT_EQ(errors[1], "pods.yaml: keeping its 2 objects from the last good read");

  dir.write("pods.yaml", pod_yaml("a", "n2"));  // fixed (and b removed)
  EXPECT_TRUE(wait_and_handle(src));
  EXPECT_EQ(keys(src), (std::vector<std::string>{"Namespace x", "Pod x/a"}));
  EXPECT_EQ(std::get<Pod>(*find(src.objects(), {Kind::Pod, "x", "a"})).node_name, "n2");
  EXPECT_TRUE(src.errors().empty());
}

TEST(ManifestDirSource, MalformedFileAtStartupReportsTheFileName) {
  TempDir dir;
  dir.write("broken.json", "{\"apiVersion\": ");
  dir.write("good.yaml", ns_yaml("ok"));
  ManifestDirSource src(dir.path().string());
  EXPECT_TRUE(src.load());
  EXPECT_EQ(keys(src), std::vector<std::string>{"Namespace ok"});
  ASSERT_EQ(src.errors().size(), 1u);
  EXPECT_EQ(src.errors()[0].rfind("broken.json: JSON parse error", 0), 0u) << src.errors()[0];
}

TEST(ManifestDirSource, BadObjectIsSkippedWhileTheRestApplies) {
  TempDir dir;
  ManifestDirSource src(dir.path().string());
  src.load();
  dir.write("pods.yaml", pod_yaml("a", "n1") + "---\n" +
                             "apiVersion: v1\nkind: Pod\nmetadata: {name: bad, namespace: x}\nspec: {hostNetwork: maybe}\n" +
                             "---\n" + pod_yaml("c", "n1"));
  EXPECT_TRUE(wait_and_handle(src));
  EXPECT_EQ(keys(src), (std::vector<std::string>{"Pod x/a", "Pod x/c"}));
  EXPECT_EQ(src.errors(), std::vector<std::string>{
                              "pods.yaml: document 2 (Pod x/bad): spec.hostNetwork: expected true or false, got \"maybe\""});
}

TEST(ManifestDirSource, ObjectThatTurnsBadKeepsItsLastGoodVersion) {
  TempDir dir;
  dir.write("pods.yaml", pod_yaml("a", "n1") + "---\n" + pod_yaml("b", "n1"));
  ManifestDirSource src(dir.path().string());
  src.load();
  dir.write("pods.yaml", pod_yaml("a", "n2") + "---\n" +
                             "apiVersion: v1\nkind: Pod\nmetadata: {name: b, namespace: x}\nspec: {nodeName: N_1}\n");
  EXPECT_TRUE(wait_and_handle(src));  // a changed; b kept as it was
  auto objects = src.objects();
  EXPECT_EQ(std::get<Pod>(*find(objects, {Kind::Pod, "x", "a"})).node_name, "n2");
  ASSERT_TRUE(find(objects, {Kind::Pod, "x", "b"}));
  EXPECT_EQ(std::get<Pod>(*find(objects, {Kind::Pod, "x", "b"})).node_name, "n1");
  auto errors = src.errors();
  ASSERT_EQ(errors.size(), 2u);
  EXPECT_NE(errors[0].find("pods.yaml: document 2 (Pod x/b): spec.nodeName: invalid node name \"N_1\""), std::string::npos);
  EXPECT_EQ(errors[1], "pods.yaml: keeping the last good version of Pod x/b");
}

TEST(ManifestDirSource, DuplicatesAcrossFilesLastFileNameWins) {
  TempDir dir;
  dir.write("10-base.yaml", pod_yaml("a", "from-base"));
  dir.write("20-override.yaml", pod_yaml("a", "from-override"));
  ManifestDirSource src(dir.path().string());
  src.load();
  auto objects = src.objects();
  ASSERT_EQ(objects.size(), 1u);
  EXPECT_EQ(std::get<Pod>(objects[0]).node_name, "from-override");
  EXPECT_EQ(src.errors(),
            std::vector<std::string>{"Pod x/a is defined in 10-base.yaml and 20-override.yaml; using 20-override.yaml"});

  fs::remove(dir.file("20-override.yaml"));
  EXPECT_TRUE(wait_and_handle(src));
  EXPECT_EQ(std::get<Pod>(src.objects()[0]).node_name, "from-base");
  EXPECT_TRUE(src.errors().empty());
}

TEST(ManifestDirSource, DuplicateWithinOneFileLaterDocumentWins) {
  TempDir dir;
  dir.write("p.yaml", pod_yaml("a", "first") + "---\n" + pod_yaml("a", "second"));
  ManifestDirSource src(dir.path().string());
  src.load();
  ASSERT_EQ(src.objects().size(), 1u);
  EXPECT_EQ(std::get<Pod>(src.objects()[0]).node_name, "second");
  EXPECT_EQ(src.errors(), std::vector<std::string>{"p.yaml: Pod x/a is defined twice; using the later one"});
}

TEST(ManifestDirSource, EditorTempFilesAreNotRead) {
  TempDir dir;
  dir.write("ns.yaml", ns_yaml("shop"));
  ManifestDirSource src(dir.path().string());
  src.load();
  // What vim/emacs leave around while editing: none of it is a manifest.
  dir.write(".ns.yaml.swp", "garbage: [");
  dir.write("ns.yaml~", ns_yaml("backup"));
  dir.write(".#ns.yaml", "lock");
  dir.write("4913", "");
  // Then a real change, so there is something to wait for.
  dir.write("ns.yaml", ns_yaml("shop", "b"));
  EXPECT_TRUE(wait_and_handle(src));
  EXPECT_EQ(keys(src), std::vector<std::string>{"Namespace shop"});
  EXPECT_TRUE(src.errors().empty());
}

TEST(ManifestDirSource, ConfigMapVolumeDataSwapRereadsEverything) {
  // A ConfigMap volume: ns.yaml -> ..data/ns.yaml, ..data -> ..<timestamp>/, swapped atomically.
  TempDir dir;
  fs::create_directory(dir.path() / "..v1");
  dir.write("..v1/ns.yaml", ns_yaml("shop", "v1"));
  fs::create_directory_symlink("..v1", dir.path() / "..data");
  fs::create_symlink("..data/ns.yaml", dir.path() / "ns.yaml");
  ManifestDirSource src(dir.path().string());
  src.load();
  EXPECT_EQ(std::get<Namespace>(src.objects().at(0)).meta.labels.at("team"), "v1");

  fs::create_directory(dir.path() / "..v2");
  dir.write("..v2/ns.yaml", ns_yaml("shop", "v2"));
  fs::create_directory_symlink("..v2", dir.path() / "..data_tmp");
  fs::rename(dir.path() / "..data_tmp", dir.path() / "..data");
  // Only ..-names changed; they make the source re-read everything.
  bool changed = wait_and_handle(src);
  while (!changed) {  // the events may arrive in more than one batch
    pollfd p{src.fd(), POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 10000), 1);
    changed = src.handle_events();
  }
  EXPECT_EQ(std::get<Namespace>(src.objects().at(0)).meta.labels.at("team"), "v2");
}

TEST(ManifestDirSource, DirectoryRemovedIsReported) {
  auto dir = std::make_unique<TempDir>();
  dir->write("ns.yaml", ns_yaml("shop"));
  ManifestDirSource src(dir->path().string());
  src.load();
  std::string path = dir->path().string();
  fs::remove_all(dir->path());
  while (src.errors().empty()) {
    pollfd p{src.fd(), POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 10000), 1);
    src.handle_events();
  }
  // The file's delete event may come first; either way the directory problem is reported.
  EXPECT_TRUE(any_error_contains(src, path + ": directory removed")) << src.errors()[0];
}
