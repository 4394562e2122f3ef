// SPDX-License-Identifier: MIT
//
// Templates compile to a flat program: literal text, value insertions, and
// conditional/unconditional jumps for `{% if %}` blocks. Rendering walks the
// program once with no recursion and no parsing.
#include "orch/template.h"

#include <algorithm>
#include <unordered_set>
#include <utility>

#include "orch/state_path.h"

namespace orch {
namespace {

constexpr size_t kNoIndex = static_cast<size_t>(-1);

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

// Offset of the next "{{" or "{%" at or after `pos`, or npos.
size_t find_open(std::string_view text, size_t pos) {
  while (true) {
    pos = text.find('{', pos);
    if (pos == std::string_view::npos || pos + 1 >= text.size()) return std::string_view::npos;
    if (text[pos + 1] == '{' || text[pos + 1] == '%') return pos;
    ++pos;
  }
}

// What a trimmed `{% … %}` tag is. For kIf, `*condition` receives the trimmed
// text after "if" and its whitespace.
enum class TagKind { kIf, kBareIf, kElse, kEndif, kOther };

TagKind classify_tag(std::string_view tag, std::string_view* condition) {
  if (tag == "else") return TagKind::kElse;
  if (tag == "endif") return TagKind::kEndif;
  if (tag == "if") return TagKind::kBareIf;
  if (tag.size() > 2 && tag.substr(0, 2) == "if" && is_space(tag[2])) {
    *condition = trim(tag.substr(3));
    return TagKind::kIf;
  }
  return TagKind::kOther;
}

// Top-level state keys in order of first appearance, each once. The set makes
// a repeat cost O(1): a text can hold a hundred thousand distinct keys.
class StateRefs {
 public:
  // Adds the top-level key of a `state.X…` expression.
  void collect(std::string_view expr) {
    constexpr std::string_view kPrefix = "state.";
    if (expr.substr(0, kPrefix.size()) != kPrefix) return;
    std::string_view key = expr.substr(kPrefix.size());
    key = key.substr(0, key.find('.'));
    key = key.substr(0, key.find('['));
    if (key.empty() || !seen_.emplace(key).second) return;
    keys_.emplace_back(key);
  }
  std::vector<std::string> take() { return std::move(keys_); }

 private:
  std::vector<std::string> keys_;
  std::unordered_set<std::string> seen_;
};

enum class Root : uint8_t { kNone, kState, kInput, kItem, kConfig, kExtra, kAttempt, kStore };

struct Expr {
  Root root = Root::kNone;
  StatePath path;
  std::string extra_root;  // kExtra: the root's name
  std::string store_ns;
  std::string store_key;
};

enum class Op : uint8_t {
  kText,    // append `text`
  kValue,   // append the value of `expr`
  kBranch,  // if `expr` is false, continue at `target`
  kJump,    // continue at `target`
};

struct Instr {
  Op op = Op::kText;
  std::string text;
  Expr expr;
  size_t target = 0;
};

// Parses a trimmed expression. On failure returns the reason (without position).
Status compile_expr(std::string_view text, Expr* out) {
  if (text.empty()) return Status::invalid_argument("empty expression");
  if (text == "item") {
    out->root = Root::kItem;
    return Status();
  }
  if (text == "attempt") {
    out->root = Root::kAttempt;
    return Status();
  }
  size_t dot = text.find('.');
  if (dot == std::string_view::npos) return Status();  // unknown: renders empty
  std::string_view root = text.substr(0, dot);
  std::string_view rest = text.substr(dot + 1);
  if (root == "store") {
    size_t key_dot = rest.find('.');
    if (key_dot == std::string_view::npos || key_dot == 0 || key_dot + 1 == rest.size()) {
      return Status::invalid_argument("store expression '" + std::string(text) +
                                      "' needs a namespace and a key (store.NAMESPACE.KEY)");
    }
    out->root = Root::kStore;
    out->store_ns = std::string(rest.substr(0, key_dot));
    out->store_key = std::string(rest.substr(key_dot + 1));
    return Status();
  }
  static constexpr std::pair<std::string_view, Root> kPathRoots[] = {
      {"state", Root::kState},   {"input", Root::kInput}, {"item", Root::kItem},
      {"config", Root::kConfig},
  };
  Root kind = Root::kNone;
  for (const auto& [name, value] : kPathRoots) {
    if (root == name) kind = value;
  }
  if (kind == Root::kNone) {
    // A root the host may add at render time (TemplateContext::extra_roots);
    // a path that does not compile renders empty, as unknown roots always did.
    Result<StatePath> path = StatePath::compile(rest, StatePrefix::kKeep);
    if (rest.empty() || !path.ok()) return Status();
    out->root = Root::kExtra;
    out->extra_root = std::string(root);
    out->path = std::move(path).value();
    return Status();
  }
  if (rest.empty()) {
    return Status::invalid_argument("expression '" + std::string(text) + "' has an empty path");
  }
  Result<StatePath> path = StatePath::compile(rest, StatePrefix::kKeep);
  if (!path.ok()) return path.status();
  out->root = kind;
  out->path = std::move(path).value();
  return Status();
}

// Resolves `expr`; `*out` is null when the value is missing. `scratch` holds a
// value that the context does not own (a store reply, the attempt number).
Status resolve(const Expr& expr, const TemplateContext& ctx, Value* scratch, const Value** out) {
  *out = nullptr;
  const Value* base = nullptr;
  switch (expr.root) {
    case Root::kNone:
      return Status();
    case Root::kState:
      base = ctx.state;
      break;
    case Root::kInput:
      base = ctx.input;
      break;
    case Root::kItem:
      base = ctx.item;
      break;
    case Root::kExtra:
      for (const auto& [name, value] : ctx.extra_roots) {
        if (name == expr.extra_root) {
          base = value;
          break;
        }
      }
      break;
    case Root::kConfig:
      base = ctx.config;
      if (base == nullptr && ctx.state != nullptr) base = ctx.state->find("__config");
      break;
    case Root::kAttempt:
      if (ctx.attempt.has_value()) {
        *scratch = Value(*ctx.attempt);
        *out = scratch;
      }
      return Status();
    case Root::kStore: {
      if (!ctx.store) {
        return Status::failed_precondition("template uses {{store." + expr.store_ns + "." +
                                           expr.store_key + "}} but no store is configured");
      }
      Result<Value> reply = ctx.store(expr.store_ns, expr.store_key);
      if (!reply.ok()) {
        if (reply.status().code() == StatusCode::kNotFound) return Status();
        return Status(reply.status().code(), "store lookup for {{store." + expr.store_ns + "." +
                                                 expr.store_key +
                                                 "}} failed: " + reply.status().message());
      }
      *scratch = std::move(reply).value();
      *out = scratch;
      return Status();
    }
  }
  if (base != nullptr) *out = expr.path.find(*base);
  return Status();
}

// The render output, never allowed past `limit` bytes. Each piece is checked
// before it is added, and arrays and objects are written element by element,
// so an oversized render stops early instead of allocating the whole result
// (an array holding one large string many times costs little in state, but
// its JSON text can be enormous).
class BoundedOutput {
 public:
  // A `limit` of 0 means none.
  BoundedOutput(size_t limit, size_t reserve) : limit_(limit == 0 ? kUnlimited : limit) {
    out_.reserve(std::min(reserve, limit_));
  }

  Status append(std::string_view text) {
    if (text.size() > limit_ - out_.size()) return too_large();
    out_.append(text);
    return Status();
  }

  // Missing and null values add nothing, strings their characters, other
  // values their compact JSON.
  Status append_value(const Value* v) {
    if (v == nullptr || v->is_null()) return Status();
    if (v->is_string()) return append(v->as_string());
    return append_json(*v);
  }

  std::string take() { return std::move(out_); }

 private:
  Status append_json(const Value& v) {
    if (v.is_array()) {
      ORCH_RETURN_IF_ERROR(append("["));
      bool first = true;
      for (const Value& item : v.as_array()) {
        if (!first) ORCH_RETURN_IF_ERROR(append(","));
        first = false;
        ORCH_RETURN_IF_ERROR(append_json(item));
      }
      return append("]");
    }
    if (v.is_object()) {
      ORCH_RETURN_IF_ERROR(append("{"));
      bool first = true;
      for (const auto& [key, item] : v.as_object()) {
        if (!first) ORCH_RETURN_IF_ERROR(append(","));
        first = false;
        ORCH_RETURN_IF_ERROR(append_scalar_json(Value(key)));
        ORCH_RETURN_IF_ERROR(append(":"));
        ORCH_RETURN_IF_ERROR(append_json(item));
      }
      return append("}");
    }
    return append_scalar_json(v);
  }

  Status append_scalar_json(const Value& v) {
    // A string's JSON text is at least as long as the string.
    if (v.is_string() && v.as_string().size() > limit_ - out_.size()) return too_large();
    size_t before = out_.size();
    v.write_json(&out_);
    if (out_.size() <= limit_) return Status();
    out_.resize(before);
    return too_large();
  }

  Status too_large() const {
    return Status::resource_exhausted("rendered template exceeds " + std::to_string(limit_) +
                                      " bytes (the max_output_bytes limit)");
  }

  static constexpr size_t kUnlimited = static_cast<size_t>(-1);

  std::string out_;
  size_t limit_;
};

bool truthy(const Value* v) {
  if (v == nullptr) return false;
  switch (v->type()) {
    case Value::Type::kNull:
      return false;
    case Value::Type::kBool:
      return v->as_bool();
    case Value::Type::kInt:
      return v->as_int() != 0;
    case Value::Type::kDouble:
      return v->as_double() != 0.0;
    case Value::Type::kString:
    case Value::Type::kArray:
    case Value::Type::kObject:
      return v->size() != 0;
  }
  return false;
}

Status template_error(size_t pos, std::string_view why, size_t* error_offset) {
  if (error_offset != nullptr) *error_offset = pos;
  return Status::invalid_argument("template error at byte " + std::to_string(pos) + ": " +
                                  std::string(why));
}

}  // namespace

struct Template::Impl {
  std::string source;
  std::vector<Instr> code;
  std::vector<std::string> state_refs;  // set once compiling is done
  size_t literal_bytes = 0;  // a reserve hint for render
  bool uses_store = false;
};

Template::Template() {
  // Every default-constructed Template shares one empty program.
  static const std::shared_ptr<const Impl> kEmpty = std::make_shared<const Impl>();
  impl_ = kEmpty;
}

Template::Template(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}

const std::string& Template::source() const { return impl_->source; }

const std::vector<std::string>& Template::state_references() const { return impl_->state_refs; }

bool Template::uses_store() const { return impl_->uses_store; }

Result<Template> Template::compile(std::string_view text, size_t* error_offset) {
  auto impl = std::make_shared<Impl>();
  impl->source = std::string(text);
  std::vector<Instr>& code = impl->code;

  // An `if` still waiting for its `endif`.
  struct OpenIf {
    size_t branch;           // its kBranch instruction
    size_t jump = kNoIndex;  // the kJump ending its then-branch, once `else` is seen
    size_t pos;              // byte offset of the tag, for errors
  };
  std::vector<OpenIf> open_ifs;
  std::string pending;  // literal text not yet emitted
  StateRefs refs;

  auto flush = [&] {
    if (pending.empty()) return;
    impl->literal_bytes += pending.size();
    Instr in;
    in.op = Op::kText;
    in.text = std::move(pending);
    code.push_back(std::move(in));
    pending.clear();
  };
  // Compiles an expression into an instruction of kind `op`.
  auto emit_expr = [&](Op op, std::string_view expr_text, size_t pos) -> Status {
    Instr in;
    in.op = op;
    Status st = compile_expr(expr_text, &in.expr);
    if (!st.ok()) return template_error(pos, st.message(), error_offset);
    if (in.expr.root == Root::kStore) impl->uses_store = true;
    refs.collect(expr_text);
    flush();
    code.push_back(std::move(in));
    return Status();
  };

  size_t pos = 0;
  while (pos < text.size()) {
    size_t open = find_open(text, pos);
    if (open == std::string_view::npos) {
      pending.append(text.substr(pos));
      break;
    }
    pending.append(text.substr(pos, open - pos));
    if (text[open + 1] == '{') {
      size_t close = text.find("}}", open + 2);
      if (close == std::string_view::npos) {
        // As NullBoiler: a {{ that is never closed leaves the rest literal
        // (a prompt may well explain the syntax). No expression can follow
        // it, but {% %} tags still can (NullBoiler reads them first).
        pending.append("{{");
        pos = open + 2;
        continue;
      }
      ORCH_RETURN_IF_ERROR(
          emit_expr(Op::kValue, trim(text.substr(open + 2, close - open - 2)), open));
      pos = close + 2;
      continue;
    }
    size_t close = text.find("%}", open + 2);
    if (close == std::string_view::npos) {
      return template_error(open, "unterminated {% (no closing %})", error_offset);
    }
    pos = close + 2;
    std::string_view condition;
    switch (classify_tag(trim(text.substr(open + 2, close - open - 2)), &condition)) {
      case TagKind::kIf:
        ORCH_RETURN_IF_ERROR(emit_expr(Op::kBranch, condition, open));
        open_ifs.push_back(OpenIf{code.size() - 1, kNoIndex, open});
        break;
      case TagKind::kBareIf:
        return template_error(open, "{% if %} without a condition", error_offset);
      case TagKind::kElse: {
        if (open_ifs.empty()) {
          return template_error(open, "{% else %} without {% if %}", error_offset);
        }
        OpenIf& top = open_ifs.back();
        if (top.jump != kNoIndex) {
          return template_error(open, "second {% else %} in one {% if %}", error_offset);
        }
        flush();
        Instr jump;
        jump.op = Op::kJump;
        code.push_back(std::move(jump));
        top.jump = code.size() - 1;
        code[top.branch].target = code.size();
        break;
      }
      case TagKind::kEndif: {
        if (open_ifs.empty()) {
          return template_error(open, "{% endif %} without {% if %}", error_offset);
        }
        flush();
        const OpenIf& top = open_ifs.back();
        code[top.jump != kNoIndex ? top.jump : top.branch].target = code.size();
        open_ifs.pop_back();
        break;
      }
      case TagKind::kOther:
        pending.append(text.substr(open, pos - open));
        break;
    }
  }
  if (!open_ifs.empty()) {
    return template_error(open_ifs.back().pos, "unterminated {% if %} (no {% endif %})",
                          error_offset);
  }
  flush();
  impl->state_refs = refs.take();
  return Template(std::move(impl));
}

Result<std::string> Template::render(const TemplateContext& context) const {
  const std::vector<Instr>& code = impl_->code;
  BoundedOutput out(context.max_output_bytes, impl_->literal_bytes);
  Value scratch;
  size_t pc = 0;
  while (pc < code.size()) {
    const Instr& in = code[pc];
    switch (in.op) {
      case Op::kText:
        ORCH_RETURN_IF_ERROR(out.append(in.text));
        ++pc;
        break;
      case Op::kValue: {
        const Value* v = nullptr;
        ORCH_RETURN_IF_ERROR(resolve(in.expr, context, &scratch, &v));
        ORCH_RETURN_IF_ERROR(out.append_value(v));
        ++pc;
        break;
      }
      case Op::kBranch: {
        const Value* v = nullptr;
        ORCH_RETURN_IF_ERROR(resolve(in.expr, context, &scratch, &v));
        pc = truthy(v) ? pc + 1 : in.target;
        break;
      }
      case Op::kJump:
        pc = in.target;
        break;
    }
  }
  return out.take();
}

std::vector<std::string> Template::list_state_references(std::string_view text) {
  StateRefs refs;
  size_t pos = 0;
  while (true) {
    size_t open = find_open(text, pos);
    if (open == std::string_view::npos) break;
    bool is_expr = text[open + 1] == '{';
    size_t close = text.find(is_expr ? "}}" : "%}", open + 2);
    if (close == std::string_view::npos) break;
    std::string_view inner = trim(text.substr(open + 2, close - open - 2));
    std::string_view condition;
    if (is_expr) {
      refs.collect(inner);
    } else if (classify_tag(inner, &condition) == TagKind::kIf) {
      refs.collect(condition);
    }
    pos = close + 2;
  }
  return refs.take();
}

Result<std::string> render_template(std::string_view text, const TemplateContext& context) {
  ORCH_ASSIGN_OR_RETURN(Template tpl, Template::compile(text));
  return tpl.render(context);
}

}  // namespace orch
