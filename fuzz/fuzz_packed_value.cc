// SPDX-License-Identifier: MIT
// Fuzzes the SQLite store's packed-value decoder (unpack_value, the bytes of
// event data, checkpoint bodies and steps read from a database file): any
// input is a value or an error, never a crash; a value packs again to bytes
// that read back as the same value. The same bytes read as a sequence of
// values (ValueUnpacker, as an event batch row does) must not crash either.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "store/sqlite/sqlite_packed_value.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  orch::Result<orch::Value> value = orch::sqlite::unpack_value(bytes);
  if (value.ok()) {
    const std::string packed = orch::sqlite::pack_value(*value);
    if (packed.empty()) std::abort();  // it nests no deeper than the decoder reads
    orch::Result<orch::Value> again = orch::sqlite::unpack_value(packed);
    if (!again.ok() || again->to_json() != value->to_json()) std::abort();
  }
  orch::sqlite::ValueUnpacker reader(bytes);
  for (int i = 0; i < 64 && !reader.at_end(); ++i) {
    orch::Value v;
    if (!reader.unpack(&v).ok()) break;
  }
  return 0;
}
