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
        ("d > 2.0", true),
        ("d BETWEEN 2.0 AND 3.0", true),
        ("d NOT BETWEEN 2.0 AND 3.0", false),
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
        ("(a > 5 OR b = 'y') AND NOT (d < 1.0)", true),
        ("TRUE", true),
        ("not true or false", false),
    ] {
        assert_eq!(matches(expr, &p), want, "{expr}");
    }
}

#[test]
fn a_wrong_type_makes_the_selector_false_and_an_absent_property_is_unknown() {
    let p = [("a", "not a number"), ("b", "x"), ("d", "2.5")];
    // A property that does not read as the literal's type (Java's Long.valueOf and
    // Double.valueOf fail): the whole selector is false for the message, negated or not, and
    // whatever else it says.
    for expr in ["a > 5", "a = 5", "a BETWEEN 1 AND 9", "d > 2", "a = 1.5"] {
        assert!(!matches(expr, &p), "{expr}");
        assert!(!matches(&format!("NOT ({expr})"), &p), "NOT ({expr})");
        assert!(!matches(&format!("{expr} OR b = 'x'"), &p), "{expr} OR b = 'x'");
    }
    // An absent property is unknown: false, its negation too, but unknown OR true is true and
    // unknown AND false is false.
    assert!(!matches("missing = 'x'", &p) && !matches("NOT (missing = 'x')", &p));
    assert!(matches("missing = 'x' OR b = 'x'", &p));
    assert!(matches("NOT (missing > 5 AND b = 'y')", &p));
    // Booleans read as Java's Boolean.valueOf: anything but "true" is false.
    assert!(!matches("b = TRUE", &p) && matches("NOT (b = TRUE)", &p) && matches("b = FALSE", &p));
    // String tests are false, negated or not, on an absent property or an empty operand.
    for expr in
        ["missing CONTAINS 'x'", "missing NOT CONTAINS 'x'", "b CONTAINS ''", "b NOT ENDSWITH ''"]
    {
        assert!(!matches(expr, &p), "{expr}");
    }
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
        // As RocketMQ: only numbers are ordered; BETWEEN's bounds in order.
        ("b > 'a'", 5),
        ("a > TRUE", 5),
        ("a BETWEEN 5 AND 1", 17),
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

#[test]
fn retained_records_are_the_matching_ones_and_bytes_that_do_not_decode_are_kept_whole() {
    use rocketraft_protocol::message::{body_crc, properties_to_string, MessageRecord};
    let record = |n: &str| {
        MessageRecord {
            topic: "T".into(),
            properties: properties_to_string([("n", n)]),
            body: bytes::Bytes::from(n.to_owned()),
            body_crc: body_crc(n.as_bytes()),
            ..Default::default()
        }
        .encode()
        .unwrap()
    };
    let filter = Filter::compile("T", Some("SQL92"), "n > 1", 0, true).unwrap();
    let mut body = [record("1"), record("2"), record("3")].concat();
    assert_eq!(filter.retain_records(&mut body), 2);
    assert_eq!(body, [record("2"), record("3")].concat());
    // Garbage after a good record (a negative size, then a size past the end): kept as it
    // is, counted once, never looped over.
    for garbage in
        [vec![0xFF, 0xFF, 0xFF, 0xF0, 1, 2], vec![0, 0, 0x10, 0, 7], vec![0, 0, 0, 0], vec![9]]
    {
        let mut body = [record("5"), garbage.clone()].concat();
        assert_eq!(filter.retain_records(&mut body), 2, "{garbage:?}");
        assert_eq!(body, [record("5"), garbage].concat());
    }
}
