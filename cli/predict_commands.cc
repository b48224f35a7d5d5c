// `tessera predict`, `tessera predictions tail` and `tessera skew`: the inference family's calls
// (schemas/inference.capnp) through the client library. Their text is in predict_text.h.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <list>
#include <thread>

#include "cli_util.h"
#include "commands.h"
#include "input_reader.h"
#include "ordered_writer.h"
#include "predict_text.h"
#include "tessera/client.h"
#include "time_util.h"

namespace tessera::cli {
namespace {

using clock_type = std::chrono::steady_clock;

// What to do about a failed predict call, after its message.
void print_call_hint(const std::string& model, errc c) {
  if (c == errc::not_found)
    std::fprintf(stderr,
                 "  `tessera models list` shows the registered models, their versions and stages "
                 "(without --version, predict serves the production one)\n");
  else if (c == errc::deadline)
    std::fprintf(stderr,
                 "  the node did not answer in time: give it longer with --deadline-ms (the "
                 "node's default is 1000), or ask for fewer examples per call\n");
  else if (c == errc::overloaded)
    std::fprintf(stderr, "  %s's queue stayed full through the client's retries: try again later\n",
                 model.c_str());
}

result<client::predict_options> read_options(const predict_args& a) {
  client::predict_options o;
  o.version = a.version;
  o.deadline = std::chrono::milliseconds(a.deadline_ms);
  o.return_vector = a.vector;
  if (!a.max_feature_age.empty()) {
    auto d = parse_duration(a.max_feature_age);
    if (!d || *d <= 0)
      return make_error("--max-feature-age " + a.max_feature_age + ": " +
                            (d ? "give a positive duration, e.g. 10m" : d.error_message()),
                        errc::invalid);
    o.max_feature_age_us = *d;
  }
  return o;
}

int predict_one(const predict_args& a, const client::predict_options& o, int64_t as_of) {
  auto fields = parse_assignments(a.fields);
  if (!fields) {
    std::fprintf(stderr, "error: %s\n", fields.error_message().c_str());
    return 2;
  }
  client::example ex;
  ex.as_of = as_of;
  for (auto& [name, text] : *fields) ex.fields.emplace_back(name, client::value(text));
  auto conn = client::connection::open(a.rpc);
  auto r = conn->predict(a.model, {ex}, o);
  if (!r) {
    print_error(a.rpc, r.failure());
    print_call_hint(a.model, r.error_code());
    return 2;
  }
  if (r->size() != 1) {
    std::fprintf(stderr, "error: the node answered %zu predictions for one example\n", r->size());
    return 2;
  }
  const auto& p = r->front();
  if (a.json)
    std::cout << prediction_json(p).dump(2) << "\n";
  else if (p.ok())
    std::fputs(format_prediction(p, a.vector).c_str(), stdout);
  if (!p.ok()) {
    std::fprintf(stderr, "error (%s): %s\n", code_name(p.code).c_str(), p.error.c_str());
    return 2;
  }
  return 0;
}

// Rows of the file go out in batches of consecutive rows (row numbers from 1), up to
// --concurrency calls in flight; a batch's lines go to the ordered writer when its call ends, so
// stdout keeps the input order whichever call ends first. An unreadable row is not sent: its
// line carries the reader's error.
int predict_file(const predict_args& a, const client::predict_options& o, int64_t as_of) {
  if (a.batch == 0 || a.batch > 100000) {
    std::fprintf(stderr, "error: --batch must be between 1 and 100000\n");
    return 2;
  }
  if (a.concurrency < 1 || a.concurrency > 64) {
    std::fprintf(stderr, "error: --concurrency must be between 1 and 64\n");
    return 2;
  }
  auto reader = input_reader::open(a.file, a.format);
  if (!reader) {
    std::fprintf(stderr, "error: %s\n", reader.error_message().c_str());
    return 2;
  }
  auto conn = client::connection::open(a.rpc);

  struct batch {
    uint64_t first_row = 0;
    std::vector<uint64_t> lines;          // per row: its line in the file
    std::vector<std::string> unreadable;  // per row: non-empty when it was not sent
    std::future<result<std::vector<client::prediction>>> answer;
  };
  std::list<batch> in_flight;  // oldest first
  ordered_writer out(
      [](const std::string& line) {
        std::fwrite(line.data(), 1, line.size(), stdout);
        std::fputc('\n', stdout);
      },
      1);
  uint64_t rows = 0, done = 0, failed = 0;
  std::vector<std::pair<uint64_t, std::string>> problems;  // the first failures (row, text)
  const auto start = clock_type::now();
  progress_line progress(a.quiet);
  auto draw = [&](bool final) {
    if (!progress.due(final)) return;
    double secs = std::chrono::duration<double>(clock_type::now() - start).count();
    progress.draw(
        final ? 1.0 : (*reader)->progress(),
        human(done) + " rows  " +
            human(static_cast<uint64_t>(secs > 0 ? static_cast<double>(done) / secs : 0)) +
            " rows/s  " + human(failed) + " failed",
        final);
  };

  // The lines of a finished batch; false when its call failed as a whole (printed).
  auto settle = [&](batch& b) -> bool {
    size_t sent = 0;
    for (auto& u : b.unreadable) sent += u.empty();
    std::vector<client::prediction> answers;
    if (sent) {
      auto r = b.answer.get();
      if (!r || r->size() != sent) {
        std::fprintf(stderr, "\nerror: predict of rows %llu-%llu (lines %llu-%llu) failed:\n",
                     static_cast<unsigned long long>(b.first_row),
                     static_cast<unsigned long long>(b.first_row + b.lines.size() - 1),
                     static_cast<unsigned long long>(b.lines.front()),
                     static_cast<unsigned long long>(b.lines.back()));
        if (!r) {
          print_error(a.rpc, r.failure(), "  ");
          print_call_hint(a.model, r.error_code());
        } else {
          std::fprintf(stderr, "  the node answered %zu predictions for %zu examples\n", r->size(),
                       sent);
        }
        if (out.next() > 1)
          std::fprintf(stderr, "  rows 1-%llu were written to stdout\n",
                       static_cast<unsigned long long>(out.next() - 1));
        return false;
      }
      answers = std::move(*r);
    }
    std::vector<std::string> lines;
    lines.reserve(b.lines.size());
    size_t k = 0;
    for (size_t i = 0; i < b.lines.size(); ++i) {
      client::prediction p;
      if (b.unreadable[i].empty()) {
        p = std::move(answers[k++]);
      } else {
        p.error = "line " + std::to_string(b.lines[i]) + ": " + b.unreadable[i];
        p.code = errc::invalid;
      }
      p.request_id = std::to_string(b.first_row + i);
      if (!p.ok()) {
        ++failed;
        if (problems.size() < 10)
          problems.emplace_back(b.first_row + i,
                                "row " + p.request_id + ", line " + std::to_string(b.lines[i]) +
                                    ": " + code_name(p.code) + ": " +
                                    (b.unreadable[i].empty() ? p.error : b.unreadable[i]));
      }
      lines.push_back(prediction_json(p).dump());
    }
    done += b.lines.size();
    out.put(b.first_row, std::move(lines));
    return true;
  };
  // Settles every batch that has ended; when none has, waits a little for the oldest first.
  auto settle_some = [&]() -> bool {
    for (;;) {
      bool any = false;
      for (auto it = in_flight.begin(); it != in_flight.end();) {
        if (it->answer.valid() &&
            it->answer.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
          ++it;
          continue;
        }
        if (!settle(*it)) return false;
        it = in_flight.erase(it);
        any = true;
        draw(false);
      }
      if (any || in_flight.empty()) return true;
      in_flight.front().answer.wait_for(std::chrono::milliseconds(5));
    }
  };
  // Lines held for an earlier batch count against the window too, so that one slow call does
  // not let the others pile up answers without bound.
  const size_t max_in_flight = static_cast<size_t>(a.concurrency);
  const size_t max_held = 4 * max_in_flight;

  batch cur;
  std::vector<client::example> examples;
  input_row row;
  bool more = true;
  while (more) {
    more = (*reader)->next(row);
    if (more) {
      if (cur.lines.empty()) cur.first_row = rows + 1;
      ++rows;
      cur.lines.push_back(row.line);
      cur.unreadable.push_back(row.error);
      if (row.error.empty()) {
        client::example ex;
        ex.as_of = as_of;
        ex.request_id = std::to_string(rows);
        ex.fields.reserve(row.fields.size());
        for (auto& f : row.fields)
          ex.fields.emplace_back(std::move(f.name), field_value(std::move(f)));
        examples.push_back(std::move(ex));
      }
      row = input_row();
    }
    if (cur.lines.size() >= a.batch || (!more && !cur.lines.empty())) {
      if (!examples.empty()) cur.answer = conn->predict_async(a.model, std::move(examples), o);
      examples.clear();
      in_flight.push_back(std::move(cur));
      cur = batch();
      while (!in_flight.empty() &&
             (in_flight.size() >= max_in_flight || in_flight.size() + out.waiting() >= max_held))
        if (!settle_some()) return 2;
      draw(false);
    }
  }
  while (!in_flight.empty())
    if (!settle_some()) return 2;
  std::fflush(stdout);
  draw(true);
  double secs = std::chrono::duration<double>(clock_type::now() - start).count();
  std::fprintf(
      stderr, "predicted %s rows with %s in %.1f s (%s rows/s), %s failed\n", human(rows).c_str(),
      a.model.c_str(), secs,
      human(static_cast<uint64_t>(secs > 0 ? static_cast<double>(rows) / secs : 0)).c_str(),
      human(failed).c_str());
  std::sort(problems.begin(), problems.end());  // they were noted as calls ended
  for (auto& p : problems) std::fprintf(stderr, "  %s\n", p.second.c_str());
  if (failed > problems.size())
    std::fprintf(stderr, "  … and %s more (each has \"error\" and \"code\" in its line)\n",
                 human(failed - problems.size()).c_str());
  return failed ? 1 : 0;
}

}  // namespace

int run_predict(const predict_args& a) {
  if (!a.file.empty() && !a.fields.empty()) {
    std::fprintf(stderr,
                 "error: give the example as FIELD=VALUE arguments or the examples with --file, "
                 "not both\n");
    return 2;
  }
  if (a.file.empty() && a.fields.empty()) {
    std::fprintf(stderr,
                 "error: give the example's fields as FIELD=VALUE (the fields of the model's label "
                 "stream, e.g. origin=LAX distance=337), or a file of examples with --file\n");
    return 2;
  }
  auto o = read_options(a);
  if (!o) {
    std::fprintf(stderr, "error: %s\n", o.error_message().c_str());
    return 2;
  }
  auto as_of = parse_prediction_time(a.as_of);
  if (!as_of) {
    std::fprintf(stderr, "error: %s\n", as_of.error_message().c_str());
    return 2;
  }
  return a.file.empty() ? predict_one(a, *o, *as_of) : predict_file(a, *o, *as_of);
}

int run_predictions_tail(const predictions_args& a) {
  if (a.n == 0) {
    std::fprintf(stderr, "error: -n must be at least 1\n");
    return 2;
  }
  auto conn = client::connection::open(a.rpc);
  auto page = conn->tail_predictions(a.model, a.n, 0);
  if (!page) return fail(a.rpc, page);
  for (auto& r : page->records) std::printf("%s\n", r.c_str());
  std::fflush(stdout);
  if (!a.follow) return 0;
  uint64_t last = page->last_seq;
  // Polls for records after the last one seen; a full page is followed at once by the next.
  constexpr uint32_t kPage = 1000;
  for (;;) {
    auto next = conn->tail_predictions(a.model, kPage, last);
    if (!next) return fail(a.rpc, next);
    for (auto& r : next->records) std::printf("%s\n", r.c_str());
    std::fflush(stdout);
    if (next->last_seq > last) last = next->last_seq;
    if (next->records.size() < kPage) std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
}

int run_skew(const skew_args& a) {
  if (a.sample == 0) {
    std::fprintf(stderr, "error: --sample must be at least 1\n");
    return 2;
  }
  auto conn = client::connection::open(a.rpc);
  if (!a.json)
    std::fprintf(stderr, "recomputing up to %u logged vectors of %s offline...\n", a.sample,
                 a.model.c_str());
  auto report = conn->skew(a.model, a.sample);
  if (!report) {
    print_error(a.rpc, report.failure());
    print_call_hint(a.model, report.error_code());
    return 2;
  }
  if (a.json) {
    auto j = nlohmann::json::parse(*report, nullptr, false);
    std::cout << (j.is_discarded() ? *report : j.dump(2)) << "\n";
    return 0;
  }
  auto text = format_skew_report(*report);
  if (!text) {
    std::fprintf(stderr, "error: %s\n  (tessera skew --json prints it as the node sent it)\n",
                 text.error_message().c_str());
    return 2;
  }
  std::fputs(text->c_str(), stdout);
  return 0;
}

}  // namespace tessera::cli
