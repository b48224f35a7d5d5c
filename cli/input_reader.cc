#include "input_reader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "csv.h"

namespace tessera::cli {

namespace {

// Lines of a file, gzip or plain. A pipe or FIFO that is not gzip is read as bytes arrive:
// zlib fills its whole buffer before returning, so a producer writing slowly into
// `tessera ingest /dev/stdin` would see nothing sent until it had written a megabyte.
class line_source {
 public:
  line_source(gzFile f, uint64_t size) : f_(f), size_(size) {}
  explicit line_source(int fd) : fd_(fd) {}
  ~line_source() {
    if (f_) gzclose(f_);
    if (fd_ >= 0) ::close(fd_);
  }
  bool getline(std::string& out) {
    out.clear();
    if (fd_ >= 0) return getline_fd(out);
    char buf[65536];
    while (gzgets(f_, buf, sizeof buf)) {
      out += buf;
      if (!out.empty() && out.back() == '\n') {
        trim_end(out);
        return true;
      }
    }
    return !out.empty();
  }
  double progress() const {
    if (!size_ || !f_) return 0;
    return std::min(1.0, static_cast<double>(gzoffset(f_)) / static_cast<double>(size_));
  }

 private:
  static void trim_end(std::string& line) {
    line.pop_back();
    if (!line.empty() && line.back() == '\r') line.pop_back();
  }
  bool getline_fd(std::string& out) {
    for (;;) {
      auto nl = buf_.find('\n', pos_);
      if (nl != std::string::npos) {
        out.assign(buf_, pos_, nl + 1 - pos_);
        pos_ = nl + 1;
        trim_end(out);
        return true;
      }
      buf_.erase(0, pos_);
      pos_ = 0;
      char chunk[65536];
      ssize_t n = eof_ ? 0 : ::read(fd_, chunk, sizeof chunk);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {  // End (or a read error, reported as the end): the last line may lack '\n'.
        eof_ = true;
        out.swap(buf_);
        buf_.clear();
        return !out.empty();
      }
      buf_.append(chunk, static_cast<size_t>(n));
    }
  }

  gzFile f_ = nullptr;
  uint64_t size_ = 0;
  int fd_ = -1;
  std::string buf_;
  size_t pos_ = 0;
  bool eof_ = false;
};

class csv_reader final : public input_reader {
 public:
  explicit csv_reader(std::unique_ptr<line_source> src) : src_(std::move(src)) {}
  status read_header() {
    std::string line;
    if (!src_->getline(line)) return make_error("empty file: expected a CSV header row");
    ++line_no_;
    if (auto st = split_csv_line(line, line_no_, header_); !st)
      return make_error(st.error_message() + " in the CSV header", st.error_code());
    return ok_status();
  }
  bool next(input_row& row) override {
    std::string line;
    do {
      if (!src_->getline(line)) return false;
      ++line_no_;
    } while (line.empty());
    row.line = line_no_;
    row.fields.clear();
    row.error.clear();
    // The row's line is named by whoever reports row.error.
    if (auto st = split_csv_line(line, 0, cells_); !st) {
      row.error = st.error_message();
      return true;
    }
    if (cells_.size() != header_.size()) {
      row.error = "has " + std::to_string(cells_.size()) + " columns, the header has " +
                  std::to_string(header_.size());
      return true;
    }
    for (size_t i = 0; i < cells_.size(); ++i) {
      input_field f;
      f.name = header_[i];
      f.text_value = std::move(cells_[i]);
      row.fields.push_back(std::move(f));
    }
    return true;
  }
  double progress() const override { return src_->progress(); }

 private:
  std::unique_ptr<line_source> src_;
  std::vector<std::string> header_, cells_;
  uint64_t line_no_ = 0;
};

class jsonl_reader final : public input_reader {
 public:
  explicit jsonl_reader(std::unique_ptr<line_source> src) : src_(std::move(src)) {}
  bool next(input_row& row) override {
    std::string line;
    do {
      if (!src_->getline(line)) return false;
      ++line_no_;
    } while (line.find_first_not_of(" \t") == std::string::npos);
    row.line = line_no_;
    row.fields.clear();
    row.error.clear();
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      row.error = "not a JSON object";
      return true;
    }
    for (auto& [k, v] : j.items()) {
      input_field f;
      f.name = k;
      if (v.is_null())
        f.k = input_field::null;
      else if (v.is_boolean())
        f.k = input_field::boolean, f.b = v.get<bool>();
      else if (v.is_number_integer())
        f.k = input_field::number_int, f.i = v.get<int64_t>();
      else if (v.is_number())
        f.k = input_field::number_float, f.f = v.get<double>();
      else if (v.is_string())
        f.text_value = v.get<std::string>();
      else {
        row.error = "field " + k + ": nested objects and arrays are not supported";
        return true;
      }
      row.fields.push_back(std::move(f));
    }
    return true;
  }
  double progress() const override { return src_->progress(); }

 private:
  std::unique_ptr<line_source> src_;
  uint64_t line_no_ = 0;
};

bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}

}  // namespace

result<std::unique_ptr<input_reader>> input_reader::open(const std::string& path,
                                                         const std::string& format) {
  std::string fmt = format;
  std::string base = ends_with(path, ".gz") ? path.substr(0, path.size() - 3) : path;
  if (fmt.empty()) {
    if (ends_with(base, ".csv"))
      fmt = "csv";
    else if (ends_with(base, ".jsonl") || ends_with(base, ".json") || ends_with(base, ".ndjson"))
      fmt = "jsonl";
    else
      return make_error("cannot tell the format of " + path +
                        " from its name: pass --format csv or --format jsonl");
  }
  if (fmt != "csv" && fmt != "jsonl")
    return make_error("unknown --format '" + fmt + "' (csv or jsonl)");
  struct stat sb {};
  if (::stat(path.c_str(), &sb) != 0) return make_error("cannot open " + path);
  std::unique_ptr<line_source> src;
  if (!S_ISREG(sb.st_mode) && !ends_with(path, ".gz")) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return make_error("cannot open " + path + ": " + std::strerror(errno));
    src = std::make_unique<line_source>(fd);
  } else {
    gzFile f = gzopen(path.c_str(), "rb");
    if (!f) return make_error("cannot open " + path);
    gzbuffer(f, 1 << 20);
    src = std::make_unique<line_source>(f, static_cast<uint64_t>(sb.st_size));
  }
  if (fmt == "csv") {
    auto r = std::make_unique<csv_reader>(std::move(src));
    if (auto st = r->read_header(); !st) return make_error(path + ": " + st.error_message());
    return std::unique_ptr<input_reader>(std::move(r));
  }
  return std::unique_ptr<input_reader>(std::make_unique<jsonl_reader>(std::move(src)));
}

}  // namespace tessera::cli
