// SPDX-License-Identifier: MIT
// Incremental checkpoint rows (format in checkpoint_codec.h).
#include "store/checkpoint_codec.h"

#include <algorithm>
#include <utility>

#include "core/value_delta.h"

namespace orch::checkpoint_codec {

Value checkpoint_document(const Checkpoint& checkpoint) {
  Array nodes;
  nodes.reserve(checkpoint.completed_nodes.size());
  for (const std::string& name : checkpoint.completed_nodes) nodes.emplace_back(name);
  return Value::object({{"state", checkpoint.state},
                        {"metadata", checkpoint.metadata},
                        {"completed_nodes", Value(std::move(nodes))}});
}

Status unpack_document(const Value& document, Checkpoint* checkpoint) {
  const Value* state = document.find("state");
  const Value* metadata = document.find("metadata");
  const Value* nodes = document.find("completed_nodes");
  if (state == nullptr || metadata == nullptr || nodes == nullptr || !nodes->is_array()) {
    return Status::internal("checkpoint " + checkpoint->id +
                            ": stored document lacks state/metadata/completed_nodes");
  }
  checkpoint->state = *state;
  checkpoint->metadata = *metadata;
  checkpoint->completed_nodes.clear();
  checkpoint->completed_nodes.reserve(nodes->size());
  for (const Value& name : nodes->as_array()) {
    if (!name.is_string())
      return Status::internal("checkpoint " + checkpoint->id + ": completed node is not a string");
    checkpoint->completed_nodes.push_back(name.as_string());
  }
  return Status();
}

EncodedCheckpoint encode_checkpoint(const std::string& id, const Value& document,
                                    const ChainLink* previous, const Value* previous_document,
                                    int max_delta_chain, int64_t min_chain_bytes) {
  EncodedCheckpoint out;
  out.link.id = id;
  out.link.seq = previous != nullptr ? previous->seq + 1 : 0;
  if (previous != nullptr && previous_document != nullptr) {
    const int64_t chain_length = out.link.seq - previous->base_seq;
    if (chain_length <= max_delta_chain) {
      Value delta_value = make_value_delta(*previous_document, document);
      std::string delta = delta_value.to_json();
      const int64_t chain_bytes = previous->chain_bytes + static_cast<int64_t>(delta.size());
      if (chain_bytes <= std::max(previous->base_bytes, min_chain_bytes)) {
        out.snapshot = false;
        out.body = std::move(delta);
        out.body_value = std::move(delta_value);
        out.link.base_seq = previous->base_seq;
        out.link.chain_bytes = chain_bytes;
        out.link.base_bytes = previous->base_bytes;
        return out;
      }
    }
  }
  out.snapshot = true;
  out.body = document.to_json();
  out.body_value = document;
  out.link.base_seq = out.link.seq;
  out.link.chain_bytes = 0;
  out.link.base_bytes = static_cast<int64_t>(out.body.size());
  return out;
}

Status DocumentBuilder::corrupt(int64_t seq, const std::string& why) const {
  return Status::internal("checkpoint data of run " + run_id_ + " is corrupt at seq " +
                          std::to_string(seq) + ": " + why);
}

Status DocumentBuilder::add(int64_t seq, std::string_view kind, std::string_view body) {
  const bool snapshot = kind == kSnapshotKind;
  if (!snapshot && kind != kDeltaKind)
    return corrupt(seq, "unknown kind '" + std::string(kind) + "'");
  if (!snapshot && (!started_ || seq != last_seq_ + 1))
    return corrupt(seq, "delta without the row before it");
  Result<Value> parsed = parse_json(body);
  if (!parsed.ok()) return corrupt(seq, parsed.status().message());
  return add_value(seq, kind, std::move(parsed).value());
}

Status DocumentBuilder::add_value(int64_t seq, std::string_view kind, Value body) {
  const bool snapshot = kind == kSnapshotKind;
  if (!snapshot && kind != kDeltaKind)
    return corrupt(seq, "unknown kind '" + std::string(kind) + "'");
  if (!snapshot && (!started_ || seq != last_seq_ + 1))
    return corrupt(seq, "delta without the row before it");
  if (snapshot) {
    if (!body.is_object()) return corrupt(seq, "snapshot is not an object");
    document_ = std::move(body);
  } else {
    Status applied = apply_value_delta(body, &document_);
    if (!applied.ok()) {
      // The document may be half-updated: nothing may follow from it.
      started_ = false;
      return corrupt(seq, applied.message());
    }
  }
  started_ = true;
  last_seq_ = seq;
  return Status();
}

}  // namespace orch::checkpoint_codec
