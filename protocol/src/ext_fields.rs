//! `ExtFields`: the string-to-string map that carries a command's custom header.
//!
//! It keeps insertion order, so a typed header writes its keys in its declared order and a
//! decoded frame re-encodes to the same bytes (fastjson writes a Java `HashMap`, whose order
//! peers never rely on, but byte-stable output makes captures and fixtures comparable).
//! Inserting an existing key replaces its value in place. Lookups are linear: headers hold a
//! few dozen keys at most.

use std::fmt::Write as _;

use serde::de::{DeserializeSeed, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The custom-header map of a [`crate::RemotingCommand`]. All values are strings on the wire.
///
/// Keys and values live back to back in one string, so a header costs two allocations
/// however many fields it has (a send's header has about fifteen). A replaced or removed
/// value leaves its old text behind until the map is dropped.
#[derive(Clone, Default)]
pub struct ExtFields {
    text: String,
    /// Per entry: key start, key end, value start, value end (byte offsets into `text`).
    spans: Vec<[u32; 4]>,
}

impl ExtFields {
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty map with room for `text_bytes` of keys and values and `entries` entries.
    pub fn with_capacity(text_bytes: usize, entries: usize) -> Self {
        ExtFields { text: String::with_capacity(text_bytes), spans: Vec::with_capacity(entries) }
    }

    fn slice(&self, from: u32, to: u32) -> &str {
        &self.text[from as usize..to as usize]
    }

    fn position(&self, key: &str) -> Option<usize> {
        self.spans.iter().position(|s| self.slice(s[0], s[1]) == key)
    }

    /// Appends `write`'s output to the text and returns its span.
    fn append(&mut self, write: impl FnOnce(&mut String)) -> [u32; 2] {
        let from = self.text.len();
        write(&mut self.text);
        // Headers are bounded by the frame limit (16 MiB), far below 4 GiB.
        [from as u32, self.text.len() as u32]
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.position(key).map(|i| self.slice(self.spans[i][2], self.spans[i][3]))
    }

    /// Sets `key` to `value`, replacing an existing value in place.
    pub fn insert(&mut self, key: impl AsRef<str>, value: impl AsRef<str>) {
        self.insert_with(key.as_ref(), |out| out.push_str(value.as_ref()));
    }

    /// Sets `key` to `value`'s `Display` text, written without an intermediate string.
    pub fn insert_display(&mut self, key: &str, value: impl std::fmt::Display) {
        // Writing to a String cannot fail.
        self.insert_with(key, |out| {
            let _ = write!(out, "{value}");
        });
    }

    fn insert_with(&mut self, key: &str, write_value: impl FnOnce(&mut String)) {
        let value = self.append(write_value);
        self.set_value_span(key, value);
    }

    /// Points `key` at `value` (a span already in the text), adding the key if it is new.
    fn set_value_span(&mut self, key: &str, [vs, ve]: [u32; 2]) {
        match self.position(key) {
            Some(i) => {
                self.spans[i][2] = vs;
                self.spans[i][3] = ve;
            }
            None => {
                let [ks, ke] = self.append(|out| out.push_str(key));
                self.spans.push([ks, ke, vs, ve]);
            }
        }
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        let at = self.position(key)?;
        let s = self.spans.remove(at);
        Some(self.slice(s[2], s[3]).to_owned())
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The entries in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.spans.iter().map(|s| (self.slice(s[0], s[1]), self.slice(s[2], s[3])))
    }

    /// Adds every entry of `other`, replacing values of keys already present.
    pub fn extend(&mut self, other: ExtFields) {
        for (k, v) in other.iter() {
            self.insert(k, v);
        }
    }
}

/// Two maps are equal when they hold the same entries in the same order.
impl PartialEq for ExtFields {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for ExtFields {}

impl std::fmt::Debug for ExtFields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for ExtFields {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut fields = ExtFields::new();
        for (k, v) in iter {
            fields.insert(k, v);
        }
        fields
    }
}

impl Serialize for ExtFields {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.len()))?;
        for (k, v) in self.iter() {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// Reads a JSON object leniently: string values as they are, numbers and booleans as their
/// text (some non-Java clients do not stringify), nulls skipped; nested objects are refused.
/// Keys and values are copied straight into the map's one string.
impl<'de> Deserialize<'de> for ExtFields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ExtVisitor;
        impl<'de> Visitor<'de> for ExtVisitor {
            type Value = ExtFields;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of string values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<ExtFields, A::Error> {
                // A send's header holds ~15 fields in ~300 bytes: room for that up front.
                let mut fields = ExtFields::with_capacity(512, 16);
                let mut key_text = String::with_capacity(64);
                while access
                    .next_key_seed(AppendText { out: &mut key_text, scalars: false })?
                    .is_some()
                {
                    // A null value leaves the key out.
                    if let Some(value) = fields.next_value_span(&mut access)? {
                        fields.set_value_span(&key_text, value);
                    }
                    key_text.clear();
                }
                Ok(fields)
            }
        }
        deserializer.deserialize_map(ExtVisitor)
    }
}

impl ExtFields {
    /// Reads the next map value into the text and returns its span; `None` for null.
    fn next_value_span<'de, A: MapAccess<'de>>(
        &mut self,
        access: &mut A,
    ) -> Result<Option<[u32; 2]>, A::Error> {
        let from = self.text.len();
        let present = access.next_value_seed(AppendText { out: &mut self.text, scalars: true })?;
        Ok(present.then_some([from as u32, self.text.len() as u32]))
    }
}

/// Appends a JSON string (and, for values, a number or boolean as its text) to `out`;
/// answers whether anything was there (false for null).
struct AppendText<'a> {
    out: &'a mut String,
    scalars: bool,
}

impl<'de> DeserializeSeed<'de> for AppendText<'_> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        if self.scalars {
            deserializer.deserialize_any(self)
        } else {
            deserializer.deserialize_str(self)
        }
    }
}

impl Visitor<'_> for AppendText<'_> {
    type Value = bool;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a string, number, boolean or null")
    }
    fn visit_str<E>(self, v: &str) -> Result<bool, E> {
        self.out.push_str(v);
        Ok(true)
    }
    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<bool, E> {
        self.scalar(v)
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<bool, E> {
        self.scalar(v)
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<bool, E> {
        self.scalar(v)
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<bool, E> {
        self.scalar(v)
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<bool, E> {
        if !self.scalars {
            return Err(E::invalid_type(serde::de::Unexpected::Unit, &self));
        }
        Ok(false)
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<bool, E> {
        self.visit_unit()
    }
}

impl AppendText<'_> {
    fn scalar<E: serde::de::Error>(self, v: impl std::fmt::Display) -> Result<bool, E> {
        if !self.scalars {
            return Err(E::custom("a key must be a string"));
        }
        let _ = write!(self.out, "{v}");
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_insertion_order_and_replaces_in_place() {
        let mut f = ExtFields::new();
        f.insert("b", "1");
        f.insert("a", "2");
        f.insert("b", "3");
        assert_eq!(f.iter().collect::<Vec<_>>(), vec![("b", "3"), ("a", "2")]);
        assert_eq!(f.remove("b").as_deref(), Some("3"));
        assert_eq!(f.get("b"), None);
    }

    #[test]
    fn reads_scalars_as_text_and_skips_nulls() {
        let f: ExtFields =
            serde_json::from_str(r#"{"q":3,"w":true,"n":null,"s":"x","neg":-4}"#).unwrap();
        assert_eq!(
            f.iter().collect::<Vec<_>>(),
            vec![("q", "3"), ("w", "true"), ("s", "x"), ("neg", "-4")]
        );
        assert!(serde_json::from_str::<ExtFields>(r#"{"o":{"x":1}}"#).is_err());
    }
}
