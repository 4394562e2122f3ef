// A host program: parses JSON through the installed orch and prints it back.
#include <cstdio>
#include <orch/orch.h>

int main() {
  orch::Result<orch::Value> v = orch::parse_json(R"({"hello":"orch","n":[1,2.5]})");
  if (!v.ok()) {
    std::fprintf(stderr, "%s\n", v.status().to_string().c_str());
    return 1;
  }
  std::printf("orch %s: %s id=%s\n", orch::version(), v->to_json().c_str(), orch::new_uuid().c_str());
  return v->to_json() == R"({"hello":"orch","n":[1,2.5]})" ? 0 : 1;
}
