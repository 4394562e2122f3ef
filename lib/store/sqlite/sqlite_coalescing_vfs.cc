// SPDX-License-Identifier: MIT
// The WAL write-coalescing VFS (see sqlite_coalescing_vfs.h).
#include "store/sqlite/sqlite_coalescing_vfs.h"

#include <sqlite3.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <new>
#include <string>

namespace orch::sqlite {
namespace {

// A big transaction flushes as it goes rather than holding all of it.
constexpr size_t kMaxBuffered = 4 << 20;
// The unix VFS writes at most 128 KiB - 1 per call and reports a shorter
// write as a full disk.
constexpr size_t kMaxWrite = 64 << 10;
// A WAL frame header: page number, then the database size after the commit
// for the last frame of a transaction, 0 for the others.
constexpr int kFrameHeaderBytes = 24;

struct WalBuffer {
  std::string bytes;
  sqlite3_int64 offset = 0;  // of bytes[0] in the file
  // The last write was a commit frame's header: flush after its page.
  bool commit_page_next = false;
};

struct ShimFile {
  sqlite3_file base;  // first: SQLite sees a ShimFile as a sqlite3_file
  sqlite3_file* real;
  WalBuffer* buffer;  // a WAL file's; null for every other file
  ShimFile* wal;      // a main database's open WAL, whose buffer its shm calls flush
  ShimFile* db;       // a WAL's main database
};

sqlite3_vfs* real_vfs(sqlite3_vfs* vfs) { return static_cast<sqlite3_vfs*>(vfs->pAppData); }
ShimFile* shim(sqlite3_file* f) { return reinterpret_cast<ShimFile*>(f); }
const sqlite3_io_methods* real_methods(ShimFile* f) { return f->real->pMethods; }

int flush(ShimFile* f) {
  if (f == nullptr || f->buffer == nullptr || f->buffer->bytes.empty()) return SQLITE_OK;
  WalBuffer& b = *f->buffer;
  int rc = SQLITE_OK;
  for (size_t done = 0; done < b.bytes.size() && rc == SQLITE_OK; done += kMaxWrite) {
    const size_t amount = std::min(kMaxWrite, b.bytes.size() - done);
    rc = real_methods(f)->xWrite(f->real, b.bytes.data() + done, static_cast<int>(amount),
                                 b.offset + static_cast<sqlite3_int64>(done));
  }
  b.bytes.clear();
  b.commit_page_next = false;
  return rc;
}

// ---- io methods: WAL files buffer writes; everything else forwards -----------

int shim_close(sqlite3_file* file) {
  ShimFile* f = shim(file);
  int rc = flush(f);
  if (f->db != nullptr) f->db->wal = nullptr;
  if (f->wal != nullptr) f->wal->db = nullptr;
  int close_rc = real_methods(f)->xClose(f->real);
  delete f->buffer;
  f->buffer = nullptr;
  return rc != SQLITE_OK ? rc : close_rc;
}

int shim_read(sqlite3_file* file, void* out, int amount, sqlite3_int64 offset) {
  ShimFile* f = shim(file);
  if (int rc = flush(f); rc != SQLITE_OK) return rc;
  return real_methods(f)->xRead(f->real, out, amount, offset);
}

int shim_write(sqlite3_file* file, const void* data, int amount, sqlite3_int64 offset) {
  ShimFile* f = shim(file);
  if (f->buffer == nullptr) return real_methods(f)->xWrite(f->real, data, amount, offset);
  WalBuffer& b = *f->buffer;
  if (!b.bytes.empty() && offset != b.offset + static_cast<sqlite3_int64>(b.bytes.size())) {
    if (int rc = flush(f); rc != SQLITE_OK) return rc;
  }
  if (b.bytes.empty()) b.offset = offset;
  const bool commit_page = b.commit_page_next;
  b.bytes.append(static_cast<const char*>(data), static_cast<size_t>(amount));
  b.commit_page_next = false;
  if (amount == kFrameHeaderBytes) {
    const auto* header = static_cast<const unsigned char*>(data);
    b.commit_page_next = (header[4] | header[5] | header[6] | header[7]) != 0;
  }
  // A failed write must fail the commit before SQLite publishes it.
  if (commit_page || b.bytes.size() >= kMaxBuffered) return flush(f);
  return SQLITE_OK;
}

int shim_truncate(sqlite3_file* file, sqlite3_int64 size) {
  ShimFile* f = shim(file);
  if (int rc = flush(f); rc != SQLITE_OK) return rc;
  return real_methods(f)->xTruncate(f->real, size);
}

int shim_sync(sqlite3_file* file, int flags) {
  ShimFile* f = shim(file);
  if (int rc = flush(f); rc != SQLITE_OK) return rc;
  return real_methods(f)->xSync(f->real, flags);
}

int shim_file_size(sqlite3_file* file, sqlite3_int64* size) {
  ShimFile* f = shim(file);
  if (int rc = flush(f); rc != SQLITE_OK) return rc;
  return real_methods(f)->xFileSize(f->real, size);
}

int shim_lock(sqlite3_file* file, int level) { return real_methods(shim(file))->xLock(shim(file)->real, level); }
int shim_unlock(sqlite3_file* file, int level) {
  return real_methods(shim(file))->xUnlock(shim(file)->real, level);
}
int shim_check_reserved_lock(sqlite3_file* file, int* out) {
  return real_methods(shim(file))->xCheckReservedLock(shim(file)->real, out);
}

int shim_file_control(sqlite3_file* file, int op, void* arg) {
  ShimFile* f = shim(file);
  if (int rc = flush(f); rc != SQLITE_OK) return rc;
  return real_methods(f)->xFileControl(f->real, op, arg);
}

int shim_sector_size(sqlite3_file* file) { return real_methods(shim(file))->xSectorSize(shim(file)->real); }
int shim_device_characteristics(sqlite3_file* file) {
  return real_methods(shim(file))->xDeviceCharacteristics(shim(file)->real);
}

// The shared-memory calls are made on the main database file; before any of
// them (publishing a commit goes through them) its WAL's frames go out.
int shim_shm_map(sqlite3_file* file, int region, int size, int extend, void volatile** out) {
  ShimFile* f = shim(file);
  if (int rc = flush(f->wal); rc != SQLITE_OK) return rc;
  return real_methods(f)->xShmMap(f->real, region, size, extend, out);
}

int shim_shm_lock(sqlite3_file* file, int offset, int n, int flags) {
  ShimFile* f = shim(file);
  if (int rc = flush(f->wal); rc != SQLITE_OK) return rc;
  return real_methods(f)->xShmLock(f->real, offset, n, flags);
}

void shim_shm_barrier(sqlite3_file* file) {
  ShimFile* f = shim(file);
  (void)flush(f->wal);  // normally empty: a commit's frames went out with its last page
  real_methods(f)->xShmBarrier(f->real);
}

int shim_shm_unmap(sqlite3_file* file, int delete_flag) {
  ShimFile* f = shim(file);
  if (int rc = flush(f->wal); rc != SQLITE_OK) return rc;
  return real_methods(f)->xShmUnmap(f->real, delete_flag);
}

int shim_fetch(sqlite3_file* file, sqlite3_int64 offset, int amount, void** out) {
  ShimFile* f = shim(file);
  if (int rc = flush(f); rc != SQLITE_OK) return rc;
  return real_methods(f)->xFetch(f->real, offset, amount, out);
}

int shim_unfetch(sqlite3_file* file, sqlite3_int64 offset, void* page) {
  return real_methods(shim(file))->xUnfetch(shim(file)->real, offset, page);
}

// One method table per io-methods version, so a file never claims methods
// its real file lacks.
sqlite3_io_methods make_methods(int version) {
  sqlite3_io_methods m{};
  m.iVersion = version;
  m.xClose = shim_close;
  m.xRead = shim_read;
  m.xWrite = shim_write;
  m.xTruncate = shim_truncate;
  m.xSync = shim_sync;
  m.xFileSize = shim_file_size;
  m.xLock = shim_lock;
  m.xUnlock = shim_unlock;
  m.xCheckReservedLock = shim_check_reserved_lock;
  m.xFileControl = shim_file_control;
  m.xSectorSize = shim_sector_size;
  m.xDeviceCharacteristics = shim_device_characteristics;
  if (version >= 2) {
    m.xShmMap = shim_shm_map;
    m.xShmLock = shim_shm_lock;
    m.xShmBarrier = shim_shm_barrier;
    m.xShmUnmap = shim_shm_unmap;
  }
  if (version >= 3) {
    m.xFetch = shim_fetch;
    m.xUnfetch = shim_unfetch;
  }
  return m;
}

const sqlite3_io_methods kMethods[] = {make_methods(1), make_methods(2), make_methods(3)};

constexpr size_t kShimBytes = (sizeof(ShimFile) + 7) & ~size_t{7};

int shim_open(sqlite3_vfs* vfs, sqlite3_filename name, sqlite3_file* file, int flags, int* out_flags) {
  ShimFile* f = shim(file);
  f->real = reinterpret_cast<sqlite3_file*>(reinterpret_cast<char*>(file) + kShimBytes);
  f->buffer = nullptr;
  f->wal = nullptr;
  f->db = nullptr;
  f->base.pMethods = nullptr;
  int rc = real_vfs(vfs)->xOpen(real_vfs(vfs), name, f->real, flags, out_flags);
  const sqlite3_io_methods* methods = f->real->pMethods;
  if (methods == nullptr) return rc;  // nothing opened: SQLite will not call xClose
  const int version = methods->iVersion < 1 ? 1 : (methods->iVersion > 3 ? 3 : methods->iVersion);
  f->base.pMethods = &kMethods[version - 1];
  if (rc == SQLITE_OK && (flags & SQLITE_OPEN_WAL) != 0 && name != nullptr) {
    sqlite3_file* db = sqlite3_database_file_object(name);
    if (db != nullptr && db->pMethods >= &kMethods[0] && db->pMethods <= &kMethods[2]) {
      f->buffer = new (std::nothrow) WalBuffer();
      if (f->buffer != nullptr) {
        f->db = shim(db);
        f->db->wal = f;
      }
    }
  }
  return rc;
}

// ---- the VFS itself: forwards all but xOpen to the real one -----------------

int shim_delete(sqlite3_vfs* vfs, const char* name, int sync_dir) {
  return real_vfs(vfs)->xDelete(real_vfs(vfs), name, sync_dir);
}
int shim_access(sqlite3_vfs* vfs, const char* name, int flags, int* out) {
  return real_vfs(vfs)->xAccess(real_vfs(vfs), name, flags, out);
}
int shim_full_pathname(sqlite3_vfs* vfs, const char* name, int size, char* out) {
  return real_vfs(vfs)->xFullPathname(real_vfs(vfs), name, size, out);
}
void* shim_dl_open(sqlite3_vfs* vfs, const char* name) { return real_vfs(vfs)->xDlOpen(real_vfs(vfs), name); }
void shim_dl_error(sqlite3_vfs* vfs, int size, char* out) { real_vfs(vfs)->xDlError(real_vfs(vfs), size, out); }
void (*shim_dl_sym(sqlite3_vfs* vfs, void* handle, const char* symbol))(void) {
  return real_vfs(vfs)->xDlSym(real_vfs(vfs), handle, symbol);
}
void shim_dl_close(sqlite3_vfs* vfs, void* handle) { real_vfs(vfs)->xDlClose(real_vfs(vfs), handle); }
int shim_randomness(sqlite3_vfs* vfs, int size, char* out) {
  return real_vfs(vfs)->xRandomness(real_vfs(vfs), size, out);
}
int shim_sleep(sqlite3_vfs* vfs, int micros) { return real_vfs(vfs)->xSleep(real_vfs(vfs), micros); }
int shim_current_time(sqlite3_vfs* vfs, double* out) { return real_vfs(vfs)->xCurrentTime(real_vfs(vfs), out); }
int shim_get_last_error(sqlite3_vfs* vfs, int size, char* out) {
  return real_vfs(vfs)->xGetLastError(real_vfs(vfs), size, out);
}
int shim_current_time_int64(sqlite3_vfs* vfs, sqlite3_int64* out) {
  return real_vfs(vfs)->xCurrentTimeInt64(real_vfs(vfs), out);
}

constexpr const char* kName = "orch-coalescing";

}  // namespace

const char* coalescing_vfs_name() {
  static std::once_flag once;
  static sqlite3_vfs vfs{};
  std::call_once(once, [] {
    sqlite3_vfs* real = sqlite3_vfs_find(nullptr);
    if (real == nullptr) return;
    vfs.iVersion = real->iVersion < 2 ? real->iVersion : 2;
    vfs.szOsFile = static_cast<int>(kShimBytes) + real->szOsFile;
    vfs.mxPathname = real->mxPathname;
    vfs.zName = kName;
    vfs.pAppData = real;
    vfs.xOpen = shim_open;
    vfs.xDelete = shim_delete;
    vfs.xAccess = shim_access;
    vfs.xFullPathname = shim_full_pathname;
    vfs.xDlOpen = shim_dl_open;
    vfs.xDlError = shim_dl_error;
    vfs.xDlSym = shim_dl_sym;
    vfs.xDlClose = shim_dl_close;
    vfs.xRandomness = shim_randomness;
    vfs.xSleep = shim_sleep;
    vfs.xCurrentTime = shim_current_time;
    vfs.xGetLastError = shim_get_last_error;
    if (vfs.iVersion >= 2) vfs.xCurrentTimeInt64 = shim_current_time_int64;
    sqlite3_vfs_register(&vfs, 0);
  });
  return vfs.xOpen != nullptr ? kName : nullptr;
}

}  // namespace orch::sqlite
