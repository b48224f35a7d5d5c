#include "expr.h"

#include <cctype>
#include <cmath>

namespace tessera {
namespace {

struct token {
  enum kind { ident, number, text, op, lparen, rparen, comma, end } k;
  std::string s;
  double n = 0;
};

result<std::vector<token>> lex(const std::string& src) {
  std::vector<token> out;
  size_t i = 0;
  while (i < src.size()) {
    char c = src[i];
    if (std::isspace(static_cast<unsigned char>(c))) {
      ++i;
      continue;
    }
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      size_t j = i;
      // A dotted name ("route_delay.count_7d": a view's feature) is one field name.
      auto word = [&](size_t k) {
        return std::isalnum(static_cast<unsigned char>(src[k])) || src[k] == '_';
      };
      while (j < src.size() && (word(j) || (src[j] == '.' && j + 1 < src.size() &&
                                            (std::isalpha(static_cast<unsigned char>(src[j + 1])) ||
                                             src[j + 1] == '_'))))
        ++j;
      out.push_back({token::ident, src.substr(i, j - i)});
      i = j;
    } else if (std::isdigit(static_cast<unsigned char>(c)) ||
               (c == '-' && i + 1 < src.size() &&
                std::isdigit(static_cast<unsigned char>(src[i + 1])) &&
                (out.empty() || out.back().k == token::op || out.back().k == token::lparen ||
                 out.back().k == token::comma))) {
      size_t j = i + 1;
      while (j < src.size() && (std::isdigit(static_cast<unsigned char>(src[j])) || src[j] == '.' ||
                                src[j] == 'e' || src[j] == 'E'))
        ++j;
      token t{token::number, src.substr(i, j - i)};
      try {
        t.n = std::stod(t.s);
      } catch (...) {
        return make_error("bad number '" + t.s + "'");
      }
      out.push_back(t);
      i = j;
    } else if (c == '\'' || c == '"') {
      size_t j = src.find(c, i + 1);
      if (j == std::string::npos)
        return make_error("unterminated string at column " + std::to_string(i + 1));
      out.push_back({token::text, src.substr(i + 1, j - i - 1)});
      i = j + 1;
    } else if (c == '(') {
      out.push_back({token::lparen, "("});
      ++i;
    } else if (c == ')') {
      out.push_back({token::rparen, ")"});
      ++i;
    } else if (c == ',') {
      out.push_back({token::comma, ","});
      ++i;
    } else {
      static const char* ops[] = {"==", "!=", "<=", ">=", "<", ">", "=", "+", "-", "*", "/"};
      bool found = false;
      for (const char* o : ops) {
        size_t len = std::char_traits<char>::length(o);
        if (src.compare(i, len, o) == 0) {
          out.push_back({token::op, std::string(o) == "=" ? "==" : o});
          i += len;
          found = true;
          break;
        }
      }
      if (!found)
        return make_error(std::string("unexpected character '") + c + "' at column " +
                          std::to_string(i + 1));
    }
  }
  out.push_back({token::end, ""});
  return out;
}

struct const_expr : expr {
  value v;
  explicit const_expr(value x) : v(std::move(x)) {}
  value eval(const std::vector<value>&) const override { return v; }
};
struct field_expr : expr {
  int slot;
  explicit field_expr(int s) : slot(s) {}
  value eval(const std::vector<value>& f) const override { return f[slot]; }
};
struct not_expr : expr {
  std::shared_ptr<const expr> a;
  value eval(const std::vector<value>& f) const override { return !a->test(f); }
};
struct logic_expr : expr {
  bool is_and;
  std::shared_ptr<const expr> a, b;
  value eval(const std::vector<value>& f) const override {
    bool l = a->test(f);
    if (is_and ? !l : l) return l;
    return b->test(f);
  }
};
struct cmp_expr : expr {
  std::string op;
  std::shared_ptr<const expr> a, b;
  value eval(const std::vector<value>& f) const override {
    value l = a->eval(f), r = b->eval(f);
    if (is_null(l) || is_null(r)) return false;
    int c;
    double x, y;
    if (as_number(l, x) && as_number(r, y)) {
      if (std::isnan(x) || std::isnan(y)) return false;
      c = x < y ? -1 : (x > y ? 1 : 0);
    } else if (l.index() == 3 && r.index() == 3) {
      c = std::get<std::string>(l).compare(std::get<std::string>(r));
      c = c < 0 ? -1 : (c > 0 ? 1 : 0);
    } else {
      return false;  // incomparable types
    }
    if (op == "==") return c == 0;
    if (op == "!=") return c != 0;
    if (op == "<") return c < 0;
    if (op == "<=") return c <= 0;
    if (op == ">") return c > 0;
    return c >= 0;
  }
};

// Arithmetic on numbers (int, float, bool, timestamp as microseconds): a float, or null when an
// operand is null or not a number. Division by zero gives null, never inf.
struct arith_expr : expr {
  char op;
  std::shared_ptr<const expr> a, b;
  value eval(const std::vector<value>& f) const override {
    double x, y;
    if (!as_number(a->eval(f), x) || !as_number(b->eval(f), y)) return std::monostate{};
    switch (op) {
      case '+':
        return x + y;
      case '-':
        return x - y;
      case '*':
        return x * y;
      default:
        return y == 0 ? value(std::monostate{}) : value(x / y);
    }
  }
};

// Functions of one argument: hour(ts) and weekday(ts) (UTC; Monday = 0) of a timestamp, abs(x).
struct call_expr : expr {
  std::string fn;
  std::shared_ptr<const expr> a;
  value eval(const std::vector<value>& f) const override {
    double x;
    if (!as_number(a->eval(f), x) || std::isnan(x)) return std::monostate{};
    if (fn == "abs") return std::fabs(x);
    constexpr double kDay = 86400e6;
    double days = std::floor(x / kDay);
    if (fn == "hour") return std::floor((x - days * kDay) / 3600e6);
    // 1970-01-01 was a Thursday (3 with Monday = 0).
    double wd = std::fmod(days + 3, 7);
    return wd < 0 ? wd + 7 : wd;
  }
};

// `field <op> number`: the common filter shape, evaluated without copying values.
struct field_num_cmp_expr : expr {
  enum class cmp : uint8_t { eq, ne, lt, le, gt, ge };
  int slot;
  cmp op;
  double rhs;
  static cmp parse(const std::string& o) {
    return o == "=="   ? cmp::eq
           : o == "!=" ? cmp::ne
           : o == "<"  ? cmp::lt
           : o == "<=" ? cmp::le
           : o == ">"  ? cmp::gt
                       : cmp::ge;
  }
  field_num_cmp_expr() { fast_ = true; }
  value eval(const std::vector<value>& f) const override { return test_fast(f); }
  bool test_fast(const std::vector<value>& f) const {
    double x;
    if (!as_number(f[slot], x) || std::isnan(x)) return false;
    switch (op) {
      case cmp::eq:
        return x == rhs;
      case cmp::ne:
        return x != rhs;
      case cmp::lt:
        return x < rhs;
      case cmp::le:
        return x <= rhs;
      case cmp::gt:
        return x > rhs;
      default:
        return x >= rhs;
    }
  }
};

class parser {
 public:
  parser(std::vector<token> t, const field_resolver* r, std::vector<std::string>* names)
      : toks_(std::move(t)), resolve_(r), names_(names) {}
  result<std::shared_ptr<const expr>> parse() {
    auto e = parse_or();
    if (!err_.empty()) return make_error(err_);
    if (toks_[pos_].k != token::end) return make_error("unexpected '" + toks_[pos_].s + "'");
    return e;
  }

 private:
  std::shared_ptr<const expr> parse_or() {
    auto l = parse_and();
    while (err_.empty() && is_kw("or")) {
      ++pos_;
      auto n = std::make_shared<logic_expr>();
      n->is_and = false, n->a = l, n->b = parse_and();
      l = n;
    }
    return l;
  }
  std::shared_ptr<const expr> parse_and() {
    auto l = parse_unary();
    while (err_.empty() && is_kw("and")) {
      ++pos_;
      auto n = std::make_shared<logic_expr>();
      n->is_and = true, n->a = l, n->b = parse_unary();
      l = n;
    }
    return l;
  }
  std::shared_ptr<const expr> parse_unary() {
    if (is_kw("not")) {
      ++pos_;
      auto n = std::make_shared<not_expr>();
      n->a = parse_unary();
      return n;
    }
    auto l = parse_sum();
    if (err_.empty() && toks_[pos_].k == token::op && is_cmp(toks_[pos_].s)) {
      std::string op = toks_[pos_++].s;
      auto r = parse_sum();
      auto* fe = dynamic_cast<const field_expr*>(l.get());
      auto* ce = dynamic_cast<const const_expr*>(r.get());
      if (fe && ce && std::holds_alternative<double>(ce->v)) {
        auto n = std::make_shared<field_num_cmp_expr>();
        n->slot = fe->slot, n->op = field_num_cmp_expr::parse(op), n->rhs = std::get<double>(ce->v);
        return n;
      }
      auto n = std::make_shared<cmp_expr>();
      n->op = op;
      n->a = l;
      n->b = r;
      return n;
    }
    return l;
  }
  static bool is_cmp(const std::string& op) {
    return op != "+" && op != "-" && op != "*" && op != "/";
  }
  std::shared_ptr<const expr> parse_sum() {
    auto l = parse_product();
    while (err_.empty() && toks_[pos_].k == token::op &&
           (toks_[pos_].s == "+" || toks_[pos_].s == "-")) {
      auto n = std::make_shared<arith_expr>();
      n->op = toks_[pos_++].s[0], n->a = l, n->b = parse_product();
      l = n;
    }
    return l;
  }
  std::shared_ptr<const expr> parse_product() {
    auto l = parse_operand();
    while (err_.empty() && toks_[pos_].k == token::op &&
           (toks_[pos_].s == "*" || toks_[pos_].s == "/")) {
      auto n = std::make_shared<arith_expr>();
      n->op = toks_[pos_++].s[0], n->a = l, n->b = parse_operand();
      l = n;
    }
    return l;
  }
  std::shared_ptr<const expr> parse_operand() {
    const token& t = toks_[pos_];
    switch (t.k) {
      case token::number:
        ++pos_;
        return std::make_shared<const_expr>(t.n);
      case token::text:
        ++pos_;
        return std::make_shared<const_expr>(t.s);
      case token::lparen: {
        ++pos_;
        auto e = parse_or();
        if (toks_[pos_].k != token::rparen) {
          fail("missing ')'");
          return e;
        }
        ++pos_;
        return e;
      }
      case token::ident: {
        ++pos_;
        if (t.s == "true") return std::make_shared<const_expr>(true);
        if (t.s == "false") return std::make_shared<const_expr>(false);
        if (t.s == "and" || t.s == "or" || t.s == "not") {
          fail("unexpected '" + t.s + "'");
          return nullptr;
        }
        if (toks_[pos_].k == token::lparen) {
          if (t.s != "hour" && t.s != "weekday" && t.s != "abs") {
            fail("unknown function '" + t.s + "' (known: hour, weekday, abs)");
            return nullptr;
          }
          ++pos_;
          auto n = std::make_shared<call_expr>();
          n->fn = t.s;
          n->a = parse_sum();
          if (err_.empty() && toks_[pos_].k != token::rparen) {
            fail("function '" + t.s + "' takes one argument");
            return n;
          }
          ++pos_;
          return n;
        }
        if (names_) names_->push_back(t.s);
        int slot = resolve_ ? (*resolve_)(t.s) : 0;
        if (slot < 0) {
          fail("unknown field '" + t.s + "'");
          return nullptr;
        }
        return std::make_shared<field_expr>(slot);
      }
      default:
        fail(t.k == token::end ? "expression ends early" : "unexpected '" + t.s + "'");
        return nullptr;
    }
  }
  bool is_kw(const char* kw) const { return toks_[pos_].k == token::ident && toks_[pos_].s == kw; }
  void fail(std::string m) {
    if (err_.empty()) err_ = std::move(m);
  }

  std::vector<token> toks_;
  size_t pos_ = 0;
  const field_resolver* resolve_;
  std::vector<std::string>* names_;
  std::string err_;
};

}  // namespace

bool expr::test(const std::vector<value>& fields) const {
  if (fast_) return static_cast<const field_num_cmp_expr*>(this)->test_fast(fields);
  value v = eval(fields);
  if (auto* b = std::get_if<bool>(&v)) return *b;
  double d;
  return as_number(v, d) && d != 0;
}

result<std::shared_ptr<const expr>> compile_expr(const std::string& source,
                                                 const field_resolver& resolve) {
  auto toks = lex(source);
  if (!toks) return make_error("filter '" + source + "': " + toks.error_message());
  parser p(std::move(toks.value()), &resolve, nullptr);
  auto r = p.parse();
  if (!r) return make_error("filter '" + source + "': " + r.error_message());
  return r;
}

result<std::vector<std::string>> expr_fields(const std::string& source) {
  auto toks = lex(source);
  if (!toks) return make_error("filter '" + source + "': " + toks.error_message());
  std::vector<std::string> names;
  parser p(std::move(toks.value()), nullptr, &names);
  auto r = p.parse();
  if (!r) return make_error("filter '" + source + "': " + r.error_message());
  return names;
}

}  // namespace tessera
