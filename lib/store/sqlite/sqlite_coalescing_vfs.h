// SPDX-License-Identifier: MIT
//
// A SQLite VFS over the default one that gathers a transaction's writes to the
// write-ahead log into one pwrite. SQLite writes each WAL frame as two calls
// (a 24-byte header, then the page), so a superstep's commit of ~12 pages
// cost ~24 system calls, a third of the engine's time on SQLite.
//
// Buffered frames reach the file before anything could need them: before the
// commit becomes visible to other connections (SQLite publishes a commit in
// the shared WAL index, and every such update goes through xShmBarrier or
// xShmLock, which flush the calling thread's buffer first), before this file
// is read, synced, truncated, sized or closed, and when a write is not
// contiguous with the buffer. A crash can lose only frames of a transaction
// that was not yet committed, as without the buffer. Every other file is
// passed through untouched.
//
// Thread-safety: a SQLite connection is used by one thread at a time, and a
// buffer belongs to the connection's WAL file; the pending-buffer pointer is
// per thread.
#pragma once

namespace orch::sqlite {

// Registers the VFS (once, not as the default) and returns its name for
// sqlite3_open_v2.
const char* coalescing_vfs_name();

}  // namespace orch::sqlite
