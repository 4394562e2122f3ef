// SPDX-License-Identifier: MIT
// Files and directories orch creates are private to its user (SPEC §12),
// whatever the umask: config files hold tokens.
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "catch.h"
#include "cli/cli.h"
#include "private_files.h"
#include "support/server_fixture.h"

namespace {

namespace fs = std::filesystem;

unsigned mode_of(const fs::path& p) {
  struct stat st {};
  REQUIRE(stat(p.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

// A fresh directory under the system's temporary one, removed at the end.
struct TempDir {
  fs::path path;
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "orch-private-XXXXXX").string();
    REQUIRE(mkdtemp(pattern.data()) != nullptr);
    path = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

// Sets the umask for a scope (the usual 022 would leave new files 0644).
struct Umask {
  mode_t old;
  explicit Umask(mode_t mask) : old(umask(mask)) {}
  ~Umask() { umask(old); }
};

}  // namespace

TEST_CASE("orch --from-json writes a private config and tracker workflow under umask 022", "[server][files]") {
  TempDir tmp;
  Umask mask(022);
  chmod(tmp.path.c_str(), 0755);  // an existing directory keeps its mode
  const fs::path home = tmp.path / "home" / "orch";
  const std::string answers = R"({"home": ")" + home.string() + R"(", "api_token": "t0ken",
      "tracker_enabled": true, "tracker_url": "http://127.0.0.1:9", "tracker_pipeline_id": "p1"})";
  REQUIRE(orch::cli::from_json_command({answers}) == orch::cli::kExitOk);
  CHECK(mode_of(tmp.path) == 0755);
  CHECK(mode_of(tmp.path / "home") == 0700);
  CHECK(mode_of(home) == 0700);
  CHECK(mode_of(home / "config.json") == 0600);
  CHECK(mode_of(home / "workflows") == 0700);
  CHECK(mode_of(home / "workflows" / "p1.json") == 0600);
  // Written again over a file the user had opened up: replaced, private again.
  chmod((home / "config.json").c_str(), 0644);
  REQUIRE(orch::cli::from_json_command({answers}) == orch::cli::kExitOk);
  CHECK(mode_of(home / "config.json") == 0600);
  for (const auto& entry : fs::directory_iterator(home)) {
    CHECK(entry.path().filename().string().find(".tmp.") == std::string::npos);  // no temporary left behind
  }
}

TEST_CASE("orch serve makes the directories of its database and state private", "[server][files]") {
  TempDir tmp;
  Umask mask(022);
  orch::server::ServerConfig config;
  config.db = (tmp.path / "data" / "orch.db").string();
  config.state_dir = (tmp.path / "state" / "here").string();
  {
    orch::testing::TestServer server(config);
    REQUIRE(server.client()->Get("/health")->status == 200);
  }
  CHECK(mode_of(tmp.path / "data") == 0700);
  CHECK(mode_of(tmp.path / "data" / "orch.db") == 0600);
  CHECK(mode_of(tmp.path / "state") == 0700);
  CHECK(mode_of(tmp.path / "state" / "here") == 0700);
}

TEST_CASE("orch export writes a new file 0600 and leaves an existing one's mode", "[server][files]") {
  TempDir tmp;
  Umask mask(0);
  const std::string out = (tmp.path / "export.jsonl").string();
  REQUIRE(orch::cli::export_command({"--db", ":memory:", "--out", out}) == orch::cli::kExitOk);
  CHECK(mode_of(out) == 0600);
  CHECK(fs::file_size(out) > 0);
  chmod(out.c_str(), 0640);  // the user's choice for a file that exists
  REQUIRE(orch::server::create_private_file(out).ok());
  CHECK(mode_of(out) == 0640);
}
