//! Typed custom headers: each is a struct whose fields map to extFields keys (reference §2).
//!
//! A field's type says how it is read: `String`, `i32`, `i64` and `bool` are required (a
//! missing one is [`ProtocolError::MissingField`], which brokers answer with an error remark
//! as Java's `@CFNotNull` does); `Option<_>` fields are optional. Numbers parse like Java's
//! `Integer.parseInt` / `Long.parseLong` (strict), booleans like `Boolean.parseBoolean`
//! ("true" in any case is true, anything else false). Keys are written in declaration order.

use crate::error::{ProtocolError, Result};
use crate::ext_fields::ExtFields;

/// A custom header that converts to and from extFields.
pub trait CommandHeader: Sized {
    fn to_ext_fields(&self) -> ExtFields;
    fn from_ext_fields(fields: &ExtFields) -> Result<Self>;
}

/// A scalar that travels as a string in extFields.
pub trait HeaderScalar: Sized {
    const EXPECTED: &'static str;
    /// Sets `key` to this value's text.
    fn write_to(&self, key: &str, fields: &mut ExtFields);
    fn parse(text: &str) -> Option<Self>;
}

impl HeaderScalar for String {
    const EXPECTED: &'static str = "a string";
    fn write_to(&self, key: &str, fields: &mut ExtFields) {
        fields.insert(key, self);
    }
    fn parse(text: &str) -> Option<Self> {
        Some(text.to_owned())
    }
}

impl HeaderScalar for i32 {
    const EXPECTED: &'static str = "a 32-bit integer";
    fn write_to(&self, key: &str, fields: &mut ExtFields) {
        fields.insert_display(key, self);
    }
    fn parse(text: &str) -> Option<Self> {
        text.parse().ok()
    }
}

impl HeaderScalar for i64 {
    const EXPECTED: &'static str = "a 64-bit integer";
    fn write_to(&self, key: &str, fields: &mut ExtFields) {
        fields.insert_display(key, self);
    }
    fn parse(text: &str) -> Option<Self> {
        text.parse().ok()
    }
}

impl HeaderScalar for bool {
    const EXPECTED: &'static str = "a boolean";
    fn write_to(&self, key: &str, fields: &mut ExtFields) {
        fields.insert_display(key, self);
    }
    fn parse(text: &str) -> Option<Self> {
        Some(text.eq_ignore_ascii_case("true"))
    }
}

/// How one header field is written and read: required scalars and optional ones.
pub trait HeaderField: Sized {
    /// Sets `key` in `fields`, or leaves it out (an absent optional value).
    fn write(&self, key: &str, fields: &mut ExtFields);
    fn read(field: &'static str, raw: Option<&str>) -> Result<Self>;
}

fn parse_scalar<T: HeaderScalar>(field: &'static str, text: &str) -> Result<T> {
    T::parse(text).ok_or_else(|| ProtocolError::InvalidField {
        field,
        value: text.to_owned(),
        expected: T::EXPECTED,
    })
}

impl<T: HeaderScalar> HeaderField for T {
    fn write(&self, key: &str, fields: &mut ExtFields) {
        self.write_to(key, fields);
    }
    fn read(field: &'static str, raw: Option<&str>) -> Result<Self> {
        parse_scalar(field, raw.ok_or(ProtocolError::MissingField { field })?)
    }
}

impl<T: HeaderScalar> HeaderField for Option<T> {
    fn write(&self, key: &str, fields: &mut ExtFields) {
        if let Some(v) = self {
            v.write_to(key, fields);
        }
    }
    fn read(field: &'static str, raw: Option<&str>) -> Result<Self> {
        raw.map(|text| parse_scalar(field, text)).transpose()
    }
}

/// A header that has no fields (e.g. GET_BROKER_CLUSTER_INFO).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EmptyHeader;

impl CommandHeader for EmptyHeader {
    fn to_ext_fields(&self) -> ExtFields {
        ExtFields::new()
    }
    fn from_ext_fields(_: &ExtFields) -> Result<Self> {
        Ok(EmptyHeader)
    }
}

/// Declares a header struct and its [`CommandHeader`] impl from `field: Type => "key"` lines.
#[macro_export]
macro_rules! command_header {
    ($(#[$meta:meta])* pub struct $name:ident {
        $($(#[$fmeta:meta])* pub $field:ident : $ty:ty => $key:literal,)*
    }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        #[cfg_attr(test, derive(proptest_derive::Arbitrary))]
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
        }

        impl $crate::header::CommandHeader for $name {
            fn to_ext_fields(&self) -> $crate::ExtFields {
                let mut fields = $crate::ExtFields::with_capacity(256, 16);
                $($crate::header::HeaderField::write(&self.$field, $key, &mut fields);)*
                fields
            }

            fn from_ext_fields(fields: &$crate::ExtFields) -> $crate::Result<Self> {
                Ok($name {
                    $($field: $crate::header::HeaderField::read($key, fields.get($key))?,)*
                })
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    command_header! {
        pub struct Probe {
            pub name: String => "name",
            pub count: i32 => "count",
            pub big: Option<i64> => "big",
            pub on: bool => "on",
        }
    }

    #[test]
    fn required_optional_and_java_parsing_rules() {
        let f: ExtFields = [("name", "x"), ("count", "+7"), ("on", "TRUE")].into_iter().collect();
        assert_eq!(
            Probe::from_ext_fields(&f).unwrap(),
            Probe { name: "x".into(), count: 7, big: None, on: true }
        );
        let f: ExtFields = [("name", "x"), ("count", "7"), ("on", "yes")].into_iter().collect();
        assert!(!Probe::from_ext_fields(&f).unwrap().on, "parseBoolean: only 'true' is true");
        let f: ExtFields = [("name", "x"), ("on", "true")].into_iter().collect();
        assert_eq!(Probe::from_ext_fields(&f), Err(ProtocolError::MissingField { field: "count" }));
        let f: ExtFields = [("name", "x"), ("count", "7 "), ("on", "1")].into_iter().collect();
        assert!(matches!(
            Probe::from_ext_fields(&f),
            Err(ProtocolError::InvalidField { field: "count", .. })
        ));
        let f: ExtFields = [("name", "x"), ("count", "1"), ("big", "9999999999"), ("on", "false")]
            .into_iter()
            .collect();
        assert_eq!(Probe::from_ext_fields(&f).unwrap().big, Some(9_999_999_999));
    }
}
