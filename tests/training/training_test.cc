// Evaluation against brute force, training on synthetic data with known answers,
// reproducibility, and TorchScript import/refusal (libtorch; its own test binary).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>

#include <unistd.h>

#include "trainer.h"

namespace tessera {
namespace {

model_def model(const std::string& kind) {
  model_def m;
  m.name = "t";
  m.kind = kind;
  m.hidden = {16, 8};
  m.epochs = 8;
  m.batch_size = 128;
  m.learning_rate = 0.01;
  m.seed = 3;
  m.train_from = 0, m.valid_from = 6000, m.test_from = 8000, m.test_to = 10000;
  return m;
}

// y = 1 iff x0 + 0.5 x1 > 0 (separable); x2 is noise and 10% of x1 is missing.
// With `xor_`, y = (x0 > 0) != (x1 > 0): no linear model can learn it.
table synthetic(size_t n, bool xor_, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> g(0, 1);
  table t;
  t.columns = {"x0", "x1", "x2"};
  for (size_t i = 0; i < n; ++i) {
    float a = g(rng), b = g(rng), c = g(rng);
    bool y = xor_ ? ((a > 0) != (b > 0)) : (a + 0.5f * b > 0);
    if (!xor_ && i % 10 == 0) b = NAN;
    t.x.insert(t.x.end(), {a, b, c * 100});
    t.y.push_back(y ? 1.f : 0.f);
    t.time.push_back(static_cast<int64_t>(i));
  }
  t.rows = n;
  return t;
}

}  // namespace

TEST(Evaluation, AucLogLossAccuracyAndCalibrationMatchBruteForce) {
  std::mt19937_64 rng(1);
  std::uniform_real_distribution<float> u(0, 1);
  std::vector<float> p, y;
  for (int i = 0; i < 500; ++i) {
    float yi = u(rng) < 0.3f ? 1.f : 0.f;
    float pi =
        std::round(std::clamp(0.3f * yi + 0.7f * u(rng), 0.f, 1.f) * 20) / 20;  // coarse: many ties
    p.push_back(pi), y.push_back(yi);
  }
  double wins = 0, pairs = 0, ll = 0, correct = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    double q = std::clamp<double>(p[i], 1e-7, 1 - 1e-7);
    ll -= y[i] ? std::log(q) : std::log(1 - q);
    correct += (q >= 0.5) == (y[i] > 0.5);
    if (!y[i]) continue;
    for (size_t j = 0; j < p.size(); ++j)
      if (!y[j]) pairs += 1, wins += p[i] > p[j] ? 1 : p[i] == p[j] ? 0.5 : 0;
  }
  auto m = evaluate(p, y);
  EXPECT_NEAR(m.auc, wins / pairs, 1e-12);
  EXPECT_NEAR(m.log_loss, ll / 500, 1e-12);
  EXPECT_NEAR(m.accuracy, correct / 500, 1e-12);
  uint64_t in_bins = 0;
  for (auto& b : m.calibration) in_bins += b.count;
  EXPECT_EQ(in_bins, 500u);
  auto d = describe_distribution("x", {1, 2, 3, 4, NAN});
  EXPECT_EQ(d.n, 5u);
  EXPECT_NEAR(d.missing, 0.2, 1e-12);
  EXPECT_NEAR(d.mean, 2.5, 1e-12);
  uint64_t total = 0;
  for (auto c : d.counts) total += c;
  EXPECT_EQ(total, 4u);
}

TEST(Training, ASeparableSetReachesAucNearOneAndXorNeedsTheMlp) {
  for (const char* kind : {"logistic", "mlp"}) {
    auto r = train_model(model(kind), synthetic(10000, false, 7), nullptr);
    ASSERT_TRUE(r.ok()) << r.error_message();
    EXPECT_GT(r->test.auc, 0.99) << kind;
    EXPECT_EQ(r->test_rows, 2000u);
    EXPECT_EQ(r->input_reference.size(), 3u);
    EXPECT_NEAR(r->input_reference[1].missing, 0.1, 0.02);
  }
  auto lin = train_model(model("logistic"), synthetic(10000, true, 8), nullptr);
  auto mlp = train_model(model("mlp"), synthetic(10000, true, 8), nullptr);
  ASSERT_TRUE(lin.ok() && mlp.ok());
  EXPECT_LT(lin->test.auc, 0.6);  // a line cannot separate xor
  EXPECT_GT(mlp->test.auc, 0.95);
}

TEST(Training, TheSameSeedGivesTheSameModelAndAnotherSeedAnother) {
  auto data = synthetic(4000, true, 9);
  auto m = model("mlp");
  m.valid_from = 2400, m.test_from = 3200, m.test_to = 4000;
  auto a = train_model(m, data, nullptr), b = train_model(m, data, nullptr);
  m.seed = 4;
  auto c = train_model(m, data, nullptr);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  auto pa = predict_torchscript(a->artifact, data.x, 3),
       pb = predict_torchscript(b->artifact, data.x, 3),
       pc = predict_torchscript(c->artifact, data.x, 3);
  ASSERT_TRUE(pa.ok() && pb.ok() && pc.ok());
  EXPECT_EQ(*pa, *pb);  // bit for bit
  EXPECT_NE(*pa, *pc);
  EXPECT_EQ(a->test.auc, b->test.auc);
}

TEST(Training, BadSplitsAndLabelsAreRefused) {
  auto m = model("logistic");
  m.train_from = 20000, m.valid_from = 30000, m.test_from = 40000, m.test_to = 50000;
  auto r = train_model(m, synthetic(1000, false, 1), nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error_message().find("the train split has no examples"), std::string::npos)
      << r.error_message();
  auto t = synthetic(1000, false, 1);
  t.y[3] = 2;
  r = train_model(model("logistic"), t, nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error_message().find("labels must be 0 or 1"), std::string::npos);
}

// The dataset table reads its cells with runtime/csv.h: quoted cells as `tessera dataset build`
// writes them, and a quote left open is an invalid file naming its line.
TEST(DatasetTable, ReadsQuotedCellsAndRefusesAnUnterminatedQuote) {
  char path[] = "/tmp/tessera-table-XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  std::ofstream(path) << "prediction_time,entity,label,x0,x1\r\n"
                         "10,\"LAX, \"\"west\"\"\",1,0.5,\r\n"
                         "20,ORD,0,-2,3\n";
  auto ok = read_dataset_csv(path, {});
  ASSERT_TRUE(ok.ok()) << ok.error_message();
  EXPECT_EQ(ok->columns, (std::vector<std::string>{"x0", "x1"}));
  ASSERT_EQ(ok->rows, 2u);
  EXPECT_EQ(ok->time, (std::vector<int64_t>{10, 20}));
  EXPECT_EQ(ok->y, (std::vector<float>{1, 0}));
  EXPECT_EQ(ok->x[0], 0.5f);
  EXPECT_TRUE(std::isnan(ok->x[1]));
  EXPECT_EQ(ok->x[2], -2.f);
  EXPECT_EQ(ok->x[3], 3.f);
  std::ofstream(path) << "prediction_time,entity,label,x0\n"
                         "10,ORD,1,0.5\n"
                         "20,\"ORD,0,1\n";
  auto bad = read_dataset_csv(path, {});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error_code(), errc::invalid);
  EXPECT_EQ(bad.error_message(), std::string(path) + ":3: unterminated quote");
  std::remove(path);
}

TEST(TorchScript, AModelWrittenByPyTorchImportsAndGarbageIsRefused) {
  const std::string path = ::testing::TempDir() + "/pytorch_model.pt";
  ASSERT_EQ(std::system(("/usr/bin/python3 " TSR_SOURCE_DIR "/tests/training/make_torchscript.py " +
                         path + " 3")
                            .c_str()),
            0);
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string bytes = ss.str();
  ASSERT_TRUE(check_torchscript(bytes, 3).ok()) << check_torchscript(bytes, 3).error_message();
  auto p = predict_torchscript(bytes, {2, 2, 0, NAN, NAN, NAN}, 3);
  ASSERT_TRUE(p.ok()) << p.error_message();
  EXPECT_NEAR((*p)[0], 1 / (1 + std::exp(-1.0)), 1e-6);  // 0.5 * 4 - 1 = 1
  EXPECT_NEAR((*p)[1], 1 / (1 + std::exp(1.0)), 1e-6);
  EXPECT_FALSE(check_torchscript(bytes, 5).ok());  // wrong input width
  auto garbage = check_torchscript("not a model at all", 3);
  ASSERT_FALSE(garbage.ok());
  EXPECT_NE(garbage.error_message().find("not a TorchScript archive"), std::string::npos);
  auto zip_but_not = check_torchscript(std::string("PK\x03\x04") + std::string(100, 'x'), 3);
  EXPECT_FALSE(zip_but_not.ok());
}

}  // namespace tessera
