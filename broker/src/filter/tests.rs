use std::collections::HashMap;

use super::sql92::{parse, DEPTH_MAX, EXPRESSION_MAX_BYTES, IN_LIST_MAX};
use super::*;

fn matches(expr: &str, props: &[(&str, &str)]) -> bool {
    let map: HashMap<&str, &str> = props.iter().copied().collect();
    parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}")).matches(&|n| map.get(n).copied())
}

#[test]
fn comparisons_read_properties_as_the_literals_type() {
    let p = [("a", "6"), ("b", "x"), ("d", "2.5"), ("flag", "TRUE"), ("TAGS", "TagA")];
    for (expr, want) in [
        ("a > 5", true),
        ("a >= 6 AND a <= 6", true),
        ("a < 6", false),
        ("a = 6", true),
        ("a <> 6", false),
        ("a != 7", true),
        ("a = 6.0", true),
        ("d > 2", true),
        ("d BETWEEN 2 AND 3", true),
        ("d NOT BETWEEN 2 AND 3", false),
        ("a BETWEEN 7 AND 9", false),
        ("b = 'x'", true),
        ("b <> 'y'", true),
        ("b IN ('y', 'x')", true),
        ("b NOT IN ('y', 'x')", false),
        ("flag = TRUE", true),
        ("flag = false", false),
        ("TAGS = 'TagA'", true),
        ("b IS NOT NULL AND missing IS NULL", true),
        ("b CONTAINS 'x' AND b STARTSWITH 'x' AND b ENDSWITH 'x'", true),
        ("b NOT CONTAINS 'x'", false),
        ("(a > 5 OR b = 'y') AND NOT (d < 1)", true),
        ("TRUE", true),
        ("not true or false", false),
    ] {
        assert_eq!(matches(expr, &p), want, "{expr}");
    }
}

#[test]
fn a_wrong_type_or_an_absent_property_is_false_never_an_error() {
    let p = [("a", "not a number"), ("b", "x")];
    for expr in ["a > 5", "a = 5", "a BETWEEN 1 AND 9", "b > 'a'", "missing = 'x'", "b = TRUE"] {
        assert!(!matches(expr, &p), "{expr}");
        // Unknown stays unknown under NOT: the negation does not match either.
        assert!(!matches(&format!("NOT ({expr})"), &p), "NOT ({expr})");
    }
    // Unknown OR true is true; unknown AND false is false.
    assert!(matches("a > 5 OR b = 'x'", &p));
    assert!(matches("NOT (a > 5 AND b = 'y')", &p), "NOT (unknown AND false) is true");
}

#[test]
fn strings_numbers_and_keywords_are_read_as_rocketmq_writes_them() {
    let p = [("q", "it's"), ("n", "-3"), ("big", "10")];
    assert!(matches("q = 'it''s'", &p));
    assert!(matches("n = -3 AND n < -2.5", &p));
    assert!(matches("big = 10L AND big > 9.5D", &p));
    assert!(matches("big > .5", &p));
    assert!(matches("big between 1 and 10 AnD q is not null", &p));
    assert!(matches("a.b IS NULL", &p), "dotted names");
}

#[test]
fn bad_expressions_are_refused_with_the_column_where_they_fail() {
    for (expr, column) in [
        ("a >", 4),
        ("a > 5 AND", 10),
        ("(a > 5", 7),
        ("a = 'open", 5),
        ("a >> 5", 4),
        ("a ~ 5", 3),
        ("a BETWEEN 'x' AND 5", 11),
        ("a IN (1, 2)", 7),
        ("AND = 5", 1),
        ("a = 5 b = 6", 7),
        ("", 1),
    ] {
        let e = parse(expr).expect_err(expr);
        assert_eq!(e.column, column, "{expr}: {e}");
    }
}

#[test]
fn expressions_are_bounded_in_size_depth_and_lists() {
    let long = format!("a = '{}'", "x".repeat(EXPRESSION_MAX_BYTES));
    assert!(parse(&long).unwrap_err().message.contains("limit"));
    let deep = format!("{}a = 1{}", "(".repeat(DEPTH_MAX + 1), ")".repeat(DEPTH_MAX + 1));
    assert!(parse(&deep).unwrap_err().message.contains("deeper"));
    let nots = format!("{}a = 1", "NOT ".repeat(DEPTH_MAX + 1));
    assert!(parse(&nots).unwrap_err().message.contains("deeper"));
    let ok = format!("{}a = 1{}", "(".repeat(DEPTH_MAX - 2), ")".repeat(DEPTH_MAX - 2));
    assert!(parse(&ok).is_ok());
    // A long flat chain is not deep.
    let chain = vec!["a = 1"; 300].join(" OR ");
    assert!(parse(&chain).is_ok());
    let many = format!("a IN ({})", vec!["''"; IN_LIST_MAX + 1].join(","));
    assert!(many.len() <= EXPRESSION_MAX_BYTES);
    assert!(parse(&many).unwrap_err().message.contains("IN list"));
    assert!(parse(&format!("a IN ({})", vec!["''"; IN_LIST_MAX].join(","))).is_ok());
}

#[test]
fn filters_compile_by_type_and_refuse_sql_when_property_filtering_is_off() {
    assert!(matches!(Filter::compile("T", None, "a || b", 0, false), Ok(Filter::Tags(_))));
    assert!(matches!(Filter::compile("T", Some("SQL92"), "a > 1", 0, true), Ok(Filter::Sql(_))));
    let off = Filter::compile("T", Some("SQL92"), "a > 1", 0, false).unwrap_err();
    assert_eq!((off.code, off.remark.as_str()), (response_code::SYSTEM_ERROR, SQL92_DISABLED));
    let bad = Filter::compile("T", Some("sql92"), "a >", 0, true).unwrap_err();
    assert_eq!(bad.code, response_code::SUBSCRIPTION_PARSE_FAILED);
    assert!(bad.remark.contains("column 4"), "{}", bad.remark);
    let unknown = Filter::compile("T", Some("CLASS"), "x", 0, true).unwrap_err();
    assert_eq!(unknown.code, response_code::SYSTEM_ERROR);
}
