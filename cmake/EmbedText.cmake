# Writes a C++ source defining `std::string_view <SYMBOL>()` that returns the
# bytes of INPUT, so a file (docs/openapi.json) is part of the binary that
# serves it. Bytes, not a raw string literal: no delimiter can clash with the
# text.
#   cmake -DINPUT=f -DOUTPUT=f.cc -DNAMESPACE=ns -DSYMBOL=name -P EmbedText.cmake
file(READ "${INPUT}" hex HEX)
string(LENGTH "${hex}" hex_length)
math(EXPR size "${hex_length} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "'\\\\x\\1'," bytes "${hex}")
# 16 bytes a line keeps the generated file readable in a diff tool.
string(REGEX REPLACE "(('[^']+',){16})" "\\1\n    " bytes "${bytes}")
file(WRITE "${OUTPUT}.tmp"
"// Generated from ${INPUT} by cmake/EmbedText.cmake. Do not edit.
#include <string_view>

namespace ${NAMESPACE} {
namespace {
const char kBytes[${size} + 1] = {
    ${bytes}'\\0'};
}  // namespace

std::string_view ${SYMBOL}() { return std::string_view(kBytes, ${size}); }

}  // namespace ${NAMESPACE}
")
# Only a changed file is rewritten, so nothing that depends on it rebuilds for nothing.
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUTPUT}.tmp")
