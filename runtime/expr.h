// Filter expressions of feature definitions, e.g. "delay > 15 and origin != 'LAX'".
// Grammar: or := and ('or' and)*; and := unary ('and' unary)*; unary := 'not' unary | cmp;
// cmp := operand (('=='|'!='|'<'|'<='|'>'|'>=') operand)?; operand := field | number |
// 'text' | true | false | '(' or ')'. Comparisons with null are false. Compiled once at
// definition load; evaluation is allocation-free and thread-safe.
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
};

// Maps a field name to a slot index, or -1 if unknown.
using field_resolver = std::function<int(const std::string&)>;

result<std::shared_ptr<const expr>> compile_expr(const std::string& source,
                                                 const field_resolver& resolve);
// Names of the fields the expression mentions (for deciding which fields to store).
result<std::vector<std::string>> expr_fields(const std::string& source);

}  // namespace tessera
