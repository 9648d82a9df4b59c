// Google Benchmark cases for the hot kernels: hashing (SHA-256, MD5, XXH3), prefix replacement
// (text, binary), zstd decoding, bzip2 decoding (libbz2 serial, block-parallel), extraction of
// .conda / .tar.bz2 packages (a big .conda also as the streaming thread reads it) and of a big
// wheel (one reader vs split) into a cache tree, the zip layout check those extractions start
// with, and linking a package tree into a prefix.
//
//   ./build/release/bench/mat_bench --benchmark_min_time=0.2
#include <archive.h>
#include <archive_entry.h>
#include <benchmark/benchmark.h>
#include <bzlib.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <tbb/task_arena.h>
#include <unistd.h>
#include <zstd.h>

#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "cache/bz2_parallel.h"
#include "cache/growing_file.h"
#include "cache/store.h"
#include "cache/wheel_record.h"
#include "cache/zip_layout.h"
#include "materializer/base/fs.h"
#include "materializer/base/hash.h"
#include "materializer/link.h"

namespace {

// Bytes that compress roughly like binaries (~3:1): runs of random tokens from a small alphabet.
std::string binary_like(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string out;
  out.reserve(n);
  while (out.size() < n) {
    uint32_t r = rng();
    if (r % 4 == 0) {
      out.append(static_cast<size_t>(r % 24 + 1), static_cast<char>(r >> 8));
    } else {
      out.push_back(static_cast<char>(r >> 16) & 0x3f);
    }
  }
  out.resize(n);
  return out;
}

std::string temp_dir(const char* tag) {
  std::string t = std::string("/tmp/mat-bench-") + tag + "-XXXXXX";
  return ::mkdtemp(t.data());
}

void BM_Sha256(benchmark::State& state) {
  std::string data = binary_like(1 << 20, 1);
  for (auto _ : state) {
    mat::Hasher h(mat::HashKind::kSha256);
    h.update(data);
    benchmark::DoNotOptimize(h.hex());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * (1 << 20));
}
BENCHMARK(BM_Sha256);

void BM_Md5(benchmark::State& state) {
  std::string data = binary_like(1 << 20, 2);
  for (auto _ : state) benchmark::DoNotOptimize(mat::md5_hex(data));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * (1 << 20));
}
BENCHMARK(BM_Md5);

void BM_Xxh3(benchmark::State& state) {
  std::string data = binary_like(1 << 20, 3);
  for (auto _ : state) benchmark::DoNotOptimize(mat::xxh3_hex(data));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * (1 << 20));
}
BENCHMARK(BM_Xxh3);

const std::string kPlaceholder =
    "/opt/conda-bld/placehold_placehold_placehold_placehold_placehold_placehold_placehold";

void BM_ReplacePrefixText(benchmark::State& state) {
  std::string data;
  while (data.size() < (1 << 20)) data += "prefix=" + kPlaceholder + "\nlibdir=${prefix}/lib\n";
  for (auto _ : state) {
    benchmark::DoNotOptimize(mat::replace_prefix_text(data, kPlaceholder, "/opt/env"));
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * data.size());
}
BENCHMARK(BM_ReplacePrefixText);

void BM_ReplacePrefixBinary(benchmark::State& state) {
  std::string data = binary_like(1 << 20, 4);
  for (size_t off = 4096; off + 512 < data.size(); off += 64 * 1024) {
    std::string s = kPlaceholder + "/lib";
    s.push_back('\0');
    data.replace(off, s.size(), s);
  }
  for (auto _ : state) {
    auto r = mat::replace_prefix_binary(data, kPlaceholder, "/opt/env");
    benchmark::DoNotOptimize(r.ok());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * data.size());
}
BENCHMARK(BM_ReplacePrefixBinary);

void BM_ZstdDecode(benchmark::State& state) {
  std::string data = binary_like(8 << 20, 5);
  std::string comp(ZSTD_compressBound(data.size()), '\0');
  comp.resize(ZSTD_compress(comp.data(), comp.size(), data.data(), data.size(), 19));
  std::string out(data.size(), '\0');
  ZSTD_DCtx* dctx = ZSTD_createDCtx();
  for (auto _ : state) {
    size_t n = ZSTD_decompressDCtx(dctx, out.data(), out.size(), comp.data(), comp.size());
    benchmark::DoNotOptimize(n);
  }
  ZSTD_freeDCtx(dctx);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * data.size());
  state.counters["ratio"] = static_cast<double>(data.size()) / static_cast<double>(comp.size());
}
BENCHMARK(BM_ZstdDecode);

// ~20 MB shaped like a package's payload: 256 kB pieces of binary-like bytes (~3:1), text
// (~5:1) and incompressible data (compressed wheels, images) in 6:3:1 proportion, bzip2'd at
// level 9 as conda-build does. Made once; compressing takes ~2 s.
const std::string& bz2_payload(std::string* plain_out = nullptr) {
  static std::string plain, comp;
  if (comp.empty()) {
    std::mt19937 rng(20);
    const std::string words = "lib include share python site-packages numpy __init__ def return ";
    for (uint32_t i = 0; plain.size() < (20 << 20); ++i) {
      switch (i % 10) {
        case 0: {
          for (int k = 0; k < (256 << 10); ++k) plain.push_back(static_cast<char>(rng()));
          break;
        }
        case 1:
        case 4:
        case 7: {
          std::string t;
          while (t.size() < (256 << 10)) t += words.substr(rng() % 40, 8 + rng() % 16) + "\n";
          plain += t.substr(0, 256 << 10);
          break;
        }
        default:
          plain += binary_like(256 << 10, i);
      }
    }
    comp.resize(plain.size() + plain.size() / 50 + 1024);
    auto n = static_cast<unsigned>(comp.size());
    BZ2_bzBuffToBuffCompress(comp.data(), &n, plain.data(), static_cast<unsigned>(plain.size()), 9,
                             0, 0);
    comp.resize(n);
  }
  if (plain_out) *plain_out = plain;
  return comp;
}

// libbz2 streaming into 64 kB, as libarchive's bzip2 filter does.
void BM_Bz2DecodeSerial(benchmark::State& state) {
  std::string plain;
  const std::string& comp = bz2_payload(&plain);
  std::vector<char> out(64 << 10);
  for (auto _ : state) {
    bz_stream s{};
    BZ2_bzDecompressInit(&s, 0, 0);
    s.next_in = const_cast<char*>(comp.data());
    s.avail_in = static_cast<unsigned>(comp.size());
    int64_t total = 0;
    int rc = BZ_OK;
    while (rc == BZ_OK) {
      s.next_out = out.data();
      s.avail_out = static_cast<unsigned>(out.size());
      rc = BZ2_bzDecompress(&s);
      total += static_cast<int64_t>(out.size() - s.avail_out);
    }
    BZ2_bzDecompressEnd(&s);
    if (rc != BZ_STREAM_END || total != static_cast<int64_t>(plain.size())) {
      state.SkipWithError("libbz2 decode failed");
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * plain.size());
  state.counters["ratio"] = static_cast<double>(plain.size()) / static_cast<double>(comp.size());
}
BENCHMARK(BM_Bz2DecodeSerial)->Unit(benchmark::kMillisecond)->UseRealTime();

// The same input through Bz2ParallelReader in an arena of state.range(0) threads.
void BM_Bz2DecodeParallel(benchmark::State& state) {
  std::string plain;
  const std::string& comp = bz2_payload(&plain);
  tbb::task_arena arena(static_cast<int>(state.range(0)));
  std::span<const unsigned char> in(reinterpret_cast<const unsigned char*>(comp.data()),
                                    comp.size());
  for (auto _ : state) {
    int64_t total = 0;
    bool ok = true;
    arena.execute([&] {
      mat::cache::Bz2ParallelReader r(in, "bench.tar.bz2");
      for (;;) {
        auto chunk = r.next();
        if (!chunk.ok() || chunk->empty()) {
          ok = chunk.ok();
          break;
        }
        total += static_cast<int64_t>(chunk->size());
      }
    });
    if (!ok || total != static_cast<int64_t>(plain.size())) {
      state.SkipWithError("parallel decode failed");
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * plain.size());
}
BENCHMARK(BM_Bz2DecodeParallel)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();

// Finding the block magics at every bit offset; bytes are compressed bytes.
void BM_Bz2ScanMagics(benchmark::State& state) {
  const std::string& comp = bz2_payload();
  std::span<const unsigned char> in(reinterpret_cast<const unsigned char*>(comp.data()),
                                    comp.size());
  for (auto _ : state) benchmark::DoNotOptimize(mat::cache::internal::scan_bz2_magics(in));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * comp.size());
}
BENCHMARK(BM_Bz2ScanMagics);

// Appends one regular file (0644) to an archive being written.
void write_member(archive* a, const std::string& name, const std::string& body) {
  archive_entry* e = archive_entry_new();
  archive_entry_set_pathname(e, name.c_str());
  archive_entry_set_filetype(e, AE_IFREG);
  archive_entry_set_perm(e, 0644);
  archive_entry_set_size(e, static_cast<la_int64_t>(body.size()));
  archive_write_header(a, e);
  archive_write_data(a, body.data(), body.size());
  archive_entry_free(e);
}

// Writes a tar (compressed with `filter`) of `files` files of ~`size` bytes into `out`.
std::string make_tar(int filter, int files, size_t size, uint32_t seed) {
  archive* a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  if (filter == ARCHIVE_FILTER_ZSTD) archive_write_add_filter_zstd(a);
  if (filter == ARCHIVE_FILTER_BZIP2) archive_write_add_filter_bzip2(a);
  std::string out(64 << 20, '\0');
  size_t used = 0;
  archive_write_open_memory(a, out.data(), out.size(), &used);
  for (int i = 0; i < files; ++i) {
    write_member(a, "lib/file" + std::to_string(i) + ".so",
                 binary_like(size, seed + static_cast<uint32_t>(i)));
  }
  archive_write_close(a);
  archive_write_free(a);
  out.resize(used);
  return out;
}

// Extracts the archive at `path` into a fresh cache entry per iteration. `streamed`: as the
// streaming thread does (Store::extract_streamed through a GrowingFileReader), from a download
// that is already complete, so what is measured is the in-order reading, not the network.
void run_extract(benchmark::State& state, const std::string& dir, const std::string& path,
                 mat::cache::ArchiveFormat format, int64_t bytes_per_iteration,
                 bool streamed = false) {
  auto store = mat::cache::Store::open(dir + "/cache");
  auto complete = std::make_shared<mat::cache::GrowingFile>();
  struct stat st {};
  ::stat(path.c_str(), &st);
  complete->grew(st.st_size);
  complete->complete();
  int n = 0;
  for (auto _ : state) {
    mat::cache::Key key{mat::HashKind::kSha256, mat::sha256_hex(std::to_string(n++))};
    mat::Status r;
    if (streamed) {
      auto reader = mat::cache::GrowingFileReader::open(path, complete);
      auto tree =
          (*store)->extract_streamed(key, path, format, [&reader] { return (*reader)->next(); });
      r = tree.ok() ? (*tree)->commit().status() : tree.status();
    } else {
      mat::cache::ExtractStats stats;
      r = (*store)->extract(key, path, format, &stats).status();
    }
    if (!r.ok()) state.SkipWithError(r.to_string().c_str());
    state.PauseTiming();
    (void)(*store)->remove_entry(key);
    state.ResumeTiming();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * bytes_per_iteration);
  (void)mat::remove_all(dir);
}

void BM_ExtractTarBz2(benchmark::State& state) {
  std::string dir = temp_dir("bz2");
  std::string path = dir + "/pkg-1-0.tar.bz2";
  (void)mat::write_file_atomic(path, make_tar(ARCHIVE_FILTER_BZIP2, 64, 64 << 10, 6));
  run_extract(state, dir, path, mat::cache::ArchiveFormat::kTarBz2, 64 * (64 << 10));
}
BENCHMARK(BM_ExtractTarBz2)->Unit(benchmark::kMillisecond);

// info/paths.json for make_tar(_, files, size, seed)'s members, as conda-build writes it (so the
// extraction's check against it is part of what is measured).
std::string paths_json_of(int files, size_t size, uint32_t seed) {
  std::string out = R"({"paths_version": 1, "paths": [)";
  for (int i = 0; i < files; ++i) {
    std::string body = binary_like(size, seed + static_cast<uint32_t>(i));
    out += std::string(i ? ", " : "") + R"({"_path": "lib/file)" + std::to_string(i) +
           R"(.so", "path_type": "hardlink", "sha256": ")" + mat::sha256_hex(body) +
           R"(", "size_in_bytes": )" + std::to_string(body.size()) + "}";
  }
  return out + "]}";
}

// A tar (zstd) of info/index.json and info/paths.json for `files` members of `size` bytes.
std::string make_info_tar(int files, size_t size, uint32_t seed) {
  archive* a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  archive_write_add_filter_zstd(a);
  std::string out(16 << 20, '\0');
  size_t used = 0;
  archive_write_open_memory(a, out.data(), out.size(), &used);
  write_member(a, "info/index.json", R"({"name": "pkg", "version": "1", "build": "0"})");
  write_member(a, "info/paths.json", paths_json_of(files, size, seed));
  archive_write_close(a);
  archive_write_free(a);
  out.resize(used);
  return out;
}

// A .conda: a stored zip holding metadata.json, info-*.tar.zst and pkg-*.tar.zst.
std::string make_conda(int files, size_t size) {
  std::string pkg = make_tar(ARCHIVE_FILTER_ZSTD, files, size, 7);
  std::string info = make_info_tar(files, size, 7);
  archive* a = archive_write_new();
  archive_write_set_format_zip(a);
  archive_write_zip_set_compression_store(a);
  std::string out(64 << 20, '\0');
  size_t used = 0;
  archive_write_open_memory(a, out.data(), out.size(), &used);
  write_member(a, "metadata.json", "{\"conda_pkg_format_version\": 2}");
  write_member(a, "info-pkg-1-0.tar.zst", info);
  write_member(a, "pkg-pkg-1-0.tar.zst", pkg);
  archive_write_close(a);
  archive_write_free(a);
  out.resize(used);
  return out;
}

void BM_ExtractConda(benchmark::State& state) {
  std::string dir = temp_dir("conda");
  std::string path = dir + "/pkg-1-0.conda";
  (void)mat::write_file_atomic(path, make_conda(64, 64 << 10));
  run_extract(state, dir, path, mat::cache::ArchiveFormat::kConda, 64 * (64 << 10));
}
BENCHMARK(BM_ExtractConda)->Unit(benchmark::kMillisecond);

// Many small files (5000 of 1 kB): the per-file costs (create, digest, manifest entry, the
// check against paths.json) rather than bytes.
void BM_ExtractManyFilesConda(benchmark::State& state) {
  std::string dir = temp_dir("manyconda");
  std::string path = dir + "/many-1-0.conda";
  (void)mat::write_file_atomic(path, make_conda(5000, 1024));
  run_extract(state, dir, path, mat::cache::ArchiveFormat::kConda, 5000 * 1024);
}
BENCHMARK(BM_ExtractManyFilesConda)->Unit(benchmark::kMillisecond);

// A 64 MB .conda (256 files of 256 kB) in an arena of state.range(0) threads: with 2, the
// pkg tar.zst is decoded ahead on the second thread while the first writes the files.
void BM_ExtractBigConda(benchmark::State& state) {
  std::string dir = temp_dir("bigconda");
  std::string path = dir + "/big-1-0.conda";
  (void)mat::write_file_atomic(path, make_conda(256, 256 << 10));
  tbb::task_arena arena(static_cast<int>(state.range(0)));
  arena.execute(
      [&] { run_extract(state, dir, path, mat::cache::ArchiveFormat::kConda, 256 * (256 << 10)); });
}
BENCHMARK(BM_ExtractBigConda)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();

// The same .conda extracted as the streaming thread does (its own arena of one slot): the outer
// zip read in order by ZipStreamReader, then checked against the file's layout. Compare with
// BM_ExtractBigConda/1.
void BM_ExtractBigCondaStreamed(benchmark::State& state) {
  std::string dir = temp_dir("bigconda-streamed");
  std::string path = dir + "/big-1-0.conda";
  (void)mat::write_file_atomic(path, make_conda(256, 256 << 10));
  tbb::task_arena arena(1, 1);
  arena.execute([&] {
    run_extract(state, dir, path, mat::cache::ArchiveFormat::kConda, 256 * (256 << 10),
                /*streamed=*/true);
  });
}
BENCHMARK(BM_ExtractBigCondaStreamed)->Unit(benchmark::kMillisecond)->UseRealTime();

// A ~24 MB wheel (48 deflated members of 512 kB, in 6 directories, plus RECORD) extracted in an
// arena of state.range(0) threads: 1 is the serial path (one reader), 2 splits the members
// across two readers (extract.cc, "Big wheels").
std::string make_wheel_bytes() {
  archive* a = archive_write_new();
  archive_write_set_format_zip(a);
  archive_write_zip_set_compression_deflate(a);
  std::string out(64 << 20, '\0');
  size_t used = 0;
  archive_write_open_memory(a, out.data(), out.size(), &used);
  std::vector<mat::cache::RecordRow> rows;
  auto add = [&](const std::string& name, const std::string& body) {
    write_member(a, name, body);
    rows.push_back({name, mat::cache::record_hash_of(body), std::to_string(body.size())});
  };
  for (int i = 0; i < 48; ++i) {
    add("big/sub" + std::to_string(i % 6) + "/m" + std::to_string(i) + ".so",
        binary_like(512 << 10, static_cast<uint32_t>(100 + i)));
  }
  rows.push_back({"big-1.0.dist-info/RECORD", "", ""});
  write_member(a, "big-1.0.dist-info/RECORD", mat::cache::format_record(rows));
  archive_write_close(a);
  archive_write_free(a);
  out.resize(used);
  return out;
}

void BM_ExtractWheel(benchmark::State& state) {
  std::string dir = temp_dir("wheel");
  std::string path = dir + "/big-1.0-py3-none-any.whl";
  (void)mat::write_file_atomic(path, make_wheel_bytes());
  tbb::task_arena arena(static_cast<int>(state.range(0)));
  arena.execute(
      [&] { run_extract(state, dir, path, mat::cache::ArchiveFormat::kWheel, 48 * (512 << 10)); });
}
BENCHMARK(BM_ExtractWheel)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();

// The warm path's cache lookup of one published tree (find_tree: the permission model's
// per-entry check, cache/trust.h): two lstat and one read of the manifest's head, against
// BM_LinkPackage's ~2000 linkat per package.
void BM_FindTree(benchmark::State& state) {
  std::string dir = temp_dir("findtree");
  std::string path = dir + "/pkg-1-0.conda";
  (void)mat::write_file_atomic(path, make_conda(64, 1 << 10));
  auto store = mat::cache::Store::open(dir + "/cache");
  mat::cache::Key key{mat::HashKind::kSha256, mat::sha256_hex("findtree")};
  if (!store.ok() ||
      !(*store)->extract(key, path, mat::cache::ArchiveFormat::kConda, nullptr).ok()) {
    state.SkipWithError("setup failed");
  }
  for (auto _ : state) {
    auto pkg = (*store)->find_tree(key);
    if (!pkg) state.SkipWithError("tree not found");
    benchmark::DoNotOptimize(pkg);
  }
  (void)mat::remove_all(dir);
}
BENCHMARK(BM_FindTree);

// Store::open of an existing cache: resolving the root and checking every directory from "/"
// down to v1/'s subdirectories, once per run.
void BM_OpenStore(benchmark::State& state) {
  std::string dir = temp_dir("openstore");
  (void)mat::cache::Store::open(dir + "/cache");
  for (auto _ : state) {
    auto store = mat::cache::Store::open(dir + "/cache");
    if (!store.ok()) state.SkipWithError(store.status().to_string().c_str());
    benchmark::DoNotOptimize(store);
  }
  (void)mat::remove_all(dir);
}
BENCHMARK(BM_OpenStore);

// A wheel of many small files, as real wheels are (2000 deflated modules of ~2 kB in 20
// directories, plus RECORD), extracted by one reader: the per-member costs (layout check,
// listing, file creation, RECORD) rather than inflating.
void BM_ExtractManyFilesWheel(benchmark::State& state) {
  std::string dir = temp_dir("manywheel");
  std::string path = dir + "/many-1.0-py3-none-any.whl";
  archive* a = archive_write_new();
  archive_write_set_format_zip(a);
  archive_write_zip_set_compression_deflate(a);
  std::string out(64 << 20, '\0');
  size_t used = 0;
  archive_write_open_memory(a, out.data(), out.size(), &used);
  std::vector<mat::cache::RecordRow> rows;
  for (int i = 0; i < 2000; ++i) {
    std::string name = "many/sub" + std::to_string(i % 20) + "/module_" + std::to_string(i) + ".py";
    std::string body = binary_like(2048, static_cast<uint32_t>(i));
    write_member(a, name, body);
    rows.push_back({name, mat::cache::record_hash_of(body), std::to_string(body.size())});
  }
  rows.push_back({"many-1.0.dist-info/RECORD", "", ""});
  write_member(a, "many-1.0.dist-info/RECORD", mat::cache::format_record(rows));
  archive_write_close(a);
  archive_write_free(a);
  out.resize(used);
  (void)mat::write_file_atomic(path, out);
  tbb::task_arena arena(1);
  arena.execute(
      [&] { run_extract(state, dir, path, mat::cache::ArchiveFormat::kWheel, 2000 * 2048); });
}
BENCHMARK(BM_ExtractManyFilesWheel)->Unit(benchmark::kMillisecond)->UseRealTime();

// The structural check every zip gets before extraction (cache/zip_layout.h), alone, on a zip of
// state.range(0) deflated members of ~2 kB (a typical wheel's; each with a data descriptor, as
// libarchive writes them), in the page cache. Per member: one central directory entry parsed,
// one local header and one descriptor compared.
void BM_ZipLayoutCheck(benchmark::State& state) {
  const int members = static_cast<int>(state.range(0));
  std::string dir = temp_dir("ziplayout");
  std::string path = dir + "/many-1.0-py3-none-any.whl";
  archive* a = archive_write_new();
  archive_write_set_format_zip(a);
  archive_write_zip_set_compression_deflate(a);
  std::string out(64 << 20, '\0');
  size_t used = 0;
  archive_write_open_memory(a, out.data(), out.size(), &used);
  for (int i = 0; i < members; ++i) {
    write_member(a, "pkg/sub" + std::to_string(i % 20) + "/module_" + std::to_string(i) + ".py",
                 binary_like(2048, static_cast<uint32_t>(i)));
  }
  archive_write_close(a);
  archive_write_free(a);
  out.resize(used);
  (void)mat::write_file_atomic(path, out);
  mat::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  for (auto _ : state) {
    auto layout = mat::cache::check_zip_layout(fd.get(), static_cast<int64_t>(out.size()), "w");
    if (!layout.ok()) state.SkipWithError(layout.status().to_string().c_str());
    benchmark::DoNotOptimize(layout);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * members);
  (void)mat::remove_all(dir);
}
BENCHMARK(BM_ZipLayoutCheck)->Arg(48)->Arg(2000)->Unit(benchmark::kMicrosecond);

// Links one extracted package of state.range(0) small files into a fresh prefix.
void BM_LinkPackage(benchmark::State& state) {
  const int files = static_cast<int>(state.range(0));
  const bool copy = state.range(1) != 0;
  std::string dir = temp_dir("link");
  std::string tree = dir + "/tree";
  (void)mat::make_dirs(tree + "/info");
  std::string paths = "{\"paths_version\": 1, \"paths\": [";
  for (int i = 0; i < files; ++i) {
    std::string rel = "lib/d" + std::to_string(i % 16) + "/f" + std::to_string(i) + ".py";
    std::string body = binary_like(2048, static_cast<uint32_t>(i));
    (void)mat::make_dirs(mat::dir_name(tree + "/" + rel));
    (void)mat::write_file_atomic(tree + "/" + rel, body);
    paths += std::string(i ? "," : "") + "{\"_path\": \"" + rel +
             "\", \"path_type\": \"hardlink\", \"sha256\": \"" + mat::sha256_hex(body) +
             "\", \"size_in_bytes\": 2048}";
  }
  paths += "]}";
  (void)mat::write_file_atomic(tree + "/info/paths.json", paths);
  (void)mat::write_file_atomic(tree + "/info/index.json",
                               "{\"name\": \"pkg\", \"version\": \"1\", \"build\": \"0\", "
                               "\"build_number\": 0, \"subdir\": \"linux-64\"}");
  mat::PackageRef ref;
  ref.name = "pkg";
  ref.version = "1";
  ref.build = "0";
  ref.subdir = "linux-64";
  ref.sha256 = mat::sha256_hex("x");
  ref.md5 = mat::md5_hex("x");
  std::vector<mat::LinkInput> inputs(1);
  inputs[0].ref = &ref;
  inputs[0].tree = tree;
  int n = 0;
  for (auto _ : state) {
    mat::LinkOptions opts;
    opts.prefix = dir + "/prefix" + std::to_string(n++);
    opts.cache_root = dir + "/cache";
    opts.mode = copy ? mat::LinkMode::kCopy : mat::LinkMode::kHardlink;
    auto r = mat::link_packages(inputs, opts);
    if (!r.ok() || !r->complete) state.SkipWithError("link failed");
    state.PauseTiming();
    (void)mat::remove_all(opts.prefix);
    state.ResumeTiming();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * files);
  (void)mat::remove_all(dir);
}
BENCHMARK(BM_LinkPackage)->Args({2000, 0})->Args({2000, 1})->Unit(benchmark::kMillisecond);

}  // namespace
