// Expressions of definitions: feature filters ("delay > 15 and origin != 'LAX'"), derived
// fields, labels and on-demand features ("hour(date)", "date + 60000000 * delay").
// Grammar: or := and ('or' and)*; and := unary ('and' unary)*; unary := 'not' unary | cmp;
// cmp := sum (('=='|'!='|'<'|'<='|'>'|'>=') sum)?; sum := product (('+'|'-') product)*;
// product := operand (('*'|'/') operand)*; operand := field | number | 'text' | true | false |
// fn '(' sum ')' | '(' or ')', fn one of hour, weekday (UTC, Monday = 0) and abs.
// Comparisons with null are false; arithmetic with null (or x / 0) is null; timestamps count
// as microseconds. A field name may be dotted ("route_delay.count_7d", a view's feature in a
// model's rules). Compiled once at definition load; evaluation is thread-safe.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tessera/result.h"
#include "value.h"

namespace tessera {

class expr {
 public:
  virtual ~expr() = default;
  // `fields` is indexed by the slot numbers the resolver returned at compile time.
  virtual value eval(const std::vector<value>& fields) const = 0;
  bool test(const std::vector<value>& fields) const;

 protected:
  bool fast_ = false;  // a `field <op> number` comparison (tested without a dynamic_cast)
};

// Maps a field name to a slot index, or -1 if unknown.
using field_resolver = std::function<int(const std::string&)>;

result<std::shared_ptr<const expr>> compile_expr(const std::string& source,
                                                 const field_resolver& resolve);
// Names of the fields the expression mentions (for deciding which fields to store).
result<std::vector<std::string>> expr_fields(const std::string& source);

}  // namespace tessera
