// SPDX-License-Identifier: MIT
//
// Template: prompt and message templates, compiled once and rendered many times.
//
// Syntax (NullBoiler-compatible state renderer, with orch's value rendering):
//
//   {{ EXPR }}                 the value of EXPR; whitespace inside is trimmed
//   {% if EXPR %}…{% endif %}  a conditional; {% else %} optional; nests freely
//
// Expressions (PATH is a state path, see orch/state_path.h):
//   state.PATH     the state being rendered
//   input.PATH     the run's input
//   item, item.PATH  the current send item
//   config.PATH    the run config (TemplateContext::config, else state.__config)
//   store.NS.KEY   a Store value; NS is the text up to the first '.', KEY the
//                  rest (it may contain dots); fetched through TemplateContext::store
//   attempt        the attempt number of the node being run
//   NAME.PATH      a root the host adds (TemplateContext::extra_roots; orch
//                  serve's pull mode adds `task`, the tracker task)
// Any other expression (a root nobody added, bare "state", "input", "config"
// or NAME, filters such as "state.x | upper") renders empty and is false.
//
// Rendering a value:
//   * missing values and JSON null render empty;
//   * strings render raw: their characters exactly, no quotes, no escaping
//     (a newline stays a newline, a quote stays a quote);
//   * numbers and booleans render as their JSON text (Value::to_json): integers
//     exactly, doubles in shortest round-trip form (0.1 → "0.1", 2.0 → "2.0");
//   * arrays and objects render as compact JSON.
// Rendered values are never re-scanned for template syntax.
//
// Truthiness of `{% if EXPR %}`: EXPR is resolved like `{{ EXPR }}` (no
// operators or comparisons). It is false when the value is missing, null,
// false, 0 or 0.0, the empty string, an empty array or an empty object, and true
// otherwise. Unlike NullBoiler, the *strings* "false", "0", "null" and "[]" are
// true (they are non-empty strings), and {} is false.
//
// Tags: `{% if EXPR %}` (any whitespace after "if"), `{% else %}` and
// `{% endif %}` are recognised after trimming spaces, tabs, CR and LF inside the
// tag. Any other `{% … %}` tag (for, elif, set, "{%- if -%}", …) is kept as
// literal text. There is no escape for a literal "{{" or "{%", but a "{{"
// with no "}}" after it is literal text (as in NullBoiler), tags after it
// still read as tags.
//
// Compile errors are InvalidArgument, "template error at byte N: …" where N is
// the 0-based byte offset of the offending "{{" or "{%": an unterminated "{%",
// an empty expression, an `if` without a condition or without `endif`, an
// `else` or `endif` without `if`, a second `else`, a store expression without a
// namespace or key, a root with an empty path ("state."), or a malformed path
// index ("state.a[x]").
//
// Render errors come from store expressions (also inside `{% if %}`, which
// does not swallow them): no store callback configured → FailedPrecondition; a
// callback error other than NotFound → that error's code, with the expression
// named in the message. A NotFound reply renders empty (and is false). And
// from the size cap: output that would grow past
// TemplateContext::max_output_bytes → ResourceExhausted, "rendered template
// exceeds N bytes"; the render stops there, without building the rest.
//
// Ownership: a Template owns its compiled form; copies share it. A
// TemplateContext only points at values owned by the caller, which must outlive
// the render call.
//
// Thread-safety: a Template is immutable after compile() and may be rendered
// from any number of threads at once, provided the context's store callback is
// itself safe to call concurrently.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "orch/export.h"
#include "orch/status.h"
#include "orch/value.h"

namespace orch {

// Fetches a Store value for `{{store.NS.KEY}}`. Returning a NotFound status
// renders empty; any other error fails the render.
using StoreLookup = std::function<Result<Value>(std::string_view ns, std::string_view key)>;

// What a render can see. Every pointer may be null (its expressions then render
// empty); none is owned.
struct TemplateContext {
  const Value* state = nullptr;
  const Value* input = nullptr;
  const Value* item = nullptr;
  // When null, `config.PATH` reads state.__config.PATH.
  const Value* config = nullptr;
  // More roots by name: `{{NAME.PATH}}` reads the value paired with NAME (a
  // host's own data). The built-in roots above take precedence.
  std::vector<std::pair<std::string, const Value*>> extra_roots;
  std::optional<int64_t> attempt;
  // When empty, any `{{store…}}` expression fails the render.
  StoreLookup store;
  // The largest output a render may produce. A small template can render a
  // huge prompt (one large state value named many times), so the output is
  // capped as it grows. Default 1 MiB; 0: no limit.
  static constexpr size_t kDefaultMaxOutputBytes = size_t{1} << 20;
  size_t max_output_bytes = kDefaultMaxOutputBytes;
};

class ORCH_EXPORT Template {
 public:
  // The empty template (renders "").
  Template();

  // Compiles `text`. On failure, when `error_offset` is given it receives the
  // byte offset named in the error.
  static Result<Template> compile(std::string_view text, size_t* error_offset = nullptr);

  // Renders with `context`. Never re-parses the template text.
  Result<std::string> render(const TemplateContext& context) const;

  // The source text this template was compiled from.
  const std::string& source() const;

  // Top-level state keys referenced through `state.X` (in `{{ }}` and in
  // `{% if %}`), each once, in order of first appearance. Used by validation to
  // warn about keys missing from the state schema.
  const std::vector<std::string>& state_references() const;

  // True when the template has any `store.` expression.
  bool uses_store() const;

  // Like state_references(), read straight from text without compiling it, so
  // it never fails: malformed parts are skipped as well as they can be.
  static std::vector<std::string> list_state_references(std::string_view text);

 private:
  struct Impl;
  explicit Template(std::shared_ptr<const Impl> impl);
  std::shared_ptr<const Impl> impl_;
};

// Compiles and renders `text` once (for one-off renders; prefer compiling once).
ORCH_EXPORT Result<std::string> render_template(std::string_view text,
                                                const TemplateContext& context);

}  // namespace orch
